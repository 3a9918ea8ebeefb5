// occam run / presets / analyse / plot: one experiment from a preset or from flags, written to
// a run directory (config.json, log.csv, checkpoint.json, probe.csv, summary.json, figures).
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <type_traits>
#include <variant>

#include "cli.hpp"
#include "control.hpp"
#include "experiment/meta_learning.hpp"
#include "experiment/parse.hpp"
#include "experiment/presets.hpp"
#include "mpi.hpp"
#include "plot.hpp"
#include "run_dir.hpp"
#include "run_experiment.hpp"
#include "run_files.hpp"
#include "settings.hpp"
#include "summary.hpp"
#include "sweep.hpp"

namespace occam::cli {

using experiment::Config;
using nlohmann::json;

namespace {

void add_experiment_flags(cxxopts::Options& o) {
    const Config d;
    auto add = o.add_options("experiment");
    add("preset", "Start from a preset (see occam presets); later flags override it", cxxopts::value<std::string>());
    add("features", "Random features K, or MIN:MAX to redraw K every step",
        cxxopts::value<std::string>()->default_value(std::to_string(d.features_min)));
    for (const Setting& f : settings()) {
        if (!f.flag) continue;
        std::visit(
            [&](auto member) {
                using T = std::remove_cvref_t<decltype(d.*member)>;
                const T& def = d.*member;
                if constexpr (std::is_same_v<T, std::string>) {
                    if (def.empty())
                        add(f.flag, f.help, cxxopts::value<T>());  // optional, no default
                    else
                        add(f.flag, f.help, cxxopts::value<T>()->default_value(def));
                } else if constexpr (std::is_same_v<T, bool>) {
                    add(f.flag, f.help, cxxopts::value<T>()->default_value(def ? "true" : "false"));
                } else {
                    add(f.flag, f.help, cxxopts::value<T>()->default_value(fmt::format("{}", def)));
                }
            },
            f.field);
    }
    o.add_options("output")
        ("out", "Run directory (default runs/PRESET-seedN)", cxxopts::value<std::string>())
        ("force", "Replace a run directory occam made (a non-empty directory occam did not make is refused)")
        ("resume", "Continue the interrupted run in DIR with its recorded settings; only --threads, and --steps "
                   "while the first function is training, may be given with it", cxxopts::value<std::string>())
        ("quiet", "No progress line")
        ("no-plot", "Do not draw figures");
}

void parse_features(const std::string& s, Config& c) {
    std::tie(c.features_min, c.features_max) = experiment::parse_int_range(s, ':', "--features");
}

/// What the run will do that the user may not expect (a small data file sampled with
/// replacement): one line each on stderr, before the run starts.
void print_warnings(const Config& c) {
    std::vector<Config> runs;
    if (c.sweep.empty())
        runs.push_back(c);
    else
        for (const auto& [name, sub] : sweep_runs(c)) runs.push_back(sub);
    std::vector<std::string> said;
    for (const Config& r : runs)
        for (const std::string& w : experiment::warnings(r))
            if (std::find(said.begin(), said.end(), w) == said.end()) {
                fmt::print(stderr, "occam run: warning: {}\n", printable(w));
                said.push_back(w);
            }
}

/// --resume continues a run with the settings it recorded: only --steps (see check_resumable)
/// and --threads (results do not depend on it) may be given with it; anything else is refused,
/// never silently ignored.
void refuse_flags_with_resume(const cxxopts::ParseResult& a) {
    std::vector<std::string> given;
    for (const char* flag : {"preset", "features", "out", "force"})
        if (a.count(flag)) given.push_back(flag);
    for (const Setting& f : settings())
        if (f.flag && a.count(f.flag) && std::string(f.flag) != "steps" && std::string(f.flag) != "threads")
            given.push_back(f.flag);
    if (!given.empty())
        throw std::invalid_argument("--resume continues a run with its own settings; --" + given.front() +
                                    " cannot be given with it (only --steps and --threads can); start a new run "
                                    "to change settings");
}

/// The preset (if any), then every flag the user actually gave on top of it.
Config resolve_config(const cxxopts::ParseResult& a) {
    Config c = a.count("preset") ? experiment::find_preset(a["preset"].as<std::string>()).config : Config{};
    if (a.count("features")) parse_features(a["features"].as<std::string>(), c);
    for (const Setting& f : settings()) {
        if (!f.flag || !a.count(f.flag)) continue;
        std::visit(
            [&](auto member) {
                using T = std::remove_cvref_t<decltype(c.*member)>;
                c.*member = a[f.flag].as<T>();
            },
            f.field);
    }
    if (a.count("fused-steps") && c.fused_steps && c.inner_optimizer != "sgd")
        throw std::invalid_argument("--fused-steps needs --inner-optimizer sgd (got " + c.inner_optimizer + ")");
    return c;
}

/// A progress line on stderr: rewritten in place on a terminal, every 10% otherwise.
class Progress {
public:
    Progress(bool quiet, int total, std::string label)
        : quiet_(quiet), tty_(isatty(STDERR_FILENO)), total_(total), label_(std::move(label)),
          start_(std::chrono::steady_clock::now()) {}
    void update(int done, const experiment::StepLog& s, const std::string& div_name, int first, int functions) {
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
        const std::string fn = functions > 1 ? fmt::format(" f{}/{}", s.function + 1, functions) : "";
        // Slow steps (fig5, fig6: seconds each) as seconds per step; "0 steps/s" says nothing.
        const std::string speed = rate >= 1 ? fmt::format("{:.0f} steps/s", rate) : fmt::format("{:.2g} s/step", 1 / rate);
        fmt::print(
            stderr,
            "{}[{}]{} step {}/{}  loss {:.4g}  test MSE {:.4g}  {} {:.4g}  {}  peak memory {:.0f} MB  ETA {:.0f}s{}",
            tty_ ? "\r" : "", label_, fn, done, total_, s.loss, s.mse, div_name, s.divergence, speed, peak_rss_mb(),
            eta, tty_ ? "   " : "\n");
        if (tty_ && last) fmt::print(stderr, "\n");
    }

private:
    bool quiet_, tty_;
    int total_;
    std::string label_;
    std::chrono::steady_clock::time_point start_, last_print_{};
};

std::string log_row(const experiment::StepLog& s, int steps_per_function) {
    return fmt::format("{},{},{:.17g},{:.17g},{:.17g},{:.17g},{:.17g},{:.3f}\n", s.function * steps_per_function + s.step,
                       s.function + 1, s.loss, s.mse, s.divergence, s.orthogonality, s.mse_neglected, s.tape_mb);
}

void append(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::app);
    out << text;
    if (!out) throw std::runtime_error("error writing " + path.string());
}

void save_checkpoint(const fs::path& dir, const experiment::MetaTrainer& t, const std::string& inputs_hash) {
    write_checkpoint(dir / "checkpoint.json", {t.frozen(), t.steps_done(), t.params(), t.optimizer_state(),
                                               checkpoint_config(t.config()), inputs_hash});
}

/// The probe set, fixed by the seed and shared by the orthogonalisation, the analysis and the
/// figures: its samples, and the table that probe.csv starts with (the samples themselves, or
/// for images each one's position in its file and its class: 784 pixel columns would make the
/// file useless to read, and the plot finds the pixels again from the two).
struct ProbeSet {
    Eigen::MatrixXd samples;
    ProbeTable table;
};
ProbeSet probe_set(const experiment::MetaTrainer& t) {
    ad::Rng rng = experiment::rng_for(t.config().seed, experiment::Stream::probe);
    ProbeSet p;
    const auto* images = dynamic_cast<const experiment::ImageInputs*>(&t.inputs());
    if (!images) {
        p.samples = t.inputs().sample(t.config().probe, rng);
        p.table.x = p.samples;
        return p;
    }
    const std::vector<int> rows = images->sample_indices(t.config().probe, rng);  // what sample() draws
    const experiment::ImageSet& set = images->images();
    p.samples.resize(Eigen::Index(rows.size()), set.pixels.cols());
    p.table.x.resize(Eigen::Index(rows.size()), 2);
    p.table.x_names = {"index", "class"};
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto r = std::size_t(rows[i]);
        p.samples.row(Eigen::Index(i)) = set.pixels.row(Eigen::Index(r));
        p.table.x(Eigen::Index(i), 0) = set.index[r];
        p.table.x(Eigen::Index(i), 1) = set.labels[r];
    }
    return p;
}

