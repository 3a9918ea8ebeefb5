// What this file teaches: an optimiser is a small update rule plus per-parameter state. The plain
// optimisers (Adam, Adagrad, SGD) copy PyTorch's formulas exactly and mutate matrices in place for
// the outer loop; the unrolled ones write the same rules with Var ops, so a whole inner training
// run stays on the tape and can be differentiated (the meta-gradient).
#pragma once

#include <Eigen/Dense>

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "autodiff.hpp"

namespace occam::ad::optim {

/// torch.optim.Adam's defaults (amsgrad and maximize are not supported).
struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
};

/// torch.optim.Adagrad's defaults.
struct AdagradOptions {
    double lr = 1e-2;
    double lr_decay = 0.0;
    double weight_decay = 0.0;
    double initial_accumulator_value = 0.0;
    double eps = 1e-10;
};

/// torch.optim.SGD's defaults (lr = 1e-3 since PyTorch 2.3).
struct SGDOptions {
    double lr = 1e-3;
    double momentum = 0.0;
    double dampening = 0.0;
    double weight_decay = 0.0;
    bool nesterov = false;
};

namespace detail {

/// The value of a gradient, whether it is held as a matrix or as a Var (a view, no copy).
inline const Eigen::MatrixXd& grad_value(const Eigen::MatrixXd& g) { return g; }
inline Eigen::Map<const Eigen::MatrixXd> grad_value(const Var& g) { return g.value(); }
inline Eigen::Index rows_of(const Eigen::MatrixXd& m) { return m.rows(); }
inline Eigen::Index cols_of(const Eigen::MatrixXd& m) { return m.cols(); }
inline Eigen::Index rows_of(const Var& v) { return v.rows(); }
inline Eigen::Index cols_of(const Var& v) { return v.cols(); }

inline void require(bool ok, const std::string& who, const std::string& what) {
    if (!ok) throw std::invalid_argument(who + ": " + what);
}

/// The parameter shapes an optimiser's state was sized for on its first step. State is lazy
/// (the optimiser does not know the model), so every later step must show the same list.
class StateShapes {
public:
    /// Checks params against grads and against the first step's shapes; returns true on the
    /// first step (when the caller must size its state).
    template <class P, class G>
    bool check(const char* who, const std::vector<P>& params, const std::vector<G>& grads) {
        const std::string w = who;
        require(params.size() == grads.size(), w,
                std::to_string(params.size()) + " parameters but " + std::to_string(grads.size()) + " gradients");
        for (std::size_t k = 0; k < params.size(); ++k)
            require(rows_of(params[k]) == rows_of(grads[k]) && cols_of(params[k]) == cols_of(grads[k]), w,
                    "parameter " + std::to_string(k) + " is " + shape_str(rows_of(params[k]), cols_of(params[k])) +
                        " but its gradient is " + shape_str(rows_of(grads[k]), cols_of(grads[k])));
        if (!sized_) {
            shapes_.clear();
            shapes_.reserve(params.size());
            for (const P& p : params) shapes_.emplace_back(rows_of(p), cols_of(p));
            sized_ = true;
            return true;
        }
        require(params.size() == shapes_.size(), w,
                std::to_string(params.size()) + " parameters given, but the state was sized for " +
                    std::to_string(shapes_.size()) + " on the first step (call reset() to start over)");
        for (std::size_t k = 0; k < params.size(); ++k)
            require(rows_of(params[k]) == shapes_[k].first && cols_of(params[k]) == shapes_[k].second, w,
                    "parameter " + std::to_string(k) + " is " + shape_str(rows_of(params[k]), cols_of(params[k])) +
                        ", but the state was sized for " + shape_str(shapes_[k].first, shapes_[k].second) +
                        " on the first step (call reset() to start over)");
        return false;
    }
    void reset() {
        shapes_.clear();
        sized_ = false;
    }
    /// Marks the state as sized for these parameters (when it is loaded from a checkpoint).
    void assume(const std::vector<Eigen::MatrixXd>& params) {
        shapes_.clear();
        for (const auto& p : params) shapes_.emplace_back(p.rows(), p.cols());
        sized_ = true;
    }

private:
    std::vector<std::pair<Eigen::Index, Eigen::Index>> shapes_;
    bool sized_ = false;
};

inline void check_options(const AdamOptions& o, const char* who) {
    const std::string w = who;
    require(o.lr >= 0.0, w, "invalid learning rate " + std::to_string(o.lr));
    require(o.eps >= 0.0, w, "invalid eps " + std::to_string(o.eps));
    require(o.beta1 >= 0.0 && o.beta1 < 1.0, w, "invalid beta1 " + std::to_string(o.beta1) + " (need 0 <= beta1 < 1)");
    require(o.beta2 >= 0.0 && o.beta2 < 1.0, w, "invalid beta2 " + std::to_string(o.beta2) + " (need 0 <= beta2 < 1)");
    require(o.weight_decay >= 0.0, w, "invalid weight_decay " + std::to_string(o.weight_decay));
}
inline void check_options(const AdagradOptions& o, const char* who) {
    const std::string w = who;
    require(o.lr >= 0.0, w, "invalid learning rate " + std::to_string(o.lr));
    require(o.lr_decay >= 0.0, w, "invalid lr_decay " + std::to_string(o.lr_decay));
    require(o.weight_decay >= 0.0, w, "invalid weight_decay " + std::to_string(o.weight_decay));
    require(o.initial_accumulator_value >= 0.0, w,
            "invalid initial_accumulator_value " + std::to_string(o.initial_accumulator_value));
    require(o.eps >= 0.0, w, "invalid eps " + std::to_string(o.eps));
}
inline void check_options(const SGDOptions& o, const char* who) {
    const std::string w = who;
    require(o.lr >= 0.0, w, "invalid learning rate " + std::to_string(o.lr));
    require(o.momentum >= 0.0, w, "invalid momentum " + std::to_string(o.momentum));
    require(o.weight_decay >= 0.0, w, "invalid weight_decay " + std::to_string(o.weight_decay));
    // As in torch: Nesterov's look-ahead is defined for undamped momentum only.
    require(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0), w,
            "nesterov needs momentum > 0 and dampening = 0");
}

}  // namespace detail

