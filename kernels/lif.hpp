// What this file teaches: a spiking circuit (leaky integrate-and-fire units driven by input
// spike trains, read out by a leaky integrator) as three loops over time: its forward pass, its
// backpropagation through time with a surrogate gradient, and the forward-mode derivative of
// both (the tangent pass), which is what a meta-gradient through training needs. Plain loops on
// raw arrays; learners/spiking.hpp wraps them as tape nodes.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "lanes.hpp"

OCCAM_KERNELS_BEGIN

namespace occam::kernels::lif {

/// The spike nonlinearity s = H(x), x = v - threshold, and the derivative that replaces H' = 0 in
/// the backward pass (the surrogate gradient, Neftci, Mostafa & Zenke 2019):
///   sigmoid:       g(x) = beta sig(beta x) (1 - sig(beta x)),     g'(x) = beta^2 sig (1 - sig) (1 - 2 sig)
///   fast-sigmoid:  g(x) = 1 / (1 + scale |x|)^2 (SuperSpike, as SpyTorch normalises it),
///                  g'(x) = -2 scale sgn(x) / (1 + scale |x|)^3, and 0 at x = 0.
/// A meta-gradient differentiates the backward pass again, so it needs g' too; never a third
/// derivative. With `smooth` the forward value is a function whose true derivative is g
/// (sig(beta x), or x / (1 + scale |x|)) instead of H(x): a circuit whose gradients are exact
/// derivatives, so they can be checked by finite differences. (autodiff/ops/spike.hpp is the
/// same primitive as a tape op, written independently; the tests check one against the other.)
struct Surrogate {
    enum class Kind { sigmoid, fast_sigmoid };
    Kind kind = Kind::sigmoid;
    double beta = 5.0;     ///< sigmoid: steepness
    double scale = 100.0;  ///< fast sigmoid: lambda
    bool smooth = false;   ///< forward: g's antiderivative instead of H(x) (for checks)

    double sig(double x) const { return 1.0 / (1.0 + std::exp(-beta * x)); }
    /// The forward value: 1 if x > 0 (strictly), else 0.
    double spike(double x) const {
        if (!smooth) return x > 0.0 ? 1.0 : 0.0;
        return kind == Kind::sigmoid ? sig(x) : x / (1.0 + scale * std::abs(x));
    }
    double g(double x) const {
        if (kind == Kind::sigmoid) {
            const double s = sig(x);
            return beta * s * (1.0 - s);
        }
        const double d = 1.0 + scale * std::abs(x);
        return 1.0 / (d * d);
    }
    double dg(double x) const {
        if (kind == Kind::sigmoid) {
            const double s = sig(x);
            return beta * beta * s * (1.0 - s) * (1.0 - 2.0 * s);
        }
        if (x == 0.0) return 0.0;
        const double d = 1.0 + scale * std::abs(x);
        return (x > 0 ? -2.0 : 2.0) * scale / (d * d * d);
    }
};

/// When a unit's spike is read from its membrane:
///  - spytorch: s_k = H(v_k - 1), then v_{k+1} = (alpha v_k + I_k)(1 - s_k)
///  - tutorial: s_k = H(v_{k-1} - 1) with s_0 = 0 (the Cosyne 2022 tutorial's loop: a spike
///    reflects the previous bin and the reset lands one bin later)
enum class Order { spytorch, tutorial };

/// The circuit's constants. Units start at v_0 = 0; the membrane update of bin k is
///   q_k = alpha v_k + I_k,  I_k = x_k W1,  v_{k+1} = q_k (1 - s_k)   (multiplicative reset),
/// and the output is the time mean of a leaky integrator of the hidden spikes, u_0 = 0,
/// u_{k+1} = alpha u_k + s_k W2, y = (1/Ts) sum_k u_k, which in closed form is
///   y = sum_k r_k s_k W2,  r_k = (1 - alpha^(Ts-1-k)) / ((1 - alpha) Ts)   (so r_{Ts-1} = 0).
struct Circuit {
    int inputs = 0, hidden = 0, bins = 0;
    double alpha = 0.95;
    double threshold = 1.0;
    Order order = Order::spytorch;
    bool detach_reset = false;  ///< the reset's (1 - s) carries no gradient (SpyTorch)
    Surrogate surrogate;
    std::vector<double> readout;  ///< r_k, k = 0..bins-1

