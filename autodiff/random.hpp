// Counter-based RNG: every draw is a pure function of (seed, stream, counter), so results do not
// depend on thread count, call order or the standard library. We never use std::normal_distribution
// (or any std:: distribution): its algorithm differs between standard libraries.
#pragma once

#include <Eigen/Dense>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace occam::ad {

namespace detail {
/// High and low 32-bit halves of the 64-bit product a*b.
inline std::pair<uint32_t, uint32_t> mulhilo32(uint32_t a, uint32_t b) {
    const uint64_t p = static_cast<uint64_t>(a) * b;
    return {static_cast<uint32_t>(p >> 32), static_cast<uint32_t>(p)};
}
}  // namespace detail

/// Philox4x32-10 bijection (Salmon, Moraes, Dror, Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3").
inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
    constexpr uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;  // multipliers chosen for avalanche
    constexpr uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;  // Weyl increments (golden ratio, sqrt(3)-1)
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {  // the key schedule is a Weyl sequence: bump before every round but the first
            key[0] += w0;
            key[1] += w1;
        }
        // One round: multiply words 0 and 2 (an S-box-like nonlinearity via the high product half),
        // xor the high halves with the untouched words 1, 3 and the key, and permute the four words.
        const auto [hi0, lo0] = detail::mulhilo32(m0, ctr[0]);
        const auto [hi1, lo1] = detail::mulhilo32(m1, ctr[2]);
        ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    }
    return ctr;
}

/// Deterministic random generator: block i is philox4x32_10((counter lo, hi, stream lo, hi), (seed lo, hi)).
/// Each draw consumes exactly one Philox block (one counter step); the unused words are discarded, so a
/// draw never depends on whether an earlier draw happened to cache something.
class Rng {
public:
    explicit Rng(uint64_t seed, uint64_t stream = 0, uint64_t counter = 0)
        : seed_(seed), stream_(stream), counter_(counter) {}

    /// The raw 128-bit block for the current counter; advances the counter by one.
    std::array<uint32_t, 4> next_block() {
        const std::array<uint32_t, 4> ctr = {lo(counter_), hi(counter_), lo(stream_), hi(stream_)};
        ++counter_;
        return philox4x32_10(ctr, {lo(seed_), hi(seed_)});
    }

    /// Uniform 64-bit integer from words 0 (low) and 1 (high) of one block.
    uint64_t next_u64() {
        const auto b = next_block();
        return join(b[0], b[1]);
    }

    /// Uniform double in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

    /// Uniform double in [lo, hi).
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

    /// Standard normal via Box-Muller from ONE block, so draw i depends only on counter i.
    double normal() {
        const auto b = next_block();
        const double u1 = static_cast<double>((join(b[0], b[1]) >> 11) + 1) * 0x1.0p-53;  // (0,1]: log finite
        const double u2 = static_cast<double>(join(b[2], b[3]) >> 11) * 0x1.0p-53;        // [0,1)
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    }

    /// rows x cols matrix of N(mean, sd^2), filled column-major, one counter per entry.
    Eigen::MatrixXd normal_matrix(int rows, int cols, double mean = 0.0, double sd = 1.0) {
        Eigen::MatrixXd m(rows, cols);
        for (Eigen::Index j = 0; j < m.cols(); ++j)
            for (Eigen::Index i = 0; i < m.rows(); ++i) m(i, j) = mean + sd * normal();
        return m;
    }

    /// rows x cols matrix of U[lo, hi), filled column-major, one counter per entry.
    Eigen::MatrixXd uniform_matrix(int rows, int cols, double lo, double hi) {
        Eigen::MatrixXd m(rows, cols);
        for (Eigen::Index j = 0; j < m.cols(); ++j)
            for (Eigen::Index i = 0; i < m.rows(); ++i) m(i, j) = uniform(lo, hi);
        return m;
    }

    /// Uniform integer in [0, n) by rejection: `x % n` alone would favour small values.
    uint64_t below(uint64_t n) {
        if (n == 0) throw std::invalid_argument("Rng::below: n must be positive");
        // Reject the lowest (2^64 mod n) values so the accepted range is a whole multiple of n.
        const uint64_t threshold = (0 - n) % n;
        for (;;) {
            const uint64_t x = next_u64();
            if (x >= threshold) return x % n;
        }
    }

    /// Uniformly random permutation of 0..n-1 (Fisher-Yates).
    std::vector<int> permutation(int n) { return sample_without_replacement(n, n); }

    /// k distinct values from 0..n-1, in random order (a partial Fisher-Yates shuffle).
    std::vector<int> sample_without_replacement(int n, int k) {
        if (n < 0 || k < 0 || k > n)
            throw std::invalid_argument("Rng::sample_without_replacement: need 0 <= k <= n, got n=" +
                                        std::to_string(n) + ", k=" + std::to_string(k));
        std::vector<int> v(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
        for (int i = 0; i < k; ++i) {
            const auto j = static_cast<size_t>(i) + static_cast<size_t>(below(static_cast<uint64_t>(n - i)));
            std::swap(v[static_cast<size_t>(i)], v[j]);
        }
        v.resize(static_cast<size_t>(k));
        return v;
    }

    /// Index i with probability p[i] / sum(p); p need not be normalised.
    int categorical(const std::vector<double>& p) {
        double total = 0.0;
        for (size_t i = 0; i < p.size(); ++i) {
            if (!std::isfinite(p[i]) || p[i] < 0.0)
                throw std::invalid_argument("Rng::categorical: p[" + std::to_string(i) + "] = " + std::to_string(p[i]) +
                                            " must be finite and non-negative");
            total += p[i];
        }
        if (!(total > 0.0) || !std::isfinite(total))
            throw std::invalid_argument("Rng::categorical: probabilities must have a positive finite sum");
        const double u = uniform() * total;
        double cumulative = 0.0;
        int last_positive = 0;
        for (size_t i = 0; i < p.size(); ++i) {
            if (p[i] <= 0.0) continue;  // zero-weight entries must never be chosen
            cumulative += p[i];
            last_positive = static_cast<int>(i);
            if (u < cumulative) return last_positive;
        }
        return last_positive;  // rounding can leave u just above the summed cumulative
    }

    /// Independent generator: same seed, the given stream, counter 0.
    Rng substream(uint64_t stream) const { return Rng(seed_, stream, 0); }

    /// Number of blocks consumed so far (the next block's counter).
    uint64_t counter() const { return counter_; }
    /// Jump to any position in the stream in O(1).
    void set_counter(uint64_t counter) { counter_ = counter; }
    /// The seed (Philox key).
    uint64_t seed() const { return seed_; }
    /// The stream id (high half of the Philox counter block).
    uint64_t stream() const { return stream_; }

private:
    static uint32_t lo(uint64_t x) { return static_cast<uint32_t>(x); }
    static uint32_t hi(uint64_t x) { return static_cast<uint32_t>(x >> 32); }
    static uint64_t join(uint32_t low, uint32_t high) { return (static_cast<uint64_t>(high) << 32) | low; }

    uint64_t seed_;
    uint64_t stream_;
    uint64_t counter_;
};

}  // namespace occam::ad
