// What this file teaches: what occam needs from a learner. It is trained on (inputs, labels)
// and predicts at test inputs, all as Vars, so the meta-gradient (how the test predictions
// change with the training labels) flows back through the whole training procedure.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "../autodiff/autodiff.hpp"

namespace occam::learners {

/// A learner failed in a way the user must hear about (a singular system, non-finite numbers).
/// The message names the learner and its settings.
class LearnerError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The learner interface. Inputs are samples x features (one sample per row); labels are
/// samples x 1.
class Learner {
public:
    virtual ~Learner() = default;
    /// One line naming the learner and its settings, used in messages, logs and config.json.
    virtual std::string describe() const = 0;
    /// Called once per meta-step before fitting, with the step's random stream: a learner with
    /// per-task randomness (redrawn features, masks, initial weights) draws it here.
    virtual void new_task(ad::Rng& /*rng*/) {}
    /// Trains on (train_x, train_y) and returns the predictions at test_x (test samples x 1).
    virtual ad::Var fit_predict(const ad::Var& train_x, const ad::Var& train_y, const ad::Var& test_x) = 0;
    /// True if, for a fixed task, the predictions are a linear map H of the labels (ridge and
    /// kernel regression). Then fit_predict also takes several label columns and predicts each,
    /// and fit_predict(x, I, x_test) returns H itself: evolution strategies build it once per
    /// generation and score every member with one product H y.
    virtual bool linear_in_labels() const { return false; }
    /// The input dimension this learner expects, or 0 if any.
    virtual int input_dim() const { return 0; }
};

/// Parameters and optimiser state as one column: what a checkpointed (or fused) inner step
/// takes and returns as a single node.
inline ad::Var pack_columns(const std::vector<ad::Var>& p, const std::vector<ad::Var>& state) {
    std::vector<ad::Var> cols;
    cols.reserve(p.size() + state.size());
    for (const ad::Var& v : p) cols.push_back(ad::reshape(v, int(v.size()), 1));
    for (const ad::Var& v : state) cols.push_back(ad::reshape(v, int(v.size()), 1));
    return ad::vcat(cols);
}

namespace detail {
/// Runs a solve and rethrows its failure with the learner's name and settings.
template <class F>
ad::Var guarded(const Learner& who, F&& body) {
    try {
        return body();
    } catch (const ad::SolveError& e) {
        throw LearnerError(who.describe() + ": " + e.what() +
                           " (try a larger ridge parameter or more distinct training points)");
    }
}
}  // namespace detail

}  // namespace occam::learners
