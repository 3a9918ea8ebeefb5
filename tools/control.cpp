#include "control.hpp"

#include <fmt/core.h>

#include <stdexcept>

namespace occam::cli {

using nlohmann::json;

experiment::Config control_config(const experiment::Config& c) {
    experiment::Config cc = c;
    cc.mse_weight = 0;
    cc.control = false;
    return cc;
}

void merge_control(json& summary, const json& control) {
    auto& fs = summary["functions"];
    const auto& cs = control.at("functions");
    for (std::size_t k = 0; k < fs.size() && k < cs.size(); ++k)
        if (fs[k].contains("test_mse") && cs[k].contains("test_mse"))
            fs[k]["control_mse_ratio"] = cs[k]["test_mse"].get<double>() / fs[k]["test_mse"].get<double>();
    summary["control"] = control;
}

json control_view(const json& summary) {
    if (summary.contains("runs")) {
        json out = summary;
        for (auto& [name, run] : out["runs"].items()) run = control_view(run);
        return out;
    }
    if (!summary.contains("control")) throw std::runtime_error("the run has no control (run it with --control)");
    return summary["control"];
}

std::string describe_control(const json& summary) {
    if (!summary.contains("control")) return "";
    std::string out = "control (no learner term, --mse-weight 0):\n";
    const auto& fs = summary["functions"];
    const auto& cs = summary["control"]["functions"];
    for (std::size_t k = 0; k < cs.size(); ++k) {
        const json& f = cs[k];
        out += fmt::format("  {}: label std {:.3f}", f["name"].get<std::string>(), f["label_std"].get<double>());
        if (f.contains("dominant_degree")) out += fmt::format(", dominant degree {}", f["dominant_degree"].get<int>());
        if (f.contains("test_mse")) out += fmt::format(", learner's test MSE {:.4g}", f["test_mse"].get<double>());
        if (k < fs.size() && fs[k].contains("control_mse_ratio"))
            out += fmt::format(" ({:.3g}x the experiment's)", fs[k]["control_mse_ratio"].get<double>());
        out += "\n";
    }
    return out;
}

}  // namespace occam::cli