/// Probe set, summary and figures of a finished run: per function k, fk (the labels), gk (the
/// learner's fit after training on a fresh training set) and, in the students game, nk (the
/// neglected learner's fit). The probe set and the training set are samples (probe.csv's x
/// columns, what the meta-learner labels); the learners see their views, drawn inside
/// MetaTrainer::fit_predict.
json finish_run(const fs::path& dir, experiment::MetaTrainer& trainer, bool plot, bool quiet) {
    const Config& c = trainer.config();
    const bool students = experiment::game_of(c) == experiment::Game::students;
    const ProbeSet set = probe_set(trainer);
    ProbeTable probe = set.table;
    const Eigen::MatrixXd F = trainer.labels(set.samples);
    const int per = students ? 3 : 2;
    probe.columns.resize(set.samples.rows(), F.cols() * per);
    for (int k = 0; k < F.cols(); ++k) {
        ad::Rng fit_rng = experiment::rng_for(c.seed, experiment::Stream::final_fit, std::uint64_t(k));
        Eigen::MatrixXd x_train = trainer.inputs().sample(c.n_train, fit_rng);
        Eigen::VectorXd y_train = trainer.labels(x_train).col(k);
        ad::Rng learner_rng = fit_rng;
        probe.names.push_back(fmt::format("f{}", k + 1));
        probe.names.push_back(fmt::format("g{}", k + 1));
        probe.columns.col(per * k) = F.col(k);
        probe.columns.col(per * k + 1) = trainer.fit_predict(x_train, y_train, set.samples, learner_rng, 0);
        if (students) {
            ad::Rng neglected_rng = fit_rng;
            probe.names.push_back(fmt::format("n{}", k + 1));
            probe.columns.col(per * k + 2) = trainer.fit_predict(x_train, y_train, set.samples, neglected_rng, 1);
        }
    }
    write_probe(dir / "probe.csv", probe);

    json summary = analyse_probe(probe, c);
    for (int k = 0; k < F.cols(); ++k) {
        summary["functions"][std::size_t(k)]["test_mse"] = trainer.test_mse(k, c.eval_tasks, 0);
        if (students) summary["functions"][std::size_t(k)]["neglected_test_mse"] = trainer.test_mse(k, c.eval_tasks, 1);
    }
    add_normalised_test_errors(summary, c);
    summary["learner_description"] = trainer.learner(0).describe();
    if (students) summary["neglected_description"] = trainer.learner(1).describe();
    write_text(dir / "summary.json", summary.dump(2) + "\n");
    if (plot) draw_run_figures(dir, quiet, "occam run", plot_run);
    return summary;
}

}  // namespace

