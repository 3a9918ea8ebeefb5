// What this file teaches: a spiking circuit as a learner that is differentiated through its own
// training. Its forward pass over all time bins is ONE tape node, its backpropagation through
// time another (made when the first is differentiated with create_graph), and the backward of
// that one is the forward-mode tangent of both (kernels/lif.hpp): three fused passes instead of
// thousands of per-bin nodes. lif_output_ops is the same circuit op by op, for checks and reading.
#pragma once

#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "../autodiff/autodiff.hpp"
#include "../kernels/buffer.hpp"
#include "../kernels/lif.hpp"
#include "learner.hpp"

namespace occam::learners {

using kernels::lif::Circuit;
using kernels::lif::SpikeTrains;

namespace spiking_detail {

/// What the output node keeps for its backward pass (arena memory; trivially destructible).
struct Kept {
    const Circuit* circuit;
    const SpikeTrains* trains;
    kernels::lif::ForwardState state;
};

/// The weights in the kernels' layout: W1 (inputs x hidden, column-major) by input, w[j H + i].
inline void by_input(const Eigen::Ref<const Eigen::MatrixXd>& w1, double* out) {
    const long N = w1.rows(), H = w1.cols();
    for (long j = 0; j < N; ++j)
        for (long i = 0; i < H; ++i) out[j * H + i] = w1(j, i);
}
/// The inverse of by_input, into a column-major inputs x hidden block.
inline void from_by_input(const double* in, long N, long H, double* out) {
    for (long i = 0; i < H; ++i)
        for (long j = 0; j < N; ++j) out[i * N + j] = in[j * H + i];
}

/// Scratch for the kernels on this thread: grows, never shrinks (no allocation per step).
inline double* scratch(std::size_t n) {
    thread_local kernels::AlignedVector buffer;
    kernels::grow(buffer, n);
    return buffer.data();
}

/// G = (W1-bar, W2-bar) = J^T y-bar, packed as one column (W1-bar column-major, then W2-bar):
/// the output node's backward pass as a node of its own, so that a training step's gradient is
/// on the tape. Its backward is the tangent pass: for a cotangent (dW1, dW2) of G it returns
/// d/dt G(W + t dW) for W1 and W2 and J dW for y-bar (kernels/lif.hpp derives both). It writes
/// numbers: first-order only (a meta-gradient never needs a third derivative).
inline ad::Var lif_gradient(const Kept& kept, const ad::Var& w1, const ad::Var& w2, const ad::Var& y_bar) {
    const Circuit& c = *kept.circuit;
    const SpikeTrains& x = *kept.trains;
    const long N = c.inputs, H = c.hidden, n = long(x.trials) * c.per_trial();
    ad::Tape& t = ad::tape();
    const kernels::lif::BackwardState bk{t.arena.allocate_array<double>(std::size_t(n)),
                                         t.arena.allocate_array<double>(std::size_t(n))};
    ad::Node* node = ad::custom_node(
        "lif_gradient", int(N * H + H), 1, {w1, w2, y_bar},
        [kept, bk](const ad::Node& self, const ad::Var& g, ad::Var* grads) {
            const Circuit& cc = *kept.circuit;
            const SpikeTrains& xx = *kept.trains;
            const long NN = cc.inputs, HH = cc.hidden;
            double* work = scratch(std::size_t(2 * NN * HH + HH + 3 * cc.per_trial() + 4 * HH));
            double* dw1 = work;                // the direction, by input
            double* dw1_bar = work + NN * HH;  // by input
            double* dw2_bar = dw1_bar + NN * HH;
            double* tangent_scratch = dw2_bar + HH;
            const double* gv = g.value().data();
            by_input(Eigen::Map<const Eigen::MatrixXd>(gv, NN, HH), dw1);
            std::fill(dw1_bar, dw1_bar + NN * HH + HH, 0.0);
            const ad::Var y_dot = ad::zeros(xx.trials, 1);
            kernels::lif::tangent(cc, xx, self.input(1).value().data(), kept.state, bk, self.input(2).value().data(),
                                  dw1, gv + NN * HH, y_dot.node()->data, dw1_bar, dw2_bar, tangent_scratch);
            if (self.needs(0)) {
                const ad::Var a = ad::zeros(int(NN), int(HH));
                from_by_input(dw1_bar, NN, HH, a.node()->data);
                grads[0] = a;
            }
            if (self.needs(1)) grads[1] = ad::constant(Eigen::Map<const Eigen::MatrixXd>(dw2_bar, HH, 1));
            if (self.needs(2)) grads[2] = y_dot;
        },
        ad::Derivatives::first_order);
    double* w1_bar = scratch(std::size_t(N * H + 3 * H));
    std::fill(w1_bar, w1_bar + N * H, 0.0);
    double* out = node->data;
    std::fill(out, out + N * H + H, 0.0);
    kernels::lif::backward(c, x, w2.value().data(), kept.state, y_bar.value().data(), w1_bar, out + N * H, &bk,
                           w1_bar + N * H);
    from_by_input(w1_bar, N, H, out);
    return ad::Var(node);
}

}  // namespace spiking_detail

/// Spike trains owned by the tape (released with the TapeScope open now): the task's inputs,
/// converted once per fit and shared by every training step.
inline const SpikeTrains& tape_spike_trains(const Eigen::Ref<const Eigen::MatrixXd>& X, int bins) {
    struct Held : ad::Owned {
        SpikeTrains trains;
    };
    Held* h = ad::tape().own<Held>();
    h->trains = SpikeTrains::from_matrix(X, bins);
    return h->trains;
}

/// The circuit's outputs y (trials x 1) for input spike trains x and weights W1 (inputs x
/// hidden), W2 (hidden x 1), as one node. Its backward is the backpropagation through time of
/// kernels/lif.hpp: numbers when only a gradient is wanted, or (under create_graph) the node
/// lif_gradient, so the gradient can itself be differentiated. `c` and `x` must outlive the
/// node (tape_spike_trains; a Circuit the learner owns).
inline ad::Var lif_output(const Circuit& c, const SpikeTrains& x, const ad::Var& w1, const ad::Var& w2) {
    using namespace spiking_detail;
    if (w1.rows() != c.inputs || w1.cols() != c.hidden || w2.rows() != c.hidden || w2.cols() != 1 ||
        x.inputs != c.inputs || x.bins != c.bins)
        throw ad::ShapeError("lif_output: weights " + ad::shape_str(w1) + ", " + ad::shape_str(w2) + " and " +
                             std::to_string(x.inputs) + " inputs x " + std::to_string(x.bins) +
                             " bins do not fit the circuit");
    ad::Tape& t = ad::tape();
    const std::size_t n = std::size_t(x.trials) * std::size_t(c.per_trial());
    Kept kept{&c, &x, {}};
    double* state = t.arena.allocate_array<double>(5 * n);  // v, s, q, g, g'
    kept.state = {state, state + n, state + 2 * n, state + 3 * n, state + 4 * n};
    ad::Node* node = ad::custom_node(
        "lif_output", x.trials, 1, {w1, w2}, [kept](const ad::Node& self, const ad::Var& g, ad::Var* grads) {
            if (ad::grad_enabled()) {  // create_graph: the gradient as a node, differentiable again
                const ad::Var G = lif_gradient(kept, self.input(0), self.input(1), g);
                const Circuit& cc = *kept.circuit;
                if (self.needs(0)) grads[0] = ad::reshape(ad::rows(G, 0, cc.inputs * cc.hidden), cc.inputs, cc.hidden);
                if (self.needs(1)) grads[1] = ad::rows(G, cc.inputs * cc.hidden, cc.hidden);
                return;
            }
            const Circuit& cc = *kept.circuit;
            const long N = cc.inputs, H = cc.hidden;
            const ad::Var a = ad::zeros(int(N), int(H)), b = ad::zeros(int(H), 1);
            double* w1_bar = scratch(std::size_t(N * H + 3 * H));
            std::fill(w1_bar, w1_bar + N * H, 0.0);
            kernels::lif::backward(cc, *kept.trains, self.input(1).value().data(), kept.state, g.value().data(), w1_bar,
                                   b.node()->data, nullptr, w1_bar + N * H);
            from_by_input(w1_bar, N, H, a.node()->data);
            if (self.needs(0)) grads[0] = a;
            if (self.needs(1)) grads[1] = b;
        });
    double* w1_kernel = scratch(std::size_t(c.inputs) * c.hidden + 2 * std::size_t(c.hidden));
    by_input(w1.value(), w1_kernel);
    kernels::lif::forward(c, x, w1_kernel, w2.value().data(), node->data, kept.state,
                          w1_kernel + std::size_t(c.inputs) * c.hidden);
    return ad::Var(node);
}

/// The surrogate of the kernels as the autodiff op's settings.
inline ad::SpikeSurrogate spike_surrogate(const kernels::lif::Surrogate& s) {
    return {s.kind == kernels::lif::Surrogate::Kind::sigmoid ? ad::SpikeSurrogate::Kind::sigmoid
                                                             : ad::SpikeSurrogate::Kind::fast_sigmoid,
            s.beta, s.scale, s.smooth};
}

/// The same circuit op by op (about eight whole-batch nodes per time bin), in the words of the
/// equations: the reference the fused nodes are checked against. X is trials x (bins * inputs)
/// of 0/1, column k * inputs + j.
inline ad::Var lif_output_ops(const Circuit& c, const Eigen::Ref<const Eigen::MatrixXd>& X, const ad::Var& w1,
                              const ad::Var& w2) {
    const int B = int(X.rows()), N = c.inputs, H = c.hidden;
    const ad::SpikeSurrogate sur = spike_surrogate(c.surrogate);
    ad::Var v = ad::constant(Eigen::MatrixXd::Zero(B, H)), previous = v;
    ad::Var y = ad::constant(Eigen::MatrixXd::Zero(B, 1));
    for (int k = 0; k < c.bins; ++k) {
        const ad::Var current = ad::matmul(ad::constant(X.middleCols(Eigen::Index(k) * N, N)), w1);  // I_k = x_k W1
        const int src = c.source(k);
        const ad::Var s = src < 0 ? ad::constant(Eigen::MatrixXd::Zero(B, H))
                                  : ad::spike(ad::add_scalar(src == k ? v : previous, -c.threshold), sur);
        const ad::Var q = ad::mul_scalar(v, c.alpha) + current;  // q_k = alpha v_k + I_k
        const ad::Var reset = c.detach_reset ? ad::detach(s) : s;
        previous = v;
        v = q * ad::add_scalar(ad::neg(reset), 1.0);                           // v_{k+1} = q_k (1 - s_k)
        y = y + ad::mul_scalar(ad::matmul(s, w2), c.readout[std::size_t(k)]);  // y += r_k s_k W2
    }
    return y;
}

/// How the spiking learner trains inside each meta-step.
struct SpikingTraining {
    std::string optimizer = "adam";   ///< adam (differentiable, sqrt(v-hat + eps^2)) | sgd (one rate per layer)
    double lr = 0.03;                 ///< adam
    /// adam: sqrt(v-hat + eps^2) in the denominator. The meta-gradient through a step is
    /// bounded by about lr / eps where a gradient entry is near 0 (a silent unit's weights).
    double eps = 1e-8;
    double lr_w1 = 1.0, lr_w2 = 0.2;  ///< sgd
    int steps = 50;
    /// Keep only each step's weights and optimiser state; rebuild the step in the backward pass.
    bool checkpoint = false;
    bool fused = true;  ///< false: the op-by-op circuit (lif_output_ops), for checks
};

/// A LIF circuit (inputs -> hidden LIF units -> leaky-integrator readout, no biases) whose
/// weights are redrawn every task, W1 ~ U(+-w1_bound), W2 ~ U(+-w2_bound), and trained on the
/// mean squared error by `training.steps` steps. Inputs are spike trains, trials x (bins *
/// inputs) of 0/1 (the learner's view of --inputs ipd).
class SpikingLearner : public Learner {
public:
    SpikingLearner(Circuit circuit, double w1_bound, double w2_bound, SpikingTraining training)
        : c_(std::move(circuit)), w1_bound_(w1_bound), w2_bound_(w2_bound), train_(training) {
        if (train_.steps < 1) throw std::invalid_argument("spiking learner: steps must be >= 1");
        if (train_.optimizer != "adam" && train_.optimizer != "sgd")
            throw std::invalid_argument("spiking learner: the optimiser must be adam or sgd");
        if (!(train_.lr > 0) || !(train_.lr_w1 > 0) || !(train_.lr_w2 > 0))
            throw std::invalid_argument("spiking learner: learning rates must be > 0");
        if (!(w1_bound > 0) || !(w2_bound > 0))
            throw std::invalid_argument("spiking learner: initial weight bounds must be > 0");
    }

