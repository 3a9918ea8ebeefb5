// What this file teaches: naming a learner in one string, so a run can hold several of them
// (the chosen and the neglected student, or a cooperative team):
//   kernel                      the run's own --features/--ridge/--redraw-features settings
//   kernel:features=50,ridge=0.01,redraw=1
//   kernel:activation=abs       even random features |x.w| (a learner that cannot fit odd functions)
//   ridge:bias=1   arccos:ridge=0.1
//   spiking:hidden=16,tau=20    a LIF circuit on spike-train inputs (--inputs ipd)
#pragma once

#include <map>
#include <vector>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>

#include "../learners/external.hpp"
#include "../learners/kernel_ridge.hpp"
#include "../learners/mlp.hpp"
#include "../learners/ridge.hpp"
#include "../learners/spiking.hpp"
#include "config.hpp"
#include "parse.hpp"

namespace occam::experiment {

/// The spiking learner's circuit (its training is the run's --inner-* flags; defaults: the
/// reduced size R1 that a 2-core machine trains through 50 Adam steps in a meta-step).
struct SpikingSpec {
    int hidden = 16;
    double tau_ms = 20;  ///< membrane and readout time constant; alpha = exp(-dt / tau)
    std::string order = "spytorch";  ///< spytorch | tutorial (kernels/lif.hpp)
    bool detach_reset = false;
    std::string surrogate = "sigmoid";  ///< sigmoid | fast-sigmoid
    double beta = 5, scale = 100;
    double w1_bound = 0.289, w2_bound = 0.05;  ///< initial weights U(+-bound)
    learners::SpikingTraining training;
};

/// The CNN learner's architecture (its training is the run's --inner-* flags; defaults: the
/// paper's Fig. 6 learner, conv(1->16, 5x5, pad 2) - ReLU - maxpool 2 - linear).
struct CnnSpec {
    std::vector<int> channels = {16};
    int kernel = 5, padding = 2, pool = 2;
    std::string activation = "relu";
};

/// The shape of image inputs (channels x height x width), all 0 for inputs that are not images.
struct ImageShape {
    int channels = 0, height = 0, width = 0;
    bool is_image() const { return channels > 0; }
};

/// A learner's kind and its settings (defaults from the run's Config).
struct LearnerSpec {
    std::string kind;  ///< ridge | kernel | arccos | mlp | spiking | exec
    std::string command;  ///< exec: the shell command
    double timeout = 60;  ///< exec: seconds per call
    int features_min = 20, features_max = 20;
    double ridge = 1e-3;
    bool bias = false;
    bool redraw = false;
    // mlp
    std::vector<int> hidden;
    std::string activation = "relu";  ///< mlp: its units; kernel: the random features (relu | abs)
    learners::InnerTraining inner;
    learners::Connectivity connectivity;
    SpikingSpec spiking;
    CnnSpec cnn;
};

/// "a;b;c" of "x,y,..." lists, e.g. input groups "0,1;2,3,4". Every item is read whole
/// (parse.hpp): an int list takes non-negative integers only ("1.7" is not read as 1, "1e20" does
/// not overflow), a double list finite numbers only ("nan" is refused).
template <class T>
std::vector<std::vector<T>> parse_nested(const std::string& text, const char* what) {
    std::vector<std::vector<T>> out;
    std::stringstream outer(text);
    std::string part;
    while (std::getline(outer, part, ';')) {
        std::vector<T> row;
        std::stringstream inner(part);
        std::string item;
        while (std::getline(inner, item, ',')) {
            if constexpr (std::is_integral_v<T>)
                row.push_back(parse_integer<T>(item, what, T(0)));
            else
                row.push_back(T(parse_number(item, what)));
        }
        out.push_back(row);
    }
    return out;
}

/// The mlp learner's settings from the run's flags.
inline void fill_mlp(LearnerSpec& s, const Config& c) {
    const auto hidden = parse_nested<int>(c.learner_hidden, "--learner-hidden");
    if (hidden.size() != 1 || hidden[0].empty()) throw std::invalid_argument("--learner-hidden must be widths like 20,20");
    for (const int w : hidden[0])
        if (w < 1)
            throw std::invalid_argument("--learner-hidden: every width must be >= 1 (got '" + c.learner_hidden + "')");
    if (hidden[0].size() > std::size_t(kMaxLayers))
        throw std::invalid_argument("--learner-hidden: at most " + std::to_string(kMaxLayers) + " hidden layers");
    s.hidden = hidden[0];
    s.activation = c.learner_activation;
    // Fused steps apply to plain SGD on ReLU units; explicit checkpointing takes precedence.
    const bool fused = c.fused_steps && c.inner_optimizer == "sgd" && c.learner_activation == "relu" && !c.step_checkpointing;
    s.inner = {c.inner_optimizer, c.inner_lr, 0.9, c.inner_steps, c.inner_batch, c.truncate, c.step_checkpointing, fused};
    auto& conn = s.connectivity;
    conn.positive = c.positive;
    const auto colon = c.connectivity.find(':');
    conn.scheme = c.connectivity.substr(0, colon);
    if (conn.scheme == "biased") {
        if (colon == std::string::npos) throw std::invalid_argument("--connectivity biased needs probabilities: biased:p0,p1,...");
        const auto p = parse_nested<double>(c.connectivity.substr(colon + 1), "--connectivity");
        if (p.size() != 1) throw std::invalid_argument("--connectivity biased:p0,p1,... takes one list");
        conn.p = p[0];
    }
    if (conn.scheme == "grouped") {
        if (c.groups.empty()) throw std::invalid_argument("--connectivity grouped needs --groups (e.g. 0,1;2,3,4)");
        conn.groups = parse_nested<int>(c.groups, "--groups");
        const auto w = parse_nested<double>(c.group_weights, "--group-weights");
        if (w.size() != conn.groups.size())
            throw std::invalid_argument("--group-weights needs one same,other pair per group");
        for (const auto& pair : w) {
            if (pair.size() != 2) throw std::invalid_argument("--group-weights needs one same,other pair per group");
            conn.group_weights.emplace_back(pair[0], pair[1]);
        }
    }
}

/// Calls setting(key, value, item) for each "key=value" after the colon of "KIND:k=v,k=v" (none
/// without a colon); an item without '=' is a "bad setting" error naming it.
template <class F>
void for_each_setting(const std::string& text, std::size_t colon, F&& setting) {
    if (colon == std::string::npos) return;
    std::stringstream rest(text.substr(colon + 1));
    std::string item;
    while (std::getline(rest, item, ',')) {
        const auto eq = item.find('=');
        if (eq == std::string::npos)
            throw std::invalid_argument("learner '" + text + "': bad setting '" + item + "' (not key=value)");
        setting(item.substr(0, eq), item.substr(eq + 1), item);
    }
}

/// "spiking[:key=value,...]": the circuit's settings; the training comes from the run's flags.
inline LearnerSpec parse_spiking(LearnerSpec s, const std::string& text, std::size_t colon, const Config& c) {
    SpikingSpec& sp = s.spiking;
    if (c.inner_optimizer != "adam" && c.inner_optimizer != "sgd")
        throw std::invalid_argument("the spiking learner trains with --inner-optimizer adam or sgd, not '" +
                                    c.inner_optimizer + "'");
    sp.training.optimizer = c.inner_optimizer;
    sp.training.lr = c.inner_lr;
    sp.training.steps = c.inner_steps;
    sp.training.checkpoint = c.step_checkpointing;
    for_each_setting(text, colon, [&](const std::string& key, const std::string& value, const std::string& item) {
        const std::string where = "learner '" + text + "': " + key;
        auto positive = [&] {
            const double v = parse_number(value, where, 0.0);
            if (!(v > 0)) throw std::invalid_argument(where + " must be > 0");
            return v;
        };
        if (key == "hidden") {
            sp.hidden = parse_integer<int>(value, where, 1, 100000);
        } else if (key == "tau") {
            sp.tau_ms = positive();
        } else if (key == "order" && (value == "spytorch" || value == "tutorial")) {
            sp.order = value;
        } else if (key == "reset" && (value == "attached" || value == "detached")) {
            sp.detach_reset = value == "detached";
        } else if (key == "surrogate" && (value == "sigmoid" || value == "fast-sigmoid")) {
            sp.surrogate = value;
        } else if (key == "beta") {
            sp.beta = positive();
        } else if (key == "scale") {
            sp.scale = positive();
        } else if (key == "w1") {
            sp.w1_bound = positive();
        } else if (key == "w2") {
            sp.w2_bound = positive();
        } else if (key == "eps") {
            sp.training.eps = positive();
        } else if (key == "lr1") {
            sp.training.lr_w1 = positive();
        } else if (key == "lr2") {
            sp.training.lr_w2 = positive();
        } else if (key == "impl" && (value == "fused" || value == "ops")) {
            sp.training.fused = value == "fused";
        } else {
            throw std::invalid_argument(
                "learner '" + text + "': bad setting '" + item +
                "' (settings: hidden=H, tau=MS, order=spytorch|tutorial, reset=attached|detached, "
                "surrogate=sigmoid|fast-sigmoid, beta=B, scale=S, w1=BOUND, w2=BOUND, eps=E (adam), lr1=X, lr2=X (sgd), "
                "impl=fused|ops)");
        }
    });
    return s;
}

/// "cnn[:key=value,...]": conv layers (channels=16/32 for two), kernel, padding, pool and
/// activation; the training comes from the run's --inner-* flags, as the mlp learner's.
inline LearnerSpec parse_cnn(LearnerSpec s, const std::string& text, std::size_t colon, const Config& c) {
    CnnSpec& cnn = s.cnn;
    s.inner = {c.inner_optimizer, c.inner_lr, 0.9, c.inner_steps, c.inner_batch, c.truncate, c.step_checkpointing, false};
    bool padding_given = false;
    for_each_setting(text, colon, [&](const std::string& key, const std::string& value, const std::string& item) {
        const std::string where = "learner '" + text + "': " + key;
        if (key == "channels") {
            cnn.channels.clear();
            std::stringstream layers(value);
            std::string layer;
            while (std::getline(layers, layer, '/')) cnn.channels.push_back(parse_integer<int>(layer, where, 1, 4096));
            if (cnn.channels.empty() || cnn.channels.size() > std::size_t(kMaxLayers))
                throw std::invalid_argument(where + ": 1 to " + std::to_string(kMaxLayers) + " layers, like 16 or 16/32");
        } else if (key == "kernel") {
            cnn.kernel = parse_integer<int>(value, where, 1, 64);
        } else if (key == "padding") {
            cnn.padding = parse_integer<int>(value, where, 0, 64);
            padding_given = true;
        } else if (key == "pool") {
            cnn.pool = parse_integer<int>(value, where, 1, 64);
        } else if (key == "activation" && (value == "relu" || value == "tanh" || value == "sigmoid")) {
            cnn.activation = value;
        } else {
            throw std::invalid_argument("learner '" + text + "': bad setting '" + item +
                                        "' (settings: channels=C or C1/C2/..., kernel=K, padding=P (default K/2), "
                                        "pool=S, activation=relu|tanh|sigmoid)");
        }
    });
    if (!padding_given) cnn.padding = cnn.kernel / 2;  // "same" size for odd kernels
    // Fused steps (learners/fused_cnn_step.hpp) apply to plain SGD of one ReLU conv layer;
    // explicit checkpointing takes precedence.
    s.inner.fused = c.fused_steps && c.inner_optimizer == "sgd" && cnn.activation == "relu" && !c.step_checkpointing &&
                    cnn.channels.size() == 1;
    return s;
}

/// Parses "KIND[:key=value,...]"; keys: features (K or MIN-MAX), ridge, bias, redraw, and
/// activation (relu | abs, kernel only).
inline LearnerSpec parse_learner_spec(const std::string& text, const Config& c) {
    LearnerSpec s;
    s.features_min = c.features_min;
    s.features_max = c.features_max;
    s.ridge = c.ridge;
    s.bias = c.bias;
    s.redraw = c.redraw_features;
    const auto colon = text.find(':');
    s.kind = text.substr(0, colon);
    if (s.kind == "exec") {  // everything after "exec:" is the command, commas and colons included
        s.command = colon == std::string::npos ? "" : text.substr(colon + 1);
        if (s.command.empty()) throw std::invalid_argument("learner 'exec' needs a command: exec:COMMAND");
        s.timeout = c.exec_timeout;
        return s;
    }
    if (s.kind != "ridge" && s.kind != "kernel" && s.kind != "arccos" && s.kind != "mlp" && s.kind != "spiking" &&
        s.kind != "cnn")
        throw std::invalid_argument("learner '" + text +
                                    "': the kind must be ridge, kernel, arccos, mlp, spiking, cnn or exec:COMMAND");
    if (s.kind == "mlp") fill_mlp(s, c);
    if (s.kind == "spiking") return parse_spiking(s, text, colon, c);
    if (s.kind == "cnn") return parse_cnn(s, text, colon, c);
    for_each_setting(text, colon, [&](const std::string& key, const std::string& value, const std::string& item) {
        auto bad = [&] {
            return std::invalid_argument("learner '" + text + "': bad setting '" + item +
                                         "' (settings: features=K or MIN-MAX, ridge=X, bias=0|1, redraw=0|1, "
                                         "activation=relu|abs for kernel)");
        };
        // Numbers are read whole, in range (parse.hpp): "features=10-20x" is an error, not 10-20.
        const std::string where = "learner '" + text + "': " + key;
        if (key == "features") {
            std::tie(s.features_min, s.features_max) = parse_int_range(value, '-', where, 1);
        } else if (key == "ridge") {
            s.ridge = parse_number(value, where, 0.0);
        } else if (key == "bias" && (value == "0" || value == "1")) {
            s.bias = value == "1";
        } else if (key == "redraw" && (value == "0" || value == "1")) {
            s.redraw = value == "1";
        } else if (key == "activation" && s.kind == "kernel" && (value == "relu" || value == "abs")) {
            s.activation = value;
        } else {
            throw bad();
        }
    });
    return s;
}

/// Builds the learner; random features draw from `rng` (a stream of their own). A spiking
/// learner reads its input as `time_bins` bins of `bin_ms` milliseconds (the inputs' learner
/// view); a CNN reads it as images of shape `image`.
inline std::unique_ptr<learners::Learner> make_learner(const LearnerSpec& s, int input_dim, ad::Rng rng,
                                                       int time_bins = 1, double bin_ms = 0, ImageShape image = {}) {
    if (s.kind == "cnn") {
        if (!image.is_image() || image.channels * image.height * image.width != input_dim)
            throw std::invalid_argument("the cnn learner needs image inputs (--inputs mnist or idx:DIR)");
        ad::nn::ConvNet net;
        net.in_channels = image.channels, net.height = image.height, net.width = image.width;
        net.channels = s.cnn.channels;
        net.kernel = s.cnn.kernel, net.padding = s.cnn.padding, net.pool = s.cnn.pool;
        net.activation = ad::nn::parse_activation(s.cnn.activation);
        return std::make_unique<learners::UnrolledCNN>(net, s.inner, learners::Connectivity{});
    }
    if (s.kind == "spiking") {
        if (time_bins < 2 || !(bin_ms > 0) || input_dim % time_bins != 0)
            throw std::invalid_argument("the spiking learner needs spike-train inputs (--inputs ipd)");
        const SpikingSpec& sp = s.spiking;
        kernels::lif::Surrogate sur;
        sur.kind = sp.surrogate == "sigmoid" ? kernels::lif::Surrogate::Kind::sigmoid
                                             : kernels::lif::Surrogate::Kind::fast_sigmoid;
        sur.beta = sp.beta;
        sur.scale = sp.scale;
        const kernels::lif::Circuit circuit(input_dim / time_bins, sp.hidden, time_bins, std::exp(-bin_ms / sp.tau_ms),
                                            sp.order == "tutorial" ? kernels::lif::Order::tutorial
                                                                   : kernels::lif::Order::spytorch,
                                            sp.detach_reset, sur);
        return std::make_unique<learners::SpikingLearner>(circuit, sp.w1_bound, sp.w2_bound, sp.training);
    }
    if (s.kind == "ridge") return std::make_unique<learners::Ridge>(s.ridge, s.bias);
    if (s.kind == "arccos") return std::make_unique<learners::ArcCosKernelRidge>(s.ridge);
    if (s.kind == "exec") return std::make_unique<learners::ExternalLearner>(s.command, s.timeout);
    if (s.kind == "mlp") {
        std::vector<int> widths = {input_dim};
        widths.insert(widths.end(), s.hidden.begin(), s.hidden.end());
        widths.push_back(1);
        return std::make_unique<learners::UnrolledMLP>(
            ad::nn::MLP{widths, ad::nn::parse_activation(s.activation), ad::nn::OutputMap::identity}, s.inner,
            s.connectivity);
    }
    return std::make_unique<learners::RandomFeatureRidge>(input_dim, s.features_min, s.features_max, s.ridge,
                                                          s.redraw, rng, learners::parse_feature_map(s.activation));
}

}  // namespace occam::experiment
