// What this file teaches: a learner can be anything that learns from labelled examples: here
// another program (a lab's own model, or an experiment rig). It gets each task as one JSON
// object on stdin and answers with its predictions on stdout. It gives no gradients, so it is
// meta-learned with an evolution strategy. POSIX only (fork, pipes, poll), with Linux extras.
//
// Running other programs from a multithreaded optimiser must neither hang nor leak them:
//  - every call runs in a process group of its own, led by a small supervisor process that
//    starts the shell; the group is killed whole when the call ends, however it ends (a guard
//    object, so an exception anywhere cannot leak it);
//  - one failing call stops the other calls of the same learner at once, so a generation whose
//    result is lost does not wait for each member's own time-out;
//  - the live groups are listed in a lock-free table that a SIGINT/SIGTERM/SIGHUP/SIGQUIT
//    handler kills before occam dies (installed at the first call; a signal that was ignored,
//    as under nohup, stays ignored), and if occam dies of SIGKILL, which no handler sees, each
//    supervisor sees its lifeline pipe close and kills its group;
//  - the reply is read strictly (json_reply.hpp) and stdout is capped.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "json_reply.hpp"
#include "learner.hpp"

extern char** environ;

namespace occam::learners {

namespace detail::exec {

/// The process groups of the calls now running, process-wide; 0 marks a free slot. Signal
/// handlers read it, so it is a fixed array of lock-free atomics: no locks, no allocation.
inline constexpr int kGroupSlots = 1024;
inline std::atomic<pid_t> live_groups[kGroupSlots];
static_assert(std::atomic<pid_t>::is_always_lock_free, "the signal handler needs lock-free atomics");

/// A free slot now holds `group`; -1 if all are taken.
inline int register_group(pid_t group) {
    for (int i = 0; i < kGroupSlots; ++i) {
        pid_t free_slot = 0;
        if (live_groups[i].compare_exchange_strong(free_slot, group)) return i;
    }
    return -1;
}
inline void unregister_group(int slot) {
    if (slot >= 0) live_groups[slot].store(0);
}
/// SIGKILL to every registered group. Async-signal-safe (atomic loads and kill only).
inline void kill_live_groups() noexcept {
    for (auto& g : live_groups) {
        const pid_t group = g.load();
        if (group > 0) ::kill(-group, SIGKILL);
    }
}

inline constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
/// The handlers that were there before ours, to chain to.
inline struct sigaction previous_actions[4];

inline void on_signal(int sig, siginfo_t* info, void* context) {
    const int saved_errno = errno;
    kill_live_groups();
    int k = 0;
    while (k < 3 && kSignals[k] != sig) ++k;
    const struct sigaction& prev = previous_actions[k];
    if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction) {
        prev.sa_sigaction(sig, info, context);
    } else if (!(prev.sa_flags & SA_SIGINFO) && prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
        prev.sa_handler(sig);
    } else {
        // The default action (terminate): restore it and raise again; the signal is blocked
        // while this handler runs, so it lands as soon as the handler returns.
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, nullptr);
        raise(sig);
    }
    errno = saved_errno;
}

/// Whether install_signal_handlers has run in this process (a test that forks to stand in for
/// a fresh occam clears it there).
inline std::atomic<bool> handlers_installed{false};

/// Installs the handlers at the first call in the process, and kills the live groups at exit()
/// too. A signal that was ignored (nohup, a background job of a script) stays ignored.
inline void install_signal_handlers() {
    static std::mutex mutex;
    static bool at_exit = false;
    if (handlers_installed.load()) return;
    std::lock_guard<std::mutex> lock(mutex);
    if (handlers_installed.load()) return;
    for (int k = 0; k < 4; ++k) {
        struct sigaction old {};
        if (sigaction(kSignals[k], nullptr, &old) != 0) continue;
        if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN) continue;
        if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_signal) continue;  // never chain to ourselves
        previous_actions[k] = old;  // before ours is in place: the handler never sees a half-written one
        struct sigaction act {};
        act.sa_sigaction = on_signal;
        act.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&act.sa_mask);
        for (int s : kSignals) sigaddset(&act.sa_mask, s);
        sigaction(kSignals[k], &act, nullptr);
    }
    if (!at_exit) std::atexit([] { kill_live_groups(); });
    at_exit = true;
    handlers_installed = true;
}

