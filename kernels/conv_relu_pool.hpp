// What this file teaches: blocking for the cache. A CNN layer, max_pool(relu(conv(x, w) + b)),
// run a block of images at a time, so the convolution's output (four times the pooled one: 200
// MB for 2000 MNIST images and 16 channels) only ever exists for one block, in a buffer that
// stays in cache from the product to the pooling, and the gradient there likewise on the way back.
// What the layer keeps for its backward is the pooled output and, per entry, which element of its
// window won: two bytes instead of a four-byte index into the unpooled output.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "buffer.hpp"
#include "conv.hpp"

namespace occam::kernels {

/// Winner codes (dy size + dx) are 16 bits, so windows are at most 255 x 255.
constexpr int kMaxPoolWindow = 255;

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

/// For a block's convolution output zb (m x C H W): relu of each window's maximum into rows r0..
/// of y (n x C Ho Wo), and the maximum's place in its window (dy size + dx) into `win` (same
/// layout). Ties go to the first maximum in row-major window order and a NaN wins, as in
/// max_pool2d_forward; relu(NaN) stays NaN.
inline void relu_pool_rows(int channels, int height, int width, int size, int m, const double* zb, int r0, int n,
                           double* y, std::uint16_t* win) {
    const int ho = height / size, wo = width / size;
    const long hw = long(height) * width;
    for (int c = 0; c < channels; ++c)
        for (int oy = 0; oy < ho; ++oy)
            for (int ox = 0; ox < wo; ++ox) {
                const long out = ((long(c) * ho + oy) * wo + ox) * n + r0;
                double* best = y + out;
                std::uint16_t* at = win + out;
                const double* v = zb + (c * hw + long(oy * size) * width + ox * size) * m;
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
                for (int i = 0; i < m; ++i) best[i] = std::max(best[i], 0.0);
            }
}

}  // namespace relu_pool_detail

/// The flat index, in the n x (Cout P) convolution output, of pooled entry (row, col) whose
/// window's winner is `code`: what max_pool2d's index would hold.
inline long relu_pool_source(const ConvGeometry& g, int pool, int n, int row, long col, std::uint16_t code) {
    const int ho = g.out_h() / pool, wo = g.out_w() / pool;
    const long c = col / (long(ho) * wo), oy = col / wo % ho, ox = col % wo;
    const long y = oy * pool + code / pool, x = ox * pool + code % pool;
    return row + long(n) * ((c * g.out_h() + y) * g.out_w() + x);
}

/// y (n x Cout Ho Wo) = max_pool(relu(conv(x, w) + bias)), pool x pool windows with stride pool,
/// and each entry's winner code in `win`; x is n x (C H W), w is Cout x (C kh kw). The same
/// values as conv2d_forward then max_pool2d_forward then relu.
inline void conv_relu_pool_forward(const ConvGeometry& g, int pool, int n, const double* x, const double* w,
                                   const double* bias, int cout, double* y, std::uint16_t* win) {
    using namespace relu_pool_detail;
    const int P = g.positions(), m = block_images(n, cout, P);
    thread_local AlignedVector xb, zb;
    for (int r0 = 0; r0 < n; r0 += m) {
        const int rows = std::min(m, n - r0);
        grow(xb, std::size_t(rows) * g.in_size());
        grow(zb, std::size_t(rows) * cout * P);
        gather_rows(x, n, g.in_size(), r0, rows, xb.data());
        conv2d_forward(g, rows, xb.data(), w, cout, zb.data(), bias);
        relu_pool_rows(cout, g.out_h(), g.out_w(), pool, rows, zb.data(), r0, n, y, win);
    }
}

/// The layer's backward for the gradient gy at its output: gz = gy put back at each window's
/// winner where y > 0 (relu's mask; the windows do not overlap), then, each optional,
///   dx (n x C H W) = conv2d_input_grad(gz, w),  dw (Cout x K) = conv2d_weight_grad(x, gz),
///   db (Cout) = channel_sums(gz),
/// block by block of images; dw and db are the sums of the blocks' parts, in block order.
inline void conv_relu_pool_backward(const ConvGeometry& g, int pool, int n, const double* x, const double* w, int cout,
                                    const double* y, const std::uint16_t* win, const double* gy, double* dx, double* dw,
                                    double* db) {
    using namespace relu_pool_detail;
    const int P = g.positions(), K = g.patch(), m = block_images(n, cout, P);
    const int ho = g.out_h() / pool, wo = g.out_w() / pool, ow = g.out_w();
    thread_local AlignedVector xb, gz, dxb, part;
    if (dw) std::fill(dw, dw + long(cout) * K, 0.0);
    if (db) std::fill(db, db + cout, 0.0);
    grow(part, std::size_t(cout) * K + cout);
    for (int r0 = 0; r0 < n; r0 += m) {
        const int rows = std::min(m, n - r0);
        grow(gz, std::size_t(rows) * cout * P);
        // gz written once, in order (no fill, then a scatter that writes back into it): each
        // entry is gy where it won its window and relu kept the output (y > 0; not NaN), else 0,
        // and 0 in a last partial row or column of windows that pooling dropped.
        for (int c = 0; c < cout; ++c)
            for (int oy = 0; oy < g.out_h(); ++oy) {
                double* to = gz.data() + (long(c) * P + long(oy) * ow) * rows;
                if (oy >= ho * pool) {
                    std::fill(to, to + long(ow) * rows, 0.0);
                    continue;
                }
                for (int ox = 0; ox < wo; ++ox) {
                    const long out = ((long(c) * ho + oy / pool) * wo + ox) * n + r0;
                    for (int col = 0; col < pool; ++col, to += rows) {  // the window's columns
                        const auto code = std::uint16_t(oy % pool * pool + col);
                        for (int i = 0; i < rows; ++i)
                            to[i] = win[out + i] == code && y[out + i] > 0 ? gy[out + i] : 0.0;
                    }
                }
                std::fill(to, to + long(ow - wo * pool) * rows, 0.0);
            }
        if (dx) {
            grow(dxb, std::size_t(rows) * g.in_size());
            conv2d_input_grad(g, rows, gz.data(), w, cout, dxb.data());
            scatter_rows(dxb.data(), rows, g.in_size(), r0, n, dx);
        }
        if (dw) {
            grow(xb, std::size_t(rows) * g.in_size());
            gather_rows(x, n, g.in_size(), r0, rows, xb.data());
            conv2d_weight_grad(g, rows, xb.data(), gz.data(), cout, part.data());
            for (long k = 0; k < long(cout) * K; ++k) dw[k] += part[k];
        }
        if (db) {
            channel_sums(rows, P, cout, gz.data(), part.data());
            for (int o = 0; o < cout; ++o) db[o] += part[o];
        }
    }
}

}  // namespace occam::kernels
