// What this file teaches: blocking for the cache. A CNN layer, max_pool(relu(conv(x, w) + b)),
// run a block of images at a time, and within it a band of `pool` output rows at a time, so the
// convolution's output (four times the pooled one: 200 MB for 2000 MNIST images and 16
// channels) only ever exists for one band, in a buffer that stays in L2 from the product to the
// pooling; the gradient there likewise on the way back (for a whole block where the products of
// an input gradient need it).
// What the layer keeps for its backward is the pooled output and, per entry, which element of its
// window won and whether relu zeroed it: two bytes instead of a four-byte index into the unpooled
// output, and the backward pass reads those two bytes, not the eight of the output, for its mask.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "buffer.hpp"
#include "conv.hpp"

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

/// y (n x Cout Ho Wo) = max_pool(relu(conv(x, w) + bias)), pool x pool windows with stride pool,
/// and each entry's winner code in `win`; x is n x (C H W), w is Cout x (C kh kw). The same
/// values as conv2d_forward then max_pool2d_forward then relu.
inline void conv_relu_pool_forward(const ConvGeometry& g, int pool, int n, const double* x, const double* w,
                                   const double* bias, int cout, double* y, std::uint16_t* win) {
    const int ho = g.out_h() / pool;
    conv_bands(g, pool, n, x, w, bias, cout, [&](const double* zb, int py, int r0, int rows) {
        relu_pool_detail::relu_pool_band(cout, ho, g.out_w(), pool, rows, zb, py, r0, n, y, win);
    });
}

/// out (n x Cout Ho Wo) = conv(x, w) + bias taken at each window's winner (`win`, from
/// conv_relu_pool_forward) where the layer's output was > 0, else 0 (also where it is NaN): the
/// layer's directional derivative (R-operator) along a perturbation w, bias of its parameters,
/// for x fixed. The same values as the whole convolution then a gather at the winners.
inline void conv_pool_take(const ConvGeometry& g, int pool, int n, const double* x, const double* w, const double* bias,
                           int cout, const std::uint16_t* win, double* out) {
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

/// The layer's backward for the gradient gy at its output: gz = gy put back at each window's
/// winner where the output was > 0 (relu's mask, from the codes in `win`; the windows do not
/// overlap), then, each optional,
///   dx (n x C H W) = conv2d_input_grad(gz, w),  dw (Cout x K) = conv2d_weight_grad(x, gz),
///   db (Cout) = channel_sums(gz),
/// block by block of images; dw and db are the sums of the blocks' parts, in block order. Where
/// no dx is wanted and the patches are short (a first layer), gz is built and used a band of
/// `pool` output rows at a time (DirectWeightGrad and ChannelSums take it so, with the same
/// bits), so it stays in L2; otherwise it is built for the whole block, for the products.
inline void conv_relu_pool_backward(const ConvGeometry& g, int pool, int n, const double* x, const double* w, int cout,
                                    const std::uint16_t* win, const double* gy, double* dx, double* dw, double* db) {
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

}  // namespace occam::kernels
