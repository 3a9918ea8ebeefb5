#include "summary.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "experiment/analysis.hpp"
#include "experiment/kernel_theory.hpp"
#include "experiment/meta_learning.hpp"

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

/// Legendre degrees analysed for ipd inputs (functions of u in [-1, 1]).
constexpr int kLegendreDegrees = 6;

/// The analysis of a function of u = dphi / (pi/2) (ipd inputs): its energy per Legendre degree
/// as it is and centred (the mean removed, so the shares describe its shape), the centred
/// energy's odd and even shares (odd: antisymmetric in the phase difference, like a left/right
/// judgement; even: symmetric, like "how far from the midline") and its dominant degree.
static void analyse_interval_function(const Eigen::VectorXd& u, const Eigen::VectorXd& f, json& fj) {
    auto list = [](const Eigen::VectorXd& v) { return std::vector<double>(v.data(), v.data() + v.size()); };
    try {
        const experiment::LegendreEnergy raw = experiment::legendre_energy(u, f, kLegendreDegrees);
        const Eigen::VectorXd centred_f = f.array() - f.mean();
        const experiment::LegendreEnergy centred = experiment::legendre_energy(u, centred_f, kLegendreDegrees);
        fj["legendre_energy"] = list(raw.degree);
        fj["legendre_energy_centered"] = list(centred.degree);
        fj["odd_share"] = centred.odd;
        fj["even_share"] = centred.even;
        fj["higher_degree_share"] = centred.above;  // above degree kLegendreDegrees
        fj["dominant_degree"] = experiment::dominant_degree(centred.degree);
    } catch (const std::invalid_argument& e) {
        fj["legendre_energy_error"] = e.what();
    }
}

/// The theory check: the (chosen) learner's kernel, its leading eigenfunctions on the probe
/// points (Nystrom, on the first 1000 points), and where each meta-learned function lies in
/// that eigenbasis. Random features fixed for the run give their own finite-feature kernel;
/// redrawn features average to the arc-cosine kernel; linear ridge has the linear kernel.
static json kernel_theory(const ProbeTable& probe, const experiment::Config& config, const Eigen::MatrixXd& F,
                          json& functions) {
    const experiment::LearnerSpec spec = experiment::learner_specs(config)[0];
    experiment::KernelFn kernel;
    std::string name;
    // A trained network has no fixed kernel (its NTK moves).
    if (spec.kind == "mlp" || spec.kind == "cnn") return json();
    if (!probe.x_names.empty()) return json();  // the table names the points (images), not their values
    // The learner sees a random view of each probe point (ipd: spike trains), not the point: no
    // kernel on the probe points describes it.
    if (experiment::is_ipd(config.inputs)) return json();
    if (spec.kind == "ridge") {
        if (spec.bias) return json();  // an unpenalised intercept is not a kernel method
        kernel = experiment::linear_kernel;
        name = "linear";
    } else if (spec.kind == "kernel" && spec.activation == "abs" && spec.redraw) {
        kernel = [](const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) { return learners::abs_feature_kernel(a, b); };
        name = "|x.w| features' limit (even)";
    } else if (spec.kind == "arccos" || spec.redraw) {
        kernel = [](const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) { return learners::arccos_kernel(a, b); };
        name = "arc-cosine (degree 1)";
    } else {
        auto learner = experiment::make_learner(spec, int(probe.x.cols()),
                                                experiment::rng_for(config.seed, experiment::Stream::learner_fixed, 0));
        const auto& rf = dynamic_cast<const learners::RandomFeatureRidge&>(*learner);
        const Eigen::MatrixXd J = rf.features();
        const learners::FeatureMap map = rf.feature_map();
        kernel = [J, map](const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
            // The finite-feature Gram matrix phi(A J) phi(B J)^T / K.
            return Eigen::MatrixXd(learners::random_features(a, J, map) * learners::random_features(b, J, map).transpose() /
                                   double(J.cols()));
        };
        name = fmt::format("random {}features (these {})", map == learners::FeatureMap::abs ? "|x.w| " : "", J.cols());
    }
    const int points = int(std::min<Eigen::Index>(1000, probe.x.rows()));
    const int top = std::min(25, points);
    const experiment::KernelEigen e = experiment::nystrom_subsample(probe.x, kernel, top, points);
    json spaces = json::array();
    for (std::size_t s = 0; s < e.spaces.size(); ++s) {
        const auto [first, last] = e.spaces[s];
        spaces.push_back({{"first", first}, {"last", last}, {"eigenvalue", e.eigenvalues.segment(first, last - first + 1).mean()}});
    }
    for (Eigen::Index k = 0; k < F.cols(); ++k) {
        const experiment::EigenOverlap o = experiment::eigen_overlap(e, F.col(k).head(points));
        functions[std::size_t(k)]["kernel_theory"] = {{"dominant_space", o.dominant_space},
                                                      {"dominant_space_eigenvalue", o.dominant_space_eigenvalue},
                                                      {"weighted_eigenvalue", o.weighted_eigenvalue},
                                                      {"energy_in_top_spaces", o.energy_in_top_spaces},
                                                      {"energy_per_space", o.energy_per_space}};
    }
    return {{"kernel", name}, {"points", points}, {"eigenfunctions", top}, {"spaces", spaces}};
}

