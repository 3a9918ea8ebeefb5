#include "autodiff/random.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numbers>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using occam::ad::philox4x32_10;
using occam::ad::Rng;

// Known-answer vectors from Random123's kat_vectors file (philox4x32 10 rounds), the reference
// implementation of Salmon et al. 2011. If these fail, the bijection is wrong, not the vectors.
TEST_CASE("random: philox4x32_10 matches Random123 kat_vectors") {
    using A4 = std::array<uint32_t, 4>;
    CHECK(philox4x32_10({0, 0, 0, 0}, {0, 0}) == A4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
    CHECK(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
          A4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
    CHECK(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
          A4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("random: block layout is (counter lo, hi, stream lo, hi) keyed by seed halves") {
    Rng r(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull);
    const auto b = r.next_block();
    CHECK(b == std::array<uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
    CHECK(r.counter() == 0x85a308d3243f6a89ull);
}

TEST_CASE("random: same seed and stream reproduce, different streams differ") {
    Rng a(42, 3), b(42, 3), c(42, 4), d(43, 3);
    for (int i = 0; i < 100; ++i) {
        const uint64_t x = a.next_u64();
        CHECK(x == b.next_u64());
        CHECK(x != c.next_u64());
        CHECK(x != d.next_u64());
    }
    CHECK(a.counter() == 100);
    CHECK(a.seed() == 42);
    CHECK(a.stream() == 3);
}

TEST_CASE("random: substreams do not depend on draw order") {
    const Rng root(7);
    Rng s1 = root.substream(1), s2 = root.substream(2);
    std::vector<double> first1, first2;
    for (int i = 0; i < 10; ++i) first1.push_back(s1.normal());
    for (int i = 0; i < 10; ++i) first2.push_back(s2.normal());

    Rng t2 = root.substream(2), t1 = root.substream(1);
    std::vector<double> second2, second1;
    for (int i = 0; i < 10; ++i) second2.push_back(t2.normal());
    for (int i = 0; i < 10; ++i) second1.push_back(t1.normal());
    CHECK(first1 == second1);
    CHECK(first2 == second2);
    CHECK(first1 != first2);
    CHECK(t1.seed() == 7);
    CHECK(t1.stream() == 1);
}

TEST_CASE("random: set_counter jumps to draw i directly") {
    Rng a(5);
    std::vector<double> seq;
    for (int i = 0; i < 20; ++i) seq.push_back(a.normal());
    Rng b(5);
    b.set_counter(13);
    CHECK(b.normal() == seq[13]);
    CHECK(b.counter() == 14);
}

TEST_CASE("random: normal has mean 0 and variance 1") {
    Rng r(2024);
    const int n = 200000;
    double sum = 0.0, sum_sq = 0.0;
    for (int i = 0; i < n; ++i) {
        const double x = r.normal();
        REQUIRE(std::isfinite(x));
        sum += x;
        sum_sq += x * x;
    }
    const double mean = sum / n;
    const double var = sum_sq / n - mean * mean;
    CHECK(std::abs(mean) < 0.01);
    CHECK(std::abs(var - 1.0) < 0.02);
}

TEST_CASE("random: uniform lies in [0,1) and [lo,hi)") {
    Rng r(11);
    double sum = 0.0;
    for (int i = 0; i < 100000; ++i) {
        const double u = r.uniform();
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
        sum += u;
        const double v = r.uniform(-3.0, 5.0);
        REQUIRE(v >= -3.0);
        REQUIRE(v < 5.0);
    }
    CHECK(std::abs(sum / 100000 - 0.5) < 0.01);
}

TEST_CASE("random: matrices are column-major, one counter per entry") {
    Rng a(9), b(9);
    const Eigen::MatrixXd m = a.normal_matrix(3, 4, 2.0, 0.5);
    CHECK(m.rows() == 3);
    CHECK(m.cols() == 4);
    for (int j = 0; j < 4; ++j)
        for (int i = 0; i < 3; ++i) CHECK(m(i, j) == 2.0 + 0.5 * b.normal());
    CHECK(a.counter() == 12);

    Rng c(9), d(9);
    const Eigen::MatrixXd u = c.uniform_matrix(2, 5, -1.0, 1.0);
    for (int j = 0; j < 5; ++j)
        for (int i = 0; i < 2; ++i) CHECK(u(i, j) == d.uniform(-1.0, 1.0));
    CHECK((u.array() >= -1.0).all());
    CHECK((u.array() < 1.0).all());
}

TEST_CASE("random: below stays in range and hits every value") {
    Rng r(3);
    for (uint64_t n : {1ull, 2ull, 3ull, 7ull, 10ull}) {
        std::vector<int> hits(n, 0);
        for (int i = 0; i < 2000; ++i) {
            const uint64_t x = r.below(n);
            REQUIRE(x < n);
            ++hits[x];
        }
        for (int h : hits) CHECK(h > 0);
    }
    const uint64_t big = (1ull << 63) + 12345;
    for (int i = 0; i < 1000; ++i) REQUIRE(r.below(big) < big);
    CHECK_THROWS_AS(r.below(0), std::invalid_argument);
}

TEST_CASE("random: permutation and sampling without replacement") {
    Rng r(17);
    for (int n : {0, 1, 2, 10, 1000}) {
        std::vector<int> p = r.permutation(n);
        REQUIRE(p.size() == static_cast<size_t>(n));
        std::sort(p.begin(), p.end());
        for (int i = 0; i < n; ++i) CHECK(p[static_cast<size_t>(i)] == i);
    }
    const std::vector<int> s = r.sample_without_replacement(50, 20);
    CHECK(s.size() == 20);
    CHECK(std::set<int>(s.begin(), s.end()).size() == 20);
    for (int x : s) CHECK((x >= 0 && x < 50));
    CHECK_THROWS_AS(r.sample_without_replacement(5, 6), std::invalid_argument);
    CHECK_THROWS_AS(r.sample_without_replacement(5, -1), std::invalid_argument);
    // A 3-permutation should be roughly uniform over its 6 orderings.
    std::vector<int> counts(9, 0);
    for (int i = 0; i < 6000; ++i) {
        const auto p = r.permutation(3);
        ++counts[static_cast<size_t>(p[0] * 3 + p[1])];
    }
    for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b)
            if (a != b) CHECK(std::abs(counts[static_cast<size_t>(a * 3 + b)] - 1000) < 150);
}

TEST_CASE("random: categorical matches probabilities") {
    Rng r(99);
    const std::vector<double> w = {1.0, 0.0, 3.0, 6.0};  // unnormalised; index 1 must never appear
    std::vector<int> counts(w.size(), 0);
    const int n = 100000;
    for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(r.categorical(w))];
    CHECK(counts[1] == 0);
    for (size_t i = 0; i < w.size(); ++i) CHECK(std::abs(counts[i] / double(n) - w[i] / 10.0) < 0.01);
}

TEST_CASE("random: categorical rejects bad probabilities") {
    Rng r(1);
    CHECK_THROWS_AS(r.categorical({}), std::invalid_argument);
    CHECK_THROWS_AS(r.categorical({0.0, 0.0}), std::invalid_argument);
    CHECK_THROWS_AS(r.categorical({0.5, -0.1}), std::invalid_argument);
    CHECK_THROWS_AS(r.categorical({0.5, std::nan("")}), std::invalid_argument);
    CHECK_THROWS_AS(r.categorical({0.5, INFINITY}), std::invalid_argument);
    CHECK(r.categorical({0.0, 2.0}) == 1);
}

// normal() recomputed from the raw Philox output, so the expected values come from the
// definition and not from the code's own past output. Draw i of Rng(seed, stream) is block
// philox4x32_10((lo(i), hi(i), lo(stream), hi(stream)), (lo(seed), hi(seed))) (the KAT and layout
// tests above pin both the bijection and that layout). normal() is Box-Muller on that one block:
//   u1 = ((w1:w0 >> 11) + 1) * 2^-53  in (0, 1]  (the 53 top bits of words 0 and 1, shifted off
//                                                0 so that log(u1) is finite),
//   u2 = (w3:w2 >> 11) * 2^-53        in [0, 1)  (words 2 and 3),
//   z  = sqrt(-2 ln u1) cos(2 pi u2),
// the cosine half of the pair (Box & Muller 1958); the sine half is discarded so that draw i
// depends on counter i only. Every step before the libm calls is exact in double (a 53-bit
// integer times a power of two), and the same std::sqrt/std::log/std::cos are called on the
// same arguments in the same order, so equality is exact on any libm; a different algorithm
// (the sine half, swapped words, a u1 that can be 0, another transform) fails it.
namespace {
std::string hex(double x) {  // every bit, for failure messages
    char buf[40];
    std::snprintf(buf, sizeof buf, "%a", x);
    return buf;
}
uint64_t join_words(uint32_t low, uint32_t high) { return (static_cast<uint64_t>(high) << 32) | low; }
double box_muller_from_raw(uint64_t seed, uint64_t stream, uint64_t counter) {
    const auto lo = [](uint64_t v) { return static_cast<uint32_t>(v); };
    const auto hi = [](uint64_t v) { return static_cast<uint32_t>(v >> 32); };
    const std::array<uint32_t, 4> w =
        philox4x32_10({lo(counter), hi(counter), lo(stream), hi(stream)}, {lo(seed), hi(seed)});
    const double u1 = static_cast<double>((join_words(w[0], w[1]) >> 11) + 1) * 0x1.0p-53;
    const double u2 = static_cast<double>(join_words(w[2], w[3]) >> 11) * 0x1.0p-53;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}
}  // namespace

TEST_CASE("random: normal() is Box-Muller on the raw Philox block of its counter") {
    // Rng(1, 0)'s first draw: -0x1.d1a253882cf97p-4 (-0.11368019704496955) on glibc.
    for (const auto& [seed, stream] : {std::pair<uint64_t, uint64_t>{1, 0}, {42, 3}, {0x299f31d0a4093822ull, 7},
                                       {0, 0xffffffffffffffffull}}) {
        Rng r(seed, stream);
        for (uint64_t i = 0; i < 64; ++i) {
            CAPTURE(seed);
            CAPTURE(stream);
            CAPTURE(i);
            const double want = box_muller_from_raw(seed, stream, i);
            REQUIRE(std::isfinite(want));
            const double got = r.normal();
            INFO("normal() " << hex(got) << ", from the raw block " << hex(want));
            CHECK(got == want);
        }
    }
    // next_u64 is words 0 (low) and 1 (high) of the same block.
    Rng c(1, 0);
    const auto blk = philox4x32_10({0, 0, 0, 0}, {1, 0});
    CHECK(c.next_u64() == join_words(blk[0], blk[1]));
}