/// A pipe whose ends close with it. Both ends are O_CLOEXEC (another thread's child must not
/// keep them past its exec: it would hold this child's stdin open) and >= 3, so that the
/// child's dup2 onto 0, 1, 2 cannot overwrite one end with another.
struct Pipe {
    int fd[2] = {-1, -1};
    Pipe() = default;
    Pipe(const Pipe&) = delete;
    Pipe& operator=(const Pipe&) = delete;
    ~Pipe() { close_both(); }
    bool open() {
        if (pipe2(fd, O_CLOEXEC) != 0) return false;
        for (int& f : fd)
            if (f < 3) {
                const int g = fcntl(f, F_DUPFD_CLOEXEC, 3);
                ::close(f);
                f = g;
                if (g < 0) return false;
            }
        return true;
    }
    void close_end(int k) {
        if (fd[k] >= 0) ::close(fd[k]);
        fd[k] = -1;
    }
    void close_both() {
        close_end(0);
        close_end(1);
    }
};

/// Closes every descriptor >= 3 except those in `keep` (sorted, each >= 3). Async-signal-safe:
/// close_range where the kernel has it, else one close() per number up to the descriptor limit.
inline void close_all_but(const int* keep, int n) {
    unsigned lo = 3;
    for (int k = 0; k <= n; ++k) {
        const unsigned hi = k < n ? unsigned(keep[k]) : ~0u;  // close [lo, hi)
        if (hi > lo) {
#ifdef SYS_close_range
            if (syscall(SYS_close_range, lo, hi - 1, 0) == 0) {
                lo = hi + 1;
                continue;
            }
#endif
            struct rlimit limit {};
            const unsigned top = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
                                     ? unsigned(std::min<rlim_t>(limit.rlim_cur, 1u << 20))
                                     : 1u << 20;
            for (unsigned fd = lo; fd < std::min(hi, top); ++fd) ::close(int(fd));
        }
        lo = hi + 1;
    }
}

/// The descriptors of one call, as the supervisor sees them after fork.
struct SupervisorFds {
    int in, out, err;  ///< the program's stdin, stdout, stderr
    int go;            ///< one byte once the parent has registered the group; end-of-file: it is gone
    int status;        ///< execve's errno, if it fails (close-on-exec: end-of-file means it worked)
    int lifeline;      ///< read end of a pipe only occam writes: end-of-file means occam is gone
    int report;        ///< the shell's wait status, written once when it exits
};

