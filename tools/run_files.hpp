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

/// probe.csv: header x0..x{d-1}, then named columns (f1, g1, ...). Image inputs write each image
/// as its position in its file and its class (header index,class) instead of its pixels.
struct ProbeTable {
    Eigen::MatrixXd x;
    std::vector<std::string> x_names;  ///< the x columns' names: empty for x0, x1, ...; images: index, class
    std::vector<std::string> names;
    Eigen::MatrixXd columns;  ///< one column per name
    Eigen::VectorXd column(const std::string& name) const;
};
void write_probe(const fs::path& path, const ProbeTable& t);
ProbeTable read_probe(const fs::path& path);
/// Throws unless `t` is the probe table a run with config `c` writes: inputs x0..x{d-1} (d of
/// the run's inputs; index, class for images), then f1, g1 (, n1 in the students game), ... for
/// every function, and one row per probe point. Every reader of probe.csv checks this before using the table.
void check_probe(const ProbeTable& t, const experiment::Config& c, const fs::path& path);

/// Throws unless summary.json's text `s` lists `functions` functions f1, f2, ... with their
/// label statistics, as the analysis writes them (what plot and check read).
void check_summary_functions(const nlohmann::json& s, int functions, const fs::path& path);

/// log.csv: one row per meta-step.
extern const char* const kLogHeader;
/// The header and the first `rows` rows of log.csv, checked: every row complete and the steps
/// consecutive from 0. Throws naming the line when the log cannot back a resume from step `rows`.
std::string log_prefix(const fs::path& path, int rows);

/// What a resume continues from, and what it depends on: the settings it was made with and,
/// for file: inputs, a hash of the data file. checkpoint.json also holds a checksum of all of
/// it, so an edited or damaged checkpoint is refused instead of resumed.
struct Checkpoint {
    std::vector<experiment::FrozenFunction> frozen;  ///< finished functions
    int step = 0;                                    ///< within the current function
    std::vector<Eigen::MatrixXd> params;             ///< the current function's meta-learner
    ad::optim::OptimizerState optimizer;
    nlohmann::json config;                           ///< the run's settings (config.json's, less threads)
    std::string inputs_hash;                         ///< inputs_fingerprint() when it was written
};
void write_checkpoint(const fs::path& path, const Checkpoint& c);
/// Reads and verifies the checksum; throws naming the file on any damage.
Checkpoint read_checkpoint(const fs::path& path);

/// The checksum of a checkpoint's JSON (everything but the "checksum" key itself).
std::string checkpoint_checksum(const nlohmann::json& without_checksum);

/// A hash of the data files the inputs read (file:'s file, idx:'s images and labels, the npm
/// package's digit files of the chosen classes; "" for generated inputs): a resume refuses data
/// that changed since the run started.
std::string inputs_fingerprint(const experiment::Config& c);
/// The settings a checkpoint records: config.json's, less what a resume may change freely.
nlohmann::json checkpoint_config(const experiment::Config& c);

/// Throws, naming the difference, unless the run configured by `c` (config.json, plus a new
/// --steps) can continue from `ckpt` and give exactly the result of a fresh run with `c`: every
/// setting as recorded (threads excepted), the same input data, the step within range, and a
/// new --steps only while the first function is still training and not below its step.
void check_resumable(const Checkpoint& ckpt, const experiment::Config& c);

}  // namespace occam::cli
