// What this file teaches: blocking for the cache. A CNN layer, max_pool(relu(conv(x, w) + b)),
// run a block of images at a time, and within it a band of `pool` output rows at a time, so the
// convolution's output (four times the pooled one: 200 MB for 2000 MNIST images and 16
// channels) only ever exists for one band, in a buffer that stays in L2 from the product to the
// pooling; the gradient there likewise on the way back (for a whole block where the products of
// an input gradient need it).
// What the layer keeps for its backward is the pooled output and, per entry, which element of its
// window won and whether relu zeroed it: two bytes instead of a four-byte index into the unpooled
// output, and the backward pass reads those two bytes, not the eight of the output, for its mask.
// For short patches and 2 x 2 pools the layer does not even keep a band: each window's four
// sums stay in registers and are pooled there. And sparsity: behind relu and pooling at most
// one gradient entry in pool^2 is not zero, so the backward of a long patch sums over those
// winners alone, a quarter of the dense products' work. And arithmetic: a 3 x 3 layer's 2 x 2
// pooling window is one tile of Winograd's minimal filtering, 16 multiplications a window and
// channel pair instead of 36.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "buffer.hpp"
#include "conv.hpp"

// The AVX-512 copy's pooling, take and winner lists are written with intrinsics (GCC and Clang
// on x86-64); elsewhere only the lanes code below exists.
#if defined(OCCAM_VECTOR_EXTENSIONS) && defined(__x86_64__)
#define OCCAM_POOL_INTRINSICS 1
#include <immintrin.h>
#endif

namespace occam::kernels {

/// A winner code is 16 bits: the winner's place dy size + dx in its window in the low 15 (so
/// windows are at most 181 x 181), and kReluZero where relu set the output to 0 or it is NaN
/// (not y > 0): there the gradient is 0, and a code with that bit matches no place.
constexpr int kMaxPoolWindow = 181;
constexpr std::uint16_t kReluZero = 0x8000;

namespace relu_pool_detail {

/// Images per block: the block's convolution output (m x Cout P) about 2^20 doubles (8 MB), in
/// multiples of 8 (one AVX-512 register of images). Smaller blocks fit L2 but shorten the runs
/// the direct kernels stream down (out_w m long) and multiply the product's per-block costs: for
/// fig6's three layers (forward and backward, 2000 and 1400 images) on an Intel Xeon with 2 MB
/// of L2 (im2col's blocks then 2^18 doubles), blocks of 2^17 doubles took 683 ms, 2^20 567 ms,
/// 2^22 625 ms, one block 711 ms. The size depends on the shapes only, so every run (any thread
/// count) sums in the same order.
inline int block_images(int n, int cout, int positions) {
    const long per_image = std::max(1L, long(cout) * positions);
    const long m = std::max(8L, (1L << 20) / per_image / 8 * 8);
    return int(std::min<long>(m, n));
}

/// Rows [r0, r0 + m) of x (n x cols, column-major) into xb (m x cols).
inline void gather_rows(const double* x, int n, long cols, int r0, int m, double* xb) {
    for (long k = 0; k < cols; ++k) std::copy_n(x + k * n + r0, m, xb + k * m);
}

/// xb (m x cols) into rows [r0, r0 + m) of x (n x cols).
inline void scatter_rows(const double* xb, int m, long cols, int r0, int n, double* x) {
    for (long k = 0; k < cols; ++k) std::copy_n(xb + k * m, m, x + k * n + r0);
}

/// One band of `size` rows of a block's convolution output (zb: channels x size x width x m,
/// channel c's size width m entries contiguous) pooled: relu of each window's maximum into
/// pooled row py of y's rows r0.. (y n x C Ho Wo), and the maximum's place in its window (dy
/// size + dx, plus kReluZero where the output is not > 0) into `win` (same layout). Ties go to
/// the first maximum in row-major window order and a NaN wins, as in max_pool2d_forward;
/// relu(NaN) stays NaN.
inline void relu_pool_band(int channels, int ho, int width, int size, int m, const double* zb, int py, int r0, int n,
                           double* y, std::uint16_t* win) {
    const int wo = width / size;
    const long band = long(size) * width;
    for (int c = 0; c < channels; ++c)
        for (int ox = 0; ox < wo; ++ox) {
            const long out = ((long(c) * ho + py) * wo + ox) * n + r0;
            double* best = y + out;
            std::uint16_t* at = win + out;
            const double* v = zb + (c * band + ox * size) * m;
            // (pooled_detail::pool_lanes repeats this window's rule: a helper shared by the two
            // made the pooled forward 1.1x as long)
            if (size == 2) {  // the usual window, its four entries compared in registers in one pass
                const double *v1 = v + m, *v2 = v + long(width) * m, *v3 = v2 + m;
                for (int i = 0; i < m; ++i) {
                    double b = v[i];
                    int a = 0;
                    bool take = v1[i] > b || std::isnan(v1[i]);
                    b = take ? v1[i] : b, a = take ? 1 : a;
                    take = v2[i] > b || std::isnan(v2[i]);
                    b = take ? v2[i] : b, a = take ? 2 : a;
                    take = v3[i] > b || std::isnan(v3[i]);
                    b = take ? v3[i] : b, a = take ? 3 : a;
                    best[i] = std::max(b, 0.0), at[i] = std::uint16_t(a | (b > 0 ? 0 : kReluZero));
                }
                continue;
            }
            for (int i = 0; i < m; ++i) best[i] = v[i], at[i] = 0;
            for (int dy = 0; dy < size; ++dy)
                for (int dx = dy == 0; dx < size; ++dx) {
                    const double* u = v + (long(dy) * width + dx) * m;
                    const auto code = std::uint16_t(dy * size + dx);
                    for (int i = 0; i < m; ++i) {
                        const bool take = u[i] > best[i] || std::isnan(u[i]);
                        best[i] = take ? u[i] : best[i];
                        at[i] = take ? code : at[i];
                    }
                }
            for (int i = 0; i < m; ++i) {
                at[i] = std::uint16_t(at[i] | (best[i] > 0 ? 0 : kReluZero));
                best[i] = std::max(best[i], 0.0);
            }
        }
}

/// The gradient at one band of `size` rows of a block's convolution output, from the gradient
/// gy at pooled row py of the output (rows r0.. of n): gy where the entry won its window and
/// relu kept the output (its code has no kReluZero), else 0, and 0 in a last partial column of
/// windows that pooling dropped. Written once, in order, into gz (channel c at gz + c chan,
/// then size x width x m). Each pooled entry's gradient and code are read once into row
/// buffers, the code widened to 64 bits, so the band's writes are plain vector selects, one
/// window entry at a time. Measured against that: masked loads of `code == winner && y > 0 ?
/// gy : 0` took 1.4x as long; writing a 2 x 2 window's four entries in one pass over the row
/// (which GCC 12 compiles to branches) 3-5x as long; reading gy in place for each entry, longer
/// too. Taking relu's mask from the codes rather than from y > 0 saves reading the output: the
/// fig6 layers' backward passes 2-5 ms each.
inline void relu_pool_grad_band(int channels, int ho, int width, int size, int m, const std::uint16_t* win,
                                const double* gy, int py, int r0, int n, double* gz, long chan) {
    const int wo = width / size;
    thread_local std::vector<double> grad;
    thread_local std::vector<std::int64_t> winner;
    grad.resize(std::size_t(wo) * m);
    winner.resize(std::size_t(wo) * m);
    for (int c = 0; c < channels; ++c) {
        for (int ox = 0; ox < wo; ++ox) {
            const long out = ((long(c) * ho + py) * wo + ox) * n + r0;
            double* g = grad.data() + std::size_t(ox) * m;
            std::int64_t* at = winner.data() + std::size_t(ox) * m;
            for (int i = 0; i < m; ++i) g[i] = gy[out + i], at[i] = win[out + i];
        }
        double* to = gz + c * chan;
        for (int dy = 0; dy < size; ++dy) {
            for (int ox = 0; ox < wo; ++ox) {
                const double* g = grad.data() + std::size_t(ox) * m;
                const std::int64_t* at = winner.data() + std::size_t(ox) * m;
                for (int col = 0; col < size; ++col, to += m) {  // the window's columns
                    const std::int64_t code = dy * size + col;
                    for (int i = 0; i < m; ++i) to[i] = at[i] == code ? g[i] : 0.0;
                }
            }
            std::fill(to, to + long(width - wo * size) * m, 0.0);
            to += long(width - wo * size) * m;
        }
    }
}

}  // namespace relu_pool_detail

/// The flat index, in the n x (Cout P) convolution output, of pooled entry (row, col) whose
/// window's winner is `code` (its kReluZero bit ignored): what max_pool2d's index would hold.
inline long relu_pool_source(const ConvGeometry& g, int pool, int n, int row, long col, std::uint16_t code) {
    const int ho = g.out_h() / pool, wo = g.out_w() / pool;
    code &= std::uint16_t(~kReluZero);
    const long c = col / (long(ho) * wo), oy = col / wo % ho, ox = col % wo;
    const long y = oy * pool + code / pool, x = ox * pool + code % pool;
    return row + long(n) * ((c * g.out_h() + y) * g.out_w() + x);
}

/// The convolution conv(x, w) + bias a block of images and, within it, a band of `pool` output
/// rows at a time, each band (zb: Cout x pool out_w x rows, channel-major) handed to
/// use(zb, py, r0, rows) for pooled row py of images r0..; rows past the last whole window of
/// pooling are never computed. The band (1.1 MB for fig6's meta-learner) stays in L2 from the
/// product to its use, where a whole block's output (8 MB) went out to L3 and back.
template <class Use>
void conv_bands(const ConvGeometry& g, int pool, int n, const double* x, const double* w, const double* bias, int cout,
                Use&& use) {
    using namespace relu_pool_detail;
    const int m = block_images(n, cout, g.positions()), ow = g.out_w(), ho = g.out_h() / pool;
    // The direct kernels read a block's images as contiguous rows, so they get a copy; im2col
    // reads them in place.
    const bool direct = conv_detail::reads_x_directly(g);
    thread_local AlignedVector xb, zb;
    for (int r0 = 0; r0 < n; r0 += m) {
        const int rows = std::min(m, n - r0);
        const double* xr = x + r0;
        if (direct && rows < n) {  // (one block of the whole batch is x itself)
            grow(xb, std::size_t(rows) * g.in_size());
            gather_rows(x, n, g.in_size(), r0, rows, xb.data());
            xr = xb.data();
        }
        grow(zb, std::size_t(rows) * cout * pool * ow);
        for (int py = 0; py < ho; ++py) {
            const int oy0 = py * pool;
            if (direct)
                conv_detail::conv2d_direct(g, rows, xr, w, cout, zb.data(), bias, oy0, oy0 + pool);
            else
                conv_detail::conv2d_im2col(g, rows, xr, w, cout, zb.data(), bias, n, oy0 * ow, (oy0 + pool) * ow);
            use(static_cast<const double*>(zb.data()), py, r0, rows);
        }
    }
}

namespace pooled_detail {

/// A block of `rows` images copied with its padding, each padded row split into its even and
/// its odd columns (Wp = W + 2 pad; half rows of ceil(Wp / 2) columns of `rows` images, plus 8
/// doubles so a last partial block of lanes reads inside the copy). Then the lanes r = px rows +
/// i (window column px, image i) of a tap read one contiguous run: the window's left column at
/// tap kx is padded column 2 px + kx, in the half of kx's parity at (px + kx / 2) rows + i, and
/// its right column the same with kx + 1. So a block of eight lanes is one load, whatever the
/// batch size (20 images a step of fig6's learner would waste 4 lanes in 24 if the lanes were
/// images alone).
struct SplitImages {
    int hp = 0, pad = 0, channels = 0, rows = 0;
    long half = 0;
    SplitImages(const ConvGeometry& g, int rows_)
        : hp(g.height + 2 * g.padding), pad(g.padding), channels(g.channels), rows(rows_),
          half(long(g.width + 2 * g.padding + 1) / 2 * rows_ + 8) {}
    long row() const { return 2 * half; }  ///< one padded row: its even half, then its odd half
    long size() const { return long(channels) * hp * row(); }
    /// Where tap (c, ky, kx) of a window's column dx (0 left, 1 right) starts, from the copy's
    /// start for the window row at padded row 0 and lane 0.
    long tap(int c, int ky, int kx, int dx) const {
        const int col = kx + dx;
        return (long(c) * hp + ky) * row() + (col & 1) * half + long(col >> 1) * rows;
    }
};

/// Rows [r0, r0 + s.rows) of x (n x C H W) into their split copy xs (zeros in the padding).
inline void split_copy(const ConvGeometry& g, const SplitImages& s, int n, const double* x, int r0, double* xs) {
    std::fill_n(xs, s.size(), 0.0);
    for (int c = 0; c < g.channels; ++c)
        for (int y = 0; y < g.height; ++y)
            for (int col = 0; col < g.width; ++col) {
                const int pc = col + s.pad;
                std::copy_n(x + ((long(c) * g.height + y) * g.width + col) * n + r0, s.rows,
                            xs + (long(c) * s.hp + y + s.pad) * s.row() + (pc & 1) * s.half + long(pc >> 1) * s.rows);
            }
}

/// Images per block of the pooled direct path: the split copy about 2^17 doubles (1 MB, in L2),
/// in multiples of 8, so eight lanes rarely straddle two window columns. Every output is summed
/// alone, so the block size does not change a bit.
inline int block_rows(const ConvGeometry& g, int n) {
    const long per_image = long(g.channels) * (g.height + 2 * g.padding) * (g.width + 2 * g.padding);
    return int(std::min<long>(n, std::max(8L, (1L << 17) / per_image / 8 * 8)));
}

/// The direct tile's channels for each block type: AVX-512 4 channels (16 sums for the window's
/// four places, of 32 registers), AVX2 1 (8 halves, of 16).
template <class B>
constexpr int kPooledChannels = std::is_same_v<B, lanes::Split> ? 1 : 4;

/// The four places of a 2 x 2 window (z[q], q = dy 2 + dx, as a winner code) for NC channels
/// from o0 and eight lanes: conv(x, w) + bias, the taps in order from 0, each a fused
/// multiply-add, as conv_detail::run_tile sums them (a padded tap reads a 0 here, gives a 0
/// there), so the same bits. x: the split copy at the window row's top padded row and the
/// lanes' first; tap0 / tap1 (K each): the left / right column's tap offsets; down: one row.
template <class B, int NC>
OCCAM_LANES_INLINE void window_sums(int K, const long* tap0, const long* tap1, const double* x, long down,
                                    const double* w, int cout, int o0, const double* bias, B (&z)[4][NC]) {
    using L = lanes::Ops<B>;
    // (GCC left the loops over c rolled, the sums in memory, without the pragmas)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q)
#pragma GCC unroll 8
        for (int c = 0; c < NC; ++c) z[q][c] = L::splat(0.0);
    for (int t = 0; t < K; ++t) {
        const B x0 = L::load(x + tap0[t]), x1 = L::load(x + tap1[t]);
        const B x2 = L::load(x + tap0[t] + down), x3 = L::load(x + tap1[t] + down);
        const double* wt = w + long(t) * cout + o0;
#pragma GCC unroll 8
        for (int c = 0; c < NC; ++c) {  // run_tile's expression, so the same contraction
            z[0][c] = z[0][c] + x0 * wt[c];
            z[1][c] = z[1][c] + x1 * wt[c];
            z[2][c] = z[2][c] + x2 * wt[c];
            z[3][c] = z[3][c] + x3 * wt[c];
        }
    }
    if (bias)
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q)
#pragma GCC unroll 8
            for (int c = 0; c < NC; ++c) z[q][c] = z[q][c] + L::splat(bias[o0 + c]);
}

/// Where lanes [r, r + valid) of a window row land in an output plane: (px n + r0 + i) for
/// r = px rows + i; with the whole batch in one block, r itself (then contiguous).
struct Lanes {
    long at[8];
    int valid;
    bool contiguous;  ///< all eight valid and at[l] = at[0] + l
};

/// Lanes [r, r + 8) of a window row of block r0 (lanes_in_row of them).
inline Lanes lanes_at(const SplitImages& s, int n, int r0, long lanes_in_row, long r) {
    Lanes at;
    at.valid = int(std::min<long>(8, lanes_in_row - r));
    for (long l = 0, px = r / s.rows, i = r % s.rows; l < 8; ++l) {
        at.at[l] = px * n + r0 + i;
        if (++i == s.rows) i = 0, ++px;
    }
    at.contiguous = at.valid == 8 && at.at[7] == at.at[0] + 7;
    return at;
}

/// What the pooled path writes: the pooled output and its winners' codes (the forward), or the
/// sums at the winners the codes name (Take: conv_pool_take's out); channel o, window row py's
/// plane at (o ho + py) wo n.
struct PooledOut {
    double* y;
    std::uint16_t* win;
    long plane, row;
};

#ifdef OCCAM_POOL_INTRINSICS
// The AVX-512 copy's pooling and take, written with intrinsics: the same comparisons, lane by
// lane, as pool_lanes and take_lanes below, in mask registers. Written on V8 with the lanes
// operations (greater, select), GCC 12 lowered them to scalar code before the AVX-512 copy
// inlined them, and the scalar loop over eight lanes cost a third of the pooled forward. These
// carry the target themselves and are plain `inline` (an always_inline callee with a target its
// caller template lacks does not compile): GCC inlines them into the AVX-512 copy, which has it.

/// pool_lanes for one register of lanes: b, the window's first maximum (a NaN wins), its place
/// a, then relu: y = b < 0 ? 0 : b (std::max(b, 0.0): NaN and -0 stay), and a | kReluZero
/// where b is not > 0.
[[gnu::target("avx512f")]] inline void pool_lanes_wide(const lanes::V8* z, double* y, std::uint16_t* win,
                                                       const Lanes& at) {
    const __m512d zero = _mm512_setzero_pd();
    __m512d b = __m512d(z[0]);
    __m512i a = _mm512_setzero_si512();
    for (int q = 1; q < 4; ++q) {
        const __m512d v = __m512d(z[q]);
        const __mmask8 take = _mm512_cmp_pd_mask(v, b, _CMP_GT_OQ) | _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q);
        b = _mm512_mask_blend_pd(take, b, v);
        a = _mm512_mask_blend_epi64(take, a, _mm512_set1_epi64(q));
    }
    const __mmask8 kept = _mm512_cmp_pd_mask(b, zero, _CMP_GT_OQ);
    a = _mm512_mask_or_epi64(a, __mmask8(~kept), a, _mm512_set1_epi64(kReluZero));
    const __m512d best = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(b, zero, _CMP_LT_OQ), b, zero);
    // (maskz: GCC 12 warns that the plain conversion's source is used uninitialised)
    const __m128i code = _mm512_maskz_cvtepi64_epi16(0xff, a);
    if (at.contiguous) {
        _mm512_storeu_pd(y + at.at[0], best);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(win + at.at[0]), code);
        return;
    }
    alignas(64) double part[8];
    alignas(16) std::uint16_t part_code[8];
    _mm512_store_pd(part, best);
    _mm_store_si128(reinterpret_cast<__m128i*>(part_code), code);
    for (int l = 0; l < at.valid; ++l) y[at.at[l]] = part[l], win[at.at[l]] = part_code[l];
}

