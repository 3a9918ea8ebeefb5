// What this file teaches: a block of eight doubles as one value, written once and compiled two
// ways (two 256-bit AVX2 halves, or one AVX-512 register, chosen at run time with the same bits),
// an exp accurate to an ulp in about twenty multiply-adds, and lanes::run, the one place that
// picks the copy. Every kernel in kernels/ is a template over the block type run through it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

// GCC warns (-Wpsabi) that functions passing 8-double vectors change ABI with AVX-512; ours are
// all inlined, so the ABI never applies. GCC reports it at the end of the translation unit,
// so the warning stays off from here on (a push/pop around this header would not reach it).
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// Clang fuses a * b + c only inside one expression by default, GCC also across the inlined
// operators below; fusing everywhere makes the two block types (and the two compilers' copies)
// do the same operations. Every kernel file brackets its code with these two macros, so the
// pragma is written here only.
#if defined(__clang__)
#define OCCAM_KERNELS_BEGIN _Pragma("float_control(push)") _Pragma("clang fp contract(fast)")
#define OCCAM_KERNELS_END _Pragma("float_control(pop)")
#else
#define OCCAM_KERNELS_BEGIN
#define OCCAM_KERNELS_END
#endif

OCCAM_KERNELS_BEGIN

namespace occam::lanes {

// ---- Four lanes -------------------------------------------------------------------------------
// GCC and Clang's vector extensions; any other compiler (or OCCAM_PORTABLE_LANES) gets the same
// operations on a plain array.
#if (defined(__GNUC__) || defined(__clang__)) && !defined(OCCAM_PORTABLE_LANES)
#define OCCAM_LANES_INLINE [[gnu::always_inline]] inline
#define OCCAM_VECTOR_EXTENSIONS 1
typedef double V4 __attribute__((vector_size(32)));
typedef long long M4 __attribute__((vector_size(32)));  ///< all bits set where true
typedef double V8 __attribute__((vector_size(64)));
typedef long long M8 __attribute__((vector_size(64)));
#else
#define OCCAM_LANES_INLINE inline
struct V4 {
    double v[4];
    double operator[](int l) const { return v[l]; }
    double& operator[](int l) { return v[l]; }
};
struct M4 {
    bool v[4];
};
#define OCCAM_LANES_OP(op)                                             \
    inline V4 operator op(V4 a, V4 b) {                                \
        for (int l = 0; l < 4; ++l) a.v[l] = a.v[l] op b.v[l];         \
        return a;                                                      \
    }                                                                  \
    inline V4 operator op(V4 a, double b) {                            \
        for (int l = 0; l < 4; ++l) a.v[l] = a.v[l] op b;              \
        return a;                                                      \
    }                                                                  \
    inline V4 operator op(double a, V4 b) {                            \
        for (int l = 0; l < 4; ++l) b.v[l] = a op b.v[l];              \
        return b;                                                      \
    }
OCCAM_LANES_OP(+)
OCCAM_LANES_OP(-)
OCCAM_LANES_OP(*)
OCCAM_LANES_OP(/)
#undef OCCAM_LANES_OP
inline V4 operator-(V4 a) {
    for (int l = 0; l < 4; ++l) a.v[l] = -a.v[l];
    return a;
}
inline M4 operator>(V4 a, V4 b) {
    M4 m;
    for (int l = 0; l < 4; ++l) m.v[l] = a.v[l] > b.v[l];
    return m;
}
inline M4 operator==(V4 a, V4 b) {
    M4 m;
    for (int l = 0; l < 4; ++l) m.v[l] = a.v[l] == b.v[l];
    return m;
}
#endif

/// a * b + c rounded once, lane by lane. Written per lane so that every path rounds the same
/// way whatever the compiler's contraction: GCC and Clang turn the loop into one vector FMA on
/// FMA targets, and elsewhere std::fma is still exact (in software, slowly), so the bits agree.
template <class V>
OCCAM_LANES_INLINE V fma_lanes(V a, V b, V c) {
    for (int l = 0; l < int(sizeof(V) / sizeof(double)); ++l) a[l] = std::fma(a[l], b[l], c[l]);
    return a;
}

/// sqrt lane by lane, correctly rounded (IEEE) on every path. A loop of std::sqrt would not
/// become vsqrtpd: with errno on (the default) the compiler keeps a scalar call for x < 0.
OCCAM_LANES_INLINE V4 sqrt_lanes(V4 x) {
#if defined(OCCAM_VECTOR_EXTENSIONS) && defined(__AVX__)
    return __builtin_ia32_sqrtpd256(x);
#else
    for (int l = 0; l < 4; ++l) x[l] = std::sqrt(x[l]);
    return x;
#endif
}

/// exp(x) lane by lane for x in [-700, 700]: exp(x) = 2^k e^r, k = round(x / ln 2), |r| <= ln(2)/2,
/// e^r by its Taylor polynomial of degree 12 (relative error below 5e-16), 2^k written straight
/// into the exponent bits. V is a vector type and M the integer vector of its width.
template <class V, class M>
OCCAM_LANES_INLINE V exp_lanes(V x) {
#if defined(OCCAM_VECTOR_EXTENSIONS) && !defined(__FAST_MATH__)
    // Adding 1.5 * 2^52 + 1023 rounds to an integer and leaves k + 1023 in the low mantissa
    // bits, so shifting those bits into the exponent field gives the double 2^k directly.
    constexpr double shifter = 6755399441055744.0 + 1023.0;
    const V t = x * 1.4426950408889634 + shifter;
    const V k = t - shifter;                                                            // round(x / ln 2)
    const V r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;  // ln 2 = hi + lo
    // Estrin's scheme: the same polynomial as Horner's rule, but in four short levels instead
    // of one chain of twelve, so consecutive lanes overlap (twice as fast).
    const V r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    const V p01 = 1.0 + r, p23 = 1.0 / 2 + r * (1.0 / 6), p45 = 1.0 / 24 + r * (1.0 / 120);
    const V p67 = 1.0 / 720 + r * (1.0 / 5040), p89 = 1.0 / 40320 + r * (1.0 / 362880);
    const V p1011 = 1.0 / 3628800 + r * (1.0 / 39916800);
    const V q0 = p01 + r2 * p23, q1 = p45 + r2 * p67, q2 = p89 + r2 * p1011;
    const V s0 = q0 + r4 * q1, s1 = q2 + r4 * (1.0 / 479001600);
    return (s0 + r8 * s1) * (V)((M)t << 52);
#else
    // -ffast-math may fold away the rounding trick; other compilers have no vector types.
    for (int l = 0; l < int(sizeof(V) / sizeof(double)); ++l) x[l] = std::exp(x[l]);
    return x;
#endif
}

// ---- Eight lanes, two ways --------------------------------------------------------------------
// Block<B> gives the operations the kernels use on a block B of eight doubles: B = Split (two
// four-lane halves, for AVX2) or B = V8 (one AVX-512 register). Every lane does the same
// operations either way, and sum() adds the lanes in one fixed order, so the two agree to the bit.
struct Split {
    V4 lo, hi;
};
struct SplitMask {
    M4 lo, hi;
};
OCCAM_LANES_INLINE Split operator+(Split a, Split b) { return {a.lo + b.lo, a.hi + b.hi}; }
OCCAM_LANES_INLINE Split operator-(Split a, Split b) { return {a.lo - b.lo, a.hi - b.hi}; }
OCCAM_LANES_INLINE Split operator*(Split a, Split b) { return {a.lo * b.lo, a.hi * b.hi}; }
OCCAM_LANES_INLINE Split operator/(Split a, Split b) { return {a.lo / b.lo, a.hi / b.hi}; }
OCCAM_LANES_INLINE Split operator+(Split a, double b) { return {a.lo + b, a.hi + b}; }
OCCAM_LANES_INLINE Split operator-(Split a, double b) { return {a.lo - b, a.hi - b}; }
OCCAM_LANES_INLINE Split operator*(Split a, double b) { return {a.lo * b, a.hi * b}; }
OCCAM_LANES_INLINE Split operator+(double a, Split b) { return {a + b.lo, a + b.hi}; }
OCCAM_LANES_INLINE Split operator-(double a, Split b) { return {a - b.lo, a - b.hi}; }
OCCAM_LANES_INLINE Split operator*(double a, Split b) { return {a * b.lo, a * b.hi}; }
OCCAM_LANES_INLINE Split operator-(Split a) { return {-a.lo, -a.hi}; }
OCCAM_LANES_INLINE SplitMask operator>(Split a, Split b) { return {a.lo > b.lo, a.hi > b.hi}; }
OCCAM_LANES_INLINE SplitMask operator==(Split a, Split b) { return {a.lo == b.lo, a.hi == b.hi}; }

/// Four 2-byte integers as four doubles (exact: every 16-bit integer is a double).
OCCAM_LANES_INLINE V4 u16_lanes(const std::uint16_t* p) {
#ifdef OCCAM_VECTOR_EXTENSIONS
    typedef std::uint16_t U4 __attribute__((vector_size(8)));
    typedef std::int32_t I4 __attribute__((vector_size(16)));
    U4 u;
    std::memcpy(&u, p, sizeof u);
    return __builtin_convertvector(__builtin_convertvector(u, I4), V4);  // (in one step GCC goes lane by lane)
#else
    V4 v;
    for (int l = 0; l < 4; ++l) v[l] = double(p[l]);
    return v;
#endif
}

template <class B>
struct Block;

template <>
struct Block<Split> {
    OCCAM_LANES_INLINE static Split load(const double* p) {
        Split v;
        std::memcpy(&v.lo, p, sizeof v.lo);
        std::memcpy(&v.hi, p + 4, sizeof v.hi);
        return v;
    }
    OCCAM_LANES_INLINE static void store(double* p, Split v) {
        std::memcpy(p, &v.lo, sizeof v.lo);
        std::memcpy(p + 4, &v.hi, sizeof v.hi);
    }
    OCCAM_LANES_INLINE static Split splat(double x) {
        Split v;
        for (int l = 0; l < 4; ++l) v.lo[l] = x, v.hi[l] = x;
        return v;
    }
    OCCAM_LANES_INLINE static Split select(SplitMask m, Split a, Split b) { return {pick(m.lo, a.lo, b.lo), pick(m.hi, a.hi, b.hi)}; }
    /// Lanes l < limit (limit in 0..8).
    OCCAM_LANES_INLINE static SplitMask first(int limit) {
        const Split lane_index{{0, 1, 2, 3}, {4, 5, 6, 7}};
        return splat(double(limit)) > lane_index;
    }
    OCCAM_LANES_INLINE static double lane(Split v, int l) { return l < 4 ? v.lo[l] : v.hi[l - 4]; }
    /// Eight 2-byte integers (a pooling layer's winner codes) as doubles.
    OCCAM_LANES_INLINE static Split from_u16(const std::uint16_t* p) { return {u16_lanes(p), u16_lanes(p + 4)}; }
    /// *p in every lane (splat(*p) adds it to +0, which turns a -0 into +0).
    OCCAM_LANES_INLINE static Split broadcast(const double* p) {
        const double x = *p;
        return {V4{x, x, x, x}, V4{x, x, x, x}};
    }
    OCCAM_LANES_INLINE static Split exp(Split x) { return {exp_lanes<V4, M4>(x.lo), exp_lanes<V4, M4>(x.hi)}; }
    OCCAM_LANES_INLINE static Split fma(Split a, Split b, Split c) { return {fma_lanes(a.lo, b.lo, c.lo), fma_lanes(a.hi, b.hi, c.hi)}; }
    OCCAM_LANES_INLINE static Split sqrt(Split x) { return {sqrt_lanes(x.lo), sqrt_lanes(x.hi)}; }

