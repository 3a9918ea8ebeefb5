// occam reproduce's target evaluation and the control's merge, on hand-written summaries whose
// every number is known: each metric form, the worst-function rule, sweeps, controls, and a
// clear error for every metric the summary does not hold.
#include <doctest/doctest.h>

#include "tools/control.hpp"
#include "tools/targets.hpp"

using namespace occam;
using nlohmann::json;

namespace {
json function(const char* name, double r2, double std_, double mse, std::vector<double> energy) {
    return {{"name", name},
            {"linear_fit", {{"r2", r2}}},
            {"label_std", std_},
            {"test_mse", mse},
            {"sphere_degree_energy", energy},
            {"decomposition", {{"nonlinear", 1 - r2}}}};
}
json three_functions() {
    return {{"functions",
             {function("f1", 0.99, 0.5, 0.01, {0, 0.9, 0.1}), function("f2", 0.97, 0.4, 0.02, {0, 0.8, 0.2}),
              function("f3", 0.10, 0.3, 0.50, {0, 0.1, 0.9})}},
            {"correlations", {{1, 0.05, -0.2}, {0.05, 1, 0.01}, {-0.2, 0.01, 1}}}};
}
}  // namespace

TEST_CASE("targets: each metric form reads the number it names") {
    const json s = three_functions();
    CHECK(cli::metric_value(s, "f1.linear_r2", true) == 0.99);
    CHECK(cli::metric_value(s, "f2.label_std", true) == 0.4);
    CHECK(cli::metric_value(s, "f3.degree2_energy", true) == 0.9);
    CHECK(cli::metric_value(s, "f3.nonlinear_fraction", true) == doctest::Approx(0.9));
    // A range is as good as its worst function: the minimum for >=, the maximum for <=.
    CHECK(cli::metric_value(s, "f1-f2.degree1_energy", true) == 0.8);
    CHECK(cli::metric_value(s, "f1-f2.degree1_energy", false) == 0.9);
    // A ratio: the numerator at its worst for the target, the denominator at its largest.
    CHECK(cli::metric_value(s, "f3.test_mse/f1-f2.test_mse", true) == doctest::Approx(0.5 / 0.02));
    CHECK(cli::metric_value(s, "max_abs_correlation", false) == 0.2);
}

TEST_CASE("targets: the metrics of functions of a phase difference (ipd inputs)") {
    json s = three_functions();
    s["functions"][0]["odd_share"] = 0.95;
    s["functions"][0]["even_share"] = 0.04;
    s["functions"][0]["normalised_test_error"] = 0.2;
    s["functions"][0]["legendre_energy_centered"] = {0, 0.9, 0.03, 0.05, 0, 0, 0};
    CHECK(cli::metric_value(s, "f1.odd_share", true) == 0.95);
    CHECK(cli::metric_value(s, "f1.even_share", true) == 0.04);
    CHECK(cli::metric_value(s, "f1.normalised_test_error", false) == 0.2);
    CHECK(cli::metric_value(s, "f1.legendre1_energy", true) == 0.9);
    CHECK(cli::metric_value(s, "f1.legendre3_energy", true) == 0.05);
    for (const char* name : {"f1.odd_share", "f1.legendre6_energy", "f2-f3.normalised_test_error"})
        CHECK_NOTHROW(cli::check_metric_name(name));
    CHECK_THROWS_AS(cli::check_metric_name("f1.legendre_energy"), cli::MissingMetric);
    CHECK_THROWS_WITH_AS(cli::metric_value(s, "f2.odd_share", true), doctest::Contains("no 'odd_share'"),
                         cli::MissingMetric);
    s["functions"][0]["legendre_energy_centered"] = {0, 1};
    CHECK_THROWS_WITH_AS(cli::metric_value(s, "f1.legendre4_energy", true), doctest::Contains("no Legendre degree 4"),
                         cli::MissingMetric);
}