/// take_lanes for one register of lanes: each lane's sum at its code's place, 0 where the code
/// has kReluZero.
[[gnu::target("avx512f")]] inline void take_lanes_wide(const lanes::V8* z, double* out, const std::uint16_t* win,
                                                       const Lanes& at) {
    alignas(16) std::uint16_t part_code[8];
    if (at.contiguous) {
        std::memcpy(part_code, win + at.at[0], sizeof part_code);
    } else {
        for (int l = 0; l < 8; ++l) part_code[l] = l < at.valid ? win[at.at[l]] : kReluZero;
    }
    const __m512i code = _mm512_maskz_cvtepu16_epi64(0xff, _mm_load_si128(reinterpret_cast<const __m128i*>(part_code)));
    const __m512i place = _mm512_and_si512(code, _mm512_set1_epi64(3));
    __m512d r = __m512d(z[0]);
    for (int q = 1; q < 4; ++q)
        r = _mm512_mask_blend_pd(_mm512_cmpeq_epi64_mask(place, _mm512_set1_epi64(q)), r, __m512d(z[q]));
    r = _mm512_mask_blend_pd(_mm512_test_epi64_mask(code, _mm512_set1_epi64(kReluZero)), r, _mm512_setzero_pd());
    if (at.contiguous) {
        _mm512_storeu_pd(out + at.at[0], r);
        return;
    }
    alignas(64) double part[8];
    _mm512_store_pd(part, r);
    for (int l = 0; l < at.valid; ++l) out[at.at[l]] = part[l];
}
#endif

/// One channel's pooled output from its window sums (z[q]: place q = dy 2 + dx), eight lanes:
/// relu_pool_band's window of 2 x 2, the same comparisons in the same order, on the sums
/// through memory in the AVX2 copy (pool_lanes_wide's mask registers in the AVX-512 one).
template <class B>
OCCAM_LANES_INLINE void pool_lanes(const B* z, double* y, std::uint16_t* win, const Lanes& at) {
#ifdef OCCAM_POOL_INTRINSICS
    if constexpr (std::is_same_v<B, lanes::V8>) return pool_lanes_wide(z, y, win, at);
#endif
    using L = lanes::Ops<B>;
    alignas(64) double v[4][8], part[8];
    alignas(16) std::uint16_t part_code[8];
    for (int q = 0; q < 4; ++q) L::store(v[q], z[q]);
    // Written in place where the lanes are contiguous (a copy of a stack buffer written lane by
    // lane read it back whole: a store forwarding stall each, 1.7x the layer's time).
    double* best = at.contiguous ? y + at.at[0] : part;
    std::uint16_t* code = at.contiguous ? win + at.at[0] : part_code;
    for (int l = 0; l < 8; ++l) {
        double b = v[0][l];
        int a = 0;
        bool take = v[1][l] > b || std::isnan(v[1][l]);
        b = take ? v[1][l] : b, a = take ? 1 : a;
        take = v[2][l] > b || std::isnan(v[2][l]);
        b = take ? v[2][l] : b, a = take ? 2 : a;
        take = v[3][l] > b || std::isnan(v[3][l]);
        b = take ? v[3][l] : b, a = take ? 3 : a;
        best[l] = std::max(b, 0.0), code[l] = std::uint16_t(a | (b > 0 ? 0 : kReluZero));
    }
    if (!at.contiguous)
        for (int l = 0; l < at.valid; ++l) y[at.at[l]] = part[l], win[at.at[l]] = part_code[l];
}

/// One channel's sums at its winners (0 where the code marks relu's zero), in lanes.
template <class B>
OCCAM_LANES_INLINE void take_lanes(const B* z, double* out, const std::uint16_t* win, const Lanes& at) {
#ifdef OCCAM_POOL_INTRINSICS
    if constexpr (std::is_same_v<B, lanes::V8>) return take_lanes_wide(z, out, win, at);
#endif
    using L = lanes::Ops<B>;
    // Place q's sums in row q, zeros in rows 4..7: a code (place | kReluZero) picks its row
    // without a branch (relu's zeros in random places: a misprediction each).
    alignas(64) double sums[8][8];
    for (int q = 0; q < 4; ++q) L::store(sums[q], z[q]), L::store(sums[4 + q], L::splat(0.0));
    for (int l = 0; l < at.valid; ++l) {
        const long k = at.contiguous ? at.at[0] + l : at.at[l];
        const unsigned code = win[k];
        out[k] = sums[(code & 3) | ((code >> 13) & 4)][l];
    }
}

