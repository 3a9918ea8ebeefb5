#include "targets.hpp"

#include <algorithm>
#include <cmath>

#include "control.hpp"

namespace occam::cli {

using nlohmann::json;

namespace {

/// j[key] for an object that must hold it; `metric` names what was asked for in the error.
const json& field(const json& j, const std::string& key, const std::string& metric) {
    if (!j.is_object() || !j.contains(key)) throw MissingMetric("metric '" + metric + "': the summary has no '" + key + "'");
    return j[key];
}

double number(const json& j, const std::string& metric) {
    if (!j.is_number()) throw MissingMetric("metric '" + metric + "' is not a number in the summary");
    return j.get<double>();
}

/// The per-function metrics (besides degreeL_energy and legendreL_energy).
const std::vector<std::string> kFunctionMetrics = {"linear_r2",     "label_std",          "test_mse",
                                                   "dominant_input", "dominant_input_share", "group_mean_r2",
                                                   "nonlinear_fraction", "mse_ratio",       "control_mse_ratio",
                                                   "odd_share",     "even_share",         "normalised_test_error",
                                                   "class_abs_correlation", "class_variance_share"};

/// degreeL_energy: degree L's share of sphere_degree_energy (L one digit).
bool is_degree_energy(const std::string& what) {
    return what.size() == 14 && what.rfind("degree", 0) == 0 && what.substr(7) == "_energy" && what[6] >= '0' &&
           what[6] <= '9';
}

/// legendreL_energy: degree L's share of legendre_energy_centered (ipd inputs; L one digit).
bool is_legendre_energy(const std::string& what) {
    return what.size() == 16 && what.rfind("legendre", 0) == 0 && what.substr(9) == "_energy" && what[8] >= '0' &&
           what[8] <= '9';
}

/// One function's named number from summary.json.
double function_metric(const json& f, const std::string& what, const std::string& metric) {
    auto get = [&](const std::string& key) { return number(field(f, key, metric), metric); };
    if (what == "linear_r2") return number(field(field(f, "linear_fit", metric), "r2", metric), metric);
    if (what == "nonlinear_fraction") return number(field(field(f, "decomposition", metric), "nonlinear", metric), metric);
    if (what == "mse_ratio") return get("test_mse") / get("neglected_test_mse");
    if (is_legendre_energy(what)) {
        const json& e = field(f, "legendre_energy_centered", metric);
        const std::size_t l = std::size_t(what[8] - '0');
        if (!e.is_array() || l >= e.size()) throw MissingMetric("metric '" + metric + "': no Legendre degree " + what.substr(8, 1));
        return number(e[l], metric);
    }
    if (is_degree_energy(what)) {
        const json& e = field(f, "sphere_degree_energy", metric);
        const std::size_t l = std::size_t(what[6] - '0');
        if (!e.is_array() || l >= e.size()) throw MissingMetric("metric '" + metric + "': no degree " + what.substr(6, 1));
        return number(e[l], metric);
    }
    // The rest of the list are summary.json's own keys (label_std, test_mse, class_abs_correlation, ...).
    if (std::find(kFunctionMetrics.begin(), kFunctionMetrics.end(), what) != kFunctionMetrics.end()) return get(what);
    throw MissingMetric("unknown metric '" + what + "' in '" + metric + "'");
}

/// "fK" or "fA-fB" -> [A, B].
std::pair<int, int> function_range(const std::string& range, const std::string& metric) {
    auto index = [&](const std::string& s) {
        if (s.size() < 2 || s[0] != 'f' || !std::all_of(s.begin() + 1, s.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
            s.size() > 6)
            throw MissingMetric("metric '" + metric + "': '" + range + "' is not fK or fA-fB");
        return std::stoi(s.substr(1));
    };
    const auto dash = range.find('-');
    const int a = index(range.substr(0, dash));
    const int b = dash == std::string::npos ? a : index(range.substr(dash + 1));
    if (a < 1 || b < a) throw MissingMetric("metric '" + metric + "': '" + range + "' is an empty range");
    return {a, b};
}

}  // namespace

double metric_value(const json& summary, const std::string& metric, bool at_least) {
    if (auto slash = metric.find('/'); slash != std::string::npos)
        return metric_value(summary, metric.substr(0, slash), at_least) /
               metric_value(summary, metric.substr(slash + 1), false);
    if (auto colon = metric.find(':'); colon != std::string::npos) {
        const std::string run = metric.substr(0, colon), rest = metric.substr(colon + 1);
        if (run == "control") {
            try {
                return metric_value(control_view(summary), rest, at_least);
            } catch (const MissingMetric&) {
                throw;
            } catch (const std::exception& e) {
                throw MissingMetric("metric '" + metric + "': " + e.what());
            }
        }
        return metric_value(field(field(summary, "runs", metric), run, metric), rest, at_least);
    }
    if (metric == "max_abs_correlation") {
        const json& c = field(summary, "correlations", metric);
        double worst = 0;
        for (std::size_t i = 0; i < c.size(); ++i)
            for (std::size_t j = 0; j < c.size(); ++j)
                if (i != j) worst = std::max(worst, std::abs(number(c[i][j], metric)));
        return worst;
    }
    const auto dot = metric.find('.');
    if (dot == std::string::npos) throw MissingMetric("unknown metric '" + metric + "'");
    const auto [a, b] = function_range(metric.substr(0, dot), metric);
    const std::string what = metric.substr(dot + 1);
    const json& fs = field(summary, "functions", metric);
    if (b > int(fs.size()))
        throw MissingMetric("metric '" + metric + "': the run has " + std::to_string(fs.size()) + " functions");
    double out = function_metric(fs[std::size_t(a - 1)], what, metric);
    for (int k = a + 1; k <= b; ++k) {
        const double v = function_metric(fs[std::size_t(k - 1)], what, metric);
        out = at_least ? std::min(out, v) : std::max(out, v);
    }
    return out;
}

void check_metric_name(const std::string& metric) {
    if (auto slash = metric.find('/'); slash != std::string::npos) {
        check_metric_name(metric.substr(0, slash));
        check_metric_name(metric.substr(slash + 1));
        return;
    }
    if (auto colon = metric.find(':'); colon != std::string::npos) {
        if (colon == 0) throw MissingMetric("metric '" + metric + "': empty run name");
        check_metric_name(metric.substr(colon + 1));
        return;
    }
    if (metric == "max_abs_correlation") return;
    const auto dot = metric.find('.');
    if (dot == std::string::npos) throw MissingMetric("unknown metric '" + metric + "'");
    function_range(metric.substr(0, dot), metric);
    const std::string what = metric.substr(dot + 1);
    if (!is_degree_energy(what) && !is_legendre_energy(what) && std::find(kFunctionMetrics.begin(), kFunctionMetrics.end(), what) == kFunctionMetrics.end())
        throw MissingMetric("unknown metric '" + what + "' in '" + metric + "'");
}

bool meets(const experiment::Target& t, double value) {
    if (t.op == ">=") return value >= t.value;
    if (t.op == "<=") return value <= t.value;
    throw std::logic_error("target op must be >= or <= (got '" + t.op + "')");
}

bool needs_control(const experiment::Target& t) {
    return t.metric.find("control") != std::string::npos;
}

double median(std::vector<double> v) {
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace occam::cli
