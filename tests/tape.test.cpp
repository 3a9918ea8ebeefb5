// The tape itself: deep graphs, scopes and memory, gradient modes, fan-out, and the errors
// grad() raises instead of returning silently wrong numbers.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>

#include "autodiff/autodiff.hpp"

using namespace occam;

TEST_CASE("tape: a 100000-node chain differentiates without recursion and frees its memory") {
    ad::Tape& t = ad::tape();
    const std::size_t nodes_before = t.size();
    const std::size_t bytes_before = t.arena.bytes_in_use();
    {
        ad::TapeScope scope;
        ad::Var x = ad::param(Eigen::MatrixXd::Constant(1, 1, 0.5));
        ad::Var y = x;
        const int n = 100000;
        for (int i = 0; i < n; ++i) y = ad::sin(y) * 0.5 + y * 0.5;  // 4 nodes a step
        CHECK(t.size() >= nodes_before + 4 * n);
        // Reference derivative by the chain rule on doubles.
        double v = 0.5, d = 1.0;
        for (int i = 0; i < n; ++i) {
            d *= 0.5 * std::cos(v) + 0.5;
            v = 0.5 * std::sin(v) + 0.5 * v;
        }
        CHECK(y.item() == doctest::Approx(v).epsilon(1e-12));
        ad::Var g = ad::grad(y, {x})[0];
        CHECK(g.item() == doctest::Approx(d).epsilon(1e-9));
        CHECK(t.arena.bytes_in_use() > bytes_before);
    }
    CHECK(t.size() == nodes_before);
    CHECK(t.arena.bytes_in_use() == bytes_before);
}

TEST_CASE("tape: repeated scopes reuse memory (no growth across meta-steps)") {
    ad::Tape& t = ad::tape();
    Eigen::MatrixXd w = Eigen::MatrixXd::Constant(20, 20, 0.01);
    std::size_t reserved_after_first = 0;
    for (int step = 0; step < 5; ++step) {
        ad::TapeScope scope;
        ad::Var W = ad::param(w);
        ad::Var loss = ad::sum(ad::tanh(ad::matmul(W, W)));
        ad::Var g = ad::grad(loss, {W}, {.create_graph = true})[0];
        ad::Var gg = ad::grad(ad::sum(ad::square(g)), {W})[0];
        w -= 0.1 * Eigen::MatrixXd(ad::value(gg));
        if (step == 0) reserved_after_first = t.arena.bytes_reserved();
    }
    CHECK(t.arena.bytes_reserved() == reserved_after_first);
}

TEST_CASE("tape: the arena reserves little beyond what it hands out, however large the step") {
    // Blocks double up to Arena::kMaxGrowth and no further: 40 allocations of 10 MiB (untouched,
    // so this costs no memory) reserve at most one block's worth more than they use. Doubling
    // without a cap reserved 496 MiB for these 400 (and fig6's 281 MB tape 520 MB).
    ad::Arena arena;
    const std::size_t piece = std::size_t(10) << 20, pieces = 40;
    for (std::size_t k = 0; k < pieces; ++k) CHECK(arena.allocate(piece) != nullptr);
    CHECK(arena.bytes_in_use() == pieces * piece);
    CHECK(arena.bytes_reserved() <= pieces * piece + ad::Arena::kMaxGrowth);
    // One allocation past the cap gets a block of its own size, and a second step reuses it all.
    const ad::Arena::Mark start = arena.mark();
    CHECK(arena.allocate(3 * ad::Arena::kMaxGrowth) != nullptr);
    const std::size_t reserved = arena.bytes_reserved();
    arena.rewind(start);
    CHECK(arena.allocate(3 * ad::Arena::kMaxGrowth) != nullptr);
    CHECK(arena.bytes_reserved() == reserved);
    // Rewound to the start, release_unused() hands back every block above the current one (occam
    // run does this before its analysis, whose passes would otherwise fault in the steps'
    // untouched block tails), and the arena still serves what comes next.
    arena.rewind(ad::Arena::Mark{});
    arena.release_unused();
    CHECK(arena.bytes_reserved() <= std::size_t(16) << 20);
    CHECK(arena.allocate(piece) != nullptr);
    CHECK(arena.bytes_in_use() == piece);
}