/// One tile: G channels from o0, their window sums, then each channel's outputs.
template <class B, int G, bool Take>
OCCAM_LANES_INLINE void pooled_group(int K, const long* tap0, const long* tap1, const double* x, long down,
                                     const double* w, int cout, int o0, const double* bias, int py, const Lanes& at,
                                     const PooledOut& out) {
    B z[4][G];
    window_sums<B, G>(K, tap0, tap1, x, down, w, cout, o0, bias, z);
#pragma GCC unroll 8
    for (int c = 0; c < G; ++c) {
        const B zc[4] = {z[0][c], z[1][c], z[2][c], z[3][c]};
        const long base = long(o0 + c) * out.plane + long(py) * out.row;
        if constexpr (Take) take_lanes<B>(zc, out.y + base, out.win + base, at);
        else pool_lanes<B>(zc, out.y + base, out.win + base, at);
    }
}

/// Channels [o0, o1) of one block of eight lanes: NC at a time, then one at a time.
template <class B, bool Take>
OCCAM_LANES_INLINE void pooled_channels(int K, const long* tap0, const long* tap1, const double* x, long down,
                                        const double* w, int cout, int o0, int o1, const double* bias, int py,
                                        const Lanes& at, const PooledOut& out) {
    constexpr int NC = kPooledChannels<B>;
    for (; o0 + NC <= o1; o0 += NC) pooled_group<B, NC, Take>(K, tap0, tap1, x, down, w, cout, o0, bias, py, at, out);
    for (; o0 < o1; ++o0) pooled_group<B, 1, Take>(K, tap0, tap1, x, down, w, cout, o0, bias, py, at, out);
}

/// The layer over one block of images (rows r0 .. r0 + s.rows of n), window row by window row,
/// eight lanes at a time, NC channels at a time.
template <class B, bool Take>
OCCAM_LANES_INLINE void pooled_block(const ConvGeometry& g, const SplitImages& s, int n, int r0, const double* xs,
                                     const double* w, const double* bias, int cout, const long* tap0,
                                     const long* tap1, const PooledOut& out) {
    constexpr int NC = kPooledChannels<B>;
    const int K = g.patch(), ho = g.out_h() / 2, wo = g.out_w() / 2;
    const long lanes_in_row = long(wo) * s.rows;
    for (int py = 0; py < ho; ++py) {
        const double* top = xs + long(2 * py) * s.row();
        // The R-pass runs the lanes inside each group of channels, the forward the channels
        // inside each block of lanes: each order the faster for it (fig6's layers: the R-pass's
        // other order 1.6x as long for 1400 images, the forward's 1.4x).
        if constexpr (Take) {
            for (int o0 = 0; o0 < cout; o0 += NC)
                for (long r = 0; r < lanes_in_row; r += 8)
                    pooled_channels<B, Take>(K, tap0, tap1, top + r, s.row(), w, cout, o0, std::min(cout, o0 + NC),
                                             bias, py, lanes_at(s, n, r0, lanes_in_row, r), out);
        } else {
            for (long r = 0; r < lanes_in_row; r += 8)
                pooled_channels<B, Take>(K, tap0, tap1, top + r, s.row(), w, cout, 0, cout, bias, py,
                                         lanes_at(s, n, r0, lanes_in_row, r), out);
        }
    }
}

/// The layer through the pooled direct path (stride 1, 2 x 2 pooling, a short patch): block by
/// block of images, each copied split, then every window's four sums in registers, pooled (or
/// taken at the codes' winners) there. The convolution's output never goes to memory.
template <bool Take>
void pooled_direct(const ConvGeometry& g, int n, const double* x, const double* w, const double* bias, int cout,
                   const PooledOut& out) {
    const int m = block_rows(g, n), K = g.patch();
    thread_local AlignedVector xs;
    thread_local std::vector<long> tap0, tap1;
    for (int r0 = 0; r0 < n; r0 += m) {
        const SplitImages s(g, std::min(m, n - r0));
        tap0.resize(std::size_t(K)), tap1.resize(std::size_t(K));
        for (int c = 0, t = 0; c < g.channels; ++c)
            for (int ky = 0; ky < g.kernel_h; ++ky)
                for (int kx = 0; kx < g.kernel_w; ++kx, ++t)
                    tap0[std::size_t(t)] = s.tap(c, ky, kx, 0), tap1[std::size_t(t)] = s.tap(c, ky, kx, 1);
        grow(xs, std::size_t(s.size()));
        split_copy(g, s, n, x, r0, xs.data());
        const double* xp = xs.data();
        const long* t0 = tap0.data();
        const long* t1 = tap1.data();
        lanes::run([&]<class B>() OCCAM_LANES_KERNEL {
            pooled_block<B, Take>(g, s, n, r0, xp, w, bias, cout, t0, t1, out);
        });
    }
}

/// Whether a layer takes the pooled direct path: stride 1, 2 x 2 pools, a patch short enough to
/// read x directly and, for AVX2, of at least 16 entries. Both paths give the same bits, so the
/// choice may depend on the lane width. Against the bands (one core, scratch program):
/// - AVX-512, pooling in mask registers: fig6's learner (5 x 5, 20 images) forward 0.29 -> 0.19
///   ms; its 1400 test images 24 -> 15 ms; the meta-learner's first layer (3 x 3, 2000 images)
///   25 -> 14 ms; a 2 x 2 kernel 18 -> 9 ms, a 1 x 1 21 -> 11 ms.
/// - AVX2: the learner's forward 0.49 -> 0.41 ms, R-pass 0.37 -> 0.36 ms; but the first meta
///   layer 26 -> 30 ms: nine taps do not cover the scalar pooling and the copy, so from 16 on.
inline bool pooled_direct_applies(const ConvGeometry& g, int pool) {
    return pool == 2 && conv_detail::reads_x_directly(g) && (lanes::use_wide() || g.patch() >= 16);
}

}  // namespace pooled_detail

/// y (n x Cout Ho Wo) = max_pool(relu(conv(x, w) + bias)) and the winners' codes through the
/// bands (conv_bands, relu_pool_band): the path of every shape the pooled direct path does not
/// take, and its reference in the tests.
inline void conv_relu_pool_forward_bands(const ConvGeometry& g, int pool, int n, const double* x, const double* w,
                                         const double* bias, int cout, double* y, std::uint16_t* win) {
    const int ho = g.out_h() / pool;
    conv_bands(g, pool, n, x, w, bias, cout, [&](const double* zb, int py, int r0, int rows) {
        relu_pool_detail::relu_pool_band(cout, ho, g.out_w(), pool, rows, zb, py, r0, n, y, win);
    });
}