  private:
    OCCAM_LANES_INLINE static V4 pick(M4 m, V4 a, V4 b) {
#ifdef OCCAM_VECTOR_EXTENSIONS
        return (V4)(((M4)a & m) | ((M4)b & ~m));
#else
        for (int l = 0; l < 4; ++l) a[l] = m.v[l] ? a[l] : b[l];
        return a;
#endif
    }
};

#ifdef OCCAM_VECTOR_EXTENSIONS
template <>
struct Block<V8> {
    OCCAM_LANES_INLINE static V8 load(const double* p) {
        V8 v;
        std::memcpy(&v, p, sizeof v);
        return v;
    }
    OCCAM_LANES_INLINE static void store(double* p, V8 v) { std::memcpy(p, &v, sizeof v); }
    OCCAM_LANES_INLINE static V8 splat(double x) { return V8{} + x; }
    /// M: M8, or what a comparison of two V8 gives (a vector of long, not long long, on LP64).
    template <class M>
    OCCAM_LANES_INLINE static V8 select(M m, V8 a, V8 b) {
        return (V8)(((M8)a & (M8)m) | ((M8)b & ~(M8)m));
    }
    OCCAM_LANES_INLINE static M8 first(int limit) { return M8{0, 1, 2, 3, 4, 5, 6, 7} < (long long)limit; }
    OCCAM_LANES_INLINE static double lane(V8 v, int l) { return v[l]; }
    OCCAM_LANES_INLINE static V8 from_u16(const std::uint16_t* p) {
        typedef std::uint16_t U8 __attribute__((vector_size(16)));
        typedef std::int32_t I8 __attribute__((vector_size(32)));
        U8 u;
        std::memcpy(&u, p, sizeof u);
        return __builtin_convertvector(__builtin_convertvector(u, I8), V8);
    }
    /// *p in every lane (splat(*p) adds it to +0, which turns a -0 into +0).
    OCCAM_LANES_INLINE static V8 broadcast(const double* p) {
        const double x = *p;
        return V8{x, x, x, x, x, x, x, x};
    }
    OCCAM_LANES_INLINE static V8 exp(V8 x) { return exp_lanes<V8, M8>(x); }
    OCCAM_LANES_INLINE static V8 fma(V8 a, V8 b, V8 c) { return fma_lanes(a, b, c); }
    OCCAM_LANES_INLINE static V8 sqrt(V8 x) {  // two halves: the AVX-512 builtin needs the clone's target
        V4 h[2];
        std::memcpy(h, &x, sizeof x);
        h[0] = sqrt_lanes(h[0]), h[1] = sqrt_lanes(h[1]);
        std::memcpy(&x, h, sizeof x);
        return x;
    }
};
#endif

/// n rounded up to whole blocks of eight (buffers the kernels read a block at a time).
inline int padded(int n) { return (n + 7) & ~7; }

/// Operations every block type shares.
template <class B>
struct Ops : Block<B> {
    using Block<B>::select;
    using Block<B>::lane;
    using Block<B>::splat;
    using Block<B>::fma;
    OCCAM_LANES_INLINE static B fma(B a, double b, B c) { return fma(a, splat(b), c); }
    OCCAM_LANES_INLINE static B fma(B a, double b, double c) { return fma(a, splat(b), splat(c)); }
    OCCAM_LANES_INLINE static B max(B a, B b) { return select(a > b, a, b); }
    /// The lanes' sum, always in this order.
    OCCAM_LANES_INLINE static double sum(B v) {
        return ((lane(v, 0) + lane(v, 4)) + (lane(v, 2) + lane(v, 6))) +
               ((lane(v, 1) + lane(v, 5)) + (lane(v, 3) + lane(v, 7)));
    }
    OCCAM_LANES_INLINE static double max_lane(B v) {
        double m = lane(v, 0);
        for (int l = 1; l < 8; ++l) m = std::max(m, lane(v, l));
        return m;
    }
};

// ---- Choosing the width at run time ---------------------------------------------------------
// A default build targets AVX2 + FMA (x86-64-v3); on a CPU that also has AVX-512 the hot
// kernels are worth compiling a second time for it. OCCAM_AVX512_CLONE marks that second copy
// (a function whose always-inline callees are compiled again with AVX-512 on), and
// wide_lanes_available() says at run time whether to call it. Both copies contract the same
// products into fused multiply-adds, so they agree to the bit (the tests compare them).
#if defined(OCCAM_VECTOR_EXTENSIONS) && defined(__x86_64__) && defined(__FMA__) && !defined(__AVX512F__)
#define OCCAM_AVX512_CLONE __attribute__((target("avx512f")))
inline bool wide_lanes_available() {
    static const bool yes = __builtin_cpu_supports("avx512f");
    return yes;
}
#elif defined(OCCAM_VECTOR_EXTENSIONS) && defined(__AVX512F__)
#define OCCAM_AVX512_CLONE
inline bool wide_lanes_available() { return true; }  // built for AVX-512: V8 is native
#else
#define OCCAM_AVX512_CLONE
inline bool wide_lanes_available() { return false; }
#endif

/// Whether the AVX-512 copies may run when the CPU has them (the tests switch them off to compare
/// the two copies, `occam bench --no-avx512` to time what a CPU without AVX-512 runs).
inline std::atomic<bool>& wide_allowed() {
    static std::atomic<bool> allowed{true};
    return allowed;
}
/// Whether to call the AVX-512 copies now.
inline bool use_wide() { return wide_allowed().load(std::memory_order_relaxed) && wide_lanes_available(); }

/// The block type of the AVX-512 copy: V8 where it can run, else Split (never called then).
#if defined(OCCAM_VECTOR_EXTENSIONS) && (defined(__AVX512F__) || (defined(__x86_64__) && defined(__FMA__)))
using Wide = V8;
#else
using Wide = Split;
#endif

// ---- Running a kernel --------------------------------------------------------------------------
// A kernel is a lambda templated on the block type, always inlined:
//     lanes::run([&]<class B>() OCCAM_LANES_KERNEL { my_kernel<B>(args...); });
// run() calls it inside a function compiled for AVX-512 when use_wide() says so, else inside a
// plain one: the same source, compiled twice, with the same bits.
#if defined(__GNUC__) || defined(__clang__)
#define OCCAM_LANES_KERNEL __attribute__((always_inline))
#else
#define OCCAM_LANES_KERNEL
#endif

template <class Kernel>
OCCAM_AVX512_CLONE void run_wide(const Kernel& kernel) {
    kernel.template operator()<Wide>();
}
template <class Kernel>
void run_narrow(const Kernel& kernel) {
    kernel.template operator()<Split>();
}
template <class Kernel>
void run(const Kernel& kernel) {
    if (use_wide()) run_wide(kernel);
    else run_narrow(kernel);
}

}  // namespace occam::lanes

OCCAM_KERNELS_END