TEST_CASE("tape: the arena's large blocks start on a huge page and ask Linux for huge pages") {
    // fig6's kernels read tape values a column of 2000 images (16 KB) at a time: on 4 KB pages
    // each column is a TLB miss. Blocks of kHugePage or more start on a kHugePage boundary and,
    // on Linux, are marked for transparent huge pages (the mapping's VmFlags show "hg").
    ad::Arena arena;
    CHECK(arena.allocate(1000) != nullptr);  // the first, small block
    void* big = arena.allocate(3 * ad::Arena::kHugePage);
    CHECK(reinterpret_cast<std::uintptr_t>(big) % ad::Arena::kHugePage == 0);
#if defined(__linux__)
    // Only where the kernel has transparent huge pages and reports the mappings' flags (a
    // sandbox may have neither).
    if (!std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled")) return;
    std::ifstream maps("/proc/self/smaps");
    std::string line, flags;
    bool inside = false;
    const auto at = reinterpret_cast<std::uintptr_t>(big);
    while (std::getline(maps, line)) {
        unsigned long lo = 0, hi = 0;  // a mapping's first line: "lo-hi perms offset ..."
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) inside = lo <= at && at < hi;
        else if (inside && line.rfind("VmFlags:", 0) == 0) flags = line;
    }
    if (flags.empty()) return;
    INFO("the block's mapping: " << flags);
    CHECK(flags.find(" hg") != std::string::npos);
#endif
}

TEST_CASE("tape: arena addresses are aligned in memory, and its byte count ignores the block layout") {
    // Whatever malloc returns for a block, an allocation aligned to A sits at an address
    // that is a multiple of A (Eigen's summation order depends on it), and bytes_in_use() is the
    // same for the same allocation sequence whatever blocks an earlier run left behind.
    std::vector<std::size_t> counts;
    for (std::size_t first_block : {100u, 1000u, 4096u, 1u << 20}) {
        ad::Arena arena(first_block);
        for (int warm = 0; warm < 2; ++warm) {  // the second round reuses the blocks of the first
            const ad::Arena::Mark m = arena.mark();
            for (std::size_t i = 1; i <= 300; ++i) {
                const std::size_t align = std::size_t(8) << (i % 4);  // 8, 16, 32, 64
                void* p = arena.allocate(8 * i + 8, align);
                CHECK(reinterpret_cast<std::uintptr_t>(p) % align == 0);
            }
            counts.push_back(arena.bytes_in_use());
            arena.rewind(m);
            CHECK(arena.bytes_in_use() == 0);
        }
    }
    for (std::size_t c : counts) CHECK(c == counts[0]);
}

TEST_CASE("tape: scopes nest, and an inner scope frees only its own nodes") {
    ad::TapeScope outer;
    ad::Var x = ad::param(Eigen::MatrixXd::Constant(2, 2, 1.5));
    ad::Var y = ad::exp(x);
    const std::size_t n = ad::tape().size();
    {
        ad::TapeScope inner;
        ad::Var z = ad::sum(y * y);
        CHECK(ad::tape().size() > n);
        CHECK(ad::grad(z, {x})[0].value()(0, 0) == doctest::Approx(2 * std::exp(3.0)));
    }
    CHECK(ad::tape().size() == n);
    CHECK(ad::grad(ad::sum(y), {x})[0].value()(1, 1) == doctest::Approx(std::exp(1.5)));
}

TEST_CASE("tape: reused nodes accumulate gradients (micrograd's b = a + a; c = b + b)") {
    ad::TapeScope scope;
    ad::Var a = ad::param(Eigen::MatrixXd::Constant(1, 1, -4.0));
    ad::Var b = a + a;
    ad::Var c = b + b;
    CHECK(ad::grad(c, {a})[0].item() == 4.0);
    ad::Var d = a * a * a;  // fan-out through mul: d' = 3a^2
    CHECK(ad::grad(d, {a})[0].item() == doctest::Approx(48.0));
}

