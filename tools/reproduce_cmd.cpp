// occam reproduce: every preset for several seeds, the medians against each preset's target,
// written to RESULTS.md (the table the README shows) and results.json. It goes on where an
// earlier reproduce on the same directory stopped, and splits into shards for job arrays.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <thread>

#include "cli.hpp"
#include "control.hpp"
#include "experiment/meta_learning.hpp"
#include "experiment/presets.hpp"
#include "experiment/thread_pool.hpp"
#include "mpi.hpp"
#include "run_dir.hpp"
#include "run_experiment.hpp"
#include "targets.hpp"

namespace occam::cli {

using nlohmann::json;

namespace {

/// One preset and seed: its run directory OUT/PRESET/seedS and what became of it.
struct Job {
    const experiment::Preset* preset;
    std::uint64_t seed;
    json summary;
    double seconds = 0;
    std::string error;
    bool kept = false;  // finished by an earlier reproduce (or, collected, by any process)
};

fs::path run_dir(const fs::path& out, const Job& job) {
    return out / job.preset->name / fmt::format("seed{}", job.seed);
}

/// Where a failed run's error waits for --collect: beside the run directory, not in it (a run
/// directory that could not be claimed is not ours to write into).
fs::path error_file(const fs::path& out, const Job& job) {
    return out / job.preset->name / fmt::format("seed{}.error", job.seed);
}

/// A run another process made: its finished summary, or the error it left beside it, or
/// "not finished". Returns whether it finished.
bool collect_job(const fs::path& out, Job& job, const experiment::Config& c) {
    if (auto summary = finished_summary(c, run_dir(out, job))) {
        job.summary = std::move(*summary);
        return true;
    }
    std::ifstream in(error_file(out, job));
    const std::string why((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    job.error = why.empty() ? "not finished (run its shard, or occam reproduce --out " + out.string() + " with these flags)"
                            : "failed: " + why;
    return false;
}

/// --presets: every name once, each a preset.
std::vector<experiment::Preset> chosen_presets(const cxxopts::ParseResult& args) {
    if (!args.count("presets")) return experiment::presets();
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
    std::vector<experiment::Preset> chosen;
    for (const auto& name : names) chosen.push_back(experiment::find_preset(name));
    return chosen;
}

/// --shard I/N: 1 <= I <= N.
std::pair<int, int> parse_shard(const std::string& text) {
    const auto slash = text.find('/');
    if (slash == std::string::npos)
        throw cxxopts::exceptions::exception("--shard must be I/N, e.g. 1/4 (got '" + text + "')");
    int i = 0, n = 0;
    try {
        i = experiment::parse_integer<int>(text.substr(0, slash), "--shard");
        n = experiment::parse_integer<int>(text.substr(slash + 1), "--shard");
    } catch (const std::invalid_argument& e) {
        throw cxxopts::exceptions::exception(std::string(e.what()) + " (--shard is I/N, e.g. 1/4)");
    }
    if (n < 1 || i < 1 || i > n)
        throw cxxopts::exceptions::exception("--shard " + text + ": I must be from 1 to N, and N at least 1");
    return {i, n};
}

/// The per-preset table, the controls' table and the footer: OUT/RESULTS.md, results.json and
/// controls.json, and the table on stdout. Returns whether every target was met.
bool write_results(const fs::path& out, const std::vector<experiment::Preset>& chosen, const std::vector<Job>& jobs,
                   const std::string& seeds_text, bool controls, const std::string& footer) {
    // The table: one row per preset and target metric.
    std::string md = "| preset | metric | target | median | per seed (" + seeds_text + ") | ok |\n|---|---|---|---|---|---|\n";
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
    md += "\n" + footer + "\n";
    write_text(out / "RESULTS.md", md);
    write_text(out / "results.json", results.dump(2) + "\n");
    fmt::print("{}", md);
    fmt::print("written: {}\n", (out / "RESULTS.md").string());
    return all_ok;
}

}  // namespace

int reproduce(int argc, char** argv) {
    cxxopts::Options options(argv[0],
                             "Runs presets for several seeds (in parallel threads; every run is bit-identical to a\n"
                             "single `occam run`), compares the median of each target metric with the preset's\n"
                             "target, and writes OUT/RESULTS.md and OUT/results.json. Exit status 1 if a target is\n"
                             "missed. Every run also runs its control (the same run without the learner's term):\n"
                             "the table shows how much worse the learner generalises the control's functions, and\n"
                             "which targets the control meets without the learner.\n\n"
                             "Run again on the same --out, it goes on where it stopped: a run that finished with the\n"
                             "same settings is kept, one that was interrupted continues from its last checkpoint\n"
                             "(with the same results as an uninterrupted run), the others run. A finished run is\n"
                             "kept even if occam was rebuilt since: after changing the code, pass --force.\n\n"
                             "On several machines or a job array, give each process the same flags and its own\n"
                             "--shard I/N (they share OUT), then merge the finished runs into the table:\n"
                             "  occam reproduce --shard $((SLURM_ARRAY_TASK_ID + 1))/4 --out runs/reproduce\n"
                             "  occam reproduce --collect runs/reproduce");
    options.add_options()("presets", "Comma-separated presets (default: all)", cxxopts::value<std::string>())(
        "seeds", "Comma-separated seeds", cxxopts::value<std::string>()->default_value("1,2,3"))(
        "out", "Output directory", cxxopts::value<std::string>()->default_value("runs/reproduce"))(
        "threads", "Runs at once",
        cxxopts::value<int>()->default_value(std::to_string(
            std::clamp(int(std::thread::hardware_concurrency()), 1, experiment::kMaxThreads))))(
        "force", "Start over: empty an output directory occam made (a non-empty directory occam did not make is "
                 "refused)")(
        "shard", "Run only part I of N (1 <= I <= N) of the runs, in order presets x seeds, runs I, I+N, ...; "
                 "writes no table: --collect does, once every shard has finished",
        cxxopts::value<std::string>())(
        "collect", "Run nothing: write the table of the finished runs in DIR (made by shards or by an "
                   "interrupted reproduce); the same flags as the shards",
        cxxopts::value<std::string>())("no-plot", "Do not draw figures")(
        "no-control",
        "Skip the control runs (each preset again without the learner's term, --mse-weight 0; about doubles the "
        "time); targets that read the control are then skipped");
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;

    // Every list and count is checked whole before any run starts: "--seeds -1" is not seed
    // 2^64 - 1, and a seed or preset listed twice would run twice and count twice in a median.
    const std::vector<experiment::Preset> chosen = chosen_presets(args);
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
    const bool force = args.count("force") > 0;
    const bool collect = args.count("collect") > 0;
    const auto [shard, shards] = args.count("shard") ? parse_shard(args["shard"].as<std::string>()) : std::pair{1, 1};
    const bool sharded = args.count("shard") > 0;
    if (collect && (sharded || force || args.count("out")))
        throw cxxopts::exceptions::exception("--collect DIR runs nothing: it takes no --shard, --force or --out");
    const int ranks = mpi::size();
    if (ranks > 1 && (sharded || collect))
        throw cxxopts::exceptions::exception("--shard and --collect are for separate processes; under mpirun the "
                                             "processes share the runs by themselves");
    if (sharded && force)
        throw cxxopts::exceptions::exception("--shard with --force would delete the other shards' runs: empty OUT "
                                             "once, before starting the shards");
    const fs::path out = collect ? args["collect"].as<std::string>() : args["out"].as<std::string>();
    const bool plot = args.count("no-plot") == 0;
    const bool controls = args.count("no-control") == 0;

    std::vector<Job> jobs;
    for (const auto& p : chosen)
        for (auto s : seeds) jobs.push_back({&p, s, {}, 0, "", false});
    auto config_of = [&](const Job& job) {
        experiment::Config c = job.preset->config;
        c.seed = job.seed;
        c.control = controls;
        return c;
    };

    // The output directory. An earlier reproduce's is continued (its table goes: it would
    // describe runs about to be replaced); --force starts over; any other occam directory is not
    // ours to fill. Shards share it (a shared lock each; every run has its own exclusive lock);
    // --collect and an unsharded reproduce hold it alone.
    auto refuse_other_kinds = [&](bool half_made_marker_ok) {
        const std::string kind = occam_dir_kind(out);
        if (kind.empty())
            throw std::runtime_error(out.string() +
                                     " is not empty and occam did not make it (no .occam marker): choose another --out");
        if (kind != "reproduce" && !(half_made_marker_ok && kind == "unknown"))
            throw std::runtime_error(out.string() + " is an occam " + kind +
                                     " directory, not a reproduce directory: choose another --out");
    };
    DirLock out_lock;
    if (ranks > 1 && mpi::rank() > 0) {
        // The first process claims the directory (continued, emptied by --force, or new) and
        // shares it; the others join it. Each run directory is then one process's alone.
        mpi::barrier();
        out_lock = lock_dir_shared(out, "reproduce");
    } else if (collect) {
        out_lock = claim_existing_dir(out, "reproduce");
    } else if (sharded) {
        // Shards start together: each one may find OUT missing, empty, or with a marker another
        // shard has made but not yet written ("unknown").
        if (fs::exists(out) && !fs::is_directory(out)) throw std::runtime_error(out.string() + " is not a directory");
        fs::create_directories(out);
        if (!fs::is_empty(out)) refuse_other_kinds(true);
        out_lock = lock_dir_shared(out, "reproduce");
    } else if (!force && fs::is_directory(out) && !fs::is_empty(out) && is_occam_dir(out)) {
        refuse_other_kinds(false);
        out_lock = claim_existing_dir(out, "reproduce");
    } else {
        out_lock = claim_new_dir(out, force, "reproduce");
    }
    if (!collect && !sharded && mpi::rank() == 0)
        for (const char* table : {"RESULTS.md", "results.json", "controls.json"}) fs::remove(out / table);
    if (ranks > 1 && mpi::rank() == 0) {
        out_lock.share();
        mpi::barrier();
    }

    if (collect) {
        // Only what a process finished with exactly these settings counts.
        int missing = 0;
        for (Job& job : jobs) {
            job.kept = collect_job(out, job, config_of(job));
            if (job.kept) continue;
            ++missing;
            fmt::print(stderr, "occam reproduce: {} seed {}: {}\n", job.preset->name, job.seed, printable(job.error));
        }
        const std::string footer = fmt::format("{} runs collected from {}{}.", jobs.size(), out.string(),
                                               missing ? fmt::format(", {} of them not finished", missing) : "");
        const bool ok = write_results(out, chosen, jobs, args["seeds"].as<std::string>(), controls, footer);
        return ok && missing == 0 ? 0 : 1;
    }

    // This shard's jobs, or this process's of an mpirun: the same split, by index.
    const int part = sharded ? shard - 1 : mpi::rank(), parts = sharded ? shards : ranks;
    std::vector<int> mine;
    for (int i = part; i < int(jobs.size()); i += parts) mine.push_back(i);
    std::mutex print;
    // A failed run is recorded in its row of the table (and beside its directory, for
    // --collect); the other runs go on.
    experiment::parallel_for(int(mine.size()), threads, [&](int m) {
        Job& job = jobs[std::size_t(mine[std::size_t(m)])];
        const experiment::Config c = config_of(job);
        const fs::path dir = run_dir(out, job);
        auto t0 = std::chrono::steady_clock::now();
        std::string how;
        try {
            fs::create_directories(dir.parent_path());
            fs::remove(error_file(out, job));
            ContinuedRun r = continue_run(c, dir, true, plot);
            job.summary = std::move(r.summary);
            job.kept = r.how == "kept";
            how = r.how;
        } catch (const std::exception& e) {
            job.error = e.what();
            try {
                write_text(error_file(out, job), job.error);
            } catch (const std::exception&) {
                // the error is reported below and in the table all the same
            }
        }
        job.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::lock_guard<std::mutex> lock(print);
        fmt::print(stderr, "occam reproduce: {} seed {} {} ({:.1f} s)\n", job.preset->name, job.seed,
                   job.error.empty() ? printable(how) : "FAILED: " + printable(job.error), job.seconds);
    });

    if (ranks > 1) {
        // The first process writes the table: the others' run times and what they kept come
        // by MPI, their summaries and errors from their directories.
        std::vector<double> info;
        for (int i : mine) {
            info.push_back(i);
            info.push_back(jobs[std::size_t(i)].seconds);
            info.push_back(jobs[std::size_t(i)].kept);
        }
        const std::vector<double> all = mpi::all_gather(info);
        if (mpi::rank() > 0) return 0;  // its failures are in the table the first one writes
        std::vector<bool> own(jobs.size(), false);
        for (int i : mine) own[std::size_t(i)] = true;
        for (std::size_t k = 0; k + 2 < all.size(); k += 3) {
            Job& job = jobs[std::size_t(all[k])];
            job.seconds = all[k + 1];
            job.kept = all[k + 2] != 0;
        }
        mine.clear();
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            mine.push_back(int(i));
            if (!own[i] && !collect_job(out, jobs[i], config_of(jobs[i])))
                fmt::print(stderr, "occam reproduce: {} seed {}: {}\n", jobs[i].preset->name, jobs[i].seed,
                           printable(jobs[i].error));
        }
    }
    int kept = 0, failed = 0;
    double total = 0;
    for (int i : mine) {
        total += jobs[std::size_t(i)].seconds;
        kept += jobs[std::size_t(i)].kept;
        failed += !jobs[std::size_t(i)].error.empty();
    }
    if (sharded) {
        fmt::print("shard {}/{}: {} runs, {} failed, {:.1f} s of run time; when every shard has finished: occam "
                   "reproduce --collect {} (with the same --presets, --seeds, --no-control)\n",
                   shard, shards, mine.size(), failed, total, out.string());
        return failed ? 1 : 0;
    }
    const std::string footer =
        fmt::format("{} runs{}, {:.1f} s of run time, {} threads{}.", jobs.size(),
                    kept ? fmt::format(" ({} finished by an earlier reproduce and kept)", kept) : "", total, threads,
                    ranks > 1 ? fmt::format(" in each of {} MPI processes", ranks) : "");
    return write_results(out, chosen, jobs, args["seeds"].as<std::string>(), controls, footer) ? 0 : 1;
}

}  // namespace occam::cli
