// A program outside occam that uses it as a CMake package (find_package, add_subdirectory or
// FetchContent; tests/package/run.sh). It sets no C++ standard of its own beyond C++17: the
// occam:: targets must carry C++20. It computes a Hessian-vector product with the engine and
// checks it against the analytic value.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "autodiff/autodiff.hpp"

static_assert(__cplusplus >= 202002L, "occam::autodiff must bring C++20 (cxx_std_20) to its consumers");

namespace ad = occam::ad;
using Eigen::MatrixXd;

int main() {
    const int n = 5;
    MatrixXd A(n, n), x0(n, 1), v(n, 1);
    for (int i = 0; i < n; ++i) {
        x0(i) = 0.3 * i - 0.7;
        v(i) = 1.0 - 0.25 * i * i;
        for (int j = 0; j < n; ++j) A(i, j) = std::sin(1.0 + i + 2.0 * j);  // not symmetric
    }

    // f(x) = sum(x^3) + x^T A x: grad f = 3 x^2 + (A + A^T) x, H v = 6 x .* v + (A + A^T) v.
    MatrixXd g, hv;
    {
        ad::TapeScope scope;
        ad::Var x = ad::param(x0);
        ad::Var y = ad::sum(x * x * x) + ad::sum(x * ad::matmul(ad::constant(A), x));
        ad::Var gx = ad::grad(y, {x}, {.create_graph = true})[0];
        g = gx.value();
        hv = ad::grad(ad::sum(gx * ad::constant(v)), {x})[0].value();
    }
    const MatrixXd S = A + A.transpose();
    const MatrixXd g_want = 3.0 * x0.cwiseProduct(x0) + S * x0;
    const MatrixXd hv_want = 6.0 * x0.cwiseProduct(v) + S * v;

    double worst = 0.0;
    for (int i = 0; i < n; ++i) {
        for (const auto& [got, want] : {std::pair{g(i), g_want(i)}, std::pair{hv(i), hv_want(i)}}) {
            const double e = std::abs(got - want) / std::max(1.0, std::abs(want));
            if (!(e <= worst)) worst = e;  // a NaN fails
        }
        std::printf("  Hv[%d] = %+.15f  (analytic %+.15f)\n", i, hv(i), hv_want(i));
    }
    const bool ok = hv.rows() == n && hv.cols() == 1 && worst <= 1e-10;
    std::printf("worst relative error %.3e: %s\n", worst, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