/// The supervisor: the child side of fork() in a multithreaded process, so async-signal-safe
/// calls only (another thread may have held any lock at the fork); all signals are blocked on
/// entry. It leads the call's process group, starts `sh -c` in it, reports the shell's exit and
/// then waits on the lifeline. When occam is gone, however it died (SIGKILL included), the
/// lifeline reads end-of-file and the supervisor kills its whole group, itself included: so
/// nothing the program started outlives occam. (A process that leaves the group with setsid
/// escapes; that needs a cgroup or a PID namespace, which occam does not ask for.)
[[noreturn]] inline void supervise(const char* const argv[], SupervisorFds fd) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int s : kSignals) {  // our handler must not run here; an ignored signal stays ignored
        struct sigaction cur {};
        if (sigaction(s, nullptr, &cur) == 0 && ((cur.sa_flags & SA_SIGINFO) || cur.sa_handler != SIG_IGN))
            sigaction(s, &dfl, nullptr);
    }
    sigaction(SIGPIPE, &dfl, nullptr);  // occam ignores SIGPIPE; the program should not inherit that
    setpgid(0, 0);
    if (dup2(fd.in, 0) < 0 || dup2(fd.out, 1) < 0 || dup2(fd.err, 2) < 0) _exit(127);
    // Everything else occam had open goes, above all the other calls' pipes: a supervisor that
    // held another call's stdin or lifeline would keep that call's program or supervisor from
    // ever seeing end-of-file. (The shell gets no copies: what is kept is close-on-exec.)
    int keep[4] = {fd.go, fd.status, fd.lifeline, fd.report};
    std::sort(keep, keep + 4);
    close_all_but(keep, 4);
    // Start nothing before the parent has registered this group, so a signal handler never
    // misses a group that has children.
    char byte = 0;
    ssize_t n;
    do n = ::read(fd.go, &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) _exit(127);
    ::close(fd.go);

    // SIGCHLD wakes the wait below: a handler that does nothing, the signal blocked except
    // inside ppoll, so a child's exit between waitpid and ppoll is not missed.
    struct sigaction wake {};
    wake.sa_handler = [](int) {};
    sigemptyset(&wake.sa_mask);
    sigaction(SIGCHLD, &wake, nullptr);
    const pid_t shell = fork();
    if (shell == 0) {
        sigaction(SIGCHLD, &dfl, nullptr);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        execve("/bin/sh", const_cast<char* const*>(argv), environ);
        const int e = errno;
        ssize_t ignored = ::write(fd.status, &e, sizeof e);
        (void)ignored;
        _exit(127);
    }
    if (shell < 0) {
        const int e = errno;
        ssize_t ignored = ::write(fd.status, &e, sizeof e);
        (void)ignored;
        _exit(127);
    }
    // Only the shell holds the program's pipes now: its exit and its output's end are its own.
    ::close(0);
    ::close(1);
    ::close(2);
    ::close(fd.status);
    bool reported = false;
    for (;;) {
        int st = 0;
        if (!reported && waitpid(shell, &st, WNOHANG) == shell) {
            ssize_t ignored = ::write(fd.report, &st, sizeof st);
            (void)ignored;
            ::close(fd.report);
            reported = true;
        }
        pollfd life = {fd.lifeline, POLLIN, 0};
#ifdef __linux__
        sigset_t chld_open;
        sigfillset(&chld_open);
        sigdelset(&chld_open, SIGCHLD);
        const int r = ppoll(&life, 1, nullptr, &chld_open);
#else
        const int r = poll(&life, 1, reported ? -1 : 20);  // no ppoll: look at the shell every 20 ms
#endif
        // Readable or hung up: occam closed the lifeline (it never writes), on purpose or by dying.
        if (r > 0) break;
    }
    ::kill(0, SIGKILL);  // the whole group, this process last
    _exit(127);
}

/// A supervisor (see supervise) and the process group it leads: registered while it lives;
/// the destructor kills the whole group and reaps the supervisor, so no path out of a call
/// leaves a process behind, and the lifeline takes them all if occam itself dies.
class Child {
public:
    Child(pid_t pid, int lifeline, int report) : pid_(pid), lifeline_(lifeline), report_(report) {
        fcntl(report_, F_SETFL, O_NONBLOCK);
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() {
        if (pid_ > 0) finish();
    }
    bool register_group() {
        slot_ = exec::register_group(pid_);
        return slot_ >= 0;
    }
    /// The supervisor's report pipe: readable when the shell has exited.
    int report_fd() const { return shell_exited_ ? -1 : report_; }
    /// Whether the shell has exited (the group lives on, led by the supervisor, until finish()).
    bool exited() {
        if (shell_exited_) return true;
        int st = 0;
        ssize_t n;
        do n = ::read(report_, &st, sizeof st);
        while (n < 0 && errno == EINTR);
        if (n == ssize_t(sizeof st)) {
            shell_status_ = st;
            shell_exited_ = true;
        } else if (n == 0) {  // the supervisor died without a report: only if someone killed it
            shell_status_ = SIGKILL;  // reads as "killed by signal 9"
            shell_exited_ = true;
        }
        return shell_exited_;
    }
    /// Kills what is left of the group (before reaping the supervisor, so the group id is still
    /// ours), then reaps it; returns the shell's wait status.
    int finish() {
        ::kill(-pid_, SIGKILL);
        unregister_group(slot_);
        slot_ = -1;
        int status = 0;
        while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
        exited();  // a report not read yet; or end-of-file, read as "killed by signal 9"
        ::close(lifeline_);
        ::close(report_);
        return shell_status_;
    }

private:
    pid_t pid_;
    int lifeline_, report_;  ///< owned: the write end of the lifeline, the read end of the report
    int slot_ = -1;
    bool shell_exited_ = false;
    int shell_status_ = 0;
};

}  // namespace detail::exec

