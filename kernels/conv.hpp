// What this file teaches: a 2-D convolution as a matrix product. Each output position's input
// patch becomes one row of a matrix (im2col), so conv(x, W) = Col W^T; the input gradient is
// G W scattered back onto the image (col2im), the weight gradient G^T Col. Max pooling keeps,
// for each output, the flat index of the input it took, so its backward is a scatter.
//
// Layout (the tape's: samples are rows): a batch of N images with C channels of H x W pixels is
// an N x (C H W) column-major matrix, column c H W + y W + x. Ordering Col's rows as p N + n
// (output position p, image n) makes the product's N P x Cout result, read column-major, exactly
// the N x (Cout P) output matrix, and makes every Col column a set of contiguous runs of N.
// With stride 1 a Col column is even one contiguous run of x per output row (a step right is
// N entries further on), so short patches are convolved straight from x, no Col at all, and
// their weight gradients are inner products down those runs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "buffer.hpp"
#include "gemm.hpp"

namespace occam::kernels {

/// The shape of a convolution: C input channels of H x W, kernels of kh x kw moved by `stride`
/// over the image padded with `padding` zeros on each side (PyTorch's Conv2d arguments).
struct ConvGeometry {
    int channels = 1, height = 1, width = 1;
    int kernel_h = 1, kernel_w = 1;
    int stride = 1, padding = 0;

    int out_h() const { return (height + 2 * padding - kernel_h) / stride + 1; }
    int out_w() const { return (width + 2 * padding - kernel_w) / stride + 1; }
    int positions() const { return out_h() * out_w(); }           ///< P: outputs per channel
    int patch() const { return channels * kernel_h * kernel_w; }  ///< a weight row's length
    long in_size() const { return long(channels) * height * width; }

    /// Throws std::invalid_argument (naming `who`) unless every size is positive and a kernel fits.
    void check(const char* who) const {
        auto fail = [&](const std::string& m) { throw std::invalid_argument(std::string(who) + ": " + m); };
        if (channels < 1 || height < 1 || width < 1) fail("channels, height and width must be >= 1");
        if (kernel_h < 1 || kernel_w < 1) fail("the kernel must be at least 1 x 1");
        if (stride < 1) fail("stride must be >= 1");
        if (padding < 0) fail("padding must be >= 0");
        if (kernel_h > height + 2 * padding || kernel_w > width + 2 * padding)
            fail("the kernel (" + std::to_string(kernel_h) + " x " + std::to_string(kernel_w) +
                 ") is larger than the padded image (" + std::to_string(height + 2 * padding) + " x " +
                 std::to_string(width + 2 * padding) + ")");
    }
};

namespace conv_detail {

/// Output positions per block: Col holds rows p N + n for p in one block, about 2^16 doubles
/// (512 KB, within every L2 we have met), so it stays in cache between being written and being
/// multiplied. For the meta-learner's second layer (K = 144, 160 images a block) on an Intel
/// Xeon with 2 MB of L2, forward and backward took 288 ms with 2^16, 310 with 2^17 and 348
/// with 2^18. The block depends on the sizes only, so every run sums in the same order.
inline int block_positions(const ConvGeometry& g, int n) {
    const long per_position = long(n) * g.patch();
    return int(std::clamp<long>((1L << 16) / std::max(per_position, 1L), 1, g.positions()));
}

/// The input pixel under kernel tap (ky, kx) at output (oy, ox), or -1 in the padding.
inline long pixel(const ConvGeometry& g, int oy, int ox, int ky, int kx) {
    const int y = oy * g.stride - g.padding + ky, x = ox * g.stride - g.padding + kx;
    return (y < 0 || y >= g.height || x < 0 || x >= g.width) ? -1 : long(y) * g.width + x;
}

// im2col reads its n images through a leading dimension ld >= n (0: n), pixel column k of
// image i at x[k ld + i]: a block of rows of a larger batch is then read in place, with no
// copy (kernels/conv_relu_pool.hpp runs a layer block by block).

/// Col (rows (p - p0) N + n, one column per (c, ky, kx); leading dimension (p1 - p0) N) for
/// output positions [p0, p1) of every image.
inline void im2col(const ConvGeometry& g, int n, const double* x, int p0, int p1, double* col, long ld = 0) {
    const long rows = long(p1 - p0) * n, hw = long(g.height) * g.width;
    if (ld == 0) ld = n;
    for (int c = 0; c < g.channels; ++c)
        for (int ky = 0; ky < g.kernel_h; ++ky)
            for (int kx = 0; kx < g.kernel_w; ++kx) {
                double* out = col + ((long(c) * g.kernel_h + ky) * g.kernel_w + kx) * rows;
                for (int p = p0; p < p1; ++p, out += n) {
                    const long q = pixel(g, p / g.out_w(), p % g.out_w(), ky, kx);
                    if (q < 0) std::fill(out, out + n, 0.0);
                    else
                        std::copy_n(x + (c * hw + q) * ld, n, out);
                }
            }
}

/// The adjoint of im2col: dx += each Col entry added back onto the pixel it was read from.
inline void col2im_add(const ConvGeometry& g, int n, const double* col, int p0, int p1, double* dx) {
    const long rows = long(p1 - p0) * n, hw = long(g.height) * g.width;
    for (int c = 0; c < g.channels; ++c)
        for (int ky = 0; ky < g.kernel_h; ++ky)
            for (int kx = 0; kx < g.kernel_w; ++kx) {
                const double* in = col + ((long(c) * g.kernel_h + ky) * g.kernel_w + kx) * rows;
                for (int p = p0; p < p1; ++p, in += n) {
                    const long q = pixel(g, p / g.out_w(), p % g.out_w(), ky, kx);
                    if (q < 0) continue;
                    double* d = dx + (c * hw + q) * n;
                    for (int i = 0; i < n; ++i) d[i] += in[i];
                }
            }
}

}  // namespace conv_detail

/// The sums of each channel's entries of a gradient g (n x Cout P, channel o's n P entries
/// contiguous), a bias's gradient, given a run of entries at a time in order (begin, add...,
/// finish). Entry k goes to partial sum k mod 16, the sixteen are added pairwise, then the last
/// n P mod 16 entries: sixteen independent chains, which the compiler vectorises, where one
/// running sum waits four cycles on every add (with gz's scatter through a table, the
/// meta-learner's first layer's backward went from 80 to 63 ms). However the entries are split
/// into runs, each sum is the same additions in the same order: the same bits.
class ChannelSums {
public:
    static constexpr int kLanes = 16;
    /// `count` entries per channel to come.
    void begin(int cout, long count) {
        cout_ = cout, count_ = count, done_ = 0;
        part_.assign(std::size_t(cout) * kLanes, 0.0);
        total_.assign(std::size_t(cout), 0.0);
    }
    /// The next `len` entries of every channel, channel o's at g + o stride.
    void add(const double* g, long stride, long len) {
        const long full = count_ / kLanes * kLanes, end = done_ + len;
        const long stop = std::min(end, full);
        for (int o = 0; o < cout_; ++o) {
            double part[kLanes];  // in registers while the run is added (part_ could alias g)
            std::copy_n(part_.data() + std::size_t(o) * kLanes, kLanes, part);
            const double* v = g + o * stride - done_;  // v[k] is entry k
            long k = done_;
            for (; k < stop && k % kLanes != 0; ++k) part[k % kLanes] += v[k];
            for (; k + kLanes <= stop; k += kLanes)
                for (int j = 0; j < kLanes; ++j) part[j] += v[k + j];
            for (; k < stop; ++k) part[k % kLanes] += v[k];
            if (k < end && k == full) total_[std::size_t(o)] = reduced(part);  // every partial sum is complete
            for (; k < end; ++k) total_[std::size_t(o)] += v[k];
            std::copy_n(part, kLanes, part_.data() + std::size_t(o) * kLanes);
        }
        done_ = end;
    }
    void finish(double* sums) {
        const long full = count_ / kLanes * kLanes;
        for (int o = 0; o < cout_; ++o)
            sums[o] = count_ > full ? total_[std::size_t(o)] : reduced(part_.data() + std::size_t(o) * kLanes);
    }

private:
    static double reduced(double* part) {  // pairwise: 8 + 8, 4 + 4, 2 + 2, 1 + 1
        for (int half = kLanes / 2; half > 0; half /= 2)
            for (int j = 0; j < half; ++j) part[j] += part[j + half];
        return part[0];
    }
    int cout_ = 0;
    long count_ = 0, done_ = 0;
    std::vector<double> part_, total_;
};

/// sums[o] = the sum of channel o's n P entries of g (n x Cout P): ChannelSums in one run.
inline void channel_sums(int n, int positions, int cout, const double* g, double* sums) {
    thread_local ChannelSums s;
    const long block = long(n) * positions;
    s.begin(cout, block);
    s.add(g, block, block);
    s.finish(sums);
}

}  // namespace occam::kernels

