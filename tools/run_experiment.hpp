// One experiment, start to finish, into a run directory: shared by `occam run` and
// `occam reproduce`.
#pragma once

#include <nlohmann/json.hpp>

#include "experiment/config.hpp"
#include "run_files.hpp"

namespace occam::cli {

/// config.json's text: the resolved settings plus the version that wrote them.
std::string config_text(const experiment::Config& c);

/// Meta-trains (from `resume_from` if given), writes log.csv, checkpoints, probe.csv,
/// summary.json and, with `plot`, the figures. Returns the summary.
nlohmann::json run_experiment(const experiment::Config& c, const fs::path& dir, const Checkpoint* resume_from,
                              bool quiet, bool plot);

}  // namespace occam::cli
