// What this file teaches: the cheap label-distribution losses next to Sinkhorn. Kernel MMDs
// (energy, Gaussian) as geomloss defines them, a spread penalty, and the exact W2 distance to a
// uniform law. The MMDs and penalties are composed from ad ops so that their second derivatives
// come for free; the energy distance is one node computed from sorted samples (its gradient is
// piecewise constant, so its second derivative is zero either way).
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "sinkhorn.hpp"

namespace occam::metaloss {
namespace detail {

/// Labels must be a non-empty n x 1 column of finite numbers.
inline void check_column(const char* fn, const char* what, const ad::Var& v) {
    if (v.cols() != 1 || v.rows() < 1)
        throw ad::ShapeError(std::string(fn) + ": " + what + " is " + ad::shape_str(v) +
                             "; expected a non-empty n x 1 column vector");
    if (!ad::all_finite(v)) throw std::domain_error(std::string(fn) + ": " + what + " contain NaN or inf");
}
/// Takes a Ref so a column or segment of a matrix is checked in place, with no copy.
inline void check_vector(const char* fn, const char* what, const Eigen::Ref<const Eigen::VectorXd>& v) {
    if (v.size() < 1) throw std::invalid_argument(std::string(fn) + ": " + what + " are empty");
    if (!v.allFinite()) throw std::domain_error(std::string(fn) + ": " + what + " contain NaN or inf");
}
inline void check_blur(const char* fn, double blur) {
    if (!(blur > 0.0) || !std::isfinite(blur))
        throw std::invalid_argument(std::string(fn) + ": blur must be finite and > 0 (got " + std::to_string(blur) +
                                    ")");
}

/// exp(-|u_i - v_j|^2 / (2 blur^2)) for every pair as an n x m Var.
inline ad::Var gaussian_kernel(const ad::Var& u, const ad::Var& v, double blur) {
    return ad::exp(ad::mul_scalar(ad::square(ad::sub(u, ad::transpose(v))), -0.5 / (blur * blur)));
}

/// Mean of k(u_i, v_j) over all pairs, on plain vectors.
template <class K>
double mean_kernel(const Eigen::VectorXd& u, const Eigen::VectorXd& v, K k) {
    double s = 0.0;
    for (Eigen::Index i = 0; i < u.size(); ++i)
        for (Eigen::Index j = 0; j < v.size(); ++j) s += k(u[i], v[j]);
    return s / (double(u.size()) * double(v.size()));
}

/// Midpoints of the uniform quantile function on [(i-1)/n, i/n]: lo + (hi - lo)(i - 1/2)/n.
inline Eigen::VectorXd uniform_quantile_midpoints(int n, double lo, double hi) {
    Eigen::VectorXd mid(n);
    for (int i = 0; i < n; ++i) mid[i] = lo + (hi - lo) * (i + 0.5) / n;
    return mid;
}
inline void check_interval(double lo, double hi) {
    if (!std::isfinite(lo) || !std::isfinite(hi) || !(lo < hi))
        throw std::invalid_argument("w2_to_uniform: need finite lo < hi (got lo " + std::to_string(lo) + ", hi " +
                                    std::to_string(hi) + ")");
}
/// The permutation that sorts v (stable, so ties keep their order).
template <class V>
std::vector<int> sort_order(const V& v) {
    std::vector<int> order(std::size_t(v.size()));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int i, int j) { return v[i] < v[j]; });
    return order;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Kernel MMDs, exactly geomloss's "energy" and "gaussian" losses: HALF the squared MMD,
//   L = 1/2 mean_ik k(x_i,x_k) + 1/2 mean_jl k(y_j,y_l) - mean_ij k(x_i,y_j).
// The gradient is the exact derivative of the value (geomloss's
//   dL/dx_i = a_i [ sum_k a_k d1k(x_i,x_k) - sum_j b_j d1k(x_i,y_j) ]): the Gaussian one is
// composed from ad ops (so it has a second order); the energy one is a single node whose
// gradient, a count of points on either side, is piecewise constant.
// ---------------------------------------------------------------------------------------------

namespace detail {

/// The clamp geomloss puts under every distance of its energy kernel: |u - v| >= 1e-4.
inline constexpr double kEnergyClamp = 1e-4;

/// Sum over all pairs of max(|a_i - b_j|, c), a and b sorted ascending, in O(n + m) after the
/// sort instead of O(n m). With k_i = #{b_j < a_i} and P the prefix sums of b,
///   sum_j |a_i - b_j| = a_i k_i - P[k_i] + (P[m] - P[k_i]) - a_i (m - k_i),
/// and the few pairs closer than c get (c - |a_i - b_j|) added. When `slope` is not null it
/// receives d/da_i of row i's sum: #{b_j <= a_i - c} - #{b_j >= a_i + c} (the clamped pairs
/// give nothing, as geomloss's sqrt(max(s, 1e-8)) does).
inline double sum_clamped_distances(const std::vector<double>& a, const std::vector<double>& b, double c,
                                    double* slope) {
    const std::size_t m = b.size();
    std::vector<double> prefix(m + 1, 0.0);
    for (std::size_t j = 0; j < m; ++j) prefix[j + 1] = prefix[j] + b[j];
    double total = 0.0;
    std::size_t below = 0, lo = 0, hi = 0;  // #{b < a_i}, #{b <= a_i - c}, #{b < a_i + c}: monotone in i
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double ai = a[i];
        while (below < m && b[below] < ai) ++below;
        while (lo < m && b[lo] <= ai - c) ++lo;
        while (hi < m && b[hi] < ai + c) ++hi;
        double row = ai * double(below) - prefix[below] + (prefix[m] - prefix[below]) - ai * double(m - below);
        for (std::size_t j = lo; j < hi; ++j) row += c - std::abs(ai - b[j]);
        total += row;
        if (slope) slope[i] = double(lo) - double(m - hi);
    }
    return total;
}

/// The values of v in ascending order, and the order (v[order[r]] is the r-th smallest).
inline std::pair<std::vector<double>, std::vector<int>> sorted_with_order(const double* v, int n) {
    std::vector<int> order = sort_order(Eigen::Map<const Eigen::VectorXd>(v, n));
    std::vector<double> sorted(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) sorted[std::size_t(r)] = v[order[std::size_t(r)]];
    return {std::move(sorted), std::move(order)};
}

/// The energy distance and, when grad_x / grad_y are not null, its gradients (in the inputs'
/// order). With S(a, b) = sum_ij max(|a_i - b_j|, c):
///   L = S(x, y)/(n m) - S(x, x)/(2 n^2) - S(y, y)/(2 m^2),
///   dL/dx_i = slope_xy_i/(n m) - slope_xx_i/n^2     (x_i sits on both sides of S(x, x)),
///   dL/dy_j = slope_yx_j/(n m) - slope_yy_j/m^2.
inline double energy_core(const double* x, int n, const double* y, int m, double* grad_x, double* grad_y) {
    const auto [xs, xo] = sorted_with_order(x, n);
    const auto [ys, yo] = sorted_with_order(y, m);
    const double c = kEnergyClamp, nm = double(n) * m, nn = double(n) * n, mm = double(m) * m;
    std::vector<double> s1(grad_x || grad_y ? std::size_t(std::max(n, m)) : 0), s2(s1.size());
    double* a = s1.empty() ? nullptr : s1.data();
    double* b = s2.empty() ? nullptr : s2.data();
    const double sxy = sum_clamped_distances(xs, ys, c, grad_x ? a : nullptr);
    const double sxx = sum_clamped_distances(xs, xs, c, grad_x ? b : nullptr);
    if (grad_x)
        for (int r = 0; r < n; ++r) grad_x[xo[std::size_t(r)]] = a[r] / nm - b[r] / nn;
    const double syy = sum_clamped_distances(ys, ys, c, grad_y ? b : nullptr);
    if (grad_y) {
        sum_clamped_distances(ys, xs, c, a);
        for (int r = 0; r < m; ++r) grad_y[yo[std::size_t(r)]] = a[r] / nm - b[r] / mm;
    }
    return sxy / nm - 0.5 * sxx / nn - 0.5 * syy / mm;
}

}  // namespace detail

