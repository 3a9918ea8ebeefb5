// What this file teaches: one SGD step of the Fig. 6 CNN (conv - ReLU - maxpool - linear) as ONE
// tape node, keeping its inputs and its forward's pooled activations. Its backward pass runs
// Pearlmutter's R-operator (forward mode) through the forward and the gradient, giving the
// Hessian-vector product that the vector-Jacobian product of p' = p - lr grad L(p) needs. The op
// by op unroll of the same step records ~25 nodes, several of them batch x channels x pixels.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../autodiff/autodiff.hpp"
#include "../kernels/conv.hpp"
#include "../kernels/conv_relu_pool.hpp"

namespace occam::learners {

/// The network of a fused CNN step: one conv layer (`geometry`, `channels` outputs) with a bias,
/// ReLU, `pool` x `pool` max-pooling, then a linear layer to one output; trained by SGD with
/// learning rate `lr` on the mean squared error. Parameters are packed as one column:
/// [vec W1 (channels x patch); b1 (channels); w2 (features); b2].
struct FusedCnn {
    kernels::ConvGeometry geometry;
    int channels = 16, pool = 2;
    double lr = 0.0025;

    int positions() const { return geometry.positions(); }
    int features() const { return channels * (geometry.out_h() / pool) * (geometry.out_w() / pool); }
    long packed_size() const { return long(channels) * geometry.patch() + channels + features() + 1; }
};

namespace fused_cnn_detail {

/// What the step's forward pass keeps for its backward, in the tape's arena: h = relu of the
/// pooled maxima of conv + b1 (n x F), each window's winner (n x F), and e = 2/n (out - y) with
/// out = h w2 + b2 (n). 10 bytes a feature of the batch (627 KB a fig6 step): recomputing them
/// in the backward pass cost 7% of a fig6 meta-step.
struct Forward {
    double* h;
    std::uint16_t* winner;
    double* e;
};

/// The forward pass on a batch xb (n x C H W) into fw. The layer runs through
/// kernels/conv_relu_pool.hpp (a band of rows at a time, the convolution's output never whole),
/// as do its gradient and its R-pass.
inline void forward(const FusedCnn& net, int n, const double* xb, const double* p, const double* y, const Forward& fw) {
    const int C = net.channels, F = net.features(), K = net.geometry.patch();
    const double *w1 = p, *b1 = p + long(C) * K, *w2 = b1 + C, b2 = w2[F];
    kernels::conv_relu_pool_forward(net.geometry, net.pool, n, xb, w1, b1, C, fw.h, fw.winner);
    double* out = fw.e;  // out, then e in its place
    for (int i = 0; i < n; ++i) out[i] = b2;
    for (int f = 0; f < F; ++f)  // out = h w2 + b2, column by column of h (contiguous)
        for (int i = 0; i < n; ++i) out[i] += fw.h[std::size_t(f) * n + i] * w2[f];
    for (int i = 0; i < n; ++i) fw.e[i] = 2.0 / n * (out[i] - y[i]);
}

/// The gradient of the loss for output errors `err` into `grad` (packed): dw2 = h^T err, db2 =
/// sum err, dh = err w2, then the layer's backward (kernels/conv_relu_pool.hpp): dz = dh
/// masked by h > 0 (the winners' codes carry that mask) and put back at the winners, dW1 =
/// conv2d_weight_grad(xb, dz), db1 = the column sums of dz. With v2 and dw2_extra it is the
/// R-pass's R(grad) instead: err = Re, dh gains e v2 and dw2 gains Rh^T e (dw2_extra).
/// Where the layer's backward takes its winners' path, dh is written image-major (its row i
/// of F entries, with the codes transposed to match) for the path's image-major entry, from the
/// batch's images `xr`: the column-major dh it would otherwise transpose back is never built.
/// The dense path (short patches, or a pixel that is not finite) reads xb and a column-major dh.
inline void gradient(const FusedCnn& net, int n, const double* xb, const double* xr, const Forward& fw,
                     const double* p, const double* err, const double* v2, const double* dw2_extra, double* grad,
                     kernels::AlignedVector& dh) {
    const int C = net.channels, F = net.features(), K = net.geometry.patch();
    const double* w2 = p + long(C) * K + C;
    double *dW1 = grad, *db1 = grad + long(C) * K, *dw2 = db1 + C, *db2 = dw2 + F;
    kernels::grow(dh, std::size_t(n) * F);
    double s = 0;
    for (int i = 0; i < n; ++i) s += err[i];
    *db2 = s;
    for (int f = 0; f < F; ++f) {
        const double* hf = fw.h + std::size_t(f) * n;
        double d = dw2_extra ? dw2_extra[f] : 0.0;
        for (int i = 0; i < n; ++i) d += hf[i] * err[i];
        dw2[f] = d;
    }
    // dh(i, f) = err_i w2_f (+ e_i v2_f in the R-pass); the layer keeps it where h > 0. The
    // R-pass's sum is one explicit fused multiply-add: left to contraction, the rounding
    // depended on whether the compiler vectorised the loop. at(i, f): where dh(i, f) goes.
    const auto fill_dh = [&](auto at) {
        for (int i = 0; i < n; ++i) {
            const double ei = fw.e[i], erri = err[i];
            if (v2)
                for (int f = 0; f < F; ++f) dh[at(i, f)] = std::fma(ei, v2[f], erri * w2[f]);
            else
                for (int f = 0; f < F; ++f) dh[at(i, f)] = erri * w2[f];
        }
    };
    if (net.geometry.patch() >= kernels::kWinnersFromPatch) {
        thread_local std::vector<std::uint16_t> codes;
        codes.resize(std::size_t(n) * F);
        kernels::codes_by_image(n, F, fw.winner, codes.data());
        fill_dh([F](int i, int f) { return std::size_t(i) * F + f; });
        if (kernels::conv_relu_pool_backward_winners_by_image(net.geometry, net.pool, n, xr, p, C, codes.data(),
                                                              dh.data(), nullptr, dW1, db1))
            return;
    }
    fill_dh([n](int i, int f) { return std::size_t(f) * n + i; });
    kernels::conv_relu_pool_backward_dense(net.geometry, net.pool, n, xb, p, C, fw.winner, dh.data(), nullptr, dW1,
                                           db1);
}

/// The batch's images (columns `rows` of x^T, one image per column, or all n) image-major into
/// `xr` and column-major (n x C H W, as the layer's forward reads them) into `xb`. Gathered
/// from x's columns instead, each of the 20 x 784 values was a cache miss (2% of a fig6
/// meta-step); the images are contiguous.
inline void gather(const double* images, long in, const int* rows, int n, kernels::AlignedVector& xr,
                   kernels::AlignedVector& xb) {
    kernels::grow(xr, std::size_t(n) * in);
    kernels::grow(xb, std::size_t(n) * in);
    for (int i = 0; i < n; ++i) std::copy_n(images + (rows ? rows[i] : i) * in, in, xr.data() + i * in);
    for (long k = 0; k < in; ++k)
        for (int i = 0; i < n; ++i) xb[std::size_t(k * n + i)] = xr[std::size_t(i * in + k)];
}

}  // namespace fused_cnn_detail

/// p' = p - lr grad L(p), L the mean squared error of the CNN on rows `rows` of (x, y) (empty:
/// all), as one node with first-order gradients for p and y. The inputs come as `images` =
/// x^T (C H W x N, one image per column: make it once, e.g. ad::constant(x.value().transpose()),
/// for all the steps on the same x), the task's constant, which must outlive the node (as the
/// tape's constant holding it does). The backward pass:
///   p_bar = v - lr H v,  y_bar(rows) = lr 2/n (J v)      (v = the incoming gradient)
/// with J v and H v = R(grad L) from one forward-mode pass (the R-operator) through the step.
inline ad::Var fused_cnn_step(const FusedCnn& net, const ad::Var& images, const std::vector<int>& rows,
                              const ad::Var& packed, const ad::Var& y) {
    using namespace fused_cnn_detail;
    const int n = rows.empty() ? images.cols() : int(rows.size());
    if (packed.rows() != net.packed_size() || packed.cols() != 1 || images.rows() != net.geometry.in_size() ||
        y.cols() != 1 || y.rows() != images.cols())
        throw ad::ShapeError("fused_cnn_step: parameters, images (one per column) or labels do not fit the network");
    for (const int r : rows)
        if (r < 0 || r >= images.cols())
            throw ad::ShapeError("fused_cnn_step: batch row " + std::to_string(r) + " is outside the " +
                                 std::to_string(images.cols()) + " images");
    ad::Tape& t = ad::tape();
    int* kept_rows = rows.empty() ? nullptr : t.arena.allocate_array<int>(rows.size());
    if (kept_rows) std::copy(rows.begin(), rows.end(), kept_rows);
    const std::size_t nf = std::size_t(n) * net.features();
    const Forward fw{t.arena.allocate_array<double>(nf), t.arena.allocate_array<std::uint16_t>(nf),
                     t.arena.allocate_array<double>(std::size_t(n))};
    const double* idata = images.value().data();
    ad::Node* node = t.push(
        "fused_cnn_step", packed.rows(), 1,
        [nt = net, kept_rows, n, idata, fw](const ad::Node& self, const ad::Var& g, ad::Var* grads) {
            thread_local kernels::AlignedVector xr, xb, dh, Rh, Rout, Re, Rdw2, Rgrad;
            gather(idata, nt.geometry.in_size(), kept_rows, n, xr, xb);
            const double* p = self.inputs[0]->data;
            const int C = nt.channels, F = nt.features(), K = nt.geometry.patch();
            const double* v = g.value().data();
            const double *V1 = v, *vb1 = v + long(C) * K, *v2 = vb1 + C, vb2 = v2[F];
            const double* w2 = p + long(C) * K + C;
            // R-pass: Rz = conv(xb, V1) + vb1; Rh = Rz at the winners where h > 0 (a band of
            // Rz at a time); Rout = Rh w2 + h v2 + vb2; Re = 2/n Rout.
            kernels::grow(Rh, std::size_t(n) * F);
            kernels::grow(Rout, std::size_t(n));
            kernels::grow(Re, std::size_t(n));
            kernels::conv_pool_take(nt.geometry, nt.pool, n, xb.data(), V1, vb1, C, fw.winner, Rh.data());
            for (int i = 0; i < n; ++i) Rout[i] = vb2;
            for (int f = 0; f < F; ++f)
                for (int i = 0; i < n; ++i) {
                    const std::size_t k = std::size_t(f) * n + i;
                    Rout[i] += Rh[k] * w2[f] + fw.h[k] * v2[f];
                }
            for (int i = 0; i < n; ++i) Re[i] = 2.0 / n * Rout[i];
            // R(grad): the gradient formula with err = Re, plus the terms from R of h and w2:
            // R dw2 = h^T Re + Rh^T e, R dh = Re w2 + e v2 (masked, put at the argmax).
            kernels::grow(Rdw2, std::size_t(F));
            for (int f = 0; f < F; ++f) {
                double s = 0;
                for (int i = 0; i < n; ++i) s += Rh[std::size_t(f) * n + i] * fw.e[i];
                Rdw2[f] = s;
            }
            kernels::grow(Rgrad, std::size_t(nt.packed_size()));
            gradient(nt, n, xb.data(), xr.data(), fw, p, Re.data(), v2, Rdw2.data(), Rgrad.data(), dh);
            if (self.needs(0)) {
                const ad::Var p_bar = ad::constant(g.value());
                for (long k = 0; k < nt.packed_size(); ++k) p_bar.node()->data[k] -= nt.lr * Rgrad[std::size_t(k)];
                grads[0] = p_bar;
            }
            if (self.needs(1)) {
                const ad::Var y_bar = ad::zeros(self.inputs[1]->rows, 1);
                for (int i = 0; i < n; ++i) y_bar.node()->data[kept_rows ? kept_rows[i] : i] += nt.lr * Re[i];
                grads[1] = y_bar;
            }
        },
        {packed.node(), y.node()}, ad::Derivatives::first_order);
    // The step itself: grad L at p, then p' = p - lr grad.
    thread_local kernels::AlignedVector xr, xb, yb, dh, grad;
    gather(idata, net.geometry.in_size(), kept_rows, n, xr, xb);
    kernels::grow(yb, std::size_t(n));
    for (int i = 0; i < n; ++i) yb[i] = y.value()(kept_rows ? kept_rows[i] : i, 0);
    const double* p = packed.value().data();
    forward(net, n, xb.data(), p, yb.data(), fw);
    kernels::grow(grad, std::size_t(net.packed_size()));
    gradient(net, n, xb.data(), xr.data(), fw, p, fw.e, nullptr, nullptr, grad.data(), dh);
    for (long k = 0; k < net.packed_size(); ++k) node->data[k] = p[k] - net.lr * grad[std::size_t(k)];
    return ad::Var(node);
}

}  // namespace occam::learners
