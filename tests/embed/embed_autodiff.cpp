// What this proves: occam's autodiff embeds in any program with nothing but Eigen and the
// standard library (g++ -std=c++20 -I<repo> -I<eigen>), and its second-order machinery is right:
// a Hessian-vector product and a meta-gradient through unrolled training, both against differences.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "autodiff/autodiff.hpp"

namespace ad = occam::ad;
using Eigen::MatrixXd;

// Worst |analytic - numeric| / max(1, |numeric|) over the entries.
static double rel_error(const MatrixXd& analytic, const MatrixXd& numeric) {
    double worst = 0.0;
    for (Eigen::Index i = 0; i < numeric.size(); ++i) {
        const double e = std::abs(analytic(i) - numeric(i)) / std::max(1.0, std::abs(numeric(i)));
        if (!(e <= worst)) worst = e;  // NaN propagates as a failure
    }
    return worst;
}

// ---- (a) Hessian-vector product --------------------------------------------------------------

// f(x) = sum(exp(sin(x)) * x) + (sum(tanh(B x)))^2 for a 4x1 x.
static ad::Var f(const MatrixXd& B, const ad::Var& x) {
    return ad::sum(ad::exp(ad::sin(x)) * x) + ad::square(ad::sum(ad::tanh(ad::matmul(ad::constant(B), x))));
}

static MatrixXd gradient_at(const MatrixXd& B, const MatrixXd& x0) {
    ad::TapeScope scope;
    ad::Var x = ad::param(x0);
    return ad::grad(f(B, x), {x})[0].value();
}

static double check_hessian_vector() {
    ad::Rng rng(11);
    const MatrixXd B = rng.normal_matrix(3, 4, 0.0, 0.5);
    const MatrixXd x0 = rng.normal_matrix(4, 1);
    const MatrixXd v = rng.normal_matrix(4, 1);
    MatrixXd hv;
    {
        ad::TapeScope scope;
        ad::Var x = ad::param(x0);
        ad::Var g = ad::grad(f(B, x), {x}, {.create_graph = true})[0];
        hv = ad::grad(ad::sum(g * ad::constant(v)), {x})[0].value();  // d<grad f, v>/dx = H v
    }
    const double h = 1e-5;
    const MatrixXd fd = (gradient_at(B, x0 + h * v) - gradient_at(B, x0 - h * v)) / (2 * h);
    return rel_error(hv, fd);
}

// ---- (b) meta-gradient through 5 unrolled gradient-descent steps -----------------------------

struct Problem {
    MatrixXd X, Xv, yv;                // training inputs; validation set
    std::vector<MatrixXd> theta0;      // W1 (3x2), b1 (1x3), W2 (1x3), b2 (1x1)
};

// A 2-3-1 tanh network on the rows of X.
static ad::Var predict(const std::vector<ad::Var>& th, const ad::Var& X) {
    ad::Var hidden = ad::tanh(ad::matmul_nt(X, th[0]) + th[1]);
    return ad::matmul_nt(hidden, th[2]) + th[3];
}

// Trains from theta0 on (X, y) for 5 full-batch steps and returns the validation loss. With
// create_graph every step's gradient is recorded, so the result is differentiable in y.
static ad::Var train_then_validate(const Problem& p, const ad::Var& y, bool create_graph) {
    const double lr = 0.3;
    ad::Var X = ad::constant(p.X);
    std::vector<ad::Var> th = ad::params(p.theta0);
    for (int step = 0; step < 5; ++step) {
        ad::Var loss = ad::mean(ad::square(predict(th, X) - y));
        std::vector<ad::Var> g = ad::grad(loss, th, {.create_graph = create_graph});
        for (std::size_t k = 0; k < th.size(); ++k) th[k] = th[k] - lr * g[k];
    }
    return ad::mean(ad::square(predict(th, ad::constant(p.Xv)) - ad::constant(p.yv)));
}

static double validation_loss_at(const Problem& p, const MatrixXd& y) {
    ad::TapeScope scope;
    return train_then_validate(p, ad::constant(y), false).item();
}

static double check_meta_gradient(double& largest) {
    ad::Rng rng(5);
    Problem p;
    p.X = rng.normal_matrix(8, 2);
    p.Xv = rng.normal_matrix(6, 2);
    auto target = [](const MatrixXd& X) {
        MatrixXd y(X.rows(), 1);
        for (Eigen::Index i = 0; i < X.rows(); ++i) y(i) = std::sin(X(i, 0)) + 0.5 * X(i, 1);
        return y;
    };
    const MatrixXd y0 = target(p.X) + rng.normal_matrix(8, 1, 0.0, 0.1);
    p.yv = target(p.Xv);
    p.theta0 = {rng.normal_matrix(3, 2, 0.0, 0.7), rng.normal_matrix(1, 3, 0.0, 0.1),
                rng.normal_matrix(1, 3, 0.0, 0.7), MatrixXd::Zero(1, 1)};

    MatrixXd meta;
    {
        ad::TapeScope scope;
        ad::Var y = ad::param(y0);
        meta = ad::grad(train_then_validate(p, y, true), {y})[0].value();
    }
    const double h = 1e-5;
    MatrixXd fd(y0.rows(), 1), y = y0;
    for (Eigen::Index i = 0; i < y0.rows(); ++i) {
        y(i) = y0(i) + h;
        const double up = validation_loss_at(p, y);
        y(i) = y0(i) - h;
        const double down = validation_loss_at(p, y);
        y(i) = y0(i);
        fd(i) = (up - down) / (2 * h);
    }
    largest = meta.cwiseAbs().maxCoeff();
    return rel_error(meta, fd);
}

int main() {
    const double hvp_err = check_hessian_vector();
    double largest = 0.0;
    const double meta_err = check_meta_gradient(largest);
    std::printf("hessian-vector product: relative error %.3e\n", hvp_err);
    std::printf("meta-gradient through 5 steps: relative error %.3e (largest entry %.3e)\n", meta_err, largest);
    // The meta-gradient must also be non-trivial, or the comparison would prove nothing.
    const bool ok = hvp_err <= 1e-6 && meta_err <= 1e-6 && largest > 1e-6;
    std::printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
