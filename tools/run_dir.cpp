#include "run_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace occam::cli {

namespace {
constexpr const char* kMarker = ".occam";

bool is_empty_dir(const fs::path& dir) { return fs::is_empty(dir); }

/// Made before the marker existed: a run directory's config.json names the occam version; a
/// reproduce directory holds its table. "" for neither.
std::string legacy_occam_dir_kind(const fs::path& dir) {
    if (fs::exists(dir / "RESULTS.md") && fs::exists(dir / "results.json")) return "reproduce";
    std::ifstream in(dir / "config.json");
    if (!in) return "";
    try {
        const auto j = nlohmann::json::parse(in);
        return j.is_object() && j.contains("occam_version") ? "run" : "";
    } catch (const std::exception&) {
        return "";
    }
}
}  // namespace

DirLock& DirLock::operator=(DirLock&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = o.fd_;
        o.fd_ = -1;
    }
    return *this;
}

DirLock::~DirLock() {
    if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

void DirLock::share() {
    if (fd_ >= 0 && ::flock(fd_, LOCK_SH) != 0)
        throw std::runtime_error(fmt::format("cannot share a directory lock: {}", std::strerror(errno)));
}

bool is_occam_dir(const fs::path& dir) { return !occam_dir_kind(dir).empty(); }

std::string occam_dir_kind(const fs::path& dir) {
    if (!fs::is_regular_file(dir / kMarker)) return legacy_occam_dir_kind(dir);
    // A marker is written whole at creation, but its text is for people: one that does not
    // parse (emptied, edited) still marks occam's directory, of a kind nobody can tell.
    std::ifstream in(dir / kMarker);
    try {
        const auto j = nlohmann::json::parse(in);
        if (j.is_object() && j.contains("kind") && j["kind"].is_string()) return j["kind"].get<std::string>();
    } catch (const std::exception&) {
    }
    return "unknown";
}

DirLock lock_dir(const fs::path& dir, std::string_view kind, bool shared) {
    const fs::path marker = dir / kMarker;
    DirLock lock;
    // Created with O_EXCL, so of several processes starting at once (shards) exactly one writes
    // the text; the marker is never replaced, since the lock lives on its inode.
    lock.fd_ = ::open(marker.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    const bool created = lock.fd_ >= 0;
    if (!created && errno == EEXIST) lock.fd_ = ::open(marker.c_str(), O_RDWR | O_CLOEXEC);
    if (lock.fd_ < 0) throw std::runtime_error(fmt::format("cannot create {}: {}", marker.string(), std::strerror(errno)));
    if (::flock(lock.fd_, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            throw std::runtime_error(dir.string() +
                                     " is in use by another occam process; wait for it to finish, or use another --out");
        throw std::runtime_error(fmt::format("cannot lock {}: {}", marker.string(), std::strerror(errno)));
    }
    // The marker's text is for people (what made this directory); only its existence counts.
    // An empty marker left by a process killed between creating and writing it is written by
    // the next one that holds it alone.
    struct stat st {};
    if (created || (!shared && ::fstat(lock.fd_, &st) == 0 && st.st_size == 0)) {
        const std::string text = fmt::format("{{\"made_by\": \"occam {}\", \"kind\": \"{}\"}}\n", OCCAM_VERSION, kind);
        if (::write(lock.fd_, text.data(), text.size()) != ssize_t(text.size()))
            throw std::runtime_error("cannot write " + marker.string());
    }
    return lock;
}

DirLock claim_new_dir(const fs::path& dir, bool force, std::string_view kind) {
    if (fs::exists(dir) && !fs::is_directory(dir)) throw std::runtime_error(dir.string() + " exists and is not a directory");
    if (!fs::exists(dir)) {
        fs::create_directories(dir);
        return lock_dir(dir, kind);
    }
    if (is_empty_dir(dir)) return lock_dir(dir, kind);
    if (!is_occam_dir(dir))
        throw std::runtime_error(dir.string() +
                                 " is not empty and occam did not make it (no .occam marker); --force replaces only "
                                 "occam's own directories: choose another --out");
    if (!force)
        throw std::runtime_error(dir.string() + " exists and is not empty; pass --force to replace it or --out DIR");
    DirLock lock = lock_dir(dir, kind);  // before deleting: never empty a directory another run is writing
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename() != kMarker) fs::remove_all(e.path());
    return lock;
}

DirLock claim_existing_dir(const fs::path& dir, std::string_view kind) {
    if (!fs::is_directory(dir)) throw std::runtime_error(dir.string() + " is not a directory");
    if (!is_occam_dir(dir)) throw std::runtime_error(dir.string() + " is not an occam run directory (no .occam marker)");
    return lock_dir(dir, kind);
}

std::string safe_file_name(std::string_view value) {
    std::string out;
    for (std::size_t i = 0; i < value.size(); ++i) {
        const unsigned char ch = static_cast<unsigned char>(value[i]);
        const bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                           std::strchr("_+,:@=-", ch) != nullptr || (ch == '.' && i > 0);
        if (plain && ch != 0)
            out += char(ch);
        else
            out += fmt::format("%{:02X}", ch);
    }
    return out;
}

}  // namespace occam::cli
