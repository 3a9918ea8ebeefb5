// What this file teaches: geomloss's debiased Sinkhorn divergence between two 1-D point clouds,
// copied step for step (epsilon-scaling, averaged symmetric updates, one final extrapolation),
// and how a fixed-length iterative solver gets a gradient: the envelope theorem, as one tape node.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "../autodiff/autodiff.hpp"

namespace occam::metaloss {

/// The knobs of geomloss's SamplesLoss("sinkhorn", p, blur, scaling, debias), reach = None.
struct SinkhornOptions {
    int p = 2;             ///< ground cost: 2 gives |u-v|^2 / 2, 1 gives max(|u-v|, 1e-4)
    double blur = 0.05;    ///< final temperature is blur^p
    double scaling = 0.5;  ///< ratio between successive blur values in the annealing schedule
    bool debias = true;    ///< S = OT(a,b) - OT(a,a)/2 - OT(b,b)/2 rather than OT(a,b)
};

/// Everything one solve produces: the value, the potentials and the envelope gradients.
struct SinkhornResult {
    double value = 0.0;
    Eigen::VectorXd f, g;            ///< final potentials f* (on x) and g* (on y) of the x-y problem
    Eigen::VectorXd p, q;            ///< final potentials of the x-x and y-y problems (empty without debias)
    Eigen::VectorXd F, G;            ///< geomloss's potentials=True output: f* - p*, g* - q* (f*, g* without debias)
    Eigen::VectorXd grad_x, grad_y;  ///< dS/dx and dS/dy by the envelope formula
    std::vector<double> eps_list;    ///< the temperatures used, in order
};

/// Throws std::invalid_argument naming the offending field.
inline void validate(const SinkhornOptions& o) {
    if (o.p != 1 && o.p != 2)
        throw std::invalid_argument("SinkhornOptions.p must be 1 or 2 (got " + std::to_string(o.p) + ")");
    if (!(o.blur > 0.0) || !std::isfinite(o.blur))
        throw std::invalid_argument("SinkhornOptions.blur must be finite and > 0 (got " + std::to_string(o.blur) + ")");
    if (!(o.scaling > 0.0 && o.scaling < 1.0))
        throw std::invalid_argument("SinkhornOptions.scaling must lie in (0, 1) (got " + std::to_string(o.scaling) +
                                    ")");
}

namespace detail {
/// a * b rounded to a double before anything is added to it. numpy rounds every product; a
/// compiler allowed to contract a * b + c into one fused multiply-add (GCC does by default on
/// FMA hardware) would move ceil() past a borderline case or exp() by an ulp.
inline double rounded_product(double a, double b) {
    volatile double product = a * b;
    return product;
}
}  // namespace detail

/// geomloss's epsilon_schedule: [d^p] ++ exp(numpy.arange(p ln d, p ln blur, p ln scaling)) ++ [blur^p].
/// The first arange value is d^p again (the duplicate is part of the recipe). Everything is
/// computed in double exactly as numpy does, so ceil() decides the borderline cases the same way.
inline std::vector<double> epsilon_schedule(int p, double diameter, double blur, double scaling) {
    if (!(diameter > 0.0) || !std::isfinite(diameter))
        throw std::invalid_argument("epsilon_schedule: the diameter of the point clouds is " +
                                    std::to_string(diameter) +
                                    "; it must be finite and > 0 (are all points identical?)");
    const double start = detail::rounded_product(p, std::log(diameter)), stop = detail::rounded_product(p, std::log(blur)),
                 step = detail::rounded_product(p, std::log(scaling));
    std::vector<double> eps{std::pow(diameter, p)};
    // numpy: length = ceil((stop - start) / step); values start, start + step, then
    // start + k * delta with delta = (start + step) - start (its DOUBLE_fill).
    const double len = std::ceil((stop - start) / step);
    if (len > 0) {
        const long n = long(len);
        const double second = start + step, delta = second - start;
        eps.push_back(std::exp(start));
        if (n > 1) eps.push_back(std::exp(second));
        for (long k = 2; k < n; ++k) eps.push_back(std::exp(start + detail::rounded_product(double(k), delta)));
    }
    eps.push_back(std::pow(blur, p));
    return eps;
}

namespace detail {

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
constexpr double kSpread = 400.0;
/// Exponents are floored here before exp: e^-300 is negligible beside the row's largest term
/// (at least e^-100 after the u, v scales), and it keeps exp and the products away from
/// subnormal numbers, which are very slow.
constexpr double kFloor = -300.0;

/// a[i] = exp(a[i]) for arguments in [kFloor, 1] (callers floor them as they write them). This
/// is where the time goes, and Eigen's double exp is slow without AVX (about 2x slower than
/// this on SSE2), so with GCC or Clang it runs four lanes at a time through their portable
/// vector extensions: exp(x) = 2^k e^r, k = round(x / ln 2), |r| <= ln(2)/2, e^r by its Taylor
/// polynomial of degree 12 (relative error below 5e-16 on [kFloor, 0]), 2^k written straight
/// into the exponent bits. Other compilers, and -ffast-math (which may fold away the rounding
/// trick), use Eigen's exp.
inline void exp_inplace(double* a, std::size_t n) {
    std::size_t i = 0;
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__FAST_MATH__)
    typedef double V __attribute__((vector_size(32)));
    typedef long long I __attribute__((vector_size(32)));
    // Adding 1.5 * 2^52 + 1023 rounds to an integer and leaves k + 1023 in the low mantissa
    // bits, so shifting those bits into the exponent field gives the double 2^k directly.
    constexpr double shifter = 6755399441055744.0 + 1023.0;
    for (; i + 4 <= n; i += 4) {
        V x;
        std::memcpy(&x, a + i, sizeof x);
        const V t = x * 1.4426950408889634 + shifter;
        const V k = t - shifter;                                                            // round(x / ln 2)
        const V r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;  // ln 2 = hi + lo
        // Estrin's scheme: the same polynomial as Horner's rule, but in four short levels
        // instead of one chain of twelve, so consecutive lanes overlap (twice as fast here).
        const V r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
        const V p01 = 1.0 + r, p23 = 1.0 / 2 + r * (1.0 / 6), p45 = 1.0 / 24 + r * (1.0 / 120);
        const V p67 = 1.0 / 720 + r * (1.0 / 5040), p89 = 1.0 / 40320 + r * (1.0 / 362880);
        const V p1011 = 1.0 / 3628800 + r * (1.0 / 39916800);
        const V q0 = p01 + r2 * p23, q1 = p45 + r2 * p67, q2 = p89 + r2 * p1011;
        const V s0 = q0 + r4 * q1, s1 = q2 + r4 * (1.0 / 479001600);
        const V e = (s0 + r8 * s1) * (V)((I)t << 52);
        std::memcpy(a + i, &e, sizeof e);
    }
    for (; i < n; ++i) a[i] = std::exp(a[i]);
#else
    Eigen::Map<Eigen::ArrayXd> v(a, Eigen::Index(n));
    v = v.exp();
#endif
}

/// geomloss's ground cost, built from the *expanded* squared distance s = u u - 2 u v + v v.
inline double ground_cost(double u, double v, int p) {
    const double s = u * u - 2.0 * u * v + v * v;
    return p == 2 ? 0.5 * s : std::sqrt(std::max(s, 1e-8));
}

/// out_i = dC(u_i, v)/du_i as autograd gives it, for one column (c holds C(u_i, v)): u_i - v for
/// p = 2; (u_i - v)/C for p = 1, and 0 where the 1e-8 clamp is active (a point against itself).
inline void cost_du_column(const double* u, int rows, double v, const double* c, int p, double* out) {
    for (int i = 0; i < rows; ++i) {
        if (p == 2) {
            out[i] = u[i] - v;
        } else {
            const double s = u[i] * u[i] - 2.0 * u[i] * v + v * v;
            out[i] = s >= 1e-8 ? (u[i] - v) / c[i] : 0.0;
        }
    }
}

/// Storage aligned as Eigen aligns its own matrices (32 bytes for AVX, 64 for AVX-512). Eigen's
/// vectorised sums start with scalar steps up to the first aligned address, so a buffer whose
/// alignment changed from call to call (malloc promises only 16) would change the summation
/// order and the last bits of the result: one run in a fresh thread and one after another run
/// would differ.
using AlignedVector = std::vector<double, Eigen::aligned_allocator<double>>;

/// C_ij = C(u_i, v_j), column-major (column j contiguous).
inline void fill_cost(const double* u, int nu, const double* v, int nv, int p, AlignedVector& c) {
    c.resize(std::size_t(nu) * nv);
    double* out = c.data();
    for (int j = 0; j < nv; ++j)
        for (int i = 0; i < nu; ++i) *out++ = ground_cost(u[i], v[j], p);
}

/// Per-thread storage reused across calls, so a meta-step allocates nothing once warm.
struct SinkhornWorkspace {
    AlignedVector cxy, cxx, cyy;  ///< cost matrices, built once per call
    AlignedVector z;              ///< the exponents Z, overwritten by E = exp(...)
    AlignedVector vec;            ///< potentials and scratch vectors
};
inline SinkhornWorkspace& sinkhorn_workspace() {
    thread_local SinkhornWorkspace w;
    return w;
}

/// Scratch vectors of length max(n, m) for one update.
struct Scratch {
    double *M, *N, *u, *v, *S, *w, *d, *acc, *row_lse, *col_lse;
};

using ArrayMap = Eigen::Map<Eigen::ArrayXd>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXd>;

/// Where a differentiated step adds its envelope gradient: row_grad[i] += row_coef * sum_j
/// pi_ij dC(u_i, v_j)/du_i with pi the row-softmax of Z, and col_grad[j] += col_coef * sum_i
/// pi'_ji dC(v_j, u_i)/dv_j with pi' the column-softmax (either pointer may be null).
struct PlanGrad {
    const double* u;
    const double* v;
    int p;
    double row_coef;
    double* row_grad;
    double col_coef;
    double* col_grad;
};

/// Z_ij = (f_i + g_j - C_ij)/eps (rows x cols, column-major), its row maxima M, column maxima N.
inline void pair_exponents(double eps, const double* C, int rows, int cols, const double* f, const double* g, double* Z,
                           double* M, double* N) {
    const double inv = 1.0 / eps;  // multiply by 1/eps rather than divide every entry
    ConstArrayMap fv(f, rows);
    ArrayMap Mv(M, rows);
    for (int j = 0; j < cols; ++j) {
        ArrayMap z(Z + std::size_t(j) * rows, rows);
        z = (fv + g[j] - ConstArrayMap(C + std::size_t(j) * rows, rows)) * inv;
        N[j] = z.maxCoeff();
        if (j == 0)
            Mv = z;
        else
            Mv = Mv.max(z);
    }
}

/// The upper triangle (with the diagonal) of the symmetric Z_ik = (p_i + p_k - C_ik)/eps, and
/// its row maxima M (entry (i, k), i <= k, counts for row i and for row k).
inline void self_exponents_upper(double eps, const double* C, int n, const double* p, double* Z, double* M) {
    const double inv = 1.0 / eps;
    ArrayMap Mv(M, n);
    Mv.setConstant(-std::numeric_limits<double>::infinity());
    for (int k = 0; k < n; ++k) {
        ArrayMap z(Z + std::size_t(k) * n, k + 1);
        z = (ConstArrayMap(p, k + 1) + p[k] - ConstArrayMap(C + std::size_t(k) * n, k + 1)) * inv;
        Mv.head(k + 1) = Mv.head(k + 1).max(z);
        M[k] = std::max(M[k], z.maxCoeff());
    }
}

/// Row (and, if col_lse is not null, column) log-sum-exps of Z, each shifted by its own max:
/// two exps per entry, the direct way (the fallback). With pg, also the plan-weighted
/// cost derivatives.
inline void lse_direct(const double* Z, const double* C, int rows, int cols, const double* M, const double* N,
                       double* row_lse, double* col_lse, const PlanGrad* pg, const Scratch& s) {
    ConstArrayMap Mv(M, rows);
    ArrayMap w(s.w, rows), d(s.d, rows), sum(s.S, rows), acc(s.acc, rows);
    sum.setZero();
    acc.setZero();
    for (int j = 0; j < cols; ++j) {
        ConstArrayMap z(Z + std::size_t(j) * rows, rows);
        w = (z - Mv).max(kFloor);
        exp_inplace(s.w, std::size_t(rows));  // exp(Z_ij - M_i): row i's unnormalised plan
        sum += w;
        if (pg) {
            cost_du_column(pg->u, rows, pg->v[j], C + std::size_t(j) * rows, pg->p, s.d);
            if (pg->row_grad) acc += w * d;
        }
        if (col_lse) {
            w = (z - N[j]).max(kFloor);
            exp_inplace(s.w, std::size_t(rows));  // exp(Z_ij - N_j): column j's unnormalised plan
            const double t = w.sum();
            col_lse[j] = N[j] + std::log(t);
            // dC(v_j, u_i)/dv_j = -dC(u_i, v_j)/du_i for both costs.
            if (pg && pg->col_grad) pg->col_grad[j] -= pg->col_coef * (w * d).sum() / t;
        }
    }
    for (int i = 0; i < rows; ++i) {
        row_lse[i] = M[i] + std::log(s.S[i]);
        if (pg && pg->row_grad) pg->row_grad[i] += pg->row_coef * s.acc[i] / s.S[i];
    }
}

/// One parallel x-y update: ft = softmin(eps, Cxy, beta + g/eps), gt = softmin(eps, Cyx, alpha + f/eps).
/// With pg (the final step) it also adds the envelope gradient of <a, ft> + <b, gt>.
inline void pair_update(double eps, const double* C, int n, int m, const double* f, const double* g, double alpha,
                        double beta, double* ft, double* gt, double* Z, const Scratch& s, const PlanGrad* pg) {
    pair_exponents(eps, C, n, m, f, g, Z, s.M, s.N);
    ArrayMap M(s.M, n), N(s.N, m), rl(s.row_lse, n), cl(s.col_lse, m);
    const double lo = std::min(M.minCoeff(), N.minCoeff()), hi = std::max(M.maxCoeff(), N.maxCoeff());
    if (hi - lo <= kSpread) {
        const double c = 0.5 * (lo + hi);
        ArrayMap u(s.u, m), v(s.v, n), half_m(s.w, n), S(s.S, n), acc(s.acc, n), d(s.d, n);
        u = ((N - c) * 0.5).exp();
        v = ((M - c) * 0.5).exp();
        half_m = 0.5 * M;
        S.setZero();
        acc.setZero();
        // Column by column, while it is in cache: E_ij = exp(Z_ij - (M_i + N_j)/2) in place,
        // then S += E u (row sums) and T_j = (E^T v)_j (column sums); cl holds T until the end.
        for (int j = 0; j < m; ++j) {
            ArrayMap e(Z + std::size_t(j) * n, n);
            e = (e - half_m - 0.5 * N[j]).max(kFloor);
            exp_inplace(e.data(), std::size_t(n));
            S += u[j] * e;
            cl[j] = (e * v).sum();
            if (pg) {
                // Plan-weighted cost derivatives: rows weigh E_ij u_j, columns E_ij v_i.
                cost_du_column(pg->u, n, pg->v[j], C + std::size_t(j) * n, pg->p, s.d);
                if (pg->row_grad) acc += u[j] * (e * d);
                if (pg->col_grad) pg->col_grad[j] -= pg->col_coef * (e * d * v).sum() / cl[j];
            }
        }
        if (pg && pg->row_grad)
            for (int i = 0; i < n; ++i) pg->row_grad[i] += pg->row_coef * acc[i] / S[i];
        rl = 0.5 * (M + c) + S.log();   // LSE_j Z_ij = M_i + log(S_i / v_i)
        cl = 0.5 * (N + c) + cl.log();  // LSE_i Z_ij = N_j + log(T_j / u_j)
    } else {
        lse_direct(Z, C, n, m, s.M, s.N, s.row_lse, s.col_lse, pg, s);
    }
    ArrayMap(ft, n) = ConstArrayMap(f, n) - eps * (beta + rl);
    ArrayMap(gt, m) = ConstArrayMap(g, m) - eps * (alpha + cl);
}

/// One update of a symmetric problem: pt = softmin(eps, Cxx, alpha + p/eps). With pg (the
/// final step) it also adds the envelope gradient of <a, pt> (row_coef carries the sign).
inline void self_update(double eps, const double* C, int n, const double* p, double alpha, double* pt, double* Z,
                        const Scratch& s, const PlanGrad* pg) {
    self_exponents_upper(eps, C, n, p, Z, s.M);
    ArrayMap M(s.M, n), rl(s.row_lse, n);
    const double lo = M.minCoeff(), hi = M.maxCoeff();
    if (hi - lo <= kSpread) {
        const double c = 0.5 * (lo + hi);
        ArrayMap u(s.u, n), half_m(s.w, n), S(s.S, n), acc(s.acc, n), d(s.d, n);
        u = ((M - c) * 0.5).exp();
        half_m = 0.5 * M;
        S.setZero();
        acc.setZero();
        // Entry (i, k), i <= k, stands for itself and its mirror (k, i): it adds E_ik u_k to
        // row i and E_ik u_i to row k (the diagonal once).
        for (int k = 0; k < n; ++k) {
            ArrayMap e(Z + std::size_t(k) * n, k + 1);
            e = (e - half_m.head(k + 1) - half_m[k]).max(kFloor);
            exp_inplace(e.data(), std::size_t(k) + 1);
            S.head(k + 1) += u[k] * e;
            S[k] += (e.head(k) * u.head(k)).sum();
            if (pg) {
                // dC(x_k, x_i) = -dC(x_i, x_k), and 0 on the diagonal.
                cost_du_column(pg->u, k + 1, pg->u[k], C + std::size_t(k) * n, pg->p, s.d);
                acc.head(k + 1) += u[k] * (e * d.head(k + 1));
                acc[k] -= (e.head(k) * d.head(k) * u.head(k)).sum();
            }
        }
        if (pg && pg->row_grad)
            for (int i = 0; i < n; ++i) pg->row_grad[i] += pg->row_coef * acc[i] / S[i];
        rl = 0.5 * (M + c) + S.log();
    } else {
        pair_exponents(eps, C, n, n, p, p, Z, s.M, s.N);  // the full symmetric Z
        lse_direct(Z, C, n, n, s.M, nullptr, s.row_lse, nullptr, pg, s);
    }
    ArrayMap(pt, n) = ConstArrayMap(p, n) - eps * (alpha + rl);
}

inline void check_finite(const double* v, int n, const char* what) {
    for (int i = 0; i < n; ++i)
        if (!std::isfinite(v[i])) throw std::domain_error(std::string("sinkhorn_divergence: ") + what);
}

/// The whole geomloss recipe on raw arrays. Writes dS/dx and dS/dy into grad_x, grad_y when
/// they are not null, and everything else into `full` when it is not null. Returns S.
inline double sinkhorn_core(const double* x, int n, const double* y, int m, const SinkhornOptions& o, double* grad_x,
                            double* grad_y, SinkhornResult* full) {
    validate(o);
    if (n < 1 || m < 1)
        throw std::invalid_argument("sinkhorn_divergence: need at least one point on each side (got " +
                                    std::to_string(n) + " labels and " + std::to_string(m) + " targets)");
    check_finite(x, n, "labels contain NaN or inf");
    check_finite(y, m, "target samples contain NaN or inf");

    // Diameter of x and y together (a constant: no gradient flows through the schedule).
    double lo = x[0], hi = x[0];
    for (int i = 0; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
    for (int j = 0; j < m; ++j) lo = std::min(lo, y[j]), hi = std::max(hi, y[j]);
    const double diameter = hi - lo;
    if (diameter == 0.0)
        throw std::invalid_argument(
            "sinkhorn_divergence: all points are identical (diameter 0), so the epsilon schedule is "
            "undefined (geomloss raises here too)");
    const int p = o.p;
    const bool debias = o.debias;
    std::vector<double> eps_list = epsilon_schedule(p, diameter, o.blur, o.scaling);

    // Cost matrices, once per call. One C(x_i, y_j) serves both directions (geomloss builds
    // C(y_j, x_i) separately; the expanded forms differ only by rounding).
    SinkhornWorkspace& w = sinkhorn_workspace();
    fill_cost(x, n, y, m, p, w.cxy);
    if (debias) {
        fill_cost(x, n, x, n, p, w.cxx);
        fill_cost(y, m, y, m, p, w.cyy);
    }
    const double* cxy = w.cxy.data();
    const double* cxx = w.cxx.data();
    const double* cyy = w.cyy.data();
    const int big = std::max(n, m);
    w.z.resize(std::size_t(big) * big);
    double* Z = w.z.data();

    // Potentials: f, p on x; g, q on y; the *t arrays hold each update before averaging.
    w.vec.resize(std::size_t(4) * (n + m) + std::size_t(10) * big);
    double* at = w.vec.data();
    auto take = [&at](int len) {
        double* r = at;
        at += len;
        return r;
    };
    double *f = take(n), *pp = take(n), *ft = take(n), *pt = take(n);
    double *g = take(m), *q = take(m), *gt = take(m), *qt = take(m);
    Scratch s{take(big), take(big), take(big), take(big), take(big),
              take(big), take(big), take(big), take(big), take(big)};

    const double alpha = std::log(1.0 / n), beta = std::log(1.0 / m);  // log-weights of a, b
    const double a = 1.0 / n, b = 1.0 / m;

    // Init at eps_0 = d^p with the plain log-weights: the update formulas with zero potentials.
    const double eps0 = eps_list.front();
    std::fill(f, f + n, 0.0);
    std::fill(g, g + m, 0.0);
    std::fill(pp, pp + n, 0.0);
    std::fill(q, q + m, 0.0);
    pair_update(eps0, cxy, n, m, f, g, alpha, beta, ft, gt, Z, s, nullptr);
    std::copy(ft, ft + n, f);
    std::copy(gt, gt + m, g);
    if (debias) {
        self_update(eps0, cxx, n, pp, alpha, pt, Z, s, nullptr);
        self_update(eps0, cyy, m, q, beta, qt, Z, s, nullptr);
        std::copy(pt, pt + n, pp);
        std::copy(qt, qt + m, q);
    }

    // L averaged, symmetric, parallel updates: every right-hand side uses the old potentials.
    // No convergence test: geomloss runs exactly this many, and its value depends on it.
    for (double eps : eps_list) {
        pair_update(eps, cxy, n, m, f, g, alpha, beta, ft, gt, Z, s, nullptr);
        if (debias) {
            self_update(eps, cxx, n, pp, alpha, pt, Z, s, nullptr);
            self_update(eps, cyy, m, q, beta, qt, Z, s, nullptr);
        }
        for (int i = 0; i < n; ++i) f[i] = 0.5 * (f[i] + ft[i]);
        for (int j = 0; j < m; ++j) g[j] = 0.5 * (g[j] + gt[j]);
        if (debias) {
            for (int i = 0; i < n; ++i) pp[i] = 0.5 * (pp[i] + pt[i]);
            for (int j = 0; j < m; ++j) q[j] = 0.5 * (q[j] + qt[j]);
        }
    }

    // The last extrapolation: one plain (not averaged) update at eps = blur^p with frozen
    // inputs. Only this step is differentiated (§4), and the gradient falls out of its plans
    // pi (the row- or column-softmax of Z):
    //   dS/dx_i = a [ sum_j pi^xy_ij dC(x_i,y_j) - sum_k pi^xx_ik dC(x_i,x_k) ]
    //   dS/dy_j = b [ sum_i pi^yx_ji dC(y_j,x_i) - sum_l pi^yy_jl dC(y_j,y_l) ]
    // (each soft-min grows with its costs, d softmin_i / d C_ij = pi_ij, so the +f*, +g* and
    // -p*, -q* terms of S give these signs; for p = 2, dS/dy_j = b (sum_l pi^yy y_l - sum_i pi^yx x_i).)
    const double eps = eps_list.back();
    if (grad_x) std::fill(grad_x, grad_x + n, 0.0);
    if (grad_y) std::fill(grad_y, grad_y + m, 0.0);
    const PlanGrad pg{x, y, p, a, grad_x, b, grad_y};
    pair_update(eps, cxy, n, m, f, g, alpha, beta, ft, gt, Z, s, grad_x || grad_y ? &pg : nullptr);
    if (debias) {
        const PlanGrad px{x, x, p, -a, grad_x, 0.0, nullptr}, py{y, y, p, -b, grad_y, 0.0, nullptr};
        self_update(eps, cxx, n, pp, alpha, pt, Z, s, grad_x ? &px : nullptr);
        self_update(eps, cyy, m, q, beta, qt, Z, s, grad_y ? &py : nullptr);
    }

    // S = <a, f* - p*> + <b, g* - q*>  (= OT(a,b) - OT(a,a)/2 - OT(b,b)/2); <a, f*> + <b, g*> unbiased.
    double sx = 0.0, sy = 0.0;
    for (int i = 0; i < n; ++i) sx += a * (debias ? ft[i] - pt[i] : ft[i]);
    for (int j = 0; j < m; ++j) sy += b * (debias ? gt[j] - qt[j] : gt[j]);
    const double value = sx + sy;

    if (full) {
        full->value = value;
        full->f = Eigen::Map<const Eigen::VectorXd>(ft, n);
        full->g = Eigen::Map<const Eigen::VectorXd>(gt, m);
        if (debias) {
            full->p = Eigen::Map<const Eigen::VectorXd>(pt, n);
            full->q = Eigen::Map<const Eigen::VectorXd>(qt, m);
            full->F = full->f - full->p;
            full->G = full->g - full->q;
        } else {
            full->p.resize(0);
            full->q.resize(0);
            full->F = full->f;
            full->G = full->g;
        }
        full->eps_list = std::move(eps_list);
    }
    return value;
}

}  // namespace detail

/// The full solve: value, potentials, envelope gradients and the schedule used.
inline SinkhornResult sinkhorn(const Eigen::VectorXd& x, const Eigen::VectorXd& y, SinkhornOptions opts = {}) {
    SinkhornResult r;
    r.grad_x.resize(x.size());
    r.grad_y.resize(y.size());
    detail::sinkhorn_core(x.data(), int(x.size()), y.data(), int(y.size()), opts, r.grad_x.data(), r.grad_y.data(), &r);
    return r;
}

/// geomloss's SamplesLoss("sinkhorn") between 1-D clouds x and y with uniform weights (value only).
inline double sinkhorn_divergence(const Eigen::VectorXd& x, const Eigen::VectorXd& y, SinkhornOptions opts = {}) {
    return detail::sinkhorn_core(x.data(), int(x.size()), y.data(), int(y.size()), opts, nullptr, nullptr, nullptr);
}

namespace detail {

/// A loss of two sample columns as ONE 1x1 tape node whose gradients are computed by `core`
/// together with the value: core(x, n, y, m, grad_x, grad_y) returns the value and writes the
/// gradients when the pointers are not null. The backward formula is g times those frozen
/// gradients, a constant, so with create_graph the loss's second derivative is zero.
template <class Core>
ad::Var frozen_gradient_node(const char* op, const ad::Var& x, const ad::Var& y, Core core) {
    const int n = x.rows(), m = y.rows();
    const bool want_grad = ad::grad_enabled() && (x.requires_grad() || y.requires_grad());
    // The gradients live in the arena next to the node, so they are released with its scope.
    double* grads = want_grad ? ad::tape().arena.allocate_array<double>(std::size_t(n) + m) : nullptr;
    const double value = core(x.value().data(), n, y.value().data(), m, grads, grads ? grads + n : nullptr);
    ad::Node* node = ad::tape().push(
        op, 1, 1,
        [](const ad::Node& self, const ad::Var& g, ad::Var* out) {
            const double* gr = static_cast<const double*>(self.ptr);
            const int rows_x = self.iarg[0], rows_y = self.iarg[1];
            if (self.inputs[0]->requires_grad)
                out[0] = ad::mul(g, ad::constant(Eigen::Map<const Eigen::MatrixXd>(gr, rows_x, 1)));
            if (self.inputs[1]->requires_grad)
                out[1] = ad::mul(g, ad::constant(Eigen::Map<const Eigen::MatrixXd>(gr + rows_x, rows_y, 1)));
        },
        {x.node(), y.node()});
    node->data[0] = value;
    node->ptr = grads;
    node->iarg[0] = n;
    node->iarg[1] = m;
    return ad::Var(node);
}

}  // namespace detail

/// The same as a differentiable 1x1 Var; x is n x 1 (labels), y is m x 1 (target samples).
/// One tape node: the loop is not taped (it is a fixed solver, as in geomloss), and the
/// backward formula is the envelope (Danskin) gradient computed during the forward pass, a
/// constant: with create_graph the second derivative comes out as zero, and geomloss itself
/// warns that second derivatives of this scheme are not meaningful (the solver is unconverged
/// and its loop is not differentiated).
inline ad::Var sinkhorn_divergence(const ad::Var& x, const ad::Var& y, SinkhornOptions opts = {}) {
    if (x.cols() != 1 || y.cols() != 1 || x.rows() < 1 || y.rows() < 1)
        throw ad::ShapeError("sinkhorn_divergence: x is " + ad::shape_str(x) + " and y is " + ad::shape_str(y) +
                             "; expected non-empty column vectors (n x 1 and m x 1)");
    return detail::frozen_gradient_node(
        "sinkhorn_divergence", x, y, [&opts](const double* xv, int n, const double* yv, int m, double* gx, double* gy) {
            return detail::sinkhorn_core(xv, n, yv, m, opts, gx, gy, nullptr);
        });
}

}  // namespace occam::metaloss
