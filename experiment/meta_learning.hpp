// What this file teaches: the paper's Algorithm 1. Each meta-step draws inputs, lets the
// meta-learner label them, trains the learner on some of the labels, measures its error on
// the rest, adds a term that keeps the labels spread like U[-1, 1], and takes one gradient
// step on the meta-learner through all of it. A series of meta-learners, each orthogonal to
// the earlier ones, maps out the bias function by function (the paper's section 3), and two
// learners can play "chosen vs neglected student" (section 4).
#pragma once

#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "../autodiff/autodiff.hpp"
#include "../metaloss/divergences.hpp"
#include "../metaloss/evolution.hpp"
#include "../metaloss/sinkhorn.hpp"
#include "config.hpp"
#include "inputs.hpp"
#include "learner_spec.hpp"
#include "population_scoring.hpp"
#include "thread_pool.hpp"

namespace occam::experiment {

/// A run that cannot go on: a non-finite loss or gradient, named with the step and the terms.
class TrainingError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Random streams: every draw is keyed by (seed, stream), so adding a draw in one place never
/// shifts another, and any step can be recomputed on its own (for --resume).
enum class Stream : std::uint64_t {
    meta_init = 1,
    learner_fixed = 2,
    probe = 3,
    eval = 4,
    step = 5,
    final_fit = 6,
    orth_probe = 7,
    es_noise = 8
};
inline ad::Rng rng_for(std::uint64_t seed, Stream s, std::uint64_t index = 0) {
    return ad::Rng(seed, (std::uint64_t(s) << 40) + index);
}

/// Splits "a,b,c" (empty items dropped).
inline std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

/// The divergence for function k (0-based): --divergence may list one per function, cycling.
inline std::string divergence_for(const Config& c, int k) {
    auto list = split_list(c.divergence);
    return list.empty() ? c.divergence : list[std::size_t(k) % list.size()];
}

/// Validates a Config with one-line messages naming the flag: every choice is one of its names,
/// every number finite and in range, and every matrix the run will allocate fits (at most
/// kMaxMatrixElements elements each, and all of them together in this machine's memory), so
/// `--learner kernel:features=100000000` fails now with the size it asks for, not later in
/// std::bad_alloc or an int overflow. Reads the first line of a --inputs file (its dimension).
inline void validate(const Config& c) {
    auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
    auto number = [](double v) {  // for messages: 0.9999, 1e-05
        std::ostringstream s;
        s << v;
        return s.str();
    };
    // Comparisons are written so that NaN fails them: !(v > 0) is true for NaN, v <= 0 is not.
    auto at_least = [&](double v, double lo, const char* flag) {
        if (!(std::isfinite(v) && v >= lo)) fail(std::string(flag) + " must be a finite number >= " + number(lo));
    };
    auto positive = [&](double v, const char* flag) {
        if (!(std::isfinite(v) && v > 0)) fail(std::string(flag) + " must be a finite number > 0");
    };
    const bool exec = c.learner.rfind("exec:", 0) == 0;
    const std::string kind = c.learner.substr(0, c.learner.find(':'));  // "kernel:activation=abs" is a kernel
    if (kind != "ridge" && kind != "kernel" && kind != "arccos" && kind != "mlp" && kind != "spiking" && kind != "cnn" &&
        !exec)
        fail("--learner must be ridge, kernel, arccos, mlp, spiking, cnn or exec:COMMAND, optionally with settings like "
             "kernel:activation=abs (got '" + c.learner + "')");
    auto uses_exec = [](const std::string& s) {
        return s.rfind("exec", 0) == 0 || s.find(",exec") != std::string::npos;
    };
    const bool es = metaloss::is_es_method(c.meta_optimizer);
    if ((exec || uses_exec(c.chosen) || uses_exec(c.neglected) || uses_exec(c.cooperative)) && !es)
        fail("an exec: learner gives no gradients; use --meta-optimizer des (or snes, openai-es, sep-cma-es)");
    if (!(c.exec_timeout > 0 && c.exec_timeout <= kMaxExecTimeout))
        fail("--exec-timeout must be in (0, " + number(kMaxExecTimeout) + "] seconds (at most a week; got " +
             number(c.exec_timeout) + ")");
    if (c.standardize_labels && c.meta_output != "identity")
        fail("--standardize-labels needs --meta-output identity (the map is folded into the last layer)");
    if (c.n_train < 1) fail("--train must be >= 1");
    if (c.n_test < 1) fail("--test must be >= 1");
    if (c.features_min < 1 || c.features_max < c.features_min)
        fail("--features must be K or MIN:MAX with 1 <= MIN <= MAX");
    at_least(c.ridge, 0, "--ridge");
    positive(c.inner_lr, "--inner-lr");
    if (c.inner_steps < 1) fail("--inner-steps must be >= 1");
    if (c.inner_batch < 0) fail("--inner-batch must be >= 0 (0: full batch)");
    if (c.truncate < 0) fail("--truncate must be >= 0 (0: through every inner step)");
    if (split_list(c.divergence).empty()) fail("--divergence is empty");
    bool sinkhorn = false, pairwise = false;
    for (const auto& d : split_list(c.divergence)) {
        if (d != "sinkhorn" && d != "energy" && d != "mmd" && d != "w2" && d != "variance")
            fail("--divergence must be sinkhorn, energy, mmd, w2 or variance (got '" + d + "')");
        sinkhorn = sinkhorn || d == "sinkhorn";
        pairwise = pairwise || d == "energy" || d == "mmd";
    }
    if (c.div_on != "all" && c.div_on != "split" && c.div_on != "test")
        fail("--div-on must be all, split or test (got '" + c.div_on + "')");
    at_least(c.div_weight, 0, "--div-weight");
    at_least(c.mse_weight, 0, "--mse-weight");
    positive(c.blur, "--blur");
    if (!(c.scaling > 0 && c.scaling < 1)) fail("--scaling must be in (0, 1)");
    if (sinkhorn) {
        // The epsilon schedule goes from the labels' diameter (about 2) down to the blur by a
        // factor --scaling per iteration: --scaling 0.999999 would mean millions per step.
        const double iterations = std::ceil(std::log(2.0 / c.blur) / -std::log(c.scaling));
        if (iterations > kMaxSinkhornIterations)
            fail("--scaling " + number(c.scaling) + " with --blur " + number(c.blur) + " makes " +
                 describe_count(iterations) + " Sinkhorn iterations per divergence (at most " +
                 number(kMaxSinkhornIterations) + "); use a smaller --scaling or a larger --blur");
    }
    if (c.meta_hidden < 1) fail("--meta-hidden must be >= 1");
    if (!c.meta_conv.empty()) {
        const auto channels = parse_integer_list<int>(c.meta_conv, "--meta-conv", 1, 4096);
        if (channels.size() > std::size_t(kMaxLayers))
            fail("--meta-conv: at most " + std::to_string(kMaxLayers) + " conv layers");
        if (!is_image_spec(c.inputs)) fail("--meta-conv needs image inputs (--inputs mnist or idx:DIR)");
    }
    if (c.meta_kernel < 1 || c.meta_kernel > 64) fail("--meta-kernel must be from 1 to 64");
    if (is_image_spec(c.inputs)) detail::parse_classes(c.classes, c.inputs);  // a bad --classes fails here, unread
    if (c.meta_depth < 0 || c.meta_depth > kMaxLayers)
        fail("--meta-depth must be from 0 to " + std::to_string(kMaxLayers));
    if (c.meta_optimizer != "adagrad" && c.meta_optimizer != "adam" && c.meta_optimizer != "sgd" && !es)
        fail(
            "--meta-optimizer must be adagrad, adam, sgd, or an evolution strategy: des, snes, openai-es, sep-cma-es "
            "(got '" +
            c.meta_optimizer + "')");
    if (c.population < 2) fail("--population must be >= 2");
    if (c.meta_optimizer == "openai-es" && c.population % 2)
        fail("--population must be even for openai-es (antithetic pairs)");
    positive(c.sigma, "--sigma");
    positive(c.lr, "--lr");
    if (c.steps < 0) fail("--steps must be >= 0");
    if (c.functions < 1) fail("--functions must be >= 1");
    if (double(c.functions) * c.steps > std::numeric_limits<int>::max())  // steps are counted in int
        fail("--functions x --steps must be at most " + std::to_string(std::numeric_limits<int>::max()) +
             " meta-steps in all");
    if (c.orthogonality != "project" && c.orthogonality != "penalty" && c.orthogonality != "none")
        fail("--orthogonality must be project, penalty or none (got '" + c.orthogonality + "')");
    at_least(c.orth_weight, 0, "--orth-weight");
    if (c.chosen.empty() != c.neglected.empty()) fail("--chosen and --neglected go together");
    if (!c.chosen.empty() && !c.cooperative.empty()) fail("use either --chosen/--neglected or --cooperative");
    if (!c.cooperative.empty() && split_list(c.cooperative).empty()) fail("--cooperative lists no learner");
    if (c.students_loss != "difference" && c.students_loss != "log-ratio")
        fail("--students-loss must be difference or log-ratio (got '" + c.students_loss + "')");
    if (c.threads < 1 || c.threads > kMaxThreads) fail("--threads must be from 1 to " + std::to_string(kMaxThreads));
    if (c.probe < 10) fail("--probe must be >= 10");
    if (c.eval_tasks < 1) fail("--eval-tasks must be >= 1");
    if (c.checkpoint_every < 1) fail("--checkpoint-every must be >= 1");
    if (c.control && c.mse_weight == 0)
        fail("--control runs the experiment again with --mse-weight 0; this run already has no learner term");

    // ---- sizes: the matrices the run allocates, from the settings above ----
    // A lower bound (each large matrix as often as the forward pass surely keeps it; the backward
    // pass and temporaries need more), so a run refused here could not have run; sizes are
    // doubles, so no product overflows.
    // The meta-learner's input width is the samples' (d); the learners' is their view's (dl:
    // the same for every distribution but ipd, whose learners see spike trains).
    const double d = input_dim(c.inputs), dl = learner_input_dim(c.inputs);
    const double ntr = c.n_train, nte = c.n_test, n = ntr + nte, H = c.meta_hidden, L = c.meta_depth;
    double total = 0, largest = 0;
    std::string largest_what;
    auto count = [&](const std::string& what, double bytes) {
        total += bytes;
        if (bytes > largest) largest = bytes, largest_what = what;
    };
    // `who` (a flag or learner) needs `copies` rows x cols matrices of doubles.
    auto need = [&](const std::string& who, const std::string& what, double rows, double cols, double copies = 1) {
        const std::string said = who + " needs a " + describe_count(rows) + " x " + describe_count(cols) + " " +
                                 what + " (" + describe_bytes(8 * rows * cols) + ")";
        if (rows * cols > kMaxMatrixElements)
            fail(said + "; occam allows at most " + describe_count(kMaxMatrixElements) + " elements (" +
                 describe_bytes(8 * kMaxMatrixElements) + ") in one matrix");
        count(copies > 1 ? said + ", " + describe_count(copies) + " of them (" +
                               describe_bytes(8 * rows * cols * copies) + ")"
                         : said,
              8 * rows * cols * copies);
    };
    need("--train + --test", "matrix of task inputs (points x input dimension)", n, d);
    need("--probe", "matrix of probe inputs (points x input dimension)", c.probe, d);
    if (dl != d) {
        need("--train + --test with --inputs " + c.inputs, "matrix of the learner's view of a task (points x view width)",
             n, dl);
        need("--probe with --inputs " + c.inputs, "matrix of the learner's view of the probe (points x view width)",
             c.probe, dl);
    }
    double meta_params = L == 0 ? d + 1 : d * H + H + (L - 1) * (H * H + H) + H + 1;
    if (!c.meta_conv.empty()) {
        // A CNN meta-learner (images of d pixels): each conv layer keeps its pooled output and,
        // per entry, its window's winner (a 2-byte code: 1.25 doubles an entry). The unpooled
        // output only ever exists a band of rows at a time (kernels/conv_relu_pool.hpp), so it
        // counts for no memory, but its entries must still be countable by an int.
        const double k = c.meta_kernel;
        double channels_in = 1, pixels = d;
        meta_params = 0;
        for (const int ch : parse_integer_list<int>(c.meta_conv, "--meta-conv", 1, 4096)) {
            meta_params += ch * (channels_in * k * k + 1);
            need("--meta-conv", "matrix of a conv layer's output (points x channels x pixels)", n, ch * pixels, 0);
            pixels = std::floor(pixels / 4);  // 2 x 2 pooling
            need("--meta-conv", "matrix of a conv layer's pooled output (points x channels x pixels)", n, ch * pixels,
                 1.25);
            channels_in = ch;
        }
        meta_params += channels_in * pixels + 1;
    } else {
        if (L >= 1) {
            need("--meta-hidden", "first-layer weight matrix (width x input dimension)", H, d);
            // The tape holds three per layer: x W, + b and the activation (and the backward pass as many).
            need("--meta-hidden", "matrix of hidden activations (--train + --test points x width)", n, H, 3 * L);
            need("--probe", "matrix of the meta-learner's activations (probe points x --meta-hidden)", c.probe, H);
        }
        if (L >= 2) need("--meta-hidden", "hidden weight matrix (width x width)", H, H, L - 1);
    }
    need("the meta-learner (--meta-hidden, --meta-depth)", "parameter vector", meta_params, 1, c.functions + 2.0);
    if (es) need("--population", "matrix of members' weights (population x meta-learner parameters)", c.population,
                 meta_params, 2);
    if (pairwise) need("--divergence " + c.divergence, "matrix of pairwise distances (points x points)", n, n);
    if (c.functions > 1 && c.orthogonality == "project")
        need("--functions with --orthogonality project", "projection matrix (points x points)", n, n);

    std::vector<std::string> names;  // the learners of the game (learner_specs below)
    if (!c.chosen.empty())
        names = {c.chosen, c.neglected};
    else if (!c.cooperative.empty())
        names = split_list(c.cooperative);
    else
        names = {c.learner};
    for (const std::string& name : names) {
        const LearnerSpec s = parse_learner_spec(name, c);  // a bad setting fails here, before any output
        std::string who = "learner '" + name + "'";
        if (s.kind == "kernel") {
            if (name.find("features=") == std::string::npos)
                who += " with --features " + std::to_string(s.features_max);
            const double K = s.features_max;
            need(who, "weight matrix (input dimension x features)", dl, K);
            need(who, "matrix of training features (--train points x features)", ntr, K, 2);  // x J and relu
            need(who, "matrix of test features (--test points x features)", nte, K, 2);
            need(who, "ridge system (features or --train points, squared)", std::min(K, ntr), std::min(K, ntr));
            if (K > ntr) need(who, "kernel matrix (--test x --train points)", nte, ntr);
        } else if (s.kind == "ridge") {
            const double p = dl + (s.bias ? 1 : 0), side = p <= ntr || s.bias ? p : ntr;
            need(who, "ridge system (input dimension or --train points, squared)", side, side);
        } else if (s.kind == "arccos") {
            need(who, "Gram matrix (--train x --train points)", ntr, ntr);
            need(who, "kernel matrix (--test x --train points)", nte, ntr);
        } else if (s.kind == "mlp") {
            who += " with --learner-hidden " + c.learner_hidden;
            std::vector<double> widths = {dl};
            widths.insert(widths.end(), s.hidden.begin(), s.hidden.end());
            widths.push_back(1);
            double params = 0;
            for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
                need(who, "weight matrix", widths[l + 1], widths[l]);
                need(who, "matrix of activations (--train points x width)", ntr, widths[l + 1]);
                params += widths[l + 1] * (widths[l] + 1);
            }
            // The tape keeps every differentiated inner step's parameters (and more).
            const double steps = c.truncate > 0 ? std::min(c.truncate, c.inner_steps) : c.inner_steps;
            count(who + " keeps " + describe_count(steps) + " inner steps (--inner-steps) of " +
                      describe_count(params) + " parameters on the tape (" + describe_bytes(8 * steps * params) + ")",
                  8 * steps * params);
        } else if (s.kind == "cnn") {
            // The first conv layer's output for the test points, and per differentiated inner
            // step about three conv-sized matrices of its batch op by op, its pooled output and
            // winners (10 bytes a pooled feature) as a fused step, a tenth with step checkpointing.
            const double out = s.cnn.channels.front() * dl;
            const double batch = c.inner_batch > 0 ? std::min(ntr, double(c.inner_batch)) : ntr;
            need(who, "matrix of the first conv layer's output (--test points x channels x pixels)", nte, out);
            const double steps = c.truncate > 0 ? std::min(c.truncate, c.inner_steps) : c.inner_steps;
            const double copies = c.step_checkpointing ? 0.1
                                  : s.inner.fused      ? 1.25 / (double(s.cnn.pool) * s.cnn.pool)
                                                       : 3;
            count(who + " keeps " + describe_count(steps) + " inner steps of conv activations on the tape (" +
                      describe_bytes(8 * steps * batch * out * copies) + ")" +
                      (c.step_checkpointing ? "" : "; --step-checkpointing keeps one step's"),
                  8 * steps * batch * out * copies);
        }
        if (es && s.kind != "mlp" && s.kind != "exec")  // a linear learner's prediction map, once per generation
            need(who, "prediction map (--test x --train points)", nte, ntr, 2);
    }
    const double memory = physical_memory_bytes();
    if (memory > 0 && total > memory)
        fail("this run needs at least " + describe_bytes(total) + " of memory (the largest part: " + largest_what +
             "); this machine has " + describe_bytes(memory) +
             " (its physical memory, or its container's limit)");
}