    Circuit() = default;
    Circuit(int n_inputs, int n_hidden, int n_bins, double a, Order o, bool detach, Surrogate s)
        : inputs(n_inputs), hidden(n_hidden), bins(n_bins), alpha(a), order(o), detach_reset(detach), surrogate(s) {
        if (inputs < 1 || hidden < 1 || bins < 1)
            throw std::invalid_argument("lif circuit: inputs, hidden units and time bins must be >= 1");
        if (!(alpha > 0.0 && alpha < 1.0)) throw std::invalid_argument("lif circuit: alpha must be in (0, 1)");
        readout.resize(std::size_t(bins));
        for (int k = 0; k < bins; ++k)
            readout[std::size_t(k)] = (1.0 - std::pow(alpha, bins - 1 - k)) / ((1.0 - alpha) * bins);
    }
    /// Values per trial in each of the state arrays below.
    long per_trial() const { return long(bins) * hidden; }
    /// The bin whose membrane decides spike k (-1: none, the spike is the constant 0).
    int source(int k) const { return order == Order::spytorch ? k : k - 1; }
};

/// Input spike trains of a batch of trials, as the list of active inputs per (trial, bin): the
/// inputs are 0/1, so I_k = x_k W1 is a sum of the active rows of W1 (about a third of them).
struct SpikeTrains {
    int trials = 0, bins = 0, inputs = 0;
    std::vector<int> start;             ///< (trials * bins + 1) offsets into `active`
    std::vector<std::uint16_t> active;  ///< input indices

    /// From a trials x (bins * inputs) matrix of 0/1 values, column k * inputs + j.
    static SpikeTrains from_matrix(const Eigen::Ref<const Eigen::MatrixXd>& X, int bins) {
        if (bins < 1 || X.cols() % bins != 0)
            throw std::invalid_argument("spike trains: " + std::to_string(X.cols()) + " columns are not " +
                                        std::to_string(bins) + " time bins of equal width");
        SpikeTrains t;
        t.trials = int(X.rows());
        t.bins = bins;
        t.inputs = int(X.cols() / bins);
        if (t.inputs > 65535) throw std::invalid_argument("spike trains: more than 65535 inputs");
        t.start.reserve(std::size_t(t.trials) * bins + 1);
        t.start.push_back(0);
        for (int b = 0; b < t.trials; ++b)
            for (int k = 0; k < bins; ++k) {
                for (int j = 0; j < t.inputs; ++j) {
                    const double x = X(b, Eigen::Index(k) * t.inputs + j);
                    if (x == 1.0)
                        t.active.push_back(std::uint16_t(j));
                    else if (x != 0.0)
                        throw std::invalid_argument("spike trains: values must be 0 or 1, found " + std::to_string(x));
                }
                t.start.push_back(int(t.active.size()));
            }
        return t;
    }
    const std::uint16_t* begin(int b, int k) const { return active.data() + start[std::size_t(b) * bins + k]; }
    const std::uint16_t* end(int b, int k) const { return active.data() + start[std::size_t(b) * bins + k + 1]; }
};

/// What the forward pass keeps, per (trial, bin, unit), index (b * bins + k) * hidden + i:
/// the membrane v_k, the spike s_k, the pre-reset membrane q_k, and the surrogate g_k = g(x_k)
/// and its derivative g'(x_k) at the spike's argument x_k (both 0 where the spike is a constant).
struct ForwardState {
    double *v, *s, *q, *g, *g_prime;
};
/// What the backward pass keeps for the tangent pass: v-bar_{k+1} and s-bar_k.
struct BackwardState {
    double *v_bar_next, *s_bar;
};

namespace detail {
/// sum over the active inputs j of (trial b, bin k) of rows[j * hidden + i]: out[i].
inline void gather_sum(const SpikeTrains& x, int b, int k, const double* rows, int hidden, double* out) {
    std::fill(out, out + hidden, 0.0);
    for (const std::uint16_t* j = x.begin(b, k); j != x.end(b, k); ++j) {
        const double* row = rows + long(*j) * hidden;
        for (int i = 0; i < hidden; ++i) out[i] += row[i];
    }
}
/// rows[j * hidden + i] += in[i] for every active input j of (trial b, bin k).
inline void scatter_add(const SpikeTrains& x, int b, int k, const double* in, int hidden, double* rows) {
    for (const std::uint16_t* j = x.begin(b, k); j != x.end(b, k); ++j) {
        double* row = rows + long(*j) * hidden;
        for (int i = 0; i < hidden; ++i) row[i] += in[i];
    }
}

/// g(x) and g'(x) at x = v - threshold for eight membranes at once (lanes.hpp's exp, so the
/// AVX2 and AVX-512 copies agree to the bit). The sigmoid's are written through sig = 1 / (1 +
/// e^(-beta x)): g = beta sig (1 - sig), g' = beta g (1 - 2 sig); exp's argument is clamped to
/// +-700, where sig is 0 or 1 to double precision anyway.
template <class B>
OCCAM_LANES_INLINE void surrogate_block(const Surrogate& s, B v, double threshold, B& g, B& g_prime) {
    using O = lanes::Ops<B>;
    const B x = v - threshold;
    if (s.kind == Surrogate::Kind::sigmoid) {
        B z = x * -s.beta;
        z = O::select(z > O::splat(700.0), O::splat(700.0), z);
        z = O::select(O::splat(-700.0) > z, O::splat(-700.0), z);
        const B sig = O::splat(1.0) / (1.0 + O::exp(z));
        g = s.beta * sig * (1.0 - sig);
        g_prime = s.beta * g * (1.0 - 2.0 * sig);
    } else {
        const B zero = O::splat(0.0);
        const B magnitude = O::select(x > zero, x, zero - x);
        const B d = 1.0 + s.scale * magnitude;
        g = O::splat(1.0) / (d * d);
        const B sign = O::select(x > zero, O::splat(-1.0), O::select(zero > x, O::splat(1.0), zero));
        g_prime = (2.0 * s.scale) * sign * g / d;
    }
}
/// g and g' at v[0..n) - threshold.
template <class B>
OCCAM_LANES_INLINE void surrogate_values(const Surrogate& s, const double* v, double threshold, long n, double* g,
                                         double* g_prime) {
    using O = lanes::Ops<B>;
    B gb, gpb;
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        surrogate_block<B>(s, O::load(v + i), threshold, gb, gpb);
        O::store(g + i, gb);
        O::store(g_prime + i, gpb);
    }
    if (i == n) return;
    double in[8] = {}, out_g[8], out_gp[8];  // the tail, as one padded block
    std::copy(v + i, v + n, in);
    surrogate_block<B>(s, O::load(in), threshold, gb, gpb);
    O::store(out_g, gb);
    O::store(out_gp, gpb);
    std::copy(out_g, out_g + (n - i), g + i);
    std::copy(out_gp, out_gp + (n - i), g_prime + i);
}
}  // namespace detail

