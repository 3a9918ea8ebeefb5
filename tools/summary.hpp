// summary.json from probe.csv: the analysis of each meta-learned function (label statistics,
// linear fit, spherical-harmonic energies on the sphere, overlaps between functions).
#pragma once

#include <nlohmann/json.hpp>

#include "experiment/config.hpp"
#include "run_files.hpp"

namespace occam::cli {

/// Analyses every f column of the probe table. `inputs` is the run's --inputs spec.
nlohmann::json analyse_probe(const ProbeTable& probe, const experiment::Config& config);

/// The names f1, f2, ... present in the table, in order.
std::vector<std::string> function_names(const ProbeTable& probe);

/// One line per function for the terminal.
std::string describe_summary(const nlohmann::json& summary);

}  // namespace occam::cli