// ---- Winograd F(2 x 2, 3 x 3): 3 x 3 layers over many input channels ------------------------
// With a 3 x 3 kernel, stride 1 and 2 x 2 pools, each pooling window is one output tile of
// Winograd's minimal filtering F(2 x 2, 3 x 3) (Lavin & Gray, "Fast algorithms for
// convolutional neural networks", CVPR 2016): from the window's 4 x 4 input patch d, per input
// channel c, V_c = B^T d B; per output channel o, the 16 products M = sum_c V_c (.) U_oc, where
// U_oc = G g_oc G^T is the transformed kernel; then the window's four sums are Y = A^T M A, with
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// 16 multiply-adds a window and channel pair instead of 36; the transforms are additions, a
// small share once there are several input channels. The sums come out in another order than
// the direct product's, so the values differ from conv2d_forward's in the last bits (the tests
// bound it); every lane does the same operations, so AVX2 and AVX-512 agree to the bit, and
// no block size or thread count changes one. A NaN or an infinity in a patch would spread to
// the whole window through the transforms (and infinity - infinity is NaN), so a window whose
// transformed patch or sums are not finite is summed again the direct way, as the other paths
// sum it: the NaNs land where conv2d_forward puts them.
namespace winograd_detail {

/// Input channels from which the layer takes this path: the transforms are a fixed cost per
/// window and channel, the saving grows with the output channels.
inline constexpr int kFromChannels = 4;

inline bool applies(const ConvGeometry& g, int pool) {
    return pool == 2 && g.kernel_h == 3 && g.kernel_w == 3 && g.stride == 1 && g.channels >= kFromChannels &&
           g.out_h() >= 2 && g.out_w() >= 2;
}

/// U (16 x C x cols; cols = cout rounded up to whole panels, zeros past cout): the transformed
/// kernels U_oc = G g G^T, entry (a, b) of U_oc at ((4 a + b) C + c) cols + o; w is Cout x
/// (C 3 3), column-major.
inline void transform_weights(int C, const double* w, int cout, int cols, double* U) {
    std::fill_n(U, 16L * C * cols, 0.0);
    for (int o = 0; o < cout; ++o)
        for (int c = 0; c < C; ++c) {
            double k[3][3], gk[4][3];
            for (int a = 0; a < 3; ++a)
                for (int b = 0; b < 3; ++b) k[a][b] = w[o + long(c * 9 + a * 3 + b) * cout];
            for (int b = 0; b < 3; ++b) {  // G k
                gk[0][b] = k[0][b];
                gk[1][b] = (k[0][b] + k[1][b] + k[2][b]) * 0.5;
                gk[2][b] = (k[0][b] - k[1][b] + k[2][b]) * 0.5;
                gk[3][b] = k[2][b];
            }
            for (int a = 0; a < 4; ++a) {  // (G k) G^T
                const double u[4] = {gk[a][0], (gk[a][0] + gk[a][1] + gk[a][2]) * 0.5,
                                     (gk[a][0] - gk[a][1] + gk[a][2]) * 0.5, gk[a][2]};
                for (int b = 0; b < 4; ++b) U[(long(4 * a + b) * C + c) * cols + o] = u[b];
            }
        }
}

/// Lanes 0 .. valid - 1 of a row of eight (contiguous when all eight are).
inline pooled_detail::Lanes first_lanes(int valid) {
    pooled_detail::Lanes at;
    at.valid = valid, at.contiguous = valid == 8;
    for (int l = 0; l < 8; ++l) at.at[l] = l;
    return at;
}

/// Where a block of lanes reads its images: x's columns (ld = n) from image i, or a copy of the
/// last images padded with zeros to eight (ld = 8, i = 0).
struct Source {
    const double* x;
    long ld;
    int i;
};

/// V (16 x C x NL, NL = 8 RB lanes): the transformed patches of window (ty, tx) for the RB
/// blocks of lanes; check[r] gets, per lane, NaN where an entry is not finite (else stays 0).
template <class B, int RB>
OCCAM_LANES_INLINE void transform_patches(const ConvGeometry& g, const Source& s, int ty, int tx, const double* zeros,
                                          double* V, B* check) {
    using L = lanes::Ops<B>;
    constexpr int NL = 8 * RB;
    const int C = g.channels;
    const long hw = long(g.height) * g.width;
    const double* row[4][4];
    for (int c = 0; c < C; ++c) {
        for (int a = 0; a < 4; ++a)
            for (int b = 0; b < 4; ++b) {  // the 4 x 4 patch: taps 0..3 from the window's corner
                const long q = conv_detail::pixel(g, 2 * ty, 2 * tx, a, b);
                row[a][b] = q < 0 ? zeros : s.x + (c * hw + q) * s.ld + s.i;
            }
        for (int r = 0; r < RB; ++r) {
            B d[4][4], t[4][4];
            for (int a = 0; a < 4; ++a)
                for (int b = 0; b < 4; ++b) d[a][b] = L::load(row[a][b] + 8 * r);
            for (int b = 0; b < 4; ++b) {  // B^T d
                t[0][b] = d[0][b] - d[2][b];
                t[1][b] = d[1][b] + d[2][b];
                t[2][b] = d[2][b] - d[1][b];
                t[3][b] = d[1][b] - d[3][b];
            }
            for (int a = 0; a < 4; ++a) {  // (B^T d) B
                const B v[4] = {t[a][0] - t[a][2], t[a][1] + t[a][2], t[a][2] - t[a][1], t[a][1] - t[a][3]};
                for (int b = 0; b < 4; ++b) {
                    L::store(V + (long(4 * a + b) * C + c) * NL + 8 * r, v[b]);
                    check[r] = check[r] + v[b] * 0.0;  // NaN from a NaN or an infinity
                }
            }
        }
    }
}

/// Output channels [o0, o0 + NP) of window (ty, tx): M = sum_c V_c (.) U_oc, 16 sums of C
/// products per channel and lane, summed over c in order from 0; then Y = A^T M A plus the
/// bias, pooled into y and win (lanes `at` from out_at); check[r] as in transform_patches, for
/// the window sums.
template <class B, int RB, int NP>
OCCAM_LANES_INLINE void panel(int C, const double* V, const double* U, int cols, int o0, int cout, const double* bias,
                              double* M, double* y, std::uint16_t* win, long plane, long out_at,
                              const pooled_detail::Lanes* at, B* check) {
    using L = lanes::Ops<B>;
    constexpr int NL = 8 * RB;
    for (int xi = 0; xi < 16; ++xi) {
        B acc[RB][NP];
        for (int r = 0; r < RB; ++r)
            for (int o = 0; o < NP; ++o) acc[r][o] = L::splat(0.0);
        const double* v = V + long(xi) * C * NL;
        const double* u = U + long(xi) * C * cols + o0;
        for (int c = 0; c < C; ++c, v += NL, u += cols) {
            B vr[RB];
            for (int r = 0; r < RB; ++r) vr[r] = L::load(v + 8 * r);
            for (int o = 0; o < NP; ++o)
                for (int r = 0; r < RB; ++r) acc[r][o] = acc[r][o] + vr[r] * u[o];
        }
        for (int o = 0; o < NP; ++o)
            for (int r = 0; r < RB; ++r) L::store(M + (long(xi) * NP + o) * NL + 8 * r, acc[r][o]);
    }
    for (int o = 0; o < NP && o0 + o < cout; ++o)
        for (int r = 0; r < RB; ++r) {
            B m[16], t[2][4];
            for (int xi = 0; xi < 16; ++xi) m[xi] = L::load(M + (long(xi) * NP + o) * NL + 8 * r);
            for (int b = 0; b < 4; ++b) {  // A^T M
                t[0][b] = m[b] + m[4 + b] + m[8 + b];
                t[1][b] = m[4 + b] - m[8 + b] - m[12 + b];
            }
            const B bo = L::splat(bias ? bias[o0 + o] : 0.0);
            B z[4];  // (A^T M) A plus the bias: place q = dy 2 + dx
            for (int dy = 0; dy < 2; ++dy) {
                z[2 * dy] = t[dy][0] + t[dy][1] + t[dy][2] + bo;
                z[2 * dy + 1] = t[dy][1] - t[dy][2] - t[dy][3] + bo;
            }
            for (int q = 0; q < 4; ++q) check[r] = check[r] + z[q] * 0.0;
            const long base = long(o0 + o) * plane + out_at + 8 * r;
            pooled_detail::pool_lanes<B>(z, y + base, win + base, at[r]);
        }
}

/// Window (ty, tx) again for the lanes of block r whose check is not finite, summed the direct
/// way: for each output, the taps in order from 0, each a fused multiply-add (a padded tap
/// multiplies 0), then the bias, as conv2d_implicit and gemm's tiles sum it; pooled as above
/// and written for those lanes alone (so which lanes share a block changes nothing).
template <class B>
OCCAM_LANES_INLINE void direct_window(const ConvGeometry& g, const Source& s, int r, B check, int ty, int tx,
                                      const double* w, int cout, const double* bias, double* y, std::uint16_t* win,
                                      long plane, long out_at, const pooled_detail::Lanes& at) {
    using L = lanes::Ops<B>;
    const long hw = long(g.height) * g.width;
    const pooled_detail::Lanes here = first_lanes(8);  // pooled into a row of eight, then copied lane by lane
    for (int o = 0; o < cout; ++o) {
        alignas(64) double z[4][8] = {}, pooled[8];
        std::uint16_t code[8];
        for (int q = 0; q < 4; ++q)
            for (int l = 0; l < at.valid; ++l)
                if (!(L::lane(check, l) == 0.0)) {
                    const int oy = 2 * ty + q / 2, ox = 2 * tx + q % 2;
                    double sum = 0.0;
                    for (int c = 0, kk = 0; c < g.channels; ++c)
                        for (int ky = 0; ky < 3; ++ky)
                            for (int kx = 0; kx < 3; ++kx, ++kk) {
                                const long p = conv_detail::pixel(g, oy, ox, ky, kx);
                                const double v = p < 0 ? 0.0 : s.x[(c * hw + p) * s.ld + s.i + 8 * r + l];
                                sum = std::fma(v, w[o + long(kk) * cout], sum);
                            }
                    if (bias) sum = sum + bias[o];  // (no bias: nothing added, so a -0 stays, as there)
                    z[q][l] = sum;
                }
        const B zb[4] = {L::load(z[0]), L::load(z[1]), L::load(z[2]), L::load(z[3])};
        pooled_detail::pool_lanes<B>(zb, pooled, code, here);
        const long base = long(o) * plane + out_at + 8 * r;
        for (int l = 0; l < at.valid; ++l)
            if (!(L::lane(check, l) == 0.0)) y[base + at.at[l]] = pooled[l], win[base + at.at[l]] = code[l];
    }
}

/// Every window of RB blocks of lanes from source s, whose outputs land at image column
/// `out_i` (the lanes `at`).
template <class B, int RB, int NP>
OCCAM_LANES_INLINE void windows(const ConvGeometry& g, const Source& s, int n, long out_i, const double* w,
                                const double* U, int cols, int cout, const double* bias, double* y,
                                std::uint16_t* win, const pooled_detail::Lanes* at, double* V, double* M,
                                const double* zeros) {
    using L = lanes::Ops<B>;
    const int ho = g.out_h() / 2, wo = g.out_w() / 2;
    const long plane = long(ho) * wo * n;
    for (int ty = 0; ty < ho; ++ty)
        for (int tx = 0; tx < wo; ++tx) {
            const long out_at = (long(ty) * wo + tx) * n + out_i;
            B check[RB];
            for (int r = 0; r < RB; ++r) check[r] = L::splat(0.0);
            transform_patches<B, RB>(g, s, ty, tx, zeros, V, check);
            for (int o0 = 0; o0 < cout; o0 += NP)
                panel<B, RB, NP>(g.channels, V, U, cols, o0, cout, bias, M, y, win, plane, out_at, at, check);
            for (int r = 0; r < RB; ++r)
                if (!(L::sum(check[r]) == 0.0))
                    direct_window<B>(g, s, r, check[r], ty, tx, w, cout, bias, y, win, plane, out_at, at[r]);
        }
}

/// The layer by Winograd's tiles: images eight lanes at a time (RB blocks together), the last
/// images (fewer than eight) from a zero-padded copy.
template <class B, int RB, int NP>
OCCAM_LANES_INLINE void layer(const ConvGeometry& g, int n, const double* x, const double* w, const double* bias, int cout, double* y,
           std::uint16_t* win, const double* U, int cols, double* V, double* M, double* tail, const double* zeros) {
    pooled_detail::Lanes full[RB];
    for (int r = 0; r < RB; ++r) full[r] = first_lanes(8);
    int i = 0;
    for (; i + 8 * RB <= n; i += 8 * RB)
        windows<B, RB, NP>(g, {x, n, i}, n, i, w, U, cols, cout, bias, y, win, full, V, M, zeros);
    for (; i + 8 <= n; i += 8)
        windows<B, 1, NP>(g, {x, n, i}, n, i, w, U, cols, cout, bias, y, win, full, V, M, zeros);
    if (i < n) {
        const int rest = n - i;
        std::fill_n(tail, g.in_size() * 8, 0.0);
        for (long j = 0; j < g.in_size(); ++j) std::copy_n(x + j * n + i, rest, tail + j * 8);
        const pooled_detail::Lanes part = first_lanes(rest);
        windows<B, 1, NP>(g, {tail, 8, 0}, n, i, w, U, cols, cout, bias, y, win, &part, V, M, zeros);
    }
}

/// conv_relu_pool_forward by Winograd's tiles (applies() must hold); false, having written
/// nothing, where a weight or the bias is not finite (then every window would be summed again).
inline bool forward(const ConvGeometry& g, int n, const double* x, const double* w, const double* bias, int cout,
                    double* y, std::uint16_t* win) {
    for (long j = 0; j < long(cout) * g.patch(); ++j)
        if (!std::isfinite(w[j])) return false;
    for (int o = 0; bias && o < cout; ++o)
        if (!std::isfinite(bias[o])) return false;
    // Output channels a panel: a register of lanes each for RB blocks, 8 x 3 of AVX-512's 32
    // registers; AVX2's 16 hold 4 x 1 of its two-register blocks (8 x 1 spilled: fig6's second
    // meta layer 74 -> 68 ms). cols rounds cout up for either.
    constexpr int NP = 8;
    const int cols = (cout + NP - 1) / NP * NP;
    thread_local AlignedVector U, V, M, tail, zeros;
    grow(U, std::size_t(16) * g.channels * cols);
    grow(V, std::size_t(16) * g.channels * 24);
    grow(M, std::size_t(16) * NP * 24);
    grow(tail, std::size_t(g.in_size()) * 8);
    grow(zeros, 24);
    std::fill_n(zeros.data(), 24, 0.0);
    transform_weights(g.channels, w, cout, cols, U.data());
    lanes::run([&]<class B>() OCCAM_LANES_KERNEL {
        if constexpr (std::is_same_v<B, lanes::Split>)
            layer<B, 1, 4>(g, n, x, w, bias, cout, y, win, U.data(), cols, V.data(), M.data(), tail.data(), zeros.data());
        else
            layer<B, 3, NP>(g, n, x, w, bias, cout, y, win, U.data(), cols, V.data(), M.data(), tail.data(), zeros.data());
    });
    return true;
}

}  // namespace winograd_detail

/// y (n x Cout Ho Wo) = max_pool(relu(conv(x, w) + bias)), pool x pool windows with stride pool,
/// and each entry's winner code in `win`; x is n x (C H W), w is Cout x (C kh kw). The same
/// values as conv2d_forward then max_pool2d_forward then relu, by the pooled direct path where
/// it applies (the same bits as the bands); 3 x 3 layers over several input channels with 2 x 2
/// pools by Winograd's tiles (the same values to rounding).
inline void conv_relu_pool_forward(const ConvGeometry& g, int pool, int n, const double* x, const double* w,
                                   const double* bias, int cout, double* y, std::uint16_t* win) {
    if (winograd_detail::applies(g, pool) && winograd_detail::forward(g, n, x, w, bias, cout, y, win)) return;
    if (!pooled_detail::pooled_direct_applies(g, pool))
        return conv_relu_pool_forward_bands(g, pool, n, x, w, bias, cout, y, win);
    const long row = long(g.out_w() / pool) * n;
    pooled_detail::pooled_direct<false>(g, n, x, w, bias, cout, {y, win, g.out_h() / pool * row, row});
}

