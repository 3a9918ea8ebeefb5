// What this file teaches: the whole op vocabulary on one page. Backward formulas are written
// with these same ops, so they must all be declared before any is defined.
// Shapes: every Var is a rows x cols matrix; samples are rows, features are columns.
#pragma once

#include <span>
#include <vector>

#include "../core/tape.hpp"

namespace occam::ad {

// ---- elementwise binary ops, broadcasting rows (1 x c), columns (r x 1) and scalars (1 x 1)
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
Var add_scalar(const Var& x, double s);  ///< x + s
Var mul_scalar(const Var& x, double s);  ///< x * s
Var neg(const Var& x);

// ---- elementwise unary ops (the table in unary.hpp)
Var exp(const Var& x);
Var log(const Var& x);
Var sqrt(const Var& x);
Var abs(const Var& x);
Var tanh(const Var& x);
Var sigmoid(const Var& x);
Var sin(const Var& x);
Var cos(const Var& x);
Var relu(const Var& x);   ///< relu'(0) = 0
Var relu6(const Var& x);  ///< min(max(x, 0), 6); derivative 1 on the open interval (0, 6)
Var square(const Var& x);
Var pow(const Var& x, double p);

// ---- masks: constant 0/1 matrices (no gradient flows through a comparison)
Var gt(const Var& a, const Var& b);
Var ge(const Var& a, const Var& b);
Var lt(const Var& a, const Var& b);
Var le(const Var& a, const Var& b);
Var gt(const Var& a, double b);
Var lt(const Var& a, double b);
Var sign(const Var& x);  ///< -1, 0 or +1, constant
/// mask ? a : b elementwise (mask is 0/1, treated as a constant), all three broadcast.
Var where(const Var& mask, const Var& a, const Var& b);
Var maximum(const Var& a, const Var& b);  ///< ties give the gradient to a
Var minimum(const Var& a, const Var& b);  ///< ties give the gradient to a
Var relu_grad(const Var& g, const Var& x);  ///< g where x > 0, else 0 (relu's backward, one node)
Var detach(const Var& x);                 ///< same value, no gradient (stop-gradient)

// ---- shape ops
Var transpose(const Var& x);
Var reshape(const Var& x, int rows, int cols);  ///< column-major, shares storage
Var block(const Var& x, int row0, int col0, int rows, int cols);
Var rows(const Var& x, int row0, int n);
Var cols(const Var& x, int col0, int n);
/// x placed at (row0, col0) in a rows x cols matrix of zeros (the adjoint of block).
Var embed(const Var& x, int row0, int col0, int rows, int cols);
Var gather_rows(const Var& x, const std::vector<int>& index);           ///< out.row(k) = x.row(index[k])
Var gather_cols(const Var& x, const std::vector<int>& index);           ///< out.col(k) = x.col(index[k])
Var scatter_rows(const Var& x, const std::vector<int>& index, int n);   ///< out.row(index[k]) += x.row(k)
Var scatter_cols(const Var& x, const std::vector<int>& index, int n);   ///< out.col(index[k]) += x.col(k)
Var hcat(const Var& a, const Var& b);  ///< [a b]
Var vcat(const Var& a, const Var& b);  ///< [a; b]
Var hcat(std::span<const Var> xs);      ///< [x_0 x_1 ...] as one node
Var vcat(std::span<const Var> xs);      ///< [x_0; x_1; ...] as one node
Var hcat(const std::vector<Var>& xs);
Var vcat(const std::vector<Var>& xs);
Var broadcast_to(const Var& x, int rows, int cols);  ///< repeat a 1 x c, r x 1 or 1 x 1 value
Var sum_to(const Var& x, int rows, int cols);        ///< sum over the axes where the target is 1

// ---- reductions
Var sum(const Var& x);        ///< 1 x 1
Var mean(const Var& x);       ///< 1 x 1
Var row_sums(const Var& x);   ///< r x 1: each row summed over its columns
Var col_sums(const Var& x);   ///< 1 x c: each column summed over its rows
Var row_means(const Var& x);
Var col_means(const Var& x);
Var row_logsumexp(const Var& x);  ///< r x 1, max-shifted so it never overflows
Var col_logsumexp(const Var& x);  ///< 1 x c

// ---- linear algebra
Var matmul(const Var& a, const Var& b);     ///< a b
Var matmul_nt(const Var& a, const Var& b);  ///< a b^T (no transpose is materialised)
Var matmul_tn(const Var& a, const Var& b);  ///< a^T b
/// A^{-1} B by one factorisation (LLT if A is symmetric positive definite, else LU); the
/// backward pass reuses the factor (implicit differentiation). Singular A raises SolveError.
Var solve(const Var& A, const Var& B);

// ---- operators
inline Var operator+(const Var& a, const Var& b) { return add(a, b); }
inline Var operator-(const Var& a, const Var& b) { return sub(a, b); }
inline Var operator*(const Var& a, const Var& b) { return mul(a, b); }
inline Var operator/(const Var& a, const Var& b) { return div(a, b); }
inline Var operator-(const Var& x) { return neg(x); }
inline Var operator+(const Var& x, double s) { return add_scalar(x, s); }
inline Var operator+(double s, const Var& x) { return add_scalar(x, s); }
inline Var operator-(const Var& x, double s) { return add_scalar(x, -s); }
inline Var operator-(double s, const Var& x) { return add_scalar(neg(x), s); }
inline Var operator*(const Var& x, double s) { return mul_scalar(x, s); }
inline Var operator*(double s, const Var& x) { return mul_scalar(x, s); }
inline Var operator/(const Var& x, double s) { return mul_scalar(x, 1.0 / s); }
inline Var operator/(double s, const Var& x) { return mul_scalar(pow(x, -1.0), s); }

}  // namespace occam::ad
