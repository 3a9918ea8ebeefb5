// The occam command's subcommands. Each takes the arguments after its name (argv[0] is the
// subcommand's full name, e.g. "occam gradcheck") and returns the process exit status.
#pragma once

#include <cxxopts.hpp>
#include <fmt/core.h>

#include <string>

namespace occam::cli {

int gradcheck(int argc, char** argv);
int run(int argc, char** argv);
int presets(int argc, char** argv);
int analyse(int argc, char** argv);
int plot(int argc, char** argv);
int reproduce(int argc, char** argv);
int check(int argc, char** argv);
int bench(int argc, char** argv);

/// Exit status for a usage error (bad flag, bad value), as most command-line tools use.
constexpr int kUsageError = 2;

/// Parses flags with cxxopts; prints help and exits on --help. Throws cxxopts exceptions
/// (caught in main) with a one-line message on unknown flags or bad values.
inline cxxopts::ParseResult parse_or_help(cxxopts::Options& options, int argc, char** argv, bool& help_shown) {
    options.add_options()("h,help", "Show this help");
    auto result = options.parse(argc, argv);
    help_shown = result.count("help") > 0;
    if (help_shown) fmt::print("{}\n", options.help());
    if (!result.unmatched().empty())
        throw cxxopts::exceptions::no_such_option(result.unmatched().front());
    return result;
}

/// The run directory DIR, the one positional argument of analyse, plot and check.
inline void add_run_dir(cxxopts::Options& options) {
    options.add_options()("dir", "Run directory", cxxopts::value<std::string>());
    options.parse_positional({"dir"});
    options.positional_help("DIR");
}
/// DIR from the parsed arguments; a usage error naming the command (argv[0]) when it is missing.
inline std::string run_dir(const cxxopts::ParseResult& args, const std::string& command) {
    if (!args.count("dir")) throw cxxopts::exceptions::exception("missing the run directory (" + command + " DIR)");
    return args["dir"].as<std::string>();
}

}  // namespace occam::cli
