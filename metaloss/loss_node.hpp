// What this file teaches: a loss whose gradient is computed together with its value (by a
// solver or a closed form on raw arrays) becomes ONE custom tape node: the gradients are kept
// beside the node and the backward formula only scales them by the incoming gradient.
#pragma once

#include <cstddef>

#include "../autodiff/autodiff.hpp"

namespace occam::metaloss::detail {

/// loss(x, y) of two sample columns as one 1x1 node. `core(x, n, y, m, grad_x, grad_y)` returns
/// the value and writes dL/dx, dL/dy when the pointers are not null.
///
/// Backward: dL/dx = g G_x and dL/dy = g G_y with G the kept gradients. That formula is linear
/// in g, but the kept G is a constant: its dependence on x and y is not recorded. So the caller
/// says what a second derivative means for its loss:
///  - Derivatives::any_order when G is locally constant in x and y (the energy distance's
///    gradient counts points on either side): then d G / dx = 0 is exact and create_graph is right;
///  - Derivatives::first_order otherwise (Sinkhorn's envelope gradient moves with x): ad::grad
///    with create_graph through the node then raises ad::Error instead of a silent zero.
template <class Core>
ad::Var loss_with_kept_gradient(const char* op, const ad::Var& x, const ad::Var& y, ad::Derivatives derivatives,
                                Core core) {
    const int n = x.rows(), m = y.rows();
    const bool want_grad = ad::grad_enabled() && (x.requires_grad() || y.requires_grad());
    // The gradients live in the arena next to the node, so they are released with its scope.
    double* grads = want_grad ? ad::tape().arena.allocate_array<double>(std::size_t(n) + m) : nullptr;
    const double value = core(x.value().data(), n, y.value().data(), m, grads, grads ? grads + n : nullptr);
    ad::Node* node = ad::tape().push(
        op, 1, 1,
        [grads, n, m](const ad::Node& self, const ad::Var& g, ad::Var* out) {
            if (self.needs(0)) out[0] = ad::mul(g, ad::constant(Eigen::Map<const Eigen::MatrixXd>(grads, n, 1)));
            if (self.needs(1)) out[1] = ad::mul(g, ad::constant(Eigen::Map<const Eigen::MatrixXd>(grads + n, m, 1)));
        },
        {x.node(), y.node()}, derivatives);
    node->data[0] = value;
    return ad::Var(node);
}

}  // namespace occam::metaloss::detail