// =============================================================================================
// Plain optimisers (outer loop): matrices updated in place, no tape.
// =============================================================================================

/// An optimiser's state as plain matrices, for checkpoints: the step count and its buffers
/// (Adam: m then v; Adagrad: the squared-gradient sums; SGD: momentum buffers, maybe none).
struct OptimizerState {
    int steps = 0;
    std::vector<std::vector<Eigen::MatrixXd>> buffers;
};

namespace detail {
inline void check_loaded(const char* who, const OptimizerState& s, std::size_t n_buffers,
                         const std::vector<Eigen::MatrixXd>& params) {
    require(s.steps >= 0, who, "negative step count in the loaded state");
    require(s.buffers.size() == n_buffers, who, "the loaded state has the wrong number of buffers");
    for (const auto& b : s.buffers) {
        require(b.size() == params.size(), who, "the loaded state does not match the parameter count");
        for (std::size_t k = 0; k < b.size(); ++k)
            require(b[k].rows() == params[k].rows() && b[k].cols() == params[k].cols(), who,
                    "the loaded state does not match parameter " + std::to_string(k) + "'s shape");
    }
}
}  // namespace detail

/// torch.optim.Adam (amsgrad = false), step for step.
class Adam {
public:
    explicit Adam(AdamOptions opts = {}) : opts_(opts) { detail::check_options(opts_, "ad::optim::Adam"); }

    /// One update of every parameter from its gradient.
    void step(std::vector<Eigen::MatrixXd>& params, const std::vector<Eigen::MatrixXd>& grads) {
        step_impl(params, grads);
    }
    /// The same, reading the gradients' values from Vars (e.g. straight from ad::grad).
    void step(std::vector<Eigen::MatrixXd>& params, const std::vector<Var>& grads) { step_impl(params, grads); }