    std::string describe() const override {
        std::ostringstream s;
        s << "LIF circuit " << c_.inputs << "-" << c_.hidden << "-1 over " << c_.bins << " bins (alpha " << c_.alpha
          << ", " << (c_.order == kernels::lif::Order::spytorch ? "spytorch" : "tutorial") << " order, "
          << (c_.detach_reset ? "detached" : "attached") << " reset, "
          << (c_.surrogate.kind == kernels::lif::Surrogate::Kind::sigmoid
                  ? "sigmoid surrogate beta " + fmt(c_.surrogate.beta)
                  : "fast-sigmoid surrogate scale " + fmt(c_.surrogate.scale))
          << "), " << train_.steps << " " << train_.optimizer << " steps, lr "
          << (train_.optimizer == "adam" ? fmt(train_.lr) : fmt(train_.lr_w1) + "/" + fmt(train_.lr_w2));
        if (train_.checkpoint) s << ", checkpointed steps";
        if (!train_.fused) s << ", op-by-op";
        return s.str();
    }
    int input_dim() const override { return c_.inputs * c_.bins; }
    const Circuit& circuit() const { return c_; }

    void new_task(ad::Rng& rng) override {
        w1_ = rng.uniform_matrix(c_.inputs, c_.hidden, -w1_bound_, w1_bound_);
        w2_ = rng.uniform_matrix(c_.hidden, 1, -w2_bound_, w2_bound_);
    }
    /// The initial weights of the current task (after new_task).
    std::vector<Eigen::MatrixXd> initial_weights() const { return {w1_, w2_}; }

