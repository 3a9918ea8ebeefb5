// What this file teaches: a learner trained by gradient descent *inside* every meta-step.
// Each of its T training steps is recorded on the tape (create_graph), so the meta-gradient
// flows back through the whole training run to the labels: differentiating through SGD.
// A mask on the first layer turns it into a sparse circuit (the mushroom-body connectome).
#pragma once

#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "fused_cnn_step.hpp"
#include "fused_step.hpp"
#include "learner.hpp"

namespace occam::learners {

/// How hidden units connect to the inputs. Every hidden unit gets exactly `fan_in` inputs:
///  - dense: all inputs (no mask)
///  - random: fan_in distinct inputs, uniformly
///  - biased: fan_in distinct inputs, drawn without replacement with probabilities `p`
///  - grouped: the first input uniformly; the second from the other inputs, weighted
///    `same` for members of the first one's group and `other` for the rest, with the weights
///    of group {0,1}: same 0.85, other 0.05, and of group {2,3,4}: same 0.4, other 0.1 (the
///    paper's appendix E).
struct Connectivity {
    std::string scheme = "dense";
    std::vector<double> p;                                 ///< biased: one probability per input
    std::vector<std::vector<int>> groups;                  ///< grouped: the input groups
    std::vector<std::pair<double, double>> group_weights;  ///< grouped: (same, other) per group
    int fan_in = 2;
    bool positive = false;  ///< keep the input weights positive (W <- |W| after each step)
};

/// The inner training: T steps of SGD, momentum SGD or Adam on the mean squared error, full
/// batch or on minibatches drawn afresh each step.
struct InnerTraining {
    std::string optimizer = "sgd";  ///< sgd | momentum | adam
    double lr = 0.025;
    double momentum = 0.9;
    int steps = 200;
    int batch = 0;     ///< 0: full batch
    int truncate = 0;  ///< > 0: meta-gradient through the last `truncate` steps only
    /// Keep only each step's parameters and optimiser state and rebuild the step's graph in
    /// the backward pass: tape memory O(T x parameters) instead of O(T x activations), at the
    /// cost of running each step twice. First-order meta-gradients only.
    bool checkpoint = false;
    /// Each SGD step as one node with a hand-written backward (fused_step.hpp): plain SGD and
    /// ReLU only; first-order meta-gradients only.
    bool fused = false;
};

/// Draws the 0/1 input mask (hidden x inputs) of one task.
inline Eigen::MatrixXd draw_mask(const Connectivity& c, int hidden, int inputs, ad::Rng& rng) {
    Eigen::MatrixXd m = Eigen::MatrixXd::Zero(hidden, inputs);
    if (c.scheme == "dense") return Eigen::MatrixXd::Ones(hidden, inputs);
    for (int h = 0; h < hidden; ++h) {
        if (c.scheme == "random") {
            for (int i : rng.sample_without_replacement(inputs, c.fan_in)) m(h, i) = 1.0;
        } else if (c.scheme == "biased") {
            std::vector<double> p = c.p;
            for (int k = 0; k < c.fan_in; ++k) {
                const int i = rng.categorical(p);
                m(h, i) = 1.0;
                p[std::size_t(i)] = 0.0;  // without replacement
            }
        } else {  // grouped
            const int first = int(rng.below(std::uint64_t(inputs)));
            std::size_t g = 0;
            while (g < c.groups.size() && std::find(c.groups[g].begin(), c.groups[g].end(), first) == c.groups[g].end())
                ++g;
            std::vector<double> w(std::size_t(inputs), 0.0);
            for (int i = 0; i < inputs; ++i) {
                if (i == first) continue;
                const bool same =
                    g < c.groups.size() && std::find(c.groups[g].begin(), c.groups[g].end(), i) != c.groups[g].end();
                w[std::size_t(i)] = same ? c.group_weights[g].first : c.group_weights[g].second;
            }
            m(h, first) = 1.0;
            m(h, rng.categorical(w)) = 1.0;
        }
    }
    return m;
}

/// The width of one input row of a network.
inline int input_width(const ad::nn::MLP& net) { return net.widths.empty() ? 0 : net.widths[0]; }
inline int input_width(const ad::nn::ConvNet& net) { return net.in_channels * net.height * net.width; }
/// "MLP 3-20-20-1 (relu)", "CNN 1x28x28-conv16-pool2-1 (relu)".
inline std::string describe_net(const ad::nn::MLP& net) {
    std::ostringstream s;
    s << "MLP ";
    for (std::size_t i = 0; i < net.widths.size(); ++i) s << (i ? "-" : "") << net.widths[i];
    s << " (" << ad::nn::name(net.activation) << ")";
    return s.str();
}
inline std::string describe_net(const ad::nn::ConvNet& net) {
    std::ostringstream s;
    s << "CNN " << net.in_channels << "x" << net.height << "x" << net.width;
    for (int c : net.channels) s << "-conv" << c << "(" << net.kernel << "x" << net.kernel << ")-pool" << net.pool;
    s << "-" << net.outputs << " (" << ad::nn::name(net.activation) << ")";
    return s.str();
}

/// A network (an MLP or a CNN) re-initialised every task (PyTorch's default initialisation)
/// and trained by unrolled gradient descent inside fit_predict. Masks and fused steps are the
/// MLP's only.
template <class Net>
class UnrolledNet : public Learner {
    static constexpr bool is_mlp = std::is_same_v<Net, ad::nn::MLP>;

public:
    UnrolledNet(Net net, InnerTraining training, Connectivity connectivity)
        : net_(std::move(net)), train_(training), conn_(std::move(connectivity)) {
        const std::string who = is_mlp ? "mlp learner: " : "cnn learner: ";
        if constexpr (is_mlp) {
            if (net_.widths.size() < 2) throw std::invalid_argument(who + "needs at least input and output widths");
        } else {
            net_.shapes();  // validates the sizes
        }
        if (train_.steps < 1) throw std::invalid_argument(who + "--inner-steps must be >= 1");
        if (!(train_.lr > 0)) throw std::invalid_argument(who + "--inner-lr must be > 0");
        if (train_.optimizer != "sgd" && train_.optimizer != "momentum" && train_.optimizer != "adam")
            throw std::invalid_argument(who + "--inner-optimizer must be sgd, momentum or adam");
        if (train_.truncate < 0 || train_.batch < 0)
            throw std::invalid_argument(who + "negative --truncate or --inner-batch");
        if (conn_.scheme != "dense" && conn_.scheme != "random" && conn_.scheme != "biased" &&
            conn_.scheme != "grouped")
            throw std::invalid_argument(who + "unknown connectivity '" + conn_.scheme + "'");
        if (!is_mlp && (conn_.scheme != "dense" || conn_.positive))
            throw std::invalid_argument(who + "sparse connectivity and positive weights are the MLP's");
        if (train_.fused && (train_.optimizer != "sgd" || net_.activation != ad::nn::Activation::relu ||
                             net_.output != ad::nn::OutputMap::identity))
            throw std::invalid_argument(who + "--fused-steps needs --inner-optimizer sgd and ReLU units");
        if constexpr (!is_mlp) {
            if (train_.fused && (net_.channels.size() != 1 || net_.outputs != 1))
                throw std::invalid_argument(who + "--fused-steps needs one conv layer and one output");
        }
        if (conn_.scheme == "biased" && int(conn_.p.size()) != input_width(net_))
            throw std::invalid_argument(who + "biased connectivity needs one probability per input");
        if (conn_.scheme != "dense" && conn_.fan_in > input_width(net_))
            throw std::invalid_argument(who + "fan-in larger than the number of inputs");
    }

