// occam reproduce: every preset for several seeds, the medians against each preset's target,
// written to RESULTS.md (the table the README shows) and results.json.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <sstream>
#include <thread>

#include "cli.hpp"
#include "experiment/meta_learning.hpp"
#include "experiment/presets.hpp"
#include "experiment/thread_pool.hpp"
#include "run_experiment.hpp"
#include "sweep.hpp"

namespace occam::cli {

using nlohmann::json;

namespace {

/// One function's named number from summary.json.
double function_metric(const json& f, const std::string& what) {
    if (what == "linear_r2") return f["linear_fit"]["r2"].get<double>();
    if (what == "label_std") return f["label_std"].get<double>();
    if (what == "test_mse") return f["test_mse"].get<double>();
    if (what == "dominant_input") return f["dominant_input"].get<double>();
    if (what == "dominant_input_share") return f["dominant_input_share"].get<double>();
    if (what == "group_mean_r2") return f["group_mean_r2"].get<double>();
    if (what == "nonlinear_fraction") return f["decomposition"]["nonlinear"].get<double>();
    if (what == "mse_ratio") return f["test_mse"].get<double>() / f["neglected_test_mse"].get<double>();
    if (what.size() == 14 && what.rfind("degree", 0) == 0 && what.substr(7) == "_energy")
        return f["sphere_degree_energy"].at(std::size_t(what[6] - '0')).get<double>();
    throw std::runtime_error("unknown metric '" + what + "'");
}

/// A metric of a run: "max_abs_correlation"; "fK.X" for function K; "fA-fB.X" over functions
/// A..B, the worst one for the target (the minimum for >=, the maximum for <=); "P/Q" the
/// ratio of two such metrics, the denominator taken at its largest; "RUN:M" metric M of one
/// run of a sweep (RUN as in its sub-directory, e.g. meta_depth=2).
double metric_value(const json& summary, const std::string& metric, bool at_least) {
    if (auto slash = metric.find('/'); slash != std::string::npos)
        return metric_value(summary, metric.substr(0, slash), at_least) /
               metric_value(summary, metric.substr(slash + 1), false);
    if (auto colon = metric.find(':'); colon != std::string::npos) {
        const std::string run = metric.substr(0, colon);
        if (!summary.contains("runs") || !summary["runs"].contains(run))
            throw std::runtime_error("summary has no sweep run '" + run + "'");
        return metric_value(summary["runs"][run], metric.substr(colon + 1), at_least);
    }
    if (metric == "max_abs_correlation") {
        double worst = 0;
        const auto& c = summary["correlations"];
        for (std::size_t i = 0; i < c.size(); ++i)
            for (std::size_t j = 0; j < c.size(); ++j)
                if (i != j) worst = std::max(worst, std::abs(c[i][j].get<double>()));
        return worst;
    }
    const auto dot = metric.find('.');
    const std::string range = metric.substr(0, dot), what = metric.substr(dot + 1);
    const auto dash = range.find('-');
    const int a = std::stoi(range.substr(1, dash == std::string::npos ? std::string::npos : dash - 1));
    const int b = dash == std::string::npos ? a : std::stoi(range.substr(dash + 2));
    const auto& fs = summary["functions"];
    if (b > int(fs.size())) throw std::runtime_error("summary has no function f" + std::to_string(b));
    double out = function_metric(fs[std::size_t(a - 1)], what);
    for (int k = a + 1; k <= b; ++k) {
        const double v = function_metric(fs[std::size_t(k - 1)], what);
        out = at_least ? std::min(out, v) : std::max(out, v);
    }
    return out;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int reproduce(int argc, char** argv) {
    cxxopts::Options options(argv[0],
                             "Runs presets for several seeds (in parallel threads; every run is bit-identical to a\n"
                             "single `occam run`), compares the median of each target metric with the preset's\n"
                             "target, and writes OUT/RESULTS.md and OUT/results.json. Exit status 1 if a target is\n"
                             "missed.");
    options.add_options()("presets", "Comma-separated presets (default: all)", cxxopts::value<std::string>())(
        "seeds", "Comma-separated seeds", cxxopts::value<std::string>()->default_value("1,2,3"))(
        "out", "Output directory", cxxopts::value<std::string>()->default_value("runs/reproduce"))(
        "threads", "Runs at once",
        cxxopts::value<int>()->default_value(std::to_string(std::max(1u, std::thread::hardware_concurrency()))))(
        "force", "Overwrite a non-empty output directory")("no-plot", "Do not draw figures");
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;

    std::vector<experiment::Preset> chosen;
    if (args.count("presets")) {
        for (const auto& name : experiment::split_list(args["presets"].as<std::string>()))
            chosen.push_back(experiment::find_preset(name));
    } else {
        chosen = experiment::presets();
    }
    std::vector<std::uint64_t> seeds;
    for (const auto& s : experiment::split_list(args["seeds"].as<std::string>())) {
        try {
            seeds.push_back(std::stoull(s));
        } catch (const std::exception&) {
            throw cxxopts::exceptions::exception("--seeds must be comma-separated integers (got '" + s + "')");
        }
    }
    if (seeds.empty()) throw cxxopts::exceptions::exception("--seeds is empty");
    const fs::path out = args["out"].as<std::string>();
    prepare_run_dir(out, args.count("force") > 0);
    const int threads = std::max(1, args["threads"].as<int>());
    const bool plot = args.count("no-plot") == 0;

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
        const fs::path dir = out / job.preset->name / fmt::format("seed{}", job.seed);
        auto t0 = std::chrono::steady_clock::now();
        try {
            fs::create_directories(dir);
            write_text(dir / "config.json", config_text(c));
            job.summary =
                c.sweep.empty() ? run_experiment(c, dir, nullptr, true, plot) : run_sweep(c, dir, false, true, plot);
        } catch (const std::exception& e) {
            job.error = e.what();
        }
        job.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::lock_guard<std::mutex> lock(print);
        fmt::print(stderr, "occam reproduce: {} seed {} {} ({:.1f} s)\n", job.preset->name, job.seed,
                   job.error.empty() ? "done" : "FAILED: " + job.error, job.seconds);
    });

    // The table: one row per preset and target metric.
    std::string md = "| preset | metric | target | median | per seed (" + args["seeds"].as<std::string>() +
                     ") | ok |\n|---|---|---|---|---|---|\n";
    json results = json::array();
    bool all_ok = true;
    for (const auto& p : chosen) {
        for (const auto& t : p.targets) {
            std::vector<double> values;
            std::string per_seed;
            bool failed_run = false;
            for (const Job& j : jobs) {
                if (j.preset != &p) continue;
                if (!j.error.empty()) {
                    failed_run = true;
                    per_seed += (per_seed.empty() ? "" : ", ") + std::string("error");
                    continue;
                }
                const double v = metric_value(j.summary, t.metric, t.op == ">=");
                values.push_back(v);
                per_seed += fmt::format("{}{:.3f}", per_seed.empty() ? "" : ", ", v);
            }
            const double med = values.empty() ? std::nan("") : median(values);
            const bool ok = !failed_run && (t.op == ">=" ? med >= t.value : med <= t.value);
            all_ok = all_ok && ok;
            md += fmt::format("| {} | {} | {} {} | {:.3f} | {} | {} |\n", p.name, t.metric, t.op, t.value, med,
                              per_seed, ok ? "yes" : "**no**");
            results.push_back({{"preset", p.name},
                               {"metric", t.metric},
                               {"op", t.op},
                               {"target", t.value},
                               {"median", med},
                               {"values", values},
                               {"ok", ok}});
        }
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
