#include "experiment/analysis.hpp"
#include "experiment/inputs.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

using occam::ad::Rng;
using occam::experiment::correlation;
using occam::experiment::correlation_matrix;
using occam::experiment::dominant_degree;
using occam::experiment::legendre_degree_energy;
using occam::experiment::legendre_energy;
using occam::experiment::LegendreEnergy;
using occam::experiment::linear_fit;
using occam::experiment::sphere_degree_energy;
using occam::experiment::SphereInputs;

namespace {

/// n uniform points on S^(d-1), the same ones for a given seed.
Eigen::MatrixXd sphere_points(int n, int d, uint64_t seed = 1) {
    Rng rng(seed);
    return SphereInputs(d).sample(n, rng);
}

/// Sum of the entries other than `degree` (energy that should not be there).
double off_degree(const Eigen::VectorXd& e, int degree) { return e.sum() - e(degree); }

}  // namespace

TEST_CASE("analysis: sphere energy of pure harmonics on S^2") {
    const Eigen::MatrixXd X = sphere_points(3000, 3);
    const Eigen::VectorXd x = X.col(0), y = X.col(1), z = X.col(2);

    SUBCASE("a constant is degree 0") {
        const Eigen::VectorXd e = sphere_degree_energy(X, Eigen::VectorXd::Constant(3000, 2.5));
        REQUIRE(e.size() == 5);
        CHECK(e(0) == doctest::Approx(1.0).epsilon(1e-9));
        CHECK(off_degree(e, 0) < 1e-9);
        CHECK(dominant_degree(e) == 0);
    }
    SUBCASE("x is degree 1") {
        const Eigen::VectorXd e = sphere_degree_energy(X, x);
        CHECK(e(1) > 0.99);
        CHECK(e.sum() == doctest::Approx(1.0).epsilon(1e-9));  // nothing above degree 1
        CHECK(dominant_degree(e) == 1);
    }
    SUBCASE("3z^2 - 1 is degree 2") {
        const Eigen::VectorXd f = 3.0 * z.array().square() - 1.0;
        const Eigen::VectorXd e = sphere_degree_energy(X, f);
        CHECK(e(2) > 0.98);
        CHECK(e.sum() == doctest::Approx(1.0).epsilon(1e-9));
        CHECK(dominant_degree(e) == 2);
    }
    SUBCASE("xy is degree 2") {
        const Eigen::VectorXd e = sphere_degree_energy(X, x.cwiseProduct(y));
        CHECK(e(2) > 0.98);
        CHECK(dominant_degree(e) == 2);
    }
    SUBCASE("5z^3 - 3z is degree 3") {
        const Eigen::VectorXd f = 5.0 * z.array().cube() - 3.0 * z.array();
        const Eigen::VectorXd e = sphere_degree_energy(X, f);
        CHECK(e(3) > 0.98);
        CHECK(dominant_degree(e) == 3);
    }
    SUBCASE("35z^4 - 30z^2 + 3 is degree 4") {
        const Eigen::ArrayXd z2 = z.array().square();
        const Eigen::VectorXd f = 35.0 * z2.square() - 30.0 * z2 + 3.0;
        const Eigen::VectorXd e = sphere_degree_energy(X, f);
        CHECK(e(4) > 0.98);
        CHECK(dominant_degree(e) == 4);
    }
    SUBCASE("max_degree sets the length and the rest is residual") {
        const Eigen::VectorXd f = 5.0 * z.array().cube() - 3.0 * z.array();
        const Eigen::VectorXd e = sphere_degree_energy(X, f, 2);
        REQUIRE(e.size() == 3);
        CHECK(1.0 - e.sum() > 0.98);  // degree 3 lies beyond max_degree
        CHECK(sphere_degree_energy(X, f, 0).size() == 1);
    }
}

