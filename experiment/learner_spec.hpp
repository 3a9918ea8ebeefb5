// What this file teaches: naming a learner in one string, so a run can hold several of them
// (the chosen and the neglected student, or a cooperative team):
//   kernel                      the run's own --features/--ridge/--redraw-features settings
//   kernel:features=50,ridge=0.01,redraw=1
//   ridge:bias=1   arccos:ridge=0.1
#pragma once

#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "../learners/kernel.hpp"
#include "../learners/ridge.hpp"
#include "config.hpp"

namespace occam::experiment {

/// A learner's kind and its settings (defaults from the run's Config).
struct LearnerSpec {
    std::string kind;  ///< ridge | kernel | arccos
    int features_min = 20, features_max = 20;
    double ridge = 1e-3;
    bool bias = false;
    bool redraw = false;
};

/// Parses "KIND[:key=value,...]"; keys: features (K or MIN-MAX), ridge, bias, redraw.
inline LearnerSpec parse_learner_spec(const std::string& text, const Config& c) {
    LearnerSpec s;
    s.features_min = c.features_min;
    s.features_max = c.features_max;
    s.ridge = c.ridge;
    s.bias = c.bias;
    s.redraw = c.redraw_features;
    const auto colon = text.find(':');
    s.kind = text.substr(0, colon);
    if (s.kind != "ridge" && s.kind != "kernel" && s.kind != "arccos")
        throw std::invalid_argument("learner '" + text + "': the kind must be ridge, kernel or arccos");
    if (colon == std::string::npos) return s;
    std::stringstream rest(text.substr(colon + 1));
    std::string item;
    while (std::getline(rest, item, ',')) {
        const auto eq = item.find('=');
        const std::string key = item.substr(0, eq), value = eq == std::string::npos ? "" : item.substr(eq + 1);
        auto bad = [&] {
            return std::invalid_argument("learner '" + text + "': bad setting '" + item +
                                         "' (settings: features=K or MIN-MAX, ridge=X, bias=0|1, redraw=0|1)");
        };
        try {
            std::size_t used = 0;
            if (key == "features") {
                const auto dash = value.find('-');
                s.features_min = std::stoi(value.substr(0, dash), &used);
                s.features_max = dash == std::string::npos ? s.features_min : std::stoi(value.substr(dash + 1));
            } else if (key == "ridge") {
                s.ridge = std::stod(value, &used);
                if (used != value.size()) throw bad();
            } else if (key == "bias" && (value == "0" || value == "1")) {
                s.bias = value == "1";
            } else if (key == "redraw" && (value == "0" || value == "1")) {
                s.redraw = value == "1";
            } else {
                throw bad();
            }
        } catch (const std::invalid_argument&) {
            throw bad();
        } catch (const std::out_of_range&) {
            throw bad();
        }
    }
    return s;
}

/// Builds the learner; random features draw from `rng` (a stream of their own).
inline std::unique_ptr<learners::Learner> make_learner(const LearnerSpec& s, int input_dim, ad::Rng rng) {
    if (s.kind == "ridge") return std::make_unique<learners::Ridge>(s.ridge, s.bias);
    if (s.kind == "arccos") return std::make_unique<learners::ArcCosKernelRidge>(s.ridge);
    return std::make_unique<learners::RandomFeatureRidge>(input_dim, s.features_min, s.features_max, s.ridge,
                                                          s.redraw, rng);
}

}  // namespace occam::experiment