    /// Steps taken since construction or the last reset().
    int steps() const { return t_; }
    /// Forgets the moments and the step count (the next step sizes the state afresh).
    void reset() {
        m_.clear();
        v_.clear();
        t_ = 0;
        shapes_.reset();
    }
    const AdamOptions& options() const { return opts_; }
    OptimizerState state() const { return {t_, {m_, v_}}; }
    /// Restores a state() taken earlier for parameters of the same shapes.
    void load_state(const OptimizerState& s, const std::vector<Eigen::MatrixXd>& params) {
        if (s.steps == 0) return reset();
        detail::check_loaded("ad::optim::Adam::load_state", s, 2, params);
        shapes_.assume(params);
        m_ = s.buffers[0];
        v_ = s.buffers[1];
        t_ = s.steps;
    }

private:
    template <class G>
    void step_impl(std::vector<Eigen::MatrixXd>& params, const std::vector<G>& grads) {
        if (shapes_.check("ad::optim::Adam::step", params, grads)) {
            m_.clear();
            v_.clear();
            for (const auto& p : params) {
                m_.push_back(Eigen::MatrixXd::Zero(p.rows(), p.cols()));
                v_.push_back(Eigen::MatrixXd::Zero(p.rows(), p.cols()));
            }
        }
        ++t_;
        const double b1 = opts_.beta1, b2 = opts_.beta2, wd = opts_.weight_decay;
        // Bias corrections undo the zero start of m and v: E[m_t] = (1 - b1^t) E[g].
        const double bias_correction1 = 1.0 - std::pow(b1, t_);
        const double bias_correction2 = 1.0 - std::pow(b2, t_);
        // torch's arrangement: step_size = lr / bc1; denom = sqrt(v) / sqrt(bc2) + eps.
        const double step_size = opts_.lr / bias_correction1;
        const double bias_correction2_sqrt = std::sqrt(bias_correction2);
        for (std::size_t k = 0; k < params.size(); ++k) {
            auto p = params[k].array();
            auto m = m_[k].array();
            auto v = v_[k].array();
            decltype(auto) g_raw = detail::grad_value(grads[k]);
            auto update = [&](const auto& g) {
                m = b1 * m + (1.0 - b1) * g;      // m = b1 m + (1 - b1) g
                v = b2 * v + (1.0 - b2) * g * g;  // v = b2 v + (1 - b2) g^2
                // p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
                p -= step_size * m / (v.sqrt() / bias_correction2_sqrt + opts_.eps);
            };
            // g <- g + wd p (an L2 penalty folded into the gradient, not AdamW's decoupled
            // decay). Passed as a lazy expression, so no temporary matrix is allocated.
            if (wd != 0.0) update(g_raw.array() + wd * p);
            else update(g_raw.array());
        }
    }

    AdamOptions opts_;
    std::vector<Eigen::MatrixXd> m_, v_;  ///< first and second moment estimates
    int t_ = 0;
    detail::StateShapes shapes_;
};

/// torch.optim.Adagrad, step for step.
class Adagrad {
public:
    explicit Adagrad(AdagradOptions opts = {}) : opts_(opts) { detail::check_options(opts_, "ad::optim::Adagrad"); }

    void step(std::vector<Eigen::MatrixXd>& params, const std::vector<Eigen::MatrixXd>& grads) {
        step_impl(params, grads);
    }
    void step(std::vector<Eigen::MatrixXd>& params, const std::vector<Var>& grads) { step_impl(params, grads); }

    int steps() const { return t_; }
    /// Forgets the accumulated squares and the step count.
    void reset() {
        sum_.clear();
        t_ = 0;
        shapes_.reset();
    }
    const AdagradOptions& options() const { return opts_; }
    OptimizerState state() const { return {t_, {sum_}}; }
    void load_state(const OptimizerState& s, const std::vector<Eigen::MatrixXd>& params) {
        if (s.steps == 0) return reset();
        detail::check_loaded("ad::optim::Adagrad::load_state", s, 1, params);
        shapes_.assume(params);
        sum_ = s.buffers[0];
        t_ = s.steps;
    }

private:
    template <class G>
    void step_impl(std::vector<Eigen::MatrixXd>& params, const std::vector<G>& grads) {
        if (shapes_.check("ad::optim::Adagrad::step", params, grads)) {
            sum_.clear();
            for (const auto& p : params)
                sum_.push_back(Eigen::MatrixXd::Constant(p.rows(), p.cols(), opts_.initial_accumulator_value));
        }
        ++t_;
        const double wd = opts_.weight_decay;
        // clr = lr / (1 + (t - 1) lr_decay): the step size decays harmonically with t.
        const double clr = opts_.lr / (1.0 + (t_ - 1) * opts_.lr_decay);
        for (std::size_t k = 0; k < params.size(); ++k) {
            auto p = params[k].array();
            auto s = sum_[k].array();
            decltype(auto) g_raw = detail::grad_value(grads[k]);
            auto update = [&](const auto& g) {
                s += g * g;  // state_sum += g^2
                // p -= clr g / (sqrt(state_sum) + eps). Coefficient-wise, so reading p inside
                // g while writing p is safe: each entry uses only its own old value.
                p -= clr * g / (s.sqrt() + opts_.eps);
            };
            if (wd != 0.0) update(g_raw.array() + wd * p);  // g <- g + wd p
            else update(g_raw.array());
        }
    }

