// What this file teaches: a learner can be anything that learns from labelled examples: here
// another program (a lab's own model, or an experiment rig). It gets each task as one JSON
// object on stdin and answers with its predictions on stdout. It gives no gradients, so it is
// meta-learned with an evolution strategy. POSIX only (posix_spawn, pipes, poll).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "learner.hpp"

extern char** environ;

namespace occam::learners {

/// Runs `sh -c COMMAND` once per fit_predict call (so once per population member per
/// generation, and once per evaluation task), in parallel when the caller uses threads.
///
/// Protocol: stdin receives {"train_x": [[...], ...], "train_y": [...], "test_x": [[...], ...]}
/// (numbers printed with 17 significant digits), then end-of-file; the program must print
/// {"test_y": [...]} with one finite number per test row and exit with status 0 within the
/// time-out. Anything else raises a LearnerError quoting the command's stderr.
class ExternalLearner : public Learner {
public:
    explicit ExternalLearner(std::string command, double timeout_s = 60.0)
        : command_(std::move(command)), timeout_s_(timeout_s) {
        if (command_.empty()) throw std::invalid_argument("exec learner: the command is empty (use exec:COMMAND)");
        if (!(timeout_s_ > 0)) throw std::invalid_argument("exec learner: the time-out must be > 0 seconds");
        // Writing to a program that exited early must give an error, not kill us with SIGPIPE
        // (a process-wide setting: embedders who need SIGPIPE should know).
        signal(SIGPIPE, SIG_IGN);
    }
    std::string describe() const override { return "external program `" + command_ + "`"; }

    ad::Var fit_predict(const ad::Var& x, const ad::Var& y, const ad::Var& xt) override {
        if (y.requires_grad())
            throw LearnerError(describe() +
                               " gives no gradients: meta-learn it with --meta-optimizer des (or snes, "
                               "openai-es, sep-cma-es)");
        if (y.cols() != 1) throw LearnerError(describe() + ": takes one label column");
        const std::string reply = run(task_json(x.value(), y.value(), xt.value()));
        return ad::constant(parse_reply(reply, xt.rows()));
    }

private:
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

    /// The numbers of "test_y": [...] in the program's output.
    Eigen::MatrixXd parse_reply(const std::string& out, Eigen::Index expected) const {
        auto bad = [&](const std::string& why) {
            return LearnerError(describe() + ": " + why + "; it printed: " + excerpt(out));
        };
        const auto key = out.find("\"test_y\"");
        if (key == std::string::npos) throw bad("the output has no \"test_y\"");
        const char* p = out.c_str() + key + 8;
        while (*p == ' ' || *p == ':' || *p == '\n' || *p == '\t' || *p == '\r') ++p;
        if (*p != '[') throw bad("\"test_y\" is not a list");
        ++p;
        std::vector<double> v;
        for (;;) {
            while (std::isspace(static_cast<unsigned char>(*p))) ++p;
            if (*p == ']' && v.empty()) break;
            char* end = nullptr;
            const double d = std::strtod(p, &end);
            if (end == p) throw bad("\"test_y\" holds something that is not a number");
            if (!std::isfinite(d)) throw bad("\"test_y\" holds a non-finite number");
            v.push_back(d);
            p = end;
            while (std::isspace(static_cast<unsigned char>(*p))) ++p;
            if (*p == ',') {
                ++p;
                continue;
            }
            if (*p == ']') break;
            throw bad("\"test_y\" is not a list of numbers");
        }
        if (Eigen::Index(v.size()) != expected)
            throw bad("it returned " + std::to_string(v.size()) + " predictions for " + std::to_string(expected) +
                      " test points");
        return Eigen::Map<Eigen::MatrixXd>(v.data(), Eigen::Index(v.size()), 1);
    }

    static std::string seconds(double s) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", s);
        return buf;
    }
    static std::string excerpt(const std::string& s) {
        std::string t = s.size() > 300 ? s.substr(0, 300) + "..." : s;
        for (char& c : t)
            if (c == '\n' || c == '\r') c = ' ';
        return t.empty() ? "(nothing)" : t;
    }

    /// Runs the command with `input` on stdin; returns its stdout. Reads and writes with poll,
    /// so a program that prints before it has read everything cannot deadlock us.
    std::string run(const std::string& input) const {
        int in[2], out[2], err[2];
        // O_CLOEXEC: another thread's child must not inherit our pipe ends (it would hold the
        // write end of this child's stdin open, and the child would never see end-of-file).
        if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
            throw LearnerError(describe() + ": cannot create pipes: " + std::strerror(errno));
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, in[0], 0);
        posix_spawn_file_actions_adddup2(&actions, out[1], 1);
        posix_spawn_file_actions_adddup2(&actions, err[1], 2);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);  // its own group: a time-out kills all of it
        posix_spawnattr_setpgroup(&attr, 0);
        const char* argv[] = {"sh", "-c", command_.c_str(), nullptr};
        pid_t pid = 0;
        const int rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, const_cast<char**>(argv), environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        ::close(in[0]);
        ::close(out[1]);
        ::close(err[1]);
        if (rc != 0) {
            ::close(in[1]);
            ::close(out[0]);
            ::close(err[0]);
            throw LearnerError(describe() + ": cannot start /bin/sh: " + std::strerror(rc));
        }
        fcntl(in[1], F_SETFL, O_NONBLOCK);
        std::string stdout_text, stderr_text;
        std::size_t written = 0;
        int to_child = in[1];
        bool open_out = true, open_err = true, timed_out = false;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
        char buf[65536];
        while (open_out || open_err) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                timed_out = true;
                break;
            }
            pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {to_child, POLLOUT, 0}};
            if (!open_out) fds[0].fd = -1;
            if (!open_err) fds[1].fd = -1;
            if (poll(fds, 3, int(std::min<long long>(left.count(), 1000))) < 0 && errno != EINTR) break;
            if (to_child >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
                const ssize_t n = ::write(to_child, input.data() + written, input.size() - written);
                if (n > 0) written += std::size_t(n);
                if (n < 0 && errno != EAGAIN) written = input.size();  // it closed stdin: stop writing
                if (written == input.size()) {
                    ::close(to_child);
                    to_child = -1;
                }
            }
            for (int k = 0; k < 2; ++k) {
                if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                const ssize_t n = ::read(fds[k].fd, buf, sizeof buf);
                if (n > 0)
                    (k == 0 ? stdout_text : stderr_text).append(buf, std::size_t(n));
                else if (n == 0 || errno != EINTR)
                    (k == 0 ? open_out : open_err) = false;
            }
        }
        if (to_child >= 0) ::close(to_child);
        ::close(out[0]);
        ::close(err[0]);
        if (timed_out) kill(-pid, SIGKILL);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        const std::string said = stderr_text.empty() ? "" : "; its stderr: " + excerpt(stderr_text);
        if (timed_out)
            throw LearnerError(describe() + ": no answer within " + seconds(timeout_s_) + " s (killed)" + said);
        if (WIFSIGNALED(status))
            throw LearnerError(describe() + ": killed by signal " + std::to_string(WTERMSIG(status)) + said);
        if (WEXITSTATUS(status) != 0)
            throw LearnerError(describe() + ": exited with status " + std::to_string(WEXITSTATUS(status)) + said);
        return stdout_text;
    }

    std::string command_;
    double timeout_s_;
};

}  // namespace occam::learners