/// The forward pass. w1 is inputs x hidden stored by input (w1[j * hidden + i]); w2 has hidden
/// entries; y gets one output per trial. `scratch` holds 2 * hidden doubles.
inline void forward(const Circuit& c, const SpikeTrains& x, const double* w1, const double* w2, double* y,
                    const ForwardState& st, double* scratch) {
    const int H = c.hidden;
    const long per = c.per_trial();
    const bool tutorial = c.order == Order::tutorial;
    const Surrogate sur = c.surrogate;
    double* current = scratch;  // I_k
    double* v = scratch + H;    // the running membrane
    for (int b = 0; b < x.trials; ++b) {
        std::fill(v, v + H, 0.0);
        double out = 0.0;
        for (int k = 0; k < c.bins; ++k) {
            const long at = long(b) * per + long(k) * H;
            double* s = st.s + at;
            detail::gather_sum(x, b, k, w1, H, current);
            if (tutorial && k == 0) {
                std::fill(s, s + H, 0.0);  // s_0 = 0: no earlier membrane
            } else {
                const double* source = tutorial ? st.v + at - H : v;  // v_{k-1} or v_k
                if (sur.smooth)
                    for (int i = 0; i < H; ++i) s[i] = sur.spike(source[i] - c.threshold);
                else
                    for (int i = 0; i < H; ++i) s[i] = source[i] - c.threshold > 0.0 ? 1.0 : 0.0;
            }
            for (int i = 0; i < H; ++i) {
                const double q = c.alpha * v[i] + current[i];
                st.v[at + i] = v[i];
                st.q[at + i] = q;
                v[i] = q * (1.0 - s[i]);
            }
            double r = 0.0;
            for (int i = 0; i < H; ++i) r += s[i] * w2[i];
            out += c.readout[std::size_t(k)] * r;
        }
        y[b] = out;
        // The surrogate at every spike's argument, in one vectorised pass over the trial.
        const long base = long(b) * per;
        if (tutorial) {
            std::fill(st.g + base, st.g + base + H, 0.0);
            std::fill(st.g_prime + base, st.g_prime + base + H, 0.0);
            lanes::run([&]<class B>() OCCAM_LANES_KERNEL {
                detail::surrogate_values<B>(sur, st.v + base, c.threshold, per - H, st.g + base + H,
                                            st.g_prime + base + H);
            });
        } else {
            lanes::run([&]<class B>() OCCAM_LANES_KERNEL {
                detail::surrogate_values<B>(sur, st.v + base, c.threshold, per, st.g + base, st.g_prime + base);
            });
        }
    }
}

