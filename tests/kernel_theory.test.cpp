// experiment/kernel_theory.hpp: Nystrom eigenspaces of the arc-cosine and linear kernels on S^2
// against their known spherical-harmonic structure and Funk-Hecke eigenvalues, eigen_overlap of
// pure harmonics, the Nystrom extension, and random features converging to the arc-cosine kernel.
#include "experiment/inputs.hpp"
#include "experiment/kernel_theory.hpp"
#include "learners/kernel_ridge.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

using occam::ad::Rng;
using occam::experiment::eigen_overlap;
using occam::experiment::EigenOverlap;
using occam::experiment::extend;
using occam::experiment::KernelEigen;
using occam::experiment::linear_kernel;
using occam::experiment::nystrom;
using occam::experiment::nystrom_subsample;
using occam::experiment::random_feature_kernel;
using occam::experiment::SphereInputs;
using occam::learners::arccos_kernel;

namespace {

constexpr int kPoints = 800;   // enough to separate the degrees; a 800 x 800 eigenproblem is ~0.5 s at -O1
constexpr int kHeldOut = 400;  // further points for the Nystrom extension
constexpr int kTop = 18;       // degrees 0, 1, 2, 4 of the arc-cosine kernel: 1 + 3 + 5 + 9 functions

/// n uniform points on S^2 (normalised Gaussian vectors), the same ones for a given seed.
Eigen::MatrixXd sphere_points(int n, uint64_t seed = 1) {
    Rng rng(seed);
    return SphereInputs(3).sample(n, rng);
}

/// The probe points (first kPoints rows, the ones the spectrum is computed on) and held-out ones.
const Eigen::MatrixXd& points() {
    static const Eigen::MatrixXd X = sphere_points(kPoints + kHeldOut);
    return X;
}

/// The arc-cosine spectrum on the probe points, computed once: it is the expensive part.
const KernelEigen& arccos_eigen() {
    static const KernelEigen e = nystrom_subsample(points(), arccos_kernel, kTop, kPoints);
    return e;
}

/// 3z^2 - 1: a pure degree-2 harmonic (z^2 has mean 1/3 on S^2).
Eigen::VectorXd zonal2(const Eigen::MatrixXd& X) { return (3.0 * X.col(2).array().square() - 1.0).matrix(); }

/// Number of eigenfunctions in eigenspace s.
int space_size(const KernelEigen& e, size_t s) { return e.spaces[s].second - e.spaces[s].first + 1; }

/// Mean eigenvalue of eigenspace s.
double space_mean(const KernelEigen& e, size_t s) {
    const auto [first, last] = e.spaces[s];
    return e.eigenvalues.segment(first, last - first + 1).mean();
}

}  // namespace

TEST_CASE("kernel_theory: arccos eigenspaces on S^2 are the harmonic degrees") {
    const KernelEigen& e = arccos_eigen();
    REQUIRE(e.eigenvalues.size() == kTop);
    REQUIRE(e.eigenfunctions.rows() == kPoints);
    REQUIRE(e.eigenfunctions.cols() == kTop);
    REQUIRE(e.space_of.size() == static_cast<size_t>(kTop));
    for (int i = 0; i + 1 < kTop; ++i) CHECK(e.eigenvalues(i) >= e.eigenvalues(i + 1));

    // Degree 0, 1, 2 then 4: the degree-3 (and every odd degree >= 3) eigenvalue of this kernel is
    // exactly 0, so the order is unambiguous.
    REQUIRE(e.spaces.size() == 4);
    CHECK(space_size(e, 0) == 1);
    CHECK(space_size(e, 1) == 3);
    CHECK(space_size(e, 2) == 5);
    CHECK(space_size(e, 3) == 9);
    for (int i = 0; i < kTop; ++i) {
        const auto [first, last] = e.spaces[static_cast<size_t>(e.space_of[static_cast<size_t>(i)])];
        CHECK(first <= i);
        CHECK(i <= last);
    }

    // Funk-Hecke on S^2: degree l has eigenvalue (1/2) int_{-1}^{1} k(u) P_l(u) du with
    // k(u) = (sqrt(1 - u^2) + (pi - acos u) u) / (2 pi); that is 3/16, 1/12, 3/256, 0, 1/3072.
    // Averaging over a space cancels most of the sampling split, so the means are close.
    CHECK(space_mean(e, 0) == doctest::Approx(3.0 / 16.0).epsilon(0.03));
    CHECK(space_mean(e, 1) == doctest::Approx(1.0 / 12.0).epsilon(0.03));
    CHECK(space_mean(e, 2) == doctest::Approx(3.0 / 256.0).epsilon(0.05));
    CHECK(space_mean(e, 3) == doctest::Approx(1.0 / 3072.0).epsilon(0.1));

    // The eigenfunctions are orthonormal under the empirical measure: V^T V / n = I.
    const Eigen::MatrixXd gram = e.eigenfunctions.transpose() * e.eigenfunctions / double(kPoints);
    CHECK((gram - Eigen::MatrixXd::Identity(kTop, kTop)).cwiseAbs().maxCoeff() < 1e-10);
    // The top eigenfunction of a rotation-invariant kernel is the constant 1; on a finite sample
    // only nearly, as the rows of K do not sum to quite the same value.
    CHECK((e.eigenfunctions.col(0).array() - 1.0).abs().maxCoeff() < 0.15);
}