/// The analysis of a function of images (index, class probe tables): the mean label of each
/// class, the share of the labels' variance that lies between the class means (1 for any
/// function of the class alone, eta^2) and, with two classes, the correlation of the labels
/// with the class (the paper's Fig. 6 measure; its sign only says which class is high).
static void analyse_class_function(const Eigen::VectorXd& cls, const Eigen::VectorXd& f, json& fj) {
    std::map<int, std::pair<double, int>> by_class;  // class -> (sum, count)
    for (Eigen::Index i = 0; i < f.size(); ++i) {
        auto& [sum, count] = by_class[int(cls(i))];
        sum += f(i);
        ++count;
    }
    const double mean = f.mean(), total = (f.array() - mean).square().sum();
    double between = 0;
    json means = json::object(), counts = json::object();
    for (const auto& [c, sc] : by_class) {
        const double m = sc.first / sc.second;
        means[std::to_string(c)] = m;
        counts[std::to_string(c)] = sc.second;
        between += sc.second * (m - mean) * (m - mean);
    }
    fj["class_means"] = means;
    fj["class_counts"] = counts;
    if (total > 0) fj["class_variance_share"] = between / total;
    if (by_class.size() == 2 && total > 0) {
        const Eigen::ArrayXd c = cls.array() - cls.mean();
        const double c_norm = std::sqrt(c.square().sum());
        const double r = (c * (f.array() - mean)).sum() / (c_norm * std::sqrt(total));
        fj["class_correlation"] = r;
        fj["class_abs_correlation"] = std::abs(r);
    }
}

json analyse_probe(const ProbeTable& probe, const experiment::Config& config) {
    json functions = json::array();
    const auto names = function_names(probe);
    std::vector<std::vector<int>> groups;
    if (!config.groups.empty()) {
        groups = experiment::parse_nested<int>(config.groups, "--groups");
        for (const auto& g : groups)
            for (int i : g)
                if (i < 0 || i >= probe.x.cols()) throw std::runtime_error("--groups names input " + std::to_string(i) + ", which the inputs do not have");
    }
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
        // Images: the only meaningful input column is the class (index is a file position).
        const bool images = probe.x_names.size() == 2 && probe.x_names[1] == "class";
        experiment::LinearFit lf = experiment::linear_fit(images ? Eigen::MatrixXd(probe.x.col(1)) : probe.x, f);
        fj["linear_fit"] = {{"r2", lf.r2},
                            {"intercept", lf.intercept},
                            {"coef", std::vector<double>(lf.coef.data(), lf.coef.data() + lf.coef.size())}};
        // Which inputs the function depends on: each input's share of the total |linear weight|.
        {
            const double total = lf.coef.cwiseAbs().sum();
            if (total > 0 && lf.coef.size() > 1) {
                Eigen::VectorXd share = lf.coef.cwiseAbs() / total;
                Eigen::Index top = 0;
                share.maxCoeff(&top);
                fj["input_shares"] = std::vector<double>(share.data(), share.data() + share.size());
                fj["dominant_input"] = int(top);
                fj["dominant_input_share"] = share(top);
            }
        }
        if (!groups.empty()) {
            // Is f a function of the group means? R^2 of a linear fit on them.
            Eigen::MatrixXd means(probe.x.rows(), Eigen::Index(groups.size()));
            for (std::size_t g = 0; g < groups.size(); ++g) {
                means.col(Eigen::Index(g)).setZero();
                for (int i : groups[g]) means.col(Eigen::Index(g)) += probe.x.col(i);
                means.col(Eigen::Index(g)) /= double(groups[g].size());
            }
            fj["group_mean_r2"] = experiment::linear_fit(means, f).r2;
        }
        // How much of E[f^2] is a constant (mean^2), linear (R^2 of the variance) or the rest.
        {
            const double var = (f.array() - mean).square().mean(), power = mean * mean + var;
            const double r2 = std::clamp(lf.r2, 0.0, 1.0);
            if (power > 0)
                fj["decomposition"] = {{"constant", mean * mean / power},
                                       {"linear", r2 * var / power},
                                       {"nonlinear", (1.0 - r2) * var / power}};
        }
        if (experiment::is_ipd(config.inputs) && probe.x.cols() == 1) analyse_interval_function(probe.x.col(0), f, fj);
        if (images) analyse_class_function(probe.x.col(1), f, fj);
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
    try {
        json theory = kernel_theory(probe, config, F, functions);
        if (!theory.is_null()) summary["kernel_theory"] = theory;
    } catch (const std::exception& e) {
        summary["kernel_theory_error"] = e.what();
    }
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
        // The largest overlap between two different functions (0 for orthogonal ones).
        double largest = 0;
        for (Eigen::Index i = 0; i < C.rows(); ++i)
            for (Eigen::Index j = 0; j < C.cols(); ++j)
                if (i != j) largest = std::max(largest, std::abs(C(i, j)));
        summary["max_abs_correlation"] = largest;
    }
    if (experiment::is_ipd(config.inputs)) {
        try {
            summary["inputs_description"] = experiment::make_inputs(config.inputs)->describe();
        } catch (const std::exception& e) {
            summary["inputs_description_error"] = e.what();
        }
    }
    return summary;
}

