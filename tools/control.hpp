// A control run: the same experiment without the learner's term (--mse-weight 0), so the
// meta-learner follows only its own bias under the same divergence and orthogonality. Where the
// learner's test MSE on the control's functions is far worse than on the experiment's, the
// learner, not the meta-learner, chose the function.
#pragma once

#include <nlohmann/json.hpp>

#include "experiment/config.hpp"

namespace occam::cli {

/// The control's settings: the experiment's, with the learner's term removed.
experiment::Config control_config(const experiment::Config& c);

/// Adds the control's summary to the experiment's: summary["control"] (the control's own
/// summary) and, per function k, "control_mse_ratio" = the learner's test MSE on the control's
/// f_k / on the experiment's f_k (> 1: the experiment's function is easier for the learner).
void merge_control(nlohmann::json& summary, const nlohmann::json& control);

/// The control's side of a summary, in the same shape: a run's summary["control"], or a sweep
/// whose runs are each replaced by their control. Throws when the summary has no control.
nlohmann::json control_view(const nlohmann::json& summary);

/// One line per function: the control's label statistics and the test-MSE ratio.
std::string describe_control(const nlohmann::json& summary);

}  // namespace occam::cli