TEST_CASE("analysis: sphere energy splits mixtures analytically") {
    const Eigen::MatrixXd X = sphere_points(3000, 3, 2);
    const Eigen::VectorXd x = X.col(0), y = X.col(1);
    const Eigen::VectorXd xy = x.cwiseProduct(y);

    // On S^2, E[x^2] = 1/3 and E[(xy)^2] = 1/15, and x is orthogonal to xy. Normalising both to
    // unit mean square, 0.6 x_n + 0.8 xy_n puts 0.36 in degree 1 and 0.64 in degree 2.
    const Eigen::VectorXd f = 0.6 * x / std::sqrt(1.0 / 3.0) + 0.8 * xy / std::sqrt(1.0 / 15.0);
    const Eigen::VectorXd e = sphere_degree_energy(X, f);
    CHECK(e(1) == doctest::Approx(0.36).epsilon(0.08));
    CHECK(e(2) == doctest::Approx(0.64).epsilon(0.05));
    CHECK(e(0) + e(3) + e(4) < 0.01);

    // Unnormalised: x + xy has (1/3) / (1/3 + 1/15) = 5/6 in degree 1 and 1/6 in degree 2.
    const Eigen::VectorXd g = x + xy;
    const Eigen::VectorXd eg = sphere_degree_energy(X, g);
    CHECK(eg(1) == doctest::Approx(5.0 / 6.0).epsilon(0.03));
    CHECK(eg(2) == doctest::Approx(1.0 / 6.0).epsilon(0.15));

    // Any polynomial of degree <= 4 is fully explained; non-harmonic pieces like x^4 spread over
    // degrees 0, 2 and 4 but nothing is lost.
    const Eigen::VectorXd h = 1.0 + x.array() + xy.array() + X.col(2).array().cube() + x.array().pow(4);
    CHECK(sphere_degree_energy(X, h).sum() == doctest::Approx(1.0).epsilon(1e-9));

    // sign(x) is odd: degree 1 holds E[|x|]^2 / E[x^2] = (1/2)^2 / (1/3) = 3/4, even degrees
    // nothing, and some energy lies above degree 4.
    const Eigen::VectorXd s = x.array().sign();
    const Eigen::VectorXd es = sphere_degree_energy(X, s);
    CHECK(es(1) == doctest::Approx(0.75).epsilon(0.04));
    CHECK(es(0) + es(2) + es(4) < 0.01);
    CHECK(es(3) > 0.05);
    CHECK(1.0 - es.sum() > 0.03);
}

TEST_CASE("analysis: sphere energy in other dimensions") {
    SUBCASE("S^3 in R^4") {
        const Eigen::MatrixXd X = sphere_points(3000, 4, 3);
        const Eigen::VectorXd e1 = sphere_degree_energy(X, X.col(0));
        CHECK(e1(1) > 0.99);
        CHECK(dominant_degree(e1) == 1);
        const Eigen::VectorXd e2 = sphere_degree_energy(X, X.col(2).cwiseProduct(X.col(3)));
        CHECK(e2(2) > 0.98);
    }
    SUBCASE("the circle S^1 in R^2") {
        const Eigen::MatrixXd X = sphere_points(2000, 2, 4);
        const Eigen::ArrayXd x = X.col(0).array(), y = X.col(1).array();
        // cos 2t = x^2 - y^2 and cos 3t = 4x^3 - 3x.
        CHECK(sphere_degree_energy(X, (x.square() - y.square()).matrix())(2) > 0.98);
        CHECK(sphere_degree_energy(X, (4.0 * x.cube() - 3.0 * x).matrix())(3) > 0.98);
        CHECK(sphere_degree_energy(X, (x * y).matrix(), 6).size() == 7);
    }
    SUBCASE("S^9 in R^10") {
        const Eigen::MatrixXd X = sphere_points(3000, 10, 5);
        CHECK(sphere_degree_energy(X, X.col(7))(1) > 0.99);
        CHECK(sphere_degree_energy(X, X.col(1).cwiseProduct(X.col(8)), 3)(2) > 0.95);
    }
    SUBCASE("points on a lower-dimensional slice: the equator of S^2") {
        // z = 0 makes every monomial with z vanish: the rank-revealing solve must cope.
        Eigen::MatrixXd X = Eigen::MatrixXd::Zero(1000, 3);
        X.leftCols(2) = sphere_points(1000, 2, 6);
        const Eigen::ArrayXd x = X.col(0).array(), y = X.col(1).array();
        CHECK(sphere_degree_energy(X, X.col(0))(1) > 0.99);
        const Eigen::VectorXd e = sphere_degree_energy(X, (x.square() - y.square()).matrix());
        CHECK(e(2) > 0.98);
        CHECK(e.sum() < 1.0 + 1e-9);
    }
    SUBCASE("a tilted great circle: dependent monomials arise only up to round-off") {
        // Rotating the equator mixes z into every coordinate, so dependent columns are no longer
        // exactly zero. Noise then has harmonics of degree <= 4 on the circle (1 + 2 + 2 + 2 + 2 = 9
        // of them) to leak into, about 9/2000 of its energy; a round-off pivot kept as rank would
        // add ~1/2000 per spurious direction (16 of them).
        Eigen::MatrixXd X = Eigen::MatrixXd::Zero(2000, 3);
        X.leftCols(2) = sphere_points(2000, 2, 7);
        const Eigen::Matrix3d R = Eigen::AngleAxisd(0.7, Eigen::Vector3d(1, 2, 3).normalized()).toRotationMatrix();
        X = X * R.transpose();
        Rng rng(13);
        const Eigen::VectorXd noise = rng.normal_matrix(2000, 1).col(0);
        CHECK(sphere_degree_energy(X, noise).sum() < 0.009);
        const Eigen::VectorXd e = sphere_degree_energy(X, X.col(0));
        CHECK(e(1) > 0.99);
        CHECK(e.sum() == doctest::Approx(1.0).epsilon(1e-9));
    }
}