/// Backpropagation through time: given y-bar (one per trial), accumulates W1-bar (by input, as
/// w1) and W2-bar. Sweeping k = Ts-1 .. 0 with v-bar_Ts = 0 (v-bar_{k+1} is complete at bin k):
///   s-bar_k = y-bar r_k W2 - [reset not detached] q_k v-bar_{k+1}
///   q-bar_k = v-bar_{k+1} (1 - s_k) = I-bar_k,        W1-bar += x_k^T I-bar_k
///   v-bar_k = alpha q-bar_k (+ s-bar_k g_k, or in tutorial order s-bar_{k+1} g_{k+1})
///   W2-bar += y-bar r_k s_k
/// `keep` (may be null) receives v-bar_{k+1} and s-bar_k for the tangent pass. `scratch`
/// holds 3 * hidden doubles.
inline void backward(const Circuit& c, const SpikeTrains& x, const double* w2, const ForwardState& st,
                     const double* y_bar, double* w1_bar, double* w2_bar, const BackwardState* keep, double* scratch) {
    const int H = c.hidden;
    const long per = c.per_trial();
    const bool tutorial = c.order == Order::tutorial, attached = !c.detach_reset;
    double* vb = scratch;          // v-bar_{k+1}, then v-bar_k
    double* carry = scratch + H;   // tutorial order: s-bar_{k+1} g_{k+1}, owed to v-bar_k
    double* qb = scratch + 2 * H;  // q-bar_k
    for (int b = 0; b < x.trials; ++b) {
        std::fill(vb, vb + H, 0.0);
        std::fill(carry, carry + H, 0.0);
        for (int k = c.bins - 1; k >= 0; --k) {
            const long at = long(b) * per + long(k) * H;
            const double direct = y_bar[b] * c.readout[std::size_t(k)];
            const double *s = st.s + at, *q = st.q + at, *g = st.g + at;
            for (int i = 0; i < H; ++i) {
                const double sb = direct * w2[i] - (attached ? q[i] * vb[i] : 0.0);
                if (keep) {
                    keep->v_bar_next[at + i] = vb[i];
                    keep->s_bar[at + i] = sb;
                }
                qb[i] = vb[i] * (1.0 - s[i]);
                w2_bar[i] += direct * s[i];
                const double through_spike = sb * g[i];
                if (tutorial) {
                    vb[i] = c.alpha * qb[i] + carry[i];
                    carry[i] = through_spike;
                } else {
                    vb[i] = c.alpha * qb[i] + through_spike;
                }
            }
            detail::scatter_add(x, b, k, qb, H, w1_bar);
        }
    }
}

