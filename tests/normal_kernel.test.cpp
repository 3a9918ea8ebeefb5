// kernels/normal.hpp: the vectorised Box-Muller normals against ad::Rng's Philox and long double
// libm, position independence, the accuracy of its own log / sin / cos, the distribution, and
// the same bits from every code path.
#include <doctest/doctest.h>

#include "lanes_note.hpp"

#include "autodiff/random.hpp"
#include "kernels/normal.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <vector>

namespace {

using namespace occam;
namespace nd = kernels::normal_detail;

constexpr long double two_pi = 2 * std::numbers::pi_v<long double>;

/// u1 and u2 of one Philox block, as the kernel's documentation defines them.
struct Uniforms {
    std::uint64_t K, k;  // u1 = K 2^-53, u2 = k 2^-53
};
Uniforms uniforms(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter) {
    const auto b = ad::Rng(seed, stream, counter).next_block();
    const auto join = [](std::uint32_t lo, std::uint32_t hi) { return std::uint64_t(hi) << 32 | lo; };
    return {(join(b[0], b[1]) >> 11) + 1, join(b[2], b[3]) >> 11};
}

/// log u1, sin(2 pi u2), cos(2 pi u2) from the kernel's own functions, eight inputs at a time.
void kernel_functions(const std::uint64_t* K, const std::uint64_t* k, double* log_u1, double* sin_t, double* cos_t) {
    using L = lanes::Ops<lanes::Split>;
    nd::Reduced in;
    for (int at = 0; at < 8; at += nd::word_lanes) {
        nd::Word Kw, kw;
        std::memcpy(&Kw, K + at, sizeof Kw), std::memcpy(&kw, k + at, sizeof kw);
        nd::reduce_uniforms(Kw, kw, at, in);
    }
    lanes::Split s, c;
    nd::sincos_2pi(in, s, c);
    L::store(log_u1, nd::log_u1<lanes::Split>(in)), L::store(sin_t, s), L::store(cos_t, c);
}

std::uint64_t fnv1a(const std::vector<double>& v) {
    std::uint64_t h = 1469598103934665603ull;
    for (double x : v) {
        std::uint64_t b;
        std::memcpy(&b, &x, sizeof b);
        for (int i = 0; i < 8; ++i) h = (h ^ ((b >> (8 * i)) & 0xff)) * 1099511628211ull;
    }
    return h;
}

}  // namespace

TEST_CASE("normal kernel: Philox blocks and Box-Muller as ad::Rng, against long double libm") {
    // Seeds and streams with high words set, counters crossing 2^32 and wrapping at 2^64.
    const std::uint64_t seeds[] = {0, 1, 0xDEADBEEF12345678ull, ~0ull};
    const std::uint64_t streams[] = {0, 7, 0x123456789ABCDEF0ull, ~0ull};
    const std::uint64_t counters[] = {0, 0xFFFFFFFFull - 9, 0x1234567800000000ull - 3, ~0ull - 6, 987654321};
    double worst = 0;
    for (std::uint64_t seed : seeds)
        for (std::uint64_t stream : streams)
            for (std::uint64_t counter : counters) {
                const int n = 37;  // 19 blocks: two full rounds of eight and a tail, the last sine dropped
                std::vector<double> out(n);
                kernels::normal_pairs(seed, stream, counter, n, out.data());
                for (int i = 0; i < n; ++i) {
                    const Uniforms u = uniforms(seed, stream, counter + std::uint64_t(i / 2));
                    const long double r = std::sqrt(-2 * std::log(std::ldexp((long double)u.K, -53)));
                    const long double t = two_pi * std::ldexp((long double)u.k, -53);
                    const long double want = r * (i % 2 ? std::sin(t) : std::cos(t));
                    const double err = double(std::fabs(out[size_t(i)] - want) / std::max(r, 1.0L));
                    worst = std::max(worst, err);
                    CAPTURE(seed);
                    CAPTURE(stream);
                    CAPTURE(counter);
                    CAPTURE(i);
                    REQUIRE(err < 1e-15);
                }
            }
    MESSAGE("worst |error| / max(r, 1) against long double: " << worst);
}

