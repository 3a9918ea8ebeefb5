// summary.json from probe.csv: the analysis of each meta-learned function (label statistics,
// linear fit, spherical-harmonic energies on the sphere, Legendre energies of functions of an
// interaural phase difference, overlaps between functions).
#pragma once

#include <nlohmann/json.hpp>

#include "experiment/config.hpp"
#include "run_files.hpp"

namespace occam::cli {

/// Analyses every f column of the probe table. `inputs` is the run's --inputs spec.
nlohmann::json analyse_probe(const ProbeTable& probe, const experiment::Config& config);

/// The names f1, f2, ... present in the table, in order.
std::vector<std::string> function_names(const ProbeTable& probe);

/// For ipd inputs, each function's test MSE over its label variance on the probe set
/// ("normalised_test_error": 1 is no better than predicting the mean), where the summary holds
/// both; other inputs are left as they are. Called once test_mse is known (a run's end, and
/// occam analyse after it merges the old summary).
void add_normalised_test_errors(nlohmann::json& summary, const experiment::Config& config);

/// One line per function for the terminal.
std::string describe_summary(const nlohmann::json& summary);

}  // namespace occam::cli
