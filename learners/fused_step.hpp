// What this file teaches: one step of gradient descent on a ReLU network as ONE tape node
// whose backward pass is written by hand. The vector-Jacobian product of p' = p - lr grad L(p)
// needs a Hessian-vector product, computed with Pearlmutter's R-operator (a forward-mode pass
// through the network's forward and backward passes) instead of recording ~100 small nodes.
// The loops themselves are kernels/sgd_step.hpp; this file is the node around them.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "../autodiff/autodiff.hpp"
#include "../kernels/sgd_step.hpp"

namespace occam::learners {

using kernels::FusedSgdNet;

namespace fused_detail {

/// What the node keeps for its backward pass: its closure's state, in the tape's arena
/// (trivially destructible; the values it points to are in the arena too).
struct Kept {
    const FusedSgdNet* net;
    int n;
    long ld;
    const int* rows;  ///< the batch's label rows (null: all, in order)
    double* values;   ///< KeptLayout
};

}  // namespace fused_detail

/// A FusedSgdNet owned by the tape (released with the TapeScope open now, after every node
/// of the training that uses it).
inline const FusedSgdNet& fused_sgd_net(std::vector<int> widths, const Eigen::MatrixXd& mask, bool positive,
                                        double lr) {
    struct Held : ad::Owned {
        FusedSgdNet net;
        Held(std::vector<int> w, const Eigen::MatrixXd& m, bool pos, double rate) : net(std::move(w), m, pos, rate) {}
    };
    return ad::tape().own<Held>(std::move(widths), mask, positive, lr)->net;
}

/// p' = one SGD step from packed parameters p on the examples `rows` of (x, y) (empty: all),
/// as one node; first-order gradients for p and y (x is a constant of the task). `net` must
/// live as long as the tape holds the node (fused_sgd_net makes one the tape owns). The node
/// keeps the step's activations and deltas (a few times the batch by the widths) in the arena.
inline ad::Var fused_sgd_step(const FusedSgdNet& net, const Eigen::Ref<const Eigen::MatrixXd>& x,
                              const std::vector<int>& rows, const ad::Var& packed, const ad::Var& y) {
    using namespace fused_detail;
    using namespace kernels::sgd_step;
    const int n = rows.empty() ? int(x.rows()) : int(rows.size());
    if (packed.rows() != net.packed_size() || packed.cols() != 1 || x.cols() != net.widths[0] || y.cols() != 1)
        throw ad::ShapeError("fused_sgd_step: parameters, inputs or labels do not fit the network");
    ad::Tape& t = ad::tape();
    const long ld = lanes::padded(n);
    double* values = t.arena.allocate_array<double>(std::size_t(KeptLayout{ld}.size(net)));
    int* kept_rows = rows.empty() ? nullptr : t.arena.allocate_array<int>(rows.size());
    const Kept kept{&net, n, ld, kept_rows, values};
    // The batch (a_0), zero-padded to whole blocks, and its labels.
    thread_local kernels::AlignedVector yb;  // grows, never shrinks: no allocation per step
    kernels::grow(yb, std::size_t(n));
    for (int k = 0; k < x.cols(); ++k) {
        double* col = values + ld * k;
        for (int i = 0; i < n; ++i) col[i] = x(rows.empty() ? i : rows[std::size_t(i)], k);
        std::fill(col + n, col + ld, 0.0);
    }
    for (int i = 0; i < n; ++i) {
        const int r = rows.empty() ? i : rows[std::size_t(i)];
        if (kept_rows) kept_rows[i] = r;
        yb[i] = y.value()(r, 0);
    }
    ad::Node* node = t.push(
        "fused_sgd_step", packed.rows(), 1,
        [kept](const ad::Node& self, const ad::Var& g, ad::Var* grads) {
            const Kept* k = &kept;
            const FusedSgdNet& nt = *k->net;
            const WorkLayout w{k->ld};
            thread_local kernels::AlignedVector work;  // grows, never shrinks: no allocation per step
            kernels::grow(work, std::size_t(w.size(nt)));
            const ad::Var p_bar = ad::constant(g.value());  // the backward writes into its storage
            const double* p = self.inputs[0]->data;
            lanes::run([&]<class B>() OCCAM_LANES_KERNEL {
                step_backward<B>(nt, k->n, k->ld, p, k->values, p_bar.node()->data, work.data());
            });
            if (self.inputs[0]->requires_grad) grads[0] = p_bar;
            if (self.inputs[1]->requires_grad) {
                const ad::Var y_bar = ad::zeros(self.inputs[1]->rows, 1);
                const double* batch = work.data() + w.y_bar(nt);
                for (int i = 0; i < k->n; ++i) y_bar.node()->data[k->rows ? k->rows[i] : i] += batch[i];
                grads[1] = y_bar;
            }
        },
        {packed.node(), y.node()}, ad::Derivatives::first_order);
    node->mutable_value() = packed.value();
    const double* p = packed.node()->data;
    double* q = node->data;
    lanes::run([&]<class B>() OCCAM_LANES_KERNEL { step_forward<B>(net, n, ld, p, yb.data(), values, q); });
    return ad::Var(node);
}

}  // namespace occam::learners