TEST_CASE("normal kernel: out[i] depends only on counter + i/2 and i's parity") {
    const std::uint64_t seed = 42, stream = 3, counter = 0xFFFFFFFFull - 20;
    std::vector<double> all(1000);
    kernels::normal_pairs(seed, stream, counter, 1000, all.data());
    std::vector<double> part(10);
    kernels::normal_pairs(seed, stream, counter + 3, 10, part.data());
    CHECK(std::equal(part.begin(), part.end(), all.begin() + 6));
    for (int start = 0; start < 40; ++start)
        for (int n : {0, 1, 2, 3, 15, 16, 17, 31, 33, 100}) {
            std::vector<double> got(size_t(n) + 1, -7.0);  // one sentinel past the end
            kernels::normal_pairs(seed, stream, counter + std::uint64_t(start), n, got.data());
            CAPTURE(start);
            CAPTURE(n);
            CHECK(std::equal(got.begin(), got.begin() + n, all.begin() + 2 * start));
            CHECK(got[size_t(n)] == -7.0);
        }
    double untouched = -7.0;
    kernels::normal_pairs(seed, stream, counter, 0, &untouched);
    kernels::normal_pairs(seed, stream, counter, -5, &untouched);
    CHECK(untouched == -7.0);
}

TEST_CASE("normal kernel: its log, sin and cos against long double libm") {
    // Edges (u1 = 2^-53 and 1, just below 1, powers of two and their neighbours, both sides of
    // sqrt(1/2); u2 = 0, just below 1, the quadrant boundaries and the octant ties), then random
    // inputs: K log-uniform over [1, 2^53] and uniform, k uniform.
    std::vector<std::uint64_t> K, k;
    const std::uint64_t top = 1ull << 53;
    for (int b = 0; b <= 53; ++b)
        for (std::int64_t d = -3; d <= 3; ++d) {
            const std::uint64_t x = (1ull << b) + std::uint64_t(d);
            if (x >= 1 && x <= top) K.push_back(x);
        }
    for (std::uint64_t j = 0; j < 64; ++j) K.push_back(top - j);
    const auto root_half = std::uint64_t(std::sqrt(0.5L) * std::ldexp(1.0L, 53));
    for (int b = 0; b < 53; ++b)
        for (std::int64_t d = -2; d <= 2; ++d) K.push_back((root_half >> b) + std::uint64_t(d));
    for (std::uint64_t q = 0; q <= 4; ++q)
        for (std::int64_t d = -2; d <= 2; ++d) {
            for (std::uint64_t c : {q << 51, (q << 51) + (std::uint64_t(1) << 50), (q << 51) - (std::uint64_t(1) << 50)})
                if (c + std::uint64_t(d) < top) k.push_back(c + std::uint64_t(d));
        }
    k.push_back(0), k.push_back(top - 1);
    ad::Rng rng(2024);
    while (K.size() < 1'000'000) {
        const std::uint64_t x = rng.next_u64();
        K.push_back(std::max<std::uint64_t>(1, (x >> 11) >> (rng.next_u64() % 54)));
        K.push_back((x >> 11) + 1);
    }
    while (k.size() < K.size()) k.push_back(rng.next_u64() >> 11);
    K.resize(k.size());
    while (K.size() % 8) K.push_back(top), k.push_back(0);

    double worst_log = 0, worst_sin = 0, worst_cos = 0;
    std::uint64_t worst_K = 0, worst_sin_k = 0, worst_cos_k = 0;
    for (size_t i = 0; i < K.size(); i += 8) {
        double lg[8], s[8], c[8];
        kernel_functions(&K[i], &k[i], lg, s, c);
        for (size_t l = 0; l < 8; ++l) {
            const long double u1 = std::ldexp((long double)K[i + l], -53), u2 = std::ldexp((long double)k[i + l], -53);
            const long double want = std::log(u1);
            const double rel = want == 0 ? (lg[l] == 0 ? 0 : 1) : double(std::fabs((lg[l] - want) / want));
            const double sin_err = double(std::fabs(s[l] - std::sin(two_pi * u2)));
            const double cos_err = double(std::fabs(c[l] - std::cos(two_pi * u2)));
            if (rel > worst_log) worst_log = rel, worst_K = K[i + l];
            if (sin_err > worst_sin) worst_sin = sin_err, worst_sin_k = k[i + l];
            if (cos_err > worst_cos) worst_cos = cos_err, worst_cos_k = k[i + l];
        }
    }
    MESSAGE(K.size() << " inputs: log relative error " << worst_log << ", sin absolute " << worst_sin
                     << ", cos absolute " << worst_cos);
    CAPTURE(worst_K);
    CAPTURE(worst_sin_k);
    CAPTURE(worst_cos_k);
    CHECK(worst_log <= 4e-16);
    CHECK(worst_sin <= 2e-16);
    CHECK(worst_cos <= 2e-16);
}

