// What this file teaches: kernel regression two ways. Random features relu(x J) followed by
// ridge regression, and the kernel those features converge to as their number grows (the
// degree-1 arc-cosine kernel), solved exactly. Their inductive bias is the kernel's
// eigenfunctions: on the sphere, spherical harmonics of increasing degree. Even features
// |x J| change the bias by construction: every prediction is then an even function of x.
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>

#include "ridge.hpp"

namespace occam::learners {

/// The random features' nonlinearity: relu(x J) (the paper's), or |x J|, an even map: with it
/// every prediction is an even function of x (f(-x) = f(x)), so no odd function, and in
/// particular no degree-1 harmonic, can be generalised at all. A control for the method: the
/// functions meta-learned for it must change from degree 1 to degree 2.
enum class FeatureMap { relu, abs };

inline FeatureMap parse_feature_map(const std::string& name) {
    if (name == "relu") return FeatureMap::relu;
    if (name == "abs") return FeatureMap::abs;
    throw std::invalid_argument("kernel: activation must be relu or abs (got '" + name + "')");
}

/// The features of inputs `x` (n x d) for weights `J` (d x K), as values.
inline Eigen::MatrixXd random_features(const Eigen::MatrixXd& x, const Eigen::MatrixXd& J, FeatureMap m) {
    const Eigen::MatrixXd pre = x * J;
    return m == FeatureMap::abs ? Eigen::MatrixXd(pre.cwiseAbs()) : Eigen::MatrixXd(pre.cwiseMax(0.0));
}

/// Ridge regression on K random features relu(x J) (or |x J|), J ~ N(0, 1) of shape d x K. J is
/// drawn once (fixed for the run) or redrawn every meta-step; K may be redrawn uniformly from
/// [k_min, k_max] every step (a fresh network width per task).
class RandomFeatureRidge : public Learner {
public:
    RandomFeatureRidge(int input_dim, int k_min, int k_max, double lambda, bool redraw, ad::Rng rng,
                       FeatureMap map = FeatureMap::relu)
        : d_(input_dim), k_min_(k_min), k_max_(k_max), lambda_(lambda), redraw_(redraw), map_(map) {
        if (input_dim < 1) throw std::invalid_argument("kernel: input dimension must be >= 1");
        if (k_min < 1 || k_max < k_min) throw std::invalid_argument("kernel: need 1 <= features min <= max");
        if (!(lambda >= 0.0)) throw std::invalid_argument("kernel: lambda must be >= 0");
        if (k_min != k_max && !redraw)
            throw std::invalid_argument("kernel: a range of feature counts needs --redraw-features");
        draw(rng);
    }
    std::string describe() const override {
        std::ostringstream s;
        s << "random-feature ridge (";
        if (k_min_ == k_max_) s << k_min_;
        else s << k_min_ << "-" << k_max_;
        s << (map_ == FeatureMap::abs ? " |x.w| features, " : " ReLU features, ") << (redraw_ ? "redrawn every step" : "fixed") << ", lambda " << lambda_ << ")";
        return s.str();
    }
    void new_task(ad::Rng& rng) override {
        if (redraw_) draw(rng);
    }
    ad::Var fit_predict(const ad::Var& x, const ad::Var& y, const ad::Var& xt) override {
        check_dim(x);
        return detail::guarded(*this, [&] {
            ad::Var J = ad::constant(J_);
            auto phi = [&](const ad::Var& in) {
                return map_ == FeatureMap::abs ? ad::abs(ad::matmul(in, J)) : ad::relu(ad::matmul(in, J));
            };
            return ridge_fit_predict(phi(x), y, phi(xt), lambda_, false);
        });
    }
    int input_dim() const override { return d_; }
    bool linear_in_labels() const override { return true; }
    const Eigen::MatrixXd& features() const { return J_; }
    FeatureMap feature_map() const { return map_; }

private:
    void draw(ad::Rng& rng) {
        int k = k_min_ == k_max_ ? k_min_ : k_min_ + int(rng.below(std::uint64_t(k_max_ - k_min_ + 1)));
        J_ = rng.normal_matrix(d_, k);
    }
    void check_dim(const ad::Var& x) const {
        if (x.cols() != d_)
            throw LearnerError(describe() + ": inputs have " + std::to_string(x.cols()) + " columns, expected " +
                               std::to_string(d_));
    }
    int d_, k_min_, k_max_;
    double lambda_;
    bool redraw_;
    FeatureMap map_;
    Eigen::MatrixXd J_;
};

namespace detail {
/// A kernel k(c, |x||y|) of the cosine c of the angle between x and y and their norms' product
/// (0 where a point is 0), as a Gram matrix.
template <class OfCosine>
Eigen::MatrixXd angular_kernel(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, OfCosine k_of_cos) {
    Eigen::VectorXd na = a.rowwise().norm(), nb = b.rowwise().norm();
    Eigen::MatrixXd dot = a * b.transpose();
    Eigen::MatrixXd k(a.rows(), b.rows());
    for (Eigen::Index j = 0; j < b.rows(); ++j)
        for (Eigen::Index i = 0; i < a.rows(); ++i) {
            const double nn = na(i) * nb(j);
            k(i, j) = nn == 0.0 ? 0.0 : k_of_cos(std::clamp(dot(i, j) / nn, -1.0, 1.0), nn);
        }
    return k;
}
}  // namespace detail

/// The degree-1 arc-cosine kernel (Cho & Saul 2009), the limit of relu(x J) features:
///   E_w[relu(w.x) relu(w.y)] = |x||y| (sin t + (pi - t) cos t) / (2 pi),  t = angle(x, y).
inline Eigen::MatrixXd arccos_kernel(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
    return detail::angular_kernel(a, b, [](double c, double nn) {
        const double t = std::acos(c);
        return nn * (std::sin(t) + (std::numbers::pi - t) * c) / (2.0 * std::numbers::pi);
    });
}

/// The limit kernel of |x J| features: E_w[|w.x| |w.y|] = |x||y| (2/pi) (sqrt(1 - c^2) + c asin c),
/// c = cos angle(x, y), from E|u||v| for standard normals of correlation c. Even in each argument.
inline Eigen::MatrixXd abs_feature_kernel(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
    return detail::angular_kernel(a, b, [](double c, double nn) {
        return nn * 2.0 / std::numbers::pi * (std::sqrt(1.0 - c * c) + c * std::asin(c));
    });
}

/// Exact kernel ridge regression with the arc-cosine kernel: a = (K + lambda I)^{-1} y,
/// predictions K_test a. The inputs are data, so the Gram matrices are constants; the
/// meta-gradient flows through the labels y.
class ArcCosKernelRidge : public Learner {
public:
    explicit ArcCosKernelRidge(double lambda) : lambda_(lambda) {
        if (!(lambda >= 0.0)) throw std::invalid_argument("arccos: lambda must be >= 0");
    }
    std::string describe() const override {
        std::ostringstream s;
        s << "arc-cosine kernel ridge (exact, lambda " << lambda_ << ")";
        return s.str();
    }
    ad::Var fit_predict(const ad::Var& x, const ad::Var& y, const ad::Var& xt) override {
        return detail::guarded(*this, [&] {
            Eigen::MatrixXd xv = x.value(), xtv = xt.value();
            Eigen::MatrixXd K = arccos_kernel(xv, xv);
            K.diagonal().array() += lambda_;
            ad::Var a = ad::solve(ad::constant(K), y);
            return ad::matmul(ad::constant(arccos_kernel(xtv, xv)), a);
        });
    }
    bool linear_in_labels() const override { return true; }

private:
    double lambda_;
};

}  // namespace occam::learners