TEST_CASE("analysis: sphere energy edge cases and errors") {
    const Eigen::MatrixXd X = sphere_points(200, 3, 7);
    CHECK(sphere_degree_energy(X, Eigen::VectorXd::Zero(200)) == Eigen::VectorXd::Zero(5));
    // Wrong sizes, too few points for the harmonics, points off the sphere, bad degrees, NaN.
    CHECK_THROWS_AS(sphere_degree_energy(X, Eigen::VectorXd::Ones(199)), std::invalid_argument);
    CHECK_THROWS_AS(sphere_degree_energy(sphere_points(20, 3), Eigen::VectorXd::Ones(20)), std::invalid_argument);
    CHECK_NOTHROW(sphere_degree_energy(sphere_points(26, 3), Eigen::VectorXd::Ones(26)));  // 25 harmonics <= 4
    CHECK_THROWS_AS(sphere_degree_energy(2.0 * X, Eigen::VectorXd::Ones(200)), std::invalid_argument);
    CHECK_THROWS_AS(sphere_degree_energy(X, Eigen::VectorXd::Ones(200), -1), std::invalid_argument);
    CHECK_THROWS_AS(sphere_degree_energy(X.leftCols(1), Eigen::VectorXd::Ones(200)), std::invalid_argument);
    Eigen::VectorXd bad = Eigen::VectorXd::Ones(200);
    bad(3) = std::nan("");
    CHECK_THROWS_AS(sphere_degree_energy(X, bad), std::invalid_argument);
}

