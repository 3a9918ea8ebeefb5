// What this teaches: differentiating through a linear solve without differentiating the solver.
// Ridge regression fits w = (X^T X + lambda I)^{-1} X^T y with ad::solve; the gradient of a
// validation loss with respect to the training labels y and to lambda costs one adjoint solve.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "autodiff/autodiff.hpp"

namespace ad = occam::ad;

// The data: a small training set (X, y) and a validation set (Xv, yv) from the same linear model.
struct Data {
    Eigen::MatrixXd X, Xv, yv;
};

// Validation loss of the ridge fit, as a function of the training labels y (n x 1) and the
// regularisation strength lambda (1 x 1). Both are Vars, so both get gradients.
ad::Var validation_loss(const Data& d, const ad::Var& y, const ad::Var& lambda) {
    const int p = int(d.X.cols());
    ad::Var X = ad::constant(d.X);
    // A = X^T X + lambda I: lambda is 1x1 and broadcasts over the identity.
    ad::Var A = ad::matmul_tn(X, X) + ad::mul(lambda, ad::constant(Eigen::MatrixXd::Identity(p, p)));
    ad::Var b = ad::matmul_tn(X, y);  // X^T y
    // w = A^{-1} b. The forward pass factorises A once (Cholesky here: A is symmetric positive
    // definite) and keeps the factor on the tape. The backward pass does not unroll the solver's
    // elimination steps: from A w = b, a change gives dA w + A dw = db, so dw = A^{-1}(db - dA w).
    // Given the incoming gradient G = dL/dw, it solves the *adjoint* system A^T u = G once, with
    // the same factor, and then  dL/db = u  and  dL/dA = -u w^T.  The chain rule carries these on:
    // dL/dy = X u (through b = X^T y) and dL/dlambda = trace(dL/dA) = -u . w (through A).
    ad::Var w = ad::solve(A, b);
    ad::Var r = ad::matmul(ad::constant(d.Xv), w) - ad::constant(d.yv);
    return ad::mean(ad::square(r));
}

int main() {
    ad::Rng rng(7);
    const int n = 12, nv = 20, p = 4;
    Data d;
    d.X = rng.normal_matrix(n, p);
    d.Xv = rng.normal_matrix(nv, p);
    const Eigen::MatrixXd w_true = rng.normal_matrix(p, 1);
    const Eigen::MatrixXd y0 = d.X * w_true + rng.normal_matrix(n, 1, 0.0, 0.3);  // noisy labels
    d.yv = d.Xv * w_true;
    Eigen::MatrixXd lambda0(1, 1);
    lambda0 << 0.5;

    // The meta-gradient: how the validation loss would change if we moved each training label,
    // or the regularisation strength.
    Eigen::MatrixXd gy, glam;
    double loss = 0.0;
    {
        ad::TapeScope scope;
        ad::Var y = ad::param(y0), lambda = ad::param(lambda0);
        ad::Var L = validation_loss(d, y, lambda);
        loss = L.item();
        std::vector<ad::Var> g = ad::grad(L, {y, lambda});
        gy = g[0].value();
        glam = g[1].value();
    }
    std::printf("validation loss %.6f at lambda = %.2f\n", loss, lambda0(0, 0));
    std::printf("dL/dlambda = %.9f\n", glam(0, 0));
    std::printf("dL/dy =");
    for (int i = 0; i < n; ++i) std::printf(" %.5f", gy(i));
    std::printf("\n");

    // The same adjoint computation written out by hand with Eigen, to make the formula concrete.
    const Eigen::MatrixXd A = d.X.transpose() * d.X + lambda0(0, 0) * Eigen::MatrixXd::Identity(p, p);
    const Eigen::LLT<Eigen::MatrixXd> llt(A);
    const Eigen::MatrixXd w = llt.solve(d.X.transpose() * y0);
    const Eigen::MatrixXd G = 2.0 / nv * d.Xv.transpose() * (d.Xv * w - d.yv);  // dL/dw
    const Eigen::MatrixXd u = llt.solve(G);                                       // the adjoint solve
    const double by_hand = std::max((d.X * u - gy).cwiseAbs().maxCoeff(), std::abs(-u.cwiseProduct(w).sum() - glam(0, 0)));
    std::printf("by-hand adjoint formula agrees to %.2e\n", by_hand);

    // And the independent check: central differences of the whole fit, entry by entry.
    ad::CheckReport rep = ad::gradcheck(
        [&d](const std::vector<ad::Var>& in) { return validation_loss(d, in[0], in[1]); }, {y0, lambda0});
    std::printf("gradcheck: %s\n", rep.message().c_str());
    const bool ok = rep.ok && by_hand < 1e-10;
    return ok ? 0 : 1;
}
