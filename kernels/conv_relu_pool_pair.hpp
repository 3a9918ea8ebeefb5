// What this file teaches: fusing two layers' backward passes so the gradient between them never
// exists whole. For y = layer2(layer1(x)) (each max_pool(relu(conv + b))) the upper layer's
// winners' path (conv_relu_pool.hpp) makes the middle gradient a block of images at a time,
// image-major and in cache; the lower layer takes its weight gradient from that block at once,
// instead of the block being copied back into the tape's column-major layout (50 MB for fig6's
// meta-learner) and read again, column by column, by the lower layer's own backward.
//
// The lower layer's weight gradient from one image, with the channels as the lanes: behind relu
// and pooling, channel o's gradient at window k reaches one conv output, the window's winner
// (code c_ok), so
//   dW1(o, t) += sum_k  g(o, k) [c_ok = c] x(patch of window k at place c, tap t)   over codes c,
//   db1(o)    += sum_k  g(o, k) [c_ok kept].
// For a window and a code c, G_c(o) = g(o, k) where c_ok = c (else 0) is one vector over the
// channels and the patch at place c is the same for all of them, so each tap is one multiply-add
// of G_c by a broadcast pixel: pool^2 K multiply-adds of 8 lanes a window, where a lane's
// winner-only sums would gather a pixel per lane and tap.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "conv_relu_pool.hpp"