TEST_CASE("kernel_theory: pure harmonics land in their degree's eigenspace") {
    const KernelEigen& e = arccos_eigen();
    const Eigen::MatrixXd X = points().topRows(kPoints);

    const EigenOverlap x = eigen_overlap(e, X.col(0));
    CHECK(x.dominant_space == 1);
    CHECK(x.energy_per_space[1] >= 0.99);
    CHECK(x.dominant_space_eigenvalue == doctest::Approx(space_mean(e, 1)));
    CHECK(x.energy_in_top_spaces >= 0.99);

    const EigenOverlap q = eigen_overlap(e, zonal2(X));
    CHECK(q.dominant_space == 2);
    CHECK(q.energy_per_space[2] >= 0.97);
    CHECK(q.energy_in_top[0] < 0.01);  // mean zero: nothing in the constant

    // The kernel's inductive bias in one number: x is favoured over 3z^2 - 1.
    CHECK(x.weighted_eigenvalue > 3.0 * q.weighted_eigenvalue);
    CHECK(x.weighted_eigenvalue == doctest::Approx(1.0 / 12.0).epsilon(0.1));

    // A constant is all degree 0, with the top eigenvalue.
    const EigenOverlap c = eigen_overlap(e, Eigen::VectorXd::Constant(kPoints, -2.0));
    CHECK(c.dominant_space == 0);
    CHECK(c.energy_in_top[0] >= 0.99);
    CHECK(c.weighted_eigenvalue == doctest::Approx(e.eigenvalues(0)).epsilon(0.01));
}

TEST_CASE("kernel_theory: energy bookkeeping of eigen_overlap") {
    const KernelEigen& e = arccos_eigen();
    const Eigen::MatrixXd X = points().topRows(kPoints);
    // A mixture with energy outside the kept spaces too (degree 3: x y z).
    const Eigen::VectorXd f =
        X.col(1) + 0.5 * zonal2(X) + 4.0 * (X.col(0).array() * X.col(1).array() * X.col(2).array()).matrix();
    const EigenOverlap o = eigen_overlap(e, f);
    REQUIRE(o.energy_in_top.size() == static_cast<size_t>(kTop));
    REQUIRE(o.energy_per_space.size() == e.spaces.size());
    double per_space = 0.0;
    for (double v : o.energy_per_space) {
        CHECK(v >= 0.0);
        per_space += v;
    }
    for (int i = 0; i + 1 < kTop; ++i) CHECK(o.energy_in_top[size_t(i)] <= o.energy_in_top[size_t(i) + 1]);
    CHECK(o.energy_in_top.back() == doctest::Approx(per_space).epsilon(1e-12));
    CHECK(o.energy_in_top_spaces == doctest::Approx(per_space).epsilon(1e-12));
    CHECK(o.energy_in_top_spaces < 0.9);  // x y z is not in degrees 0, 1, 2, 4
    CHECK(o.weighted_eigenvalue <= e.eigenvalues(0));
    CHECK(o.weighted_eigenvalue >= e.eigenvalues(kTop - 1));
    // energy_in_top agrees with the direct projection c = U^T f for orthonormal eigenfunctions.
    const Eigen::VectorXd c = e.eigenfunctions.leftCols(5).transpose() * f / double(kPoints);
    CHECK(o.energy_in_top[4] == doctest::Approx(c.squaredNorm() / f.squaredNorm() * double(kPoints)).epsilon(1e-9));
}

