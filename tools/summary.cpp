#include "summary.hpp"

#include <fmt/core.h>

#include "experiment/analysis.hpp"

namespace occam::cli {

using nlohmann::json;

std::vector<std::string> function_names(const ProbeTable& probe) {
    std::vector<std::string> out;
    for (int k = 1;; ++k) {
        std::string name = "f" + std::to_string(k);
        if (std::find(probe.names.begin(), probe.names.end(), name) == probe.names.end()) break;
        out.push_back(name);
    }
    return out;
}

static bool is_sphere(const std::string& inputs) { return inputs.rfind("sphere:", 0) == 0; }

json analyse_probe(const ProbeTable& probe, const experiment::Config& config) {
    json functions = json::array();
    const auto names = function_names(probe);
    Eigen::MatrixXd F(probe.x.rows(), Eigen::Index(names.size()));
    for (std::size_t k = 0; k < names.size(); ++k) {
        const std::string suffix = names[k].substr(1);
        Eigen::VectorXd f = probe.column(names[k]);
        F.col(Eigen::Index(k)) = f;
        json fj;
        fj["name"] = names[k];
        const double mean = f.mean();
        fj["label_mean"] = mean;
        fj["label_std"] = std::sqrt((f.array() - mean).square().mean());
        if (std::find(probe.names.begin(), probe.names.end(), "g" + suffix) != probe.names.end())
            fj["probe_mse"] = (probe.column("g" + suffix) - f).squaredNorm() / double(f.size());
        experiment::LinearFit lf = experiment::linear_fit(probe.x, f);
        fj["linear_fit"] = {{"r2", lf.r2},
                            {"intercept", lf.intercept},
                            {"coef", std::vector<double>(lf.coef.data(), lf.coef.data() + lf.coef.size())}};
        if (is_sphere(config.inputs)) {
            // Needs more probe points than harmonics of degree <= 4 (25 on S^2, 70 on S^3...).
            try {
                Eigen::VectorXd e = experiment::sphere_degree_energy(probe.x, f, 4);
                fj["sphere_degree_energy"] = std::vector<double>(e.data(), e.data() + e.size());
                fj["dominant_degree"] = experiment::dominant_degree(e);
            } catch (const std::invalid_argument& e) {
                fj["sphere_degree_energy_error"] = e.what();
            }
        }
        functions.push_back(fj);
    }
    json summary;
    summary["preset"] = config.preset;
    summary["inputs"] = config.inputs;
    summary["learner"] = config.learner;
    summary["seed"] = config.seed;
    summary["probe_points"] = probe.x.rows();
    summary["functions"] = functions;
    if (names.size() > 1) {
        Eigen::MatrixXd C = experiment::correlation_matrix(F);
        json rows = json::array();
        for (Eigen::Index i = 0; i < C.rows(); ++i) {
            std::vector<double> r(std::size_t(C.cols()));
            for (Eigen::Index j = 0; j < C.cols(); ++j) r[std::size_t(j)] = C(i, j);
            rows.push_back(r);
        }
        summary["correlations"] = rows;
    }
    return summary;
}

std::string describe_summary(const json& summary) {
    std::string out;
    for (const auto& f : summary["functions"]) {
        out += fmt::format("{}: label std {:.3f}, linear-fit R^2 {:.3f}", f["name"].get<std::string>(),
                           f["label_std"].get<double>(), f["linear_fit"]["r2"].get<double>());
        if (f.contains("sphere_degree_energy")) {
            auto e = f["sphere_degree_energy"].get<std::vector<double>>();
            out += fmt::format(", sphere degree energy [{:.3f}", e[0]);
            for (std::size_t l = 1; l < e.size(); ++l) out += fmt::format(", {:.3f}", e[l]);
            out += fmt::format("] (dominant degree {})", f["dominant_degree"].get<int>());
        }
        if (f.contains("test_mse")) out += fmt::format(", test MSE {:.4g}", f["test_mse"].get<double>());
        out += "\n";
    }
    return out;
}

}  // namespace occam::cli
