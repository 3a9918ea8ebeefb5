// What this file teaches: reductions are sum_to in disguise, and log-sum-exp is the one
// reduction that needs care: shift by the max before exponentiating (so nothing overflows),
// and note that its gradient is a softmax, exp(x - lse), which reuses the output.
#pragma once

#include <limits>

#include "shape.hpp"
#include "unary.hpp"

namespace occam::ad {

inline Var sum(const Var& x) { return sum_to(x, 1, 1); }
inline Var row_sums(const Var& x) { return sum_to(x, x.rows(), 1); }
inline Var col_sums(const Var& x) { return sum_to(x, 1, x.cols()); }
inline Var mean(const Var& x) { return mul_scalar(sum(x), 1.0 / double(x.size())); }
inline Var row_means(const Var& x) { return mul_scalar(row_sums(x), 1.0 / double(x.cols())); }
inline Var col_means(const Var& x) { return mul_scalar(col_sums(x), 1.0 / double(x.rows())); }

namespace detail {
/// log sum_k exp(v_k), shifted by the max; -inf if every entry is -inf.
template <class V>
double stable_lse(const V& v) {
    double m = v.maxCoeff();
    if (m == -std::numeric_limits<double>::infinity()) return m;
    return m + std::log((v.array() - m).exp().sum());
}

// d lse(x)_i / d x_ij = exp(x_ij - lse_i): a softmax along the reduced axis, written with
// differentiable ops (and broadcasting g and y back over that axis) so it has a second order.
inline void lse_backward(const Node& self, const Var& g, Var* out) {
    Var in(self.inputs[0]);
    Var y = self.output();
    out[0] = g * exp(in - y);
}
}  // namespace detail

inline Var row_logsumexp(const Var& x) {
    Node* n = tape().push("row_logsumexp", x.rows(), 1, detail::lse_backward, {x.node()});
    auto xv = x.value();
    for (int i = 0; i < x.rows(); ++i) n->data[i] = detail::stable_lse(xv.row(i));
    return Var(n);
}

inline Var col_logsumexp(const Var& x) {
    Node* n = tape().push("col_logsumexp", 1, x.cols(), detail::lse_backward, {x.node()});
    auto xv = x.value();
    for (int j = 0; j < x.cols(); ++j) n->data[j] = detail::stable_lse(xv.col(j));
    return Var(n);
}

}  // namespace occam::ad