TEST_CASE("normal kernel: a million normals look standard normal") {
    const int n = 1'000'000;
    std::vector<double> z(n);
    kernels::normal_pairs(7, 11, 0xFFFFFFFFull - 1000, n, z.data());
    double mean = 0, cross = 0;
    for (double x : z) mean += x;
    mean /= n;
    double var = 0;
    for (double x : z) var += (x - mean) * (x - mean);
    var /= n - 1;
    for (int i = 0; i < n; i += 2) cross += z[size_t(i)] * z[size_t(i) + 1];  // cos and sin of one block
    cross /= n / 2;
    const auto tails = std::count_if(z.begin(), z.end(), [](double x) { return std::fabs(x) > 4; });
    std::sort(z.begin(), z.end());
    double ks = 0;
    for (int i = 0; i < n; ++i) {
        const double F = 0.5 * std::erfc(-z[size_t(i)] / std::numbers::sqrt2);
        ks = std::max({ks, double(i + 1) / n - F, F - double(i) / n});
    }
    MESSAGE("mean " << mean << ", variance " << var << ", E[cos sin] " << cross << ", KS distance " << ks
                    << ", P(|z| > 4) " << double(tails) / n << " (normal: 6.334e-5)");
    CHECK(std::fabs(mean) < 5e-3);
    CHECK(std::fabs(var - 1) < 1e-2);
    CHECK(std::fabs(cross) < 7e-3);  // sd 1/sqrt(n/2) = 1.4e-3
    CHECK(ks < 2e-3);
    CHECK(tails >= 31);  // expected 63.3, sd ~8: four of them either way
    CHECK(tails <= 95);
}

TEST_CASE("normal kernel: the same bits from the AVX2 and AVX-512 copies and from every build") {
    note_when_copies_are_one();
    const std::uint64_t seed = 0x0123456789ABCDEFull, stream = 99, counter = 0xFFFFFFFFull - 100;
    for (int n : {1, 7, 16, 17, 1217, 100001}) {
        std::vector<double> wide(static_cast<size_t>(n)), narrow(static_cast<size_t>(n));
        kernels::normal_pairs(seed, stream, counter, n, wide.data());
        lanes::wide_allowed() = false;
        kernels::normal_pairs(seed, stream, counter, n, narrow.data());
        lanes::wide_allowed() = true;
        CAPTURE(n);
        CHECK(wide == narrow);
    }
    // A fingerprint of 100001 normals' bits, written down from the x86-64-v3 build: the portable
    // build (-DOCCAM_PORTABLE_LANES, plain arrays, std::fma and std::sqrt per lane), a build
    // without FMA (-march=x86-64) and an AVX-512 build must reproduce it.
    std::vector<double> z(100001);
    kernels::normal_pairs(seed, stream, counter, int(z.size()), z.data());
    CHECK(z[0] == 0x1.bef9082d573b9p-1);
    CHECK(z[1] == -0x1.334ed3935fd8ap-2);
    CHECK(fnv1a(z) == 0xf11b495a49d6ff69ull);
}
