// What this file teaches: an experiment is a plain struct of settings. A preset is a named
// set of them; flags override a preset; config.json records the resolved struct, so every run
// can be repeated exactly.
#pragma once

#include <cstdint>
#include <string>

namespace occam::experiment {

struct Config {
    std::string preset;                ///< the preset this run started from ("" if none)
    // inputs and learner
    std::string inputs = "sphere:3";   ///< disk | sphere:D | cube:D | gaussian:D | file:PATH.csv | ipd | mnist | idx:DIR
    std::string classes = "0,1";       ///< mnist / idx inputs: the classes (digits) whose images are drawn
    std::string learner = "kernel";    ///< ridge | kernel | arccos | mlp | spiking | cnn | exec:COMMAND
    double exec_timeout = 60;          ///< exec learner: seconds the program may take per task
    int features_min = 20;             ///< random features K (a range redraws K every step)
    int features_max = 20;
    double ridge = 1e-3;               ///< the learner's ridge parameter lambda
    bool bias = false;                 ///< ridge learner: fit an unpenalised intercept
    bool redraw_features = false;      ///< kernel learner: new random features every meta-step
    // mlp learner (trained by unrolled gradient descent inside every meta-step)
    std::string learner_hidden = "20,20";  ///< hidden widths
    std::string learner_activation = "relu";
    std::string inner_optimizer = "sgd";   ///< sgd | momentum | adam
    double inner_lr = 0.025;
    int inner_steps = 200;
    int inner_batch = 0;                   ///< 0: full batch
    int truncate = 0;                      ///< meta-gradient through the last K inner steps (0: all)
    bool step_checkpointing = false;       ///< store each inner step's state only; recompute in backward
    /// Each plain-SGD step of a ReLU learner as one node with a hand-written backward (same
    /// meta-gradient to rounding, ~2x smaller tape); ignored where it does not apply.
    bool fused_steps = true;
    std::string connectivity = "dense";    ///< dense | random | biased:p0,p1,... | grouped
    bool positive = false;                 ///< keep the mlp's input weights positive
    std::string groups;                    ///< input groups, e.g. "0,1;2,3,4" (grouped scheme, analysis)
    std::string group_weights = "0.85,0.05;0.4,0.1";  ///< grouped: (same group, other) weight per group
    int n_train = 20;
    int n_test = 80;
    // meta-loss
    std::string divergence = "sinkhorn";  ///< sinkhorn | energy | mmd | w2 | variance, or a comma list (one per function)
    double div_weight = 1.0;
    std::string div_on = "all";        ///< all: one term on all labels; split: train and test terms; test
    double blur = 0.05;                ///< sinkhorn / mmd blur
    double scaling = 0.5;              ///< sinkhorn epsilon-scaling factor
    double mse_weight = 10.0;
    /// Also run the control: the same experiment without the learner's term (mse_weight 0), the
    /// meta-learner's own bias under the same divergence and orthogonality, to compare with.
    bool control = false;
    // function space: a series of meta-learners, and games between learners
    int functions = 1;                 ///< meta-learners trained in sequence
    std::string orthogonality = "project";  ///< project | penalty | none (see meta_learning.hpp)
    double orth_weight = 10.0;         ///< weight of the normalised overlap penalty (penalty mode)
    bool orth_constant = false;        ///< also orthogonal to the constant: adds mean(labels)^2 to the loss
    /// Shift and scale each batch's labels to mean 0 and the std of U(-1, 1) before the learner
    /// and the divergence see them (a frozen function keeps the map fitted on the probe set).
    bool standardize_labels = false;
    std::string chosen;                ///< students game: the learner that must generalise well
    std::string neglected;             ///< ... and the one that must generalise badly
    std::string students_loss = "difference";  ///< difference: MSE_c - MSE_n; log-ratio: log MSE_c - log MSE_n
    std::string cooperative;           ///< comma-separated learners that must all generalise well
    // meta-learner
    int meta_hidden = 150;
    int meta_depth = 2;                ///< hidden layers
    std::string meta_activation = "relu";
    std::string meta_output = "cos";   ///< identity | cos | tanh | relu6/6
    /// A CNN meta-learner for image inputs: its conv layers' channels ("16,32": conv16 - conv32,
    /// each ReLU + maxpool 2, then a linear output); "" is the MLP of meta_hidden / meta_depth.
    std::string meta_conv;
    int meta_kernel = 5;               ///< the CNN meta-learner's kernel size (padding keeps the size)
    std::string meta_optimizer = "adagrad";  ///< adagrad | adam | sgd, or des | snes | openai-es | sep-cma-es (no gradients)
    int population = 64;               ///< evolution strategies: members per generation
    double sigma = 0.05;               ///< evolution strategies: initial std of every weight
    double lr = 0.01;
    int steps = 500;
    // a sweep: the same run once per value of one setting, e.g. "meta_depth=0,1,2,3,4"
    std::string sweep;
    // bookkeeping
    std::uint64_t seed = 1;
    int threads = 1;
    int probe = 2000;                  ///< probe points for analysis and figures
    int eval_tasks = 50;               ///< fresh tasks averaged for the reported test MSE
    int checkpoint_every = 200;
};

/// Bounds of settings that have no natural one: beyond them a value is a typo, and a run would
/// fail late and obscurely (threads that cannot start, a million-layer network, a time-out that
/// overflows the clock) instead of at once with the flag's name.
inline constexpr int kMaxThreads = 1024;
inline constexpr int kMaxLayers = 1000;             ///< hidden layers of the meta-learner or an mlp learner
inline constexpr double kMaxExecTimeout = 604800;   ///< --exec-timeout: one week, in seconds
inline constexpr double kMaxSinkhornIterations = 10000;  ///< epsilon-scaling steps per divergence (--blur, --scaling)

}  // namespace occam::experiment
