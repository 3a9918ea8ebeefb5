#include "sweep.hpp"

#include <fmt/core.h>

#include <mutex>

#include "experiment/meta_learning.hpp"
#include "experiment/thread_pool.hpp"
#include "mpi.hpp"
#include "cli.hpp"
#include "plot.hpp"
#include "run_dir.hpp"
#include "run_experiment.hpp"
#include "summary.hpp"

namespace occam::cli {

using nlohmann::json;

std::pair<std::string, std::vector<std::string>> parse_sweep(const std::string& sweep) {
    const auto eq = sweep.find('=');
    if (eq == std::string::npos || eq == 0)
        throw std::invalid_argument("--sweep must be SETTING=V1,V2,... (e.g. meta_depth=0,1,2), got '" + sweep + "'");
    std::vector<std::string> values = experiment::split_list(sweep.substr(eq + 1));
    if (values.empty()) throw std::invalid_argument("--sweep " + sweep + " lists no values");
    return {sweep.substr(0, eq), values};
}

std::vector<std::pair<std::string, experiment::Config>> sweep_runs(const experiment::Config& c) {
    const auto [field, values] = parse_sweep(c.sweep);
    std::vector<std::pair<std::string, experiment::Config>> out;
    for (const std::string& v : values) {
        experiment::Config sub = with_setting(c, field, v);
        sub.sweep.clear();
        experiment::validate(sub);
        // The value becomes a directory name inside --out: encoded, so '/' or '..' cannot lead
        // out of it, and distinct values give distinct names.
        const std::string name = field + "=" + safe_file_name(v);
        if (name.size() > 255) throw std::invalid_argument("--sweep: the value '" + v + "' is too long for a directory name");
        for (const auto& [other, unused] : out)
            if (other == name) throw std::invalid_argument("--sweep lists " + field + "=" + v + " twice");
        out.emplace_back(name, sub);
    }
    return out;
}

json run_sweep(const experiment::Config& c, const fs::path& dir, bool resume, bool quiet, bool plot,
               bool across_processes) {
    const auto runs = sweep_runs(c);
    std::vector<json> summaries(runs.size());
    std::vector<std::string> errors(runs.size());
    const int ranks = across_processes ? mpi::size() : 1, me = across_processes ? mpi::rank() : 0;
    std::vector<int> mine;  // this process's runs
    for (int i = me; i < int(runs.size()); i += ranks) mine.push_back(i);
    const int threads = std::max(1, std::min<int>(c.threads, int(mine.size())));
    std::mutex print;
    // Every run is finished (or fails) on its own: one failed run does not stop the others.
    experiment::parallel_for(int(mine.size()), threads, [&](int m) {
        const int i = mine[std::size_t(m)];
        const auto& [name, sub] = runs[std::size_t(i)];
        const fs::path d = dir / name;
        try {
            // A finished run is reused only if it was made with this sweep's settings; one
            // killed during its control has a summary.json without the control's part and goes on.
            if (resume && fs::exists(d / "config.json") && read_json(d / "config.json") != json::parse(config_text(sub)))
                throw std::runtime_error((d / "config.json").string() +
                                         " does not match the sweep's config.json (edited?); cannot resume");
            if (resume)
                if (auto finished = finished_summary(sub, d)) {
                    summaries[std::size_t(i)] = std::move(*finished);
                    return;
                }
            Checkpoint ckpt;
            const bool from_checkpoint = resume && fs::exists(d / "checkpoint.json");
            // A sweep owns its sub-directories (it replaces what it made), never a foreign one.
            const DirLock lock = from_checkpoint ? claim_existing_dir(d, "run") : claim_new_dir(d, true, "run");
            if (from_checkpoint) {
                ckpt = read_checkpoint(d / "checkpoint.json");
                check_resumable(ckpt, sub);
            }
            write_text(d / "config.json", config_text(sub));
            // Several runs at once would garble the progress lines: one line per run instead.
            summaries[std::size_t(i)] =
                run_experiment(sub, d, from_checkpoint ? &ckpt : nullptr, quiet || threads > 1, plot);
        } catch (const std::exception& e) {
            errors[std::size_t(i)] = e.what();
        }
        if (!quiet) {
            std::lock_guard<std::mutex> lock(print);
            fmt::print(stderr, "occam run: sweep {} {}\n", name,
                       errors[std::size_t(i)].empty() ? "done" : "FAILED: " + printable(errors[std::size_t(i)]));
        }
    });
    if (ranks > 1) {
        // Which runs failed, then each failure's message from its process; process 0 reads the
        // others' finished runs from their directories.
        std::vector<double> failed;
        for (int i : mine) failed.push_back(errors[std::size_t(i)].empty() ? 0 : 1);
        const std::vector<double> all = mpi::all_gather(failed);
        std::size_t at = 0;
        std::vector<bool> run_failed(runs.size(), false);
        for (int r = 0; r < ranks; ++r)
            for (std::size_t i = std::size_t(r); i < runs.size(); i += std::size_t(ranks)) run_failed[i] = all[at++] != 0;
        for (std::size_t i = 0; i < runs.size(); ++i)
            if (run_failed[i]) errors[i] = mpi::broadcast(errors[i], int(i % std::size_t(ranks)));
        if (me > 0) return nullptr;
        for (std::size_t i = 0; i < runs.size(); ++i)
            if (i % std::size_t(ranks) != 0 && !run_failed[i]) {
                auto finished = finished_summary(runs[i].second, dir / runs[i].first);
                if (!finished) throw std::runtime_error("sweep run " + runs[i].first + " reported done but has no whole summary.json");
                summaries[i] = std::move(*finished);
            }
    }
    for (std::size_t i = 0; i < runs.size(); ++i)
        if (!errors[i].empty()) throw std::runtime_error("sweep run " + runs[i].first + ": " + errors[i]);

    json combined = {{"sweep", parse_sweep(c.sweep).first}, {"order", json::array()}, {"runs", json::object()}};
    for (std::size_t i = 0; i < runs.size(); ++i) {
        combined["order"].push_back(runs[i].first);
        combined["runs"][runs[i].first] = summaries[i];
    }
    write_text(dir / "summary.json", combined.dump(2) + "\n");
    if (plot) draw_run_figures(dir, quiet, "occam run", plot_sweep);
    return combined;
}

std::string describe_sweep(const json& summary) {
    std::string out;
    for (const auto& name : summary["order"])
        out += "[" + name.get<std::string>() + "]\n" + describe_summary(summary["runs"][name.get<std::string>()]);
    return out;
}

}  // namespace occam::cli