    std::string describe() const override {
        std::ostringstream s;
        s << describe_net(net_) << ", " << train_.steps << " " << train_.optimizer << " steps, lr " << train_.lr;
        if (train_.batch > 0) s << ", batches of " << train_.batch;
        if (train_.truncate > 0) s << ", meta-gradient through the last " << train_.truncate;
        if (train_.checkpoint) s << ", checkpointed steps";
        if (train_.fused) s << ", fused steps";
        if (conn_.scheme != "dense") s << ", " << conn_.scheme << " " << conn_.fan_in << "-sparse inputs";
        if (conn_.positive) s << ", positive input weights";
        s << ")";
        return s.str();
    }

    void new_task(ad::Rng& rng) override {
        init_ = net_.init(rng);
        if constexpr (is_mlp) {
            mask_ = draw_mask(conn_, net_.widths[1], net_.widths[0], rng);
            init_[0] = init_[0].cwiseProduct(mask_);  // masked weights start, and stay, at zero
            if (conn_.positive) init_[0] = init_[0].cwiseAbs();
        }
        batch_seed_ = rng.next_u64();
    }

    int input_dim() const override { return input_width(net_); }
    const Eigen::MatrixXd& mask() const { return mask_; }

    ad::Var fit_predict(const ad::Var& x, const ad::Var& y, const ad::Var& xt) override {
        if (init_.empty()) throw LearnerError(describe() + ": new_task() was not called before fit_predict()");
        if (x.cols() != input_width(net_))
            throw LearnerError(describe() + ": inputs have " + std::to_string(x.cols()) + " columns, expected " +
                               std::to_string(input_width(net_)));
        // Training needs gradients even when the caller only wants values; the meta-gradient
        // (create_graph) is needed only when the labels carry one.
        ad::GradModeGuard on(true);
        const bool meta = y.requires_grad();
        const ad::Var mask = is_mlp ? ad::constant(mask_) : ad::Var();
        std::vector<ad::Var> p = ad::params(init_);
        InnerOptimizer opt(train_);
        ad::Rng batches(batch_seed_, 0);
        const int n = x.rows();
        const int first_recorded = train_.truncate > 0 ? std::max(0, train_.steps - train_.truncate) : 0;
        ad::Var packed;  // checkpointing: parameters and optimiser state of the current step
        [[maybe_unused]] const FusedSgdNet* fused = nullptr;  // fused steps: the network they share (tape-owned)
        ad::Var images;  // fused CNN steps: x's images one per column, copied once for all the steps
        for (int t = 0; t < train_.steps; ++t) {
            if (t == first_recorded && t > 0) {  // truncation: earlier steps are constants
                for (ad::Var& v : p) v = ad::param(Eigen::MatrixXd(v.value()));
                opt.detach_state();
            }
            std::vector<int> idx;
            if (train_.batch > 0 && train_.batch < n) idx = batches.sample_without_replacement(n, train_.batch);
            const bool record = meta && t >= first_recorded;
            if (record && train_.fused && !x.requires_grad()) {
                if constexpr (is_mlp) {
                    if (!packed.defined()) {
                        packed = pack_columns(p, {});
                        fused = &fused_sgd_net(net_.widths, conn_.scheme != "dense" ? mask_ : Eigen::MatrixXd(),
                                               conn_.positive, train_.lr);
                    }
                    packed = fused_sgd_step(*fused, x.value(), idx, packed, y);
                } else {
                    if (!packed.defined()) {
                        packed = pack_columns(p, {});
                        images = ad::constant(x.value().transpose());
                    }
                    packed = fused_cnn_step({net_.geometry(0), net_.channels[0], net_.pool, train_.lr}, images, idx,
                                            packed, y);
                }
                continue;
            }
            if (record && train_.checkpoint) {
                // One node per step: only (parameters, optimiser state) is kept; the step's
                // graph is rebuilt from it in the backward pass (ad::checkpoint).
                if (!packed.defined()) packed = pack_columns(p, opt.state());
                packed = ad::checkpoint(
                    [this, t, idx, mask](const std::vector<ad::Var>& in) {
                        std::vector<ad::Var> q, state;
                        unpack(in[0], t, q, state);
                        InnerOptimizer o(train_);
                        o.set_state(q, state, t);
                        q = step(q, o, mask, in[2], in[1], idx, true);
                        return pack_columns(q, o.state());
                    },
                    {packed, y, x});
                continue;
            }
            p = step(p, opt, mask, x, y, idx, record);
            if (!record)  // nothing to differentiate through: keep the tape short
                for (ad::Var& v : p) v = ad::param(Eigen::MatrixXd(v.value()));
        }
        if (packed.defined()) {
            std::vector<ad::Var> state;
            unpack(packed, train_.steps, p, state);
        }
        ad::Var pred = forward(p, mask, xt);
        if (!pred.value().allFinite())
            throw LearnerError(describe() + ": training diverged (non-finite predictions); try a smaller --inner-lr");
        return pred;
    }

private:
    /// The inner optimiser: SGD (with or without momentum) or Adam, both written with Var ops.
    struct InnerOptimizer {
        explicit InnerOptimizer(const InnerTraining& tr)
            : adam_(tr.optimizer == "adam"),
              sgd({.lr = tr.lr, .momentum = tr.optimizer == "momentum" ? tr.momentum : 0.0}),
              adam({.lr = tr.lr}) {}
        std::vector<ad::Var> step(const std::vector<ad::Var>& p, const std::vector<ad::Var>& g) {
            return adam_ ? adam.step(p, g) : sgd.step(p, g);
        }
        std::vector<ad::Var> state() const { return adam_ ? adam.state() : sgd.state(); }
        void set_state(const std::vector<ad::Var>& p, const std::vector<ad::Var>& s, int t) {
            adam_ ? adam.set_state(p, s, t) : sgd.set_state(p, s, t);
        }
        void detach_state() { adam_ ? adam.detach_state() : sgd.detach_state(); }
        /// How many state matrices there are after `t` steps for `n` parameters.
        static int state_count(const InnerTraining& tr, int t, int n) {
            if (t == 0) return 0;
            return tr.optimizer == "adam" ? 2 * n : (tr.optimizer == "momentum" && tr.momentum != 0.0 ? n : 0);
        }
        bool adam_;
        ad::optim::UnrolledSGD sgd;
        ad::optim::UnrolledAdam adam;
    };

