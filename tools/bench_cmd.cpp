// occam bench: fixed workloads timed as the median of repeated runs after a warm-up.
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "experiment/meta_learning.hpp"
#include "experiment/presets.hpp"
#include "cli.hpp"

namespace occam::cli {
namespace {

using Clock = std::chrono::steady_clock;

/// Median wall time of `body` in seconds over `repeats` runs, after `warmup` runs.
double median_seconds(const std::function<void()>& body, int repeats, int warmup = 3) {
    for (int i = 0; i < warmup; ++i) body();
    std::vector<double> t;
    t.reserve(repeats);
    for (int i = 0; i < repeats; ++i) {
        auto start = Clock::now();
        body();
        t.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    return t[t.size() / 2];
}

/// The tape workload: a 3-20-20-1 ReLU MLP, forward + backward on 30 points, with and without
/// create_graph; and the per-node cost of a tiny (1x1) op, forward and backward.
nlohmann::json tape_workload(int repeats) {
    ad::Rng rng(1, 0);
    const std::vector<int> widths = {3, 20, 20, 1};
    std::vector<Eigen::MatrixXd> init;
    for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
        double bound = 1.0 / std::sqrt(double(widths[l]));
        init.push_back(rng.uniform_matrix(widths[l + 1], widths[l], -bound, bound));
        init.push_back(rng.uniform_matrix(1, widths[l + 1], -bound, bound));
    }
    Eigen::MatrixXd X = rng.normal_matrix(30, 3), Y = rng.normal_matrix(30, 1);

    auto mlp_step = [&](bool create_graph) {
        ad::TapeScope scope;
        std::vector<ad::Var> p = ad::params(init);
        ad::Var h = ad::constant(X);
        for (std::size_t l = 0; l < p.size(); l += 2) {
            h = ad::matmul_nt(h, p[l]) + p[l + 1];
            if (l + 2 < p.size()) h = ad::relu(h);
        }
        ad::Var loss = ad::mean(ad::square(h - ad::constant(Y)));
        auto g = ad::grad(loss, p, {.create_graph = create_graph});
        (void)g;
    };
    const double plain = median_seconds([&] { mlp_step(false); }, repeats);
    const double graph = median_seconds([&] { mlp_step(true); }, repeats);

    const int chain = 100000;
    double fwd = 0, bwd = 0;
    auto chain_step = [&] {
        ad::TapeScope scope;
        ad::Var x = ad::param(Eigen::MatrixXd::Constant(1, 1, 0.3));
        auto t0 = Clock::now();
        ad::Var y = x;
        for (int i = 0; i < chain; ++i) y = y * 0.999999;
        auto t1 = Clock::now();
        auto g = ad::grad(y, {x});
        auto t2 = Clock::now();
        (void)g;
        fwd = std::chrono::duration<double>(t1 - t0).count();
        bwd = std::chrono::duration<double>(t2 - t1).count();
    };
    std::vector<double> fs, bs;
    for (int i = 0; i < std::max(3, repeats / 10); ++i) {
        chain_step();
        fs.push_back(fwd);
        bs.push_back(bwd);
    }
    std::sort(fs.begin(), fs.end());
    std::sort(bs.begin(), bs.end());
    return {{"workload", "tape"},
            {"mlp_fwd_bwd_us", plain * 1e6},
            {"mlp_fwd_bwd_create_graph_us", graph * 1e6},
            {"node_forward_ns", fs[fs.size() / 2] / chain * 1e9},
            {"node_backward_ns", bs[bs.size() / 2] / chain * 1e9}};
}

/// The vector instructions this binary was compiled for (OCCAM_ARCH decides; timings depend on
/// it), and whether the AVX-512 copies of the hot kernels (kernels/lanes.hpp) run here.
std::string compiled_for() {
#if defined(__AVX512F__)
    std::string isa = "AVX-512 + FMA";
#elif defined(__AVX2__) && defined(__FMA__)
    std::string isa = "AVX2 + FMA";
#elif defined(__SSE2__)
    std::string isa = "SSE2";
#else
    std::string isa = "the compiler's default";
#endif
#if !defined(__AVX512F__)
    if (lanes::use_wide()) isa += ", AVX-512 kernels at run time";
#endif
    return isa;
}

/// One meta-step of a preset's experiment (its first function): milliseconds, and the tape's
/// peak memory during the step.
std::pair<double, double> preset_step(const std::string& preset, int repeats, int threads, int population,
                                      bool per_member) {
    experiment::Config c = experiment::find_preset(preset).config;
    c.threads = threads;
    if (population > 0) c.population = population;
    experiment::MetaTrainer t(c);
    t.set_batched_scoring(!per_member);
    double tape_mb = 0;
    const double s = median_seconds([&] { tape_mb = t.step().tape_mb; }, repeats);  // the warm-up fills the arena
    return {1e3 * s, tape_mb};
}

/// The experiment workloads, the preset each one times, and the fewest timed meta-steps (a
/// fig6 meta-step takes seconds).
struct Workload {
    std::string name, preset;
    int min_repeats = 20;
};
const std::vector<Workload> kWorkloads = {{"kernel", "fig2c-kernel"},     {"ridge", "fig2b-ridge"},
                                          {"unrolled", "fig9-mlp"},       {"connectome", "fig7-random"},
                                          {"evolution", "fig8-evolution"}, {"spiking", "fig5-spiking"},
                                          {"mnist", "fig6-mnist", 3}};

}  // namespace

int bench(int argc, char** argv) {
    cxxopts::Options options(argv[0],
                             "Times fixed workloads (median of repeated runs after a warm-up) and prints one line\n"
                             "per workload. Workloads: tape (the autodiff engine itself: a 3-20-20-1 MLP forward\n"
                             "and backward on 30 points, with and without create_graph, and the per-node cost of\n"
                             "a 1x1 op); one meta-step of kernel (fig2c-kernel), ridge (fig2b-ridge), unrolled\n"
                             "(fig9-mlp: 200 unrolled GD steps), connectome (fig7-random) and evolution\n"
                             "(fig8-evolution: one DES generation of 64 members), spiking (fig5-spiking: 50\n"
                             "differentiable Adam steps of a LIF circuit on 32 trials, tested on 256), mnist\n"
                             "(fig6-mnist: 100 SGD steps of a CNN on batches of 20 of 600 MNIST images, tested on\n"
                             "1400, labelled by a CNN meta-learner); all (those seven). Also reports the tape's peak memory per step and the process's peak RSS (run\n"
                             "one workload per process for a per-workload RSS, as bench/compare.sh does).\n"
                             "--population N times the evolution workload with N members per generation, scored\n"
                             "as one batch without a tape (the default) or, with --per-member, one taped\n"
                             "evaluation per member (the same fitness to ~1e-15).");
    options.add_options()("workload", "Workload to time", cxxopts::value<std::string>()->default_value("tape"))(
        "repeats", "Timed repetitions (the median is reported)", cxxopts::value<int>()->default_value("200"))(
        "threads", "Threads inside a step (the evolution workload's population)", cxxopts::value<int>()->default_value("1"))(
        "population", "Members per generation of the evolution workload (default: fig8's 64)", cxxopts::value<int>())(
        "per-member", "Score the evolution workload's members one at a time through the tape")(
        "no-avx512", "Run the AVX2 copies of the hot kernels even on an AVX-512 CPU (what a CPU without "
                     "AVX-512 runs; the same results)")("json", "Print JSON instead of key=value lines");
    bool help = false;
    auto args = parse_or_help(options, argc, argv, help);
    if (help) return 0;
    if (args.count("no-avx512")) lanes::wide_allowed() = false;
    const std::string workload = args["workload"].as<std::string>();
    const int repeats = args["repeats"].as<int>();
    if (repeats < 1) {
        fmt::print(stderr, "occam bench: --repeats must be at least 1 (got {})\n", repeats);
        return kUsageError;
    }
    const int threads = args["threads"].as<int>();
    if (threads < 1 || threads > 1024) {
        fmt::print(stderr, "occam bench: --threads must be between 1 and 1024 (got {})\n", threads);
        return kUsageError;
    }
    int population = 0;  // the preset's
    if (args.count("population")) {
        population = args["population"].as<int>();
        if (workload != "evolution") {
            fmt::print(stderr, "occam bench: --population is for --workload evolution\n");
            return kUsageError;
        }
        if (population < 2 || population > 1 << 20) {
            fmt::print(stderr, "occam bench: --population must be from 2 to 1048576 (got {})\n", population);
            return kUsageError;
        }
    }
    const bool per_member = args.count("per-member") > 0;
    if (per_member && workload != "evolution") {
        fmt::print(stderr, "occam bench: --per-member is for --workload evolution\n");
        return kUsageError;
    }
    if (workload != "tape") {
        nlohmann::json all = nlohmann::json::array();
        bool known = workload == "all";
        for (const auto& [name, preset, min_repeats] : kWorkloads) {
            if (workload != "all" && workload != name) continue;
            known = true;
            const auto [ms, tape_mb] =
                preset_step(preset, std::max(min_repeats, std::min(repeats, 200)), threads, population, per_member);
            const double rss = peak_rss_mb();
            std::string members = population > 0 ? fmt::format(" population={}", population) : "";
            if (name == "evolution") members += per_member ? " scoring=per-member" : " scoring=batched";
            if (args.count("json")) {
                all.push_back({{"workload", name}, {"preset", preset}, {"ms_per_step", ms}, {"tape_mb", tape_mb},
                               {"peak_rss_mb", rss}, {"compiled_for", compiled_for()}});
                if (population > 0) all.back()["population"] = population;
                if (name == "evolution") all.back()["scoring"] = per_member ? "per-member" : "batched";
            } else {
                fmt::print("workload={}{} ms_per_step={:.3f} tape_mb={:.1f} peak_rss_mb={:.0f} compiled_for=\"{}\"\n",
                           name, members, ms, tape_mb, rss, compiled_for());
            }
        }
        if (!known) {
            fmt::print(stderr,
                       "occam bench: unknown workload '{}' (known: tape, kernel, ridge, unrolled, connectome, evolution, spiking, mnist, all)\n",
                       workload);
            return kUsageError;
        }
        if (args.count("json")) fmt::print("{}\n", all.dump(2));
        return 0;
    }
    nlohmann::json r = tape_workload(repeats);
    if (args.count("json")) {
        fmt::print("{}\n", r.dump(2));
    } else {
        fmt::print("workload=tape mlp_fwd_bwd_us={:.2f} mlp_fwd_bwd_create_graph_us={:.2f} node_forward_ns={:.1f} "
                   "node_backward_ns={:.1f}\n",
                   r["mlp_fwd_bwd_us"].get<double>(), r["mlp_fwd_bwd_create_graph_us"].get<double>(),
                   r["node_forward_ns"].get<double>(), r["node_backward_ns"].get<double>());
    }
    return 0;
}

}  // namespace occam::cli