void add_normalised_test_errors(json& summary, const experiment::Config& config) {
    if (!experiment::is_ipd(config.inputs) || !summary.contains("functions") || !summary["functions"].is_array()) return;
    for (json& f : summary["functions"]) {
        if (!f.is_object() || !f.contains("test_mse") || !f["test_mse"].is_number() || !f.contains("label_std") ||
            !f["label_std"].is_number())
            continue;
        const double variance = f["label_std"].get<double>() * f["label_std"].get<double>();
        // A constant function has no variance to explain: no normalised error (JSON has no inf).
        if (variance > 0) f["normalised_test_error"] = f["test_mse"].get<double>() / variance;
        else f.erase("normalised_test_error");
    }
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
        if (f.contains("legendre_energy_centered")) {
            auto e = f["legendre_energy_centered"].get<std::vector<double>>();
            out += fmt::format(", Legendre energy of f - mean [{:.3f}", e[0]);
            for (std::size_t l = 1; l < e.size(); ++l) out += fmt::format(", {:.3f}", e[l]);
            out += fmt::format("] (dominant degree {}, odd {:.3f}, even {:.3f})", f["dominant_degree"].get<int>(),
                               f["odd_share"].get<double>(), f["even_share"].get<double>());
        }
        if (f.contains("dominant_input"))
            out += fmt::format(", dominant input x{} (share {:.2f})", f["dominant_input"].get<int>(),
                               f["dominant_input_share"].get<double>());
        if (f.contains("group_mean_r2")) out += fmt::format(", group-mean R^2 {:.3f}", f["group_mean_r2"].get<double>());
        if (f.contains("class_correlation"))
            out += fmt::format(", correlation with the class {:.3f}", f["class_correlation"].get<double>());
        else if (f.contains("class_variance_share"))
            out += fmt::format(", class means explain {:.3f} of the variance", f["class_variance_share"].get<double>());
        if (f.contains("kernel_theory"))
            out += fmt::format(", kernel eigenspace {} (eigenvalue {:.3g})", f["kernel_theory"]["dominant_space"].get<int>(),
                               f["kernel_theory"]["dominant_space_eigenvalue"].get<double>());
        if (f.contains("test_mse")) out += fmt::format(", test MSE {:.4g}", f["test_mse"].get<double>());
        if (f.contains("normalised_test_error"))
            out += fmt::format(" ({:.3g} of the label variance)", f["normalised_test_error"].get<double>());
        if (f.contains("neglected_test_mse"))
            out += fmt::format(", neglected learner's test MSE {:.4g} (ratio {:.3f})", f["neglected_test_mse"].get<double>(),
                               f["test_mse"].get<double>() / f["neglected_test_mse"].get<double>());
        out += "\n";
    }
    return out;
}

}  // namespace occam::cli
