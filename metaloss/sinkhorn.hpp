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
#include "../kernels/sinkhorn_schedule.hpp"
#include "loss_node.hpp"

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
using namespace kernels::sinkhorn;  // the solver's pass schedule (kernels/sinkhorn_schedule.hpp)

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

    // The points padded with zeros to whole blocks of eight; p = 1 also needs its cost
    // matrices, once per call (one C(x_i, y_j) serves both directions: geomloss builds C(y_j, x_i)
    // separately, and the expanded forms differ only by rounding). p = 2 needs none.
    SinkhornWorkspace& w = sinkhorn_workspace();
    const int n8 = padded(n), m8 = padded(m), big = std::max(n8, m8);
    w.vec.assign(std::size_t(5) * (n8 + m8) + std::size_t(15) * big, 0.0);
    double* at = w.vec.data();
    auto take = [&at](int len) {
        double* r = at;
        at += len;
        return r;
    };
    double *xs = take(n8), *ys = take(m8);
    std::copy(x, x + n, xs);
    std::copy(y, y + m, ys);
    if (p == 1) {
        fill_distance_cost(x, n, y, m, w.cxy);
        if (debias) {
            fill_distance_cost(x, n, x, n, w.cxx);
            fill_distance_cost(y, m, y, m, w.cyy);
        }
    }
    // p = 2's envelope maxima visit the points in increasing order.
    w.order.resize(std::size_t(n + m + 2 * std::max(n, m)));
    int *xo = w.order.data(), *yo = xo + n, *hull = yo + m, *best = hull + std::max(n, m);
    if (p == 2) {
        for (int i = 0; i < n; ++i) xo[i] = i;
        for (int j = 0; j < m; ++j) yo[j] = j;
        std::sort(xo, xo + n, [x](int i, int k) { return x[i] < x[k] || (x[i] == x[k] && i < k); });
        std::sort(yo, yo + m, [y](int j, int l) { return y[j] < y[l] || (y[j] == y[l] && j < l); });
    }
    const double* none = nullptr;
    SinkhornState st{n, m, debias, {xs, n, ys, m, p == 1 ? w.cxy.data() : none, xo, yo},
                     {xs, n, xs, n, p == 1 ? w.cxx.data() : none, xo, xo},
                     {ys, m, ys, m, p == 1 ? w.cyy.data() : none, yo, yo},
                     take(n8), take(n8), take(n8), take(n8), take(m8), take(m8), take(m8), take(m8),
                     Scratch{take(big), take(big), take(big), take(big), take(big), take(big), take(big), take(big),
                             take(big), take(big), take(big), take(big), take(big), take(big), take(big), hull, best},
                     &eps_list, grad_x, grad_y};
    lanes::run([&st, p]<class B>() OCCAM_LANES_KERNEL {
        if (p == 2) run_schedule<B, 2>(st);
        else run_schedule<B, 1>(st);
    });
    const double *ft = st.ft, *gt = st.gt, *pt = st.pt, *qt = st.qt;
    const double a = 1.0 / n, b = 1.0 / m;

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

/// The same as a differentiable 1x1 Var; x is n x 1 (labels), y is m x 1 (target samples).
/// One tape node: the loop is not taped (it is a fixed solver, as in geomloss), and the
/// backward formula is the envelope (Danskin) gradient computed during the forward pass. That
/// gradient moves with x, and its motion is not recorded, so the node gives first-order
/// gradients only: ad::grad with create_graph through it raises ad::Error (geomloss itself
/// warns that second derivatives of this scheme are not meaningful: the solver is unconverged
/// and its loop is not differentiated).
inline ad::Var sinkhorn_divergence(const ad::Var& x, const ad::Var& y, SinkhornOptions opts = {}) {
    if (x.cols() != 1 || y.cols() != 1 || x.rows() < 1 || y.rows() < 1)
        throw ad::ShapeError("sinkhorn_divergence: x is " + ad::shape_str(x) + " and y is " + ad::shape_str(y) +
                             "; expected non-empty column vectors (n x 1 and m x 1)");
    return detail::loss_with_kept_gradient(
        "sinkhorn_divergence", x, y, ad::Derivatives::first_order, [&opts](const double* xv, int n, const double* yv, int m, double* gx, double* gy) {
            return detail::sinkhorn_core(xv, n, yv, m, opts, gx, gy, nullptr);
        });
}

}  // namespace occam::metaloss
