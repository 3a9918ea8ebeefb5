// What this file teaches: the paper's Algorithm 1. Each meta-step draws inputs, lets the
// meta-learner label them, trains the learner on some of the labels, measures its error on
// the rest, adds a term that keeps the labels spread like U[-1, 1], and takes one gradient
// step on the meta-learner through all of it.
#pragma once

#include <cmath>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "../autodiff/autodiff.hpp"
#include "../learners/kernel.hpp"
#include "../learners/ridge.hpp"
#include "../metaloss/divergences.hpp"
#include "../metaloss/sinkhorn.hpp"
#include "config.hpp"
#include "inputs.hpp"

namespace occam::experiment {

/// A run that cannot go on: a non-finite loss or gradient, named with the step and the terms.
class TrainingError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Random streams: every draw is keyed by (seed, stream), so adding a draw in one place never
/// shifts another, and any step can be recomputed on its own (for --resume).
enum class Stream : std::uint64_t { meta_init = 1, learner_fixed = 2, probe = 3, eval = 4, step = 5, final_fit = 6 };
inline ad::Rng rng_for(std::uint64_t seed, Stream s, std::uint64_t index = 0) {
    return ad::Rng(seed, (std::uint64_t(s) << 40) + index);
}

/// Validates a Config with one-line messages naming the flag.
inline void validate(const Config& c) {
    auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
    if (c.learner != "ridge" && c.learner != "kernel" && c.learner != "arccos")
        fail("--learner must be ridge, kernel or arccos (got '" + c.learner + "')");
    if (c.n_train < 1) fail("--train must be >= 1");
    if (c.n_test < 1) fail("--test must be >= 1");
    if (c.features_min < 1 || c.features_max < c.features_min) fail("--features must be K or MIN:MAX with 1 <= MIN <= MAX");
    if (!(c.ridge >= 0)) fail("--ridge must be >= 0");
    if (c.divergence != "sinkhorn" && c.divergence != "energy" && c.divergence != "mmd" && c.divergence != "w2" &&
        c.divergence != "variance")
        fail("--divergence must be sinkhorn, energy, mmd, w2 or variance (got '" + c.divergence + "')");
    if (c.div_on != "all" && c.div_on != "split") fail("--div-on must be all or split (got '" + c.div_on + "')");
    if (!(c.div_weight >= 0) || !(c.mse_weight >= 0)) fail("--div-weight and --mse-weight must be >= 0");
    if (!(c.blur > 0)) fail("--blur must be > 0");
    if (!(c.scaling > 0 && c.scaling < 1)) fail("--scaling must be in (0, 1)");
    if (c.meta_hidden < 1 || c.meta_depth < 0) fail("--meta-hidden must be >= 1 and --meta-depth >= 0");
    if (c.meta_optimizer != "adagrad" && c.meta_optimizer != "adam" && c.meta_optimizer != "sgd")
        fail("--meta-optimizer must be adagrad, adam or sgd (got '" + c.meta_optimizer + "')");
    if (!(c.lr > 0)) fail("--lr must be > 0");
    if (c.steps < 0) fail("--steps must be >= 0");
    if (c.threads < 1) fail("--threads must be >= 1");
    if (c.probe < 10) fail("--probe must be >= 10");
    if (c.eval_tasks < 1) fail("--eval-tasks must be >= 1");
    if (c.checkpoint_every < 1) fail("--checkpoint-every must be >= 1");
}

/// The learner a Config asks for; fixed random features are drawn from their own stream.
inline std::unique_ptr<learners::Learner> make_learner(const Config& c, int input_dim) {
    if (c.learner == "ridge") return std::make_unique<learners::Ridge>(c.ridge, c.bias);
    if (c.learner == "arccos") return std::make_unique<learners::ArcCosKernelRidge>(c.ridge);
    return std::make_unique<learners::RandomFeatureRidge>(input_dim, c.features_min, c.features_max, c.ridge,
                                                          c.redraw_features,
                                                          rng_for(c.seed, Stream::learner_fixed));
}

/// The label-distribution term of the meta-loss: how far the labels z (n x 1) are from
/// U[-1, 1]. Sample-based divergences compare with n fresh uniform samples.
inline ad::Var label_divergence(const ad::Var& z, const Config& c, ad::Rng& rng) {
    if (c.divergence == "variance") return metaloss::variance_penalty(z);
    if (c.divergence == "w2") return metaloss::w2_to_uniform(z);
    ad::Var target = ad::constant(rng.uniform_matrix(z.rows(), 1, -1.0, 1.0));
    if (c.divergence == "energy") return metaloss::energy_distance(z, target);
    if (c.divergence == "mmd") return metaloss::gaussian_mmd(z, target, c.blur);
    metaloss::SinkhornOptions o;
    o.blur = c.blur;
    o.scaling = c.scaling;
    return metaloss::sinkhorn_divergence(z, target, o);
}

/// One row of log.csv.
struct StepLog {
    int step = 0;
    double loss = 0, mse = 0, divergence = 0;
};

/// The outer optimiser chosen by --meta-optimizer.
class OuterOptimizer {
public:
    OuterOptimizer(const std::string& name, double lr) {
        if (name == "adam") opt_ = ad::optim::Adam({.lr = lr});
        else if (name == "sgd") opt_ = ad::optim::SGD({.lr = lr});
        else opt_ = ad::optim::Adagrad({.lr = lr});
    }
    void step(std::vector<Eigen::MatrixXd>& p, const std::vector<ad::Var>& g) {
        std::visit([&](auto& o) { o.step(p, g); }, opt_);
    }
    ad::optim::OptimizerState state() const {
        return std::visit([](const auto& o) { return o.state(); }, opt_);
    }
    void load_state(const ad::optim::OptimizerState& s, const std::vector<Eigen::MatrixXd>& p) {
        std::visit([&](auto& o) { o.load_state(s, p); }, opt_);
    }

private:
    std::variant<ad::optim::Adagrad, ad::optim::Adam, ad::optim::SGD> opt_;
};

/// Meta-trains one meta-learner against one learner (Algorithm 1).
class MetaTrainer {
public:
    explicit MetaTrainer(const Config& c)
        : cfg_(c), inputs_(make_inputs(c.inputs)), optimizer_(c.meta_optimizer, c.lr) {
        validate(cfg_);
        learner_ = make_learner(cfg_, inputs_->dim());
        std::vector<int> widths = {inputs_->dim()};
        for (int l = 0; l < cfg_.meta_depth; ++l) widths.push_back(cfg_.meta_hidden);
        widths.push_back(1);
        net_ = ad::nn::MLP{widths, ad::nn::parse_activation(cfg_.meta_activation),
                           ad::nn::parse_output_map(cfg_.meta_output)};
        ad::Rng init = rng_for(cfg_.seed, Stream::meta_init);
        params_ = net_.init(init);
    }

