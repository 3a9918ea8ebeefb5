// What this file teaches: shape ops move numbers without changing them, so each one's
// backward is another shape op that moves the gradient back: transpose <-> transpose,
// block <-> embed, gather <-> scatter-add, broadcast <-> sum. Pairs of adjoints.
#pragma once

#include <string>
#include <vector>

#include "elementwise.hpp"

namespace occam::ad {
namespace detail {
inline std::string dims(int r, int c) { return std::to_string(r) + "x" + std::to_string(c); }

/// Copies an index list into the arena so the node can keep it for its backward formula.
inline const int* keep_index(const std::vector<int>& index) {
    int* p = tape().arena.allocate_array<int>(index.size());
    std::copy(index.begin(), index.end(), p);
    return p;
}
inline std::vector<int> index_of(const Node& self) {
    const int* p = static_cast<const int*>(self.ptr);
    return std::vector<int>(p, p + self.iarg[0]);
}
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
        throw ShapeError("ad::reshape: cannot reshape " + shape_str(x) + " to " + detail::dims(rows, cols));
    return Var(tape().push("reshape", rows, cols,
                           [](const Node& self, const Var& g, Var* out) {
                               out[0] = reshape(g, self.inputs[0]->rows, self.inputs[0]->cols);
                           },
                           {x.node()}, x.node()->data));
}

// The gradient of a block is the incoming gradient embedded in zeros at the same place.
inline Var block(const Var& x, int row0, int col0, int rows, int cols) {
    if (row0 < 0 || col0 < 0 || rows < 0 || cols < 0 || row0 + rows > x.rows() || col0 + cols > x.cols())
        throw ShapeError("ad::block: block " + detail::dims(rows, cols) + " at (" + std::to_string(row0) + "," +
                         std::to_string(col0) + ") does not fit in " + shape_str(x));
    Node* n = tape().push("block", rows, cols,
                          [](const Node& self, const Var& g, Var* out) {
                              out[0] = embed(g, self.iarg[0], self.iarg[1], self.inputs[0]->rows,
                                             self.inputs[0]->cols);
                          },
                          {x.node()});
    n->iarg[0] = row0;
    n->iarg[1] = col0;
    n->mutable_value() = x.value().block(row0, col0, rows, cols);
    return Var(n);
}
inline Var rows(const Var& x, int row0, int n) { return block(x, row0, 0, n, x.cols()); }
inline Var cols(const Var& x, int col0, int n) { return block(x, 0, col0, x.rows(), n); }

// embed is block's adjoint, and block is embed's.
inline Var embed(const Var& x, int row0, int col0, int rows, int cols) {
    if (row0 < 0 || col0 < 0 || row0 + x.rows() > rows || col0 + x.cols() > cols)
        throw ShapeError("ad::embed: " + shape_str(x) + " at (" + std::to_string(row0) + "," + std::to_string(col0) +
                         ") does not fit in " + detail::dims(rows, cols));
    Node* n = tape().push("embed", rows, cols,
                          [](const Node& self, const Var& g, Var* out) {
                              out[0] = block(g, self.iarg[0], self.iarg[1], self.inputs[0]->rows,
                                             self.inputs[0]->cols);
                          },
                          {x.node()});
    n->iarg[0] = row0;
    n->iarg[1] = col0;
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
    Node* n = tape().push("gather_rows", int(index.size()), x.cols(),
                          [](const Node& self, const Var& g, Var* out) {
                              out[0] = scatter_rows(g, detail::index_of(self), self.inputs[0]->rows);
                          },
                          {x.node()});
    n->ptr = detail::keep_index(index);
    n->iarg[0] = int(index.size());
    auto xv = x.value();
    auto v = n->mutable_value();
    for (std::size_t k = 0; k < index.size(); ++k) v.row(Eigen::Index(k)) = xv.row(index[k]);
    return Var(n);
}

inline Var scatter_rows(const Var& x, const std::vector<int>& index, int n_rows) {
    if (int(index.size()) != x.rows())
        throw ShapeError("ad::scatter_rows: " + std::to_string(index.size()) + " indices for " + shape_str(x));
    detail::check_index("scatter_rows", index, n_rows, "rows");
    Node* n = tape().push("scatter_rows", n_rows, x.cols(),
                          [](const Node& self, const Var& g, Var* out) {
                              out[0] = gather_rows(g, detail::index_of(self));
                          },
                          {x.node()});
    n->ptr = detail::keep_index(index);
    n->iarg[0] = int(index.size());
    auto xv = x.value();
    auto v = n->mutable_value();
    v.setZero();
    for (std::size_t k = 0; k < index.size(); ++k) v.row(index[k]) += xv.row(Eigen::Index(k));
    return Var(n);
}

inline Var gather_cols(const Var& x, const std::vector<int>& index) {
    detail::check_index("gather_cols", index, x.cols(), "columns");
    Node* n = tape().push("gather_cols", x.rows(), int(index.size()),
                          [](const Node& self, const Var& g, Var* out) {
                              out[0] = scatter_cols(g, detail::index_of(self), self.inputs[0]->cols);
                          },
                          {x.node()});
    n->ptr = detail::keep_index(index);
    n->iarg[0] = int(index.size());
    auto xv = x.value();
    auto v = n->mutable_value();
    for (std::size_t k = 0; k < index.size(); ++k) v.col(Eigen::Index(k)) = xv.col(index[k]);
    return Var(n);
}

inline Var scatter_cols(const Var& x, const std::vector<int>& index, int n_cols) {
    if (int(index.size()) != x.cols())
        throw ShapeError("ad::scatter_cols: " + std::to_string(index.size()) + " indices for " + shape_str(x));
    detail::check_index("scatter_cols", index, n_cols, "columns");
    Node* n = tape().push("scatter_cols", x.rows(), n_cols,
                          [](const Node& self, const Var& g, Var* out) {
                              out[0] = gather_cols(g, detail::index_of(self));
                          },
                          {x.node()});
    n->ptr = detail::keep_index(index);
    n->iarg[0] = int(index.size());
    auto xv = x.value();
    auto v = n->mutable_value();
    v.setZero();
    for (std::size_t k = 0; k < index.size(); ++k) v.col(index[k]) += xv.col(Eigen::Index(k));
    return Var(n);
}

// [a b]: each input gets its own columns of the gradient back.
inline Var hcat(const Var& a, const Var& b) {
    if (a.rows() != b.rows())
        throw ShapeError("ad::hcat: " + shape_str(a) + " and " + shape_str(b) + " have different row counts");
    Node* n = tape().push("hcat", a.rows(), a.cols() + b.cols(),
                          [](const Node& self, const Var& g, Var* out) {
                              int ca = self.inputs[0]->cols, cb = self.inputs[1]->cols;
                              if (detail::needs(self, 0)) out[0] = cols(g, 0, ca);
                              if (detail::needs(self, 1)) out[1] = cols(g, ca, cb);
                          },
                          {a.node(), b.node()});
    auto v = n->mutable_value();
    v.leftCols(a.cols()) = a.value();
    v.rightCols(b.cols()) = b.value();
    return Var(n);
}

// [a; b]: each input gets its own rows of the gradient back.
inline Var vcat(const Var& a, const Var& b) {
    if (a.cols() != b.cols())
        throw ShapeError("ad::vcat: " + shape_str(a) + " and " + shape_str(b) + " have different column counts");
    Node* n = tape().push("vcat", a.rows() + b.rows(), a.cols(),
                          [](const Node& self, const Var& g, Var* out) {
                              int ra = self.inputs[0]->rows, rb = self.inputs[1]->rows;
                              if (detail::needs(self, 0)) out[0] = rows(g, 0, ra);
                              if (detail::needs(self, 1)) out[1] = rows(g, ra, rb);
                          },
                          {a.node(), b.node()});
    auto v = n->mutable_value();
    v.topRows(a.rows()) = a.value();
    v.bottomRows(b.rows()) = b.value();
    return Var(n);
}

inline Var hcat(const std::vector<Var>& xs) {
    if (xs.empty()) throw ShapeError("ad::hcat: no inputs");
    Var out = xs[0];
    for (std::size_t k = 1; k < xs.size(); ++k) out = hcat(out, xs[k]);
    return out;
}
inline Var vcat(const std::vector<Var>& xs) {
    if (xs.empty()) throw ShapeError("ad::vcat: no inputs");
    Var out = xs[0];
    for (std::size_t k = 1; k < xs.size(); ++k) out = vcat(out, xs[k]);
    return out;
}

// Repeating a value r times means its gradient is the sum of the r copies' gradients.
inline Var broadcast_to(const Var& x, int rows, int cols) {
    if (x.rows() == rows && x.cols() == cols) return x;
    if ((x.rows() != rows && x.rows() != 1) || (x.cols() != cols && x.cols() != 1))
        throw ShapeError("ad::broadcast_to: cannot broadcast " + shape_str(x) + " to " + detail::dims(rows, cols));
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
        throw ShapeError("ad::sum_to: cannot sum " + shape_str(x) + " to " + detail::dims(rows, cols));
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
