// What this file teaches: each paper figure is a preset, a named Config with the sizes of the
// paper's notebooks (see the SPEC's experiment table) and the target it must reach.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "config.hpp"

namespace occam::experiment {

/// One acceptance check on a run's summary: metric op value, e.g. degree1_energy >= 0.97.
/// Metrics are read from summary.json by tools/reproduce (see metric_value there).
struct Target {
    std::string metric;
    std::string op;  ///< ">=" or "<="
    double value;
};

struct Preset {
    std::string name;
    std::string summary;  ///< one line for `occam presets`
    std::string target;   ///< what the run must show, in words
    Config config;
    std::vector<Target> targets;  ///< the same, as checks on the median over seeds
};

inline std::vector<Preset> presets() {
    std::vector<Preset> out;
    {
        Config c;
        c.preset = "fig2b-ridge";
        c.inputs = "disk";
        c.learner = "ridge";
        c.ridge = 1e-3;
        c.n_train = 6;
        c.n_test = 24;
        c.meta_hidden = 150;
        c.meta_depth = 2;
        c.meta_output = "cos";
        c.meta_optimizer = "adagrad";
        c.lr = 0.01;
        c.divergence = "sinkhorn";
        c.div_on = "split";  // S(z_train) + S(z_test)
        c.div_weight = 1.0;
        c.mse_weight = 1.0;
        c.steps = 1500;
        out.push_back({"fig2b-ridge", "Fig. 2B: ridge regression on the disk finds a linear labelling",
                       "linear-fit R^2 >= 0.98, label std >= 0.45", c,
                       {{"f1.linear_r2", ">=", 0.98}, {"f1.label_std", ">=", 0.45}}});
    }
    {
        Config c;
        c.preset = "fig2c-kernel";
        c.inputs = "sphere:3";
        c.learner = "kernel";
        c.features_min = c.features_max = 20;
        c.ridge = 1e-3;
        c.n_train = 20;
        c.n_test = 80;
        c.meta_hidden = 150;
        c.meta_depth = 2;
        c.meta_output = "cos";
        c.meta_optimizer = "adagrad";
        c.lr = 0.01;
        c.divergence = "sinkhorn";
        c.div_on = "all";
        c.div_weight = 1.0;
        c.mse_weight = 10.0;
        c.steps = 500;
        out.push_back({"fig2c-kernel",
                       "Fig. 2C: 20 random ReLU features on the sphere find a degree-1 spherical harmonic",
                       "degree-1 energy >= 0.97, label std >= 0.45", c,
                       {{"f1.degree1_energy", ">=", 0.97}, {"f1.label_std", ">=", 0.45}}});
    }
    return out;
}

inline const Preset& find_preset(const std::string& name) {
    static const std::vector<Preset> all = presets();
    for (const Preset& p : all)
        if (p.name == name) return p;
    std::string known;
    for (const Preset& p : all) known += (known.empty() ? "" : ", ") + p.name;
    throw std::invalid_argument("unknown preset '" + name + "' (known: " + known + ")");
}

}  // namespace occam::experiment
