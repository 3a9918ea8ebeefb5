// A preset's targets read off a run's summary.json: the metric language ("f1.degree1_energy",
// "f1-f3.linear_r2", "f3.test_mse/f1-f2.test_mse", "meta_depth=2:f4-f6.label_std",
// "control:f1.degree1_energy"), the median over seeds and the pass/fail check of `occam reproduce`.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "experiment/presets.hpp"

namespace occam::cli {

/// A metric that a summary does not hold (a mistyped name, a function the run did not make,
/// a control that was not run): its message names the metric and what is missing.
class MissingMetric : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A metric of a run: "max_abs_correlation"; "fK.X" for function K; "fA-fB.X" over functions
/// A..B, the worst one for the target (the minimum for `at_least`, else the maximum); "P/Q" the
/// ratio of two such metrics, the denominator taken at its largest; "RUN:M" metric M of one run
/// of a sweep (RUN as in its sub-directory, e.g. meta_depth=2) or of the run's control
/// (RUN = control). X is one of linear_r2, label_std, test_mse, dominant_input,
/// dominant_input_share, group_mean_r2, nonlinear_fraction, mse_ratio, control_mse_ratio,
/// degreeL_energy (L = 0..4, spherical harmonics), and for ipd inputs odd_share, even_share,
/// normalised_test_error and legendreL_energy (L = 0..6, of the centred function). Throws
/// MissingMetric when the summary does not hold it.
double metric_value(const nlohmann::json& summary, const std::string& metric, bool at_least);

/// Checks a metric's spelling without a summary (the grammar above); throws MissingMetric
/// naming an unknown metric or a malformed function range.
void check_metric_name(const std::string& metric);

/// Whether `value` meets the target (op ">=" or "<="); NaN never does.
bool meets(const experiment::Target& t, double value);

/// Whether a target reads the run's control (its metric needs `--control`).
bool needs_control(const experiment::Target& t);

double median(std::vector<double> v);

}  // namespace occam::cli