/// Warnings about a valid Config, one line each, for the command to print (the library prints
/// nothing): a --inputs file with fewer rows than the --train + --test points of a task, whose
/// points are then drawn with replacement, so a task repeats points and a point can be in both
/// its training and its test set (the test MSE then flatters the learner). Reads the file.
inline std::vector<std::string> warnings(const Config& c) {
    std::vector<std::string> out;
    const auto inputs = make_inputs(c.inputs, c.classes);
    if (const auto* file = dynamic_cast<const FileInputs*>(inputs.get())) {
        const long long rows = file->data().rows(), points = (long long)c.n_train + c.n_test;
        if (rows < points)
            out.push_back("inputs file '" + file->describe().substr(5) + "' has " + std::to_string(rows) +
                          " rows, fewer than the " + std::to_string(points) + " points of a task (--train " +
                          std::to_string(c.n_train) + " + --test " + std::to_string(c.n_test) +
                          "): points are drawn with replacement, so a task repeats points and a point can be in "
                          "both its training and its test set");
    }
    if (const auto* images = dynamic_cast<const ImageInputs*>(inputs.get())) {
        const long long count = images->count(), points = (long long)c.n_train + c.n_test;
        if (count < points)
            out.push_back("inputs '" + c.inputs + "' with --classes " + c.classes + " hold " + std::to_string(count) +
                          " images, fewer than the " + std::to_string(points) + " points of a task (--train " +
                          std::to_string(c.n_train) + " + --test " + std::to_string(c.n_test) +
                          "): images are drawn with replacement, so a task repeats images and an image can be in "
                          "both its training and its test set");
    }
    return out;
}