/// conv_pool_take (below) through the bands: its path where the pooled direct path does not
/// apply, and its reference in the tests.
inline void conv_pool_take_bands(const ConvGeometry& g, int pool, int n, const double* x, const double* w,
                                 const double* bias, int cout, const std::uint16_t* win, double* out) {
    const int ho = g.out_h() / pool, wo = g.out_w() / pool, ow = g.out_w();
    const long band = long(pool) * ow;
    conv_bands(g, pool, n, x, w, bias, cout, [&](const double* zb, int py, int r0, int rows) {
        for (int c = 0; c < cout; ++c)
            for (int ox = 0; ox < wo; ++ox) {
                const long at = ((long(c) * ho + py) * wo + ox) * n + r0;
                const double* z = zb + (c * band + long(ox) * pool) * rows;  // the window's first entry
                for (int i = 0; i < rows; ++i) {
                    const int code = win[at + i];
                    out[at + i] = code & kReluZero ? 0.0 : z[(long(code / pool) * ow + code % pool) * rows + i];
                }
            }
    });
}

/// out (n x Cout Ho Wo) = conv(x, w) + bias taken at each window's winner (`win`, from
/// conv_relu_pool_forward) where the layer's output was > 0, else 0 (also where it is NaN): the
/// layer's directional derivative (R-operator) along a perturbation w, bias of its parameters,
/// for x fixed. The same values as the whole convolution then a gather at the winners.
inline void conv_pool_take(const ConvGeometry& g, int pool, int n, const double* x, const double* w, const double* bias,
                           int cout, const std::uint16_t* win, double* out) {
    if (!pooled_detail::pooled_direct_applies(g, pool))
        return conv_pool_take_bands(g, pool, n, x, w, bias, cout, win, out);
    const long row = long(g.out_w() / pool) * n;  // (take only reads the codes)
    pooled_detail::pooled_direct<true>(g, n, x, w, bias, cout,
                                       {out, const_cast<std::uint16_t*>(win), g.out_h() / pool * row, row});
}

namespace winner_detail {

/// Where a patch's rows lie in the padded image-major copy of a block of images: image i at
/// i image, padded row y (of H + 2 pad) at y row, pixel x's C channels at x C of it, so one
/// patch row (kw C doubles) is contiguous and the patch under output (oy, ox) starts at
/// oy stride row + ox stride C. Each image ends with 8 doubles of zeros (and rounds up to a
/// cache line): the register blocks read a patch row as `blocks` blocks of 8, past its end.
struct Patches {
    int kh = 0, len = 0, blocks = 0, pad = 0, channels = 0;
    long row = 0, image = 0;
    explicit Patches(const ConvGeometry& g)
        : kh(g.kernel_h), len(g.kernel_w * g.channels), blocks((len + 7) / 8), pad(g.padding), channels(g.channels),
          row(long(g.width + 2 * g.padding) * g.channels),
          image((long(g.height + 2 * g.padding) * row + 8 + 7) / 8 * 8) {}
    int vectors() const { return kh * blocks; }  ///< blocks of 8 in a patch (T)
};

/// Images per block: the block's padded copies of x (and dx) and its gradients and codes about
/// 4 MB (2^19 doubles), in multiples of 8. The copies are written a column of n at a time, m
/// entries of each, and each column is on a new page: fewer than 8 entries a visit and the copy
/// waits on memory; the block is read back an image at a time, so it need not fit L2.
inline int block_images(const Patches& p, int n, long entries, bool dx) {
    const long per_image = p.image * (dx ? 2 : 1) + entries * 10 / 8;  // a gradient and a 2-byte code
    const long m = std::max(8L, ((1L << 19) / per_image) / 8 * 8);
    return int(std::min<long>(m, n));
}

/// Prefetches the `bytes` from p: the copies below read columns n doubles apart, each on a new
/// page, where the hardware prefetcher does not follow.
inline void prefetch(const void* p, long bytes) {
    for (long b = 0; b < bytes; b += 64) __builtin_prefetch(static_cast<const char*>(p) + b);
}

/// Copies between the columns of a block of images (column j: entries col(j) n + r0 .. + m of a
/// column-major n x cols matrix) and their image-major rows (image i's entry j at i stride +
/// at(j)): to the rows (ToRows) or back. Eight columns by eight images at a time, through a
/// tile, so both sides move whole cache lines; one entry at a time, each image's row was written
/// an entry a visit (2.5x as long for fig6's gradients). With `finite`, also whether every entry
/// copied is finite (x 0 is 0 unless x is NaN or infinite).
template <bool ToRows, class T, class Column, class Place>
inline void copy_block(long count, int n, int r0, int m, const T* from, T* to, long stride, Column col, Place at,
                       bool* finite = nullptr) {
    // Eight sums of x 0, one per image of a tile: one chain of 64 dependent multiply-adds a tile
    // was the copy's critical path (4 cycles each).
    double check[8] = {};
    const auto column = [&](long j) { return col(j) * n + r0; };  // where column j's block starts
    long j = 0;
    for (; j + 8 <= count; j += 8) {
        long c[8], a[8];
        for (int k = 0; k < 8; ++k) c[k] = column(j + k), a[k] = at(j + k);
        if (j + 16 <= count)  // the next eight columns: each on a new page, out of the prefetcher's sight
            for (int k = 0; k < 8; ++k) prefetch((ToRows ? from : to) + column(j + 8 + k), m * long(sizeof(T)));
        int i = 0;
        for (; i + 8 <= m; i += 8) {
            T tile[8][8];  // tile[k][l]: column j + k, image i + l
            if constexpr (ToRows) {
                for (int k = 0; k < 8; ++k)
                    for (int l = 0; l < 8; ++l) tile[k][l] = from[c[k] + i + l];
                if (finite)
                    for (int k = 0; k < 8; ++k)
                        for (int l = 0; l < 8; ++l) check[l] += double(tile[k][l]) * 0.0;
                for (int l = 0; l < 8; ++l)
                    for (int k = 0; k < 8; ++k) to[(i + l) * stride + a[k]] = tile[k][l];
            } else {
                for (int l = 0; l < 8; ++l)
                    for (int k = 0; k < 8; ++k) tile[k][l] = from[(i + l) * stride + a[k]];
                for (int k = 0; k < 8; ++k)
                    for (int l = 0; l < 8; ++l) to[c[k] + i + l] = tile[k][l];
            }
        }
        for (; i < m; ++i)
            for (int k = 0; k < 8; ++k) {
                if constexpr (ToRows) to[i * stride + a[k]] = from[c[k] + i];
                else to[c[k] + i] = from[i * stride + a[k]];
            }
    }
    for (; j < count; ++j)
        for (int i = 0; i < m; ++i) {
            if constexpr (ToRows) to[i * stride + at(j)] = from[column(j) + i];
            else to[column(j) + i] = from[i * stride + at(j)];
        }
    if (finite) {  // the ends, copied an entry at a time, are checked where they landed
        if (count % 8 != 0 || m % 8 != 0)
            for (int i = 0; i < m; ++i)
                for (long jj = (m % 8 != 0 && i >= m / 8 * 8) ? 0 : count / 8 * 8; jj < count; ++jj)
                    check[0] += double(to[i * stride + at(jj)]) * 0.0;
        double sum = 0;
        for (int l = 0; l < 8; ++l) sum += check[l];
        *finite = *finite && sum == 0;
    }
}

/// copy_block<true> for 2-byte codes with `same` columns and places (column j's entries r0 .. r0
/// + m of an n-row column-major matrix to entry j of image rows `stride` apart): eight columns
/// by eight images at a time transposed in SSE registers where the intrinsics exist. copy_block's
/// tile moved them a code at a time (the fig6 learner's 20 images x 3136 codes: 20 -> 12 us;
/// 1400 images: 7.2 -> 1.4 ms). Where m or count is not a multiple of 8 the last tile overlaps
/// the one before it, writing the same codes again.
inline void transpose_codes(long count, int n, int r0, int m, const std::uint16_t* from, std::uint16_t* to,
                            long stride) {
#ifdef OCCAM_POOL_INTRINSICS
    if (m >= 8 && count >= 8) {
        for (long j0 = 0; j0 < count; j0 += 8) {
            const long j = std::min(j0, count - 8);
            if (j0 + 16 <= count)  // the next eight columns (copy_block's reason)
                for (int k = 0; k < 8; ++k) prefetch(from + (j0 + 8 + k) * n + r0, m * long(sizeof(std::uint16_t)));
            for (int i0 = 0; i0 < m; i0 += 8) {
                const int i = std::min(i0, m - 8);
                __m128i c[8], a[8], b[8];
                for (int k = 0; k < 8; ++k)
                    c[k] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + (j + k) * n + r0 + i));
                for (int k = 0; k < 4; ++k) {  // pairs of columns, then fours, then eights
                    a[2 * k] = _mm_unpacklo_epi16(c[2 * k], c[2 * k + 1]);
                    a[2 * k + 1] = _mm_unpackhi_epi16(c[2 * k], c[2 * k + 1]);
                }
                for (int h = 0; h < 2; ++h)
                    for (int k = 0; k < 2; ++k) {
                        b[4 * h + 2 * k] = _mm_unpacklo_epi32(a[4 * h + k], a[4 * h + k + 2]);
                        b[4 * h + 2 * k + 1] = _mm_unpackhi_epi32(a[4 * h + k], a[4 * h + k + 2]);
                    }
                for (int l = 0; l < 4; ++l) {  // b[l] and b[l + 4] hold images 2l, 2l + 1 of columns 0-3, 4-7
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(to + (i + 2 * l) * stride + j),
                                     _mm_unpacklo_epi64(b[l], b[l + 4]));
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(to + (i + 2 * l + 1) * stride + j),
                                     _mm_unpackhi_epi64(b[l], b[l + 4]));
                }
            }
        }
        return;
    }
#endif
    const auto same = [](long j) { return j; };
    copy_block<true>(count, n, r0, m, from, to, stride, same, same);
}

/// Rows [r0, r0 + m) of an n x (C H W) batch and the interiors of their padded image-major
/// copies, one way or the other (ToRows: into the copies): padded row y's interior, entry
/// j = x C + c, is the batch's column (c H + y) W + x.
template <bool ToRows>
inline void copy_images(const ConvGeometry& g, const Patches& p, int n, int r0, int m, const double* from, double* to,
                        bool* finite = nullptr) {
    const int H = g.height, W = g.width, C = g.channels;
    const long edge = long(p.pad) * C;
    for (int y = 0; y < H; ++y)
        copy_block<ToRows>(
            long(W) * C, n, r0, m, from, to, p.image, [&](long j) { return (j % C * H + y) * long(W) + j / C; },
            [&](long j) { return (y + p.pad) * p.row + edge + j; }, finite);
}

/// Rows [r0, r0 + m) of x (n x C H W) into their padded image-major copies xt (zeros in the
/// padding and the tail). False if an entry is not finite (NaN or infinite).
inline bool pad_images(const ConvGeometry& g, const Patches& p, int n, const double* x, int r0, int m, double* xt) {
    const int H = g.height, pad = p.pad;
    const long edge = long(pad) * g.channels, interior = long(g.width) * g.channels;
    for (int i = 0; i < m; ++i) {  // the zeros: whole padding rows, each row's two edges, the tail
        double* im = xt + i * p.image;
        std::fill_n(im, pad * p.row, 0.0);
        for (int y = 0; y < H; ++y) {
            double* r = im + (y + pad) * p.row;
            std::fill_n(r, edge, 0.0);
            std::fill_n(r + edge + interior, edge, 0.0);
        }
        std::fill(im + (H + pad) * p.row, im + p.image, 0.0);
    }
    bool finite = true;
    copy_images<true>(g, p, n, r0, m, x, xt, &finite);
    return finite;
}

