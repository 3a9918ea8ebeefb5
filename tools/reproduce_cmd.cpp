// occam reproduce: every preset for several seeds, the medians against each preset's target,
// written to RESULTS.md (the table the README shows) and results.json.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <sstream>
#include <thread>

#include "cli.hpp"
#include "control.hpp"
#include "experiment/meta_learning.hpp"
#include "experiment/presets.hpp"
#include "experiment/thread_pool.hpp"
#include "run_dir.hpp"
#include "run_experiment.hpp"
#include "sweep.hpp"
#include "targets.hpp"

namespace occam::cli {

using nlohmann::json;

int reproduce(int argc, char** argv) {
    cxxopts::Options options(argv[0],
                             "Runs presets for several seeds (in parallel threads; every run is bit-identical to a\n"
                             "single `occam run`), compares the median of each target metric with the preset's\n"
                             "target, and writes OUT/RESULTS.md and OUT/results.json. Exit status 1 if a target is\n"
                             "missed. Every run also runs its control (the same run without the learner's term):\n"
                             "the table shows how much worse the learner generalises the control's functions, and\n"
                             "which targets the control meets without the learner.");
    options.add_options()("presets", "Comma-separated presets (default: all)", cxxopts::value<std::string>())(
        "seeds", "Comma-separated seeds", cxxopts::value<std::string>()->default_value("1,2,3"))(
        "out", "Output directory", cxxopts::value<std::string>()->default_value("runs/reproduce"))(
        "threads", "Runs at once",
        cxxopts::value<int>()->default_value(std::to_string(
            std::clamp(int(std::thread::hardware_concurrency()), 1, experiment::kMaxThreads))))(
        "force", "Replace an output directory occam made (a non-empty directory occam did not make is refused)")("no-plot", "Do not draw figures")(
        "no-control",
        "Skip the control runs (each preset again without the learner's term, --mse-weight 0; about doubles the "
        "time); targets that read the control are then skipped");
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;

    // Every list and count is checked whole before any run starts: "--seeds -1" is not seed
    // 2^64 - 1, and a seed or preset listed twice would run twice and count twice in a median.
    std::vector<experiment::Preset> chosen;
    if (args.count("presets")) {
        const std::string list = args["presets"].as<std::string>();
        std::vector<std::string> names;
        std::string::size_type start = 0, comma = 0;
        do {
            comma = list.find(',', start);
            const std::string name = list.substr(start, comma - start);  // to the end when there is no comma
            if (name.empty()) throw cxxopts::exceptions::exception("--presets: empty item in '" + list + "'");
            if (std::find(names.begin(), names.end(), name) != names.end())
                throw cxxopts::exceptions::exception("--presets: " + name + " is listed twice");
            names.push_back(name);
            start = comma + 1;
        } while (comma != std::string::npos);
        for (const auto& name : names) chosen.push_back(experiment::find_preset(name));
    } else {
        chosen = experiment::presets();
    }
    for (const auto& p : chosen)
        for (const auto& t : p.targets) check_metric_name(t.metric);  // a typo fails now, not after the runs
    std::vector<std::uint64_t> seeds;
    try {
        seeds = experiment::parse_integer_list<std::uint64_t>(args["seeds"].as<std::string>(), "--seeds");
    } catch (const std::invalid_argument& e) {
        throw cxxopts::exceptions::exception(e.what());  // a usage error: exit status 2
    }
    const int threads = args["threads"].as<int>();
    if (threads < 1 || threads > experiment::kMaxThreads)
        throw cxxopts::exceptions::exception("--threads must be from 1 to " + std::to_string(experiment::kMaxThreads) +
                                             " (got " + std::to_string(threads) + ")");
    const fs::path out = args["out"].as<std::string>();
    const DirLock out_lock = claim_new_dir(out, args.count("force") > 0, "reproduce");
    const bool plot = args.count("no-plot") == 0;
    const bool controls = args.count("no-control") == 0;

    struct Job {
        const experiment::Preset* preset;
        std::uint64_t seed;
        json summary;
        double seconds = 0;
        std::string error;
    };
    std::vector<Job> jobs;
    for (const auto& p : chosen)
        for (auto s : seeds) jobs.push_back({&p, s, {}, 0, ""});

    std::mutex print;
    // A failed run is recorded in its row of the table; the other runs go on.
    experiment::parallel_for(int(jobs.size()), threads, [&](int i) {
        Job& job = jobs[std::size_t(i)];
        experiment::Config c = job.preset->config;
        c.seed = job.seed;
        c.control = controls;
        const fs::path dir = out / job.preset->name / fmt::format("seed{}", job.seed);
        auto t0 = std::chrono::steady_clock::now();
        try {
            fs::create_directories(dir.parent_path());
            const DirLock run_lock = claim_new_dir(dir, true, c.sweep.empty() ? "run" : "sweep");
            write_text(dir / "config.json", config_text(c));
            job.summary =
                c.sweep.empty() ? run_experiment(c, dir, nullptr, true, plot) : run_sweep(c, dir, false, true, plot);
        } catch (const std::exception& e) {
            job.error = e.what();
        }
        job.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::lock_guard<std::mutex> lock(print);
        fmt::print(stderr, "occam reproduce: {} seed {} {} ({:.1f} s)\n", job.preset->name, job.seed,
                   job.error.empty() ? "done" : "FAILED: " + printable(job.error), job.seconds);
    });

    // The table: one row per preset and target metric.
    std::string md = "| preset | metric | target | median | per seed (" + args["seeds"].as<std::string>() +
                     ") | ok |\n|---|---|---|---|---|---|\n";
    json results = json::array();
    bool all_ok = true;
    auto jobs_of = [&](const experiment::Preset& p) {
        std::vector<const Job*> mine;
        for (const Job& j : jobs)
            if (j.preset == &p) mine.push_back(&j);
        return mine;
    };
    /// The target's value in each seed's summary (or its control's): "error" for a failed run,
    /// the missing key for a metric the summary does not hold (a failure, never skipped).
    struct Row {
        std::vector<double> values;
        std::string per_seed;
        bool complete = true;
    };
    auto evaluate = [&](const experiment::Preset& p, const experiment::Target& t, bool of_control) {
        Row r;
        for (const Job* j : jobs_of(p)) {
            std::string cell;
            if (!j->error.empty()) {
                cell = "error";
            } else {
                try {
                    const double v = metric_value(of_control ? control_view(j->summary) : j->summary, t.metric, t.op == ">=");
                    r.values.push_back(v);
                    cell = fmt::format("{:.3f}", v);
                } catch (const std::exception& e) {
                    cell = "missing";
                    fmt::print(stderr, "occam reproduce: {} seed {}: {}\n", p.name, j->seed, e.what());
                }
            }
            if (cell == "error" || cell == "missing") r.complete = false;
            r.per_seed += (r.per_seed.empty() ? "" : ", ") + cell;
        }
        return r;
    };
    for (const auto& p : chosen) {
        for (const auto& t : p.targets) {
            if (!controls && needs_control(t)) {
                md += fmt::format("| {} | {} | {} {} | | | skipped (--no-control) |\n", p.name, t.metric, t.op, t.value);
                continue;
            }
            const Row r = evaluate(p, t, false);
            const double med = median(r.values);
            const bool ok = r.complete && meets(t, med);
            all_ok = all_ok && ok;
            md += fmt::format("| {} | {} | {} {} | {:.3f} | {} | {} |\n", p.name, t.metric, t.op, t.value, med,
                              r.per_seed, ok ? "yes" : "**no**");
            results.push_back({{"preset", p.name},
                               {"metric", t.metric},
                               {"op", t.op},
                               {"target", t.value},
                               {"median", med},
                               {"values", r.values},
                               {"ok", ok}});
        }
    }
    if (controls) {
        // The controls: how much worse the learner generalises the functions found without its
        // term, and which of the preset's own targets the control meets anyway (those results
        // the meta-learner's own bias reproduces without the learner).
        md += "\nControls: each run again without the learner's term (--mse-weight 0). Ratio: the learner's test "
              "MSE on the control's function / on the experiment's (median over seeds; > 1: the learner chose the "
              "experiment's function). Targets met by the control: the preset's own targets evaluated on the "
              "control.\n\n| preset | test-MSE ratio per function | targets the control meets |\n|---|---|---|\n";
        json control_results = json::array();
        for (const auto& p : chosen) {
            // A sweep's runs each have their control: "RUN: f1 ..., f2 ...; RUN: ...".
            std::vector<std::string> runs = {""};
            for (const Job* j : jobs_of(p))
                if (j->error.empty() && j->summary.contains("order")) {
                    runs.clear();
                    for (const auto& name : j->summary["order"]) runs.push_back(name.get<std::string>() + ":");
                    break;
                }
            std::string ratios;
            json per_function = json::object();
            for (const std::string& run : runs) {
                std::string line;
                for (int k = 1;; ++k) {
                    const std::string metric = fmt::format("{}f{}.control_mse_ratio", run, k);
                    Row r;
                    for (const Job* j : jobs_of(p)) try {
                            if (j->error.empty()) r.values.push_back(metric_value(j->summary, metric, true));
                        } catch (const MissingMetric&) {
                        }
                    if (r.values.empty()) break;
                    const double med = median(r.values);
                    line += fmt::format("{}f{} {:.3g}", line.empty() ? "" : ", ", k, med);
                    per_function[run.empty() ? "run" : run.substr(0, run.size() - 1)].push_back(med);
                }
                if (!line.empty()) ratios += (ratios.empty() ? "" : "; ") + run + (run.empty() ? "" : " ") + line;
            }
            std::string met;
            json met_list = json::array();
            int own = 0, met_count = 0;
            for (const auto& t : p.targets) {
                if (needs_control(t)) continue;
                ++own;
                const Row r = evaluate(p, t, true);
                if (r.complete && meets(t, median(r.values))) {
                    ++met_count;
                    met += (met.empty() ? "" : ", ") + t.metric;
                    met_list.push_back(t.metric);
                }
            }
            md += fmt::format("| {} | {} | {}/{}{} |\n", p.name, ratios.empty() ? "-" : ratios, met_count, own,
                              met.empty() ? "" : " (" + met + ")");
            control_results.push_back({{"preset", p.name}, {"control_mse_ratio", per_function}, {"targets_met", met_list},
                                       {"targets", own}});
        }
        write_text(out / "controls.json", control_results.dump(2) + "\n");
    }
    double total = 0;
    for (const Job& j : jobs) total += j.seconds;
    md += fmt::format("\n{} runs, {:.1f} s of run time, {} threads.\n", jobs.size(), total, threads);
    write_text(out / "RESULTS.md", md);
    write_text(out / "results.json", results.dump(2) + "\n");
    fmt::print("{}", md);
    fmt::print("written: {}\n", (out / "RESULTS.md").string());
    return all_ok ? 0 : 1;
}

}  // namespace occam::cli