TEST_CASE("kernel_theory: eigen_overlap of zero is all zeros") {
    const KernelEigen& e = arccos_eigen();
    const EigenOverlap o = eigen_overlap(e, Eigen::VectorXd::Zero(kPoints));
    for (double v : o.energy_in_top) CHECK(v == 0.0);
    for (double v : o.energy_per_space) CHECK(v == 0.0);
    CHECK(o.weighted_eigenvalue == 0.0);
    CHECK(o.dominant_space == 0);
    CHECK(o.dominant_space_eigenvalue == 0.0);
    CHECK(o.energy_in_top_spaces == 0.0);

    CHECK_THROWS_AS(eigen_overlap(e, Eigen::VectorXd::Zero(kPoints - 1)), std::invalid_argument);
    Eigen::VectorXd bad = Eigen::VectorXd::Zero(kPoints);
    bad(3) = std::nan("");
    CHECK_THROWS_AS(eigen_overlap(e, bad), std::invalid_argument);
}

TEST_CASE("kernel_theory: the linear kernel on S^2 has one 3-dimensional top space") {
    const Eigen::MatrixXd X = sphere_points(300, 2);
    const KernelEigen e = nystrom(linear_kernel(X, X), 6);
    // Eigenvalues of X^T X / n: 1/3 each for uniform points, then exact zeros (rank 3).
    REQUIRE(e.spaces.size() == 2);
    CHECK(space_size(e, 0) == 3);
    CHECK(space_size(e, 1) == 3);
    CHECK(space_mean(e, 0) == doctest::Approx(1.0 / 3.0).epsilon(1e-12));  // trace / 3, exactly
    CHECK(std::abs(e.eigenvalues(3)) < 1e-12);

    const EigenOverlap x = eigen_overlap(e, X.col(0));
    CHECK(x.dominant_space == 0);
    CHECK(x.energy_per_space[0] == doctest::Approx(1.0).epsilon(1e-9));
    CHECK(x.energy_in_top[2] == doctest::Approx(1.0).epsilon(1e-9));
    // The linear kernel cannot see 3z^2 - 1: what it catches is sampling overlap with x, y, z,
    // 3/n on average (0.04 for these points).
    CHECK(eigen_overlap(e, zonal2(X)).energy_per_space[0] < 0.1);
}

TEST_CASE("kernel_theory: nystrom groups eigenvalues by relative gap") {
    // A diagonal Gram matrix n diag(l) has eigenvalues l exactly.
    Eigen::VectorXd l(7);
    l << 1.0, 0.9, 0.8, 0.5, 0.45, 0.1, 0.0;
    const KernelEigen e = nystrom(Eigen::MatrixXd(7.0 * l.asDiagonal()), 7);
    REQUIRE(e.spaces.size() == 4);
    CHECK(e.spaces[0] == std::pair<int, int>{0, 2});  // 1 -> 0.9 -> 0.8: each step within 15%
    CHECK(e.spaces[1] == std::pair<int, int>{3, 4});
    CHECK(e.spaces[2] == std::pair<int, int>{5, 5});
    CHECK(e.spaces[3] == std::pair<int, int>{6, 6});  // exact zero is its own space
    CHECK(e.space_of == std::vector<int>{0, 0, 0, 1, 1, 2, 3});
    CHECK(e.eigenvalues(1) == doctest::Approx(0.9));

    // Tolerance 0: every distinct eigenvalue is its own space.
    CHECK(nystrom(Eigen::MatrixXd(7.0 * l.asDiagonal()), 7, 0.0).spaces.size() == 7);
    // Keeping fewer cuts the spectrum (and here the first space).
    const KernelEigen cut = nystrom(Eigen::MatrixXd(7.0 * l.asDiagonal()), 2);
    CHECK(cut.eigenvalues.size() == 2);
    CHECK(cut.spaces.size() == 1);

    CHECK_THROWS_AS(nystrom(Eigen::MatrixXd::Identity(3, 3), 0), std::invalid_argument);
    CHECK_THROWS_AS(nystrom(Eigen::MatrixXd::Identity(3, 3), 4), std::invalid_argument);
    CHECK_THROWS_AS(nystrom(Eigen::MatrixXd::Ones(3, 4), 1), std::invalid_argument);
    Eigen::MatrixXd asym = Eigen::MatrixXd::Identity(3, 3);
    asym(0, 1) = 0.5;
    CHECK_THROWS_AS(nystrom(asym, 1), std::invalid_argument);
}

