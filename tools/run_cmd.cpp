// occam run / presets / analyse / plot: one experiment from a preset or from flags, written to
// a run directory (config.json, log.csv, checkpoint.json, probe.csv, summary.json, figures).
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "cli.hpp"
#include "experiment/meta_learning.hpp"
#include "experiment/presets.hpp"
#include "plot.hpp"
#include "run_experiment.hpp"
#include "run_files.hpp"
#include "summary.hpp"

namespace occam::cli {

using experiment::Config;
using nlohmann::json;

namespace {

void add_experiment_flags(cxxopts::Options& o) {
    const Config d;
    o.add_options("experiment")
        ("preset", "Start from a preset (see occam presets); later flags override it", cxxopts::value<std::string>())
        ("inputs", "Input distribution: disk, sphere:D, cube:D, gaussian:D or file:PATH.csv", cxxopts::value<std::string>()->default_value(d.inputs))
        ("learner", "Learner: ridge, kernel (random ReLU features + ridge) or arccos (exact kernel ridge)", cxxopts::value<std::string>()->default_value(d.learner))
        ("features", "Random features K, or MIN:MAX to redraw K every step", cxxopts::value<std::string>()->default_value("20"))
        ("ridge", "The learner's ridge parameter lambda", cxxopts::value<double>()->default_value("0.001"))
        ("bias", "Ridge learner: fit an unpenalised intercept", cxxopts::value<bool>()->default_value("false"))
        ("redraw-features", "Kernel learner: draw new random features every meta-step", cxxopts::value<bool>()->default_value("false"))
        ("train", "Training points per task", cxxopts::value<int>()->default_value(std::to_string(d.n_train)))
        ("test", "Test points per task", cxxopts::value<int>()->default_value(std::to_string(d.n_test)))
        ("divergence", "Label-distribution term: sinkhorn, energy, mmd, w2 (exact, to U[-1,1]) or variance ((std-1)^2)", cxxopts::value<std::string>()->default_value(d.divergence))
        ("div-weight", "Weight of the label-distribution term", cxxopts::value<double>()->default_value("1"))
        ("div-on", "all: one term on all labels; split: one on the training and one on the test labels", cxxopts::value<std::string>()->default_value(d.div_on))
        ("blur", "Sinkhorn / MMD blur", cxxopts::value<double>()->default_value("0.05"))
        ("scaling", "Sinkhorn epsilon-scaling factor", cxxopts::value<double>()->default_value("0.5"))
        ("mse-weight", "Weight of the learner's test MSE", cxxopts::value<double>()->default_value("10"))
        ("meta-hidden", "Meta-learner hidden width", cxxopts::value<int>()->default_value(std::to_string(d.meta_hidden)))
        ("meta-depth", "Meta-learner hidden layers", cxxopts::value<int>()->default_value(std::to_string(d.meta_depth)))
        ("meta-activation", "Meta-learner activation: relu, tanh, sigmoid, relu6, identity", cxxopts::value<std::string>()->default_value(d.meta_activation))
        ("meta-output", "Meta-learner output map: identity, cos, tanh, relu6/6", cxxopts::value<std::string>()->default_value(d.meta_output))
        ("meta-optimizer", "Outer optimiser: adagrad, adam, sgd", cxxopts::value<std::string>()->default_value(d.meta_optimizer))
        ("lr", "Outer learning rate", cxxopts::value<double>()->default_value("0.01"))
        ("steps", "Meta-steps", cxxopts::value<int>()->default_value(std::to_string(d.steps)))
        ("seed", "Random seed (the run is bit-identical for a given seed)", cxxopts::value<std::uint64_t>()->default_value("1"))
        ("threads", "Threads (results do not depend on it)", cxxopts::value<int>()->default_value("1"))
        ("probe", "Probe points for the analysis and figures", cxxopts::value<int>()->default_value(std::to_string(d.probe)))
        ("eval-tasks", "Fresh tasks averaged for the reported test MSE", cxxopts::value<int>()->default_value(std::to_string(d.eval_tasks)))
        ("checkpoint-every", "Steps between checkpoints", cxxopts::value<int>()->default_value(std::to_string(d.checkpoint_every)));
    o.add_options("output")
        ("out", "Run directory (default runs/PRESET-seedN)", cxxopts::value<std::string>())
        ("force", "Overwrite a non-empty run directory")
        ("resume", "Continue the interrupted run in DIR (other experiment flags are ignored, except --steps)", cxxopts::value<std::string>())
        ("quiet", "No progress line")
        ("no-plot", "Do not draw figures");
}

void parse_features(const std::string& s, Config& c) {
    auto colon = s.find(':');
    try {
        std::size_t used = 0;
        if (colon == std::string::npos) {
            c.features_min = c.features_max = std::stoi(s, &used);
            if (used != s.size()) throw std::invalid_argument(s);
        } else {
            c.features_min = std::stoi(s.substr(0, colon), &used);
            c.features_max = std::stoi(s.substr(colon + 1));
        }
    } catch (const std::exception&) {
        throw std::invalid_argument("--features must be K or MIN:MAX (got '" + s + "')");
    }
}

/// The preset (if any), then every flag the user actually gave on top of it.
Config resolve_config(const cxxopts::ParseResult& a) {
    Config c = a.count("preset") ? experiment::find_preset(a["preset"].as<std::string>()).config : Config{};
    auto given = [&](const char* k) { return a.count(k) > 0; };
    if (given("inputs")) c.inputs = a["inputs"].as<std::string>();
    if (given("learner")) c.learner = a["learner"].as<std::string>();
    if (given("features")) parse_features(a["features"].as<std::string>(), c);
    if (given("ridge")) c.ridge = a["ridge"].as<double>();
    if (given("bias")) c.bias = a["bias"].as<bool>();
    if (given("redraw-features")) c.redraw_features = a["redraw-features"].as<bool>();
    if (given("train")) c.n_train = a["train"].as<int>();
    if (given("test")) c.n_test = a["test"].as<int>();
    if (given("divergence")) c.divergence = a["divergence"].as<std::string>();
    if (given("div-weight")) c.div_weight = a["div-weight"].as<double>();
    if (given("div-on")) c.div_on = a["div-on"].as<std::string>();
    if (given("blur")) c.blur = a["blur"].as<double>();
    if (given("scaling")) c.scaling = a["scaling"].as<double>();
    if (given("mse-weight")) c.mse_weight = a["mse-weight"].as<double>();
    if (given("meta-hidden")) c.meta_hidden = a["meta-hidden"].as<int>();
    if (given("meta-depth")) c.meta_depth = a["meta-depth"].as<int>();
    if (given("meta-activation")) c.meta_activation = a["meta-activation"].as<std::string>();
    if (given("meta-output")) c.meta_output = a["meta-output"].as<std::string>();
    if (given("meta-optimizer")) c.meta_optimizer = a["meta-optimizer"].as<std::string>();
    if (given("lr")) c.lr = a["lr"].as<double>();
    if (given("steps")) c.steps = a["steps"].as<int>();
    if (given("seed")) c.seed = a["seed"].as<std::uint64_t>();
    if (given("threads")) c.threads = a["threads"].as<int>();
    if (given("probe")) c.probe = a["probe"].as<int>();
    if (given("eval-tasks")) c.eval_tasks = a["eval-tasks"].as<int>();
    if (given("checkpoint-every")) c.checkpoint_every = a["checkpoint-every"].as<int>();
    return c;
}

/// A progress line on stderr: rewritten in place on a terminal, every 10% otherwise.
class Progress {
public:
    Progress(bool quiet, int total, std::string label)
        : quiet_(quiet), tty_(isatty(STDERR_FILENO)), total_(total), label_(std::move(label)),
          start_(std::chrono::steady_clock::now()) {}
    void update(int done, const experiment::StepLog& s, const std::string& div_name, int first) {
        if (quiet_) return;
        auto now = std::chrono::steady_clock::now();
        const double elapsed = std::chrono::duration<double>(now - start_).count();
        const bool last = done == total_;
        if (tty_) {
            if (!last && std::chrono::duration<double>(now - last_print_).count() < 0.1) return;
        } else if (!last && (done - first) % std::max(1, total_ / 10) != 0) {
            return;
        }
        last_print_ = now;
        const double rate = (done - first) / std::max(elapsed, 1e-9);
        const double eta = (total_ - done) / std::max(rate, 1e-9);
        fmt::print(stderr, "{}[{}] step {}/{}  loss {:.4g}  test MSE {:.4g}  {} {:.4g}  {:.0f} steps/s  ETA {:.0f}s{}",
                   tty_ ? "\r" : "", label_, done, total_, s.loss, s.mse, div_name, s.divergence, rate, eta,
                   tty_ ? "   " : "\n");
        if (tty_ && last) fmt::print(stderr, "\n");
    }

private:
    bool quiet_, tty_;
    int total_;
    std::string label_;
    std::chrono::steady_clock::time_point start_, last_print_{};
};

std::string log_row(const experiment::StepLog& s) {
    return fmt::format("{},{:.17g},{:.17g},{:.17g}\n", s.step, s.loss, s.mse, s.divergence);
}
const char* kLogHeader = "step,loss,mse,divergence\n";

/// Keeps the header and the rows of steps before `step` (a resumed run rewrites the rest).
std::string log_until(const fs::path& path, int step) {
    std::ifstream in(path);
    std::string line, out = kLogHeader;
    std::getline(in, line);
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        if (std::stoi(line.substr(0, line.find(','))) >= step) break;
        out += line + "\n";
    }
    return out;
}

void append(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::app);
    out << text;
    if (!out) throw std::runtime_error("error writing " + path.string());
}