    /// One meta-step; returns the loss terms.
    StepLog step() {
        ad::TapeScope scope;
        const int ntr = cfg_.n_train, nte = cfg_.n_test;
        ad::Rng rng = rng_for(cfg_.seed, Stream::step, std::uint64_t(step_));
        Eigen::MatrixXd X = inputs_->sample(ntr + nte, rng);
        learner_->new_task(rng);

        std::vector<ad::Var> P = ad::params(params_);
        ad::Var z = net_(P, ad::constant(X));
        if (!z.value().allFinite())
            throw TrainingError("step " + std::to_string(step_) +
                                ": the meta-learner's labels are not finite (its weights diverged); try a smaller --lr");
        ad::Var z_train = ad::rows(z, 0, ntr), z_test = ad::rows(z, ntr, nte);
        ad::Var pred = learner_->fit_predict(ad::constant(X.topRows(ntr)), z_train, ad::constant(X.bottomRows(nte)));
        ad::Var mse = ad::mean(ad::square(pred - z_test));
        ad::Var div = cfg_.div_on == "all" ? label_divergence(z, cfg_, rng)
                                           : label_divergence(z_train, cfg_, rng) + label_divergence(z_test, cfg_, rng);
        ad::Var loss = cfg_.mse_weight * mse + cfg_.div_weight * div;

        StepLog log{step_, loss.item(), mse.item(), div.item()};
        if (!std::isfinite(log.loss)) {
            std::ostringstream s;
            s << "step " << step_ << ": the meta-loss is not finite (test MSE " << log.mse << ", " << cfg_.divergence
              << " " << log.divergence << "); try a smaller --lr or another --divergence";
            throw TrainingError(s.str());
        }
        std::vector<ad::Var> g = ad::grad(loss, P);
        for (const ad::Var& gk : g)
            if (!gk.value().allFinite())
                throw TrainingError("step " + std::to_string(step_) +
                                    ": the meta-gradient is not finite; try a smaller --lr");
        optimizer_.step(params_, g);
        ++step_;
        return log;
    }

