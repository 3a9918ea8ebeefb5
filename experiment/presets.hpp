// What this file teaches: each paper figure is a preset, a named Config with the sizes of the
// paper's notebooks and the target it must reach. The presets are one table: a row names the
// preset it starts from (or none: Config's defaults) and the settings it changes.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "config.hpp"

namespace occam::experiment {

/// One acceptance check on a run's summary: metric op value, e.g. degree1_energy >= 0.97.
/// Metrics are read from summary.json by tools/reproduce (see metric_value there).
struct Target {
    std::string metric;
    std::string op;  ///< ">=" or "<="
    double value;
};

struct Preset {
    std::string name;
    std::string summary;  ///< one line for `occam presets`
    std::string target;   ///< what the run must show, in words
    Config config;
    std::vector<Target> targets;  ///< the same, as checks on the median over seeds
};

namespace detail {

/// One row of the preset table: the preset `base` (nullptr: Config's defaults) with the
/// settings that `set` changes.
struct PresetRow {
    const char* name;
    const char* base;  ///< a row above this one, or nullptr
    const char* summary;
    const char* target;
    void (*set)(Config&);
    std::vector<Target> targets;
};

// One preset per row; kept out of clang-format so that a row's settings stay on a few lines.
// clang-format off
inline const std::vector<PresetRow>& preset_table() {
    static const std::vector<PresetRow> rows = {
    {"fig2b-ridge", nullptr,
     "Fig. 2B: ridge regression on the disk finds a linear labelling",
     "linear-fit R^2 >= 0.98, label std >= 0.45",
     [](Config& c) {
         c.inputs = "disk"; c.learner = "ridge"; c.ridge = 1e-3; c.n_train = 6; c.n_test = 24;
         c.meta_hidden = 150; c.meta_depth = 2; c.meta_output = "cos"; c.meta_optimizer = "adagrad"; c.lr = 0.01;
         c.divergence = "sinkhorn"; c.div_on = "split";  // S(z_train) + S(z_test)
         c.div_weight = 1.0; c.mse_weight = 1.0; c.steps = 1500;
     },
     {{"f1.linear_r2", ">=", 0.98}, {"f1.label_std", ">=", 0.45}}},

    {"fig2c-kernel", nullptr,
     "Fig. 2C: 20 random ReLU features on the sphere find a degree-1 spherical harmonic",
     "degree-1 energy >= 0.97, label std >= 0.45; the learner's test MSE on its control's function >= 5x worse",
     [](Config& c) {
         c.inputs = "sphere:3"; c.learner = "kernel"; c.features_min = c.features_max = 20; c.ridge = 1e-3;
         c.n_train = 20; c.n_test = 80;
         c.meta_hidden = 150; c.meta_depth = 2; c.meta_output = "cos"; c.meta_optimizer = "adagrad"; c.lr = 0.01;
         c.divergence = "sinkhorn"; c.div_on = "all"; c.div_weight = 1.0; c.mse_weight = 10.0; c.steps = 500;
     },
     {{"f1.degree1_energy", ">=", 0.97}, {"f1.label_std", ">=", 0.45}, {"f1.control_mse_ratio", ">=", 5.0}}},

    {"fig2c-even", "fig2c-kernel",
     "Fig. 2C with even features |x.w|: the learner cannot generalise degree 1, the function becomes degree 2",
     "degree-2 energy >= 0.9, while its control (no learner term) finds degree 1 (>= 0.9)",
     [](Config& c) {
         // A control for the method: an even feature map makes every prediction even in x, so the
         // degree-1 function that the meta-learner's own bias prefers (the control) cannot be
         // generalised at all; the learner's bias must win for the target to be met.
         c.learner = "kernel:activation=abs"; c.control = true;
         // fig2c's 500 steps leave the labels narrow here (std 0.08-0.16 on seeds 1-3, seed 1 half
         // constant): a degree-2 function spreads its labels less, and the spread grows slowly
         // against the learner's term. 3000 steps: std 0.29-0.39, degree 2 0.96-0.99 (6 s a run).
         c.steps = 3000;
     },
     {{"f1.degree2_energy", ">=", 0.9}, {"f1.label_std", ">=", 0.2}, {"control:f1.degree1_energy", ">=", 0.9},
      {"f1.control_mse_ratio", ">=", 5.0}}},

    {"fig3-linear", "fig2b-ridge",
     "Fig. 3B: three orthogonal functions for ridge regression: two linear, one hard to learn",
     "f1, f2 linear (R^2 >= 0.95); f3's test MSE >= 5x f1's and f2's; pairwise |corr| <= 0.1",
     [](Config& c) { c.functions = 3; },
     {{"f1-f2.linear_r2", ">=", 0.95}, {"f3.test_mse/f1-f2.test_mse", ">=", 5.0}, {"max_abs_correlation", "<=", 0.1}}},

    {"fig3-kernel", "fig2c-kernel",
     "Fig. 3C: six orthogonal functions for kernel regression: 3 of degree 1, then 3 of degree 2",
     "f1..f3 >= 0.90 degree-1 energy, f4..f6 >= 0.80 degree-2, pairwise |corr| <= 0.1",
     [](Config& c) {
         c.functions = 6; c.features_min = 20; c.features_max = 100; c.redraw_features = true;
         c.n_train = 6; c.n_test = 30; c.steps = 1000;
         // With 6 training points the labels shrink unless the distribution term weighs more than
         // in Fig. 2C (the notebook does not state its weights; 50:10 keeps the label std ~0.35-0.55).
         c.div_weight = 50.0; c.mse_weight = 10.0;
     },
     {{"f1-f3.degree1_energy", ">=", 0.90}, {"f4-f6.degree2_energy", ">=", 0.80}, {"max_abs_correlation", "<=", 0.1}}},

    {"fig4-kernel-vs-linear", "fig2c-kernel",
     "Fig. 4: a function kernel regression generalises far better than linear regression",
     "kernel test MSE <= 0.1 x linear's",
     [](Config& c) {
         c.chosen = "kernel"; c.neglected = "ridge"; c.n_train = 50; c.n_test = 150;
         // The notebook: Adam 0.01 for 500 steps, which reaches a kernel/linear MSE ratio of only
         // 0.09-0.30 here (0.11-0.22 in the notebook itself). The game is adversarial and Adam at
         // 0.01 keeps hopping between solutions; 0.001 for 2000 steps settles (ratios 0.05-0.12).
         c.meta_optimizer = "adam"; c.lr = 0.001; c.steps = 2000;
         c.div_on = "split";  // 30 S(z_train) + 30 S(z_test) + MSE_kernel - MSE_linear
         c.div_weight = 30.0; c.mse_weight = 1.0;
     },
     {{"f1.mse_ratio", "<=", 0.1}}},

    {"fig4-kernel-vs-linear-bias", "fig4-kernel-vs-linear",
     "Fig. 4 with a bias on the linear learner: an offset no longer wins, the function is non-linear",
     "kernel test MSE <= 0.1 x linear's; mostly non-linear (>= 50% of the energy)",
     [](Config& c) { c.neglected = "ridge:bias=1"; },
     {{"f1.mse_ratio", "<=", 0.1}, {"f1.nonlinear_fraction", ">=", 0.5}}},

    {"fig5-spiking", nullptr,
     "Fig. 5: a LIF circuit trained by surrogate gradients on interaural phase differences: 3 orthogonal functions",
     "f1 >= 0.8 of its (centred) Legendre energy in degree 1; the circuit's normalised test error rises f1 < f2 < f3; "
     "pairwise |corr| <= 0.1",
     [](Config& c) {
         // Section 5.1: the meta-learner sees u = dphi / (pi/2); the circuit sees two ears' spike
         // trains (the reduced size R1: 2 x 16 fibres, 50 bins of 2 ms, 16 LIF units), redrawn
         // each meta-step with its initial weights, and is trained by 50 differentiable Adam
         // steps on 32 trials. The paper's code for this figure was never released.
         c.inputs = "ipd"; c.learner = "spiking";
         c.inner_optimizer = "adam"; c.inner_lr = 0.03; c.inner_steps = 50;
         c.n_train = 32; c.n_test = 256;
         c.meta_hidden = 100; c.meta_depth = 2; c.meta_activation = "tanh"; c.meta_output = "identity";
         c.meta_optimizer = "adam"; c.lr = 0.001;
         c.divergence = "w2"; c.div_on = "all"; c.div_weight = 10.0; c.mse_weight = 1.0;
         // The meta-gradient through 50 surrogate-gradient Adam steps is orders of magnitude larger
         // than the divergence's and biased: without this the labels' mean drifts to -1 within
         // 20-60 steps (measured here, as in PyTorch). Standardized labels leave it only the shape.
         c.standardize_labels = true;
         c.functions = 3; c.steps = 150; c.probe = 1000; c.eval_tasks = 20;
     },
     {{"f1.legendre1_energy", ">=", 0.8}, {"f2.normalised_test_error/f1.normalised_test_error", ">=", 1.0},
      {"f3.normalised_test_error/f2.normalised_test_error", ">=", 1.0}, {"max_abs_correlation", "<=", 0.1}}},

    {"fig6-mnist", nullptr,
     "Fig. 6: a CNN meta-learner labels MNIST 0s and 1s so that a small CNN learner generalises: the digit",
     "|correlation of the labels with the digit| >= 0.9",
     [](Config& c) {
         // Section 5.2: 2000 images (600 to train on, 1400 to test), the learner conv(1->16, 5x5,
         // pad 2) - ReLU - maxpool 2 - linear, re-initialised every meta-step and trained by 100
         // SGD steps on batches of 20; the meta-learner conv16 - conv32 (each ReLU +
         // maxpool 2) - linear. The notebook's relu6/6 output with "- 100 std(labels)" collapsed
         // to a constant on one seed (a dead relu6); a tanh output with (std - 1)^2 rewards the
         // same spread, stays bounded and cannot die. 3 x 3 meta kernels keep a meta-step short.
         // The notebook's inner lr 0.0025 diverged on seed 3 (meta-step 15, non-finite predictions,
         // identically with fused, op-by-op and checkpointed steps): with pixels in [-1, 1] the
         // background drives half the conv units, and SGD on the linear layer is near its
         // stability edge. 0.001 is well inside it.
         c.inputs = "mnist"; c.classes = "0,1"; c.learner = "cnn";
         c.inner_optimizer = "sgd"; c.inner_lr = 0.001; c.inner_steps = 100; c.inner_batch = 20;
         c.n_train = 600; c.n_test = 1400;
         c.meta_conv = "16,32"; c.meta_kernel = 3; c.meta_activation = "relu"; c.meta_output = "tanh";
         c.meta_optimizer = "adam"; c.lr = 0.001;
         c.divergence = "variance"; c.div_weight = 100.0; c.mse_weight = 1.0;
         c.functions = 1; c.steps = 100; c.probe = 2000; c.eval_tasks = 5; c.checkpoint_every = 25;
     },
     {{"f1.class_abs_correlation", ">=", 0.9}}},

    {"appB-divergences", "fig2c-kernel",
     "Appendix B: Fig. 2C with the Sinkhorn, energy and Gaussian MMD terms",
     "each >= 0.97 degree-1 energy",
     [](Config& c) { c.functions = 3; c.orthogonality = "none"; c.divergence = "sinkhorn,energy,mmd"; },
     {{"f1-f3.degree1_energy", ">=", 0.97}}},

    {"appC-reseed", "fig2c-kernel",
     "Appendix C: Fig. 2C restarted 9 times without orthogonality finds degree 1 every time",
     "all 9 mostly degree 1, none mostly degree 2",
     [](Config& c) { c.functions = 9; c.orthogonality = "none"; },
     {{"f1-f9.degree1_energy", ">=", 0.5}, {"f1-f9.degree2_energy", "<=", 0.5}}},

    {"fig8-evolution", "fig2c-kernel",
     "Fig. 8: the meta-learner trained by DES from fitness values alone finds degree-1 harmonics",
     "f1 >= 0.9 degree-1 energy",
     [](Config& c) {
         // Section 5.4: no gradients. 8 training points (>= 4 = dim of degree <= 1, < 9 = dim of
         // degree <= 2), so degree 1 is clearly easier than degree 2 (with 32 points KRR also fits
         // degree 2 and the fitness is flat between them). DES as in evosax, 64 members.
         c.features_min = c.features_max = 256; c.redraw_features = true; c.n_train = 8; c.n_test = 256;
         c.meta_hidden = 32; c.meta_output = "identity";
         c.meta_optimizer = "des"; c.population = 64; c.sigma = 0.05;
         c.steps = 500;  // generations
         c.functions = 3;
         c.divergence = "variance";  // (std - 1)^2, blind to the mean:
         c.orth_constant = true;     // + mean^2 (without it seed 2's f3 became 76% constant)
         c.div_weight = 1.0; c.mse_weight = 1.0;
     },
     {{"f1.degree1_energy", ">=", 0.9}}},

    {"fig8-strategies", "fig8-evolution",
     "Fig. 8 with each evolution strategy: DES, SNES, OpenAI-ES, sep-CMA-ES",
     "f1 >= 0.9 degree-1 energy for every strategy",
     [](Config& c) { c.sweep = "meta_optimizer=des,snes,openai-es,sep-cma-es"; },
     {{"meta_optimizer=des:f1.degree1_energy", ">=", 0.9}, {"meta_optimizer=snes:f1.degree1_energy", ">=", 0.9},
      {"meta_optimizer=openai-es:f1.degree1_energy", ">=", 0.9},
      {"meta_optimizer=sep-cma-es:f1.degree1_energy", ">=", 0.9}}},

    {"fig9-mlp", nullptr,
     "Appendix A, Fig. 9: a ReLU net trained by 200 unrolled GD steps: 3 degree-1, then 3 degree-2 functions",
     "f1..f3 >= 0.95 degree 1, f4..f6 >= 0.90 degree 2, pairwise |corr| <= 0.1, f4..f6 harder",
     [](Config& c) {
         c.inputs = "sphere:3"; c.learner = "mlp"; c.learner_hidden = "20,20";
         c.inner_optimizer = "sgd"; c.inner_lr = 0.025;
         c.inner_steps = 200;  // full batch, every step differentiated through
         c.n_train = 30; c.n_test = 300;
         c.meta_output = "identity";  // cos(ReLU net) adds high frequencies: seed 1 gave f4 0.91 vs 0.95
         c.meta_optimizer = "adam"; c.lr = 0.01;
         c.divergence = "energy"; c.mse_weight = 1000.0; c.div_weight = 10000.0;
         c.functions = 6;
         c.steps = 1000;  // per function; 300 leaves f4..f6 mixed (degree-2 energy 0.10-0.94)
     },
     {{"f1-f3.degree1_energy", ">=", 0.95}, {"f4-f6.degree2_energy", ">=", 0.90}, {"max_abs_correlation", "<=", 0.1},
      {"f4-f6.test_mse/f1-f3.test_mse", ">=", 1.0}}},

    {"appD-depth", "fig9-mlp",
     "Appendix D, Fig. 12: fig9-mlp with meta-learners of 0..4 hidden layers",
     "the linear meta-learner finds only 3 functions (f4..f6 collapse: label std <= 0.1); 2..4 "
     "layers find 3 of degree 1 (>= 0.95) + 3 mostly of degree 2 (>= 0.8)",
     [](Config& c) { c.sweep = "meta_depth=0,1,2,3,4"; },
     {{"meta_depth=0:f4-f6.label_std", "<=", 0.1},
      {"meta_depth=2:f1-f3.degree1_energy", ">=", 0.95}, {"meta_depth=2:f4-f6.degree2_energy", ">=", 0.8},
      {"meta_depth=3:f1-f3.degree1_energy", ">=", 0.95}, {"meta_depth=3:f4-f6.degree2_energy", ">=", 0.8},
      {"meta_depth=4:f1-f3.degree1_energy", ">=", 0.95}, {"meta_depth=4:f4-f6.degree2_energy", ">=", 0.8}}},

    {"fig7-random", nullptr,
     "Fig. 7: each hidden unit sees 2 random inputs: the labelling picks one input",
     "largest share of |linear weights| >= 0.6",
     [](Config& c) {
         c.inputs = "sphere:5"; c.learner = "mlp"; c.learner_hidden = "100"; c.connectivity = "random";
         c.inner_optimizer = "sgd"; c.inner_lr = 0.05; c.inner_steps = 50; c.inner_batch = 30;
         c.n_train = 50; c.n_test = 300;
         c.meta_optimizer = "adam"; c.lr = 0.0025;
         c.divergence = "sinkhorn"; c.div_on = "test"; c.mse_weight = 1000.0; c.div_weight = 500.0;
         // The notebook takes 200 steps; here the grouped labelling is still drifting then (group-mean
         // R^2 0.97, 0.77, 0.54 over seeds 1-3) and settles by 600 (0.58, 0.12, 0.24).
         c.steps = 600;
         c.groups = "0,1;2,3,4";
     },
     {{"f1.dominant_input_share", ">=", 0.6}}},

    {"fig7-biased", "fig7-random",
     "Fig. 7: connections biased to input 0: the labelling follows input 0",
     "dominant input 0 with share >= 0.8",
     [](Config& c) { c.connectivity = "biased:0.6,0.1,0.1,0.1,0.1"; },
     {{"f1.dominant_input", "<=", 0.0}, {"f1.dominant_input_share", ">=", 0.8}}},

    {"fig7-grouped", "fig7-random",
     "Fig. 7: grouped connectivity (mushroom-body-like): not a function of group means",
     "group-mean R^2 <= 0.5",
     [](Config& c) { c.connectivity = "grouped"; },
     {{"f1.group_mean_r2", "<=", 0.5}}},

    {"fig7-grouped-positive", "fig7-grouped",
     "Fig. 7: grouped and positive weights: a function of the group means",
     "group-mean R^2 >= 0.9",
     [](Config& c) { c.positive = true; },
     {{"f1.group_mean_r2", ">=", 0.9}}},

    {"fig7-contrast", "fig7-grouped-positive",
     "Fig. 7's finding in one figure: grouped connectivity with free vs positive input weights",
     "free weights: group-mean R^2 <= 0.5; positive: >= 0.9",
     [](Config& c) { c.sweep = "positive=false,true"; },
     {{"positive=false:f1.group_mean_r2", "<=", 0.5}, {"positive=true:f1.group_mean_r2", ">=", 0.9}}},
    };
    return rows;
}
// clang-format on

/// A preset built earlier from the table, to build a variant on.
inline Config find_in(const std::vector<Preset>& list, const std::string& name) {
    for (const Preset& p : list)
        if (p.name == name) return p.config;
    throw std::logic_error("preset " + name + " must be defined before the presets built on it");
}

}  // namespace detail

/// Every preset, in the table's order.
inline std::vector<Preset> presets() {
    std::vector<Preset> out;
    for (const detail::PresetRow& row : detail::preset_table()) {
        Config c = row.base ? detail::find_in(out, row.base) : Config{};
        c.preset = row.name;
        row.set(c);
        out.push_back({row.name, row.summary, row.target, c, row.targets});
    }
    return out;
}

inline const Preset& find_preset(const std::string& name) {
    static const std::vector<Preset> all = presets();
    for (const Preset& p : all)
        if (p.name == name) return p;
    std::string known;
    for (const Preset& p : all) known += (known.empty() ? "" : ", ") + p.name;
    throw std::invalid_argument("unknown preset '" + name + "' (known: " + known + ")");
}

}  // namespace occam::experiment
