// What this file teaches: shape ops move numbers without changing them, so each one's
// backward is another shape op that moves the gradient back: transpose <-> transpose,
// block <-> embed, gather <-> scatter-add, broadcast <-> sum. Pairs of adjoints.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "elementwise.hpp"

namespace occam::ad {
namespace detail {
/// Copies an index list into the arena, where a node's backward can keep it (a span is
/// trivially destructible, so the closure that captures it needs no destructor).
inline std::span<const int> keep_index(const std::vector<int>& index) {
    int* p = tape().arena.allocate_array<int>(index.size());
    std::copy(index.begin(), index.end(), p);
    return {p, index.size()};
}
inline std::vector<int> to_vector(std::span<const int> index) { return {index.begin(), index.end()}; }
}  // namespace detail

// d(x^T) = (dx)^T, so the gradient is transposed back.
inline Var transpose(const Var& x) {
    Node* n = tape().push("transpose", x.cols(), x.rows(),
                          [](const Node&, const Var& g, Var* out) { out[0] = transpose(g); }, {x.node()});
    n->mutable_value() = x.value().transpose();
    return Var(n);
}

// Column-major reshape shares storage; the gradient is reshaped back.
inline Var reshape(const Var& x, int rows, int cols) {
    if (Eigen::Index(rows) * cols != x.size())
        throw ShapeError("ad::reshape: cannot reshape " + shape_str(x) + " to " + shape_str(rows, cols));
    return Var(tape().push("reshape", rows, cols,
                           [](const Node& self, const Var& g, Var* out) {
                               out[0] = reshape(g, self.inputs[0]->rows, self.inputs[0]->cols);
                           },
                           {x.node()}, Derivatives::any_order, x.node()->data));
}

// The gradient of a block is the incoming gradient embedded in zeros at the same place.
inline Var block(const Var& x, int row0, int col0, int rows, int cols) {
    if (row0 < 0 || col0 < 0 || rows < 0 || cols < 0 || row0 + rows > x.rows() || col0 + cols > x.cols())
        throw ShapeError("ad::block: block " + shape_str(rows, cols) + " at (" + std::to_string(row0) + "," +
                         std::to_string(col0) + ") does not fit in " + shape_str(x));
    Node* n = tape().push("block", rows, cols,
                          [row0, col0](const Node& self, const Var& g, Var* out) {
                              out[0] = embed(g, row0, col0, self.inputs[0]->rows, self.inputs[0]->cols);
                          },
                          {x.node()});
    n->mutable_value() = x.value().block(row0, col0, rows, cols);
    return Var(n);
}
inline Var rows(const Var& x, int row0, int n) { return block(x, row0, 0, n, x.cols()); }
inline Var cols(const Var& x, int col0, int n) { return block(x, 0, col0, x.rows(), n); }

// embed is block's adjoint, and block is embed's.
inline Var embed(const Var& x, int row0, int col0, int rows, int cols) {
    if (row0 < 0 || col0 < 0 || row0 + x.rows() > rows || col0 + x.cols() > cols)
        throw ShapeError("ad::embed: " + shape_str(x) + " at (" + std::to_string(row0) + "," + std::to_string(col0) +
                         ") does not fit in " + shape_str(rows, cols));
    Node* n = tape().push("embed", rows, cols,
                          [row0, col0](const Node& self, const Var& g, Var* out) {
                              out[0] = block(g, row0, col0, self.inputs[0]->rows, self.inputs[0]->cols);
                          },
                          {x.node()});
    auto v = n->mutable_value();
    v.setZero();
    v.block(row0, col0, x.rows(), x.cols()) = x.value();
    return Var(n);
}

namespace detail {
inline void check_index(const char* op, const std::vector<int>& index, int n, const char* what) {
    for (int i : index)
        if (i < 0 || i >= n)
            throw ShapeError(std::string("ad::") + op + ": index " + std::to_string(i) + " is outside 0.." +
                             std::to_string(n - 1) + " " + what);
}
}  // namespace detail

// Gathering copies rows; its adjoint adds each gradient row back where it came from.
inline Var gather_rows(const Var& x, const std::vector<int>& index) {
    detail::check_index("gather_rows", index, x.rows(), "rows");
    const std::span<const int> kept = detail::keep_index(index);
    Node* n = tape().push("gather_rows", int(index.size()), x.cols(),
                          [kept](const Node& self, const Var& g, Var* out) {
                              out[0] = scatter_rows(g, detail::to_vector(kept), self.inputs[0]->rows);
                          },
                          {x.node()});
    auto xv = x.value();
    auto v = n->mutable_value();
    for (std::size_t k = 0; k < index.size(); ++k) v.row(Eigen::Index(k)) = xv.row(index[k]);
    return Var(n);
}

inline Var scatter_rows(const Var& x, const std::vector<int>& index, int n_rows) {
    if (int(index.size()) != x.rows())
        throw ShapeError("ad::scatter_rows: " + std::to_string(index.size()) + " indices for " + shape_str(x));
    detail::check_index("scatter_rows", index, n_rows, "rows");
    const std::span<const int> kept = detail::keep_index(index);
    Node* n = tape().push("scatter_rows", n_rows, x.cols(),
                          [kept](const Node&, const Var& g, Var* out) {
                              out[0] = gather_rows(g, detail::to_vector(kept));
                          },
                          {x.node()});
    auto xv = x.value();
    auto v = n->mutable_value();
    v.setZero();
    for (std::size_t k = 0; k < index.size(); ++k) v.row(index[k]) += xv.row(Eigen::Index(k));
    return Var(n);
}

inline Var gather_cols(const Var& x, const std::vector<int>& index) {
    detail::check_index("gather_cols", index, x.cols(), "columns");
    const std::span<const int> kept = detail::keep_index(index);
    Node* n = tape().push("gather_cols", x.rows(), int(index.size()),
                          [kept](const Node& self, const Var& g, Var* out) {
                              out[0] = scatter_cols(g, detail::to_vector(kept), self.inputs[0]->cols);
                          },
                          {x.node()});
    auto xv = x.value();
    auto v = n->mutable_value();
    for (std::size_t k = 0; k < index.size(); ++k) v.col(Eigen::Index(k)) = xv.col(index[k]);
    return Var(n);
}

inline Var scatter_cols(const Var& x, const std::vector<int>& index, int n_cols) {
    if (int(index.size()) != x.cols())
        throw ShapeError("ad::scatter_cols: " + std::to_string(index.size()) + " indices for " + shape_str(x));
    detail::check_index("scatter_cols", index, n_cols, "columns");
    const std::span<const int> kept = detail::keep_index(index);
    Node* n = tape().push("scatter_cols", x.rows(), n_cols,
                          [kept](const Node&, const Var& g, Var* out) {
                              out[0] = gather_cols(g, detail::to_vector(kept));
                          },
                          {x.node()});
    auto xv = x.value();
    auto v = n->mutable_value();
    v.setZero();
    for (std::size_t k = 0; k < index.size(); ++k) v.col(index[k]) += xv.col(Eigen::Index(k));
    return Var(n);
}

// [x_0 x_1 ... x_k]: one node for any number of blocks; each input gets its own columns of
// the gradient back.
inline Var hcat(std::span<const Var> xs) {
    if (xs.empty()) throw ShapeError("ad::hcat: no inputs");
    int c = 0;
    for (const Var& x : xs) {
        if (x.rows() != xs[0].rows())
            throw ShapeError("ad::hcat: " + shape_str(xs[0]) + " and " + shape_str(x) + " have different row counts");
        c += x.cols();
    }
    if (xs.size() == 1) return xs[0];
    Node* n = tape().push("hcat", xs[0].rows(), c,
                          [](const Node& self, const Var& g, Var* out) {
                              for (int k = 0, c0 = 0; k < int(self.n_inputs); c0 += self.inputs[k++]->cols)
                                  if (self.needs(k)) out[k] = cols(g, c0, self.inputs[k]->cols);
                          },
                          xs);
    auto v = n->mutable_value();
    c = 0;
    for (const Var& x : xs) {
        v.middleCols(c, x.cols()) = x.value();
        c += x.cols();
    }
    return Var(n);
}

// [x_0; x_1; ...; x_k]: each input gets its own rows of the gradient back.
inline Var vcat(std::span<const Var> xs) {
    if (xs.empty()) throw ShapeError("ad::vcat: no inputs");
    int r = 0;
    for (const Var& x : xs) {
        if (x.cols() != xs[0].cols())
            throw ShapeError("ad::vcat: " + shape_str(xs[0]) + " and " + shape_str(x) +
                             " have different column counts");
        r += x.rows();
    }
    if (xs.size() == 1) return xs[0];
    Node* n = tape().push("vcat", r, xs[0].cols(),
                          [](const Node& self, const Var& g, Var* out) {
                              for (int k = 0, r0 = 0; k < int(self.n_inputs); r0 += self.inputs[k++]->rows)
                                  if (self.needs(k)) out[k] = rows(g, r0, self.inputs[k]->rows);
                          },
                          xs);
    auto v = n->mutable_value();
    r = 0;
    for (const Var& x : xs) {
        v.middleRows(r, x.rows()) = x.value();
        r += x.rows();
    }
    return Var(n);
}
inline Var hcat(const std::vector<Var>& xs) { return hcat(std::span<const Var>(xs)); }
inline Var vcat(const std::vector<Var>& xs) { return vcat(std::span<const Var>(xs)); }
inline Var hcat(const Var& a, const Var& b) {
    const Var xs[2] = {a, b};
    return hcat(std::span<const Var>(xs));
}
inline Var vcat(const Var& a, const Var& b) {
    const Var xs[2] = {a, b};
    return vcat(std::span<const Var>(xs));
}

// Repeating a value r times means its gradient is the sum of the r copies' gradients.
inline Var broadcast_to(const Var& x, int rows, int cols) {
    if (x.rows() == rows && x.cols() == cols) return x;
    if ((x.rows() != rows && x.rows() != 1) || (x.cols() != cols && x.cols() != 1))
        throw ShapeError("ad::broadcast_to: cannot broadcast " + shape_str(x) + " to " + shape_str(rows, cols));
    Node* n = tape().push("broadcast_to", rows, cols,
                          [](const Node& self, const Var& g, Var* out) {
                              out[0] = sum_to(g, self.inputs[0]->rows, self.inputs[0]->cols);
                          },
                          {x.node()});
    detail::Strided s(x.node());
    double* o = n->data;
    for (int j = 0; j < cols; ++j)
        for (int i = 0; i < rows; ++i) *o++ = s(i, j);
    return Var(n);
}

// Summing over an axis: every summand gets the whole incoming gradient (a broadcast).
inline Var sum_to(const Var& x, int rows, int cols) {
    if (x.rows() == rows && x.cols() == cols) return x;
    if ((rows != x.rows() && rows != 1) || (cols != x.cols() && cols != 1))
        throw ShapeError("ad::sum_to: cannot sum " + shape_str(x) + " to " + shape_str(rows, cols));
    Node* n = tape().push("sum_to", rows, cols,
                          [](const Node& self, const Var& g, Var* out) {
                              out[0] = broadcast_to(g, self.inputs[0]->rows, self.inputs[0]->cols);
                          },
                          {x.node()});
    auto xv = x.value();
    auto v = n->mutable_value();
    if (rows == 1 && cols == 1) v(0, 0) = xv.sum();
    else if (rows == 1) v = xv.colwise().sum();
    else v = xv.rowwise().sum();
    return Var(n);
}

}  // namespace occam::ad