    ad::Var fit_predict(const ad::Var& x, const ad::Var& y, const ad::Var& xt) override {
        if (w1_.size() == 0) throw LearnerError(describe() + ": new_task() was not called before fit_predict()");
        if (x.cols() != input_dim() || xt.cols() != input_dim())
            throw LearnerError(describe() + ": inputs have " + std::to_string(x.cols()) + " columns, expected " +
                               std::to_string(input_dim()) + " (" + std::to_string(c_.bins) + " bins x " +
                               std::to_string(c_.inputs) + " inputs)");
        if (x.requires_grad() || xt.requires_grad())
            throw LearnerError(describe() + ": spike trains carry no gradient");
        ad::GradModeGuard on(true);  // training needs gradients even when the caller wants values only
        const bool meta = y.requires_grad();
        Data data{this, x.value(), nullptr};
        try {
            if (train_.fused) data.trains = &tape_spike_trains(x.value(), c_.bins);
        } catch (const std::invalid_argument& e) {
            throw LearnerError(describe() + ": " + e.what());
        }
        std::vector<ad::Var> p = ad::params({w1_, w2_});
        Optimizer opt(train_);
        ad::Var packed;  // checkpointing: weights and optimiser state of the current step
        for (int t = 0; t < train_.steps; ++t) {
            if (meta && train_.checkpoint) {
                if (!packed.defined()) packed = pack_columns(p, opt.state());
                packed = ad::checkpoint(
                    [this, t, data](const std::vector<ad::Var>& in) {
                        std::vector<ad::Var> q, state;
                        unpack(in[0], t, q, state);
                        Optimizer o(train_);
                        o.set_state(q, state, t);
                        q = step(q, o, data, in[1], true);
                        return pack_columns(q, o.state());
                    },
                    {packed, y});
                continue;
            }
            p = step(p, opt, data, y, meta);
            if (!meta)  // nothing to differentiate through: keep the tape short
                for (ad::Var& v : p) v = ad::param(Eigen::MatrixXd(v.value()));
        }
        if (packed.defined()) {
            std::vector<ad::Var> state;
            unpack(packed, train_.steps, p, state);
        }
        const Data test{this, xt.value(), train_.fused ? &tape_spike_trains(xt.value(), c_.bins) : nullptr};
        const ad::Var pred = test.output(p);
        if (!pred.value().allFinite())
            throw LearnerError(describe() +
                               ": training diverged (non-finite predictions); try a smaller learning rate");
        return pred;
    }

private:
    static std::string fmt(double v) {
        std::ostringstream s;
        s << v;
        return s.str();
    }