/// One image of x, image-major (entry (c H + y) W + x at xi), into its padded copy xt (zeros in
/// the padding and the tail), and back (the interior into dxi, image-major). The pad returns
/// false if an entry is not finite.
inline bool pad_image(const ConvGeometry& g, const Patches& p, const double* xi, double* xt) {
    const int H = g.height, W = g.width, C = g.channels, pad = p.pad;
    std::fill_n(xt, p.image, 0.0);
    double check = 0;
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H; ++y) {
            const double* from = xi + (long(c) * H + y) * W;
            double* to = xt + (y + pad) * p.row + long(pad) * C + c;
            for (int x = 0; x < W; ++x) to[long(x) * C] = from[x], check += from[x] * 0.0;
        }
    return check == 0;
}
inline void unpad_image(const ConvGeometry& g, const Patches& p, const double* xt, double* dxi) {
    const int H = g.height, W = g.width, C = g.channels, pad = p.pad;
    for (int c = 0; c < C; ++c)
        for (int y = 0; y < H; ++y) {
            const double* from = xt + (y + pad) * p.row + long(pad) * C + c;
            double* to = dxi + (long(c) * H + y) * W;
            for (int x = 0; x < W; ++x) to[x] = from[long(x) * C];
        }
}

/// Where each pooling window's first patch starts in the padded copy (corner, window by window in
/// row-major order), and how far from it the patch of the window's entry `code` lies (place).
/// Set up again for each call in the same memory: a warm meta-step allocates nothing.
struct Windows {
    std::vector<long> corner, place;
    void set(const ConvGeometry& g, const Patches& p, int pool) {
        const int ho = g.out_h() / pool, wo = g.out_w() / pool, s = g.stride;
        corner.clear(), place.clear();
        for (int py = 0; py < ho; ++py)
            for (int px = 0; px < wo; ++px)
                corner.push_back(long(py) * pool * s * p.row + long(px) * pool * s * p.channels);
        for (int code = 0; code < pool * pool; ++code)
            place.push_back(long(code / pool) * s * p.row + long(code % pool) * s * p.channels);
    }
    int count() const { return int(corner.size()); }
};

/// Rows [r0, r0 + m) of gy and of the codes (both n x E, E = Cout windows) image-major: image i's
/// E entries at i E of gt and ct.
inline void transpose_winners(int n, long E, const std::uint16_t* win, const double* gy, int r0, int m, double* gt,
                              std::uint16_t* ct) {
    const auto same = [](long j) { return j; };
    copy_block<true>(E, n, r0, m, gy, gt, E, same, same);
    transpose_codes(E, n, r0, m, win, ct, E);
}

/// The input gradient's groups of one image: for window k and code c, the channels that won at
/// that place, in order, and their gradients, at (k codes + c) Cout of `chans` and `grad`;
/// how many at size[k codes + c] (room for codes + 1 per window: the last takes the entries relu
/// zeroed).
struct Groups {
    int* chans;
    double* grad;
    int* size;
};

/// One image's winners (its codes and gradients, E = Cout windows, channel by channel): for each
/// channel o in turn and each of its windows in order whose winner relu kept, where the winner's
/// patch starts in the padded copy (at) and the gradient there (grad); channel o's entries
/// start at first[o]. Branch-free: every entry is written, and a list moves on only past a kept
/// one.
inline void list_winners(const Windows& wins, int cout, const std::uint16_t* ct, const double* gt, int* __restrict at,
                         double* __restrict grad, int* __restrict first) {
    const int count = wins.count();
    const long* place = wins.place.data();
    const long* corner = wins.corner.data();
    int e = 0;
    for (int o = 0; o < cout; ++o) {
        first[o] = e;
        const std::uint16_t* code = ct + long(o) * count;
        const double* g = gt + long(o) * count;
        for (int k = 0; k < count; ++k) {
            const unsigned c = code[k], spot = c & ~unsigned(kReluZero);
            at[e] = int(corner[k] + place[spot]);
            grad[e] = g[k];
            e += (c & kReluZero) ? 0 : 1;
        }
    }
    first[cout] = e;
}

/// The same image's entries by window and code, each group's channels in order (the input
/// gradient's groups).
inline void list_groups(const Windows& wins, int cout, const std::uint16_t* ct, const double* gt,
                        const Groups& groups) {
    const int count = wins.count(), codes = int(wins.place.size());
    std::fill_n(groups.size, long(count) * (codes + 1), 0);
    for (int o = 0; o < cout; ++o) {
        const std::uint16_t* code = ct + long(o) * count;
        const double* g = gt + long(o) * count;
        for (int k = 0; k < count; ++k) {
            const unsigned c = code[k];
            const long group = long(k) * (codes + 1) + ((c & kReluZero) ? codes : c);
            const long slot = group * cout + groups.size[group]++;
            groups.chans[slot] = o, groups.grad[slot] = g[k];
        }
    }
}

#ifdef OCCAM_POOL_INTRINSICS
/// list_winners' lists for the AVX-512 copy, eight windows at a time: the places looked up in a
/// register (pools of at most 2 x 2, codes < 8), the kept entries stored packed with compress
/// stores. The same lists.
[[gnu::target("avx512f")]] inline void list_winners_wide(const Windows& wins, int cout, const std::uint16_t* ct,
                                                         const double* gt, int* __restrict at,
                                                         double* __restrict grad, int* __restrict first) {
    const int count = wins.count();
    const long* corner = wins.corner.data();
    alignas(64) long table[8] = {};
    std::copy(wins.place.begin(), wins.place.end(), table);
    const __m512i places = _mm512_load_si512(table), relu_zero = _mm512_set1_epi64(kReluZero);
    int e = 0;
    for (int o = 0; o < cout; ++o) {
        first[o] = e;
        const std::uint16_t* code = ct + long(o) * count;
        const double* g = gt + long(o) * count;
        int k = 0;
        for (; k + 8 <= count; k += 8) {
            // (the maskz forms: GCC 12 warns that the plain ones' sources are used uninitialised)
            const __m128i c16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(code + k));
            const __m512i c = _mm512_maskz_cvtepu16_epi64(0xff, c16);
            const __mmask8 kept = _mm512_testn_epi64_mask(c, relu_zero);  // place = code & 7 below
            const __m512i spot =
                _mm512_add_epi64(_mm512_loadu_si512(corner + k), _mm512_maskz_permutexvar_epi64(0xff, c, places));
            const int kept_count = __builtin_popcount(kept);
            _mm512_mask_cvtepi64_storeu_epi32(at + e, __mmask8((1u << kept_count) - 1),
                                              _mm512_maskz_compress_epi64(kept, spot));  // packed, narrowed
            _mm512_mask_compressstoreu_pd(grad + e, kept, _mm512_loadu_pd(g + k));
            e += kept_count;
        }
        for (; k < count; ++k) {
            const unsigned c = code[k];
            at[e] = int(corner[k] + table[c & 7]);
            grad[e] = g[k];
            e += (c & kReluZero) ? 0 : 1;
        }
    }
    first[cout] = e;
}
#endif

/// One image's lists, and its groups where `groups` is given: in the AVX-512 copy where it runs
/// and the windows have at most 8 places.
inline void list_image(const Windows& wins, int cout, const std::uint16_t* ct, const double* gt, int* at,
                       double* grad, int* first, const Groups* groups) {
#ifdef OCCAM_POOL_INTRINSICS
    if (lanes::use_wide() && wins.place.size() <= 8) list_winners_wide(wins, cout, ct, gt, at, grad, first);
    else
#endif
        list_winners(wins, cout, ct, gt, at, grad, first);
    if (groups) list_groups(wins, cout, ct, gt, *groups);
}

/// The winners' sums run CH blocks of 8 at a time in registers, paired or not: paired, two sets
/// of sums over the even and the odd entries, added at the end, so consecutive multiply-adds do
/// not wait on each other (each takes 4 cycles, two issue a cycle). The weight gradient always
/// pairs (fig6's 18 blocks, read through a table of offsets then: 23 ms paired in passes of 7,
/// 27 ms unpaired in one pass); the input gradient pairs below 8 blocks a patch, where an
/// entry's own blocks do not cover the wait. The choice depends on the shapes only, so both
/// lane widths sum in the same order.
inline bool paired(int blocks) { return blocks < 8; }
/// The most blocks of sums a pass keeps in registers (with the loads): 32 AVX-512 registers, or
/// 16 AVX2 ones (each block two halves).
template <class B, bool Paired>
constexpr int kWinnerBlocks = std::is_same_v<B, lanes::Split> ? (Paired ? 3 : 6) : (Paired ? 7 : 24);

/// CH blocks of 8 of the input gradient under one patch: the sum over the count channels chans[e]
/// (in order) of g_e times their weights' blocks (wp: a channel's T blocks, rows padded with
/// zeros to whole blocks), added to the patch's blocks in place (at offset[t] from `to`; only
/// the first valid[t] lanes of a row's last block).
template <class B, int CH, bool Paired>
OCCAM_LANES_INLINE void input_grad_blocks(const int* chans, const double* grad, int count, const double* wp, long T,
                                          double* to, const long* offset, const int* valid) {
    using L = lanes::Ops<B>;
    B even[CH], odd[Paired ? CH : 1];
    for (int t = 0; t < CH; ++t) even[t] = L::splat(0.0);
    int e = 0;
    if constexpr (Paired) {
        for (int t = 0; t < CH; ++t) odd[t] = L::splat(0.0);
        for (; e + 2 <= count; e += 2) {
            const double *w0 = wp + chans[e] * T * 8, *w1 = wp + chans[e + 1] * T * 8;
            const double g0 = grad[e], g1 = grad[e + 1];
#pragma GCC unroll 8
            for (int t = 0; t < CH; ++t) {
                even[t] = L::fma(L::load(w0 + 8 * t), g0, even[t]);
                odd[t] = L::fma(L::load(w1 + 8 * t), g1, odd[t]);
            }
        }
    }
    for (; e < count; ++e) {
        const double* w0 = wp + chans[e] * T * 8;
        const double g0 = grad[e];
#pragma GCC unroll 24
        for (int t = 0; t < CH; ++t) even[t] = L::fma(L::load(w0 + 8 * t), g0, even[t]);
    }
    if constexpr (Paired)
        for (int t = 0; t < CH; ++t) even[t] = even[t] + odd[t];
#pragma GCC unroll 24
    for (int t = 0; t < CH; ++t) {
        double* d = to + offset[t];
        if (valid[t] == 8) {
            L::store(d, L::load(d) + even[t]);
        } else {
            alignas(64) double part[8];
            L::store(part, even[t]);
            for (int l = 0; l < valid[t]; ++l) d[l] += part[l];
        }
    }
}

/// Runs Blocks<B, ch, Paired>::run(args...) for a ch from 1 to kWinnerBlocks known at run time.
template <class B, template <class, int, bool> class Blocks, bool Paired, int CH = kWinnerBlocks<B, Paired>,
          class... Args>