/// Runs `sh -c COMMAND` once per fit_predict call (so once per population member per
/// generation, and once per evaluation task), in parallel when the caller uses threads.
///
/// Protocol: stdin receives {"train_x": [[...], ...], "train_y": [...], "test_x": [[...], ...]}
/// (numbers printed with 17 significant digits), then end-of-file; the program must print one
/// JSON object holding "test_y": [...] (one finite number per test row; other members are
/// allowed, nothing else may be printed) and exit with status 0 within the time-out. Whatever
/// it started in its process group is killed when the call ends. Anything else raises a
/// LearnerError quoting the command's stderr, and the calls of this learner then in flight on
/// other threads stop at once with "stopped because another call failed: ..."; the learner is
/// usable again once none is in flight.
class ExternalLearner : public Learner {
public:
    static constexpr double kMaxTimeout = 604800;  ///< one week, in seconds
    static constexpr std::size_t kStdoutBase = std::size_t(16) << 20;  ///< stdout cap: 16 MiB ...
    static constexpr std::size_t kStdoutPerPrediction = 64;  ///< ... plus this per prediction
    static constexpr std::size_t kStderrKept = 64 << 10;  ///< stderr: its first and last 64 KiB

    explicit ExternalLearner(std::string command, double timeout_s = 60.0)
        : command_(std::move(command)), timeout_s_(timeout_s) {
        if (command_.empty()) throw std::invalid_argument("exec learner: the command is empty (use exec:COMMAND)");
        if (!std::isfinite(timeout_s_) || !(timeout_s_ > 0) || timeout_s_ > kMaxTimeout)
            throw std::invalid_argument("exec learner: the time-out must be finite, > 0 and at most 604800 s (one "
                                        "week), not " + seconds(timeout_s_));
        if (!wake_.open()) throw std::runtime_error(std::string("exec learner: cannot create a pipe: ") + std::strerror(errno));
        fcntl(wake_.fd[0], F_SETFL, O_NONBLOCK);
        fcntl(wake_.fd[1], F_SETFL, O_NONBLOCK);
        // Writing to a program that exited early must give an error, not kill us with SIGPIPE
        // (a process-wide setting: embedders who need SIGPIPE should know).
        signal(SIGPIPE, SIG_IGN);
    }
    ExternalLearner(const ExternalLearner&) = delete;
    ExternalLearner& operator=(const ExternalLearner&) = delete;

    std::string describe() const override { return "external program `" + command_ + "`"; }

    ad::Var fit_predict(const ad::Var& x, const ad::Var& y, const ad::Var& xt) override {
        if (y.requires_grad())
            throw LearnerError(describe() +
                               " gives no gradients: meta-learn it with --meta-optimizer des (or snes, "
                               "openai-es, sep-cma-es)");
        if (y.cols() != 1) throw LearnerError(describe() + ": takes one label column");
        InFlight flight(*this);
        try {
            const Eigen::Index n = xt.rows();
            const std::string reply = run(task_json(x.value(), y.value(), xt.value()), n);
            return ad::constant(parse_reply(reply, n));
        } catch (const Stopped&) {
            throw;
        } catch (const std::exception& e) {
            flight.failed(e.what());
            throw;
        }
    }

private:
    /// Thrown by the calls stopped because another one failed; they do not stop others.
    struct Stopped : LearnerError {
        using LearnerError::LearnerError;
    };