    AdagradOptions opts_;
    std::vector<Eigen::MatrixXd> sum_;  ///< running sum of squared gradients
    int t_ = 0;
    detail::StateShapes shapes_;
};

/// torch.optim.SGD (with momentum, dampening, Nesterov and weight decay), step for step.
class SGD {
public:
    explicit SGD(SGDOptions opts = {}) : opts_(opts) { detail::check_options(opts_, "ad::optim::SGD"); }

    void step(std::vector<Eigen::MatrixXd>& params, const std::vector<Eigen::MatrixXd>& grads) {
        step_impl(params, grads);
    }
    void step(std::vector<Eigen::MatrixXd>& params, const std::vector<Var>& grads) { step_impl(params, grads); }

    int steps() const { return t_; }
    /// Forgets the momentum buffers and the step count.
    void reset() {
        buf_.clear();
        t_ = 0;
        shapes_.reset();
    }
    const SGDOptions& options() const { return opts_; }
    OptimizerState state() const {
        if (buf_.empty()) return {t_, {}};
        return {t_, {buf_}};
    }
    void load_state(const OptimizerState& s, const std::vector<Eigen::MatrixXd>& params) {
        if (s.steps == 0) return reset();
        detail::check_loaded("ad::optim::SGD::load_state", s, opts_.momentum != 0.0 ? 1 : 0, params);
        shapes_.assume(params);
        buf_ = opts_.momentum != 0.0 ? s.buffers[0] : std::vector<Eigen::MatrixXd>{};
        t_ = s.steps;
    }

private:
    template <class G>
    void step_impl(std::vector<Eigen::MatrixXd>& params, const std::vector<G>& grads) {
        const bool first = shapes_.check("ad::optim::SGD::step", params, grads);
        // Momentum buffers exist only when there is momentum: plain SGD keeps no state.
        if (first && opts_.momentum != 0.0) buf_.assign(params.size(), Eigen::MatrixXd());
        ++t_;
        const double lr = opts_.lr, mu = opts_.momentum, wd = opts_.weight_decay;
        for (std::size_t k = 0; k < params.size(); ++k) {
            auto p = params[k].array();
            decltype(auto) g_raw = detail::grad_value(grads[k]);
            auto update = [&](const auto& g) {
                if (mu == 0.0) {
                    p -= lr * g;  // p -= lr g
                    return;
                }
                // buf = g on the first step (torch clones it: no dampening there),
                // else buf = mu buf + (1 - dampening) g.
                if (first) buf_[k] = g.matrix();
                else buf_[k].array() = mu * buf_[k].array() + (1.0 - opts_.dampening) * g;
                // Nesterov looks ahead along the buffer: g <- g + mu buf; otherwise g <- buf.
                if (opts_.nesterov) p -= lr * (g + mu * buf_[k].array());
                else p -= lr * buf_[k].array();
            };
            if (wd != 0.0) update(g_raw.array() + wd * p);  // g <- g + wd p
            else update(g_raw.array());
        }
    }

    SGDOptions opts_;
    std::vector<Eigen::MatrixXd> buf_;  ///< momentum buffers (empty without momentum)
    int t_ = 0;
    detail::StateShapes shapes_;
};

