// What this teaches: second derivatives by differentiating a gradient. With create_graph the
// backward pass is itself recorded on the tape, so grad(<grad f, v>, x) is the Hessian-vector
// product H v, at the cost of about two gradients and without ever forming the n x n Hessian.
#include <algorithm>
#include <cstdio>

#include "autodiff/autodiff.hpp"

namespace ad = occam::ad;

// f(x) = (sum_i tanh((A x)_i))^2, with A a fixed 4x5 matrix and x a 5x1 column.
ad::Var f(const ad::Var& A, const ad::Var& x) { return ad::square(ad::sum(ad::tanh(ad::matmul(A, x)))); }

// The gradient of f at x as a plain matrix (first order only), for the finite-difference check.
Eigen::MatrixXd gradient_at(const Eigen::MatrixXd& A, const Eigen::MatrixXd& x) {
    ad::TapeScope scope;  // everything recorded in here is released at the closing brace
    ad::Var xv = ad::param(x);
    return ad::grad(f(ad::constant(A), xv), {xv})[0].value();
}

int main() {
    ad::Rng rng(2024);
    const Eigen::MatrixXd A = rng.normal_matrix(4, 5, 0.0, 0.5);
    const Eigen::MatrixXd x0 = rng.normal_matrix(5, 1);
    const Eigen::MatrixXd v = rng.normal_matrix(5, 1);

    Eigen::MatrixXd hv;
    {
        ad::TapeScope scope;
        ad::Var x = ad::param(x0);
        ad::Var y = f(ad::constant(A), x);
        // First backward pass, recorded: g is an ordinary Var whose graph depends on x.
        ad::Var g = ad::grad(y, {x}, {.create_graph = true})[0];
        // <g, v> is a scalar; its gradient with respect to x is d/dx (grad f(x) . v) = H v
        // (H is symmetric, so H^T v = H v). This second backward pass runs over the nodes
        // that the first one recorded.
        ad::Var gv = ad::sum(g * ad::constant(v));
        hv = ad::grad(gv, {x})[0].value();
    }

    // Central differences of the gradient along v: (grad f(x + h v) - grad f(x - h v)) / 2h.
    const double h = 1e-5;
    const Eigen::MatrixXd fd = (gradient_at(A, x0 + h * v) - gradient_at(A, x0 - h * v)) / (2 * h);

    std::printf("  %18s  %18s\n", "H v (autodiff)", "finite difference");
    for (int i = 0; i < 5; ++i) std::printf("  %18.12f  %18.12f\n", hv(i), fd(i));
    const double abs_err = (hv - fd).cwiseAbs().maxCoeff();
    const double rel_err = abs_err / std::max(1.0, fd.cwiseAbs().maxCoeff());
    std::printf("max abs error %.3e, relative %.3e\n", abs_err, rel_err);
    const bool ok = rel_err < 1e-6;
    std::printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