std::string config_text(const Config& c) {
    json j = to_json(c);
    j["occam_version"] = OCCAM_VERSION;
    return j.dump(2) + "\n";
}

namespace {

/// The processes of this mpirun as an evolution strategy's population split.
experiment::PopulationSplit mpi_split() {
    return {mpi::rank(), mpi::size(), [](const std::vector<double>& v) { return mpi::all_gather(v); },
            [](const std::string& text, int root) { return mpi::broadcast(text, root); }};
}

/// One experiment into `dir` (no control): meta-training from `resume_from` if given, then
/// the probe set, summary and figures. With `split`, its population is split over the
/// processes of this mpirun, which follow it in follow_run.
json run_one(const Config& c, const fs::path& dir, const Checkpoint* resume_from, bool quiet, bool plot, bool split) {
    experiment::MetaTrainer trainer(c);
    if (resume_from) trainer.restore(resume_from->frozen, resume_from->step, resume_from->params, resume_from->optimizer);
    if (split) {
        trainer.set_population_split(mpi_split());
        mpi::broadcast(resume_from ? "resume" : "fresh", 0);  // the others start as this one did
    }
    const int done_before = trainer.functions_done() * c.steps + trainer.steps_done();
    write_text(dir / "log.csv", log_prefix(dir / "log.csv", done_before));
    const std::string inputs_hash = inputs_fingerprint(c);
    if (!quiet)
        fmt::print(stderr, "occam run: {} | {} | {}{} -> {}\n", c.preset.empty() ? "custom" : c.preset, c.inputs,
                   trainer.learner(0).describe(),
                   trainer.num_learners() > 1 ? fmt::format(" (+{} more learners)", trainer.num_learners() - 1) : "",
                   dir.string());

    const int total = c.functions * c.steps;
    Progress progress(quiet, total, c.preset.empty() ? "run" : c.preset);
    const Eigen::MatrixXd probe_x = probe_set(trainer).samples;
    std::string pending;
    int done = done_before;
    while (!trainer.finished()) {
        while (trainer.steps_done() < c.steps) {
            experiment::StepLog s = trainer.step();
            pending += log_row(s, c.steps);
            ++done;
            progress.update(done, s, experiment::divergence_for(c, s.function), done_before, c.functions);
            if (done % c.checkpoint_every == 0) {
                append(dir / "log.csv", pending);
                pending.clear();
                save_checkpoint(dir, trainer, inputs_hash);
            }
        }
        if (trainer.function_index() + 1 == c.functions) {
            // The last checkpoint holds the last function unfrozen, so --resume with more
            // --steps can go on training it.
            append(dir / "log.csv", pending);
            save_checkpoint(dir, trainer, inputs_hash);
        }
        trainer.finish_function(probe_x);
    }
    // The steps' tape is rewound; hand its blocks back, so that the analysis's differently shaped
    // passes start on fresh blocks instead of faulting in the parts of the steps' blocks the
    // steps skipped (a whole fig6 run peaked 90 MB above its steps' 401 MB).
    ad::tape().arena.release_unused();
    return finish_run(dir, trainer, plot, quiet);
}

/// The control of the experiment in `dir`, in DIR/control: reused when resuming and finished
/// with the same settings, continued from its checkpoint when resuming, else run afresh.
json run_control(const Config& c, const fs::path& dir, bool resume, bool quiet, bool plot, bool split) {
    const Config cc = control_config(c);
    const fs::path cd = dir / "control";
    const bool same = resume && fs::exists(cd / "config.json") && read_json(cd / "config.json") == json::parse(config_text(cc));
    if (same && fs::exists(cd / "summary.json")) {
        if (split) mpi::broadcast("skip", 0);
        return read_json(cd / "summary.json");
    }
    const bool from_checkpoint = same && fs::exists(cd / "checkpoint.json");
    // The experiment owns its control's directory: a control made with other settings is replaced.
    const DirLock lock = from_checkpoint ? claim_existing_dir(cd, "run") : claim_new_dir(cd, true, "run");
    Checkpoint ckpt;
    if (from_checkpoint) {
        ckpt = read_checkpoint(cd / "checkpoint.json");
        check_resumable(ckpt, cc);
    }
    write_text(cd / "config.json", config_text(cc));
    if (!quiet) fmt::print(stderr, "occam run: the control (no learner term) -> {}\n", cd.string());
    return run_one(cc, cd, from_checkpoint ? &ckpt : nullptr, quiet, plot, split);
}

/// What the other processes of an mpirun do while process 0 runs an evolution strategy whose
/// population they share: the same trainers (the experiment, then its control), started as
/// process 0 says (afresh, from the checkpoint it resumed, or not at all), making the same
/// calls; they score their members and write nothing.
void follow_run(const Config& c, const fs::path& dir) {
    std::vector<std::pair<Config, fs::path>> parts = {{c, dir}};
    if (c.control) parts.emplace_back(control_config(c), dir / "control");
    for (const auto& [cfg, d] : parts) {
        const std::string start = mpi::broadcast("", 0);
        if (start == "skip") continue;
        experiment::MetaTrainer trainer(cfg);
        if (start == "resume") {
            // Process 0 read this file just now and writes the next one only after steps that
            // need this process: it is the same file.
            const Checkpoint ckpt = read_checkpoint(d / "checkpoint.json");
            trainer.restore(ckpt.frozen, ckpt.step, ckpt.params, ckpt.optimizer);
        }
        trainer.set_population_split(mpi_split());
        const Eigen::MatrixXd probe_x = probe_set(trainer).samples;
        while (!trainer.finished()) {
            while (trainer.steps_done() < cfg.steps) trainer.step();
            trainer.finish_function(probe_x);
        }
    }
}

}  // namespace