TEST_CASE("analysis: legendre energy on an interval") {
    Rng rng(8);
    const Eigen::VectorXd u = rng.uniform_matrix(3000, 1, -1.0, 1.0).col(0);
    const Eigen::ArrayXd ua = u.array();

    const Eigen::VectorXd e1 = legendre_degree_energy(u, u);
    REQUIRE(e1.size() == 5);
    CHECK(e1(1) > 0.99);
    CHECK(e1.sum() == doctest::Approx(1.0).epsilon(1e-9));

    const Eigen::VectorXd e2 = legendre_degree_energy(u, ((3.0 * ua.square() - 1.0) / 2.0).matrix());
    CHECK(e2(2) > 0.98);
    CHECK(dominant_degree(e2) == 2);

    // u^2 = 1/3 P0 + 2/3 P2 with E[u^4] = 1/5: degree 0 holds (1/9)/(1/5) = 5/9, degree 2 4/9.
    const Eigen::VectorXd e3 = legendre_degree_energy(u, ua.square().matrix());
    CHECK(e3(0) == doctest::Approx(5.0 / 9.0).epsilon(0.05));
    CHECK(e3(2) == doctest::Approx(4.0 / 9.0).epsilon(0.06));

    // P_6 lies entirely above max_degree 4... up to its empirical overlap with lower degrees.
    const Eigen::ArrayXd u2 = ua.square();
    const Eigen::VectorXd p6 = ((231.0 * u2.cube() - 315.0 * u2.square() + 105.0 * u2 - 5.0) / 16.0).matrix();
    CHECK(legendre_degree_energy(u, p6).sum() < 0.02);
    CHECK(legendre_degree_energy(u, p6, 6)(6) > 0.98);

    // Only three distinct values of u: every function of u is a quadratic, so degrees 3 and 4 must
    // be empty even for noise (the dependent powers must not be counted as new directions).
    Eigen::VectorXd u3(300);
    for (int i = 0; i < 300; ++i) u3(i) = static_cast<double>(i % 3) - 1.0;
    const Eigen::VectorXd noise = rng.normal_matrix(300, 1).col(0);
    const Eigen::VectorXd en = legendre_degree_energy(u3, noise);
    CHECK(en(3) + en(4) < 1e-10);
    CHECK(en.sum() < 0.05);  // about 3/300

    CHECK(legendre_degree_energy(u, Eigen::VectorXd::Zero(3000)) == Eigen::VectorXd::Zero(5));
    CHECK_THROWS_AS(legendre_degree_energy(u, Eigen::VectorXd::Ones(10)), std::invalid_argument);
    CHECK_THROWS_AS(legendre_degree_energy(u.head(5), Eigen::VectorXd::Ones(5)), std::invalid_argument);
}

namespace {

/// n equally spaced points filling [-1, 1] (cell midpoints): the empirical measure matches the
/// uniform one up to O(1/n^2), so Legendre polynomials are orthogonal on them to ~1e-7.
Eigen::VectorXd interval_grid(int n) {
    Eigen::VectorXd u(n);
    for (int i = 0; i < n; ++i) u(i) = -1.0 + (2.0 * i + 1.0) / n;
    return u;
}

/// P_0..P_5 at u.
Eigen::MatrixXd legendre_columns(const Eigen::VectorXd& u) {
    const Eigen::ArrayXd x = u.array();
    Eigen::MatrixXd P(u.size(), 6);
    P.col(0).setOnes();
    P.col(1) = x.matrix();
    P.col(2) = ((3 * x.square() - 1) / 2).matrix();
    P.col(3) = ((5 * x.cube() - 3 * x) / 2).matrix();
    P.col(4) = ((35 * x.pow(4) - 30 * x.square() + 3) / 8).matrix();
    P.col(5) = ((63 * x.pow(5) - 70 * x.cube() + 15 * x) / 8).matrix();
    return P;
}

}  // namespace

