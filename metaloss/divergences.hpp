// What this file teaches: the cheap label-distribution losses next to Sinkhorn. Kernel MMDs
// (energy, Gaussian) as geomloss defines them, a spread penalty, and the exact W2 distance to a
// uniform law, all composed from ad ops so that their second derivatives come for free.
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
    if (!v.value().allFinite()) throw std::domain_error(std::string(fn) + ": " + what + " contain NaN or inf");
}
inline void check_vector(const char* fn, const char* what, const Eigen::VectorXd& v) {
    if (v.size() < 1) throw std::invalid_argument(std::string(fn) + ": " + what + " are empty");
    if (!v.allFinite()) throw std::domain_error(std::string(fn) + ": " + what + " contain NaN or inf");
}
inline void check_blur(const char* fn, double blur) {
    if (!(blur > 0.0) || !std::isfinite(blur))
        throw std::invalid_argument(std::string(fn) + ": blur must be finite and > 0 (got " + std::to_string(blur) +
                                    ")");
}

/// |u_i - v_j| for every pair as an n x m Var, clamped below at 1e-4 as geomloss does
/// (sqrt(max(s, 1e-8))). We use s = (u - v)^2 rather than geomloss's expanded u u - 2 u v + v v:
/// the same number up to rounding, and exactly 0 on the diagonal in both forms.
/// Gradient: sign(u - v) off the clamp, 0 on it (the where inside maximum sends it nowhere).
inline ad::Var clamped_distances(const ad::Var& u, const ad::Var& v) {
    ad::Var s = ad::square(ad::sub(u, ad::transpose(v)));
    return ad::sqrt(ad::maximum(s, ad::constant(1e-8)));
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
inline double clamped_distance(double u, double v) { return std::sqrt(std::max((u - v) * (u - v), 1e-8)); }

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
// Composed from ad ops, so the gradient is the exact derivative of the value (geomloss's
//   dL/dx_i = a_i [ sum_k a_k d1k(x_i,x_k) - sum_j b_j d1k(x_i,y_j) ]) and has a second order.
// ---------------------------------------------------------------------------------------------

/// geomloss "energy": mean|x-y| - 1/2 mean|x-x'| - 1/2 mean|y-y'|, every |.| clamped below at 1e-4.
/// (Half the textbook energy distance, minus the small bias of the clamped diagonal.)
inline ad::Var energy_distance(const ad::Var& x, const ad::Var& y) {
    detail::check_column("energy_distance", "labels", x);
    detail::check_column("energy_distance", "target samples", y);
    // k(u,v) = -|u-v| so the three kernel means enter with flipped signs.
    return ad::mean(detail::clamped_distances(x, y)) - 0.5 * ad::mean(detail::clamped_distances(x, x)) -
           0.5 * ad::mean(detail::clamped_distances(y, y));
}

/// Value-only energy_distance.
inline double energy_distance(const Eigen::VectorXd& x, const Eigen::VectorXd& y) {
    detail::check_vector("energy_distance", "labels", x);
    detail::check_vector("energy_distance", "target samples", y);
    auto d = [](double u, double v) { return detail::clamped_distance(u, v); };
    return detail::mean_kernel(x, y, d) - 0.5 * detail::mean_kernel(x, x, d) - 0.5 * detail::mean_kernel(y, y, d);
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

/// Value-only variance_penalty.
inline double variance_penalty(const Eigen::VectorXd& x) {
    detail::check_vector("variance_penalty", "labels", x);
    if (x.size() < 2) throw std::invalid_argument("variance_penalty: the unbiased std needs at least 2 labels (got 1)");
    const double sd = std::sqrt((x.array() - x.mean()).square().sum() / double(x.size() - 1));
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
inline double w2_to_uniform(const Eigen::VectorXd& x, double lo = -1.0, double hi = 1.0) {
    detail::check_interval(lo, hi);
    detail::check_vector("w2_to_uniform", "labels", x);
    const int n = int(x.size());
    Eigen::VectorXd sorted = x;
    std::sort(sorted.data(), sorted.data() + n);
    const double w = hi - lo;
    return (sorted - detail::uniform_quantile_midpoints(n, lo, hi)).squaredNorm() / n + w * w / (12.0 * n * double(n));
}

}  // namespace occam::metaloss