void save_checkpoint(const fs::path& dir, const experiment::MetaTrainer& t) {
    write_checkpoint(dir / "checkpoint.json", {t.steps_done(), t.params(), t.optimizer_state()});
}

/// Probe set, summary and figures of a finished run.
json finish_run(const fs::path& dir, experiment::MetaTrainer& trainer, bool plot, bool quiet) {
    const Config& c = trainer.config();
    ad::Rng probe_rng = experiment::rng_for(c.seed, experiment::Stream::probe);
    ProbeTable probe;
    probe.x = trainer.inputs().sample(c.probe, probe_rng);
    ad::Rng fit_rng = experiment::rng_for(c.seed, experiment::Stream::final_fit);
    Eigen::MatrixXd x_train = trainer.inputs().sample(c.n_train, fit_rng);
    probe.names = {"f1", "g1"};
    probe.columns.resize(probe.x.rows(), 2);
    probe.columns.col(0) = trainer.label(probe.x);
    probe.columns.col(1) = trainer.fit_predict(x_train, trainer.label(x_train), probe.x, fit_rng);
    write_probe(dir / "probe.csv", probe);

    json summary = analyse_probe(probe, c);
    summary["functions"][0]["test_mse"] = trainer.test_mse(c.eval_tasks);
    summary["learner_description"] = trainer.learner().describe();
    write_text(dir / "summary.json", summary.dump(2) + "\n");
    if (plot) {
        if (gnuplot_available()) {
            auto files = plot_run(dir);
            if (!quiet) fmt::print("figure: {}\n", files.front().string());
        } else if (!quiet) {
            fmt::print(stderr, "occam run: gnuplot not found, no figures (make demo installs it)\n");
        }
    }
    return summary;
}

}  // namespace