/// geomloss "energy": mean|x-y| - 1/2 mean|x-x'| - 1/2 mean|y-y'|, every |.| clamped below at 1e-4.
/// (Half the textbook energy distance, minus the small bias of the clamped diagonal.)
/// One tape node computed from the sorted samples in O((n + m) log(n + m)) rather than three
/// dense pairwise matrices. Its gradient is piecewise constant (counts of points on either
/// side), so with create_graph the second derivative is zero, exactly as the dense formula's.
inline ad::Var energy_distance(const ad::Var& x, const ad::Var& y) {
    detail::check_column("energy_distance", "labels", x);
    detail::check_column("energy_distance", "target samples", y);
    // The gradient is piecewise constant (counts), so the kept gradient is exact to any order.
    return detail::loss_with_kept_gradient("energy_distance", x, y, ad::Derivatives::any_order, detail::energy_core);
}

/// Value-only energy_distance.
inline double energy_distance(const Eigen::VectorXd& x, const Eigen::VectorXd& y) {
    detail::check_vector("energy_distance", "labels", x);
    detail::check_vector("energy_distance", "target samples", y);
    return detail::energy_core(x.data(), int(x.size()), y.data(), int(y.size()), nullptr, nullptr);
}

/// geomloss "gaussian": half squared MMD with k(u,v) = exp(-|u-v|^2 / (2 blur^2)).
inline ad::Var gaussian_mmd(const ad::Var& x, const ad::Var& y, double blur = 0.05) {
    detail::check_blur("gaussian_mmd", blur);
    detail::check_column("gaussian_mmd", "labels", x);
    detail::check_column("gaussian_mmd", "target samples", y);
    return 0.5 * ad::mean(detail::gaussian_kernel(x, x, blur)) + 0.5 * ad::mean(detail::gaussian_kernel(y, y, blur)) -
           ad::mean(detail::gaussian_kernel(x, y, blur));
}