/// The tangent pass: the forward-mode derivative of the forward pass and of the backward pass
/// (y-bar held fixed) along a direction (dW1, dW2). It gives
///   y-dot = J (dW1, dW2)                       (J = dy/dW under the surrogate rule), and
///   (dW1-bar, dW2-bar) = d/dt G(W + t dW)      (G = J^T y-bar, the backward pass's output),
/// with H'(x) := g(x) and g' for the derivative of g, the same rules reverse mode uses. The
/// second is a Hessian-vector product of psi(W) = y-bar . y(W), whose Hessian under those rules
/// is symmetric; so it is also the vector-Jacobian product of G, which is what the tape needs
/// to differentiate through a training step. Per bin, differentiating each line of forward()
/// and backward():
///   dI_k = x_k dW1,  ds_k = g_k dv_src,  dg_k = g'_k dv_src,  dq_k = alpha dv_k + dI_k
///   dv_{k+1} = dq_k (1 - s_k) - [not detached] q_k ds_k
///   y-dot = sum_k r_k (ds_k W2 + s_k dW2)
///   ds-bar_k = y-bar r_k dW2 - [not detached] (dq_k v-bar_{k+1} + q_k dv-bar_{k+1})
///   dq-bar_k = dv-bar_{k+1} (1 - s_k) - [not detached] v-bar_{k+1} ds_k
///   dv-bar_k = alpha dq-bar_k + ds-bar g + s-bar dg (at the spike's source bin)
///   dW1-bar += x_k^T dq-bar_k,  dW2-bar += y-bar r_k ds_k
/// (dv_src is dv_k, or in tutorial order dv_{k-1}; where the spike is a constant g = g' = 0.)
/// Accumulates into dw1_bar and dw2_bar; writes y_dot. `scratch` holds 3 * bins * hidden + 4 *
/// hidden doubles.
inline void tangent(const Circuit& c, const SpikeTrains& x, const double* w2, const ForwardState& st,
                    const BackwardState& bk, const double* y_bar, const double* dw1, const double* dw2, double* y_dot,
                    double* dw1_bar, double* dw2_bar, double* scratch) {
    const int H = c.hidden;
    const long per = c.per_trial();
    const bool tutorial = c.order == Order::tutorial, attached = !c.detach_reset;
    double* ds = scratch;  // per bin and unit, this trial
    double* dg = scratch + per;
    double* dq = scratch + 2 * per;
    double* dv = scratch + 3 * per;  // dv_k, the running tangent membrane; then dv-bar
    double* di = dv + H;             // dI_k; then dq-bar
    double* prev = di + H;           // dv_{k-1}; then the tutorial order's carry
    double* spare = prev + H;
    for (int b = 0; b < x.trials; ++b) {
        const long base = long(b) * per;
        // Forward tangent.
        std::fill(dv, dv + H, 0.0);
        std::fill(prev, prev + H, 0.0);
        double out = 0.0;
        for (int k = 0; k < c.bins; ++k) {
            const long at = base + long(k) * H, here = long(k) * H;
            const double *s = st.s + at, *q = st.q + at, *g = st.g + at, *gp = st.g_prime + at;
            detail::gather_sum(x, b, k, dw1, H, di);
            const double* source = tutorial ? prev : dv;
            for (int i = 0; i < H; ++i) {
                ds[here + i] = g[i] * source[i];
                dg[here + i] = gp[i] * source[i];
                dq[here + i] = c.alpha * dv[i] + di[i];
            }
            double r = 0.0;
            for (int i = 0; i < H; ++i) r += ds[here + i] * w2[i] + s[i] * dw2[i];
            out += c.readout[std::size_t(k)] * r;
            std::copy(dv, dv + H, spare);
            for (int i = 0; i < H; ++i) dv[i] = dq[here + i] * (1.0 - s[i]) - (attached ? q[i] * ds[here + i] : 0.0);
            std::swap(prev, spare);  // prev = dv_k, the source of spike k+1 in tutorial order
        }
        y_dot[b] = out;
        // Backward tangent.
        double* dvb = dv;
        double* dqb = di;
        double* carry = prev;
        std::fill(dvb, dvb + H, 0.0);
        std::fill(carry, carry + H, 0.0);
        for (int k = c.bins - 1; k >= 0; --k) {
            const long at = base + long(k) * H, here = long(k) * H;
            const double direct = y_bar[b] * c.readout[std::size_t(k)];
            const double *s = st.s + at, *q = st.q + at, *g = st.g + at;
            const double *vbn = bk.v_bar_next + at, *sb = bk.s_bar + at;
            for (int i = 0; i < H; ++i) {
                const double dsb = direct * dw2[i] - (attached ? dq[here + i] * vbn[i] + q[i] * dvb[i] : 0.0);
                dqb[i] = dvb[i] * (1.0 - s[i]) - (attached ? vbn[i] * ds[here + i] : 0.0);
                dw2_bar[i] += direct * ds[here + i];
                const double through_spike = dsb * g[i] + sb[i] * dg[here + i];
                if (tutorial) {
                    dvb[i] = c.alpha * dqb[i] + carry[i];
                    carry[i] = through_spike;
                } else {
                    dvb[i] = c.alpha * dqb[i] + through_spike;
                }
            }
            detail::scatter_add(x, b, k, dqb, H, dw1_bar);
        }
    }
}

}  // namespace occam::kernels::lif

OCCAM_KERNELS_END