TEST_CASE("tape: create_graph records the backward pass, and without it nothing needs a gradient") {
    ad::TapeScope scope;
    ad::Var x = ad::param(Eigen::MatrixXd::Constant(1, 1, 2.0));
    ad::Var y = x * x * x;
    ad::Var g_plain = ad::grad(y, {x})[0];
    CHECK_FALSE(g_plain.requires_grad());
    ad::Var g = ad::grad(y, {x}, {.create_graph = true})[0];
    CHECK(g.requires_grad());
    CHECK(g.item() == doctest::Approx(12.0));   // 3x^2
    ad::Var h = ad::grad(g, {x}, {.create_graph = true})[0];
    CHECK(h.item() == doctest::Approx(12.0));   // 6x
    ad::Var k = ad::grad(h, {x})[0];
    CHECK(k.item() == doctest::Approx(6.0));    // third derivative
}

TEST_CASE("tape: no-grad scope, detach and constants carry no gradient") {
    ad::TapeScope scope;
    ad::Var x = ad::param(Eigen::MatrixXd::Constant(2, 1, 3.0));
    {
        ad::NoGradGuard no_grad;
        ad::Var y = x * x;
        CHECK_FALSE(y.requires_grad());
        CHECK(y.value()(0, 0) == 9.0);
    }
    CHECK(ad::grad_enabled());
    ad::Var d = ad::detach(x);
    CHECK_FALSE(d.requires_grad());
    ad::Var y = ad::sum(x * d);  // d/dx = d = 3, not 2x = 6
    CHECK(ad::grad(y, {x})[0].value()(1, 0) == 3.0);
}

TEST_CASE("tape: grad raises clear errors") {
    ad::TapeScope scope;
    ad::Var x = ad::param(Eigen::MatrixXd::Constant(2, 2, 1.0));
    ad::Var unused = ad::param(Eigen::MatrixXd::Constant(1, 3, 1.0));
    ad::Var y = ad::sum(x * x);
    CHECK_THROWS_WITH_AS(ad::grad(y, {x, unused}),
                         "ad::grad: input 1 (1x3) does not influence the output; pass {.allow_unused = true} "
                         "to get zeros",
                         ad::Error);
    auto g = ad::grad(y, {x, unused}, {.allow_unused = true});
    CHECK(g[1].value().isZero());
    CHECK(g[1].rows() == 1);
    CHECK_THROWS_AS(ad::grad(x * x, {x}), ad::ShapeError);  // non-scalar output without a seed
    auto gs = ad::grad(x * x, {x}, {}, ad::constant(Eigen::MatrixXd::Ones(2, 2)));
    CHECK(gs[0].value()(0, 1) == 2.0);
    CHECK_THROWS_AS(ad::grad(y, {x}, {}, ad::constant(Eigen::MatrixXd::Ones(2, 2))), ad::ShapeError);
    ad::Var dead;
    {
        ad::TapeScope inner;
        dead = ad::param(Eigen::MatrixXd::Ones(1, 1));
    }
    ad::Var fresh = ad::sum(x);
    (void)fresh;
    CHECK_THROWS_AS(ad::grad(y, {dead}), ad::Error);
}

TEST_CASE("tape: set_value changes a leaf in place, and only a leaf") {
    ad::TapeScope scope;
    ad::Var w = ad::param(Eigen::MatrixXd::Constant(1, 1, 1.0));
    ad::set_value(w, Eigen::MatrixXd::Constant(1, 1, 5.0));
    CHECK(w.item() == 5.0);
    CHECK_THROWS_AS(ad::set_value(w * w, Eigen::MatrixXd::Zero(1, 1)), ad::Error);
    CHECK_THROWS_AS(ad::set_value(w, Eigen::MatrixXd::Zero(2, 1)), ad::ShapeError);
}

