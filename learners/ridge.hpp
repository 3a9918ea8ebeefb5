// What this file teaches: ridge regression as a differentiable layer. The fit is one linear
// solve, differentiated implicitly (ad::solve reuses its factorisation in the backward pass),
// so the meta-gradient costs one extra triangular solve, not an unrolled optimiser.
#pragma once

#include <sstream>

#include "learner.hpp"

namespace occam::learners {

/// Ridge regression on features Phi (samples x p) with labels y (samples x 1): the weights
/// minimise |Phi w - y|^2 + lambda |w|^2. Chooses the smaller of the two equivalent systems:
///   primal  w = (Phi^T Phi + lambda I)^{-1} Phi^T y          (p x p), predict Phi_t w
///   dual    a = (Phi Phi^T + lambda I)^{-1} y                (n x n), predict Phi_t Phi^T a
/// With `bias`, a column of ones is appended to Phi and its weight is not penalised.
inline ad::Var ridge_fit_predict(const ad::Var& phi, const ad::Var& y, const ad::Var& phi_test, double lambda,
                                 bool bias) {
    using namespace ad;
    Var P = phi, Pt = phi_test;
    if (bias) {
        P = hcat(P, ones(P.rows(), 1));
        Pt = hcat(Pt, ones(Pt.rows(), 1));
    }
    const int n = P.rows(), p = P.cols();
    if (p <= n || bias) {
        Eigen::MatrixXd reg = lambda * Eigen::MatrixXd::Identity(p, p);
        if (bias) reg(p - 1, p - 1) = 0.0;  // the intercept is not shrunk
        Var w = solve(matmul_tn(P, P) + constant(reg), matmul_tn(P, y));
        return matmul(Pt, w);
    }
    Var a = solve(matmul_nt(P, P) + constant(Eigen::MatrixXd(lambda * Eigen::MatrixXd::Identity(n, n))), y);
    return matmul(matmul_nt(Pt, P), a);
}

/// Linear ridge regression on the raw inputs.
class Ridge : public Learner {
public:
    Ridge(double lambda, bool bias) : lambda_(lambda), bias_(bias) {
        if (!(lambda >= 0.0)) throw std::invalid_argument("ridge: lambda must be >= 0");
    }
    std::string describe() const override {
        std::ostringstream s;
        s << "ridge (lambda " << lambda_ << (bias_ ? ", with bias" : ", no bias") << ")";
        return s.str();
    }
    ad::Var fit_predict(const ad::Var& x, const ad::Var& y, const ad::Var& xt) override {
        return detail::guarded(*this, [&] { return ridge_fit_predict(x, y, xt, lambda_, bias_); });
    }
    bool linear_in_labels() const override { return true; }

private:
    double lambda_;
    bool bias_;
};

}  // namespace occam::learners