/// How the learners are scored against each other.
enum class Game {
    single,       ///< minimise one learner's test MSE
    students,     ///< minimise the chosen learner's test MSE minus the neglected one's
    cooperative,  ///< minimise the mean test MSE of every listed learner
};
inline Game game_of(const Config& c) {
    if (!c.chosen.empty()) return Game::students;
    if (!c.cooperative.empty()) return Game::cooperative;
    return Game::single;
}

/// The learner specs of a run: [main] or [chosen, neglected] or the cooperative list.
inline std::vector<LearnerSpec> learner_specs(const Config& c) {
    std::vector<LearnerSpec> out;
    switch (game_of(c)) {
        case Game::single:
            out.push_back(parse_learner_spec(c.learner, c));
            break;
        case Game::students:
            out.push_back(parse_learner_spec(c.chosen, c));
            out.push_back(parse_learner_spec(c.neglected, c));
            break;
        case Game::cooperative:
            for (const auto& s : split_list(c.cooperative)) out.push_back(parse_learner_spec(s, c));
            break;
    }
    return out;
}

/// The label-distribution term of the meta-loss: how far the labels z (n x 1) are from
/// U[-1, 1]. Sample-based divergences compare with n fresh uniform samples.
inline ad::Var label_divergence(const ad::Var& z, const std::string& kind, const Config& c, ad::Rng& rng) {
    if (kind == "variance") return metaloss::variance_penalty(z);
    if (kind == "w2") return metaloss::w2_to_uniform(z);
    ad::Var target = ad::constant(rng.uniform_matrix(z.rows(), 1, -1.0, 1.0));
    if (kind == "energy") return metaloss::energy_distance(z, target);
    if (kind == "mmd") return metaloss::gaussian_mmd(z, target, c.blur);
    metaloss::SinkhornOptions o;
    o.blur = c.blur;
    o.scaling = c.scaling;
    return metaloss::sinkhorn_divergence(z, target, o);
}

/// One row of log.csv.
struct StepLog {
    int function = 0;  ///< 0-based
    int step = 0;      ///< within the function
    double loss = 0, mse = 0, divergence = 0, orthogonality = 0;
    double mse_neglected = 0;  ///< students game only
    double tape_mb = 0;        ///< peak tape (arena) memory of the step, in MB
};

