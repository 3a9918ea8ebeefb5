// What the input readers' tests share: a scratch folder that cleans up after itself, and the
// one-line error a reader throws for a bad file.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "experiment/inputs.hpp"

namespace occam::testing {

/// A fresh folder under the system temp directory, removed with everything in it at scope exit.
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& prefix) {
        path = std::filesystem::temp_directory_path() /
               (prefix + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    /// Writes bytes to name inside the folder (creating folders on the way); returns the full path.
    std::string write(const std::string& name, const std::string& bytes) const {
        const auto p = path / name;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p, std::ios::binary) << bytes;
        return p.string();
    }
    std::string str() const { return path.string(); }
};

/// The InputError message thrown by f, or "" if it threw nothing.
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const experiment::InputError& e) {
        return e.what();
    }
    return "";
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace occam::testing