    /// One training step on the mean squared error, on the rows `idx` (all rows if empty).
    std::vector<ad::Var> step(const std::vector<ad::Var>& p, InnerOptimizer& opt, const ad::Var& mask, const ad::Var& x,
                              const ad::Var& y, const std::vector<int>& idx, bool record) const {
        const ad::Var xb = idx.empty() ? x : ad::gather_rows(x, idx);
        const ad::Var yb = idx.empty() ? y : ad::gather_rows(y, idx);
        ad::Var loss = ad::mean(ad::square(forward(p, mask, xb) - yb));
        std::vector<ad::Var> g = ad::grad(loss, p, {.create_graph = record});
        std::vector<ad::Var> next = opt.step(p, g);
        if (conn_.positive) next[0] = ad::abs(next[0]);  // the notebook's projection W <- |W|
        return next;
    }


    /// The inverse of pack_columns after `t` steps: slices shaped like the network's parameters.
    void unpack(const ad::Var& packed, int t, std::vector<ad::Var>& p, std::vector<ad::Var>& state) const {
        p.clear();
        state.clear();
        const int n = int(init_.size());
        const int n_state = InnerOptimizer::state_count(train_, t, n);
        int row = 0;
        for (int k = 0; k < n + n_state; ++k) {
            const Eigen::MatrixXd& shape = init_[std::size_t(k % n)];
            const int sz = int(shape.size());
            ad::Var v = ad::reshape(ad::rows(packed, row, sz), int(shape.rows()), int(shape.cols()));
            (k < n ? p : state).push_back(v);
            row += sz;
        }
    }

    /// The network with its first layer's weights masked: W1 * M.
    ad::Var forward(const std::vector<ad::Var>& p, const ad::Var& mask, const ad::Var& x) const {
        if (conn_.scheme == "dense") return net_(p, x);
        std::vector<ad::Var> masked = p;
        masked[0] = p[0] * mask;
        return net_(masked, x);
    }

    Net net_;
    InnerTraining train_;
    Connectivity conn_;
    std::vector<Eigen::MatrixXd> init_;
    Eigen::MatrixXd mask_;
    std::uint64_t batch_seed_ = 0;
};

/// The MLP learner (the paper's Appendix A and the connectome's sparse circuits).
using UnrolledMLP = UnrolledNet<ad::nn::MLP>;
/// The CNN learner (the paper's Fig. 6: conv(1->16, 5x5) - ReLU - maxpool 2 - linear).
using UnrolledCNN = UnrolledNet<ad::nn::ConvNet>;

}  // namespace occam::learners