std::string config_text(const Config& c) {
    json j = to_json(c);
    j["occam_version"] = OCCAM_VERSION;
    return j.dump(2) + "\n";
}

json run_experiment(const Config& c, const fs::path& dir, const Checkpoint* resume_from, bool quiet, bool plot) {
    experiment::MetaTrainer trainer(c);
    if (resume_from && resume_from->step > 0) trainer.restore(resume_from->step, resume_from->params, resume_from->optimizer);
    write_text(dir / "log.csv", resume_from && fs::exists(dir / "log.csv") ? log_until(dir / "log.csv", trainer.steps_done())
                                                                       : std::string(kLogHeader));
    if (!quiet)
        fmt::print(stderr, "occam run: {} | {} | {} -> {}\n", c.preset.empty() ? "custom" : c.preset, c.inputs,
                   trainer.learner().describe(), dir.string());

    Progress progress(quiet, c.steps, c.preset.empty() ? "run" : c.preset);
    const int first = trainer.steps_done();
    std::string pending;
    while (trainer.steps_done() < c.steps) {
        experiment::StepLog s = trainer.step();
        pending += log_row(s);
        progress.update(trainer.steps_done(), s, c.divergence, first);
        if (trainer.steps_done() % c.checkpoint_every == 0) {
            append(dir / "log.csv", pending);
            pending.clear();
            save_checkpoint(dir, trainer);
        }
    }
    append(dir / "log.csv", pending);
    save_checkpoint(dir, trainer);

    return finish_run(dir, trainer, plot, quiet);
}