TEST_CASE("analysis: legendre_energy puts pure polynomials in their degree and splits odd from even") {
    const Eigen::VectorXd u = interval_grid(4000);
    const Eigen::MatrixXd P = legendre_columns(u);
    for (int l = 1; l <= 3; ++l) {
        CAPTURE(l);
        const LegendreEnergy e = legendre_energy(u, P.col(l), 6);
        REQUIRE(e.degree.size() == 7);
        CHECK(e.degree(l) == doctest::Approx(1.0).epsilon(1e-6));
        CHECK(e.degree.sum() - e.degree(l) < 1e-6);
        CHECK((l % 2 ? e.odd : e.even) == doctest::Approx(1.0).epsilon(1e-6));
        CHECK((l % 2 ? e.even : e.odd) < 1e-6);
        CHECK(e.above < 1e-6);
    }
    SUBCASE("a constant is degree 0, all even") {
        const LegendreEnergy e = legendre_energy(u, Eigen::VectorXd::Constant(4000, -0.7), 6);
        CHECK(e.degree(0) == doctest::Approx(1.0).epsilon(1e-12));
        CHECK(e.even == doctest::Approx(1.0).epsilon(1e-12));
        CHECK(e.odd < 1e-12);
        CHECK(dominant_degree(e.degree) == 0);
    }
    SUBCASE("a zero function has no energy anywhere") {
        const LegendreEnergy e = legendre_energy(u, Eigen::VectorXd::Zero(4000), 6);
        CHECK(e.degree == Eigen::VectorXd::Zero(7));
        CHECK(e.odd == 0.0);
        CHECK(e.even == 0.0);
        CHECK(e.above == 0.0);
    }
    SUBCASE("a mix with known coefficients: shares c_l^2 / (2l + 1) over their sum") {
        // E[P_l^2] = 1 / (2l + 1) under the uniform measure on [-1, 1].
        const double c[6] = {0.5, 2.0, -1.0, 0.7, 0.0, 0.3};
        Eigen::VectorXd f = Eigen::VectorXd::Zero(4000);
        double total = 0, expected[6];
        for (int l = 0; l < 6; ++l) {
            f += c[l] * P.col(l);
            expected[l] = c[l] * c[l] / (2 * l + 1);
            total += expected[l];
        }
        const LegendreEnergy e = legendre_energy(u, f, 6);
        for (int l = 0; l < 6; ++l) CHECK(e.degree(l) == doctest::Approx(expected[l] / total).epsilon(1e-3));
        CHECK(e.degree(6) < 1e-3);
        CHECK(e.odd == doctest::Approx((expected[1] + expected[3] + expected[5]) / total).epsilon(1e-3));
        CHECK(e.even == doctest::Approx((expected[0] + expected[2]) / total).epsilon(1e-3));
        CHECK(e.above < 1e-6);
        CHECK(dominant_degree(e.degree) == 1);
        // Up to degree 3 only: P_5's share is left above.
        const LegendreEnergy e3 = legendre_energy(u, f, 3);
        REQUIRE(e3.degree.size() == 4);
        CHECK(e3.above == doctest::Approx(expected[5] / total).epsilon(1e-3));
        CHECK(e3.odd + e3.even + e3.above == doctest::Approx(1.0).epsilon(1e-12));
        // The same mix on random uniform points: within the sampling error (~1/sqrt(points)).
        Rng rng(12);
        const Eigen::VectorXd ur = rng.uniform_matrix(100000, 1, -1.0, 1.0).col(0);
        const Eigen::MatrixXd Pr = legendre_columns(ur);
        Eigen::VectorXd fr = Eigen::VectorXd::Zero(ur.size());
        for (int l = 0; l < 6; ++l) fr += c[l] * Pr.col(l);
        const LegendreEnergy er = legendre_energy(ur, fr, 6);
        for (int l = 0; l < 6; ++l) CHECK(std::abs(er.degree(l) - expected[l] / total) < 0.01);
        // Centred, the mean's share is gone and the others grow by 1 / (1 - its share).
        const Eigen::VectorXd centred = f.array() - f.mean();
        const LegendreEnergy ec = legendre_energy(u, centred, 6);
        CHECK(ec.degree(0) < 1e-9);
        CHECK(ec.degree(1) == doctest::Approx(expected[1] / (total - expected[0])).epsilon(1e-3));
    }
    CHECK_THROWS_AS(legendre_energy(u.head(7), P.col(1).head(7), 6), std::invalid_argument);
    CHECK_THROWS_AS(legendre_energy(u, P.col(1).head(7), 6), std::invalid_argument);
}