OCCAM_LANES_INLINE void with_blocks(int ch, Args... args) {
    if constexpr (CH > 1)
        if (ch < CH) return with_blocks<B, Blocks, Paired, CH - 1>(ch, args...);
    Blocks<B, CH, Paired>::run(args...);
}
template <class B, int CH, bool Paired>
struct InputGradBlocks {
    OCCAM_LANES_INLINE static void run(const int* chans, const double* grad, int count, const double* wp, long T,
                                       double* to, const long* offset, const int* valid) {
        input_grad_blocks<B, CH, Paired>(chans, grad, count, wp, T, to, offset, valid);
    }
};
/// R whole patch rows of NB blocks of one channel's weight gradient (in memory at `sums`, block
/// (r, j) at 8 (r NB + j)) plus the count entries' patches times their gradients, paired: block
/// (r, j) of an entry's patch lies at its start + r row + 8 j, so every load is the entry's
/// pointer, a row held in a register and a constant. (Through a table of the blocks' offsets
/// GCC ran out of general registers, kept the offsets in vector ones and moved one back, with a
/// `vmovq` on a multiply-add port, for every multiply-add: fig6's second layer 25 -> 21 ms.)
template <class B, int NB, int R>
OCCAM_LANES_INLINE void weight_grad_rows(const int* at, const double* grad, int count, const double* xi, long row,
                                         double* sums) {
    using L = lanes::Ops<B>;
    constexpr int CH = NB * R;
    B even[CH], odd[CH];
    for (int t = 0; t < CH; ++t) even[t] = L::load(sums + 8 * t), odd[t] = L::splat(0.0);
    long shift[R];
    for (int r = 0; r < R; ++r) shift[r] = r * row;
    int e = 0;
    for (; e + 2 <= count; e += 2) {
        const double *p0 = xi + at[e], *p1 = xi + at[e + 1];
        const double g0 = grad[e], g1 = grad[e + 1];
#pragma GCC unroll 8  // the sums must stay in registers: GCC left such loops rolled, their sums in memory
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int j = 0; j < NB; ++j) {
                even[r * NB + j] = L::fma(L::load(p0 + shift[r] + 8 * j), g0, even[r * NB + j]);
                odd[r * NB + j] = L::fma(L::load(p1 + shift[r] + 8 * j), g1, odd[r * NB + j]);
            }
    }
    for (; e < count; ++e) {
        const double* p0 = xi + at[e];
        const double g0 = grad[e];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int j = 0; j < NB; ++j) even[r * NB + j] = L::fma(L::load(p0 + shift[r] + 8 * j), g0, even[r * NB + j]);
    }
    for (int t = 0; t < CH; ++t) L::store(sums + 8 * t, even[t] + odd[t]);
}

/// weight_grad_rows<B, NB, R> for an NB (blocks a row, or with R = 1 a row's part) and an R
/// known at run time, with NB R at most kWinnerBlocks<B, true>.
template <class B, int NB = 1, int R = kWinnerBlocks<B, true> / NB>
OCCAM_LANES_INLINE void with_rows(int blocks, int rows, const int* at, const double* grad, int count,
                                  const double* xi, long row, double* sums) {
    if constexpr (NB < kWinnerBlocks<B, true>)
        if (blocks > NB) return with_rows<B, NB + 1>(blocks, rows, at, grad, count, xi, row, sums);
    if constexpr (R > 1)
        if (rows < R) return with_rows<B, NB, R - 1>(blocks, rows, at, grad, count, xi, row, sums);
    weight_grad_rows<B, NB, R>(at, grad, count, xi, row, sums);
}

/// A whole patch's weight gradient for one channel (kh rows of `blocks` blocks; sums: block
/// (r, j) at 8 (r blocks + j)): as many whole rows a pass as fit in registers, or a row in parts.
/// Every block's sum is the same chain of multiply-adds however the passes cut the patch.
template <class B>
OCCAM_LANES_INLINE void weight_grad_patch(int blocks, int kh, const int* at, const double* grad, int count,
                                          const double* xi, long row, double* sums) {
    constexpr int most = kWinnerBlocks<B, true>;
    if (blocks <= most) {
        const int rows = most / blocks;
        for (int r0 = 0; r0 < kh; r0 += rows)
            with_rows<B>(blocks, std::min(rows, kh - r0), at, grad, count, xi + r0 * row, row, sums + 8 * blocks * r0);
        return;
    }
    for (int r = 0; r < kh; ++r)
        for (int j0 = 0; j0 < blocks; j0 += most)
            with_rows<B>(std::min(most, blocks - j0), 1, at, grad, count, xi + r * row + 8 * j0, row,
                         sums + 8 * (r * blocks + j0));
}

template <class B, bool Paired>
OCCAM_LANES_INLINE void input_grad_row(int blocks, int r, int T, const int* chans, const double* grad, int count,
                                       const double* wp, double* to, const long* offset, const int* valid) {
    constexpr int most = kWinnerBlocks<B, Paired>;
    for (int t0 = r * blocks; t0 < (r + 1) * blocks; t0 += most)
        with_blocks<B, InputGradBlocks, Paired>(std::min(most, (r + 1) * blocks - t0), chans, grad, count, wp + 8 * t0,
                                                long(T), to, offset + t0, valid + t0);
}

/// What winners_backward reads and writes for one image.
struct WinnerImage {
    int cout = 0;
    const double* xi = nullptr;          ///< the padded copy
    const std::uint16_t* ct = nullptr;   ///< codes and gradients, E = Cout windows
    const double* gt = nullptr;
    const int *at = nullptr, *first = nullptr;
    const double* grad = nullptr;        ///< the weight gradient's list
    const long* offset = nullptr;        ///< block t of a patch at offset[t] from its start
    const int* valid = nullptr;          ///< block t's lanes inside its patch row
    const double* wp = nullptr;          ///< w, each channel's T blocks of 8 (rows padded with zeros)
    Groups groups{};                     ///< the input gradient's groups
    double *dwt = nullptr, *db = nullptr, *dxi = nullptr;
};

/// One image's part of the backward from its winners:
///   for each channel o, its entries e in order:  dwt(o) += g_e patch_e,  db(o) += g_e;
///   for each window, each code in order:  dxi(patch of the code) += sum over the channels o
///     that won there (in order) of g_o w(o).
/// dwt holds channel o's T blocks of 8 at o T 8 (block r blocks + v: lanes 8 v .. of patch row
/// r). Grouping the input gradient by window and code sums each patch in registers and adds it
/// to dxi once: adding g_e w(o) to dxi entry by entry waited on its stores (fig6's second layer
/// 52 against 37 ms).
template <class B>
OCCAM_LANES_INLINE void winners_backward(const Patches& p, const Windows& wins, const WinnerImage& k) {
    using L = lanes::Ops<B>;
    const int T = p.vectors(), cout = k.cout, count = wins.count(), codes = int(wins.place.size());
    for (int o = 0; o < cout; ++o) {
        const int e0 = k.first[o], e1 = k.first[o + 1];
        if (e0 == e1) continue;
        if (k.dwt) {
            double* sums = k.dwt + long(o) * T * 8;
            weight_grad_patch<B>(p.blocks, p.kh, k.at + e0, k.grad + e0, e1 - e0, k.xi, p.row, sums);
        }
        if (k.db) {  // in eight lanes, then their sum in a fixed order
            B acc = L::splat(0.0);
            int e = e0;
            for (; e + 8 <= e1; e += 8) acc = acc + L::load(k.grad + e);
            double tail = 0;
            for (; e < e1; ++e) tail += k.grad[e];
            k.db[o] += L::sum(acc) + tail;
        }
    }
    if (!k.dxi) return;
    // A patch row's blocks at a time over all the windows, so the weights' part in use (a row of
    // each channel's, 12 KB for fig6) stays in L1 with the image's gradient (37 KB whole).
    const bool pair = paired(T);
    for (int r = 0; r < p.kh; ++r)
        for (int w = 0; w < count; ++w)
            for (int c = 0; c < codes; ++c) {
                const long group = long(w) * (codes + 1) + c;
                const int size = k.groups.size[group];
                if (size == 0) continue;
                double* to = k.dxi + wins.corner[std::size_t(w)] + wins.place[std::size_t(c)];
                const int* ch = k.groups.chans + group * cout;
                const double* g = k.groups.grad + group * cout;
                if (pair) input_grad_row<B, true>(p.blocks, r, T, ch, g, size, k.wp, to, k.offset, k.valid);
                else input_grad_row<B, false>(p.blocks, r, T, ch, g, size, k.wp, to, k.offset, k.valid);
            }
}

/// conv_relu_pool_backward_winners for inputs in the tape's layout (ByImage false: x, gy, the
/// codes and dx column-major, n rows) or image-major (ByImage: image i's entries at i in_size of
/// x and dx, at i E of gy and the codes). Column-major, a block of images at a time is copied
/// image-major with its padding and gy and the codes transposed; image-major, each image is
/// padded alone. Either way the images are then taken one at a time in order, so both give the
/// same bits.
///
/// Column-major, `block_done` (where given, in place of dx) takes each block's input gradient
/// as it is, image-major and padded: block_done(r0, rows, dxt, Patches) for images [r0, r0 +
/// rows), image i at dxt + i image; false stops the pass (and it returns false). A layer below
/// can take its own backward from there while the block is in cache (conv_relu_pool_pair.hpp).
/// Column-major, `head` (where given) says that gy is the outer product of the n-vector gy and
/// the E-vector head, the gradient a linear layer with one output hands back: each block's rows
/// are made from the two by the product kernel's outer_product (the bits its n x E matrix has)
/// instead of being read out of that matrix's columns.
template <bool ByImage, class BlockDone = std::nullptr_t>
inline bool backward_winners(const ConvGeometry& g, int pool, int n, const double* x, const double* w, int cout,
                             const std::uint16_t* win, const double* gy, double* dx, double* dw, double* db,
                             BlockDone block_done = nullptr, const double* head = nullptr) {
    constexpr bool to_block = !std::is_same_v<BlockDone, std::nullptr_t>;
    static_assert(!(ByImage && to_block), "image-major inputs give dx itself");
    const bool want_dx = to_block || dx;
    const int K = g.patch();
    for (long k = 0; want_dx && k < long(cout) * K; ++k)  // (only dx reads w)
        if (!std::isfinite(w[k])) return false;
    const Patches p(g);
    thread_local Windows wins;
    wins.set(g, p, pool);
    const int T = p.vectors();
    const long E = long(cout) * wins.count();
    const int m = ByImage ? 1 : block_images(p, n, E, want_dx);
    thread_local AlignedVector xt, dxt, gt, grad, wp, dwt;
    thread_local std::vector<std::uint16_t> ct;
    thread_local std::vector<int> at, first, valid, group_chans, group_size;
    thread_local AlignedVector group_grad;
    thread_local std::vector<long> offset;
    grow(xt, std::size_t(m) * p.image);
    if (!ByImage) {
        grow(gt, std::size_t(m) * E);
        ct.resize(std::size_t(m) * E);
    }
    grow(grad, std::size_t(E));
    at.resize(std::size_t(E));
    first.resize(std::size_t(cout) + 1);
    offset.resize(std::size_t(T));
    valid.resize(std::size_t(T));
    for (int t = 0; t < T; ++t) {
        offset[std::size_t(t)] = (t / p.blocks) * p.row + (t % p.blocks) * 8;
        valid[std::size_t(t)] = std::min(8, p.len - (t % p.blocks) * 8);
    }
    if (dw) {
        grow(dwt, std::size_t(cout) * T * 8);
        std::fill_n(dwt.data(), std::size_t(cout) * T * 8, 0.0);
    }
    if (db) std::fill(db, db + cout, 0.0);
    const long groups = long(wins.count()) * (long(wins.place.size()) + 1);
    if (want_dx) {  // w(o, (c, ky, kx)) at wp[(o T + ky blocks) 8 + kx C + c], zeros past a row's end
        group_chans.resize(std::size_t(groups * cout));
        grow(group_grad, std::size_t(groups * cout));
        group_size.resize(std::size_t(groups));
        grow(dxt, std::size_t(m) * p.image);
        grow(wp, std::size_t(cout) * T * 8);
        std::fill_n(wp.data(), std::size_t(cout) * T * 8, 0.0);
        for (int o = 0; o < cout; ++o)
            for (int c = 0; c < g.channels; ++c)
                for (int ky = 0; ky < g.kernel_h; ++ky)
                    for (int kx = 0; kx < g.kernel_w; ++kx)
                        wp[(long(o) * T + ky * p.blocks) * 8 + kx * g.channels + c] =
                            w[((long(c) * g.kernel_h + ky) * g.kernel_w + kx) * cout + o];
    }
    WinnerImage k{.cout = cout, .at = at.data(), .first = first.data(), .grad = grad.data(), .offset = offset.data(),
                  .valid = valid.data(), .wp = wp.data(),
                  .groups = {group_chans.data(), group_grad.data(), group_size.data()},
                  .dwt = dw ? dwt.data() : nullptr, .db = db};
    // One image's lists and sums: its padded copy xi, its codes and gradients, dxi (zeroed).
    const auto image = [&](const double* xi, const std::uint16_t* ci, const double* gi, double* dxi) {
        k.xi = xi, k.ct = ci, k.gt = gi, k.dxi = dxi;
        list_image(wins, cout, ci, gi, at.data(), grad.data(), first.data(), want_dx ? &k.groups : nullptr);
        lanes::run([&]<class B>() OCCAM_LANES_KERNEL { winners_backward<B>(p, wins, k); });
    };
    const long in = g.in_size();
    for (int r0 = 0; r0 < n; r0 += m) {
        const int rows = std::min(m, n - r0);
        if constexpr (ByImage) {
            if (!pad_image(g, p, x + r0 * in, xt.data())) return false;
            if (dx) std::fill_n(dxt.data(), p.image, 0.0);
            image(xt.data(), win + r0 * E, gy + r0 * E, dx ? dxt.data() : nullptr);
            if (dx) unpad_image(g, p, dxt.data(), dx + r0 * in);
        } else {
            if (!pad_images(g, p, n, x, r0, rows, xt.data())) return false;
            if (head) {  // image i's row: head times g_i (E x rows, column-major, is rows x E image-major)
                outer_product(int(E), rows, head, 1, gy + r0, 1, gt.data(), {});
                transpose_codes(E, n, r0, rows, win, ct.data(), E);
            } else {
                transpose_winners(n, E, win, gy, r0, rows, gt.data(), ct.data());
            }
            if (want_dx) std::fill_n(dxt.data(), std::size_t(rows) * p.image, 0.0);
            for (int i = 0; i < rows; ++i)
                image(xt.data() + i * p.image, ct.data() + i * E, gt.data() + i * E,
                      want_dx ? dxt.data() + i * p.image : nullptr);
            if constexpr (to_block) {
                if (!block_done(r0, rows, static_cast<const double*>(dxt.data()), p)) return false;
            } else if (dx) {
                copy_images<false>(g, p, n, r0, rows, dxt.data(), dx);  // the interiors back into dx
            }
        }
    }
    if (dw)  // dwt's lanes (o, block ky blocks + j / 8, lane j % 8), j = kx C + c, into dw(o, (c, ky, kx))
        for (int o = 0; o < cout; ++o)
            for (int c = 0; c < g.channels; ++c)
                for (int ky = 0; ky < g.kernel_h; ++ky)
                    for (int kx = 0; kx < g.kernel_w; ++kx)
                        dw[((long(c) * g.kernel_h + ky) * g.kernel_w + kx) * cout + o] =
                            dwt[(long(o) * T + ky * p.blocks) * 8 + kx * g.channels + c];
    return true;
}

}  // namespace winner_detail

