// One experiment, start to finish, into a run directory: shared by `occam run` and
// `occam reproduce`.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "experiment/config.hpp"
#include "run_files.hpp"

namespace occam::cli {

/// config.json's text: the resolved settings plus the version that wrote them.
std::string config_text(const experiment::Config& c);

/// Meta-trains (from `resume_from` if given), writes log.csv, checkpoints, probe.csv,
/// summary.json and, with `plot`, the figures. Returns the summary. With `split_population`
/// (process 0 of an mpirun, an evolution strategy), the population is scored by all the
/// processes, the others following in `occam run`.
nlohmann::json run_experiment(const experiment::Config& c, const fs::path& dir, const Checkpoint* resume_from,
                              bool quiet, bool plot, bool split_population = false);

/// The summary of the run (or sweep) that `dir` holds finished with exactly the settings `c`:
/// config.json equal to config_text(c), and summary.json whole, with the control's part when
/// c.control (a run killed during its control has written the experiment's part only).
/// nullopt for anything else, a damaged or missing file included.
std::optional<nlohmann::json> finished_summary(const experiment::Config& c, const fs::path& dir);

/// A run, continued where an interrupted one stopped: `occam reproduce` on a directory it
/// wrote before.
struct ContinuedRun {
    nlohmann::json summary;
    std::string how;  ///< "kept" (finished before), "continued" (from its checkpoints) or "ran"
};

/// Runs `c` (a run or a sweep) into `dir`, keeping what an earlier process with the same
/// settings left there: a finished run is read back, a started one goes on from its checkpoint
/// (its results are then bit-identical to an uninterrupted run's), anything else (other
/// settings, an unusable checkpoint, no directory) is run afresh. `dir` must be occam's or
/// absent; it is locked while in use.
ContinuedRun continue_run(const experiment::Config& c, const fs::path& dir, bool quiet, bool plot);

}  // namespace occam::cli