int run(int argc, char** argv) {
    cxxopts::Options options(argv[0],
                             "Meta-learns the functions a learner finds easiest to generalise (the paper's\n"
                             "Algorithm 1): a meta-learner labels inputs, the learner trains on some labels and is\n"
                             "tested on the rest, and the meta-learner descends the test error plus a term keeping\n"
                             "its labels spread like U[-1, 1].\n\n"
                             "  occam run --preset fig2c-kernel            # a paper figure\n"
                             "  occam run --preset fig2c-kernel --divergence energy --seed 2\n"
                             "  occam run --inputs file:cells.csv --learner arccos --out runs/cells\n\n"
                             "Writes config.json, log.csv, checkpoint.json, probe.csv, summary.json and figures\n"
                             "into the run directory.");
    add_experiment_flags(options);
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;
    const bool quiet = args.count("quiet") > 0;
    const bool plot = args.count("no-plot") == 0;

    Config c;
    fs::path dir;
    Checkpoint ckpt;
    const bool resume = args.count("resume") > 0;
    if (resume) {
        dir = args["resume"].as<std::string>();
        if (!fs::exists(dir / "config.json")) throw std::runtime_error(dir.string() + " has no config.json to resume");
        c = config_from_json(read_json(dir / "config.json"));
        if (args.count("steps")) c.steps = args["steps"].as<int>();
        if (fs::exists(dir / "checkpoint.json")) ckpt = read_checkpoint(dir / "checkpoint.json");
        write_text(dir / "config.json", config_text(c));
    } else {
        c = resolve_config(args);
        experiment::validate(c);
        dir = args.count("out") ? fs::path(args["out"].as<std::string>())
                                : fs::path("runs") / fmt::format("{}-seed{}", c.preset.empty() ? "custom" : c.preset, c.seed);
        prepare_run_dir(dir, args.count("force") > 0);
        write_text(dir / "config.json", config_text(c));
    }

    json summary = run_experiment(c, dir, resume ? &ckpt : nullptr, quiet, plot);
    fmt::print("{}", describe_summary(summary));
    fmt::print("results: {}\n", dir.string());
    return 0;
}
int presets(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Lists the experiment presets: name, what it reproduces, and its target.");
    bool help = false;
    parse_or_help(options, argc, argv, help);
    if (help) return 0;
    for (const auto& p : experiment::presets())
        fmt::print("{:<24} {}  [target: {}]\n", p.name, p.summary, p.target);
    return 0;
}

int analyse(int argc, char** argv) {
    cxxopts::Options options(argv[0],
                             "Recomputes DIR/summary.json from DIR/probe.csv (label statistics, linear fit,\n"
                             "spherical-harmonic energy per degree on sphere inputs). Keeps the test MSE that\n"
                             "the run measured.");
    options.add_options()("dir", "Run directory", cxxopts::value<std::string>());
    options.parse_positional({"dir"});
    options.positional_help("DIR");
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;
    if (!args.count("dir")) throw cxxopts::exceptions::exception("missing the run directory (occam analyse DIR)");
    const fs::path dir = args["dir"].as<std::string>();
    const Config c = config_from_json(read_json(dir / "config.json"));
    json summary = analyse_probe(read_probe(dir / "probe.csv"), c);
    if (fs::exists(dir / "summary.json")) {
        json old = read_json(dir / "summary.json");
        for (std::size_t k = 0; k < summary["functions"].size() && k < old["functions"].size(); ++k)
            if (old["functions"][k].contains("test_mse")) summary["functions"][k]["test_mse"] = old["functions"][k]["test_mse"];
        if (old.contains("learner_description")) summary["learner_description"] = old["learner_description"];
    }
    write_text(dir / "summary.json", summary.dump(2) + "\n");
    fmt::print("{}", describe_summary(summary));
    return 0;
}

int plot(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Draws a run directory's figures with gnuplot (PNG and SVG).");
    options.add_options()("dir", "Run directory", cxxopts::value<std::string>());
    options.parse_positional({"dir"});
    options.positional_help("DIR");
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;
    if (!args.count("dir")) throw cxxopts::exceptions::exception("missing the run directory (occam plot DIR)");
    if (!gnuplot_available()) throw std::runtime_error("gnuplot is not installed (make demo installs it)");
    for (const auto& f : plot_run(args["dir"].as<std::string>())) fmt::print("{}\n", f.string());
    return 0;
}

}  // namespace occam::cli