/// The gradient-based outer optimiser chosen by --meta-optimizer (evolution strategies are
/// metaloss::EvolutionStrategy).
class OuterOptimizer {
public:
    OuterOptimizer(const std::string& name, double lr) {
        if (name == "adam")
            opt_ = ad::optim::Adam({.lr = lr});
        else if (name == "sgd")
            opt_ = ad::optim::SGD({.lr = lr});
        else if (name == "adagrad")
            opt_ = ad::optim::Adagrad({.lr = lr});
        else
            throw std::invalid_argument("OuterOptimizer: unknown optimiser '" + name + "'");
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
    void reset() {
        std::visit([](auto& o) { o.reset(); }, opt_);
    }

private:
    std::variant<ad::optim::Adagrad, ad::optim::Adam, ad::optim::SGD> opt_;
};

/// The meta-learner: the MLP of --meta-hidden / --meta-depth or, for images, the CNN of
/// --meta-conv. Both take parameters as a plain list whose last two are the output layer's W
/// and b (what folding the label standardisation into the last layer relies on).
class MetaNet {
public:
    MetaNet() = default;
    explicit MetaNet(ad::nn::MLP net) : net_(std::move(net)) {}
    explicit MetaNet(ad::nn::ConvNet net) : net_(std::move(net)) {}
    ad::Var operator()(const std::vector<ad::Var>& params, const ad::Var& x) const {
        return std::visit([&](const auto& n) { return n(params, x); }, net_);
    }
    std::vector<Eigen::MatrixXd> init(ad::Rng& rng) const {
        return std::visit([&](const auto& n) { return n.init(rng); }, net_);
    }
    /// The MLP, or null for a CNN.
    const ad::nn::MLP* mlp() const { return std::get_if<ad::nn::MLP>(&net_); }

private:
    std::variant<ad::nn::MLP, ad::nn::ConvNet> net_;
};

/// The shape of image inputs (one channel of rows x cols), all 0 for other inputs.
inline ImageShape image_shape(const InputDistribution& in) {
    if (const auto* images = dynamic_cast<const ImageInputs*>(&in)) return {1, images->image_rows(), images->image_cols()};
    return {};
}

/// The meta-learner a Config describes, for inputs of dimension `dim` (images of `image`).
inline MetaNet make_meta_net(const Config& c, int dim, ImageShape image) {
    const auto act = ad::nn::parse_activation(c.meta_activation);
    const auto out = ad::nn::parse_output_map(c.meta_output);
    if (c.meta_conv.empty()) {
        std::vector<int> widths = {dim};
        for (int l = 0; l < c.meta_depth; ++l) widths.push_back(c.meta_hidden);
        widths.push_back(1);
        return MetaNet(ad::nn::MLP{widths, act, out});
    }
    if (!image.is_image()) throw std::invalid_argument("--meta-conv needs image inputs (--inputs mnist or idx:DIR)");
    ad::nn::ConvNet net;
    net.in_channels = image.channels, net.height = image.height, net.width = image.width;
    net.channels = parse_integer_list<int>(c.meta_conv, "--meta-conv", 1, 4096);
    net.kernel = c.meta_kernel, net.padding = c.meta_kernel / 2;
    net.activation = act, net.output = out;
    return MetaNet(net);
}

/// A finished meta-learner: its weights, and (project mode) the coefficients of the earlier
/// functions removed from its output, so f_k = h_k - sum_j coef_j f_j.
struct FrozenFunction {
    std::vector<Eigen::MatrixXd> params;
    Eigen::VectorXd coef;
};

/// Meta-trains a series of meta-learners against one or more learners (Algorithm 1, plus the
/// paper's sections 3 and 4).
///
/// Orthogonality of function k to the earlier (frozen) functions f_1..f_{k-1}:
///  - project (default): the labels are h_k minus its least-squares projection on the earlier
///    functions, computed on every batch: z = h - F (F^T F)^{-1} F^T h. The labels are exactly
///    orthogonal to the earlier functions on every batch, whatever the meta-learner does
///    (Gram-Schmidt in function space). The final f_k uses coefficients fitted on the probe set.
///  - penalty: the paper's recipe, normalised: orth_weight * sum_j cos^2(h, f_j), the squared
///    cosine similarity (uncentred) of the labels of a fixed 512-point probe set, so the weight
///    does not depend on the probe size (the notebooks' unnormalised sum over 1000 points does).
///  - none: independent meta-learners (different initialisations), e.g. to show that without
///    orthogonality every restart finds the same function.
/// An evolution strategy's population split over processes (the ranks of an mpirun; the tool
/// supplies the two collectives, tools/mpi.hpp): process `rank` of `size` scores the members
/// [n rank / size, n (rank + 1) / size). Every member's fitness is the same wherever it is
/// computed, and every process updates the same distribution with all of them, so a split run
/// is byte-identical to one process's.
struct PopulationSplit {
    int rank = 0;
    int size = 1;
    /// The concatenation, in rank order, of every process's vector.
    std::function<std::vector<double>(const std::vector<double>&)> all_gather;
    /// Process `root`'s text, on every process.
    std::function<std::string(const std::string&, int root)> broadcast;

    /// The members [first(n, r), first(n, r + 1)) of a population of n are process r's.
    int first(int n, int r) const { return int(std::int64_t(n) * r / size); }
    int owner(int member, int n) const {  // the process that scores `member`
        int r = 0;
        while (r + 1 < size && first(n, r + 1) <= member) ++r;
        return r;
    }
};

class MetaTrainer {
public:
    explicit MetaTrainer(const Config& c) : cfg_(c) {
        validate(cfg_);
        if (!metaloss::is_es_method(cfg_.meta_optimizer)) optimizer_.emplace(cfg_.meta_optimizer, cfg_.lr);
        inputs_ = make_inputs(cfg_.inputs, cfg_.classes);
        const auto specs = learner_specs(cfg_);
        // The learners see the inputs' learner view (the samples themselves but for ipd, whose
        // spike trains a spiking learner reads as time_bins() bins of time_bin_ms()).
        const ImageShape image = image_shape(*inputs_);
        for (std::size_t i = 0; i < specs.size(); ++i)
            learners_.push_back(make_learner(specs[i], inputs_->learner_dim(),
                                             rng_for(cfg_.seed, Stream::learner_fixed, i), inputs_->time_bins(),
                                             inputs_->time_bin_ms(), image));
        net_ = make_meta_net(cfg_, inputs_->dim(), image);
        start_function();
    }

    /// Splits an evolution strategy's population over processes (ignored by gradient methods).
    /// Every process must make the same trainer and the same calls, in the same order.
    void set_population_split(PopulationSplit split) {
        if (split.size < 1 || split.rank < 0 || split.rank >= split.size)
            throw std::invalid_argument("set_population_split: rank must be from 0 to size - 1");
        if (split.size > 1 && (!split.all_gather || !split.broadcast))
            throw std::invalid_argument("set_population_split: a split needs all_gather and broadcast");
        split_ = std::move(split);
    }

    /// Whether an evolution strategy scores its members with the batched, tape-free scorer where
    /// it can (the default) or each through the taped ops (the two agree to ~1e-15 relative;
    /// `occam bench --workload evolution --per-member` times the latter).
    void set_batched_scoring(bool on) { batched_scoring_ = on; }

    /// The fitness of every member of the current generation on the next step's task, scored as
    /// step() would (batched or per member) but without telling the strategy: the trainer is
    /// left as it was. For checks of the batched scorer against the taped path.
    Eigen::VectorXd population_fitness(bool batched) {
        if (!es_) throw std::logic_error("population_fitness: not an evolution strategy");
        ad::TapeScope scope;
        const Task task = draw_task();
        const std::vector<Eigen::MatrixXd> maps = linear_maps(task);
        const bool saved = batched_scoring_;
        batched_scoring_ = batched;
        const std::optional<LinearTaskLoss> batch = batched_loss(task, maps);
        batched_scoring_ = saved;
        if (batched && !batch) throw std::logic_error("population_fitness: this run cannot be scored as a batch");
        return generation_fitness(task, maps, batch ? &*batch : nullptr);
    }

