// What this file teaches: implicit differentiation of a linear solve. X = A^{-1} B is never
// differentiated through the elimination steps; instead, from A X = B,
//     dX = A^{-1} (dB - dA X)   so   dB = A^{-T} G   and   dA = -(A^{-T} G) X^T.
// The adjoint solve A^{-T} G reuses the factorisation of the forward pass, and it is itself a
// differentiable op (with A as an input), so second derivatives flow through it too.
#pragma once

#include <cmath>
#include <sstream>

#include "elementwise.hpp"
#include "matmul.hpp"

namespace occam::ad {
namespace detail {

/// One factorisation of A, shared by the forward solve and every adjoint solve.
struct Factorization : Owned {
    bool spd = false;
    Eigen::LLT<Eigen::MatrixXd> llt;
    Eigen::PartialPivLU<Eigen::MatrixXd> lu;

    /// A^{-1} B, or A^{-T} B when transposed (the same thing for a symmetric A).
    template <class Rhs>
    void solve(const Rhs& b, bool transposed, Eigen::Map<Eigen::MatrixXd> out) const {
        if (spd) out = llt.solve(b);
        else if (transposed) out = lu.transpose().solve(b);
        else out = lu.solve(b);
    }
};

inline std::string fmt_double(double v) {
    std::ostringstream s;
    s.precision(3);
    s << v;
    return s.str();
}

inline Factorization* factorize(const Var& A) {
    auto a = A.value();
    if (!a.allFinite())
        throw SolveError("ad::solve: the " + shape_str(A) + " matrix holds non-finite values (NaN or inf)");
    auto* f = tape().own<Factorization>();
    const double scale = std::max(1.0, a.cwiseAbs().maxCoeff());
    const bool symmetric = (a - a.transpose()).cwiseAbs().maxCoeff() <= 1e-12 * scale;
    double rcond = 0.0;
    if (symmetric) {
        f->llt.compute(a);
        if (f->llt.info() == Eigen::Success) {
            f->spd = true;
            rcond = f->llt.rcond();
        }
    }
    if (!f->spd) {
        f->lu.compute(a);
        rcond = f->lu.rcond();
    }
    if (!(rcond > 1e-14))
        throw SolveError("ad::solve: the " + shape_str(A) + " matrix is singular to working precision (reciprocal "
                         "condition number " + fmt_double(rcond) + ")");
    return f;
}

/// op(A)^{-1} B with a given factor of A; op is transpose when `transposed`.
inline Var solve_factored(const Factorization* f, const Var& A, const Var& B, bool transposed) {
    Node* n = tape().push(
        "solve", B.rows(), B.cols(),
        [f, transposed](const Node& self, const Var& g, Var* out) {
            Var X = self.output();
            // The adjoint system: op(A)^T GB = G, solved with the same factor.
            Var GB = solve_factored(f, self.input(0), g, !transposed);
            if (self.needs(1)) out[1] = GB;
            if (self.needs(0)) out[0] = transposed ? neg(matmul_nt(X, GB))   // X = A^{-T}B: dA = -X GB^T
                                                   : neg(matmul_nt(GB, X));  // X = A^{-1}B: dA = -GB X^T
        },
        {A.node(), B.node()});
    f->solve(B.value(), transposed, n->mutable_value());
    if (!n->value().allFinite())
        throw SolveError("ad::solve: the solution is not finite (the right-hand side " + shape_str(B) +
                         " holds NaN or inf, or the matrix is too ill-conditioned)");
    return Var(n);
}
}  // namespace detail

inline Var solve(const Var& A, const Var& B) {
    if (A.rows() != A.cols()) throw ShapeError("ad::solve: the matrix is " + shape_str(A) + ", not square");
    if (B.rows() != A.rows())
        throw ShapeError("ad::solve: the matrix is " + shape_str(A) + " but the right-hand side is " + shape_str(B));
    return detail::solve_factored(detail::factorize(A), A, B, false);
}

}  // namespace occam::ad
