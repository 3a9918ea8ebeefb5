// A sweep: one run per value of one setting (e.g. the meta-learner's depth), each in its own
// sub-directory named SETTING=VALUE, with a combined summary.json and one figure putting the
// runs side by side. Independent runs, so --threads runs them at once with identical results.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "experiment/config.hpp"
#include "run_files.hpp"

namespace occam::cli {

/// "FIELD=V1,V2,..." split into the field and its values (values may not contain commas).
std::pair<std::string, std::vector<std::string>> parse_sweep(const std::string& sweep);

/// The configurations of a sweep's runs, validated, with their sub-directory names.
std::vector<std::pair<std::string, experiment::Config>> sweep_runs(const experiment::Config& c);

/// Runs (or, with `resume`, finishes) every run of the sweep into DIR/FIELD=VALUE and writes
/// DIR/summary.json: {"sweep": FIELD, "runs": {"FIELD=VALUE": that run's summary, ...}}.
/// With `across_processes` every process of the mpirun calls it and takes the runs i with
/// i % processes == its rank; process 0 then writes the combined summary and returns it, the
/// others return null.
nlohmann::json run_sweep(const experiment::Config& c, const fs::path& dir, bool resume, bool quiet, bool plot,
                         bool across_processes = false);

/// Prints a sweep's combined summary, one block per run.
std::string describe_sweep(const nlohmann::json& summary);

}  // namespace occam::cli