    /// One meta-step of the current function (one generation for an evolution strategy);
    /// returns the loss terms.
    StepLog step() {
        if (finished()) throw std::logic_error("MetaTrainer::step: every function is trained");
        ad::Arena& arena = ad::tape().arena;
        const std::size_t base = arena.bytes_in_use();
        arena.reset_peak();
        ad::TapeScope scope;
        const Task task = draw_task();
        StepLog log = es_ ? evolve(task) : descend(task);
        log.tape_mb = double(arena.peak_bytes() - base) / 1e6;
        ++step_;
        return log;
    }

    /// Freezes the current function (fitting its projection coefficients on `probe_x`) and
    /// starts the next one from a fresh initialisation and a fresh optimiser.
    void finish_function(const Eigen::MatrixXd& probe_x) {
        const int k = function_index();
        if (cfg_.standardize_labels) fold_standardization(probe_x, k);
        FrozenFunction f{params_, Eigen::VectorXd::Zero(k)};
        if (k > 0 && cfg_.orthogonality == "project") {
            const Eigen::MatrixXd F = frozen_values(probe_x, k);
            f.coef = F.colPivHouseholderQr().solve(raw_output(params_, probe_x));
        }
        frozen_.push_back(std::move(f));
        step_ = 0;
        if (!finished()) start_function();
    }

    /// The labels of every frozen function at X (X.rows() x functions_done()).
    Eigen::MatrixXd labels(const Eigen::MatrixXd& X) const { return frozen_values(X, functions_done()); }

    /// The current (unfinished) meta-learner's labels at X, before any projection.
    Eigen::VectorXd current_output(const Eigen::MatrixXd& X) const { return raw_output(params_, X); }

    /// Learner `which` trained on (X_train, y_train), predicting at X_test (values only). X_train
    /// and X_test are samples (the meta-learner's view); the learner is given their learner
    /// views, drawn from `task_rng` (the training view, then the test view), and then draws its
    /// own task from it (new_task).
    Eigen::VectorXd fit_predict(const Eigen::MatrixXd& X_train, const Eigen::VectorXd& y_train,
                                const Eigen::MatrixXd& X_test, ad::Rng& task_rng, std::size_t which = 0) {
        ad::TapeScope scope;
        ad::NoGradGuard no_grad;
        learners::Learner& learner = *learners_.at(which);
        const Eigen::MatrixXd view_train = inputs_->learner_view(X_train, task_rng);
        const Eigen::MatrixXd view_test = inputs_->learner_view(X_test, task_rng);
        learner.new_task(task_rng);
        return learner.fit_predict(ad::constant(view_train), ad::constant(Eigen::MatrixXd(y_train)), ad::constant(view_test))
            .value()
            .col(0);
    }

    /// Learner `which`'s mean test MSE on frozen function k over fresh tasks of the training
    /// sizes (the generalisation error the meta-learner minimised). The labels are the function
    /// at the samples; the learner sees their views (fit_predict).
    double test_mse(int k, int tasks, std::size_t which = 0) {
        double total = 0;
        for (int t = 0; t < tasks; ++t) {
            ad::Rng rng = rng_for(cfg_.seed, Stream::eval, std::uint64_t(t));
            Eigen::MatrixXd X = inputs_->sample(cfg_.n_train + cfg_.n_test, rng);
            Eigen::VectorXd y = frozen_values(X, k + 1).col(k);
            Eigen::VectorXd pred =
                fit_predict(X.topRows(cfg_.n_train), y.head(cfg_.n_train), X.bottomRows(cfg_.n_test), rng, which);
            total += (pred - y.tail(cfg_.n_test)).squaredNorm() / cfg_.n_test;
        }
        return total / tasks;
    }

    /// The next step's batch: its inputs (training rows first), the labels the learners will
    /// be given (the current meta-learner's output, projected in project mode), the step's
    /// random stream after the task was drawn (the divergence's target samples come from it),
    /// and the learners' view of the inputs. Leaves the trainer as it was; for checks of what
    /// step() computes.
    struct Batch {
        Eigen::MatrixXd X;
        Eigen::VectorXd labels;
        ad::Rng rng;
        Eigen::MatrixXd view;
    };
    Batch next_batch() { return next_batch(params_); }
    /// The same batch labelled by a meta-learner with parameters `params`.
    Batch next_batch(const std::vector<Eigen::MatrixXd>& params) {
        ad::TapeScope scope;
        ad::NoGradGuard no_grad;
        const Task task = draw_task();
        return {task.X, project(net_(constants(params), ad::constant(task.X)), task).value().col(0), task.rng,
                task.learner_x()};
    }

    /// The meta-loss of the next step's task at meta-learner parameters `params`, and its
    /// gradient: what step() would descend from there, leaving the trainer as it was. Exposed so
    /// that a test can check the whole meta-gradient (through the learner, the divergence and
    /// the projection) against finite differences of the loss.
    std::pair<double, std::vector<Eigen::MatrixXd>> loss_and_gradient(const std::vector<Eigen::MatrixXd>& params) {
        if (es_) throw std::logic_error("loss_and_gradient: an evolution strategy uses no gradients");
        ad::TapeScope scope;
        const Task task = draw_task();
        std::vector<ad::Var> P = ad::params(params);
        const Terms t = meta_loss(net_(P, ad::constant(task.X)), task, task.rng, orthogonality_penalty(P));
        std::vector<Eigen::MatrixXd> g;
        for (const ad::Var& gk : ad::grad(t.loss, P)) g.push_back(gk.value());
        return {t.loss.item(), g};
    }
    /// The meta-loss alone (no tape), e.g. for finite differences.
    double loss_at(const std::vector<Eigen::MatrixXd>& params) {
        ad::TapeScope scope;
        ad::NoGradGuard no_grad;
        const Task task = draw_task();
        const std::vector<ad::Var> P = constants(params);
        return meta_loss(net_(P, ad::constant(task.X)), task, task.rng, orthogonality_penalty(P)).loss.item();
    }

    const Config& config() const { return cfg_; }
    const InputDistribution& inputs() const { return *inputs_; }
    const learners::Learner& learner(std::size_t which = 0) const { return *learners_.at(which); }
    std::size_t num_learners() const { return learners_.size(); }
    int function_index() const { return int(frozen_.size()); }
    int functions_done() const { return int(frozen_.size()); }
    bool finished() const { return functions_done() >= cfg_.functions; }
    int steps_done() const { return step_; }  ///< within the current function
    const std::vector<Eigen::MatrixXd>& params() const { return params_; }
    const std::vector<FrozenFunction>& frozen() const { return frozen_; }
    /// The optimiser's state; for an evolution strategy, its generation and distribution.
    ad::optim::OptimizerState optimizer_state() const {
        return es_ ? ad::optim::OptimizerState{es_->generation(), {es_->state()}} : optimizer_->state();
    }