    /// Counts the calls in flight. The first failure sets the abort flag and makes the wake pipe
    /// readable, which every call polls; the last call out clears both.
    class InFlight {
    public:
        explicit InFlight(ExternalLearner& l) : l_(l) {
            std::lock_guard<std::mutex> lock(l_.mutex_);
            if (l_.aborted_) throw l_.stopped();  // the others are still stopping: this one too
            ++l_.in_flight_;
        }
        InFlight(const InFlight&) = delete;
        InFlight& operator=(const InFlight&) = delete;
        ~InFlight() {
            std::lock_guard<std::mutex> lock(l_.mutex_);
            if (--l_.in_flight_ == 0 && l_.aborted_) {
                char buf[64];
                while (::read(l_.wake_.fd[0], buf, sizeof buf) > 0) {
                }
                l_.aborted_ = false;
                l_.abort_reason_.clear();
            }
        }
        void failed(const std::string& message) {
            std::lock_guard<std::mutex> lock(l_.mutex_);
            if (l_.aborted_) return;
            // The first failure's own words, without our name in front (the stopped calls add it).
            const std::string prefix = l_.describe() + ": ";
            l_.abort_reason_ = message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message;
            l_.aborted_ = true;
            const char byte = 1;
            ssize_t ignored = ::write(l_.wake_.fd[1], &byte, 1);
            (void)ignored;
        }

    private:
        ExternalLearner& l_;
    };
    /// Call with mutex_ held.
    Stopped stopped() const { return Stopped(describe() + ": stopped because another call failed: " + abort_reason_); }
    bool aborted() {
        std::lock_guard<std::mutex> lock(mutex_);
        return aborted_;
    }

    static void append_rows(std::string& s, const Eigen::Ref<const Eigen::MatrixXd>& m) {
        char buf[32];
        s += '[';
        for (Eigen::Index i = 0; i < m.rows(); ++i) {
            s += i ? ",[" : "[";
            for (Eigen::Index j = 0; j < m.cols(); ++j) {
                std::snprintf(buf, sizeof buf, "%s%.17g", j ? "," : "", m(i, j));
                s += buf;
            }
            s += ']';
        }
        s += ']';
    }
    static std::string task_json(const Eigen::MatrixXd& x, const Eigen::MatrixXd& y, const Eigen::MatrixXd& xt) {
        std::string s = "{\"train_x\": ";
        append_rows(s, x);
        s += ", \"train_y\": [";
        char buf[32];
        for (Eigen::Index i = 0; i < y.rows(); ++i) {
            std::snprintf(buf, sizeof buf, "%s%.17g", i ? "," : "", y(i, 0));
            s += buf;
        }
        s += "], \"test_x\": ";
        append_rows(s, xt);
        s += "}\n";
        return s;
    }

    /// The numbers of "test_y" in the program's output, which must be one JSON object.
    Eigen::MatrixXd parse_reply(const std::string& out, Eigen::Index expected) const {
        std::vector<double> v;
        try {
            v = json::number_array_member(out, "test_y");
        } catch (const json::ReplyError& e) {
            throw LearnerError(describe() + ": " + e.what() + "; it printed: " + printed(out));
        }
        if (Eigen::Index(v.size()) != expected)
            throw LearnerError(describe() + ": it returned " + std::to_string(v.size()) + " predictions for " +
                               std::to_string(expected) + " test points; it printed: " + printed(out));
        return Eigen::Map<Eigen::MatrixXd>(v.data(), Eigen::Index(v.size()), 1);
    }
    /// Whether `out` is already a complete, valid reply.
    static bool valid_reply(const std::string& out, Eigen::Index expected) {
        try {
            return Eigen::Index(json::number_array_member(out, "test_y").size()) == expected;
        } catch (const json::ReplyError&) {
            return false;
        }
    }

