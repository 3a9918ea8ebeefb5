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
/// reproduce directory holds its table.
bool is_legacy_occam_dir(const fs::path& dir) {
    if (fs::exists(dir / "RESULTS.md") && fs::exists(dir / "results.json")) return true;
    std::ifstream in(dir / "config.json");
    if (!in) return false;
    try {
        const auto j = nlohmann::json::parse(in);
        return j.is_object() && j.contains("occam_version");
    } catch (const std::exception&) {
        return false;
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

bool is_occam_dir(const fs::path& dir) {
    return fs::is_regular_file(dir / kMarker) || is_legacy_occam_dir(dir);
}

DirLock lock_dir(const fs::path& dir, std::string_view kind) {
    const fs::path marker = dir / kMarker;
    DirLock lock;
    lock.fd_ = ::open(marker.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock.fd_ < 0) throw std::runtime_error(fmt::format("cannot create {}: {}", marker.string(), std::strerror(errno)));
    if (::flock(lock.fd_, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            throw std::runtime_error(dir.string() +
                                     " is in use by another occam process; wait for it to finish, or use another --out");
        throw std::runtime_error(fmt::format("cannot lock {}: {}", marker.string(), std::strerror(errno)));
    }
    // The marker's text is for people (what made this directory); only its existence counts.
    struct stat st {};
    if (::fstat(lock.fd_, &st) == 0 && st.st_size == 0) {
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
