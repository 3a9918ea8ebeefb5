// occam check: reads a finished run directory's summary.json against its preset's targets:
// every value present and finite, every target metric resolved to a number, met or not.
#include <fmt/core.h>

#include <cmath>

#include "cli.hpp"
#include "experiment/presets.hpp"
#include "run_files.hpp"
#include "targets.hpp"

namespace occam::cli {

using nlohmann::json;

namespace {

/// The paths of the values in `j` that are not finite numbers where a number belongs: JSON has
/// no NaN or infinity, so nlohmann writes them as null.
void find_nulls(const json& j, const std::string& path, std::vector<std::string>& out) {
    if (j.is_null()) out.push_back(path);
    if (j.is_number_float() && !std::isfinite(j.get<double>())) out.push_back(path);
    if (j.is_object())
        for (const auto& [key, value] : j.items()) find_nulls(value, path.empty() ? key : path + "." + key, out);
    if (j.is_array())
        for (std::size_t i = 0; i < j.size(); ++i) find_nulls(j[i], path + "[" + std::to_string(i) + "]", out);
}

}  // namespace

int check(int argc, char** argv) {
    cxxopts::Options options(argv[0],
                             "Checks a finished run directory: every value in summary.json is a finite number, and\n"
                             "every target of its preset resolves to a number, printed with whether it is met.\n"
                             "Exit status 1 when a value is not finite or a target metric is missing (with\n"
                             "--require-targets, also when a target is missed). Targets that read the control are\n"
                             "skipped for a run without --control.");
    add_run_dir(options);
    options.add_options()("require-targets", "Also fail when a target is missed");
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;
    const fs::path dir = run_dir(args, argv[0]);
    const experiment::Config c = config_from_json(read_json(dir / "config.json"));
    if (!fs::exists(dir / "summary.json"))
        throw std::runtime_error(dir.string() + " has no summary.json (the run has not finished)");
    const json summary = read_json(dir / "summary.json");

    bool ok = true;
    std::vector<std::string> nulls;
    find_nulls(summary, "", nulls);
    for (const auto& path : nulls) {
        fmt::print("summary.json: {} is not a finite number\n", path);
        ok = false;
    }
    if (c.preset.empty()) {
        fmt::print("{}: no preset, so no targets; {} values checked\n", dir.string(), nulls.empty() ? "all" : "not all");
        return ok ? 0 : 1;
    }
    const experiment::Preset& p = experiment::find_preset(c.preset);
    bool met_all = true;
    for (const experiment::Target& t : p.targets) {
        if (needs_control(t) && !c.control) {
            fmt::print("{} {} {}: skipped (the run has no --control)\n", t.metric, t.op, t.value);
            continue;
        }
        try {
            const double v = metric_value(summary, t.metric, t.op == ">=");
            const bool met = meets(t, v);
            met_all = met_all && met;
            fmt::print("{} = {:.4g} ({} {}: {})\n", t.metric, v, t.op, t.value, met ? "met" : "missed");
            if (!std::isfinite(v)) ok = false;
        } catch (const MissingMetric& e) {
            fmt::print("{}\n", e.what());
            ok = false;
        }
    }
    if (args.count("require-targets") && !met_all) ok = false;
    return ok ? 0 : 1;
}

}  // namespace occam::cli
