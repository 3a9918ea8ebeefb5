// What this file teaches: Box-Muller normals from eight Philox blocks at a time, with our own log
// and sin/cos (exact argument reductions in integers, then short minimax polynomials), so that the
// same bits come out on every machine and code path, ~10x faster than one std::log + std::cos each.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#include "lanes.hpp"

OCCAM_KERNELS_BEGIN

namespace occam::kernels {

namespace normal_detail {

// ---- The integer half: Philox4x32-10 and exact reductions -------------------------------------
// A Word holds one 32-bit Philox word per 64-bit lane (four lanes with the vector extensions, one
// without), so that a product of two words is one unsigned 32 x 32 -> 64 multiply per lane.
// Integers are exact: any lane width gives the same bits here.
#ifdef OCCAM_VECTOR_EXTENSIONS
typedef std::uint64_t Word __attribute__((vector_size(32)));
typedef int Int32x8 __attribute__((vector_size(32)));
using Real = lanes::V4;  // a Word's bits as doubles
constexpr Word lane_index = {0, 1, 2, 3};
#else
using Word = std::uint64_t;
using Real = double;
constexpr Word lane_index = 0;
#endif
constexpr int word_lanes = sizeof(Word) / sizeof(std::uint64_t);
constexpr std::uint64_t low32 = 0xffffffffu;

/// The full product low32(x) * m. AVX2's vpmuludq is exactly that (it reads each lane's low half
/// only); a generic 64-bit vector multiply would take three of them. Elsewhere: mask, multiply.
OCCAM_LANES_INLINE Word mul_wide(Word x, std::uint32_t m) {
#if defined(OCCAM_VECTOR_EXTENSIONS) && defined(__AVX2__)
    return (Word)__builtin_ia32_pmuludq256((Int32x8)x, (Int32x8)(Word{} + m));
#else
    return (x & low32) * m;
#endif
}

/// Philox4x32-10 (Salmon et al. 2011) on eight lanes (`chunks` Words), as ad::philox4x32_10: ten
/// rounds of two multiplies, the key bumped by a Weyl sequence after each. The chunks go through a
/// round side by side, so that independent multiply chains hide each other's latency. Only the
/// words' low halves matter (upper halves collect garbage, which mul_wide ignores and the caller
/// masks).
constexpr int chunks = 8 / word_lanes;
OCCAM_LANES_INLINE void philox(Word (&x)[chunks][4], std::uint64_t seed) {
    std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
    // Unrolled, the words stay in registers (GCC -O2 would otherwise keep them in memory).
#pragma GCC unroll 10
    for (int round = 0; round < 10; ++round) {
#pragma GCC unroll 8
        for (Word* w : x) {
            const Word p0 = mul_wide(w[0], 0xD2511F53u), p1 = mul_wide(w[2], 0xCD9E8D57u);
            const Word y0 = (p1 >> 32) ^ w[1] ^ k0, y2 = (p0 >> 32) ^ w[3] ^ k1;
            w[0] = y0, w[1] = p1, w[2] = y2, w[3] = p0;
        }
        k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    }
}

/// The double whose bits are `bits` (exact), and back. 0x4330000000000000 | h is 2^52 + h for
/// h < 2^52: an integer becomes a double by one exact subtraction.
OCCAM_LANES_INLINE Real real(Word b) { return std::bit_cast<Real>(b); }
OCCAM_LANES_INLINE Word bits(Real x) { return std::bit_cast<Word>(x); }
constexpr std::uint64_t two52 = 0x4330000000000000, one = 0x3FF0000000000000;

/// What the float half needs from one Philox block per lane, as exact doubles: u1 = 2^e m with m in
/// [sqrt(1/2), sqrt(2)); u2 = q/4 + f with q = round(4 u2), |f| <= 1/8, kept as the integer f 2^53;
/// the quadrant's signs and swap.
struct Reduced {
    alignas(64) double m[8], e[8], f53[8], sign_cos[8], sign_sin[8], swap[8];
};

/// Lanes at..at+word_lanes-1 of r for the uniforms u1 = K 2^-53 (K in [1, 2^53]) and u2 = k 2^-53
/// (k < 2^53), exactly.
OCCAM_LANES_INLINE void reduce_uniforms(Word K, Word k, int at, Reduced& r) {
    // K as a double from its halves (each < 2^32): hi 2^32 + lo < 2^53 is exact, fused or not.
    const Real hi = real(two52 | (K >> 32)) - 0x1p52, lo = real(two52 | (K & low32)) - 0x1p52;
    const Word Kb = bits(hi * 0x1p32 + lo);
    // K = 2^eK m with m in [sqrt(1/2), sqrt(2)): K's bits minus sqrt(1/2)'s leave K's exponent + 1
    // in t's exponent field, less a borrow where K's mantissa is below sqrt(2) -- that is eK -- and
    // m's offset from sqrt(1/2)'s bits in its mantissa field. Then u1 = K 2^-53 = 2^(eK - 53) m.
    const Word t = Kb - 0x3FE6A09E667F3BCD, eK = t >> 52;  // 0..53
    const Real m = real((t & 0xFFFFFFFFFFFFF) + 0x3FE6A09E667F3BCD), e = real(two52 | eK) - (0x1p52 + 53);
    // 4 u2 = k / 2^51: q = round(4 u2) and j = k - q 2^51 + 2^50 in [0, 2^51), so f 2^53 = j - 2^50
    // exactly: the reduction of 2 pi u2 to [-pi/4, pi/4] is done in integers, with no rounding.
    const Word v = k + (1ull << 50), q = v >> 51, j = v & ((1ull << 51) - 1);
    const Real f53 = real(two52 | j) - (0x1p52 + 0x1p50);
    // cos(x + q pi/2) = C, -S, -C, S and sin(x + q pi/2) = S, C, -S, -C for q = 0..3 (4 is 0):
    // as +-1 from bit 0 of q ^ (q >> 1) and of q >> 1; swap is -1 where q is odd.
    const Real sign_cos = real(one | ((q ^ (q >> 1)) << 63)), sign_sin = real(one | ((q >> 1) << 63));
    const Real swap = real(one | (q << 63));
    std::memcpy(r.m + at, &m, sizeof m), std::memcpy(r.e + at, &e, sizeof e), std::memcpy(r.f53 + at, &f53, sizeof m);
    std::memcpy(r.sign_cos + at, &sign_cos, sizeof m), std::memcpy(r.sign_sin + at, &sign_sin, sizeof m);
    std::memcpy(r.swap + at, &swap, sizeof m);
}

/// All eight lanes of r from the Philox blocks counter, counter+1, ..., counter+7.
OCCAM_LANES_INLINE void reduce(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter, Reduced& r) {
    Word x[chunks][4];
    for (int ch = 0; ch < chunks; ++ch) {
        const Word c = (Word{} + counter) + (lane_index + std::uint64_t(ch * word_lanes));  // wraps like ad::Rng's
        x[ch][0] = c & low32, x[ch][1] = c >> 32, x[ch][2] = Word{} + (stream & low32), x[ch][3] = Word{} + (stream >> 32);
    }
    philox(x, seed);
    for (int ch = 0; ch < chunks; ++ch) {
        // The 53-bit integers of u1 = K 2^-53 in (0, 1] and u2 = k 2^-53 in [0, 1), as ad::Rng::normal.
        const Word* w = x[ch];
        const Word K = (((w[1] << 32) | (w[0] & low32)) >> 11) + 1, k = ((w[3] << 32) | (w[2] & low32)) >> 11;
        reduce_uniforms(K, k, ch * word_lanes, r);
    }
}

// ---- The float half: log, sin, cos on the reduced arguments ---------------------------------
// Every product that meets an addition is an explicit fma (or exact), so no compiler's contraction
// can change a bit. The polynomials' coefficients are fdlibm's (Sun, 1993: e_log.c, k_sin.c,
// k_cos.c), whose minimax errors we re-checked with mpmath at 40 digits on 4000 points each.
constexpr double ln2_hi = 0x1.62e42feep-1, ln2_lo = 0x1.a39ef35793c76p-33;  // e ln2_hi exact for |e| < 2^20
// 2 pi 2^-53 = hi + lo to ~6e-33 2^-53, so that x = 2 pi f = f53 (hi + lo).
constexpr double two_pi_hi = 0x1.921fb54442d18p+2 * 0x1p-53, two_pi_lo = 0x1.1a62633145c07p-52 * 0x1p-53;

/// log u1 = e ln 2 + log m. With f = m - 1 (exact) and s = f / (2 + f) in [-0.1716, 0.1716]:
///   log m = 2 atanh(s) = f - f^2/2 + s (f^2/2 + R),  R = z (Lg1 + Lg2 z + ... + Lg7 z^6), z = s^2,
/// |R - (2 atanh(s) - 2 s)/s| < 2^-58.45 (fdlibm). f is exact and f^2/2 carries the next bits, so
/// near u1 = 1 (f -> 0) the result keeps its full relative accuracy.
template <class B>
OCCAM_LANES_INLINE B log_u1(const Reduced& in) {
    using L = lanes::Ops<B>;
    const B e = L::load(in.e), f = L::load(in.m) - 1.0;
    const B s = f / (f + 2.0), z = s * s, z2 = z * z, z4 = z2 * z2;
    const B lg01 = L::fma(z, 3.999999999940941908e-01, 6.666666666666735130e-01);
    const B lg23 = L::fma(z, 2.222219843214978396e-01, 2.857142874366239149e-01);
    const B lg45 = L::fma(z, 1.531383769920937332e-01, 1.818357216161805012e-01);
    const B lg = L::fma(z4, L::fma(z2, 1.479819860511658591e-01, lg45), L::fma(z2, lg23, lg01));  // Estrin
    const B hfsq = (0.5 * f) * f;
    const B tail = L::fma(e, ln2_lo, L::fma(s, L::fma(z, lg, hfsq), -hfsq));  // s (hfsq + R) - hfsq + e ln2_lo
    return e * ln2_hi + (f + tail);
}

/// sin and cos of t = 2 pi u2 = q pi/2 + x. x = 2 pi f in [-pi/4, pi/4] is xh + xl (f exact, 2 pi a
/// two-double, so the angle's only error is ~1e-32), and on that interval (fdlibm, both < 2^-58):
///   sin x = x + x^3 (S1 + S2 x^2 + ... + S6 x^10),  cos x = 1 - x^2/2 + x^4 (C1 + ... + C6 x^10).
template <class B>
OCCAM_LANES_INLINE void sincos_2pi(const Reduced& in, B& sin_t, B& cos_t) {
    using L = lanes::Ops<B>;
    const B fr = L::load(in.f53), xh = fr * two_pi_hi;
    const B xl = L::fma(fr, two_pi_lo, L::fma(fr, two_pi_hi, -xh));
    const B a = xh * xh, a_lo = L::fma(xh, xh, -a), a2 = a * a, a4 = a2 * a2;  // a + a_lo = xh^2 exactly
    const B s01 = L::fma(a, 8.33333333332248946124e-03, -1.66666666666666324348e-01);
    const B s23 = L::fma(a, 2.75573137070700676789e-06, -1.98412698298579493134e-04);
    const B s45 = L::fma(a, 1.58969099521155010221e-10, -2.50507602534068634195e-08);
    const B sp = L::fma(a4, s45, L::fma(a2, s23, s01));
    const B c01 = L::fma(a, -1.38888888888741095749e-03, 4.16666666666666019037e-02);
    const B c23 = L::fma(a, -2.75573143513906633035e-07, 2.48015872894767294178e-05);
    const B c45 = L::fma(a, -1.13596475577881948265e-11, 2.08757232129817482790e-09);
    const B cp = L::fma(a4, c45, L::fma(a2, c23, c01));
    // sin: xh + (xl + x^3 S(x^2)), the leading term fused with its own product (xl's first part).
    const B sin_x = L::fma(fr, two_pi_hi, L::fma(a * xh, sp, fr * two_pi_lo));
    // cos: w = 1 - x^2/2 rounds, but (1 - w) - x^2/2 is its exact error (Sterbenz: w >= 0.69);
    // x^2 = a + a_lo + 2 xh xl to ~1e-33, so the tail holds everything below w's last bit.
    const B hz = 0.5 * a, w = 1.0 - hz, err = (1.0 - w) - hz;
    const B cos_x = w + L::fma(a2, cp, err - L::fma(xh, xl, 0.5 * a_lo));
    // The quadrant: swap where q is odd, signs as the table in reduce_uniforms (exact).
    const auto odd = L::splat(0.0) > L::load(in.swap);
    sin_t = L::load(in.sign_sin) * L::select(odd, cos_x, sin_x);
    cos_t = L::load(in.sign_cos) * L::select(odd, sin_x, cos_x);
}

/// Box-Muller on eight lanes: r cos t and r sin t.
template <class B>
OCCAM_LANES_INLINE void box_muller(const Reduced& in, B& cos_out, B& sin_out) {
    using L = lanes::Ops<B>;
    const B r = L::sqrt(-2.0 * log_u1<B>(in));
    B sin_t, cos_t;
    sincos_2pi<B>(in, sin_t, cos_t);
    cos_out = r * cos_t, sin_out = r * sin_t;
}

/// out[0..n) from the Philox blocks counter, counter+1, ..., eight blocks (sixteen normals) a step.
template <class B>
OCCAM_LANES_INLINE void normal_blocks(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter, int n,
                                      double* out) {
    using L = lanes::Ops<B>;
    Reduced in;
    alignas(64) double c[8], s[8];
    for (std::int64_t done = 0; done < n; done += 16, counter += 8) {
        reduce(seed, stream, counter, in);
        B cos_out, sin_out;
        box_muller<B>(in, cos_out, sin_out);
        L::store(c, cos_out), L::store(s, sin_out);
        const int m = int(std::min<std::int64_t>(16, n - done));
        double* o = out + done;
        if (m == 16)
            for (int l = 0; l < 8; ++l) o[2 * l] = c[l], o[2 * l + 1] = s[l];
        else
            for (int i = 0; i < m; ++i) o[i] = (i & 1) ? s[i / 2] : c[i / 2];
    }
}

}  // namespace normal_detail

/// out[0..n) = standard normals from the Philox blocks counter, counter+1, ... (Box-Muller, both
/// halves): block j gives out[2j] = r cos t and out[2j+1] = r sin t (the last sine dropped when n
/// is odd), where, with the block's words w0..w3 as ad::Rng::next_block() gives them for (seed,
/// stream, counter + j),
///   u1 = (((w1 << 32 | w0) >> 11) + 1) 2^-53 in (0, 1],  u2 = ((w3 << 32 | w2) >> 11) 2^-53 in [0, 1),
///   r = sqrt(-2 log u1),  t = 2 pi u2.
/// out[i] depends only on (seed, stream, counter + i/2, i odd): any split of a stream into calls
/// gives the same numbers. The same bits on every CPU and code path (AVX2, AVX-512, portable).
inline void normal_pairs(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter, int n, double* out) {
    if (n <= 0) return;
    lanes::run([&]<class B>() OCCAM_LANES_KERNEL { normal_detail::normal_blocks<B>(seed, stream, counter, n, out); });
}

}  // namespace occam::kernels

OCCAM_KERNELS_END
