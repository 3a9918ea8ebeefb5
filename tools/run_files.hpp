// The files of a run directory: config.json, log.csv, probe.csv, summary.json,
// checkpoint.json. Readers and writers live here so run, analyse and plot agree on formats.
#pragma once

#include <nlohmann/json.hpp>

#include <Eigen/Dense>
#include <filesystem>
#include <string>
#include <vector>

#include "autodiff/optim.hpp"
#include "experiment/config.hpp"
#include "experiment/meta_learning.hpp"

namespace occam::cli {

namespace fs = std::filesystem;

nlohmann::json to_json(const experiment::Config& c);
/// Reads a Config back; unknown keys are an error (a typo must not be ignored silently).
experiment::Config config_from_json(const nlohmann::json& j);

/// A copy of `c` with one setting, named as in config.json, set from text (a --sweep value).
/// Unknown settings and values that do not parse as the setting's type are errors.
experiment::Config with_setting(const experiment::Config& c, const std::string& field, const std::string& value);

nlohmann::json read_json(const fs::path& path);
/// Writes atomically (to a temporary file, then renamed), so an interrupted run never leaves a
/// half-written file behind.
void write_text(const fs::path& path, const std::string& text);

/// Makes `dir` ready for a new run: creates it, or refuses a non-empty one unless `force`.
void prepare_run_dir(const fs::path& dir, bool force);

/// probe.csv: header x0..x{d-1}, then named columns (f1, g1, ...).
struct ProbeTable {
    Eigen::MatrixXd x;
    std::vector<std::string> names;
    Eigen::MatrixXd columns;  ///< one column per name
    Eigen::VectorXd column(const std::string& name) const;
};
void write_probe(const fs::path& path, const ProbeTable& t);
ProbeTable read_probe(const fs::path& path);

struct Checkpoint {
    std::vector<experiment::FrozenFunction> frozen;  ///< finished functions
    int step = 0;                                    ///< within the current function
    std::vector<Eigen::MatrixXd> params;             ///< the current function's meta-learner
    ad::optim::OptimizerState optimizer;
};
void write_checkpoint(const fs::path& path, const Checkpoint& c);
Checkpoint read_checkpoint(const fs::path& path);

}  // namespace occam::cli
