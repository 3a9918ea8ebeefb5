// What this file teaches: one SGD step of a small ReLU network and its Hessian-vector
// backward (Pearlmutter's R-operator) as loops over blocks of eight examples, with relu and
// relu' fused into the products' stores. learners/fused_step.hpp makes it one tape node.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "buffer.hpp"
#include "lanes.hpp"

OCCAM_KERNELS_BEGIN

namespace occam::kernels {

/// What every step of one inner training shares: a ReLU MLP (identity output, one output)
/// trained by plain SGD on the mean squared error, with an optional 0/1 mask on the first
/// layer's weights (masked weights stay zero) and an optional |W0| projection after each step.
/// Parameters are packed in one column: W0, b0, W1, b1, ... each column-major.
struct FusedSgdNet {
    std::vector<int> widths;
    double lr = 0.0;
    bool positive = false;
    /// The first layer's connections as compressed rows: unit o reads the inputs
    /// first_inputs[first_start[o] .. first_start[o + 1]). Empty: every input.
    std::vector<int> first_start, first_inputs;
    std::vector<Eigen::Index> w_at, b_at;  ///< where W_l and b_l start in the packed parameters
    std::vector<int> width_sum;            ///< width_sum[l] = widths[0] + ... + widths[l - 1]
    int widest = 0;                        ///< max(widths[1..L])

    FusedSgdNet(std::vector<int> w, const Eigen::MatrixXd& mask, bool positive_, double lr_)
        : widths(std::move(w)), lr(lr_), positive(positive_) {
        if (widths.size() < 2 || widths.back() != 1)
            throw std::invalid_argument("fused SGD step: needs at least one layer and one output");
        Eigen::Index at = 0;
        width_sum.assign(widths.size() + 1, 0);
        for (std::size_t l = 0; l < widths.size(); ++l) width_sum[l + 1] = width_sum[l] + widths[l];
        widest = *std::max_element(widths.begin() + 1, widths.end());
        for (int l = 0; l < layers(); ++l) {
            w_at.push_back(at);
            at += Eigen::Index(widths[std::size_t(l + 1)]) * widths[std::size_t(l)];
            b_at.push_back(at);
            at += widths[std::size_t(l + 1)];
        }
        if (mask.size() == 0) return;
        if (mask.rows() != widths[1] || mask.cols() != widths[0])
            throw std::invalid_argument("fused SGD step: the mask must be hidden x inputs");
        first_start.push_back(0);
        for (int o = 0; o < widths[1]; ++o) {
            for (int k = 0; k < widths[0]; ++k) {
                if (mask(o, k) != 0.0 && mask(o, k) != 1.0)
                    throw std::invalid_argument("fused SGD step: the mask must hold 0 and 1 only");
                if (mask(o, k) == 1.0) first_inputs.push_back(k);
            }
            first_start.push_back(int(first_inputs.size()));
        }
    }