json run_experiment(const Config& c, const fs::path& dir, const Checkpoint* resume_from, bool quiet, bool plot,
                    bool split_population) {
    json summary = run_one(c, dir, resume_from, quiet, plot, split_population);
    if (c.control) {
        merge_control(summary, run_control(c, dir, resume_from != nullptr, quiet, plot, split_population));
        write_text(dir / "summary.json", summary.dump(2) + "\n");
    }
    return summary;
}

namespace {
/// Whether DIR/config.json holds exactly the settings `c` (false when it is missing or damaged).
bool made_with(const Config& c, const fs::path& dir) {
    try {
        return read_json(dir / "config.json") == json::parse(config_text(c));
    } catch (const std::exception&) {
        return false;
    }
}

/// DIR/summary.json if it is whole for the settings `c` (their config.json not checked).
std::optional<json> whole_summary(const Config& c, const fs::path& dir) {
    try {
        json summary = read_json(dir / "summary.json");
        if (!summary.is_object()) return std::nullopt;
        // A sweep writes its combined summary once, after all its runs; a run with a control
        // writes its own part first and the whole after the control.
        const bool whole = c.sweep.empty() ? !c.control || summary.contains("control") : summary.contains("runs");
        if (!whole) return std::nullopt;
        return summary;
    } catch (const std::exception&) {
        return std::nullopt;  // missing, truncated, not JSON: not finished
    }
}
}  // namespace