    /// The meta-learner's labels at the given inputs (values only).
    Eigen::VectorXd label(const Eigen::MatrixXd& X) const {
        ad::TapeScope scope;
        ad::NoGradGuard no_grad;
        std::vector<ad::Var> P;
        for (const auto& p : params_) P.push_back(ad::constant(p));
        return net_(P, ad::constant(X)).value().col(0);
    }

    /// The learner trained on (X_train, y_train), predicting at X_test (values only).
    Eigen::VectorXd fit_predict(const Eigen::MatrixXd& X_train, const Eigen::VectorXd& y_train,
                                const Eigen::MatrixXd& X_test, ad::Rng& task_rng) {
        ad::TapeScope scope;
        ad::NoGradGuard no_grad;
        learner_->new_task(task_rng);
        return learner_
            ->fit_predict(ad::constant(X_train), ad::constant(Eigen::MatrixXd(y_train)), ad::constant(X_test))
            .value()
            .col(0);
    }

    /// The learner's mean test MSE on the meta-learner's function over fresh tasks of the
    /// training sizes (the generalisation error the meta-learner minimised).
    double test_mse(int tasks) {
        double total = 0;
        for (int t = 0; t < tasks; ++t) {
            ad::Rng rng = rng_for(cfg_.seed, Stream::eval, std::uint64_t(t));
            Eigen::MatrixXd X = inputs_->sample(cfg_.n_train + cfg_.n_test, rng);
            Eigen::VectorXd y = label(X);
            Eigen::VectorXd pred = fit_predict(X.topRows(cfg_.n_train), y.head(cfg_.n_train),
                                               X.bottomRows(cfg_.n_test), rng);
            total += (pred - y.tail(cfg_.n_test)).squaredNorm() / cfg_.n_test;
        }
        return total / tasks;
    }

    const Config& config() const { return cfg_; }
    const InputDistribution& inputs() const { return *inputs_; }
    const learners::Learner& learner() const { return *learner_; }
    int steps_done() const { return step_; }
    const std::vector<Eigen::MatrixXd>& params() const { return params_; }
    ad::optim::OptimizerState optimizer_state() const { return optimizer_.state(); }

    /// Restores a checkpoint: parameters, optimiser state and the step counter. Every later
    /// draw is keyed by the step, so the run continues exactly as if it had never stopped.
    void restore(int step, std::vector<Eigen::MatrixXd> params, const ad::optim::OptimizerState& opt) {
        if (params.size() != params_.size()) throw std::invalid_argument("checkpoint: wrong number of parameters");
        for (std::size_t k = 0; k < params.size(); ++k)
            if (params[k].rows() != params_[k].rows() || params[k].cols() != params_[k].cols())
                throw std::invalid_argument("checkpoint: parameter shapes do not match the configuration");
        params_ = std::move(params);
        optimizer_.load_state(opt, params_);
        step_ = step;
    }

private:
    Config cfg_;
    std::unique_ptr<InputDistribution> inputs_;
    std::unique_ptr<learners::Learner> learner_;
    ad::nn::MLP net_;
    std::vector<Eigen::MatrixXd> params_;
    OuterOptimizer optimizer_;
    int step_ = 0;
};

}  // namespace occam::experiment