// =============================================================================================
// Differentiable optimisers (inner loop). Every update is a Var op, so when the gradients come
// from grad(..., {.create_graph = true}) the returned parameters are differentiable functions
// of everything the training run saw: the initial weights, the data, the labels. They return
// new parameter Vars and never mutate. Their state is Vars too, so an instance is valid only
// inside the TapeScope where its steps were taken: reset() it (or make a new one) per run.
// =============================================================================================

/// One plain gradient step p - lr g for each parameter (no state).
inline std::vector<Var> sgd_step(const std::vector<Var>& params, const std::vector<Var>& grads, double lr) {
    detail::require(params.size() == grads.size(), "ad::optim::sgd_step",
                    std::to_string(params.size()) + " parameters but " + std::to_string(grads.size()) + " gradients");
    std::vector<Var> out;
    out.reserve(params.size());
    for (std::size_t k = 0; k < params.size(); ++k) {
        detail::require(params[k].rows() == grads[k].rows() && params[k].cols() == grads[k].cols(),
                        "ad::optim::sgd_step",
                        "parameter " + std::to_string(k) + " is " + shape_str(params[k]) + " but its gradient is " +
                            shape_str(grads[k]));
        out.push_back(params[k] - mul_scalar(grads[k], lr));  // p - lr g
    }
    return out;
}

/// SGD (torch's rule, momentum and all) written with Var ops.
class UnrolledSGD {
public:
    explicit UnrolledSGD(SGDOptions opts = {}) : opts_(opts) { detail::check_options(opts_, "ad::optim::UnrolledSGD"); }

    /// The parameters after one step. The momentum buffers are kept as Vars for the next step.
    std::vector<Var> step(const std::vector<Var>& params, const std::vector<Var>& grads) {
        const bool first = shapes_.check("ad::optim::UnrolledSGD::step", params, grads);
        if (first) buf_.assign(opts_.momentum != 0.0 ? params.size() : 0, Var());
        ++t_;
        const double mu = opts_.momentum, wd = opts_.weight_decay;
        std::vector<Var> out;
        out.reserve(params.size());
        for (std::size_t k = 0; k < params.size(); ++k) {
            Var g = grads[k];
            if (wd != 0.0) g = g + mul_scalar(params[k], wd);  // g <- g + wd p
            if (mu != 0.0) {
                // buf = g first, then buf = mu buf + (1 - dampening) g
                buf_[k] = first ? g : mul_scalar(buf_[k], mu) + mul_scalar(g, 1.0 - opts_.dampening);
                g = opts_.nesterov ? g + mul_scalar(buf_[k], mu) : buf_[k];  // g + mu buf, or buf
            }
            out.push_back(params[k] - mul_scalar(g, opts_.lr));  // p - lr g
        }
        return out;
    }

    int steps() const { return t_; }
    /// Drops the buffers (needed before reusing the optimiser after its TapeScope closed).
    void reset() {
        buf_.clear();
        t_ = 0;
        shapes_.reset();
    }
    const SGDOptions& options() const { return opts_; }
    /// Cuts the gradient path through the momentum buffers (for truncated meta-gradients).
    void detach_state() {
        for (Var& b : buf_)
            if (b.defined()) b = detach(b);
    }
    /// The momentum buffers (empty before the first step or without momentum), so a caller can
    /// carry them across steps it records separately (ad::checkpoint).
    const std::vector<Var>& state() const { return buf_; }
    /// Continues from `state()` taken after `t` steps of parameters shaped like `params`.
    void set_state(const std::vector<Var>& params, const std::vector<Var>& state, int t) {
        reset();
        if (t == 0) return;
        shapes_.check("ad::optim::UnrolledSGD::set_state", params, params);
        detail::require(state.size() == (opts_.momentum != 0.0 ? params.size() : 0),
                        "ad::optim::UnrolledSGD::set_state", "wrong number of momentum buffers");
        buf_ = state;
        t_ = t;
    }

private:
    SGDOptions opts_;
    std::vector<Var> buf_;
    int t_ = 0;
    detail::StateShapes shapes_;
};

