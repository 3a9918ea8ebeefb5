// What this file teaches: a matrix product as a register-blocked kernel (a tile of C stays in
// registers while k runs), written once over eight-lane blocks and compiled for AVX2 and for
// AVX-512; every entry of C is summed over k in order, so both copies give the same bits.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "buffer.hpp"
#include "lanes.hpp"

OCCAM_KERNELS_BEGIN

namespace occam::kernels {

/// What a product may do to each entry of C for free while it is in a register: add bias[j]
/// to the sum (a layer's x W^T + b), then clamp it at 0 (a ReLU; NaN stays NaN, as in the ReLU
/// op). C_ij = relu((sum_k op(A)_ik op(B)_kj) + bias_j), the sum in order of k.
struct Epilogue {
    const double* bias = nullptr;  ///< n values, or none
    bool relu = false;
};

/// A strided view of op(B): element (k, j) at b[k * step_k + j * step_j].
struct StridedB {
    const double* b;
    long step_k, step_j;
};

/// One tile of C: RB blocks of 8 rows from row i by the first NC of the NR columns of one
/// packed panel of op(B) (bp[kk * NR + c] = op(B)(kk, j + c)); only the first `cols` columns
/// and m - i rows are stored. Ap is op(A) column-major with `lda` rows (zeros beyond m, or m a
/// multiple of 8). Every C_ij is sum_k op(A)_ik op(B)_kj in order of k, one fused
/// multiply-add per step, whichever tile computes it.
template <class B, int RB, int NR, int NC = NR>
OCCAM_LANES_INLINE void gemm_tile(int i, int j, int cols, int m, int k, const double* Ap, long lda, const double* bp,
                                  double* C, long ldc, Epilogue e) {
    using L = lanes::Ops<B>;
    B acc[RB][NC];
    for (int r = 0; r < RB; ++r)
        for (int c = 0; c < NC; ++c) acc[r][c] = L::splat(0.0);
    const double* a = Ap + i;
    for (int kk = 0; kk < k; ++kk, a += lda, bp += NR) {
        B ar[RB];
        for (int r = 0; r < RB; ++r) ar[r] = L::load(a + 8 * r);
        for (int c = 0; c < NC; ++c)
            for (int r = 0; r < RB; ++r) acc[r][c] = acc[r][c] + ar[r] * bp[c];
    }
    if (e.bias)
        for (int c = 0; c < cols; ++c)
            for (int r = 0; r < RB; ++r) acc[r][c] = acc[r][c] + L::splat(e.bias[j + c]);
    if (e.relu) {
        const B zero = L::splat(0.0);
        for (int r = 0; r < RB; ++r)
            for (int c = 0; c < NC; ++c) acc[r][c] = L::select(zero > acc[r][c], zero, acc[r][c]);
    }
    double* out = C + long(j) * ldc + i;
    const int rows = std::min(8 * RB, m - i);
    for (int c = 0; c < cols; ++c, out += ldc) {
        if (rows == 8 * RB) {
            for (int r = 0; r < RB; ++r) L::store(out + 8 * r, acc[r][c]);
        } else {
            alignas(64) double tmp[8 * RB];
            for (int r = 0; r < RB; ++r) L::store(tmp + 8 * r, acc[r][c]);
            std::copy(tmp, tmp + rows, out);
        }
    }
}

/// One stripe of RB blocks of 8 rows from row i, across every panel of op(B). A last panel of
/// at most NR / 2 columns is computed by a narrower tile (n = 32 in panels of 6 would otherwise
/// compute 36 columns).
template <class B, int RB, int NR>
OCCAM_LANES_INLINE void gemm_stripe(int i, int m, int n, int k, const double* Ap, long lda, const double* panels,
                                    double* C, Epilogue e) {
    for (int j = 0; j < n; j += NR) {
        const int cols = std::min(NR, n - j);
        const double* bp = panels + std::size_t(j) * k;
        if (cols <= NR / 2) gemm_tile<B, RB, NR, NR / 2>(i, j, cols, m, k, Ap, lda, bp, C, m, e);
        else gemm_tile<B, RB, NR>(i, j, cols, m, k, Ap, lda, bp, C, m, e);
    }
}

/// C (m x n) = Ap (m x k, packed) times op(B): op(B) is packed in panels of NR columns (the
/// last one padded with zeros), then C is computed in stripes of RB blocks of 8 rows, the last
/// rows taking as few blocks as they need. (No lambdas here: they would not be compiled again
/// for AVX-512 with their caller.)
template <class B, int RB, int NR>
OCCAM_LANES_INLINE void gemm_blocks(int m, int n, int k, const double* Ap, long lda, StridedB bv, double* C,
                                    Epilogue e) {
    thread_local AlignedVector panels;
    const int np = (n + NR - 1) / NR;
    grow(panels, std::size_t(np) * NR * std::size_t(std::max(k, 1)));
    for (int jb = 0; jb < np; ++jb)
        for (int kk = 0; kk < k; ++kk)
            for (int c = 0; c < NR; ++c)
                panels[(std::size_t(jb) * k + kk) * NR + c] =
                    jb * NR + c < n ? bv.b[kk * bv.step_k + long(jb * NR + c) * bv.step_j] : 0.0;
    int i = 0;
    for (; i + 8 * RB <= m; i += 8 * RB) gemm_stripe<B, RB, NR>(i, m, n, k, Ap, lda, panels.data(), C, e);
    while (i < m) {
        if constexpr (RB >= 3) {
            if (m - i > 8) {
                gemm_stripe<B, 2, NR>(i, m, n, k, Ap, lda, panels.data(), C, e);
                i += 16;
                continue;
            }
        }
        gemm_stripe<B, 1, NR>(i, m, n, k, Ap, lda, panels.data(), C, e);
        i += 8;
    }
}

/// out_j = sum_k M(k, j) v_k for j < count, M column-major (k x count, leading dimension ldm),
/// v strided (v_k at v[k * v_step]); then the epilogue, with bias[j] (bias_per_entry) or
/// bias[0]. Each sum runs in order of k with one fused multiply-add per step from 0, as every
/// tile sums it (the same bits), eight columns at a time so that eight chains overlap. This is
/// a product with one row or one column read in place: the tiles would first pack the long
/// operand (the fig6 linear layer's weight gradient, 1 x 1400 times 1400 x 3136, copied 3136
/// columns into panels and ran 8-row tiles for its one row).
inline void column_dots(int count, int k, const double* M, long ldm, const double* v, long v_step, double* out,
                        Epilogue e, bool bias_per_entry) {
    auto finish = [&](int j, double s) {
        if (e.bias) s = s + e.bias[bias_per_entry ? j : 0];
        return e.relu && 0.0 > s ? 0.0 : s;
    };
    int j = 0;
    for (; j + 8 <= count; j += 8) {
        double acc[8] = {};
        const double* col = M + long(j) * ldm;
        for (int kk = 0; kk < k; ++kk) {
            const double vk = v[kk * v_step];
            for (int c = 0; c < 8; ++c) acc[c] = std::fma(col[kk + c * ldm], vk, acc[c]);
        }
        for (int c = 0; c < 8; ++c) out[j + c] = finish(j + c, acc[c]);
    }
    for (; j < count; ++j) {
        double acc = 0.0;
        for (int kk = 0; kk < k; ++kk) acc = std::fma(M[kk + long(j) * ldm], v[kk * v_step], acc);
        out[j] = finish(j, acc);
    }
}

/// C = op(A) op(B) for column-major A (rows_a x cols_a) and B, ta / tb saying which are
/// transposed; C is m x n and must not overlap A or B. Unless A is column-major with m a
/// multiple of 8, op(A) is first copied, padded to whole blocks of 8 rows, into a per-thread
/// buffer (O(m k), against O(m n k) for the product). A product with one row or one column
/// runs as dot products instead (column_dots; the same bits).
/// `e` may add a bias per column and a ReLU (Epilogue).
inline void gemm(bool ta, bool tb, int m, int n, int k, const double* A, long lda_in, const double* Bm, long ldb,
                 double* C, Epilogue e = {}) {
    // One column of A^T b, or one row of a^T B: dot products down the stored columns, in place.
    if (ta && n == 1) return column_dots(m, k, A, lda_in, Bm, tb ? ldb : 1, C, e, false);
    if (m == 1 && !tb) return column_dots(n, k, Bm, ldb, A, ta ? 1 : lda_in, C, e, true);
    // A column-major A whose columns are whole blocks of 8 is read in place; any other is copied.
    const bool in_place = !ta && m % 8 == 0;
    const long lda = in_place ? lda_in : lanes::padded(m);
    thread_local AlignedVector pack;
    if (!in_place) {
        grow(pack, std::size_t(lda) * std::size_t(std::max(k, 1)));
        for (int kk = 0; kk < k; ++kk) {
            double* col = pack.data() + long(kk) * lda;
            if (!ta)
                std::copy(A + long(kk) * lda_in, A + long(kk) * lda_in + m, col);
            else
                for (int i = 0; i < m; ++i) col[i] = A[kk + long(i) * lda_in];
            std::fill(col + m, col + lda, 0.0);
        }
    }
    // op(B)(kk, j): B(kk, j) = Bm[kk + j ldb], or B^T: B(j, kk) = Bm[j + kk ldb].
    const StridedB bv = tb ? StridedB{Bm, ldb, 1} : StridedB{Bm, 1, ldb};
    // AVX2: one block of 8 rows (two 4-lane halves) by 6 columns: 12 accumulators, 2 loads, 1
    // broadcast (15 of 16 registers). AVX-512: 3 blocks (24 rows) by 8 columns: 24 accumulators.
    const double* Ap = in_place ? A : pack.data();
    lanes::run([&]<class B>() OCCAM_LANES_KERNEL {
        if constexpr (std::is_same_v<B, lanes::Split>) gemm_blocks<B, 1, 6>(m, n, k, Ap, lda, bv, C, e);
        else gemm_blocks<B, 3, 8>(m, n, k, Ap, lda, bv, C, e);
    });
}

}  // namespace occam::kernels

OCCAM_KERNELS_END