/// Value-only gaussian_mmd.
inline double gaussian_mmd(const Eigen::VectorXd& x, const Eigen::VectorXd& y, double blur = 0.05) {
    detail::check_blur("gaussian_mmd", blur);
    detail::check_vector("gaussian_mmd", "labels", x);
    detail::check_vector("gaussian_mmd", "target samples", y);
    const double c = -0.5 / (blur * blur);
    auto k = [c](double u, double v) { return std::exp(c * (u - v) * (u - v)); };
    return 0.5 * detail::mean_kernel(x, x, k) + 0.5 * detail::mean_kernel(y, y, k) - detail::mean_kernel(x, y, k);
}

// ---------------------------------------------------------------------------------------------
// Spread penalty
// ---------------------------------------------------------------------------------------------

/// (std(x) - 1)^2 with the unbiased std sqrt(sum (x - mean)^2 / (n - 1)), torch.std's default.
/// Needs n >= 2. At exactly collapsed labels std is not differentiable (the sqrt has an
/// infinite slope at 0); there the value is exactly 1 and the gradient is 0 instead of NaN.
inline ad::Var variance_penalty(const ad::Var& x) {
    detail::check_column("variance_penalty", "labels", x);
    const int n = x.rows();
    if (n < 2) throw std::invalid_argument("variance_penalty: the unbiased std needs at least 2 labels (got 1)");
    ad::Var c = ad::sub(x, ad::mean(x));
    ad::Var var = ad::mul_scalar(ad::sum(ad::square(c)), 1.0 / (n - 1));
    // The floor keeps sqrt's backward finite (1/(2 sqrt v) <= 5e99) and its second order
    // finite; below it the gradient goes to the constant, i.e. nowhere. Its effect on the
    // value, sqrt(1e-200) = 1e-100, vanishes when 1 is subtracted.
    ad::Var sd = ad::sqrt(ad::maximum(var, ad::constant(1e-200)));
    return ad::square(sd - 1.0);
}

/// Value-only variance_penalty, the same value as the Var version (with its floor). A Ref, so
/// a column of a population's label matrix is scored in place.
inline double variance_penalty(const Eigen::Ref<const Eigen::VectorXd>& x) {
    detail::check_vector("variance_penalty", "labels", x);
    if (x.size() < 2) throw std::invalid_argument("variance_penalty: the unbiased std needs at least 2 labels (got 1)");
    const double var = (x.array() - x.mean()).square().sum() / double(x.size() - 1);
    const double sd = std::sqrt(std::max(var, 1e-200));
    return (sd - 1.0) * (sd - 1.0);
}

// ---------------------------------------------------------------------------------------------
// Exact W2 to the uniform law
// ---------------------------------------------------------------------------------------------
// In 1-D the optimal coupling is monotone: sorted label x_(i) carries the quantile mass
// [(i-1)/n, i/n], where U[lo, hi] has quantile Q(t) = lo + w t, w = hi - lo. On that interval Q
// is uniform on a segment of length w/n with midpoint m_i = lo + w (i - 1/2)/n, so
//   int (x_(i) - Q(t))^2 dt = (1/n) [ (x_(i) - m_i)^2 + (w/n)^2 / 12 ]
// and  W2^2 = (1/n) sum_i (x_(i) - m_i)^2 + w^2 / (12 n^2).
// Gradient: d/dx_(i) = (2/n)(x_(i) - m_i), since the sort permutation is locally constant;
// the Hessian is diagonal 2/n. No blur, no temperature, no NaN regime; O(n log n) for the sort.
// At ties the permutation is ambiguous: the value is continuous there, the gradient is that
// of the stable order.

/// Exact squared 2-Wasserstein distance between the empirical law of the n labels and U[lo, hi].
inline ad::Var w2_to_uniform(const ad::Var& x, double lo = -1.0, double hi = 1.0) {
    detail::check_interval(lo, hi);
    detail::check_column("w2_to_uniform", "labels", x);
    const int n = x.rows();
    auto xv = x.value();
    std::vector<int> order = detail::sort_order(xv.col(0));
    // gather_rows's backward scatters the gradient back to the unsorted positions.
    ad::Var diff = ad::sub(ad::gather_rows(x, order), ad::constant(detail::uniform_quantile_midpoints(n, lo, hi)));
    const double w = hi - lo;
    return ad::add_scalar(ad::mul_scalar(ad::sum(ad::square(diff)), 1.0 / n), w * w / (12.0 * n * double(n)));
}

/// Value-only w2_to_uniform.
inline double w2_to_uniform(const Eigen::Ref<const Eigen::VectorXd>& x, double lo = -1.0, double hi = 1.0) {
    detail::check_interval(lo, hi);
    detail::check_vector("w2_to_uniform", "labels", x);
    const int n = int(x.size());
    Eigen::VectorXd sorted = x;  // the one copy: the sort must not reorder the caller's labels
    std::sort(sorted.data(), sorted.data() + n);
    const double w = hi - lo;
    return (sorted - detail::uniform_quantile_midpoints(n, lo, hi)).squaredNorm() / n + w * w / (12.0 * n * double(n));
}

}  // namespace occam::metaloss