std::optional<json> finished_summary(const Config& c, const fs::path& dir) {
    return made_with(c, dir) ? whole_summary(c, dir) : std::nullopt;
}

ContinuedRun continue_run(const Config& c, const fs::path& dir, bool quiet, bool plot) {
    const char* kind = c.sweep.empty() ? "run" : "sweep";
    std::string afresh_because;
    if (fs::is_directory(dir) && occam_dir_kind(dir) == kind) {
        const DirLock lock = claim_existing_dir(dir, kind);  // before reading: no other process is writing it
        const bool same = made_with(c, dir);
        if (same)
            if (auto summary = whole_summary(c, dir)) return {std::move(*summary), "kept"};
        if (same && !c.sweep.empty()) return {run_sweep(c, dir, true, quiet, plot), "continued"};
        if (same && fs::exists(dir / "checkpoint.json")) {
            Checkpoint ckpt;
            try {
                ckpt = read_checkpoint(dir / "checkpoint.json");
                check_resumable(ckpt, c);
            } catch (const std::exception& e) {
                afresh_because = e.what();
            }
            if (afresh_because.empty()) return {run_experiment(c, dir, &ckpt, quiet, plot), "continued"};
        }
    }
    const DirLock lock = claim_new_dir(dir, true, kind);
    write_text(dir / "config.json", config_text(c));
    json summary = c.sweep.empty() ? run_experiment(c, dir, nullptr, quiet, plot) : run_sweep(c, dir, false, quiet, plot);
    return {std::move(summary), afresh_because.empty() ? "ran" : "ran afresh (" + afresh_because + ")"};
}