    /// Restores a checkpoint: the frozen functions, the current function's parameters and
    /// optimiser state, and its step. Every later draw is keyed by (function, step), so the run
    /// continues exactly as if it had never stopped.
    void restore(std::vector<FrozenFunction> frozen, int step, std::vector<Eigen::MatrixXd> params,
                 const ad::optim::OptimizerState& opt) {
        auto check = [&](const std::vector<Eigen::MatrixXd>& p) {
            if (p.size() != params_.size()) throw std::invalid_argument("checkpoint: wrong number of parameters");
            for (std::size_t k = 0; k < p.size(); ++k)
                if (p[k].rows() != params_[k].rows() || p[k].cols() != params_[k].cols())
                    throw std::invalid_argument("checkpoint: parameter shapes do not match the configuration");
        };
        if (int(frozen.size()) > cfg_.functions)
            throw std::invalid_argument("checkpoint: more functions than --functions");
        for (const auto& f : frozen) check(f.params);
        frozen_ = std::move(frozen);
        if (finished()) return;
        start_function();
        check(params);
        params_ = std::move(params);
        if (es_) {
            if (opt.buffers.size() != 1) throw std::invalid_argument("checkpoint: no evolution-strategy state");
            es_->load_state(ad::nn::flatten(params_), opt.buffers[0], opt.steps);
        } else {
            optimizer_->load_state(opt, params_);
        }
        step_ = step;
    }

private:
    std::string where() const {
        return "function " + std::to_string(function_index() + 1) + ", step " + std::to_string(step_) + ": ";
    }

    /// One meta-step's task: the samples X (training rows first), which the meta-learner
    /// labels; the learners' view of them (view, the same rows; X itself but for inputs such as
    /// ipd), on which the learners train and are tested; the projector onto the earlier
    /// functions on these inputs (project mode); and the step's random stream after the task
    /// was drawn (the divergence's target samples come from it).
    struct Task {
        Eigen::MatrixXd X;
        std::optional<Eigen::MatrixXd> view;  ///< none where the learners see X itself (no copy)
        Eigen::MatrixXd proj;
        Eigen::MatrixXd proj_f, proj_g;  ///< proj = F G, G = (F^T F)^{-1} F^T (for the batched scorer)
        ad::Rng rng;
        /// What the learners train and are tested on.
        const Eigen::MatrixXd& learner_x() const { return view ? *view : X; }
    };
    Task draw_task() {
        const int k = function_index();
        Task t{Eigen::MatrixXd(), std::nullopt, Eigen::MatrixXd(), Eigen::MatrixXd(), Eigen::MatrixXd(),
               rng_for(cfg_.seed, Stream::step, (std::uint64_t(k) << 32) + std::uint64_t(step_))};
        t.X = inputs_->sample(cfg_.n_train + cfg_.n_test, t.rng);
        // Before the learners' draws; a default view draws nothing, so their draws are as before.
        t.view = inputs_->own_view(t.X, t.rng);
        for (auto& l : learners_) l->new_task(t.rng);
        if (k > 0 && cfg_.orthogonality == "project") {
            t.proj_f = frozen_values(t.X, k);
            // z = (I - F (F^T F)^{-1} F^T) h: the projector is a constant of the batch.
            t.proj_g = (t.proj_f.transpose() * t.proj_f).ldlt().solve(t.proj_f.transpose());
            t.proj = t.proj_f * t.proj_g;
        }
        return t;
    }

    /// z shifted and scaled to mean 0 and std kUniformStd over the batch (differentiably: the
    /// meta-gradient sees the map, so it cannot change the labels' mean or spread).
    static ad::Var standardized(const ad::Var& z) {
        const ad::Var centred = z - ad::mean(z);
        return centred * (kUniformStd / ad::sqrt(ad::add_scalar(ad::mean(ad::square(centred)), 1e-12)));
    }
    /// Makes the finished function the standardized one as a fixed function: the map fitted on
    /// the probe set, (h - m) s, folded into the meta-learner's last layer (W <- s W,
    /// b <- s (b - m); an identity output map, which validate() requires).
    void fold_standardization(const Eigen::MatrixXd& probe_x, int k) {
        Eigen::VectorXd z = raw_output(params_, probe_x);
        if (k > 0 && cfg_.orthogonality == "project") {
            const Eigen::MatrixXd F = frozen_values(probe_x, k);
            z -= F * F.colPivHouseholderQr().solve(z);
        }
        const double m = z.mean(), sd = std::sqrt((z.array() - m).square().mean());
        if (!(sd > 0)) return;  // a constant: nothing to scale
        const double s = kUniformStd / sd;
        params_[params_.size() - 2] *= s;
        params_.back() = (params_.back().array() - m) * s;
    }

    /// The labels: the meta-learner's output h, minus its projection on the earlier functions
    /// on this batch in project mode.
    static ad::Var project(const ad::Var& h, const Task& task) {
        return task.proj.size() ? h - ad::matmul(ad::constant(task.proj), h) : h;
    }
    /// Whether the current function is kept apart from the earlier ones by the overlap penalty
    /// (penalty mode, from the second function on) rather than by projection.
    bool uses_overlap_penalty() const { return function_index() > 0 && cfg_.orthogonality == "penalty"; }
    /// The overlap penalty's term when uses_overlap_penalty(), else 0.
    ad::Var orthogonality_penalty(const std::vector<ad::Var>& P) {
        return uses_overlap_penalty() ? overlap_penalty(P) : ad::constant(0.0);
    }

    /// The terms of the meta-loss for the meta-learner's raw output h on the task.
    struct Terms {
        ad::Var loss, mse_term, div, orth;
        std::vector<ad::Var> mses;
    };
    /// `linear_maps[i]`, when not empty, is learner i's prediction map H (test x train): the
    /// learner is linear in its labels, so its predictions are H z_train (evolution strategies
    /// build H once per generation instead of fitting once per member).
    Terms meta_loss(const ad::Var& h, const Task& task, ad::Rng rng, const ad::Var& orth,
                    const std::vector<Eigen::MatrixXd>* linear_maps = nullptr) {
        const int ntr = cfg_.n_train, nte = cfg_.n_test, k = function_index();
        const ad::Var z = cfg_.standardize_labels ? standardized(project(h, task)) : project(h, task);
        ad::Var z_train = ad::rows(z, 0, ntr), z_test = ad::rows(z, ntr, nte);
        ad::Var x_train = ad::constant(task.learner_x().topRows(ntr)),
                x_test = ad::constant(task.learner_x().bottomRows(nte));
        Terms t;
        // Without the learner's term (--mse-weight 0, a control run) the learner is measured but
        // not differentiated: its gradient would be multiplied by 0, so no tape is kept for it.
        {
            ad::GradModeGuard measured_only(cfg_.mse_weight != 0 && ad::grad_enabled());
            for (std::size_t i = 0; i < learners_.size(); ++i) {
                const bool linear = linear_maps && (*linear_maps)[i].size() > 0;
                ad::Var pred = linear ? ad::matmul(ad::constant((*linear_maps)[i]), z_train)
                                      : learners_[i]->fit_predict(x_train, z_train, x_test);
                t.mses.push_back(ad::mean(ad::square(pred - z_test)));
            }
        }
        t.mse_term = t.mses[0];
        if (game_of(cfg_) == Game::students)
            t.mse_term =
                cfg_.students_loss == "log-ratio" ? ad::log(t.mses[0]) - ad::log(t.mses[1]) : t.mses[0] - t.mses[1];
        if (game_of(cfg_) == Game::cooperative) {
            for (std::size_t i = 1; i < t.mses.size(); ++i) t.mse_term = t.mse_term + t.mses[i];
            t.mse_term = t.mse_term * (1.0 / double(t.mses.size()));
        }
        const std::string kind = divergence_for(cfg_, k);
        if (cfg_.div_on == "split") {
            // Two draws of target samples from one stream: their order is part of the result, so
            // it is written out (the operands of + are unsequenced in C++): the test labels' first.
            const ad::Var d_test = label_divergence(z_test, kind, cfg_, rng);
            const ad::Var d_train = label_divergence(z_train, kind, cfg_, rng);
            t.div = d_train + d_test;
        } else {
            t.div = label_divergence(cfg_.div_on == "all" ? z : z_test, kind, cfg_, rng);
        }
        t.orth = orth;
        // Orthogonal to the constant function: <z, 1>^2 / n^2 = mean(z)^2 (the constant is the
        // trivially easy function every learner with a bias finds).
        if (cfg_.orth_constant) t.orth = t.orth + ad::square(ad::mean(z));
        t.loss = cfg_.mse_weight * t.mse_term + cfg_.div_weight * t.div + t.orth;
        return t;
    }