TEST_CASE("targets: a metric the summary does not hold is an error naming it") {
    const json s = three_functions();
    for (const char* bad : {"f1.degree1_energi", "f4.label_std", "f1-f9.linear_r2", "g1.label_std", "f1.degree7_energy",
                            "f1.mse_ratio", "f1.control_mse_ratio", "control:f1.label_std", "depth=2:f1.label_std",
                            "label_std", "f2-f1.label_std", "fx.label_std"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(cli::metric_value(s, bad, true), cli::MissingMetric);
    }
    CHECK_THROWS_WITH(cli::metric_value(s, "f1.degree1_energi", true), doctest::Contains("degree1_energi"));
    CHECK_THROWS_WITH(cli::metric_value(s, "f4.label_std", true), doctest::Contains("has 3 functions"));
    json broken = s;
    broken["functions"][0]["label_std"] = nullptr;  // NaN written by nlohmann
    CHECK_THROWS_WITH_AS(cli::metric_value(broken, "f1.label_std", true), doctest::Contains("not a number"),
                         cli::MissingMetric);
}

TEST_CASE("targets: sweeps and controls") {
    json sweep = {{"order", {"depth=0", "depth=2"}},
                  {"runs", {{"depth=0", three_functions()}, {"depth=2", three_functions()}}}};
    sweep["runs"]["depth=2"]["functions"][0]["label_std"] = 0.7;
    CHECK(cli::metric_value(sweep, "depth=2:f1.label_std", true) == 0.7);
    CHECK(cli::metric_value(sweep, "depth=0:f1.label_std", true) == 0.5);

    json run = three_functions();
    json control = three_functions();
    control["functions"][0]["test_mse"] = 0.3;  // 30x the experiment's 0.01
    control["functions"][0]["sphere_degree_energy"] = {0, 0.2, 0.8};
    cli::merge_control(run, control);
    CHECK(run["functions"][0]["control_mse_ratio"].get<double>() == doctest::Approx(30));
    CHECK(run["functions"][1]["control_mse_ratio"].get<double>() == doctest::Approx(1));
    CHECK(cli::metric_value(run, "f1.control_mse_ratio", true) == doctest::Approx(30));
    CHECK(cli::metric_value(run, "control:f1.degree2_energy", true) == 0.8);
    CHECK(cli::metric_value(run, "f1.degree2_energy", true) == 0.1);
    CHECK(cli::control_view(run) == control);

    // A sweep's control view replaces each run by its control.
    json both = {{"order", {"a"}}, {"runs", {{"a", run}}}};
    CHECK(cli::metric_value(both, "a:control:f1.degree2_energy", true) == 0.8);
    CHECK(cli::metric_value(both, "control:a:f1.degree2_energy", true) == 0.8);
    CHECK_THROWS_AS(cli::control_view(three_functions()), std::runtime_error);
}

TEST_CASE("targets: meets, needs_control and median") {
    CHECK(cli::meets({"m", ">=", 0.9}, 0.9));
    CHECK_FALSE(cli::meets({"m", ">=", 0.9}, 0.8999));
    CHECK(cli::meets({"m", "<=", 0.1}, 0.05));
    CHECK_FALSE(cli::meets({"m", "<=", 0.1}, std::nan("")));
    CHECK_FALSE(cli::meets({"m", ">=", 0.1}, std::nan("")));
    CHECK_THROWS_AS(cli::meets({"m", "==", 0.1}, 0.1), std::logic_error);
    CHECK(cli::needs_control({"control:f1.degree1_energy", ">=", 0.9}));
    CHECK(cli::needs_control({"f1.control_mse_ratio", ">=", 5}));
    CHECK_FALSE(cli::needs_control({"f1.degree1_energy", ">=", 0.9}));
    CHECK(cli::median({3, 1, 2}) == 2);
    CHECK(cli::median({4, 1, 2, 3}) == 2.5);
    CHECK(std::isnan(cli::median({})));
}

TEST_CASE("targets: every preset's targets are well-formed metrics") {
    // A typo in the preset table would otherwise surface only when `occam reproduce` reads
    // real summaries, an hour later.
    for (const auto& p : experiment::presets())
        for (const auto& t : p.targets) {
            CAPTURE(p.name);
            CAPTURE(t.metric);
            CHECK((t.op == ">=" || t.op == "<="));
            CHECK_NOTHROW(cli::check_metric_name(t.metric));
        }
    for (const char* bad : {"f1.degree1_energi", "f1", "f1.", "fx.label_std", "f2-f1.label_std", ":f1.label_std",
                            "f1.label_std/f2.labelstd", "control:f1.mse"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(cli::check_metric_name(bad), cli::MissingMetric);
    }
}