OCCAM_KERNELS_BEGIN

namespace occam::kernels::conv_detail {

/// Where one output row's Col column t lives in x, for stride 1: rows r = ox N + n of the
/// output row read x[base + r] for r in [lo, hi) and are 0 (padding) elsewhere, because moving
/// one output position right moves every tap one pixel right, N entries further on in x.
struct TapRun {
    long base, lo, hi;
};

/// The block of Col(r0 .. r0 + 7, t) read through the tap's run of x (zeros outside the run and
/// past `valid`).
template <class B>
OCCAM_LANES_INLINE B col_block(const TapRun& run, const double* x, long r0, int valid) {
    using L = lanes::Ops<B>;
    if (valid == 8 && r0 >= run.lo && r0 + 8 <= run.hi) return L::load(x + (run.base + r0));
    if (r0 + valid <= run.lo || r0 >= run.hi) return L::splat(0.0);
    alignas(64) double part[8] = {};
    for (int j = 0; j < valid; ++j)
        if (r0 + j >= run.lo && r0 + j < run.hi) part[j] = x[run.base + r0 + j];
    return L::load(part);
}

/// NC output channels from o0 for RB blocks of 8 rows from r0 of one output row, the last
/// block's rows [.., r0 + 8 (RB - 1) + valid) (every block whole when RB > 1): per entry
/// acc = sum over the taps in order of Col(r, t) w(o, t), then + bias, the same multiply-adds
/// in the same order as the im2col product's tile (a padded tap is a 0 in both), so the same
/// bits. Col(r, t) comes straight from x: one load where the 8 rows are all inside the run.
template <class B, int NC, int RB = 1>
OCCAM_LANES_INLINE void run_tile(int K, const TapRun* taps, const double* x, const double* w, int cout, int o0,
                                 const double* bias, long r0, int valid, double* y, long NP) {
    using L = lanes::Ops<B>;
    B acc[RB][NC];
    for (int b = 0; b < RB; ++b)
        for (int c = 0; c < NC; ++c) acc[b][c] = L::splat(0.0);
    for (int t = 0; t < K; ++t) {
        B xv[RB];
        for (int b = 0; b < RB; ++b) xv[b] = col_block<B>(taps[t], x, r0 + 8 * b, b + 1 < RB ? 8 : valid);
        const double* wt = w + long(t) * cout + o0;
        for (int c = 0; c < NC; ++c)
            for (int b = 0; b < RB; ++b) acc[b][c] = acc[b][c] + xv[b] * wt[c];
    }
    if (bias)
        for (int b = 0; b < RB; ++b)
            for (int c = 0; c < NC; ++c) acc[b][c] = acc[b][c] + L::splat(bias[o0 + c]);
    for (int c = 0; c < NC; ++c)
        for (int b = 0; b < RB; ++b) {
            double* out = y + (o0 + c) * NP + r0 + 8 * b;
            if (b + 1 < RB || valid == 8) {
                L::store(out, acc[b][c]);
            } else {
                alignas(64) double part[8];
                L::store(part, acc[b][c]);
                std::copy(part, part + valid, out);
            }
        }
}

/// The taps of output row oy (K runs) into `taps`.
inline void tap_runs(const ConvGeometry& g, int n, int oy, TapRun* taps) {
    const long hw = long(g.height) * g.width;
    for (int c = 0, t = 0; c < g.channels; ++c)
        for (int ky = 0; ky < g.kernel_h; ++ky)
            for (int kx = 0; kx < g.kernel_w; ++kx, ++t) {
                const int iy = oy - g.padding + ky;
                if (iy < 0 || iy >= g.height) {
                    taps[t] = {0, 0, 0};
                    continue;
                }
                // ix = ox - padding + kx must lie in [0, W): ox in [padding - kx, W + padding - kx).
                const long first = std::max(0, g.padding - kx), last = std::min(g.out_w(), g.width + g.padding - kx);
                taps[t] = {(c * hw + long(iy) * g.width + kx - g.padding) * n, first * n, std::max(first, last) * n};
            }
}

/// Every output row's taps into `taps` (row oy's K runs from oy K on).
inline void all_tap_runs(const ConvGeometry& g, int n, std::vector<TapRun>& taps) {
    taps.resize(std::size_t(g.out_h()) * g.patch());
    for (int oy = 0; oy < g.out_h(); ++oy) tap_runs(g, n, oy, taps.data() + std::size_t(oy) * g.patch());
}

/// Whether a convolution's forward and weight gradient read x through tap runs (short
/// stride-1 patches) rather than through im2col and the blocked product (see conv2d_forward
/// and conv2d_weight_grad for the measurements behind the rule).
inline bool reads_x_directly(const ConvGeometry& g) { return g.patch() <= 32 && g.stride == 1; }

/// The direct forward's tile for each block type: AVX2 6 channels x 1 block of 8 rows (12 of
/// 16 registers hold sums), AVX-512 8 channels x 2 blocks (16 of 32), where each tap's weight
/// broadcasts serve two blocks' multiply-adds. Against AVX-512's old 6 x 1 (interleaved
/// processes, fig6's layers): the meta-learner's first layer 26 -> 21.5 ms, the learner on its
/// 1400 test images 28 -> 22 ms, its 100 steps' forward 42.5 -> 32 ms; 6 x 2 and 8 x 3 came
/// between, 6 x 3 close to 6 x 1.
template <class B>
constexpr int kDirectChannels = std::is_same_v<B, lanes::Split> ? 6 : 8;
template <class B>
constexpr int kDirectBlocks = std::is_same_v<B, lanes::Split> ? 1 : 2;

/// The output rows [oy0, oy1) of a stride-1 convolution from x directly, into y (Cout x the
/// rows' positions x N): groups of NC output channels, then output rows, then tiles of
/// kDirectBlocks blocks of 8 of each row's out_w N entries (single blocks for a row's end), so
/// each group's stores run through its channels' planes in order.
template <class B, int NC>
OCCAM_LANES_INLINE void run_group(const ConvGeometry& g, int n, const double* x, const double* w, int cout, int o0,
                                  const double* bias, int oy0, int oy1, double* y, const TapRun* taps) {
    constexpr int RB = kDirectBlocks<B>;
    const int K = g.patch();
    const long row = long(g.out_w()) * n, NP = (oy1 - oy0) * row;
    for (int oy = oy0; oy < oy1; ++oy) {
        long r0 = 0;
        if constexpr (RB > 1)
            for (; r0 + 8 * RB <= row; r0 += 8 * RB)
                run_tile<B, NC, RB>(K, taps + long(oy) * K, x, w, cout, o0, bias, r0, 8, y + (oy - oy0) * row, NP);
        for (; r0 < row; r0 += 8)
            run_tile<B, NC>(K, taps + long(oy) * K, x, w, cout, o0, bias, r0, int(std::min<long>(8, row - r0)),
                            y + (oy - oy0) * row, NP);
    }
}
/// The last `rest` (< kDirectChannels) channels from o0: a group of exactly that many.
template <class B, int NC>
OCCAM_LANES_INLINE void run_rest(int rest, const ConvGeometry& g, int n, const double* x, const double* w, int cout,
                                 int o0, const double* bias, int oy0, int oy1, double* y, const TapRun* taps) {
    if constexpr (NC > 0) {
        if (rest == NC)
            run_group<B, NC>(g, n, x, w, cout, o0, bias, oy0, oy1, y, taps);
        else
            run_rest<B, NC - 1>(rest, g, n, x, w, cout, o0, bias, oy0, oy1, y, taps);
    }
}
template <class B>
OCCAM_LANES_INLINE void run_groups(const ConvGeometry& g, int n, const double* x, const double* w, int cout,
                                   const double* bias, int oy0, int oy1, double* y, const TapRun* taps) {
    constexpr int NC = kDirectChannels<B>;
    int o0 = 0;
    for (; o0 + NC <= cout; o0 += NC) run_group<B, NC>(g, n, x, w, cout, o0, bias, oy0, oy1, y, taps);
    run_rest<B, NC - 1>(cout - o0, g, n, x, w, cout, o0, bias, oy0, oy1, y, taps);
}

/// conv(x, w) + bias for stride 1 without im2col (see conv2d_forward), output rows [oy0, oy1)
/// (every row when oy1 is 0) into y, Cout x (oy1 - oy0) out_w x N.
inline void conv2d_direct(const ConvGeometry& g, int n, const double* x, const double* w, int cout, double* y,
                          const double* bias, int oy0 = 0, int oy1 = 0) {
    if (oy1 == 0) oy1 = g.out_h();
    thread_local std::vector<TapRun> taps;
    all_tap_runs(g, n, taps);
    const TapRun* t = taps.data();
    lanes::run([&]<class B>() OCCAM_LANES_KERNEL { run_groups<B>(g, n, x, w, cout, bias, oy0, oy1, y, t); });
}

// ---- The product without Col (an implicit product) ----------------------------------------
// Output position p's rows of Col are n consecutive rows (its n images), and Col's column k =
// (c, ky, kx) there is n contiguous doubles of x (channel c's pixel under tap (ky, kx), read
// through ld) or zeros in the padding. So where n is a multiple of 8 the product's tile reads A
// straight from x through a table of K row pointers per position: the same loads, multiply-adds
// and order of k as gemm_tile on Col, without writing Col and reading it back.

/// How many taps ahead the first panel of a stripe prefetches its rows of x. Each tap's rows
/// lie in another column of x (n doubles apart: fig6's second meta layer reads 144 of them), out
/// of the hardware prefetcher's sight, so the first panel waited on L2 for every load; the
/// later panels find the rows in L1. That layer's forward (2000 images, scratch program, one
/// core, interleaved 4 times): 57-60 -> 48-51 ms with 16; 4 and 8 gained less, 24-48 no more.
inline constexpr int kImplicitAhead = 16;

/// One tile: RB blocks of 8 rows from row i of one position (a[kk] + i: its Col column kk) by
/// the first NC of the NR columns of one packed panel (bp[kk NR + c]); `cols` columns stored
/// at out + c ldc + i, each sum_k plus bias[c] (bias offset to the panel's first column). With
/// Ahead, the rows of tap kk + Ahead are prefetched at tap kk (no change to any sum).
template <class B, int RB, int NR, int NC = NR, int Ahead = 0>
OCCAM_LANES_INLINE void implicit_tile(const double* const* a, int i, int k, const double* bp, const double* bias,
                                      int cols, double* out, long ldc) {
    using L = lanes::Ops<B>;
    B acc[RB][NC];
    for (int r = 0; r < RB; ++r)
        for (int c = 0; c < NC; ++c) acc[r][c] = L::splat(0.0);
    for (int kk = 0; kk < k; ++kk, bp += NR) {
        const double* ak = a[kk] + i;
        if constexpr (Ahead > 0)
            if (kk + Ahead < k)
                for (int r = 0; r < RB; ++r) __builtin_prefetch(a[kk + Ahead] + i + 8 * r);
        B ar[RB];
        for (int r = 0; r < RB; ++r) ar[r] = L::load(ak + 8 * r);
        for (int c = 0; c < NC; ++c)
            for (int r = 0; r < RB; ++r) acc[r][c] = acc[r][c] + ar[r] * bp[c];
    }
    if (bias)
        for (int c = 0; c < cols; ++c)
            for (int r = 0; r < RB; ++r) acc[r][c] = acc[r][c] + L::splat(bias[c]);
    for (int c = 0; c < cols; ++c)
        for (int r = 0; r < RB; ++r) L::store(out + c * ldc + i + 8 * r, acc[r][c]);
}

/// Rows [i, i + 8 R) of one position across the panels, a last panel of at most NR / 2 columns
/// by a narrower tile (as gemm_stripe).
template <class B, int R, int NR>
OCCAM_LANES_INLINE void implicit_stripe(const double* const* a, int i, int k, const double* panels, int cout,
                                        const double* bias, double* out, long ldc) {
    for (int j = 0; j < cout; j += NR) {
        const int cols = std::min(NR, cout - j);
        const double* bp = panels + std::size_t(j) * k;
        const double* bj = bias ? bias + j : nullptr;
        if (cols <= NR / 2)
            implicit_tile<B, R, NR, NR / 2>(a, i, k, bp, bj, cols, out + j * ldc, ldc);
        else if (j == 0)
            implicit_tile<B, R, NR, NR, kImplicitAhead>(a, i, k, bp, bj, cols, out + j * ldc, ldc);
        else
            implicit_tile<B, R, NR>(a, i, k, bp, bj, cols, out + j * ldc, ldc);
    }
}

/// The positions [pa, pb): w^T packed in panels of NR columns, then for each position its
/// table of K row pointers and its rows in stripes of RB blocks of 8, the last rows in as few
/// blocks as they need (as gemm_blocks). No lambdas: they would not be compiled again for
/// AVX-512 with their caller.
template <class B, int RB, int NR>
OCCAM_LANES_INLINE void implicit_positions(const ConvGeometry& g, int n, const double* x, long ld, const double* w,
                                           int cout, const double* bias, double* y, int pa, int pb, double* panels,
                                           const double** a, const double* zeros) {
    const int K = g.patch(), npanels = (cout + NR - 1) / NR;
    const long hw = long(g.height) * g.width, NP = long(n) * (pb - pa);
    for (int jb = 0; jb < npanels; ++jb)  // op(B) = w^T: w[o + kk cout], zero-padded
        for (int kk = 0; kk < K; ++kk)
            for (int c = 0; c < NR; ++c) {
                const int o = jb * NR + c;
                panels[(std::size_t(jb) * K + kk) * NR + c] = o < cout ? w[o + long(kk) * cout] : 0.0;
            }
    for (int p = pa; p < pb; ++p) {
        for (int c = 0, kk = 0; c < g.channels; ++c)
            for (int ky = 0; ky < g.kernel_h; ++ky)
                for (int kx = 0; kx < g.kernel_w; ++kx, ++kk) {
                    const long q = pixel(g, p / g.out_w(), p % g.out_w(), ky, kx);
                    a[kk] = q < 0 ? zeros : x + (c * hw + q) * ld;
                }
        double* out = y + long(p - pa) * n;
        int i = 0;
        for (; i + 8 * RB <= n; i += 8 * RB) implicit_stripe<B, RB, NR>(a, i, K, panels, cout, bias, out, NP);
        while (i < n) {
            if constexpr (RB >= 3) {
                if (n - i > 8) {
                    implicit_stripe<B, 2, NR>(a, i, K, panels, cout, bias, out, NP);
                    i += 16;
                    continue;
                }
            }
            implicit_stripe<B, 1, NR>(a, i, K, panels, cout, bias, out, NP);
            i += 8;
        }
    }
}

/// conv(x, w) + bias for the output positions [pa, pb) into y (Cout x (pb - pa) x n), n a
/// multiple of 8, by the implicit product; the same bits as im2col and gemm (the same tiles).
inline void conv2d_implicit(const ConvGeometry& g, int n, const double* x, const double* w, int cout, double* y,
                            const double* bias, long ld, int pa, int pb) {
    thread_local AlignedVector panels, zeros;
    thread_local std::vector<const double*> a;
    grow(panels, std::size_t((cout + 7) / 8 + 1) * 8 * g.patch());  // enough for panels of 6 or 8
    grow(zeros, std::size_t(n));
    std::fill_n(zeros.data(), n, 0.0);
    a.resize(std::size_t(g.patch()));
    lanes::run([&]<class B>() OCCAM_LANES_KERNEL {
        if constexpr (std::is_same_v<B, lanes::Split>)
            implicit_positions<B, 1, 6>(g, n, x, ld, w, cout, bias, y, pa, pb, panels.data(), a.data(), zeros.data());
        else
            implicit_positions<B, 3, 8>(g, n, x, ld, w, cout, bias, y, pa, pb, panels.data(), a.data(), zeros.data());
    });
}

/// conv(x, w) + bias through im2col and the blocked product, block by block of positions, for
/// the output positions [pa, pb) (every one when pb is 0) into y, Cout x (pb - pa) x N; x has
/// leading dimension ld (0: n). With n a multiple of 8, the implicit product (no Col).
inline void conv2d_im2col(const ConvGeometry& g, int n, const double* x, const double* w, int cout, double* y,
                          const double* bias, long ld = 0, int pa = 0, int pb = 0) {
    thread_local AlignedVector col, out;
    if (pb == 0) pb = g.positions();
    if (ld == 0) ld = n;
    if (n % 8 == 0) return conv2d_implicit(g, n, x, w, cout, y, bias, ld, pa, pb);
    const int K = g.patch(), block = block_positions(g, n);
    const long NP = long(n) * (pb - pa);
    for (int p0 = pa; p0 < pb; p0 += block) {
        const int p1 = std::min(pb, p0 + block);
        const long rows = long(p1 - p0) * n;
        grow(col, std::size_t(rows) * K);
        grow(out, std::size_t(rows) * cout);
        im2col(g, n, x, p0, p1, col.data(), ld);
        gemm(false, true, int(rows), cout, K, col.data(), rows, w, cout, out.data(), Epilogue{bias});
        for (int o = 0; o < cout; ++o)
            std::copy(out.data() + o * rows, out.data() + (o + 1) * rows, y + o * NP + long(p0 - pa) * n);
    }
}

// ---- The weight gradient of short stride-1 patches: inner products down the rows ------------
// dw(o, t) = sum_r G(r, o) Col(r, t) over all N P rows, Col read from x through the taps' runs
// as in the forward. Each (o, t) keeps eight partial sums, lane j taking the rows j, j + 8, ...
// of each output row's segment, in order; the eight are added at the end in lanes::Ops::sum's
// fixed order. Both block types do exactly that, so AVX2 and AVX-512 give the same bits, and
// the tiles (which (o, t) pairs share a pass) and the chunks (how many rows a pass covers, a
// multiple of 8) only change which sums run side by side, never the order within one.

/// Rows per pass over a segment of `len` rows: the segment cut into equal pieces of at most 512
/// rows, each a multiple of 8 (so lane j still takes rows j, j + 8, ... of the segment). A tile
/// then finds its NO channels of G (at most 16 KB) in L1 on every pass over the taps after the
/// first, where chunks of 2048 rows read them from L2 each time: with the 8 x 3 AVX-512 tile of
/// the time, the learner's weight gradient on fig6's 1400 test images (25 taps) 40 -> 35 ms,
/// the first meta layer's 33 -> 32 ms; plain 512-row chunks left a 48-row piece of the
/// learner's 560-row segments.
inline long grad_chunk(long len) {
    const long pieces = (len + 511) / 512;
    return ((len + pieces - 1) / pieces + 7) / 8 * 8;
}

/// acc[o][t] (eight lanes each, in memory between passes) += G_o(r) Col_t(r) for the rows
/// [r_begin, r_end) of a segment; g[o] points at G_o's first row of the segment. Where every
/// tap's block lies inside its run (all but a segment's edges) the loop is plain loads and
/// multiply-adds; the edges go through col_block.
template <class B, int NO, int NT>
OCCAM_LANES_INLINE void grad_tile(const double* const* g, const TapRun* const* taps, const double* x, long r_begin,
                                  long r_end, double* acc) {
    using L = lanes::Ops<B>;
    B a[NO][NT];
    for (int o = 0; o < NO; ++o)
        for (int t = 0; t < NT; ++t) a[o][t] = L::load(acc + (o * NT + t) * 8);
    auto edge = [&](long r0) OCCAM_LANES_KERNEL {
        const int valid = int(std::min<long>(8, r_end - r0));
        B gv[NO];
        for (int o = 0; o < NO; ++o) {
            if (valid == 8) {
                gv[o] = L::load(g[o] + r0);
                continue;
            }
            alignas(64) double part[8] = {};
            std::copy(g[o] + r0, g[o] + r0 + valid, part);
            gv[o] = L::load(part);
        }
        for (int t = 0; t < NT; ++t) {
            const B xv = col_block<B>(*taps[t], x, r0, valid);
            for (int o = 0; o < NO; ++o) a[o][t] = a[o][t] + gv[o] * xv;
        }
    };
    // The blocks r0 = r_begin + 8 k with [r0, r0 + 8) inside [r_begin, r_end) and every run.
    long lo = r_begin, hi = r_end;
    for (int t = 0; t < NT; ++t) lo = std::max(lo, taps[t]->lo), hi = std::min(hi, taps[t]->hi);
    long first = r_begin + (lo - r_begin + 7) / 8 * 8, last = r_begin + (hi - r_begin) / 8 * 8;  // [first, last)
    if (last <= first) first = last = r_end;
    long r0 = r_begin;
    for (; r0 < first; r0 += 8) edge(r0);
    const double* xt[NT];
    for (int t = 0; t < NT; ++t) xt[t] = x + taps[t]->base;
    for (; r0 < last; r0 += 8) {
        B gv[NO];
        for (int o = 0; o < NO; ++o) gv[o] = L::load(g[o] + r0);
        for (int t = 0; t < NT; ++t) {
            const B xv = L::load(xt[t] + r0);
            for (int o = 0; o < NO; ++o) a[o][t] = a[o][t] + gv[o] * xv;
        }
    }
    for (; r0 < r_end; r0 += 8) edge(r0);
    for (int o = 0; o < NO; ++o)
        for (int t = 0; t < NT; ++t) L::store(acc + (o * NT + t) * 8, a[o][t]);
}

/// Every tile over one segment of `len` rows: G_o's segment starts at g0 + o NP, tap t reads x
/// through taps[t]. Tiles past Cout or K repeat the last channel or tap (their sums are unused).
template <class B, int NO, int NT>
OCCAM_LANES_INLINE void grad_segment(int cout, int K, const double* g0, long NP, const TapRun* taps, const double* x,
                                     long len, double* acc) {
    const int tiles_t = (K + NT - 1) / NT;
    const long chunk = grad_chunk(len);
    for (long c0 = 0; c0 < len; c0 += chunk) {
        const long c1 = std::min(len, c0 + chunk);
        for (int o0 = 0; o0 < cout; o0 += NO) {
            const double* g[NO];
            for (int o = 0; o < NO; ++o) g[o] = g0 + std::min(o0 + o, cout - 1) * NP;
            for (int t0 = 0; t0 < K; t0 += NT) {
                const TapRun* tp[NT];
                for (int t = 0; t < NT; ++t) tp[t] = taps + std::min(t0 + t, K - 1);
                grad_tile<B, NO, NT>(g, tp, x, c0, c1, acc + (long(o0 / NO) * tiles_t + t0 / NT) * NO * NT * 8);
            }
        }
    }
}

/// The tile of each block type, NO x NT sums: AVX2 4 x 2 (all 16 registers hold sums; the
/// multiply-adds read G from memory), AVX-512 4 x 5 (20 of 32). Measured on the learner's and
/// the meta-learner's first layer: AVX2 4 x 2 the fastest by 10-30% against 2 x 2, 2 x 3,
/// 3 x 2, 2 x 4 and 4 x 3. AVX-512 was 8 x 3 while G came from L2; with G in L1 (grad_chunk),
/// 4 x 5 took the backward passes of fig6's short-patch layers (the meta-learner's first, 9
/// taps; the learner on 1400 test images and its 100 steps, 25 taps) 28.4 / 32.5 / 43.8 ms ->
/// 26.0 / 28.3 / 37.4 ms, ahead of 4 x 3, 4 x 4, 4 x 6, 4 x 7, 6 x 4, 8 x 2, 8 x 3 and 2 x 9.
template <class B>
constexpr int kGradTileO = 4;  // both widths
template <class B>
constexpr int kGradTileT = std::is_same_v<B, lanes::Split> ? 2 : 5;
/// Lane sums a tiling of NO x NT needs for Cout x K (whole tiles).
inline std::size_t grad_sums(int cout, int K, int NO, int NT) {
    return std::size_t((cout + NO - 1) / NO * NO) * std::size_t((K + NT - 1) / NT * NT) * 8;
}

/// dw = G^T Col for stride 1 (see conv2d_weight_grad), the output rows [oy0, oy1) of it added to
/// the lane sums `acc` of every tile: a segment per output row; G's part for output row oy
/// starts at g0 + (oy - oy0) out_w N, channel o's NPg further on per channel.
template <class B>
OCCAM_LANES_INLINE void weight_grad_lanes_add(const ConvGeometry& g, int n, const double* x, const double* g0, long NPg,
                                              int oy0, int oy1, int cout, double* acc, const TapRun* taps) {
    const int K = g.patch();
    const long row = long(g.out_w()) * n;
    for (int oy = oy0; oy < oy1; ++oy)
        grad_segment<B, kGradTileO<B>, kGradTileT<B>>(cout, K, g0 + (oy - oy0) * row, NPg, taps + long(oy) * K, x, row,
                                                      acc);
}
/// dw (Cout x K) from the lane sums, each entry's eight lanes added in lanes::Ops::sum's order.
template <class B>
OCCAM_LANES_INLINE void weight_grad_lanes_sum(int K, int cout, const double* acc, double* dw) {
    constexpr int NO = kGradTileO<B>, NT = kGradTileT<B>;
    using L = lanes::Ops<B>;
    const int tiles_t = (K + NT - 1) / NT;
    for (int o = 0; o < cout; ++o)
        for (int t = 0; t < K; ++t)
            dw[long(t) * cout + o] =
                L::sum(L::load(acc + ((long(o / NO) * tiles_t + t / NT) * NO * NT + (o % NO) * NT + t % NT) * 8));
}

/// The weight gradient of a stride-1 convolution straight from x, from G's output rows given a
/// band at a time, in order (begin, add_rows..., finish): every band's products go into the
/// same lane sums in the same order as one pass over the whole of G, so the same bits, while G
/// need only ever exist for one band (kernels/conv_relu_pool.hpp builds it band by band, in cache).
class DirectWeightGrad {
public:
    void begin(const ConvGeometry& g, int n, const double* x, int cout) {
        g_ = g, n_ = n, x_ = x, cout_ = cout, wide_ = lanes::use_wide();
        const int K = g.patch();
        const std::size_t sums = std::max(grad_sums(cout, K, kGradTileO<lanes::Split>, kGradTileT<lanes::Split>),
                                          grad_sums(cout, K, kGradTileO<lanes::Wide>, kGradTileT<lanes::Wide>));
        grow(acc_, sums);
        std::fill(acc_.begin(), acc_.begin() + long(sums), 0.0);
        all_tap_runs(g, n, taps_);
    }
    /// G's output rows [oy0, oy1): gband is Cout x (oy1 - oy0) out_w N.
    void add_rows(int oy0, int oy1, const double* gband) {
        const long NPg = long(oy1 - oy0) * g_.out_w() * n_;
        double* a = acc_.data();
        const TapRun* t = taps_.data();
        run([&]<class B>()
                OCCAM_LANES_KERNEL { weight_grad_lanes_add<B>(g_, n_, x_, gband, NPg, oy0, oy1, cout_, a, t); });
    }
    void finish(double* dw) {
        const double* a = acc_.data();
        run([&]<class B>() OCCAM_LANES_KERNEL { weight_grad_lanes_sum<B>(g_.patch(), cout_, a, dw); });
    }

private:
    // The block type chosen at begin() for the whole gradient: the lane sums' layout depends on it.
    template <class Kernel>
    void run(const Kernel& kernel) const {
        if (wide_)
            lanes::run_wide(kernel);
        else
            lanes::run_narrow(kernel);
    }
    ConvGeometry g_;
    int n_ = 0, cout_ = 0;
    const double* x_ = nullptr;
    bool wide_ = false;
    AlignedVector acc_;
    std::vector<TapRun> taps_;
};

// ---- The weight gradient of long patches: G^T against x's runs, no Col --------------------
// dw(o, t) = sum_r G(r, o) Col(r, t) block by block of positions (block_positions), as the
// product over im2col's blocks does: each block's sums start at 0 and run over its rows
// r = (p - p0) N + n in order, and the blocks are added into dw in order. Col(r, t) is image n's
// pixel under tap t at position p: one run of x per (p, t), or zeros in the padding, so Col is
// never built. A block of G is transposed (GT: rows of Cout, zero-padded to whole blocks of 8),
// and a tile of NO x 8 channels by NT taps adds each GT row times a broadcast of each tap's
// pixel, one multiply-add per row and entry in order of r, as the product's tile does.

/// One tile: out (NT x NO x 8, tap-major) = the sums over the block's p_count positions of n
/// rows of GT's channels from `gt` times the pixels of taps t0.. (runs[p K + t]).
template <class B, int NO, int NT>
OCCAM_LANES_INLINE void runs_grad_tile(int n, int p_count, const double* gt, int c8, const double* const* runs, int K,
                                       int t0, double* out) {
    using L = lanes::Ops<B>;
    B acc[NO][NT];
    for (int q = 0; q < NO; ++q)
        for (int j = 0; j < NT; ++j) acc[q][j] = L::splat(0.0);
    for (int p = 0; p < p_count; ++p) {
        const double* xr[NT];
        for (int j = 0; j < NT; ++j) xr[j] = runs[long(p) * K + std::min(t0 + j, K - 1)];  // past K: unused
        const double* gr = gt + long(p) * n * c8;
        for (int i = 0; i < n; ++i, gr += c8) {
            B gv[NO];
            for (int q = 0; q < NO; ++q) gv[q] = L::load(gr + 8 * q);
            for (int j = 0; j < NT; ++j) {
                const double xv = xr[j][i];
                for (int q = 0; q < NO; ++q) acc[q][j] = acc[q][j] + gv[q] * xv;
            }
        }
    }
    for (int j = 0; j < NT; ++j)
        for (int q = 0; q < NO; ++q) L::store(out + (j * NO + q) * 8, acc[q][j]);
}

/// The tile of each block type, NO blocks of 8 channels x NT taps: AVX-512 4 x 6 (24 of 32
/// registers hold sums, 4 hold a GT row), AVX2 1 x 6 (12 of 16).
template <class B>
constexpr int kRunsTileO = std::is_same_v<B, lanes::Split> ? 1 : 4;
constexpr int kRunsTileT = 6;

/// part (K x Cout, part[t + o K]) = one block's sums, tile by tile; a last tile of channels
/// takes as few blocks of 8 as it needs, a last tile of taps repeats the last tap (unused).
template <class B, int NO>
OCCAM_LANES_INLINE void runs_grad_channels(int n, int p_count, const double* gt, int cout, int c8,
                                           const double* const* runs, int K, int o0, double* part) {
    constexpr int NT = kRunsTileT;
    alignas(64) double out[NT * NO * 8];
    for (int t0 = 0; t0 < K; t0 += NT) {
        runs_grad_tile<B, NO, NT>(n, p_count, gt + o0, c8, runs, K, t0, out);
        for (int j = 0; j < std::min(NT, K - t0); ++j)
            for (int c = 0; c < std::min(NO * 8, cout - o0); ++c)
                part[std::size_t(t0 + j) + std::size_t(o0 + c) * K] = out[j * NO * 8 + c];
    }
}
template <class B>
OCCAM_LANES_INLINE void runs_grad_block(int n, int p_count, const double* gt, int cout, const double* const* runs,
                                        int K, double* part) {
    constexpr int NO = kRunsTileO<B>;
    const int c8 = (cout + 7) / 8 * 8;
    int o0 = 0;
    for (; o0 + NO * 8 <= c8; o0 += NO * 8) runs_grad_channels<B, NO>(n, p_count, gt, cout, c8, runs, K, o0, part);
    if constexpr (NO > 1) {
        switch ((c8 - o0) / 8) {
            case 3:
                runs_grad_channels<B, 3>(n, p_count, gt, cout, c8, runs, K, o0, part);
                break;
            case 2:
                runs_grad_channels<B, 2>(n, p_count, gt, cout, c8, runs, K, o0, part);
                break;
            case 1:
                runs_grad_channels<B, 1>(n, p_count, gt, cout, c8, runs, K, o0, part);
                break;
            default:
                break;
        }
    }
}

/// dw (Cout x K) = G^T Col for any stride and patch, from x's runs (see above).
inline void weight_grad_runs(const ConvGeometry& g, int n, const double* x, const double* gy, int cout, double* dw) {
    thread_local AlignedVector gt, part, zeros;
    thread_local std::vector<const double*> runs;
    const int P = g.positions(), K = g.patch(), block = block_positions(g, n), c8 = (cout + 7) / 8 * 8;
    const long NP = long(n) * P, hw = long(g.height) * g.width;
    if (zeros.size() < std::size_t(n)) zeros.assign(std::size_t(n), 0.0);  // the padding's run
    std::fill(dw, dw + long(cout) * K, 0.0);
    grow(part, std::size_t(cout) * K);
    runs.resize(std::size_t(block) * K);
    for (int p0 = 0; p0 < P; p0 += block) {
        const int p1 = std::min(P, p0 + block);
        const long rows = long(p1 - p0) * n;
        grow(gt, std::size_t(rows) * c8);
        for (long r = 0; r < rows; ++r) {
            double* to = gt.data() + r * c8;
            for (int o = 0; o < cout; ++o) to[o] = gy[long(p0) * n + r + o * NP];
            std::fill(to + cout, to + c8, 0.0);
        }
        for (int p = p0; p < p1; ++p)
            for (int c = 0, t = 0; c < g.channels; ++c)
                for (int ky = 0; ky < g.kernel_h; ++ky)
                    for (int kx = 0; kx < g.kernel_w; ++kx, ++t) {
                        const long q = pixel(g, p / g.out_w(), p % g.out_w(), ky, kx);
                        runs[std::size_t(p - p0) * K + t] = q < 0 ? zeros.data() : x + (c * hw + q) * n;
                    }
        const double* G = gt.data();
        const double* const* R = runs.data();
        double* out = part.data();
        lanes::run([&]<class B>() OCCAM_LANES_KERNEL { runs_grad_block<B>(n, p1 - p0, G, cout, R, K, out); });
        for (int o = 0; o < cout; ++o)
            for (int t = 0; t < K; ++t) dw[o + long(t) * cout] += part[std::size_t(t) + std::size_t(o) * K];
    }
}

/// The weight gradient of a stride-1 convolution straight from x (see conv2d_weight_grad).
inline void weight_grad_direct(const ConvGeometry& g, int n, const double* x, const double* gy, int cout,
                               double* dw) {
    thread_local DirectWeightGrad grad;
    grad.begin(g, n, x, cout);
    grad.add_rows(0, g.out_h(), gy);
    grad.finish(dw);
}

}  // namespace occam::kernels::conv_detail

