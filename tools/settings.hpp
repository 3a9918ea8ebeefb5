// Every setting of an experiment (a field of experiment::Config) listed once: its name in
// config.json, its command-line flag and its help. `occam run`'s flags, config.json (written and
// read back) and --sweep all go through this table, so a new setting is added here only.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "experiment/config.hpp"

namespace occam::cli {

struct Setting {
    const char* key;   ///< its name in config.json (the Config field's name)
    const char* flag;  ///< its command-line flag, or nullptr when another flag sets it (--preset, --features)
    std::variant<std::string experiment::Config::*, int experiment::Config::*, double experiment::Config::*,
                 bool experiment::Config::*, std::uint64_t experiment::Config::*>
        field;
    const char* help;
};

/// All of them, in the order `occam run --help` lists the flags.
const std::vector<Setting>& settings();

}  // namespace occam::cli
