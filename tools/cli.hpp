// The occam command's subcommands. Each takes the arguments after its name (argv[0] is the
// subcommand's full name, e.g. "occam gradcheck") and returns the process exit status. Also
// what every subcommand shares about its flags: one-line errors that name the flag whose value
// is bad (cxxopts names only the value), numbers read whole, and messages made printable.
#pragma once

#include <cxxopts.hpp>
#include <fmt/core.h>
#include <sys/resource.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "experiment/parse.hpp"

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

/// This process's peak resident memory so far, in MB (Linux reports ru_maxrss in KiB): what
/// `occam bench` and run's progress line report.
inline double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;
}

/// `text` as one printable line: control bytes (newlines included) and bytes that are not
/// valid UTF-8 become \n, \t, \r or \xNN; valid UTF-8 (a file name in Greek, cxxopts' curly
/// quotes) is kept. For error messages that quote what the user typed or a file holds, so a
/// stray escape sequence cannot rewrite the terminal and a message stays one line.
inline std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    auto escape = [&out](unsigned char b) {
        const char* hex = "0123456789abcdef";
        out += "\\x";
        out += hex[b >> 4];
        out += hex[b & 15];
    };
    for (std::size_t i = 0; i < text.size();) {
        const auto b = static_cast<unsigned char>(text[i]);
        if (b == '\n' || b == '\t' || b == '\r') {
            out += b == '\n' ? "\\n" : b == '\t' ? "\\t" : "\\r";
            ++i;
            continue;
        }
        if (b < 0x20 || b == 0x7f) {
            escape(b);
            ++i;
            continue;
        }
        if (b < 0x80) {
            out += char(b);
            ++i;
            continue;
        }
        // A UTF-8 sequence: its lead byte gives its length; no overlong forms, no surrogates,
        // nothing above U+10FFFF (the well-formed table of the Unicode standard, 3.9).
        std::size_t len = 0;
        unsigned char lo = 0x80, hi = 0xbf;  // the range of the second byte
        if (b >= 0xc2 && b <= 0xdf) len = 2;
        else if (b == 0xe0) len = 3, lo = 0xa0;
        else if (b == 0xed) len = 3, hi = 0x9f;
        else if (b >= 0xe1 && b <= 0xef) len = 3;
        else if (b == 0xf0) len = 4, lo = 0x90;
        else if (b >= 0xf1 && b <= 0xf3) len = 4;
        else if (b == 0xf4) len = 4, hi = 0x8f;
        bool valid = len > 0 && i + len <= text.size();
        for (std::size_t k = 1; valid && k < len; ++k) {
            const auto c = static_cast<unsigned char>(text[i + k]);
            valid = k == 1 ? c >= lo && c <= hi : c >= 0x80 && c <= 0xbf;
        }
        if (!valid) {
            escape(b);
            ++i;
            continue;
        }
        out.append(text.substr(i, len));
        i += len;
    }
    return out;
}

namespace detail {

/// Parses only `args` (after argv[0]) with `options`: to ask cxxopts about one flag.
inline cxxopts::ParseResult parse_alone(cxxopts::Options& options, const std::vector<std::string>& args) {
    std::vector<const char*> argv = {"occam"};
    for (const auto& a : args) argv.push_back(a.c_str());
    return options.parse(int(argv.size()), argv.data());
}

/// What values option `name` takes, from what cxxopts stored for it: "an integer from ... to
/// ...", "a number", ... ("" for a string, or if cxxopts cannot say).
inline std::string value_kind(cxxopts::Options& options, const std::string& name, const std::string& text) {
    cxxopts::ParseResult r;
    try {
        r = parse_alone(options, {"--" + name + "=0"});
    } catch (const cxxopts::exceptions::exception&) {
        return "";
    }
    const bool digits = text.find_first_not_of("0123456789", text[0] == '-' ? 1 : 0) == std::string::npos &&
                        text.size() > (text[0] == '-' ? 1u : 0u);
    auto is = [&](auto type) {
        try {
            (void)r[name].as<decltype(type)>();
            return true;
        } catch (const std::bad_cast&) {
            return false;
        }
    };
    if (is(int{}))
        return digits ? "is out of range (an integer from -2147483648 to 2147483647)" : "is not an integer";
    if (is(std::uint64_t{}))
        return digits && text[0] != '-' ? "is out of range (a non-negative integer up to 18446744073709551615)"
                                        : "is not a non-negative integer";
    if (is(double{})) return "is not a finite number";
    if (is(bool{})) return "is not true or false";
    return "";
}

/// The message for cxxopts' incorrect_argument_type, which names the value but not the flag:
/// the flag is found by parsing each flag of argv alone ("--flag value", "--flag=value",
/// "-f value") until one fails the same way.
inline std::string bad_value_message(cxxopts::Options& options, int argc, char** argv, const std::string& fallback) {
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--") break;  // the rest is positional
        if (arg.size() < 2 || arg[0] != '-') continue;
        const auto eq = arg.find('=');
        std::string name, value;
        std::vector<std::string> alone;
        try {
            if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
                name = arg.substr(2, eq - 2);
                value = arg.substr(eq + 1);
                alone = {arg};
            } else {
                try {
                    parse_alone(options, {arg});  // a flag without a value (--force): nothing to blame
                    continue;
                } catch (const cxxopts::exceptions::missing_argument&) {
                }
                if (i + 1 >= argc) continue;
                name = arg.substr(arg.rfind("--", 0) == 0 ? 2 : 1);
                value = argv[++i];
                alone = {arg, value};
            }
            parse_alone(options, alone);
        } catch (const cxxopts::exceptions::incorrect_argument_type&) {
            const std::string flag = (name.size() > 1 ? "--" : "-") + name;
            const std::string kind = value_kind(options, name, value);
            return flag + ": '" + value + "' " + (kind.empty() ? "is not a valid value" : kind);
        } catch (const cxxopts::exceptions::exception&) {
            // another flag's problem (unknown, missing value): the full parse reports it
        }
    }
    return fallback;
}

}  // namespace detail

/// Parses flags with cxxopts; prints help and exits on --help. Throws cxxopts exceptions
/// (caught in main) with a one-line message naming the flag on unknown flags or bad values.
/// Numbers are read whole: cxxopts reads a double with a stream, which stops at the first
/// character it cannot use ("--lr 0.01x" would be 0.01), so every double flag given is read
/// again with experiment::parse_number.
inline cxxopts::ParseResult parse_or_help(cxxopts::Options& options, int argc, char** argv, bool& help_shown) {
    options.add_options()("h,help", "Show this help");
    cxxopts::ParseResult result;
    try {
        result = options.parse(argc, argv);
    } catch (const cxxopts::exceptions::incorrect_argument_type& e) {
        throw cxxopts::exceptions::parsing(detail::bad_value_message(options, argc, argv, e.what()));
    }
    help_shown = result.count("help") > 0;
    if (help_shown) fmt::print("{}\n", options.help());
    if (!result.unmatched().empty())
        throw cxxopts::exceptions::no_such_option(result.unmatched().front());
    for (const cxxopts::KeyValue& kv : result.arguments()) {
        try {
            (void)result[kv.key()].as<double>();
        } catch (const std::bad_cast&) {
            continue;  // not a double flag
        }
        try {
            (void)experiment::parse_number(kv.value(), "--" + kv.key());
        } catch (const std::invalid_argument& e) {
            throw cxxopts::exceptions::parsing(e.what());
        }
    }
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