TEST_CASE("kernel_theory: the Nystrom extension reproduces and generalises eigenfunctions") {
    const KernelEigen& e = arccos_eigen();
    const Eigen::MatrixXd& all = points();
    const Eigen::MatrixXd sub = all.topRows(kPoints);
    const Eigen::MatrixXd v = extend(e, sub, all, arccos_kernel);
    REQUIRE(v.rows() == kPoints + kHeldOut);
    REQUIRE(v.cols() == kTop);
    // On the probe points the extension is the eigen-equation itself.
    CHECK((v.topRows(kPoints) - e.eigenfunctions).cwiseAbs().maxCoeff() < 1e-8);

    // On unseen points the extended eigenfunctions are nearly orthonormal and still hold x in
    // the degree-1 space, and eigen_overlap (least squares) reads them directly.
    const Eigen::MatrixXd held = all.bottomRows(kHeldOut);
    KernelEigen on_held = e;
    on_held.eigenfunctions = v.bottomRows(kHeldOut);
    for (int i = 0; i < 9; ++i)
        CHECK(on_held.eigenfunctions.col(i).squaredNorm() / kHeldOut == doctest::Approx(1.0).epsilon(0.25));
    const EigenOverlap x = eigen_overlap(on_held, held.col(0));
    CHECK(x.dominant_space == 1);
    CHECK(x.energy_per_space[1] >= 0.99);
    const EigenOverlap q = eigen_overlap(on_held, zonal2(held));
    CHECK(q.dominant_space == 2);
    CHECK(q.energy_per_space[2] >= 0.95);

    CHECK_THROWS_AS(extend(e, all, all, arccos_kernel), std::invalid_argument);  // wrong X_sub
    // The linear kernel's null space has eigenvalue ~0: it cannot be extended.
    const KernelEigen lin = nystrom(linear_kernel(sub, sub), 4);
    CHECK_THROWS_AS(extend(lin, sub, all, linear_kernel), std::invalid_argument);
}

TEST_CASE("kernel_theory: random features approximate the arc-cosine kernel") {
    // E_w[relu(w.a) relu(w.b)] = arccos_kernel(a, b) for w ~ N(0, I), so the Monte Carlo average
    // over K features has error ~ 1/sqrt(K) per entry. On the unit sphere the largest entry is the
    // diagonal, 1/2, where the product relu(w.a)^2 has sd sqrt(3/2 - 1/4) ~ 1.12: one entry's sd is
    // ~1.6% of the maximum at K = 20000, so the typical (RMS) error is within 2% of the largest
    // entry, while the worst of ~1000 entries reaches 3-4 sd (up to 6% across seeds) and gets a looser bound.
    Rng rng(7);
    const Eigen::MatrixXd A = sphere_points(50, 3);
    const Eigen::MatrixXd B = 2.0 * sphere_points(30, 4);  // off the sphere and rectangular too
    const Eigen::MatrixXd J = rng.normal_matrix(3, 20000);
    for (const auto& [p, r] : {std::pair{A, A}, std::pair{A, B}}) {
        const Eigen::MatrixXd exact = arccos_kernel(p, r);
        const Eigen::MatrixXd diff = random_feature_kernel(p, r, J) - exact;
        REQUIRE(diff.rows() == p.rows());
        REQUIRE(diff.cols() == r.rows());
        const double biggest = exact.cwiseAbs().maxCoeff();
        const double rms = std::sqrt(diff.squaredNorm() / double(diff.size()));
        CHECK(rms < 0.02 * biggest);
        CHECK(diff.cwiseAbs().maxCoeff() < 0.08 * biggest);
    }
    CHECK_THROWS_AS(random_feature_kernel(A, A, rng.normal_matrix(2, 10)), std::invalid_argument);
    CHECK_THROWS_AS(linear_kernel(A, Eigen::MatrixXd::Ones(2, 2)), std::invalid_argument);
}