namespace occam::kernels {

namespace pair_detail {

/// The most lower-layer channels (4 blocks of 8) and window places (a 4 x 4 pool) the fused pass
/// takes; other stacks go layer by layer.
constexpr int kMaxBlocks = 4;
constexpr int kMaxPlaces = 16;

/// What the lower layer's sums read for one image.
struct LowerLayer {
    int windows = 0, places = 0, taps = 0;
    const long* corner = nullptr;  ///< window k's first patch in the padded image (Windows)
    const long* place = nullptr;   ///< the patch of code c, from the corner
    const long* tap = nullptr;     ///< tap t = (c, ky, kx) of a patch, from its start
    const long* grad_at = nullptr; ///< window k's channels' gradients in the upper layer's padded block
};

/// Taps [t0, t0 + TC) of one image: sums holds tap t's NB blocks of channels at (t NB + j) 8,
/// db the biases' NB blocks (added to only with `with_bias`, the first pass). xi: the image,
/// padded (Patches); codes: window k's NB 8 codes at k NB 8 (lanes past the channels hold a code
/// that matches no place); gi: the upper layer's padded input gradient for the image.
template <class B, int NB, int TC>
OCCAM_LANES_INLINE void lower_taps(const LowerLayer& q, int t0, bool with_bias, const double* xi,
                                   const std::uint16_t* codes, const double* gi, double* sums, double* db) {
    using L = lanes::Ops<B>;
    B acc[TC][NB], bias[NB];
    for (int t = 0; t < TC; ++t)
        for (int j = 0; j < NB; ++j) acc[t][j] = L::load(sums + ((t0 + t) * NB + j) * 8);
    for (int j = 0; j < NB; ++j) bias[j] = L::load(db + 8 * j);
    long tap[TC];
    for (int t = 0; t < TC; ++t) tap[t] = q.tap[t0 + t];
    const B zero = L::splat(0.0), kept_below = L::splat(double(q.places));
    alignas(64) double G[kMaxPlaces][NB * 8];
    for (int k = 0; k < q.windows; ++k) {
        B g[NB], c[NB];
        for (int j = 0; j < NB; ++j)
            g[j] = L::load(gi + q.grad_at[k] + 8 * j), c[j] = L::from_u16(codes + (long(k) * NB + j) * 8);
        for (int p = 0; p < q.places; ++p)
            for (int j = 0; j < NB; ++j) L::store(G[p] + 8 * j, L::select(c[j] == L::splat(double(p)), g[j], zero));
        if (with_bias)  // a kept code is a place (< places); kReluZero's are not
            for (int j = 0; j < NB; ++j) bias[j] = bias[j] + L::select(kept_below > c[j], g[j], zero);
        const double* corner = xi + q.corner[k];
        for (int p = 0; p < q.places; ++p) {
            const double* patch = corner + q.place[p];
#pragma GCC unroll 16
            for (int t = 0; t < TC; ++t) {
                const B pixel = L::broadcast(patch + tap[t]);
#pragma GCC unroll 4
                for (int j = 0; j < NB; ++j) acc[t][j] = L::fma(L::load(G[p] + 8 * j), pixel, acc[t][j]);
            }
        }
    }
    for (int t = 0; t < TC; ++t)
        for (int j = 0; j < NB; ++j) L::store(sums + ((t0 + t) * NB + j) * 8, acc[t][j]);
    for (int j = 0; j < NB; ++j) L::store(db + 8 * j, bias[j]);
}

/// The most taps a pass keeps in registers for NB blocks of channels: sums in 24 of AVX-512's
/// 32 registers, or 12 of AVX2's 16 (each block two halves), the rest for the window's
/// gradients, codes and bias sums. (fig6's 16 channels and 9 taps: one pass of 18 AVX-512
/// registers, or three AVX2 passes of 3 taps; AVX2 in passes of 2 took 144 against 109 ms.)
template <class B, int NB>
constexpr int kTapsPerPass = std::max(1, std::is_same_v<B, lanes::Split> ? 12 / (2 * NB) : 24 / NB);

/// lower_taps<B, NB, tc> for a tc from 1 to TC known at run time.
template <class B, int NB, int TC = kTapsPerPass<B, NB>>
OCCAM_LANES_INLINE void with_taps(int tc, const LowerLayer& q, int t0, bool with_bias, const double* xi,
                                  const std::uint16_t* codes, const double* gi, double* sums, double* db) {
    if constexpr (TC > 1)
        if (tc < TC) return with_taps<B, NB, TC - 1>(tc, q, t0, with_bias, xi, codes, gi, sums, db);
    lower_taps<B, NB, TC>(q, t0, with_bias, xi, codes, gi, sums, db);
}

/// One image's part of the lower layer's gradient: every tap, as many a pass as fit in registers.
template <class B, int NB>
OCCAM_LANES_INLINE void lower_image(const LowerLayer& q, const double* xi, const std::uint16_t* codes,
                                    const double* gi, double* sums, double* db) {
    constexpr int most = kTapsPerPass<B, NB>;
    for (int t0 = 0; t0 < q.taps; t0 += most)
        with_taps<B, NB>(std::min(most, q.taps - t0), q, t0, t0 == 0, xi, codes, gi, sums, db);
}

}  // namespace pair_detail

/// Whether conv_relu_pool_pair_backward takes this stack: the upper layer's input is the lower
/// layer's pooled output (c1 channels), the upper layer takes the winners' path, and the lower
/// layer has at most 32 channels and a pool of at most 4 x 4.
inline bool conv_relu_pool_pair_applies(const ConvGeometry& g1, int c1, const ConvGeometry& g2, int pool) {
    return g2.channels == c1 && g2.height == g1.out_h() / pool && g2.width == g1.out_w() / pool &&
           g2.patch() >= kWinnersFromPatch && c1 <= 8 * pair_detail::kMaxBlocks &&
           pool * pool <= pair_detail::kMaxPlaces;
}

/// The backward of two stacked layers, y = layer2(layer1(x)), for the gradient gy at y, where x
/// needs none (data): dw2 and db2 as conv_relu_pool_backward gives them (the same bits), dw1 and
/// db1 from the middle gradient a block of images at a time (each optional but the upper layer's
/// input gradient is always formed). x (n x C1 H1 W1), p1 (n x c1 H2 W2, layer 1's output),
/// win1 and win2 (the codes), gy (n x c2 ...) as the layers' forwards left them; with `head`,
/// gy is the n-vector g of gy = g head^T (conv_relu_pool_backward's).
/// False (the outputs then undefined) where the pair does not apply or a value that the
/// winners' path declines is not finite (x, p1, w2): the caller goes layer by layer.
inline bool conv_relu_pool_pair_backward(const ConvGeometry& g1, const ConvGeometry& g2, int pool, int n,
                                         const double* x, int c1, const std::uint16_t* win1, const double* p1,
                                         const double* w2, int c2, const std::uint16_t* win2, const double* gy,
                                         double* dw1, double* db1, double* dw2, double* db2,
                                         const double* head = nullptr) {
    using namespace pair_detail;
    if (!conv_relu_pool_pair_applies(g1, c1, g2, pool)) return false;
    const winner_detail::Patches q(g1);
    thread_local winner_detail::Windows wins;
    wins.set(g1, q, pool);
    const int NB = (c1 + 7) / 8, lanes = NB * 8, windows = wins.count(), taps = g1.patch();
    const long E1 = long(c1) * windows;
    thread_local AlignedVector xt, sums, bias;
    thread_local std::vector<std::uint16_t> ct, codes;
    thread_local std::vector<long> tap, grad_at;
    grow(sums, std::size_t(taps) * lanes);
    grow(bias, std::size_t(lanes));
    std::fill_n(sums.data(), std::size_t(taps) * lanes, 0.0);
    std::fill_n(bias.data(), lanes, 0.0);
    codes.assign(std::size_t(windows) * lanes, kReluZero);  // lanes past c1 match no place: their sums stay 0
    tap.resize(std::size_t(taps));
    for (int c = 0; c < g1.channels; ++c)
        for (int ky = 0; ky < g1.kernel_h; ++ky)
            for (int kx = 0; kx < g1.kernel_w; ++kx)
                tap[std::size_t((c * g1.kernel_h + ky) * g1.kernel_w + kx)] = ky * q.row + long(kx) * q.channels + c;
    const winner_detail::Patches p2(g2);
    grad_at.resize(std::size_t(windows));
    const int wo = g1.out_w() / pool;
    for (int k = 0; k < windows; ++k)  // window (k / wo, k % wo) is the upper layer's pixel there
        grad_at[std::size_t(k)] = (k / wo + p2.pad) * p2.row + long(k % wo + p2.pad) * c1;
    const LowerLayer layer{.windows = windows, .places = pool * pool, .taps = taps, .corner = wins.corner.data(),
                           .place = wins.place.data(), .tap = tap.data(), .grad_at = grad_at.data()};
    const auto lower = [&](int r0, int rows, const double* dxt, const winner_detail::Patches& p) {
        grow(xt, std::size_t(rows) * q.image);
        ct.resize(std::size_t(rows) * E1);
        if (!winner_detail::pad_images(g1, q, n, x, r0, rows, xt.data())) return false;
        winner_detail::transpose_codes(E1, n, r0, rows, win1, ct.data(), E1);
        for (int i = 0; i < rows; ++i) {
            // image i's codes, channel by channel, to window by window (channel o at k lanes + o)
            winner_detail::transpose_codes(c1, windows, 0, windows, ct.data() + i * E1, codes.data(), lanes);
            const double* xi = xt.data() + i * q.image;
            const double* gi = dxt + i * p.image;
            lanes::run([&]<class B>() OCCAM_LANES_KERNEL {
                switch (NB) {
                    case 1: lower_image<B, 1>(layer, xi, codes.data(), gi, sums.data(), bias.data()); break;
                    case 2: lower_image<B, 2>(layer, xi, codes.data(), gi, sums.data(), bias.data()); break;
                    case 3: lower_image<B, 3>(layer, xi, codes.data(), gi, sums.data(), bias.data()); break;
                    default: lower_image<B, 4>(layer, xi, codes.data(), gi, sums.data(), bias.data()); break;
                }
            });
        }
        return true;
    };
    if (!winner_detail::backward_winners<false>(g2, pool, n, p1, w2, c2, win2, gy, nullptr, dw2, db2, lower, head))
        return false;
    if (dw1)
        for (int t = 0; t < taps; ++t)
            for (int o = 0; o < c1; ++o) dw1[long(t) * c1 + o] = sums[std::size_t(t) * lanes + o];
    if (db1) std::copy_n(bias.data(), c1, db1);
    return true;
}

}  // namespace occam::kernels