/// Adam written with Var ops, with one deliberate change: the denominator is
/// sqrt(v_hat + eps^2) instead of torch's sqrt(v_hat) + eps.
class UnrolledAdam {
public:
    explicit UnrolledAdam(AdamOptions opts = {}) : opts_(opts) {
        detail::check_options(opts_, "ad::optim::UnrolledAdam");
    }

    /// The parameters after one step; the moments are kept as Vars for the next step.
    std::vector<Var> step(const std::vector<Var>& params, const std::vector<Var>& grads) {
        const bool first = shapes_.check("ad::optim::UnrolledAdam::step", params, grads);
        if (first) {
            m_.assign(params.size(), Var());
            v_.assign(params.size(), Var());
        }
        ++t_;
        const double b1 = opts_.beta1, b2 = opts_.beta2, wd = opts_.weight_decay;
        const double bias_correction1 = 1.0 - std::pow(b1, t_);
        const double bias_correction2 = 1.0 - std::pow(b2, t_);
        const double eps2 = opts_.eps * opts_.eps;
        std::vector<Var> out;
        out.reserve(params.size());
        for (std::size_t k = 0; k < params.size(); ++k) {
            Var g = grads[k];
            if (wd != 0.0) g = g + mul_scalar(params[k], wd);  // g <- g + wd p
            // m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2   (m = v = 0 before the first step,
            // so the first step skips the multiply by zero)
            Var gm = mul_scalar(g, 1.0 - b1), gv = mul_scalar(square(g), 1.0 - b2);
            m_[k] = first ? gm : mul_scalar(m_[k], b1) + gm;
            v_[k] = first ? gv : mul_scalar(v_[k], b2) + gv;
            Var m_hat = mul_scalar(m_[k], 1.0 / bias_correction1);  // m / (1 - b1^t)
            Var v_hat = mul_scalar(v_[k], 1.0 / bias_correction2);  // v / (1 - b2^t)
            // p - lr m_hat / sqrt(v_hat + eps^2). Why not sqrt(v_hat) + eps: where a gradient
            // entry is exactly zero, v_hat is 0 and sqrt's derivative 1/(2 sqrt 0) is infinite;
            // the chain rule then multiplies it by d(g^2)/dg = 2g = 0, giving inf * 0 = NaN in
            // the meta-gradient (and in every second derivative). With eps^2 inside, sqrt is
            // evaluated at >= eps^2 > 0, so its derivative is at most 1/(2 eps), finite. For
            // |g| >> eps the two forms agree to O(eps / sqrt(v_hat)).
            Var denom = sqrt(add_scalar(v_hat, eps2));
            out.push_back(params[k] - mul_scalar(m_hat / denom, opts_.lr));
        }
        return out;
    }

    int steps() const { return t_; }
    /// Drops the moments (needed before reusing the optimiser after its TapeScope closed).
    void reset() {
        m_.clear();
        v_.clear();
        t_ = 0;
        shapes_.reset();
    }
    const AdamOptions& options() const { return opts_; }
    /// Cuts the gradient path through the moments (for truncated meta-gradients).
    void detach_state() {
        for (Var& m : m_)
            if (m.defined()) m = detach(m);
        for (Var& v : v_)
            if (v.defined()) v = detach(v);
    }
    /// The moments, m then v (empty before the first step), so a caller can carry them across
    /// steps it records separately (ad::checkpoint).
    std::vector<Var> state() const {
        std::vector<Var> s = m_;
        s.insert(s.end(), v_.begin(), v_.end());
        return s;
    }
    /// Continues from `state()` taken after `t` steps of parameters shaped like `params`.
    void set_state(const std::vector<Var>& params, const std::vector<Var>& state, int t) {
        reset();
        if (t == 0) return;
        shapes_.check("ad::optim::UnrolledAdam::set_state", params, params);
        detail::require(state.size() == 2 * params.size(), "ad::optim::UnrolledAdam::set_state",
                        "expected m and v for every parameter");
        m_.assign(state.begin(), state.begin() + std::ptrdiff_t(params.size()));
        v_.assign(state.begin() + std::ptrdiff_t(params.size()), state.end());
        t_ = t;
    }

private:
    AdamOptions opts_;
    std::vector<Var> m_, v_;
    int t_ = 0;
    detail::StateShapes shapes_;
};

}  // namespace occam::ad::optim