/// The layer's backward from its winners alone: behind relu and max pooling, the gradient at the
/// convolution's output is gy at each window's winner where relu kept the output and 0
/// everywhere else (at most one entry in pool^2), so for those entries e (image i, channel o,
/// output position (oy, ox)):
///   dw(o) = sum_e g_e patch_e,   db(o) = sum_e g_e,   dx(i, patch_e) += g_e w(o),
/// where patch_e is x's C x kh x kw patch under (oy, ox). A block of images at a time, x is
/// copied image-major with its padding (a patch row contiguous), gy and the codes image-major,
/// and then an image at a time its winners are listed and the sums run over the lists in
/// order: the same order for any block size, thread count or lane width. Returns false, having
/// written nothing of use, where x or (with dx) w is not finite (NaN or infinite): the dense
/// products multiply the gradient's zeros too, and NaN x 0 is NaN, as in the unfused ops.
inline bool conv_relu_pool_backward_winners(const ConvGeometry& g, int pool, int n, const double* x, const double* w,
                                            int cout, const std::uint16_t* win, const double* gy, double* dx,
                                            double* dw, double* db) {
    return winner_detail::backward_winners<false>(g, pool, n, x, w, cout, win, gy, dx, dw, db);
}

/// The same for image-major inputs: image i's x (and dx) at x + i C H W, its codes and gy at
/// i E (E = Cout windows, channel by channel): row i of the transposes of the tape's matrices.
/// The same bits as conv_relu_pool_backward_winners on those matrices, without the copies that
/// transpose them: a caller that builds gy itself (the fused CNN step's dh = err w2) writes it
/// so, and its 20-image batches were a third of their backward in the transposes.
inline bool conv_relu_pool_backward_winners_by_image(const ConvGeometry& g, int pool, int n, const double* x,
                                                     const double* w, int cout, const std::uint16_t* win,
                                                     const double* gy, double* dx, double* dw, double* db) {
    return winner_detail::backward_winners<true>(g, pool, n, x, w, cout, win, gy, dx, dw, db);
}

/// The codes of n images as the forward writes them (n x E, column-major) image-major, image i's
/// E codes at i E of ct, for conv_relu_pool_backward_winners_by_image.
inline void codes_by_image(int n, long E, const std::uint16_t* win, std::uint16_t* ct) {
    winner_detail::transpose_codes(E, n, 0, n, win, ct, E);
}

/// The layer's backward by dense products, the winners' path's fallback and reference: gz = gy
/// put back at each window's winner where the output was > 0 (relu's mask, from the codes in
/// `win`; the windows do not overlap), then, each optional,
///   dx (n x C H W) = conv2d_input_grad(gz, w),  dw (Cout x K) = conv2d_weight_grad(x, gz),
///   db (Cout) = channel_sums(gz),
/// block by block of images; dw and db are the sums of the blocks' parts, in block order. Where
/// no dx is wanted and the patches are short (a first layer), gz is built and used a band of
/// `pool` output rows at a time (DirectWeightGrad and ChannelSums take it so, with the same
/// bits), so it stays in L2; otherwise it is built for the whole block, for the products.
inline void conv_relu_pool_backward_dense(const ConvGeometry& g, int pool, int n, const double* x, const double* w,
                                          int cout, const std::uint16_t* win, const double* gy, double* dx, double* dw,
                                          double* db) {
    using namespace relu_pool_detail;
    const int P = g.positions(), K = g.patch(), m = block_images(n, cout, P);
    const int oh = g.out_h(), ow = g.out_w(), ho = oh / pool;
    const bool direct = conv_detail::reads_x_directly(g), banded = direct && !dx;
    thread_local AlignedVector xb, gz, dxb, part;
    thread_local conv_detail::DirectWeightGrad band_grad;
    thread_local ChannelSums band_sums;
    if (dw) std::fill(dw, dw + long(cout) * K, 0.0);
    if (db) std::fill(db, db + cout, 0.0);
    grow(part, std::size_t(cout) * K + cout);
    for (int r0 = 0; r0 < n; r0 += m) {
        const int rows = std::min(m, n - r0);
        const double* xr = x + r0;
        if (dw && rows < n) {  // a copy of the block for the weight gradient (read in place: 1.1x the time)
            grow(xb, std::size_t(rows) * g.in_size());
            gather_rows(x, n, g.in_size(), r0, rows, xb.data());
            xr = xb.data();
        }
        // gz for output rows [oy0, oy1) into `to`, channel c's part c chan further on.
        const auto gz_rows = [&](int oy0, int oy1, double* to, long chan) {
            if (oy0 < ho * pool)
                relu_pool_grad_band(cout, ho, ow, pool, rows, win, gy, oy0 / pool, r0, n, to, chan);
            else  // rows past the last whole window: pooling dropped them
                for (int c = 0; c < cout; ++c) std::fill_n(to + c * chan, long(oy1 - oy0) * ow * rows, 0.0);
        };
        if (banded) {
            grow(gz, std::size_t(rows) * cout * pool * ow);
            if (dw) band_grad.begin(g, rows, xr, cout);
            if (db) band_sums.begin(cout, long(rows) * P);
            for (int oy0 = 0; oy0 < oh; oy0 += pool) {
                const int oy1 = std::min(oh, oy0 + pool);
                const long chan = long(oy1 - oy0) * ow * rows;
                gz_rows(oy0, oy1, gz.data(), chan);
                if (dw) band_grad.add_rows(oy0, oy1, gz.data());
                if (db) band_sums.add(gz.data(), chan, chan);
            }
            if (dw) band_grad.finish(part.data());
            if (db) band_sums.finish(part.data() + long(cout) * K);
        } else {
            grow(gz, std::size_t(rows) * cout * P);
            for (int oy0 = 0; oy0 < oh; oy0 += pool)
                gz_rows(oy0, std::min(oh, oy0 + pool), gz.data() + long(oy0) * ow * rows, long(rows) * P);
            if (dx) {  // into a block of rows, then copied out: adding in place, 9 times per pixel
                       // across the whole batch's columns, took 1.2x as long (TLB misses)
                grow(dxb, std::size_t(rows) * g.in_size());
                conv2d_input_grad(g, rows, gz.data(), w, cout, dxb.data());
                scatter_rows(dxb.data(), rows, g.in_size(), r0, n, dx);
            }
            if (dw && direct) conv2d_weight_grad(g, rows, xr, gz.data(), cout, part.data());
            if (dw && !direct) conv_detail::weight_grad_runs(g, rows, xr, gz.data(), cout, part.data());
            if (db) channel_sums(rows, P, cout, gz.data(), part.data() + long(cout) * K);
        }
        if (dw)
            for (long k = 0; k < long(cout) * K; ++k) dw[k] += part[k];
        if (db)
            for (int o = 0; o < cout; ++o) db[o] += part[long(cout) * K + o];
    }
}

/// Patches of at least this many entries take the winners' path in conv_relu_pool_backward.
constexpr int kWinnersFromPatch = 16;

/// The layer's backward for the gradient gy at its output (dx, dw, db each optional; x, w, win
/// and gy as conv_relu_pool_forward left them). The dense products spend pool^2 K multiply-adds
/// per kept entry where the winners' path spends K and a copy and a list entry, so the winners
/// win as the patch (K = C kh kw) grows. For fig6 (one core, scratch program): the second meta
/// layer (K = 144, 2000 images) 105-112 ms against the dense products' 161; the learner's steps
/// (K = 25, 20 images) 0.31-0.32 against 0.40-0.44 ms, its 1400 test images 28 against 29 ms;
/// but the first meta layer (K = 9, 2000 images) 35 against 27 ms, so it stays dense.
/// With `head`, gy is the n-vector g of gy = g head^T (a linear layer with one output behind
/// this one): the winners' path makes its rows as it needs them; the dense path gets the matrix.
inline void conv_relu_pool_backward(const ConvGeometry& g, int pool, int n, const double* x, const double* w, int cout,
                                    const std::uint16_t* win, const double* gy, double* dx, double* dw, double* db,
                                    const double* head = nullptr) {
    if (g.patch() >= kWinnersFromPatch &&
        winner_detail::backward_winners<false>(g, pool, n, x, w, cout, win, gy, dx, dw, db, nullptr, head))
        return;
    if (head) {  // the matrix, as the linear layer's backward would have made it
        const int E = cout * (g.out_h() / pool) * (g.out_w() / pool);
        thread_local AlignedVector whole;
        grow(whole, std::size_t(n) * E);
        outer_product(n, E, gy, 1, head, 1, whole.data(), {});
        return conv_relu_pool_backward_dense(g, pool, n, x, w, cout, win, whole.data(), dx, dw, db);
    }
    conv_relu_pool_backward_dense(g, pool, n, x, w, cout, win, gy, dx, dw, db);
}

}  // namespace occam::kernels
