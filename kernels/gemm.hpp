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

    /// A finished sum s of column j, as the tiles finish theirs in eight lanes at a time.
    double apply(double s, int j) const {
        if (bias) s = s + bias[j];
        return relu && 0.0 > s ? 0.0 : s;
    }
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
    auto finish = [&](int j, double s) { return e.apply(s, bias_per_entry ? j : 0); };
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

/// out = A v for column-major A (m x k, leading dimension lda), v strided (v_k at v[k * v_step]),
/// then the epilogue with bias[0]: each out_i summed in order of k, one fused multiply-add per
/// step from 0, as every tile sums it (the same bits). A is read a column at a time, four columns
/// per pass over a block of out that stays in L1: the tiles read it 24 rows of every column at a
/// time, each column on another page, at half the memory's speed for the fig6 learner's 1400 x
/// 3136 test features times its one output (5.7 against 2.9 ms).
inline void column_axpys(int m, int k, const double* A, long lda, const double* v, long v_step, double* out,
                         Epilogue e) {
    constexpr int kRows = 2048;  // 16 KB of out
    for (int i0 = 0; i0 < m; i0 += kRows) {
        const int rows = std::min(kRows, m - i0);
        double* __restrict y = out + i0;
        std::fill_n(y, rows, 0.0);
        int kk = 0;
        for (; kk + 4 <= k; kk += 4) {
            const double *a0 = A + long(kk) * lda + i0, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
            const double b0 = v[kk * v_step], b1 = v[(kk + 1) * v_step], b2 = v[(kk + 2) * v_step],
                         b3 = v[(kk + 3) * v_step];
            for (int i = 0; i < rows; ++i)
                y[i] = std::fma(a3[i], b3, std::fma(a2[i], b2, std::fma(a1[i], b1, std::fma(a0[i], b0, y[i]))));
        }
        for (; kk < k; ++kk) {
            const double* a = A + long(kk) * lda + i0;
            const double b = v[kk * v_step];
            for (int i = 0; i < rows; ++i) y[i] = std::fma(a[i], b, y[i]);
        }
        for (int i = 0; i < rows; ++i) y[i] = e.apply(y[i], 0);
    }
}

/// C (m x n) = a b^T, a product over k = 1: C_ij = fma(a_i, b_j, 0), the one step of a tile's
/// sum from +0 (so a product of -0 gives +0, as the tiles do), then the epilogue; a_i at
/// a[i * a_step], b_j at b[j * b_step]. C is written a column at a time: the tiles wrote 24 rows
/// of 8 columns at a time, each column on another page (the fig6 gradients of the linear layers'
/// inputs, 2000 x 1568 and 1400 x 3136, took 2.9 and 8.0 ms).
inline void outer_product(int m, int n, const double* a, long a_step, const double* b, long b_step, double* C,
                          Epilogue e) {
    thread_local AlignedVector column;  // a, contiguous
    grow(column, std::size_t(std::max(m, 1)));
    for (int i = 0; i < m; ++i) column[i] = a[i * a_step];
    const double* __restrict ac = column.data();
    for (int j = 0; j < n; ++j) {
        double* __restrict c = C + long(j) * m;
        const double bj = b[j * b_step];
        for (int i = 0; i < m; ++i) c[i] = e.apply(std::fma(ac[i], bj, 0.0), j);
    }
}

/// C = op(A) op(B) for column-major A (rows_a x cols_a) and B, ta / tb saying which are
/// transposed; C is m x n and must not overlap A or B. Unless A is column-major with m a
/// multiple of 8, op(A) is first copied, padded to whole blocks of 8 rows, into a per-thread
/// buffer (O(m k), against O(m n k) for the product). A product with one row or one column
/// runs as dot products or column sweeps instead (column_dots, column_axpys), one over k = 1 as
/// an outer product (outer_product); each gives the tiles' bits.
/// `e` may add a bias per column and a ReLU (Epilogue).
inline void gemm(bool ta, bool tb, int m, int n, int k, const double* A, long lda_in, const double* Bm, long ldb,
                 double* C, Epilogue e = {}) {
    // One column of A^T b, or one row of a^T B: dot products down the stored columns, in place.
    if (ta && n == 1) return column_dots(m, k, A, lda_in, Bm, tb ? ldb : 1, C, e, false);
    if (m == 1 && !tb) return column_dots(n, k, Bm, ldb, A, ta ? 1 : lda_in, C, e, true);
    // One column of A b, and products over k = 1: streamed a column at a time (the same bits).
    if (!ta && n == 1) return column_axpys(m, k, A, lda_in, Bm, tb ? ldb : 1, C, e);
    if (k == 1) return outer_product(m, n, A, ta ? lda_in : 1, Bm, tb ? 1 : ldb, C, e);
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
