// The exec learner: its strict reply parser (each class of invalid reply), and that a program
// which hangs, answers without exiting, leaves a job behind or floods stdout gives one clear
// line, stops the other calls in flight, and leaves no process behind, even when occam dies.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "learners/external.hpp"
#include "learners/json_reply.hpp"

using namespace occam;
using learners::ExternalLearner;
using learners::json::number_array_member;

namespace {

/// The parser's message for `text`, or "" if it is accepted.
std::string reply_error(std::string_view text) {
    try {
        number_array_member(text, "test_y");
    } catch (const learners::json::ReplyError& e) {
        return e.what();
    }
    return "";
}

Eigen::MatrixXd call(ExternalLearner& l, double label = 0, int n_test = 2) {
    ad::TapeScope scope;
    const Eigen::MatrixXd x = Eigen::MatrixXd::Zero(3, 2), y = Eigen::MatrixXd::Constant(3, 1, label),
                          xt = Eigen::MatrixXd::Zero(n_test, 2);
    return l.fit_predict(ad::constant(x), ad::constant(y), ad::constant(xt)).value();
}

/// The call's error message ("" if none) and how long it took.
struct Failure {
    std::string message;
    double seconds = 0;
};
Failure failure(ExternalLearner& l, double label = 0) {
    const auto t0 = std::chrono::steady_clock::now();
    Failure f;
    try {
        call(l, label);
    } catch (const learners::LearnerError& e) {
        f.message = e.what();
    }
    f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return f;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// A file the learner's shell writes its pid (= its process group) to.
struct PidFile {
    std::string path = (std::filesystem::temp_directory_path() /
                        ("occam_exec_test_" + std::to_string(getpid()) + "_" + std::to_string(counter()++)))
                           .string();
    ~PidFile() { std::remove(path.c_str()); }
    static int& counter() {
        static int n = 0;
        return n;
    }
    /// Waits up to 5 s for the pid; 0 if none came.
    pid_t read() const {
        for (int i = 0; i < 500; ++i) {
            std::ifstream f(path);
            long pid = 0;
            if (f >> pid && pid > 0) return pid_t(pid);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return 0;
    }
};

/// A shell command that writes the process group of the shell running it (led by the call's
/// supervisor, so not the shell's own pid) to `path`.
std::string write_group(const std::string& path) { return "ps -o pgid= -p $$ > " + path; }

/// Forks a process that stands in for a fresh occam: it runs one call of `command`, which
/// would outlive it. doctest's crash handler replaces SIGTERM's during each test case, so the
/// child goes back to a fresh process's default and the learner installs its handler again.
pid_t fork_occam(const std::string& command) {
    const pid_t occam = fork();
    if (occam != 0) return occam;
    signal(SIGTERM, SIG_DFL);
    learners::detail::exec::handlers_installed = false;
    ExternalLearner l(command, 600);
    try {
        call(l);
    } catch (...) {
    }
    _exit(0);
}

/// Whether no process is left in the group (allowing init a moment to reap the killed ones).
bool group_gone(pid_t group) {
    for (int i = 0; i < 300; ++i) {
        if (kill(-group, 0) != 0 && errno == ESRCH) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

}  // namespace

TEST_CASE("exec reply: a valid object gives its test_y, whatever else it holds") {
    CHECK(number_array_member("{\"test_y\": [1, -2.5, 3e2, 0, -0, 1E-3, 0.5e+1]}", "test_y") ==
          std::vector<double>{1, -2.5, 300, 0, -0.0, 1e-3, 5});
    CHECK(number_array_member(" \t\r\n{\"test_y\":[]}\n\n", "test_y").empty());
    CHECK(number_array_member("{\"a\": {\"b\": [true, false, null, \"x\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\"]},"
                              " \"test_y\": [7], \"c\": \"\xc3\xa9\xf0\x9f\x98\x80\", \"d\": {}, \"e\": [[]], "
                              "\"f\": 1e999}",
                              "test_y") == std::vector<double>{7});
    CHECK(number_array_member("{\"test_y\": [1e-400, -1e-400]}", "test_y") == std::vector<double>{0, 0});
    CHECK(number_array_member("{\"test_y\": [1.7976931348623157e308]}", "test_y")[0] ==
          std::numeric_limits<double>::max());
    // 64 levels with the outer object are allowed.
    CHECK(reply_error("{\"test_y\": [1], \"a\": " + std::string(63, '[') + std::string(63, ']') + "}") == "");
}

TEST_CASE("exec reply: each kind of invalid reply is refused with what and where") {
    struct Case {
        const char* text;
        const char* says;
    };
    const Case cases[] = {
        {"", "the output is empty"},
        {" \n", "only whitespace"},
        {"hello", "must be a JSON object"},
        {"[1, 2]", "must be a JSON object"},
        {"{\"test_y\": [1]} x", "at byte 17: text after the JSON object"},
        {"{\"test_y\": [1]}{}", "text after the JSON object"},
        {"{\"test_y\": [1]}\n{\"test_y\": [2]}", "text after the JSON object"},
        {"{\"test_y\": [1], \"test_y\": [2]}", "the key \"test_y\" appears twice"},
        {"{\"test_y\": [1], \"test\\u005fy\": [2]}", "appears twice"},
        {"{\"a\": {\"k\": 1, \"k\": 2}, \"test_y\": [1]}", "the key \"k\" appears twice"},
        {"{\"test_y\": [0x1p3]}", "hex numbers are not JSON"},
        {"{\"test_y\": [NaN]}", "non-finite"},
        {"{\"test_y\": [nan]}", "non-finite"},
        {"{\"test_y\": [Infinity]}", "non-finite"},
        {"{\"test_y\": [-Infinity]}", "non-finite"},
        {"{\"test_y\": [inf]}", "non-finite"},
        {"{\"test_y\": [+1]}", "may not start with '+'"},
        {"{\"test_y\": [01]}", "leading zero"},
        {"{\"test_y\": [-012]}", "leading zero"},
        {"{\"test_y\": [.5]}", "must start with a digit"},
        {"{\"test_y\": [1.]}", "'.' in a number must be followed by a digit"},
        {"{\"test_y\": [1e]}", "an exponent needs a digit"},
        {"{\"test_y\": [1.5.2]}", "malformed number"},
        {"{\"test_y\": [1,]}", "a ',' before ']'"},
        {"{\"test_y\": [1 2]}", "expected ',' or ']'"},
        {"{\"test_y\": [1],}", "a ',' before '}'"},
        {"{\"test_y\" [1]}", "expected ':'"},
        {"{test_y: [1]}", "expected a key in double quotes"},
        {"{'test_y': [1]}", "expected a key in double quotes"},
        {"{\"test_y\": [1]", "ends inside an object"},
        {"{\"test_y\": [1", "ends inside an array"},
        {"{\"test_y\": [tru]}", "not true, false or null"},
        {"{\"a\": \"x\ty\", \"test_y\": [1]}", "control byte (\\x09)"},
        {"{\"a\": \"\\x41\", \"test_y\": [1]}", "invalid escape"},
        {"{\"a\": \"\\u12\", \"test_y\": [1]}", "four hex digits"},
        {"{\"a\": \"\\udc00\", \"test_y\": [1]}", "lone low surrogate"},
        {"{\"a\": \"\\ud800x\", \"test_y\": [1]}", "without its low half"},
        {"{\"a\": \"\xff\", \"test_y\": [1]}", "invalid UTF-8 (byte \\xFF)"},
        {"{\"a\": \"\xc0\xaf\", \"test_y\": [1]}", "invalid UTF-8"},       // overlong '/'
        {"{\"a\": \"\xed\xa0\x80\", \"test_y\": [1]}", "invalid UTF-8"},   // an encoded surrogate
        {"{\"a\": \"\xf4\x90\x80\x80\", \"test_y\": [1]}", "invalid UTF-8"},  // above U+10FFFF
        {"{\"a\": \"unclosed, \"test_y\": [1]}", "at byte 19: expected ',' or '}'"},
        {"{\"a\": \"unclosed}", "a string is not closed"},
        {"\xef\xbb\xbf{\"test_y\": [1]}", "must be a JSON object"},  // a byte-order mark
        {"{\"y\": [1]}", "the reply has no \"test_y\""},
        {"{\"a\": {\"test_y\": [1]}}", "the reply has no \"test_y\""},  // only the top level counts
        {"{\"test_y\": 1}", "\"test_y\" is not a list"},
        {"{\"test_y\": [1, \"2\"]}", "holds something that is not a number (item 2)"},
        {"{\"test_y\": [[1]]}", "not a number (item 1)"},
        {"{\"test_y\": [1e999]}", "beyond the range of a double (item 1: 1e999)"},
        {"{\"test_y\": [-2.5e400]}", "beyond the range of a double"},
    };
    for (const Case& c : cases) {
        const std::string text = c.text, e = reply_error(c.text);
        CAPTURE(text);
        CAPTURE(e);
        CHECK(contains(e, c.says));
        CHECK(e.find('\n') == std::string::npos);
    }
    // Nesting beyond 64 levels is refused, and a very deep document does not overflow the stack.
    CHECK(contains(reply_error("{\"test_y\": [1], \"a\": " + std::string(64, '[') + std::string(64, ']') + "}"),
                   "nested deeper than 64 levels"));
    CHECK(contains(reply_error("{\"a\": " + std::string(1000000, '[')), "nested deeper than 64 levels"));
}

TEST_CASE("exec reply: quoted output is one printable line") {
    CHECK(learners::json::quote_bytes("a\nb\t\x01\xff\\", 100) == "a\\nb\\t\\x01\\xFF\\\\");
    CHECK(learners::json::quote_bytes("abcdef", 3) == "abc...");
}

TEST_CASE("exec learner: the time-out must be finite, > 0 and at most a week") {
    for (double t : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity(), 1e300, 604800.5}) {
        CAPTURE(t);
        CHECK_THROWS_AS(ExternalLearner("true", t), std::invalid_argument);
    }
    CHECK_NOTHROW(ExternalLearner("true", 604800));
    CHECK_NOTHROW(ExternalLearner("true", 1e-3));
    CHECK_THROWS_AS(ExternalLearner("", 1), std::invalid_argument);
}

TEST_CASE("exec learner: a valid reply is read; a failure quotes its stderr") {
    ExternalLearner ok("cat > /dev/null; echo '{\"test_y\": [1.5, -2], \"note\": \"fine\"}'");
    const Eigen::MatrixXd p = call(ok);
    REQUIRE(p.rows() == 2);
    CHECK(p(0, 0) == 1.5);
    CHECK(p(1, 0) == -2);
    ExternalLearner bad("echo broken model >&2; exit 3");
    const Failure f = failure(bad);
    CHECK(contains(f.message, "external program `echo broken model >&2; exit 3`: exited with status 3; its stderr: broken model"));
    ExternalLearner garbage("cat > /dev/null; printf '{\"test_y\": [1, 2]} \\001trailing'");
    const Failure g = failure(garbage);
    CHECK(contains(g.message, "text after the JSON object; it printed: {\"test_y\": [1, 2]} \\x01trailing"));
}

TEST_CASE("exec learner: a time-out reports the real elapsed time") {
    ExternalLearner l("sleep 30", 0.5);
    const Failure f = failure(l);
    CAPTURE(f.message);
    CHECK(contains(f.message, ": no answer after 0."));
    CHECK(contains(f.message, " s (time-out 0.5 s; killed)"));
    CHECK(f.seconds >= 0.5);
    CHECK(f.seconds < 2.0);
    CHECK(f.message.find('\n') == std::string::npos);
}

TEST_CASE("exec learner: one failing call stops the others in flight at once, then the learner is usable again") {
    // Labels 1: fails after 0.3 s; labels 2: hangs; anything else: answers.
    ExternalLearner l(
        "in=$(cat); case \"$in\" in *'\"train_y\": [1,'*) sleep 0.3; echo failing >&2; exit 3;; "
        "*'\"train_y\": [2,'*) sleep 30;; *) echo '{\"test_y\": [0, 0]}';; esac",
        60);
    Failure hung, failed;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread a([&] { hung = failure(l, 2); });
    std::thread b([&] { failed = failure(l, 1); });
    a.join();
    b.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CAPTURE(hung.message);
    CAPTURE(failed.message);
    CHECK(seconds < 2.0);
    CHECK(contains(failed.message, "exited with status 3; its stderr: failing"));
    CHECK(contains(hung.message, "stopped because another call failed: exited with status 3"));
    // Nothing in flight: the abort is cleared.
    CHECK(call(l, 3).rows() == 2);
    CHECK(contains(failure(l, 1).message, "exited with status 3"));
    CHECK(call(l, 3).rows() == 2);
}

TEST_CASE("exec learner: a time-out in one call stops the others too") {
    ExternalLearner l("in=$(cat); case \"$in\" in *'\"train_y\": [1,'*) sleep 30;; *) sleep 0.3; sleep 30;; esac", 0.5);
    Failure first, second;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread a([&] { first = failure(l, 1); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // starts 0.2 s later: times out later
    std::thread b([&] { second = failure(l, 2); });
    a.join();
    b.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CAPTURE(first.message);
    CAPTURE(second.message);
    CHECK(seconds < 2.0);
    CHECK(contains(first.message, "no answer after"));
    CHECK(contains(second.message, "stopped because another call failed: no answer after"));
}

TEST_CASE("exec learner: an answer without an exit is told apart from no answer") {
    ExternalLearner lingering("cat > /dev/null; echo '{\"test_y\": [0, 0]}'; sleep 30", 0.5);
    const Failure f = failure(lingering);
    CAPTURE(f.message);
    CHECK(contains(f.message, "printed its answer but did not exit within 0.5 s (killed after"));
    CHECK(f.seconds < 2.0);

    ExternalLearner background("cat > /dev/null; echo '{\"test_y\": [0, 0]}'; sleep 30 &", 0.5);
    const Failure g = failure(background);
    CAPTURE(g.message);
    CHECK(contains(g.message, "exited, but a process it started still holds its stdout open (a background job?)"));
    CHECK(g.seconds < 2.0);
}

TEST_CASE("exec learner: stdout is capped") {
    ExternalLearner flood("cat > /dev/null; yes", 30);
    const Failure f = failure(flood);
    CAPTURE(f.message.substr(0, 300));
    CHECK(contains(f.message, "wrote more than " + std::to_string((16 << 20) + 2 * 64) + " bytes to stdout"));
    CHECK(f.message.size() < 1000);
}

TEST_CASE("exec learner: no process of a call outlives it") {
    SUBCASE("after a time-out, a background job included") {
        PidFile pids;
        ExternalLearner l(write_group(pids.path) + "; sleep 30 & sleep 30", 0.5);
        CHECK(contains(failure(l).message, "no answer after"));
        const pid_t group = pids.read();
        REQUIRE(group > 0);
        CHECK(group_gone(group));
    }
    SUBCASE("after a success, a job that let go of its output included") {
        PidFile pids;
        ExternalLearner l("cat > /dev/null; " + write_group(pids.path) +
                          "; sleep 30 > /dev/null 2>&1 & echo '{\"test_y\": [0, 0]}'");
        CHECK(call(l).rows() == 2);
        const pid_t group = pids.read();
        REQUIRE(group > 0);
        CHECK(group_gone(group));
    }
}

TEST_CASE("exec learner: SIGTERM to occam kills the running programs before it dies") {
    struct sigaction cur {};
    sigaction(SIGTERM, nullptr, &cur);
    if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_IGN) {
        MESSAGE("SIGTERM is ignored here: skipped");
        return;
    }
    PidFile pids;
    const pid_t occam = fork_occam(write_group(pids.path) + "; sleep 300 & sleep 300");
    REQUIRE(occam >= 0);
    const pid_t group = pids.read();
    REQUIRE(group > 0);
    kill(occam, SIGTERM);
    int status = 0;
    waitpid(occam, &status, 0);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGTERM);
    const bool gone = group_gone(group);
    CHECK(gone);
    if (!gone) kill(-group, SIGKILL);  // not to leave it behind
}

TEST_CASE("exec learner: occam killed by SIGKILL takes the program and its jobs with it") {
    // No handler sees SIGKILL: the supervisor sees its lifeline close and kills its group.
    PidFile pids;
    const pid_t occam = fork_occam(write_group(pids.path) + "; sleep 300 & sleep 300 & exec sleep 300");
    REQUIRE(occam >= 0);
    const pid_t group = pids.read();
    REQUIRE(group > 0);
    kill(occam, SIGKILL);
    int status = 0;
    waitpid(occam, &status, 0);
    const bool gone = group_gone(group);
    CHECK(gone);
    if (!gone) kill(-group, SIGKILL);  // not to leave it behind
}

#ifdef __linux__
TEST_CASE("exec learner: calls from many threads leave no file descriptor behind") {
    auto open_fds = [] {
        return std::distance(std::filesystem::directory_iterator("/proc/self/fd"), std::filesystem::directory_iterator{});
    };
    ExternalLearner l("in=$(cat); case \"$in\" in *'\"train_y\": [1,'*) exit 3;; *) echo '{\"test_y\": [0, 0]}';; esac");
    call(l);  // the learner's own wake pipe and the first call's one-time set-up
    const auto before = open_fds();
    std::vector<std::thread> threads;
    std::atomic<int> answers{0}, errors{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 10; ++i) {
                try {
                    call(l, (t == 0 && i == 5) ? 1 : 0);
                    ++answers;
                } catch (const learners::LearnerError&) {
                    ++errors;
                }
            }
        });
    for (std::thread& t : threads) t.join();
    CHECK(answers + errors == 40);
    CHECK(errors >= 1);
    CHECK(open_fds() == before);
    CHECK(call(l).rows() == 2);  // usable again
}
#endif