OCCAM_KERNELS_END

namespace occam::kernels {

/// y (n x Cout P) = conv(x, w) (+ bias[o] on channel o, if given): x is n x (C H W), w is
/// Cout x (C kh kw), row o holding output channel o's kernel in (c, ky, kx) order. Short
/// patches (K = C kh kw <= 32, e.g. one input channel) with stride 1 are summed straight from x
/// (conv2d_direct): there im2col's copy and the product's loads and stores of its short tiles
/// cost more than the multiplications. Otherwise im2col and the blocked product: per block of
/// positions Col_b W^T, then copied into y's rows p N + n (writing it in place, columns N P
/// apart, measured 1.1-2x slower for 2000 images). Both add the bias to each sum in its
/// register, and give the same bits (a test checks it).
inline void conv2d_forward(const ConvGeometry& g, int n, const double* x, const double* w, int cout, double* y,
                           const double* bias = nullptr) {
    if (conv_detail::reads_x_directly(g)) conv_detail::conv2d_direct(g, n, x, w, cout, y, bias);
    else conv_detail::conv2d_im2col(g, n, x, w, cout, y, bias);
}

/// dx (n x C H W) = the transposed convolution of gy (n x Cout P) with w: col2im(G W), where G
/// is gy read as N P x Cout (each block of its rows is G's rows p N + n).
inline void conv2d_input_grad(const ConvGeometry& g, int n, const double* gy, const double* w, int cout, double* dx) {
    thread_local AlignedVector dcol;
    const int P = g.positions(), K = g.patch(), block = conv_detail::block_positions(g, n);
    const long NP = long(n) * P;
    std::fill(dx, dx + n * g.in_size(), 0.0);
    for (int p0 = 0; p0 < P; p0 += block) {
        const int p1 = std::min(P, p0 + block);
        const long rows = long(p1 - p0) * n;
        grow(dcol, std::size_t(rows) * K);
        gemm(false, false, int(rows), K, cout, gy + long(p0) * n, NP, w, cout, dcol.data());
        conv_detail::col2im_add(g, n, dcol.data(), p0, p1, dx);
    }
}

/// dw (Cout x C kh kw) = G^T Col: dw(o, t) = the sum over the rows r = p N + n of G(r, o) Col(r, t),
/// G being gy read as N P x Cout. Short stride-1 patches (K <= 32, as in conv2d_forward) go
/// straight from x, each entry an inner product in eight lanes down the rows (measured 2.7x the
/// product's speed for the learner's 20 images, 12x for the meta-learner's first layer on 2000,
/// where G^T's packing cost more than the product); longer patches by tiles of G^T against
/// broadcasts from x's runs (weight_grad_runs; K = 144: 60 GFLOP/s, where building Col^T and
/// multiplying it with the blocked product took 1.4x as long for the same bits).
inline void conv2d_weight_grad(const ConvGeometry& g, int n, const double* x, const double* gy, int cout,
                               double* dw) {
    if (conv_detail::reads_x_directly(g)) conv_detail::weight_grad_direct(g, n, x, gy, cout, dw);
    else
        conv_detail::weight_grad_runs(g, n, x, gy, cout, dw);
}

/// Max pooling over non-overlapping size x size windows (stride = size; a last partial row or
/// column of windows is dropped, as PyTorch's floor mode does). y is n x (C Ho Wo); index[i] is
/// the flat position in x (column-major, n x C H W) of y's entry i (y may be null: the index
/// alone). Ties go to the first maximum in row-major window order; a NaN wins, so it propagates
/// as through any other op. The batch is the innermost loop: each window element is one
/// contiguous run of n, compared branch-free against the running maxima.
inline void max_pool2d_forward(int channels, int height, int width, int size, int n, const double* x, double* y,
                               int* index) {
    const int ho = height / size, wo = width / size;
    const long hw = long(height) * width;
    thread_local AlignedVector scratch;
    if (!y) grow(scratch, std::size_t(n));
    for (int c = 0; c < channels; ++c)
        for (int oy = 0; oy < ho; ++oy)
            for (int ox = 0; ox < wo; ++ox) {
                const long out_col = (long(c) * ho + oy) * wo + ox;
                double* best = y ? y + out_col * n : scratch.data();
                int* at = index + out_col * n;
                for (int dy = 0; dy < size; ++dy)
                    for (int dx = 0; dx < size; ++dx) {
                        const long base = (c * hw + long(oy * size + dy) * width + ox * size + dx) * n;
                        const double* v = x + base;
                        if (dy == 0 && dx == 0) {
                            for (int i = 0; i < n; ++i) best[i] = v[i], at[i] = int(base + i);
                            continue;
                        }
                        for (int i = 0; i < n; ++i) {
                            const bool take = v[i] > best[i] || std::isnan(v[i]);
                            best[i] = take ? v[i] : best[i];
                            at[i] = take ? int(base + i) : at[i];
                        }
                    }
            }
}

}  // namespace occam::kernels