    int layers() const { return int(widths.size()) - 1; }
    Eigen::Index packed_size() const { return b_at.back() + 1; }
};

namespace sgd_step {

// The step's activations are stored example-major: a matrix with `ld` rows (the batch rounded
// up to whole blocks of 8, the extra rows kept harmless: their deltas are zero) and one column
// per unit, so every column is a run of blocks.

/// One term of a column combination: columns k of A (ld apart) weighted by M(j, k) = m[j sj + k sk].
struct Term {
    const double* A;
    const double* m;
    long sj, sk;
};
/// What a combination writes: its sums, relu of them, or them where gate > 0 (else zero).
enum class Finish { sum, relu, gate };

/// out[:, j] = bias_j + sum over terms of sum_k M(j, k) A[:, k] for j < cols, the k in turn (all
/// `in` of them, or unit j's list in the compressed rows `start`/`index`), for RB blocks of 8
/// rows from block r0. The RB blocks stay in registers while k runs.
template <class B, int RB>
OCCAM_LANES_INLINE void combine_blocks(int r0, long ld, int cols, int in, const Term* terms, int n_terms,
                                       const double* bias, const int* start, const int* index, Finish finish,
                                       const double* gate, double* out) {
    using L = lanes::Ops<B>;
    const long row = long(r0) * 8;
    for (int j = 0; j < cols; ++j) {
        B acc[RB];
        for (int r = 0; r < RB; ++r) acc[r] = L::splat(bias ? bias[j] : 0.0);
        for (int t = 0; t < n_terms; ++t) {
            const Term& T = terms[t];
            const int k0 = start ? start[j] : 0, k1 = start ? start[j + 1] : in;
            for (int kk = k0; kk < k1; ++kk) {
                const int k = start ? index[kk] : kk;
                const double w = T.m[j * T.sj + k * T.sk];
                const double* a = T.A + k * ld + row;
                for (int r = 0; r < RB; ++r) acc[r] = acc[r] + L::load(a + 8 * r) * w;
            }
        }
        double* o = out + j * ld + row;
        for (int r = 0; r < RB; ++r) {
            B v = acc[r];
            if (finish == Finish::relu) v = L::max(v, L::splat(0.0));
            if (finish == Finish::gate)
                v = L::select(L::load(gate + j * ld + row + 8 * r) > L::splat(0.0), v, L::splat(0.0));
            L::store(o + 8 * r, v);
        }
    }
}

template <class B>
OCCAM_LANES_INLINE void combine(long ld, int cols, int in, const Term* terms, int n_terms, const double* bias,
                                const int* start, const int* index, Finish finish, const double* gate, double* out) {
    const int blocks = int(ld / 8);
    int r = 0;
    for (; r + 4 <= blocks; r += 4)
        combine_blocks<B, 4>(r, ld, cols, in, terms, n_terms, bias, start, index, finish, gate, out);
    for (; r < blocks; ++r)
        combine_blocks<B, 1>(r, ld, cols, in, terms, n_terms, bias, start, index, finish, gate, out);
}

/// target[j + k cols] += scale sum_i (D1[i, j] A1[i, k] + D2[i, j] A2[i, k]) (D2 may be null)
/// for j < cols and k over all `in` inputs or unit j's list, then
/// target_b[j] += scale sum_i D1[i, j]. Each sum runs over the blocks in order, then the lanes.
template <class B>
OCCAM_LANES_INLINE void outer_sums(long ld, int cols, int in, const double* D1, const double* A1, const double* D2,
                                   const double* A2, const int* start, const int* index, double scale, double* target,
                                   double* target_b) {
    using L = lanes::Ops<B>;
    const int blocks = int(ld / 8);
    for (int j = 0; j < cols; ++j) {
        const double* d1 = D1 + j * ld;
        const double* d2 = D2 ? D2 + j * ld : nullptr;
        const int k0 = start ? start[j] : 0, k1 = start ? start[j + 1] : in;
        for (int kk = k0; kk < k1; ++kk) {
            const int k = start ? index[kk] : kk;
            const double* a1 = A1 + k * ld;
            B acc = L::splat(0.0);
            for (int r = 0; r < blocks; ++r) acc = acc + L::load(d1 + 8 * r) * L::load(a1 + 8 * r);
            if (d2) {
                const double* a2 = A2 + k * ld;
                for (int r = 0; r < blocks; ++r) acc = acc + L::load(d2 + 8 * r) * L::load(a2 + 8 * r);
            }
            target[j + long(k) * cols] += scale * L::sum(acc);
        }
        B acc = L::splat(0.0);
        for (int r = 0; r < blocks; ++r) acc = acc + L::load(d1 + 8 * r);
        target_b[j] += scale * L::sum(acc);
    }
}

/// Where the step's kept values sit (offsets in doubles into one buffer of `ld` rows):
/// a_0 (the batch) .. a_{L-1}, then delta_0 .. delta_{L-1}, then W0 before the projection.
struct KeptLayout {
    long ld;
    long a(const FusedSgdNet& net, int l) const { return ld * net.width_sum[std::size_t(l)]; }
    long delta(const FusedSgdNet& net, int l) const {
        return ld * (net.width_sum[std::size_t(net.layers())] + net.width_sum[std::size_t(l + 1)] - net.widths[0]);
    }
    long pre_projection(const FusedSgdNet& net) const { return delta(net, net.layers()); }
    long size(const FusedSgdNet& net) const {
        return pre_projection(net) + (net.positive ? long(net.widths[1]) * net.widths[0] : 0);
    }
};

/// The backward pass's scratch, laid out the same way: R a_1 .. R a_{L-1} and R out
/// (Ra(L)), two buffers for R delta, then the batch's y_bar.
struct WorkLayout {
    long ld;
    long Ra(const FusedSgdNet& net, int l) const { return ld * (net.width_sum[std::size_t(l)] - net.widths[0]); }
    long Rdelta(const FusedSgdNet& net, int buffer) const {
        return Ra(net, net.layers() + 1) + buffer * ld * net.widest;
    }
    long y_bar(const FusedSgdNet& net) const { return Rdelta(net, 2); }
    long size(const FusedSgdNet& net) const { return y_bar(net) + ld; }
};

/// The forward pass and the gradient step. `kept` holds the batch in a_0 on entry and the
/// activations and deltas on return; q holds p on entry and p - lr grad L(p) (then |W0|) on return.
///   z_l = a_l W_l^T + b_l,  a_{l+1} = relu(z_l),  out = z_{L-1},  L = mean((out - y)^2)
///   delta_{L-1} = 2 (out - y) / n,  gW_l = delta_l^T a_l,  gb_l = colsum(delta_l),
///   delta_{l-1} = (delta_l W_l) .* [a_l > 0]   ([a_l > 0] = [z_{l-1} > 0])
template <class B>
OCCAM_LANES_INLINE void step_forward(const FusedSgdNet& net, int n, long ld, const double* p, const double* y,
                                     double* kept, double* q) {
    const int L = net.layers();
    const KeptLayout at{ld};
    const int* start = net.first_start.empty() ? nullptr : net.first_start.data();
    const int* index = net.first_inputs.data();
    for (int l = 0; l < L; ++l) {
        const int in = net.widths[std::size_t(l)], out = net.widths[std::size_t(l + 1)];
        const Term t{kept + at.a(net, l), p + net.w_at[std::size_t(l)], 1, out};
        const bool last = l + 1 == L;
        combine<B>(ld, out, in, &t, 1, p + net.b_at[std::size_t(l)], l == 0 ? start : nullptr, index,
                   last ? Finish::sum : Finish::relu, nullptr, kept + (last ? at.delta(net, L - 1) : at.a(net, l + 1)));
    }
    double* d = kept + at.delta(net, L - 1);  // holds out
    for (int i = 0; i < n; ++i) d[i] = (2.0 / n) * (d[i] - y[i]);
    std::fill(d + n, d + ld, 0.0);  // the padding rows contribute nothing below
    for (int l = L - 1; l >= 0; --l) {
        const int in = net.widths[std::size_t(l)], out = net.widths[std::size_t(l + 1)];
        const double* delta = kept + at.delta(net, l);
        const double* W = p + net.w_at[std::size_t(l)];
        if (l > 0) {
            const Term t{delta, W, out, 1};
            combine<B>(ld, in, out, &t, 1, nullptr, nullptr, nullptr, Finish::gate, kept + at.a(net, l),
                       kept + at.delta(net, l - 1));
        }
        outer_sums<B>(ld, out, in, delta, kept + at.a(net, l), nullptr, nullptr, l == 0 ? start : nullptr, index,
                      -net.lr, q + net.w_at[std::size_t(l)], q + net.b_at[std::size_t(l)]);
    }
    if (net.positive) {
        double* w0 = q + net.w_at[0];
        const long nw = long(net.widths[1]) * net.widths[0];
        std::copy(w0, w0 + nw, kept + at.pre_projection(net));
        for (long i = 0; i < nw; ++i) w0[i] = std::abs(w0[i]);
    }
}

/// The vector-Jacobian product for the adjoint v of p'. With R{.} the derivative along
/// the direction V (v, after the |.| projection's sign for W0):
///   R z_l = R a_l W_l^T + a_l V_Wl^T + V_bl,  R a_{l+1} = R z_l .* [z_l > 0],  R a_0 = 0
///   R delta_{L-1} = 2 R out / n
///   R gW_l = R delta_l^T a_l + delta_l^T R a_l,  R gb_l = colsum(R delta_l)
///   R delta_{l-1} = (R delta_l W_l + delta_l V_Wl) .* [z_{l-1} > 0]
/// Then  p_bar = V - lr (R gW, R gb)  (= V - lr H V, H the loss's Hessian) and
///       y_bar = (2 lr / n) R out     (from d grad / d y = -(2/n) d out / d p).
/// p_bar holds v on entry; `work` has WorkLayout{ld}.size(net) doubles, y_bar at its y_bar().
template <class B>
OCCAM_LANES_INLINE void step_backward(const FusedSgdNet& net, int n, long ld, const double* p, const double* kept,
                                      double* p_bar, double* work) {
    const int L = net.layers();
    const KeptLayout at{ld};
    const int* start = net.first_start.empty() ? nullptr : net.first_start.data();
    const int* index = net.first_inputs.data();
    if (net.positive) {  // d|u|/du = sign(u) at the pre-projection weights
        const double* pre = kept + at.pre_projection(net);
        const long nw = long(net.widths[1]) * net.widths[0];
        for (long i = 0; i < nw; ++i) p_bar[i] *= double((pre[i] > 0) - (pre[i] < 0));
    }
    // V is read from p_bar, whose layer l changes only after its last use.
    const WorkLayout w{ld};
    auto Ra = [&](int l) { return work + w.Ra(net, l); };
    double* Rout = Ra(L);
    double* Rd[2] = {work + w.Rdelta(net, 0), work + w.Rdelta(net, 1)};
    double* y_bar = work + w.y_bar(net);
    const double* V = p_bar;
    for (int l = 0; l < L; ++l) {
        const int in = net.widths[std::size_t(l)], out = net.widths[std::size_t(l + 1)];
        const double* VW = V + net.w_at[std::size_t(l)];
        const Term terms[2] = {{kept + at.a(net, l), VW, 1, out},
                               {l > 0 ? Ra(l) : nullptr, p + net.w_at[std::size_t(l)], 1, out}};
        const bool last = l + 1 == L;
        combine<B>(ld, out, in, terms, l > 0 ? 2 : 1, V + net.b_at[std::size_t(l)], l == 0 ? start : nullptr, index,
                   last ? Finish::sum : Finish::gate, last ? nullptr : kept + at.a(net, l + 1),
                   last ? Rout : Ra(l + 1));
    }
    for (int i = 0; i < n; ++i) y_bar[i] = (2.0 * net.lr / n) * Rout[i];
    double* Rdelta = Rd[0];
    for (int i = 0; i < n; ++i) Rdelta[i] = (2.0 / n) * Rout[i];
    std::fill(Rdelta + n, Rdelta + ld, 0.0);
    for (int l = L - 1; l >= 0; --l) {
        const int in = net.widths[std::size_t(l)], out = net.widths[std::size_t(l + 1)];
        const double* delta = kept + at.delta(net, l);
        double* VW = p_bar + net.w_at[std::size_t(l)];
        double* next = Rdelta == Rd[0] ? Rd[1] : Rd[0];
        if (l > 0) {  // before p_bar's layer l changes: it still holds V_Wl
            const Term terms[2] = {{Rdelta, p + net.w_at[std::size_t(l)], out, 1}, {delta, VW, out, 1}};
            combine<B>(ld, in, out, terms, 2, nullptr, nullptr, nullptr, Finish::gate, kept + at.a(net, l), next);
        }
        outer_sums<B>(ld, out, in, Rdelta, kept + at.a(net, l), l > 0 ? delta : nullptr, l > 0 ? Ra(l) : nullptr,
                      l == 0 ? start : nullptr, index, -net.lr, VW, p_bar + net.b_at[std::size_t(l)]);
        Rdelta = next;
    }
}

}  // namespace sgd_step

}  // namespace occam::kernels

OCCAM_KERNELS_END
