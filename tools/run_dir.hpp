// Who owns an output directory, and who is using it now. occam marks every directory it makes
// (run, sweep, reproduce) with a `.occam` file, so --force replaces only directories occam made;
// an exclusive lock on that file keeps a second occam process out for as long as the first runs.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace occam::cli {

namespace fs = std::filesystem;

/// An exclusive lock on a directory (flock on DIR/.occam), held until destroyed. The kernel
/// releases it when the process dies, however it dies, so a killed run never leaves a stale lock.
class DirLock {
public:
    DirLock() = default;
    DirLock(DirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    DirLock& operator=(DirLock&& o) noexcept;
    DirLock(const DirLock&) = delete;
    DirLock& operator=(const DirLock&) = delete;
    ~DirLock();
    bool held() const { return fd_ >= 0; }
    /// Turns an exclusive lock into a shared one: the processes of one mpirun share a
    /// directory the first of them has claimed. (flock may drop the lock for an instant while
    /// converting it: only an occam started at that very instant could slip in.)
    void share();

private:
    friend DirLock lock_dir(const fs::path& dir, std::string_view kind, bool shared);
    int fd_ = -1;
};

/// True when occam made `dir`: it holds the .occam marker, or (made before the marker existed)
/// a config.json that names the occam version, or a reproduce table.
bool is_occam_dir(const fs::path& dir);

/// What made `dir`: the kind in its marker (run, sweep, reproduce), or for a directory made
/// before the marker existed "reproduce" (it holds a table) or "run" (its config.json names
/// the occam version); "" when occam did not make it.
std::string occam_dir_kind(const fs::path& dir);

/// Creates the marker if needed and locks `dir`; throws if another process holds it.
/// `kind` (run, sweep, reproduce) is recorded in a new marker. A `shared` lock admits other
/// shared ones (the shards of one reproduce) and keeps out an exclusive one.
[[nodiscard]] DirLock lock_dir(const fs::path& dir, std::string_view kind, bool shared = false);

/// lock_dir(dir, kind, true): for the shards of one reproduce, each of which also locks every
/// run directory it writes.
[[nodiscard]] inline DirLock lock_dir_shared(const fs::path& dir, std::string_view kind) {
    return lock_dir(dir, kind, true);
}

/// Makes `dir` ready for new output and locks it: creates it; an empty directory is taken as
/// is; a non-empty one only if occam made it and `force` is given (everything in it is then
/// removed). A non-empty directory occam did not make is refused even with `force`.
[[nodiscard]] DirLock claim_new_dir(const fs::path& dir, bool force, std::string_view kind);

/// Locks an existing directory occam made, for resume, analyse and plot.
[[nodiscard]] DirLock claim_existing_dir(const fs::path& dir, std::string_view kind);

/// A file name for a value given by a user (a --sweep value): bytes outside [A-Za-z0-9._+,:@=-]
/// become %XX, so the name never holds '/', never starts with '.', and distinct values give
/// distinct names ('%' itself is encoded).
std::string safe_file_name(std::string_view value);

}  // namespace occam::cli