TEST_CASE("tape: the meta-gradient through unrolled gradient descent matches finite differences") {
    // Inner problem: fit w to labels y by 3 steps of GD on sum((X w - y)^2); outer loss: the
    // fitted model's error on held-out points. Differentiate the outer loss w.r.t. y.
    ad::Rng rng(5, 0);
    Eigen::MatrixXd X = rng.normal_matrix(6, 2), Xt = rng.normal_matrix(4, 2), yt = rng.normal_matrix(4, 1);
    Eigen::MatrixXd y0 = rng.normal_matrix(6, 1);
    ad::CheckFn run = [&](const std::vector<ad::Var>& in) {
        ad::Var y = in[0];
        ad::Var w = ad::param(Eigen::MatrixXd::Zero(2, 1));
        ad::Var w_cur = w;
        for (int s = 0; s < 3; ++s) {
            ad::Var r = ad::matmul(ad::constant(X), ad::tanh(w_cur)) - y;
            ad::Var g = ad::grad(ad::sum(ad::square(r)), {w_cur}, {.create_graph = true})[0];
            w_cur = w_cur - 0.05 * g;
        }
        return ad::mean(ad::square(ad::matmul(ad::constant(Xt), ad::tanh(w_cur)) - ad::constant(yt)));
    };
    CHECK(ad::gradcheck(run, {y0}).ok);
    CHECK(ad::gradgradcheck(run, {y0}).ok);
}

TEST_CASE("tape: a checkpointed block gives the plain block's gradient and refuses create_graph") {
    // The same unrolled GD as above, with every step one ad::checkpoint node.
    ad::Rng rng(5, 0);
    Eigen::MatrixXd X = rng.normal_matrix(6, 2), Xt = rng.normal_matrix(4, 2), yt = rng.normal_matrix(4, 1);
    Eigen::MatrixXd y0 = rng.normal_matrix(6, 1);
    auto run = [&](bool checkpoint) {
        return ad::CheckFn([&, checkpoint](const std::vector<ad::Var>& in) {
            auto step = [&](const std::vector<ad::Var>& s) {  // s = {w, y}
                ad::Var r = ad::matmul(ad::constant(X), ad::tanh(s[0])) - s[1];
                ad::Var g = ad::grad(ad::sum(ad::square(r)), {s[0]}, {.create_graph = true})[0];
                return s[0] - 0.05 * g;
            };
            ad::Var w = ad::param(Eigen::MatrixXd::Zero(2, 1));
            for (int s = 0; s < 3; ++s) w = checkpoint ? ad::checkpoint(step, {w, in[0]}) : step({w, in[0]});
            return ad::mean(ad::square(ad::matmul(ad::constant(Xt), ad::tanh(w)) - ad::constant(yt)));
        });
    };
    CHECK(ad::gradcheck(run(true), {y0}).ok);
    ad::TapeScope scope;
    ad::Var y = ad::param(y0);
    const Eigen::MatrixXd plain = ad::grad(run(false)({y}), {y})[0].value();
    ad::Var loss = run(true)({y});
    CHECK(loss.item() == run(false)({y}).item());
    const Eigen::MatrixXd ckpt = ad::grad(loss, {y})[0].value();
    CHECK((ckpt - plain).norm() <= 1e-13 * plain.norm());
    CHECK_THROWS_WITH_AS(ad::grad(loss, {y}, {.create_graph = true}), doctest::Contains("first-order"), ad::Error);
    CHECK_THROWS_AS(ad::checkpoint(ad::CheckFn([](const std::vector<ad::Var>& in) { return in[0]; }), {}), ad::Error);
}

TEST_CASE("tape: all_finite finds a NaN or an infinity anywhere, in the blocks and in the tail") {
    ad::TapeScope scope;
    for (int n : {0, 1, 7, 8, 9, 23, 64}) {
        CAPTURE(n);
        Eigen::MatrixXd m = Eigen::MatrixXd::Constant(n, 1, -1e308);
        CHECK(ad::all_finite(ad::constant(m)));
        for (int at = 0; at < n; ++at)
            for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                               -std::numeric_limits<double>::infinity()}) {
                Eigen::MatrixXd b = m;
                b(at, 0) = bad;
                CHECK_FALSE(ad::all_finite(ad::constant(b)));
            }
    }
}