int run(int argc, char** argv) {
    cxxopts::Options options(argv[0],
                             "Meta-learns the functions a learner finds easiest to generalise (the paper's\n"
                             "Algorithm 1): a meta-learner labels inputs, the learner trains on some labels and is\n"
                             "tested on the rest, and the meta-learner descends the test error plus a term keeping\n"
                             "its labels spread like U[-1, 1].\n\n"
                             "  occam run --preset fig2c-kernel            # a paper figure\n"
                             "  occam run --preset fig2c-kernel --divergence energy --seed 2\n"
                             "  occam run --inputs file:cells.csv --learner arccos --out runs/cells\n"
                             "  occam run --preset fig9-mlp --sweep meta_depth=0,1,2 --threads 2\n"
                             "  occam run --preset fig8-evolution --learner exec:\"python3 my_model.py\"\n"
                             "  occam run --inputs ipd --learner mlp --out runs/ipd   # Fig. 5: phase differences as spikes\n\n"
                             "Writes config.json, log.csv, checkpoint.json, probe.csv, summary.json and figures\n"
                             "into the run directory.");
    add_experiment_flags(options);
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;
    const bool plot = args.count("no-plot") == 0;
    // Under mpirun, process 0 claims the directory and writes config.json; the others then
    // share it: they take the runs of a sweep that are theirs, or the members of an evolution
    // strategy's population that are theirs, and print nothing.
    const bool many = mpi::size() > 1, follower = many && mpi::rank() > 0;
    const bool quiet = args.count("quiet") > 0 || follower;

    Config c;
    fs::path dir;
    DirLock lock;
    std::optional<Checkpoint> ckpt;
    const bool resume = args.count("resume") > 0;
    if (resume && follower) {
        dir = args["resume"].as<std::string>();
        refuse_flags_with_resume(args);
        mpi::barrier();
        lock = lock_dir_shared(dir, "run");
        c = config_from_json(read_json(dir / "config.json"));  // as process 0 rewrote it
    } else if (resume) {
        dir = args["resume"].as<std::string>();
        refuse_flags_with_resume(args);
        lock = claim_existing_dir(dir, "run");
        if (!fs::exists(dir / "config.json")) throw std::runtime_error(dir.string() + " has no config.json to resume");
        c = config_from_json(read_json(dir / "config.json"));
        const int recorded_steps = c.steps;
        if (args.count("steps")) c.steps = args["steps"].as<int>();
        if (args.count("threads")) c.threads = args["threads"].as<int>();
        experiment::validate(c);
        if (!c.sweep.empty()) {
            if (c.steps != recorded_steps)
                throw std::runtime_error("--steps cannot change when resuming a sweep (its finished runs have " +
                                         std::to_string(recorded_steps) + "); start a new sweep");
        } else if (fs::exists(dir / "checkpoint.json")) {
            ckpt = read_checkpoint(dir / "checkpoint.json");
            check_resumable(*ckpt, c);
        } else {
            if (!quiet) fmt::print(stderr, "occam run: {} has no checkpoint yet: starting from step 0\n", dir.string());
            if (fs::exists(dir / "summary.json"))
                throw std::runtime_error(dir.string() + " has a summary.json but no checkpoint.json; nothing to resume");
        }
        if (c.steps != recorded_steps) {
            // The old results describe the old step count: gone before config.json says otherwise.
            for (const char* stale : {"summary.json", "probe.csv"}) fs::remove(dir / stale);
        }
        write_text(dir / "config.json", config_text(c));
    } else {
        c = resolve_config(args);
        experiment::validate(c);
        if (!c.sweep.empty()) sweep_runs(c);  // every run's settings are checked before any starts
        if (!follower) print_warnings(c);
        dir = args.count("out") ? fs::path(args["out"].as<std::string>())
                                : fs::path("runs") / fmt::format("{}-seed{}", c.preset.empty() ? "custom" : c.preset, c.seed);
        if (follower) {
            mpi::barrier();
            lock = lock_dir_shared(dir, c.sweep.empty() ? "run" : "sweep");
        } else {
            lock = claim_new_dir(dir, args.count("force") > 0, c.sweep.empty() ? "run" : "sweep");
            write_text(dir / "config.json", config_text(c));
        }
    }
    if (many && !follower) {
        lock.share();
        mpi::barrier();
    }

    const bool es = metaloss::is_es_method(c.meta_optimizer);
    if (!c.sweep.empty()) {
        const json combined = run_sweep(c, dir, resume, quiet, plot, many);
        if (follower) return 0;
        fmt::print("{}", describe_sweep(combined));
    } else if (follower) {
        if (es) follow_run(c, dir);
        return 0;
    } else {
        if (many && !es)
            fmt::print(stderr, "occam run: note: {} processes, but one run of a gradient method is one process's "
                               "work; mpirun shares the runs of a --sweep or of occam reproduce, and an evolution "
                               "strategy's population\n", mpi::size());
        json summary = run_experiment(c, dir, ckpt ? &*ckpt : nullptr, quiet, plot, many && es);
        fmt::print("{}{}", describe_summary(summary), describe_control(summary));
    }
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
                             "spherical-harmonic energy per degree on sphere inputs, Legendre energy per degree\n"
                             "on ipd inputs). Keeps everything else the run measured (test MSE, the control).\n"
                             "Refuses a probe.csv that does not match config.json (columns, rows).");
    add_run_dir(options);
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;
    const fs::path dir = run_dir(args, argv[0]);
    const DirLock lock = claim_existing_dir(dir, "run");
    const Config c = config_from_json(read_json(dir / "config.json"));
    if (!c.sweep.empty())
        throw std::runtime_error(dir.string() + " is a sweep; analyse each of its runs (" + dir.string() + "/SETTING=VALUE)");
    ProbeTable probe = read_probe(dir / "probe.csv");
    check_probe(probe, c, dir / "probe.csv");
    const json fresh = analyse_probe(probe, c);
    // What the analysis recomputes replaces the old values; everything else the run measured
    // (test MSE, the control, the learners' descriptions...) is kept as it was.
    json summary = fs::exists(dir / "summary.json") ? read_json(dir / "summary.json") : json::object();
    if (!summary.is_object()) throw std::runtime_error((dir / "summary.json").string() + " is not a JSON object");
    json functions = summary.value("functions", json::array());
    if (!functions.is_array()) functions = json::array();
    for (const auto& [key, value] : fresh.items())
        if (key != "functions") summary[key] = value;
    functions.get_ref<json::array_t&>().resize(fresh["functions"].size(), json::object());
    for (std::size_t k = 0; k < fresh["functions"].size(); ++k) {
        if (!functions[k].is_object()) functions[k] = json::object();
        for (const auto& [key, value] : fresh["functions"][k].items()) functions[k][key] = value;
    }
    summary["functions"] = functions;
    add_normalised_test_errors(summary, c);  // from the kept test MSE and the fresh label variance
    write_text(dir / "summary.json", summary.dump(2) + "\n");
    fmt::print("{}", describe_summary(summary));
    return 0;
}

int plot(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Draws a run directory's figures with gnuplot (PNG and SVG).");
    add_run_dir(options);
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;
    if (!gnuplot_available()) throw std::runtime_error("gnuplot is not installed (make demo installs it)");
    const fs::path dir = run_dir(args, argv[0]);
    const DirLock lock = claim_existing_dir(dir, "run");
    const bool sweep = !config_from_json(read_json(dir / "config.json")).sweep.empty();
    for (const auto& f : sweep ? plot_sweep(dir) : plot_run(dir)) fmt::print("{}\n", f.string());
    return 0;
}

}  // namespace occam::cli