    StepLog make_log(const Terms& t) const {
        LossValues v;
        v.loss = t.loss.item(), v.mse_term = t.mse_term.item(), v.divergence = t.div.item();
        v.orthogonality = t.orth.item(), v.mse_first = t.mses[0].item();
        if (t.mses.size() > 1) v.mse_second = t.mses[1].item();
        return make_log(v);
    }
    StepLog make_log(const LossValues& v) const {
        StepLog log;
        log.function = function_index();
        log.step = step_;
        log.loss = v.loss;
        log.mse = game_of(cfg_) == Game::cooperative ? v.mse_term : v.mse_first;
        log.divergence = v.divergence;
        log.orthogonality = v.orthogonality;
        if (game_of(cfg_) == Game::students) log.mse_neglected = v.mse_second;
        if (!std::isfinite(log.loss)) {
            std::ostringstream s;
            s << where() << "the meta-loss is not finite (test MSE " << log.mse << ", "
              << divergence_for(cfg_, log.function) << " " << log.divergence
              << "); try a smaller --lr or another --divergence";
            throw TrainingError(s.str());
        }
        return log;
    }

    /// A gradient meta-step: the meta-gradient of the loss through the learner, one
    /// optimiser step.
    StepLog descend(const Task& task) {
        std::vector<ad::Var> P = ad::params(params_);
        ad::Var h = net_(P, ad::constant(task.X));
        if (!ad::all_finite(h))
            throw TrainingError(where() +
                                "the meta-learner's labels are not finite (its weights diverged); try a "
                                "smaller --lr");
        const Terms t = meta_loss(h, task, task.rng, orthogonality_penalty(P));
        StepLog log = make_log(t);
        std::vector<ad::Var> g = ad::grad(t.loss, P);
        for (const ad::Var& gk : g)
            if (!ad::all_finite(gk))
                throw TrainingError(where() + "the meta-gradient is not finite; try a smaller --lr");
        optimizer_->step(params_, g);
        return log;
    }

    /// An evolution-strategy generation: every member is scored on the same task (common
    /// random numbers: same inputs, learner draws and divergence targets), in parallel
    /// threads; the member's noise is keyed by (seed, generation, member), so the result does
    /// not depend on the thread count. Logged: the loss terms of the distribution's mean.
    StepLog evolve(const Task& task) {
        const std::vector<Eigen::MatrixXd> maps = linear_maps(task);
        const std::optional<LinearTaskLoss> batch = batched_loss(task, maps);
        es_->tell(generation_fitness(task, maps, batch ? &*batch : nullptr));
        params_ = ad::nn::unflatten(es_->mean(), shapes_);
        if (batch) {  // the mean's loss terms, for the log
            const double* member = es_->mean().data();
            LossValues v;
            PopulationScorer(*net_.mlp(), task.X, *batch).score(&member, 1, &v);
            if (!v.error.empty()) throw TrainingError(where() + v.error);
            return make_log(v);
        }
        ad::NoGradGuard no_grad;
        return make_log(score_member(task, maps, params_));
    }

    /// Each learner's prediction map H (test x train) when it is linear in its labels (its
    /// predictions are H z_train), else empty: built once per generation, not once per member.
    std::vector<Eigen::MatrixXd> linear_maps(const Task& task) const {
        const int ntr = cfg_.n_train, nte = cfg_.n_test;
        std::vector<Eigen::MatrixXd> maps(learners_.size());
        for (std::size_t i = 0; i < learners_.size(); ++i) {
            if (!learners_[i]->linear_in_labels()) continue;
            ad::TapeScope scope;
            ad::NoGradGuard no_grad;
            // Labels = the identity: column j of the predictions is H's column j.
            maps[i] =
                learners_[i]
                    ->fit_predict(ad::constant(task.learner_x().topRows(ntr)),
                                  ad::constant(Eigen::MatrixXd::Identity(ntr, ntr)),
                                  ad::constant(task.learner_x().bottomRows(nte)))
                    .value();
        }
        return maps;
    }

    /// The loss as plain values for the batched scorer, when it can compute it: an MLP
    /// meta-learner, learners all linear in their labels, a divergence that draws no samples,
    /// no overlap penalty (and not switched off by set_batched_scoring).
    std::optional<LinearTaskLoss> batched_loss(const Task& task, const std::vector<Eigen::MatrixXd>& maps) const {
        const std::string kind = divergence_for(cfg_, function_index());
        if (!batched_scoring_ || !net_.mlp() || !batched_divergence(kind)) return std::nullopt;
        if (uses_overlap_penalty()) return std::nullopt;
        for (const auto& m : maps)
            if (m.size() == 0) return std::nullopt;
        LinearTaskLoss l;
        l.n_train = cfg_.n_train, l.n_test = cfg_.n_test;
        l.F = task.proj_f, l.G = task.proj_g;
        l.maps = maps;
        const Game game = game_of(cfg_);
        l.mse_term = game == Game::students ? (cfg_.students_loss == "log-ratio" ? MseTerm::log_ratio : MseTerm::difference)
                     : game == Game::cooperative ? MseTerm::mean
                                                 : MseTerm::first;
        l.divergence = kind, l.div_on = cfg_.div_on;
        l.standardize = cfg_.standardize_labels, l.orth_constant = cfg_.orth_constant;
        l.mse_weight = cfg_.mse_weight, l.div_weight = cfg_.div_weight;
        return l;
    }

    /// The loss terms of one meta-learner, through the taped ops (no gradient is kept).
    Terms score_member(const Task& task, const std::vector<Eigen::MatrixXd>& maps,
                       const std::vector<Eigen::MatrixXd>& params) {
        const std::vector<ad::Var> P = constants(params);
        const ad::Var h = net_(P, ad::constant(task.X));
        return meta_loss(h, task, task.rng, orthogonality_penalty(P), &maps);
    }

    /// Members scored together by the batched scorer (a block per thread task; the values do not
    /// depend on the blocks). Two keep a block's activations (2 x 264 x 32 per layer for fig8)
    /// in a core's L2: 2.8 ms a generation of 64 here, against 3.1 ms with 4 and 8 members.
    static constexpr int kMembersPerBlock = 2;

