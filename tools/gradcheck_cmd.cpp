// occam gradcheck: every op's first- and second-order check, as a table.
#include <fmt/core.h>

#include <cmath>

#include "autodiff/autodiff.hpp"
#include "autodiff/check/op_checks.hpp"
#include "cli.hpp"

namespace occam::cli {

int gradcheck(int argc, char** argv) {
    cxxopts::Options options(argv[0],
                             "Checks every autodiff op's gradient (first order) and the gradient of its gradient\n"
                             "(second order) against central finite differences, and prints a table.\n"
                             "The error column is the worst |analytic - numeric| / (atol + rtol |numeric|):\n"
                             "an op passes when it is at most 1. Exit status 1 if any op fails.");
    options.add_options()("op", "Only check ops whose name contains this text", cxxopts::value<std::string>())(
        "step", "Finite-difference step", cxxopts::value<double>()->default_value("1e-6"))(
        "atol", "Absolute tolerance", cxxopts::value<double>()->default_value("1e-6"))(
        "rtol", "Relative tolerance", cxxopts::value<double>()->default_value("1e-5"));
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;

    ad::CheckOptions opts;
    opts.step = args["step"].as<double>();
    opts.atol = args["atol"].as<double>();
    opts.rtol = args["rtol"].as<double>();
    // A step of 0 divides by zero and a negative tolerance fails every op: neither is a check.
    if (!(opts.step > 0 && opts.step < 1)) throw cxxopts::exceptions::exception("--step must be in (0, 1)");
    if (!(opts.atol >= 0 && opts.rtol >= 0 && std::isfinite(opts.atol) && std::isfinite(opts.rtol) &&
          opts.atol + opts.rtol > 0))
        throw cxxopts::exceptions::exception("--atol and --rtol must be finite, >= 0, and not both 0");
    const std::string filter = args.count("op") ? args["op"].as<std::string>() : "";

    int checked = 0, failed = 0;
    fmt::print("{:<26} {:>14} {:>14}  {}\n", "op", "1st-order err", "2nd-order err", "ok");
    for (const ad::OpCheck& c : ad::op_checks()) {
        if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
        ad::CheckReport first = ad::gradcheck(c.f, c.inputs, opts);
        ad::CheckReport second = ad::gradgradcheck(c.f, c.inputs, opts);
        const bool ok = first.ok && second.ok;
        ++checked;
        failed += !ok;
        fmt::print("{:<26} {:>14.3e} {:>14.3e}  {}\n", c.name, first.max_error, second.max_error, ok ? "ok" : "FAIL");
        if (!first.ok) fmt::print("    first order: {}\n", first.message());
        if (!second.ok) fmt::print("    second order: {}\n", second.message());
    }
    if (checked == 0) {
        fmt::print(stderr, "occam gradcheck: no op matches '{}'\n", filter);
        return kUsageError;
    }
    fmt::print("{} passed, {} failed\n", checked - failed, failed);
    return failed ? 1 : 0;
}

}  // namespace occam::cli