    /// A task's inputs: the spike trains for the fused nodes, the matrix for the op-by-op path.
    struct Data {
        const SpikingLearner* learner;
        Eigen::Map<const Eigen::MatrixXd> X;
        const SpikeTrains* trains;
        ad::Var output(const std::vector<ad::Var>& p) const {
            return trains ? lif_output(learner->c_, *trains, p[0], p[1]) : lif_output_ops(learner->c_, X, p[0], p[1]);
        }
    };

    /// Adam (ad::optim::UnrolledAdam) or SGD with one rate per layer (W1's gradients are about
    /// ten times W2's: one rate for both diverges).
    struct Optimizer {
        explicit Optimizer(const SpikingTraining& tr) : tr_(tr), adam({.lr = tr.lr, .eps = tr.eps}) {}
        std::vector<ad::Var> step(const std::vector<ad::Var>& p, const std::vector<ad::Var>& g) {
            if (tr_.optimizer == "adam") return adam.step(p, g);
            return {p[0] - ad::mul_scalar(g[0], tr_.lr_w1), p[1] - ad::mul_scalar(g[1], tr_.lr_w2)};
        }
        std::vector<ad::Var> state() const { return tr_.optimizer == "adam" ? adam.state() : std::vector<ad::Var>{}; }
        void set_state(const std::vector<ad::Var>& p, const std::vector<ad::Var>& s, int t) {
            if (tr_.optimizer == "adam") adam.set_state(p, s, t);
        }
        static int state_count(const SpikingTraining& tr, int t) { return tr.optimizer == "adam" && t > 0 ? 4 : 0; }
        const SpikingTraining& tr_;
        ad::optim::UnrolledAdam adam;
    };

    /// One training step on the mean squared error.
    std::vector<ad::Var> step(const std::vector<ad::Var>& p, Optimizer& opt, const Data& data, const ad::Var& y,
                              bool record) const {
        const ad::Var loss = ad::mean(ad::square(data.output(p) - y));
        return opt.step(p, ad::grad(loss, p, {.create_graph = record}));
    }

    void unpack(const ad::Var& packed, int t, std::vector<ad::Var>& p, std::vector<ad::Var>& state) const {
        p.clear();
        state.clear();
        const int shapes[2][2] = {{c_.inputs, c_.hidden}, {c_.hidden, 1}};
        int row = 0;
        for (int k = 0; k < 2 + Optimizer::state_count(train_, t); ++k) {
            const int r = shapes[k % 2][0], cols = shapes[k % 2][1];
            const ad::Var v = ad::reshape(ad::rows(packed, row, r * cols), r, cols);
            (k < 2 ? p : state).push_back(v);
            row += r * cols;
        }
    }

    Circuit c_;
    double w1_bound_, w2_bound_;
    SpikingTraining train_;
    Eigen::MatrixXd w1_, w2_;
};

}  // namespace occam::learners