    /// Every member's fitness on the task (NaN where it is not finite: ranked last), from the
    /// batched scorer when `batch` is set, else one taped evaluation per member. This process
    /// scores its own members and gathers the others' fitness.
    Eigen::VectorXd generation_fitness(const Task& task, const std::vector<Eigen::MatrixXd>& maps,
                                       const LinearTaskLoss* batch) {
        if (uses_overlap_penalty()) orth_cache();  // filled before the threads read it
        const int n = es_->population();
        Eigen::VectorXd fitness = Eigen::VectorXd::Constant(n, std::nan(""));
        // This process's members (all of them unless the population is split over processes).
        const int first = split_.first(n, split_.rank), last = split_.first(n, split_.rank + 1);
        // Each member writes only its own fitness or error; a failure stops the run with the
        // lowest failing member's error, the same for any thread or process count.
        std::vector<std::string> errors(std::size_t(last - first));
        auto fail = [&](int i, const std::exception& e) {
            errors[std::size_t(i - first)] = std::string(e.what()).empty() ? "failed" : e.what();
        };
        if (batch) {
            const PopulationScorer scorer(*net_.mlp(), task.X, *batch);
            const int blocks = (last - first + kMembersPerBlock - 1) / kMembersPerBlock;
            parallel_for(blocks, cfg_.threads, [&](int block) {
                const int from = first + block * kMembersPerBlock, to = std::min(last, from + kMembersPerBlock);
                const double* members[kMembersPerBlock];
                LossValues values[kMembersPerBlock];
                for (int i = from; i < to; ++i) members[i - from] = es_->draw(i);
                try {
                    scorer.score(members, to - from, values);
                } catch (const std::exception& e) {
                    for (int i = from; i < to; ++i) fail(i, e);
                    return;
                }
                for (int i = from; i < to; ++i) {
                    const LossValues& v = values[i - from];
                    if (!v.error.empty()) fail(i, std::runtime_error(v.error));
                    else fitness[i] = std::isfinite(v.loss) ? v.loss : std::nan("");  // ranked last
                }
            });
        } else {
            parallel_for(last - first, cfg_.threads, [&](int k) {
                const int i = first + k;
                try {
                    ad::TapeScope scope;  // frees this member's nodes (each thread has its own tape)
                    ad::NoGradGuard no_grad;
                    const double f = score_member(task, maps, ad::nn::unflatten(es_->sample(i), shapes_)).loss.item();
                    fitness[i] = std::isfinite(f) ? f : std::nan("");  // ranked last
                } catch (const std::exception& e) {
                    fail(i, e);
                }
            });
        }
        int failed = -1;
        for (int k = 0; k < last - first && failed < 0; ++k)
            if (!errors[std::size_t(k)].empty()) failed = first + k;
        std::string message = failed >= 0 ? errors[std::size_t(failed - first)] : "";
        if (split_.size > 1) {
            // Each process sends its members' fitness and its lowest failing member (n: none).
            std::vector<double> mine(fitness.data() + first, fitness.data() + last);
            mine.push_back(failed >= 0 ? failed : n);
            const std::vector<double> all = split_.all_gather(mine);
            failed = n;
            std::size_t at = 0;
            for (int r = 0; r < split_.size; ++r) {
                for (int i = split_.first(n, r); i < split_.first(n, r + 1); ++i) fitness[i] = all[at++];
                failed = std::min(failed, int(all[at++]));
            }
            if (failed == n) failed = -1;
            if (failed >= 0) message = split_.broadcast(message, split_.owner(failed, n));
            // tell() reads every member's sample, which draw() records: the others' too.
            for (int i = 0; i < n; ++i)
                if (i < first || i >= last) es_->draw(i);
        }
        if (failed >= 0) throw TrainingError(where() + "member " + std::to_string(failed) + ": " + message);
        return fitness;
    }

    void start_function() {
        ad::Rng init = rng_for(cfg_.seed, Stream::meta_init, std::uint64_t(function_index()));
        params_ = net_.init(init);
        if (optimizer_) optimizer_->reset();
        step_ = 0;
        shapes_.clear();
        for (const auto& p : params_) shapes_.emplace_back(int(p.rows()), int(p.cols()));
        if (metaloss::is_es_method(cfg_.meta_optimizer)) {
            metaloss::EsOptions o;
            o.population = cfg_.population;
            o.sigma = cfg_.sigma;
            o.lr = cfg_.lr;
            es_.emplace(metaloss::parse_es_method(cfg_.meta_optimizer), ad::nn::flatten(params_), o, cfg_.seed,
                        rng_for(cfg_.seed, Stream::es_noise, std::uint64_t(function_index())).stream());
        }
    }

    /// Parameters as constants (no gradient), for evaluations.
    static std::vector<ad::Var> constants(const std::vector<Eigen::MatrixXd>& params) {
        std::vector<ad::Var> P;
        for (const auto& p : params) P.push_back(ad::constant(p));
        return P;
    }

    Eigen::VectorXd raw_output(const std::vector<Eigen::MatrixXd>& params, const Eigen::MatrixXd& X) const {
        ad::TapeScope scope;
        ad::NoGradGuard no_grad;
        return net_(constants(params), ad::constant(X)).value().col(0);
    }

    /// The first `count` frozen functions at X, each minus its fitted projection on the earlier.
    Eigen::MatrixXd frozen_values(const Eigen::MatrixXd& X, int count) const {
        Eigen::MatrixXd F(X.rows(), count);
        for (int j = 0; j < count; ++j) {
            Eigen::VectorXd f = raw_output(frozen_[std::size_t(j)].params, X);
            if (j > 0 && frozen_[std::size_t(j)].coef.size() == j) f -= F.leftCols(j) * frozen_[std::size_t(j)].coef;
            F.col(j) = f;
        }
        return F;
    }

    /// orth_weight * sum_j cos^2(h, f_j) on a fixed probe set (penalty mode).
    /// The penalty's fixed probe set and the earlier functions on it (computed once per function).
    void orth_cache() {
        if (orth_x_.rows() == 0) {
            ad::Rng r = rng_for(cfg_.seed, Stream::orth_probe);
            orth_x_ = inputs_->sample(512, r);
        }
        if (orth_f_.cols() != function_index()) orth_f_ = frozen_values(orth_x_, function_index());
    }
    ad::Var overlap_penalty(const std::vector<ad::Var>& P) {
        orth_cache();
        const int k = function_index();
        ad::Var h = net_(P, ad::constant(orth_x_));
        ad::Var hh = ad::sum(ad::square(h));
        ad::Var total = ad::constant(0.0);
        for (int j = 0; j < k; ++j) {
            const Eigen::VectorXd f = orth_f_.col(j);
            ad::Var inner = ad::sum(h * ad::constant(Eigen::MatrixXd(f)));
            total = total + ad::square(inner) / (hh * f.squaredNorm());
        }
        return cfg_.orth_weight * total;
    }

    Config cfg_;
    PopulationSplit split_;  ///< one process unless set_population_split was called
    std::unique_ptr<InputDistribution> inputs_;
    std::vector<std::unique_ptr<learners::Learner>> learners_;
    MetaNet net_;
    std::vector<Eigen::MatrixXd> params_;
    std::vector<std::pair<int, int>> shapes_;  ///< the meta-learner's parameter shapes
    std::optional<OuterOptimizer> optimizer_;  ///< set unless --meta-optimizer is an evolution strategy
    std::optional<metaloss::EvolutionStrategy> es_;  ///< set when --meta-optimizer is an evolution strategy
    std::vector<FrozenFunction> frozen_;
    Eigen::MatrixXd orth_x_, orth_f_;
    int step_ = 0;
    bool batched_scoring_ = true;
};

}  // namespace occam::experiment