TEST_CASE("analysis: linear_fit recovers exact linear functions") {
    Rng rng(9);
    const Eigen::MatrixXd X = rng.normal_matrix(500, 2);
    const Eigen::VectorXd f = (1.0 + 2.0 * X.col(0).array() - X.col(1).array()).matrix();
    const auto fit = linear_fit(X, f);
    CHECK(fit.r2 == doctest::Approx(1.0).epsilon(1e-12));
    CHECK(fit.intercept == doctest::Approx(1.0).epsilon(1e-10));
    REQUIRE(fit.coef.size() == 2);
    CHECK(fit.coef(0) == doctest::Approx(2.0).epsilon(1e-10));
    CHECK(fit.coef(1) == doctest::Approx(-1.0).epsilon(1e-10));

    // A constant: SS_tot = 0, residual 0, so r2 = 1.
    const auto flat = linear_fit(X, Eigen::VectorXd::Constant(500, 4.0));
    CHECK(flat.r2 == 1.0);
    CHECK(flat.intercept == doctest::Approx(4.0));
    CHECK(flat.coef.cwiseAbs().maxCoeff() < 1e-10);

    // Collinear columns: the minimum-norm solution splits the weight evenly.
    Eigen::MatrixXd twin(500, 2);
    twin << X.col(0), X.col(0);
    const auto tf = linear_fit(twin, 2.0 * X.col(0));
    CHECK(tf.r2 == doctest::Approx(1.0));
    CHECK(tf.coef(0) == doctest::Approx(1.0));
    CHECK(tf.coef(1) == doctest::Approx(1.0));

    // No features: the fit is the mean.
    const auto mean_only = linear_fit(Eigen::MatrixXd(500, 0), f);
    CHECK(mean_only.intercept == doctest::Approx(f.mean()));
    CHECK(mean_only.r2 == doctest::Approx(0.0));
    CHECK(mean_only.coef.size() == 0);

    CHECK_THROWS_AS(linear_fit(X, Eigen::VectorXd::Ones(3)), std::invalid_argument);
}

TEST_CASE("analysis: linear_fit r2 is near zero for an unrelated function") {
    Rng a(10), b(11);
    const Eigen::MatrixXd X = a.normal_matrix(5000, 3);
    const Eigen::VectorXd noise = b.normal_matrix(5000, 1).col(0);
    const auto fit = linear_fit(X, noise);
    CHECK(fit.r2 >= 0.0);
    CHECK(fit.r2 < 0.01);  // expected about 3 / 5000
    // Half signal, half noise by variance: r2 ~ 1/2.
    const auto half = linear_fit(X, X.col(0) + noise);
    CHECK(half.r2 == doctest::Approx(0.5).epsilon(0.05));
}

TEST_CASE("analysis: correlation basics") {
    Rng rng(12);
    const Eigen::VectorXd a = rng.normal_matrix(1000, 1).col(0);
    const Eigen::VectorXd b = rng.normal_matrix(1000, 1).col(0);
    const Eigen::VectorXd flat = Eigen::VectorXd::Constant(1000, 0.1);

    CHECK(correlation(a, a) == doctest::Approx(1.0));
    CHECK(correlation(a, (2.0 * a.array() + 3.0).matrix()) == doctest::Approx(1.0));
    CHECK(correlation(a, -a) == doctest::Approx(-1.0));
    CHECK(std::abs(correlation(a, b)) < 0.1);
    CHECK(correlation(a, flat) == 0.0);
    CHECK(correlation(flat, flat) == 0.0);
    CHECK(correlation(a, a + 0.5 * b) == doctest::Approx(1.0 / std::sqrt(1.25)).epsilon(0.05));
    CHECK_THROWS_AS(correlation(a, b.head(10)), std::invalid_argument);

    Eigen::MatrixXd F(1000, 4);
    F << a, -a, flat, b;
    const Eigen::MatrixXd C = correlation_matrix(F);
    REQUIRE(C.rows() == 4);
    REQUIRE(C.cols() == 4);
    CHECK((C - C.transpose()).cwiseAbs().maxCoeff() == 0.0);
    CHECK(C(0, 0) == 1.0);
    CHECK(C(3, 3) == 1.0);
    CHECK(C(2, 2) == 0.0);  // a constant column correlates with nothing, itself included
    CHECK(C.row(2).cwiseAbs().maxCoeff() == 0.0);
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
            if (i != j) CHECK(C(i, j) == doctest::Approx(correlation(F.col(i), F.col(j))));
    CHECK(C(0, 1) == doctest::Approx(-1.0));
}
