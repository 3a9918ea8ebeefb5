// What this file teaches: the loop of geomloss's Sinkhorn solver made cheap on a CPU: one
// exp per cost entry (shared max-shifts), no stored cost matrix for p = 2, and each pass one
// fused loop over blocks of eight rows. metaloss/sinkhorn.hpp drives it; this is only the numbers.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "buffer.hpp"
#include "lanes.hpp"

OCCAM_KERNELS_BEGIN

namespace occam::kernels::sinkhorn {

// ---- How the loop is made cheap -----------------------------------------------------------
// Every soft-min update is a log-sum-exp over a whole cost matrix, so the time is all in exp.
// Two exact rewrites halve the count without changing the numbers beyond rounding:
//  1. With Z_ij = (f_i + g_j - C_ij)/eps,
//       softmin(eps, Cxy, beta + g/eps)_i = f_i - eps (beta + LSE_j Z_ij)
//       softmin(eps, Cyx, alpha + f/eps)_j = g_j - eps (alpha + LSE_i Z_ij),
//     so one matrix serves both parallel updates (rows for f, columns for g). Likewise
//     Z_ik = (p_i + p_k - C_ik)/eps is symmetric, so only its upper triangle is needed.
//  2. Rows and columns want different max-shifts (M_i, N_j). Shifting entry (i, j) by
//     (M_i + N_j)/2 serves both: E_ij = exp(Z_ij - (M_i + N_j)/2) <= 1, and
//       sum_j exp(Z_ij) = exp((M_i + c)/2) sum_j E_ij u_j,  u_j = exp((N_j - c)/2)
//     for any centre c (and the same for columns with v_i = exp((M_i - c)/2)): one exp per
//     entry, then two matrix-vector products. This is safe while the maxima stay within
//     kSpread of each other (then nothing overflows and no significant term underflows). Near
//     the fixed point every row and column LSE is about log n, so the spread is a few units;
//     otherwise we fall back to the direct way (two exps per entry, each row and column
//     shifted by its own max). The final, differentiated step takes the same two paths.
// And two that make each entry cheap:
//  3. Z is never stored. Each pass recomputes its entries from vectors that stay in the L1
//     cache (one multiply-add for p = 2, see QuadraticColumns), so a 300 x 300 problem reads
//     kilobytes, not megabytes of cost and exponent matrices.
//  4. Each pass is one loop over blocks of eight rows (kernels/lanes.hpp) that computes
//     the exponent, its exp and every sum it feeds while the block sits in registers; the whole
//     schedule is compiled twice, for AVX2 and AVX-512, and the CPU picks (same bits either way).
constexpr double kSpread = 400.0;
/// Exponents are floored here before exp: e^-300 is negligible beside the row's largest term
/// (at least e^-100 after the u, v scales), and it keeps exp and the products away from
/// subnormal numbers, which are very slow.
constexpr double kFloor = -300.0;

/// Row buffers are padded to whole blocks of eight; the padding lanes are masked out of
/// every maximum and sum.
using lanes::padded;

/// geomloss's p = 1 ground cost, from the *expanded* squared distance s = u u - 2 u v + v v.
inline double distance_cost(double u, double v) { return std::sqrt(std::max(u * u - 2.0 * u * v + v * v, 1e-8)); }

/// C_ij = C(u_i, v_j) for p = 1, column-major with padded(nu) rows (the padding holds 1, so
/// the masked lanes stay finite).
inline void fill_distance_cost(const double* u, int nu, const double* v, int nv, AlignedVector& c) {
    const int ld = padded(nu);
    c.assign(std::size_t(ld) * nv, 1.0);
    for (int j = 0; j < nv; ++j)
        for (int i = 0; i < nu; ++i) c[std::size_t(j) * ld + i] = distance_cost(u[i], v[j]);
}

/// Per-thread storage reused across calls, so a meta-step allocates nothing once warm.
struct SinkhornWorkspace {
    AlignedVector cxy, cxx, cyy;  ///< p = 1 cost matrices, built once per call
    AlignedVector vec;            ///< points, potentials and scratch vectors
    std::vector<int> order;       ///< sorting orders and envelope scratch
};
inline SinkhornWorkspace& sinkhorn_workspace() {
    thread_local SinkhornWorkspace w;
    return w;
}

/// One transport problem: points u (rows, padded with zeros to whole blocks) against points v
/// (columns); C holds C(u_i, v_j) for p = 1 (see fill_distance_cost) and is null for p = 2.
struct Problem {
    const double* u;
    int rows;
    const double* v;
    int cols;
    const double* C;
    const int *u_order, *v_order;  ///< p = 2: the indices of u and of v in increasing order
};

/// Scratch vectors of padded(max(n, m)) entries for one update.
struct Scratch {
    double *M, *N, *row_shift, *col_shift, *row_scale, *col_scale, *S, *T, *acc, *col_acc, *row_lse, *col_lse;
    double *za, *zb, *zw;  ///< the vectors QuadraticColumns builds Z from
    int *hull, *best;      ///< envelope_argmax's stack and answers
};

/// p = 2: the cost |u - v|^2 / 2 splits, and
///     Z_ij = a_i + (b_j + u_i w_j),  a_i = (f_i - u_i^2/2)/eps,  b_j = (g_j - v_j^2/2)/eps,  w_j = v_j/eps,
/// one multiply-add and one add per entry. (geomloss expands the square the same way,
/// u u - 2 u v + v v, so the rounding error is of the same size: a few ulps of max(u^2, v^2)/eps.)
struct QuadraticColumns {
    const double *a, *u, *b, *w, *v;
    struct Column {
        const double *a, *u;
        double b, w, v;
        template <class B>
        OCCAM_LANES_INLINE B z(int i) const {
            using L = lanes::Ops<B>;
            return L::load(a + i) + (b + L::load(u + i) * w);
        }
        /// dC(u_i, v_j)/du_i = u_i - v_j.
        template <class B>
        OCCAM_LANES_INLINE B du(int i) const {
            return lanes::Ops<B>::load(u + i) - v;
        }
    };
    OCCAM_LANES_INLINE Column column(int j) const { return {a, u, b[j], w[j], v[j]}; }
    /// The exponents less (M_i + N_j)/2, folded into the vectors: a_i - M_i/2 and b_j - N_j/2.
    QuadraticColumns shifted(const double* M, const double* N, int rows, int cols, double* ra, double* cb) const {
        for (int i = 0; i < rows; ++i) ra[i] = a[i] - 0.5 * M[i];
        for (int j = 0; j < cols; ++j) cb[j] = b[j] - 0.5 * N[j];
        return {ra, u, cb, w, v};
    }
};

/// p = 1: Z_ij = (f_i + g_j - C_ij)/eps from the stored cost matrix.
struct DistanceColumns {
    const double *f, *u, *C;
    int ld;
    const double *g, *v;
    double inv;
    struct Column {
        const double *f, *u, *c;
        double g, v, inv;
        template <class B>
        OCCAM_LANES_INLINE B z(int i) const {
            using L = lanes::Ops<B>;
            return (L::load(f + i) + g - L::load(c + i)) * inv;
        }
        /// dC(u_i, v_j)/du_i as autograd gives it: (u_i - v_j)/C, and 0 where the 1e-8 clamp is
        /// active (a point against itself).
        template <class B>
        OCCAM_LANES_INLINE B du(int i) const {
            using L = lanes::Ops<B>;
            const B x = L::load(u + i), s = x * x - 2.0 * x * v + v * v;
            return L::select(L::splat(1e-8) > s, L::splat(0.0), (x - v) / L::load(c + i));
        }
    };
    OCCAM_LANES_INLINE Column column(int j) const {
        return {f, u, C + std::size_t(j) * ld, g[j], v[j], inv};
    }
    /// The exponents less (M_i + N_j)/2, folded into the potentials: f_i - eps M_i/2, g_j - eps N_j/2.
    DistanceColumns shifted(const double* M, const double* N, int rows, int cols, double* rf, double* cg) const {
        const double eps = 1.0 / inv;
        for (int i = 0; i < rows; ++i) rf[i] = f[i] - 0.5 * eps * M[i];
        for (int j = 0; j < cols; ++j) cg[j] = g[j] - 0.5 * eps * N[j];
        return {rf, u, C, ld, cg, v, inv};
    }
};

/// The exponents of one update with potentials f (rows) and g (columns).
template <int P>
OCCAM_LANES_INLINE auto exponents(const Problem& pr, double eps, const double* f, const double* g, const Scratch& s) {
    const double inv = 1.0 / eps;
    if constexpr (P == 2) {
        for (int i = 0; i < padded(pr.rows); ++i) s.za[i] = (f[i] - 0.5 * pr.u[i] * pr.u[i]) * inv;
        for (int j = 0; j < pr.cols; ++j) {
            s.zb[j] = (g[j] - 0.5 * pr.v[j] * pr.v[j]) * inv;
            s.zw[j] = pr.v[j] * inv;
        }
        return QuadraticColumns{s.za, pr.u, s.zb, s.zw, pr.v};
    } else {
        return DistanceColumns{f, pr.u, pr.C, padded(pr.rows), g, pr.v, inv};
    }
}

/// For each query point t_i, the index of a line y = icept_l + slope_l t that is (to rounding)
/// highest there. The lines are visited in order of increasing slope and the queries in
/// increasing t, so the upper envelope is built once and walked once: O(lines + queries).
inline void envelope_argmax(const double* slope, const double* icept, const int* line_order, int lines,
                            const double* t, const int* query_order, int queries, int* hull, int* best) {
    int h = 0;
    for (int k = 0; k < lines; ++k) {
        const int l = line_order[k];
        if (h > 0 && slope[hull[h - 1]] == slope[l]) {  // parallel: keep the higher one
            if (icept[l] <= icept[hull[h - 1]]) continue;
            --h;
        }
        // The top line l2 never leads if l overtakes l1 no later than l2 does:
        // (b1 - b)/(s - s1) <= (b1 - b2)/(s2 - s1), with both denominators positive.
        while (h >= 2) {
            const int l1 = hull[h - 2], l2 = hull[h - 1];
            if ((icept[l1] - icept[l]) * (slope[l2] - slope[l1]) <= (icept[l1] - icept[l2]) * (slope[l] - slope[l1]))
                --h;
            else
                break;
        }
        hull[h++] = l;
    }
    for (int q = 0, k = 0; q < queries; ++q) {
        const int i = query_order[q];
        const double x = t[i];
        while (k + 1 < h && icept[hull[k + 1]] + slope[hull[k + 1]] * x >= icept[hull[k]] + slope[hull[k]] * x) ++k;
        best[i] = hull[k];
    }
}

/// The row maxima M of Z for p = 2 and, if N is not null, its column maxima, without visiting
/// the matrix: M_i = a_i + max_j (b_j + w_j u_i) is the upper envelope of m lines evaluated at
/// u_i, and N_j = b_j + max_i (a_i + u_i w_j) that of n lines at w_j (O(n + m) once the points
/// are sorted, against O(n m) for a pass over Z). The maxima only set the shifts of the
/// exponentials, so the rounding of the envelope does not matter (an entry may exceed its
/// "maximum" by an ulp or two: its exp is then 1 + 1e-15).
inline void quadratic_maxima(const QuadraticColumns& Z, const Problem& pr, double* M, double* N, const Scratch& s) {
    envelope_argmax(Z.w, Z.b, pr.v_order, pr.cols, pr.u, pr.u_order, pr.rows, s.hull, s.best);
    for (int i = 0; i < pr.rows; ++i) {
        const int j = s.best[i];
        M[i] = Z.a[i] + (Z.b[j] + pr.u[i] * Z.w[j]);
    }
    if (!N) return;
    envelope_argmax(pr.u, Z.a, pr.u_order, pr.rows, Z.w, pr.v_order, pr.cols, s.hull, s.best);
    for (int j = 0; j < pr.cols; ++j) {
        const int i = s.best[j];
        N[j] = Z.a[i] + (Z.b[j] + pr.u[i] * Z.w[j]);
    }
}

/// Row maxima M of Z (rows x cols) and, if N is not null, its column maxima. With Upper, Z is
/// symmetric and only its upper triangle is read: entry (i, j), i <= j, counts for rows i and j.
template <class B, bool Upper, class Columns>
OCCAM_LANES_INLINE void exponent_maxima(const Columns& Z, int rows, int cols, double* M, double* N) {
    using L = lanes::Ops<B>;
    const B none = L::splat(-std::numeric_limits<double>::infinity());
    for (int i = 0; i < padded(rows); i += 8) L::store(M + i, none);
    for (int j = 0; j < cols; ++j) {
        const auto col = Z.column(j);
        const int len = Upper ? j + 1 : rows, full = len & ~7;
        B cmax = none;
        for (int i = 0; i < len; i += 8) {
            B z = col.template z<B>(i);
            if (i == full) z = L::select(L::first(len - full), z, none);
            L::store(M + i, L::max(L::load(M + i), z));
            cmax = L::max(cmax, z);
        }
        const double cm = L::max_lane(cmax);
        if (N) N[j] = cm;
        if (Upper) M[j] = std::max(M[j], cm);
    }
}

/// The one-exp pass over the shifted exponents Z_ij - (M_i + N_j)/2 (see shifted()).
/// E_ij = exp(max(Z_ij - (M_i + N_j)/2, kFloor)); adds S_i += sum_j E_ij cs_j
/// (row sums) and, for each column, sum_i E_ij rs_i: into T_j, or with Upper (the mirror
/// entries of a symmetric Z, diagonal excluded) into S_j. With Grad also the plan-weighted
/// cost derivatives d_ij = dC(u_i, v_j)/du_i: acc_i += sum_j E_ij cs_j d_ij, and
/// col_acc_j = sum_i E_ij rs_i d_ij (with Upper: acc_j -= that, as dC(v_j, u_i) = -d_ij).
template <class B, bool Grad, bool Upper, class Columns>
OCCAM_LANES_INLINE void one_exp_sums(const Columns& E, int rows, int cols, const double* rs, const double* cs,
                                     double* S, double* T, double* acc, double* col_acc) {
    using L = lanes::Ops<B>;
    const B zero = L::splat(0.0), floor = L::splat(kFloor);
    for (int j = 0; j < cols; ++j) {
        const auto col = E.column(j);
        const int len = Upper ? j + 1 : rows, full = Upper ? j & ~7 : rows & ~7;
        const double cj = cs[j];
        B t = zero, tg = zero;
        for (int i = 0; i < len; i += 8) {
            B e = L::exp(L::max(col.template z<B>(i), floor));
            B mirror = e;
            if (i == full) {
                e = L::select(L::first(len - full), e, zero);
                mirror = Upper ? L::select(L::first(j - full), e, zero) : e;
            }
            L::store(S + i, L::load(S + i) + cj * e);
            const B r = mirror * L::load(rs + i);
            t = t + r;
            if constexpr (Grad) {
                const B d = col.template du<B>(i);
                L::store(acc + i, L::load(acc + i) + cj * (e * d));
                tg = tg + r * d;
            }
        }
        if constexpr (Upper) {
            S[j] += L::sum(t);
            if constexpr (Grad) acc[j] -= L::sum(tg);
        } else {
            T[j] = L::sum(t);
            if constexpr (Grad) col_acc[j] = L::sum(tg);
        }
    }
}

/// The direct pass (the fallback): S_i = sum_j exp(Z_ij - M_i) and, if N is not null,
/// T_j = sum_i exp(Z_ij - N_j), two exps per entry. With Grad also acc_i = sum_j exp(Z_ij - M_i) d_ij
/// and col_acc_j = sum_i exp(Z_ij - N_j) d_ij.
template <class B, bool Grad, class Columns>
OCCAM_LANES_INLINE void two_exp_sums(const Columns& Z, int rows, int cols, const double* M, const double* N,
                                     double* S, double* T, double* acc, double* col_acc) {
    using L = lanes::Ops<B>;
    const B zero = L::splat(0.0), floor = L::splat(kFloor);
    const int full = rows & ~7;
    for (int j = 0; j < cols; ++j) {
        const auto col = Z.column(j);
        B t = zero, tg = zero;
        for (int i = 0; i < rows; i += 8) {
            const B z = col.template z<B>(i);
            B e = L::exp(L::max(z - L::load(M + i), floor));
            if (i == full) e = L::select(L::first(rows - full), e, zero);
            L::store(S + i, L::load(S + i) + e);
            B d = zero;
            if constexpr (Grad) {
                d = col.template du<B>(i);
                L::store(acc + i, L::load(acc + i) + e * d);
            }
            if (N) {
                B ec = L::exp(L::max(z - N[j], floor));
                if (i == full) ec = L::select(L::first(rows - full), ec, zero);
                t = t + ec;
                if constexpr (Grad) tg = tg + ec * d;
            }
        }
        if (N) {
            T[j] = L::sum(t);
            if constexpr (Grad) col_acc[j] = L::sum(tg);
        }
    }
}

/// Where a differentiated step adds its envelope gradient: row_grad[i] += row_coef * sum_j
/// pi_ij dC(u_i, v_j)/du_i with pi the row-softmax of Z, and col_grad[j] += col_coef * sum_i
/// pi'_ji dC(v_j, u_i)/dv_j with pi' the column-softmax (either pointer may be null).
struct PlanGrad {
    double row_coef;
    double* row_grad;
    double col_coef;
    double* col_grad;
};

inline void zero(double* v, int n) { std::fill(v, v + padded(n), 0.0); }

/// scale[i] = exp((M_i - c)/2) for i < n, zero in the padding. (The block exp, not libm's: a
/// libm call from AVX-512 code costs more than the exp itself.)
template <class B>
OCCAM_LANES_INLINE void half_scales(const double* M, int n, double c, double* scale) {
    using L = lanes::Ops<B>;
    const int full = n & ~7;
    for (int i = 0; i < n; i += 8) {
        B e = L::exp((L::load(M + i) - c) * 0.5);
        if (i == full) e = L::select(L::first(n - full), e, L::splat(0.0));
        L::store(scale + i, e);
    }
}

/// One parallel x-y update: ft = softmin(eps, Cxy, beta + g/eps), gt = softmin(eps, Cyx, alpha + f/eps).
/// With pg (the final step) it also adds the envelope gradient of <a, ft> + <b, gt>.
template <class B, int P>
OCCAM_LANES_INLINE void pair_update(double eps, const Problem& pr, const double* f, const double* g, double alpha,
                                    double beta, double* ft, double* gt, const Scratch& s, const PlanGrad* pg) {
    const int n = pr.rows, m = pr.cols;
    const auto Z = exponents<P>(pr, eps, f, g, s);
    if constexpr (P == 2)
        quadratic_maxima(Z, pr, s.M, s.N, s);
    else
        exponent_maxima<B, false>(Z, n, m, s.M, s.N);
    double lo = s.M[0], hi = s.M[0];
    for (int i = 0; i < n; ++i) lo = std::min(lo, s.M[i]), hi = std::max(hi, s.M[i]);
    for (int j = 0; j < m; ++j) lo = std::min(lo, s.N[j]), hi = std::max(hi, s.N[j]);
    zero(s.S, n);
    zero(s.acc, n);
    // (The column sums T and col_acc are written, not added to.)
    if (hi - lo <= kSpread) {
        // E_ij = exp(Z_ij - (M_i + N_j)/2); rows weigh it by u_j = exp((N_j - c)/2), columns by
        // v_i = exp((M_i - c)/2): S_i = sum_j E_ij u_j, T_j = sum_i E_ij v_i.
        const double c = 0.5 * (lo + hi);
        half_scales<B>(s.M, n, c, s.row_scale);
        half_scales<B>(s.N, m, c, s.col_scale);
        const auto E = Z.shifted(s.M, s.N, n, m, s.row_shift, s.col_shift);
        if (pg)
            one_exp_sums<B, true, false>(E, n, m, s.row_scale, s.col_scale, s.S, s.T, s.acc, s.col_acc);
        else
            one_exp_sums<B, false, false>(E, n, m, s.row_scale, s.col_scale, s.S, s.T, s.acc, s.col_acc);
        for (int i = 0; i < n; ++i) s.row_lse[i] = 0.5 * (s.M[i] + c) + std::log(s.S[i]);  // M_i + log(S_i / v_i)
        for (int j = 0; j < m; ++j) s.col_lse[j] = 0.5 * (s.N[j] + c) + std::log(s.T[j]);  // N_j + log(T_j / u_j)
    } else {
        if (pg)
            two_exp_sums<B, true>(Z, n, m, s.M, s.N, s.S, s.T, s.acc, s.col_acc);
        else
            two_exp_sums<B, false>(Z, n, m, s.M, s.N, s.S, s.T, s.acc, s.col_acc);
        for (int i = 0; i < n; ++i) s.row_lse[i] = s.M[i] + std::log(s.S[i]);
        for (int j = 0; j < m; ++j) s.col_lse[j] = s.N[j] + std::log(s.T[j]);
    }
    if (pg && pg->row_grad)
        for (int i = 0; i < n; ++i) pg->row_grad[i] += pg->row_coef * s.acc[i] / s.S[i];
    // dC(v_j, u_i)/dv_j = -dC(u_i, v_j)/du_i for both costs.
    if (pg && pg->col_grad)
        for (int j = 0; j < m; ++j) pg->col_grad[j] -= pg->col_coef * s.col_acc[j] / s.T[j];
    for (int i = 0; i < n; ++i) ft[i] = f[i] - eps * (beta + s.row_lse[i]);
    for (int j = 0; j < m; ++j) gt[j] = g[j] - eps * (alpha + s.col_lse[j]);
}

/// One update of a symmetric problem (pr.u == pr.v): pt = softmin(eps, Cxx, alpha + p/eps). With
/// pg (the final step) it also adds the envelope gradient of <a, pt> (row_coef carries the sign).
template <class B, int P>
OCCAM_LANES_INLINE void self_update(double eps, const Problem& pr, const double* p, double alpha, double* pt,
                                    const Scratch& s, const PlanGrad* pg) {
    const int n = pr.rows;
    const auto Z = exponents<P>(pr, eps, p, p, s);
    if constexpr (P == 2)
        quadratic_maxima(Z, pr, s.M, nullptr, s);
    else
        exponent_maxima<B, true>(Z, n, n, s.M, nullptr);
    double lo = s.M[0], hi = s.M[0];
    for (int i = 0; i < n; ++i) lo = std::min(lo, s.M[i]), hi = std::max(hi, s.M[i]);
    zero(s.S, n);
    zero(s.acc, n);
    if (hi - lo <= kSpread) {
        // Entry (i, k), i <= k, stands for itself and its mirror (k, i): it adds E_ik u_k to
        // row i and E_ik u_i to row k (the diagonal once).
        const double c = 0.5 * (lo + hi);
        half_scales<B>(s.M, n, c, s.row_scale);
        const auto E = Z.shifted(s.M, s.M, n, n, s.row_shift, s.col_shift);
        if (pg)
            one_exp_sums<B, true, true>(E, n, n, s.row_scale, s.row_scale, s.S, nullptr, s.acc, nullptr);
        else
            one_exp_sums<B, false, true>(E, n, n, s.row_scale, s.row_scale, s.S, nullptr, s.acc, nullptr);
        for (int i = 0; i < n; ++i) s.row_lse[i] = 0.5 * (s.M[i] + c) + std::log(s.S[i]);
    } else {
        // The direct pass needs each row's maximum over the whole symmetric Z: p = 2's envelope
        // maxima already are; p = 1's came from the upper triangle only.
        if constexpr (P != 2) exponent_maxima<B, false>(Z, n, n, s.M, nullptr);
        if (pg)
            two_exp_sums<B, true>(Z, n, n, s.M, nullptr, s.S, nullptr, s.acc, nullptr);
        else
            two_exp_sums<B, false>(Z, n, n, s.M, nullptr, s.S, nullptr, s.acc, nullptr);
        for (int i = 0; i < n; ++i) s.row_lse[i] = s.M[i] + std::log(s.S[i]);
    }
    if (pg && pg->row_grad)
        for (int i = 0; i < n; ++i) pg->row_grad[i] += pg->row_coef * s.acc[i] / s.S[i];
    for (int i = 0; i < n; ++i) pt[i] = p[i] - eps * (alpha + s.row_lse[i]);
}

/// Everything one solve works on: the problems, the potentials (f, p on x; g, q on y; the *t
/// arrays hold each update before averaging) and the scratch vectors.
struct SinkhornState {
    int n, m;
    bool debias;
    Problem xy, xx, yy;
    double *f, *pp, *ft, *pt, *g, *q, *gt, *qt;
    Scratch s;
    const std::vector<double>* eps_list;
    double* grad_x;
    double* grad_y;
};

/// geomloss's loop: an initial update at eps_0 = d^p, L averaged symmetric updates, and the
/// final extrapolation, which adds the envelope gradients. Leaves f*, g*, p*, q* in ft, gt, pt, qt.
template <class B, int P>
OCCAM_LANES_INLINE void run_schedule(SinkhornState& st) {
    const int n = st.n, m = st.m;
    const double alpha = std::log(1.0 / n), beta = std::log(1.0 / m);  // log-weights of a, b
    const double a = 1.0 / n, b = 1.0 / m;
    const std::vector<double>& eps_list = *st.eps_list;
    double *f = st.f, *pp = st.pp, *ft = st.ft, *pt = st.pt, *g = st.g, *q = st.q, *gt = st.gt, *qt = st.qt;

    // Init at eps_0 = d^p with the plain log-weights: the update formulas with zero potentials.
    const double eps0 = eps_list.front();
    pair_update<B, P>(eps0, st.xy, f, g, alpha, beta, ft, gt, st.s, nullptr);
    std::copy(ft, ft + n, f);
    std::copy(gt, gt + m, g);
    if (st.debias) {
        self_update<B, P>(eps0, st.xx, pp, alpha, pt, st.s, nullptr);
        self_update<B, P>(eps0, st.yy, q, beta, qt, st.s, nullptr);
        std::copy(pt, pt + n, pp);
        std::copy(qt, qt + m, q);
    }

    // L averaged, symmetric, parallel updates: every right-hand side uses the old potentials.
    // No convergence test: geomloss runs exactly this many, and its value depends on it.
    for (double eps : eps_list) {
        pair_update<B, P>(eps, st.xy, f, g, alpha, beta, ft, gt, st.s, nullptr);
        if (st.debias) {
            self_update<B, P>(eps, st.xx, pp, alpha, pt, st.s, nullptr);
            self_update<B, P>(eps, st.yy, q, beta, qt, st.s, nullptr);
        }
        for (int i = 0; i < n; ++i) f[i] = 0.5 * (f[i] + ft[i]);
        for (int j = 0; j < m; ++j) g[j] = 0.5 * (g[j] + gt[j]);
        if (st.debias) {
            for (int i = 0; i < n; ++i) pp[i] = 0.5 * (pp[i] + pt[i]);
            for (int j = 0; j < m; ++j) q[j] = 0.5 * (q[j] + qt[j]);
        }
    }

    // The last extrapolation: one plain (not averaged) update at eps = blur^p with frozen
    // inputs. Only this step is differentiated (the envelope theorem), and the gradient falls
    // out of its plans pi (the row- or column-softmax of Z):
    //   dS/dx_i = a [ sum_j pi^xy_ij dC(x_i,y_j) - sum_k pi^xx_ik dC(x_i,x_k) ]
    //   dS/dy_j = b [ sum_i pi^yx_ji dC(y_j,x_i) - sum_l pi^yy_jl dC(y_j,y_l) ]
    // (each soft-min grows with its costs, d softmin_i / d C_ij = pi_ij, so the +f*, +g* and
    // -p*, -q* terms of S give these signs; for p = 2, dS/dy_j = b (sum_l pi^yy y_l - sum_i pi^yx x_i).)
    const double eps = eps_list.back();
    double *grad_x = st.grad_x, *grad_y = st.grad_y;
    if (grad_x) std::fill(grad_x, grad_x + n, 0.0);
    if (grad_y) std::fill(grad_y, grad_y + m, 0.0);
    const PlanGrad pg{a, grad_x, b, grad_y};
    pair_update<B, P>(eps, st.xy, f, g, alpha, beta, ft, gt, st.s, grad_x || grad_y ? &pg : nullptr);
    if (st.debias) {
        const PlanGrad px{-a, grad_x, 0.0, nullptr}, py{-b, grad_y, 0.0, nullptr};
        self_update<B, P>(eps, st.xx, pp, alpha, pt, st.s, grad_x ? &px : nullptr);
        self_update<B, P>(eps, st.yy, q, beta, qt, st.s, grad_y ? &py : nullptr);
    }
}

}  // namespace occam::kernels::sinkhorn

OCCAM_KERNELS_END