    static std::string seconds(double s) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", s);
        return buf;
    }
    static std::string printed(const std::string& s) {
        return s.empty() ? "(nothing)" : json::quote_bytes(s, 200) + (s.size() > 200 ? " (" + std::to_string(s.size()) + " bytes)" : "");
    }

    /// stderr, kept to its first and last kStderrKept bytes.
    struct ErrText {
        std::string head, tail;
        std::size_t total = 0;
        void append(const char* p, std::size_t n) {
            total += n;
            const std::size_t h = std::min(n, kStderrKept - std::min(kStderrKept, head.size()));
            head.append(p, h);
            tail.append(p + h, n - h);
            if (tail.size() > 2 * kStderrKept) tail.erase(0, tail.size() - kStderrKept);
        }
        /// "; its stderr: ..." on one line (its start and its end: a traceback's last line says
        /// what went wrong), or nothing if it wrote none.
        std::string said() const {
            std::string t = head + (total > head.size() + tail.size() ? "\n...\n" : "") + tail;
            while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
            if (t.empty()) return "";
            if (t.size() > 400) t = json::quote_bytes(t.substr(0, 120), 120) + " ... " + json::quote_bytes(t.substr(t.size() - 260), 260);
            else t = json::quote_bytes(t, 400);
            return "; its stderr: " + t;
        }
    };

    LearnerError fail(const std::string& why) const { return LearnerError(describe() + ": " + why); }

    /// Runs the command with `input` on stdin; returns its stdout. Reads and writes with poll,
    /// so a program that prints before it has read everything cannot deadlock us.
    std::string run(const std::string& input, Eigen::Index expected) {
        using clock = std::chrono::steady_clock;
        namespace ex = detail::exec;
        const std::size_t cap = kStdoutBase + kStdoutPerPrediction * std::size_t(std::max<Eigen::Index>(expected, 0));
        ex::Pipe in, out, err, go, status, lifeline, report;
        if (!in.open() || !out.open() || !err.open() || !go.open() || !status.open() || !lifeline.open() ||
            !report.open())
            throw fail(std::string("cannot create pipes: ") + std::strerror(errno));
        ex::install_signal_handlers();
        const char* argv[] = {"sh", "-c", command_.c_str(), nullptr};  // ready before fork: no allocation after
        const ex::SupervisorFds plumbing{in.fd[0], out.fd[1], err.fd[1], go.fd[0], status.fd[1], lifeline.fd[0], report.fd[1]};
        // All signals blocked across fork: the child must not run our handlers.
        sigset_t all, old_mask;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old_mask);
        const pid_t pid = fork();
        if (pid == 0) ex::supervise(argv, plumbing);
        const int fork_errno = errno;
        pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
        if (pid < 0) throw fail(std::string("cannot start /bin/sh: ") + std::strerror(fork_errno));
        ex::Child child(pid, lifeline.fd[1], report.fd[0]);  // owns them from here
        lifeline.fd[1] = report.fd[0] = -1;
        setpgid(pid, pid);  // the supervisor does it too: the group exists whichever runs first
        go.close_end(0);
        if (!child.register_group()) throw fail("more than " + std::to_string(ex::kGroupSlots) + " programs at once");
        const char byte = 1;
        if (::write(go.fd[1], &byte, 1) != 1) throw fail(std::string("cannot start /bin/sh: ") + std::strerror(errno));
        go.close_end(1);
        in.close_end(0);
        out.close_end(1);
        err.close_end(1);
        status.close_end(1);
        lifeline.close_end(0);
        report.close_end(1);
        int exec_errno = 0;  // end-of-file: execve succeeded (the pipe is close-on-exec)
        ssize_t got;
        do got = ::read(status.fd[0], &exec_errno, sizeof exec_errno);
        while (got < 0 && errno == EINTR);
        if (got == ssize_t(sizeof exec_errno)) throw fail(std::string("cannot start /bin/sh: ") + std::strerror(exec_errno));

        fcntl(in.fd[1], F_SETFL, O_NONBLOCK);
        std::string stdout_text;
        ErrText stderr_text;
        std::size_t written = 0;
        bool open_out = true, open_err = true;
        const auto start = clock::now();
        const auto deadline = start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(timeout_s_));
        char buf[65536];
        for (;;) {
            if (aborted()) {
                std::lock_guard<std::mutex> lock(mutex_);
                throw stopped();
            }
            if (!open_out && !open_err && child.exited()) break;
            const auto now = clock::now();
            if (now >= deadline) {
                char elapsed[32];
                std::snprintf(elapsed, sizeof elapsed, "%.1f", std::chrono::duration<double>(now - start).count());
                const std::string limit = seconds(timeout_s_), said = stderr_text.said();
                if (child.exited() && (open_out || open_err))
                    throw fail(std::string("exited, but a process it started still holds its ") +
                               (open_out ? "stdout" : "stderr") + " open (a background job?); killed after " +
                               elapsed + " s (time-out " + limit + " s)" + said);
                if (valid_reply(stdout_text, expected))
                    throw fail("printed its answer but did not exit within " + limit + " s (killed after " + elapsed +
                               " s)" + said);
                throw fail("no answer after " + std::string(elapsed) + " s (time-out " + limit + " s; killed)" + said);
            }
            const long long left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
            pollfd fds[5] = {{open_out ? out.fd[0] : -1, POLLIN, 0},
                             {open_err ? err.fd[0] : -1, POLLIN, 0},
                             {in.fd[1], POLLOUT, 0},
                             {wake_.fd[0], POLLIN, 0},
                             {child.report_fd(), POLLIN, 0}};  // the shell's exit
            if (poll(fds, 5, int(std::min<long long>(left, 1000))) < 0) {
                if (errno == EINTR) continue;
                throw fail(std::string("poll failed: ") + std::strerror(errno));
            }
            if (fds[3].revents) continue;  // another call failed: seen at the top of the loop
            if (fds[4].revents) child.exited();  // reads the report
            if (in.fd[1] >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
                const ssize_t n = ::write(in.fd[1], input.data() + written, input.size() - written);
                if (n > 0) written += std::size_t(n);
                if (n < 0 && errno != EAGAIN && errno != EINTR) written = input.size();  // it closed stdin: stop writing
                if (written == input.size()) in.close_end(1);
            }
            for (int k = 0; k < 2; ++k) {
                if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                const ssize_t n = ::read(fds[k].fd, buf, sizeof buf);
                if (n > 0 && k == 0) {
                    stdout_text.append(buf, std::size_t(n));
                    if (stdout_text.size() > cap)
                        throw fail("wrote more than " + std::to_string(cap) + " bytes to stdout (killed); it printed: " +
                                   printed(stdout_text) + stderr_text.said());
                } else if (n > 0) {
                    stderr_text.append(buf, std::size_t(n));
                } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                    (k == 0 ? open_out : open_err) = false;
                }
            }
        }
        const int st = child.finish();
        const std::string said = stderr_text.said();
        if (WIFSIGNALED(st)) throw fail("killed by signal " + std::to_string(WTERMSIG(st)) + said);
        if (WEXITSTATUS(st) != 0) throw fail("exited with status " + std::to_string(WEXITSTATUS(st)) + said);
        return stdout_text;
    }

    std::string command_;
    double timeout_s_;
    detail::exec::Pipe wake_;  ///< readable while aborted_: wakes the polling calls at once
    std::mutex mutex_;         ///< guards the three below
    int in_flight_ = 0;
    bool aborted_ = false;
    std::string abort_reason_;
};

}  // namespace occam::learners
