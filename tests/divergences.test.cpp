// metaloss/divergences.hpp: geomloss's kernel losses (values computed with geomloss v0.3.1 on
// float64, printed to 12 digits, so tolerance 1e-9), their gradients against the kernels'
// closed forms, first- and second-order gradchecks, and W2-to-uniform values
// derived by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "metaloss/divergences.hpp"

#include "geomloss_cases.hpp"

using namespace occam;

namespace {

using namespace geomloss_cases;

/// Value and gradients of a Var loss f(x, y) at plain vectors.
template <class F>
void eval(F f, const Eigen::VectorXd& xv, const Eigen::VectorXd& yv, double& value, Eigen::VectorXd& gx,
          Eigen::VectorXd& gy) {
    ad::TapeScope scope;
    ad::Var x = ad::param(xv), y = ad::param(yv);
    ad::Var l = f(x, y);
    value = l.item();
    std::vector<Eigen::MatrixXd> g = ad::values(ad::grad(l, {x, y}));
    gx = g[0].col(0);
    gy = g[1].col(0);
}

/// The closed form: dL/dx_i = a_i [ sum_k a_k d1k(x_i,x_k) - sum_j b_j d1k(x_i,y_j) ], and the
/// same with the roles of x and y swapped.
template <class DK>
Eigen::VectorXd kernel_grad(const Eigen::VectorXd& x, const Eigen::VectorXd& y, DK d1k) {
    const double a = 1.0 / x.size(), b = 1.0 / y.size();
    Eigen::VectorXd g(x.size());
    for (Eigen::Index i = 0; i < x.size(); ++i) {
        double sxx = 0, sxy = 0;
        for (Eigen::Index k = 0; k < x.size(); ++k) sxx += a * d1k(x[i], x[k]);
        for (Eigen::Index j = 0; j < y.size(); ++j) sxy += b * d1k(x[i], y[j]);
        g[i] = a * (sxx - sxy);
    }
    return g;
}
// energy: k = -|u-v| (clamped), d1k = -sign(u-v), 0 on the clamp.
double energy_d1k(double u, double v) { return std::abs(u - v) < 1e-4 ? 0.0 : (u > v ? -1.0 : 1.0); }

}  // namespace

TEST_CASE("divergences: energy matches geomloss") {
    // reference: case A 0.099966666667 (0.1 minus the 1e-4 clamp bias), case B 0.185822416993.
    CHECK(std::abs(metaloss::energy_distance(case_a_x(), case_a_y()) - 0.099966666667) <= kTol);
    CHECK(std::abs(metaloss::energy_distance(case_b_x(), case_b_y()) - 0.185822416993) <= kTol);
    for (int which = 0; which < 2; ++which) {
        CAPTURE(which);
        const Eigen::VectorXd xv = which ? case_b_x() : case_a_x(), yv = which ? case_b_y() : case_a_y();
        double v;
        Eigen::VectorXd gx, gy;
        eval([](const ad::Var& x, const ad::Var& y) { return metaloss::energy_distance(x, y); }, xv, yv, v, gx, gy);
        CHECK(std::abs(v - metaloss::energy_distance(xv, yv)) <= 1e-14);
        CHECK((gx - kernel_grad(xv, yv, energy_d1k)).cwiseAbs().maxCoeff() <= 1e-12);
        CHECK((gy - kernel_grad(yv, xv, energy_d1k)).cwiseAbs().maxCoeff() <= 1e-12);
    }
}

TEST_CASE("divergences: the sorted energy distance equals the dense pairwise formula") {
    // The O(n log n) node against the three dense n x m sums it replaces, on samples with exact
    // ties, pairs inside the 1e-4 clamp and pairs just outside it.
    ad::Rng rng(7, 0);
    Eigen::VectorXd x = rng.uniform_matrix(330, 1, -1.0, 1.0), y = rng.uniform_matrix(310, 1, -1.3, 0.8);
    x[1] = x[0];              // a tie within x
    y[3] = x[2];              // a tie across
    y[4] = x[5] + 0.5e-4;     // inside the clamp
    x[6] = x[7] - 3e-4;       // just outside it
    auto dense = [](const Eigen::VectorXd& u, const Eigen::VectorXd& v) {
        double s = 0;
        for (Eigen::Index i = 0; i < u.size(); ++i)
            for (Eigen::Index j = 0; j < v.size(); ++j) s += std::sqrt(std::max((u[i] - v[j]) * (u[i] - v[j]), 1e-8));
        return s / (double(u.size()) * double(v.size()));
    };
    const double want = dense(x, y) - 0.5 * dense(x, x) - 0.5 * dense(y, y);
    double v;
    Eigen::VectorXd gx, gy;
    eval([](const ad::Var& a, const ad::Var& b) { return metaloss::energy_distance(a, b); }, x, y, v, gx, gy);
    CHECK(std::abs(v - want) <= 1e-13);
    CHECK(std::abs(metaloss::energy_distance(x, y) - v) == 0.0);
    CHECK((gx - kernel_grad(x, y, energy_d1k)).cwiseAbs().maxCoeff() <= 1e-15);
    CHECK((gy - kernel_grad(y, x, energy_d1k)).cwiseAbs().maxCoeff() <= 1e-15);
    // Only the labels need a gradient (the usual case): the same numbers.
    ad::TapeScope scope;
    ad::Var xl = ad::param(x);
    ad::Var l = metaloss::energy_distance(xl, ad::constant(y));
    CHECK(l.item() == v);
    CHECK((ad::grad(l, {xl})[0].value().col(0) - gx).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("divergences: gaussian MMD matches geomloss") {
    // reference: case A blur .05 / .5 = 0.318296077948 / 0.066198441375,
    //            case B blur .05 / .5 = 0.218371095054 / 0.147077839932.
    CHECK(std::abs(metaloss::gaussian_mmd(case_a_x(), case_a_y()) - 0.318296077948) <= kTol);
    CHECK(std::abs(metaloss::gaussian_mmd(case_a_x(), case_a_y(), 0.5) - 0.066198441375) <= kTol);
    CHECK(std::abs(metaloss::gaussian_mmd(case_b_x(), case_b_y(), 0.05) - 0.218371095054) <= kTol);
    CHECK(std::abs(metaloss::gaussian_mmd(case_b_x(), case_b_y(), 0.5) - 0.147077839932) <= kTol);
    for (double blur : {0.05, 0.5}) {
        for (int which = 0; which < 2; ++which) {
            CAPTURE(blur);
            CAPTURE(which);
            const Eigen::VectorXd xv = which ? case_b_x() : case_a_x(), yv = which ? case_b_y() : case_a_y();
            double v;
            Eigen::VectorXd gx, gy;
            eval([blur](const ad::Var& x, const ad::Var& y) { return metaloss::gaussian_mmd(x, y, blur); }, xv, yv,
                 v, gx, gy);
            CHECK(std::abs(v - metaloss::gaussian_mmd(xv, yv, blur)) <= 1e-14);
            // d1k = -k (u - v) / blur^2
            auto d1k = [blur](double u, double w) {
                return -std::exp(-(u - w) * (u - w) / (2 * blur * blur)) * (u - w) / (blur * blur);
            };
            CHECK((gx - kernel_grad(xv, yv, d1k)).cwiseAbs().maxCoeff() <= 1e-12);
            CHECK((gy - kernel_grad(yv, xv, d1k)).cwiseAbs().maxCoeff() <= 1e-12);
        }
    }
}

TEST_CASE("divergences: gradcheck and gradgradcheck pass") {
    // Distinct, well-separated labels: no sort order or clamp is crossed by the +-1e-6 steps.
    const Eigen::MatrixXd x = vec({-0.7, 0.15, 0.55, -0.2});
    const Eigen::MatrixXd y = vec({-0.35, 0.4, 0.9, 1.3, -1.1});
    auto check = [](const char* name, const ad::CheckFn& f, const std::vector<Eigen::MatrixXd>& in) {
        CAPTURE(name);
        ad::CheckReport first = ad::gradcheck(f, in);
        INFO("first order: " << first.message());
        CHECK(first.ok);
        ad::CheckReport second = ad::gradgradcheck(f, in);
        INFO("second order: " << second.message());
        CHECK(second.ok);
    };
    check("energy", [](const std::vector<ad::Var>& v) { return metaloss::energy_distance(v[0], v[1]); }, {x, y});
    check("gaussian 0.5", [](const std::vector<ad::Var>& v) { return metaloss::gaussian_mmd(v[0], v[1], 0.5); },
          {x, y});
    check("gaussian 0.2", [](const std::vector<ad::Var>& v) { return metaloss::gaussian_mmd(v[0], v[1], 0.2); },
          {x, y});
    check("variance", [](const std::vector<ad::Var>& v) { return metaloss::variance_penalty(v[0]); }, {x});
    check("w2", [](const std::vector<ad::Var>& v) { return metaloss::w2_to_uniform(v[0]); }, {x});
    check("w2 0..3", [](const std::vector<ad::Var>& v) { return metaloss::w2_to_uniform(v[0], 0.0, 3.0); }, {y});
}

TEST_CASE("divergences: variance penalty uses the unbiased std") {
    // x = {0, 2}: mean 1, sum of squares 2, unbiased variance 2/(2-1) = 2, std sqrt 2.
    CHECK(std::abs(metaloss::variance_penalty(vec({0.0, 2.0})) - (std::sqrt(2.0) - 1) * (std::sqrt(2.0) - 1)) <=
          1e-15);
    // x = {-1, 0, 1}: unbiased variance 2/2 = 1, so the penalty is 0 (population std would not be).
    CHECK(std::abs(metaloss::variance_penalty(vec({-1.0, 0.0, 1.0}))) <= 1e-15);
    ad::TapeScope scope;
    const Eigen::VectorXd xv = case_b_x();
    ad::Var x = ad::param(xv);
    ad::Var l = metaloss::variance_penalty(x);
    CHECK(std::abs(l.item() - metaloss::variance_penalty(xv)) <= 1e-14);
    // d/dx_i (sd - 1)^2 = 2 (sd - 1) (x_i - mean) / ((n - 1) sd)
    const double n = double(xv.size()), sd = std::sqrt((xv.array() - xv.mean()).square().sum() / (n - 1));
    const Eigen::VectorXd want = 2 * (sd - 1) * (xv.array() - xv.mean()) / ((n - 1) * sd);
    CHECK((ad::grad(l, {x})[0].value().col(0) - want).cwiseAbs().maxCoeff() <= 1e-13);
    // Collapsed labels: value exactly 1, gradient 0 rather than NaN (also to second order).
    ad::Var c = ad::param(Eigen::VectorXd::Constant(4, 0.3));
    ad::Var lc = metaloss::variance_penalty(c);
    CHECK(lc.item() == 1.0);
    ad::Var gc = ad::grad(lc, {c}, {.create_graph = true})[0];
    CHECK(gc.value().allFinite());
    CHECK(gc.value().cwiseAbs().maxCoeff() == 0.0);
    ad::Var hc = ad::grad(ad::sum(gc), {c}, {.allow_unused = true})[0];
    CHECK(hc.value().allFinite());
}

TEST_CASE("divergences: w2 to uniform known values") {
    // W2^2 = (1/n) sum_i (x_(i) - m_i)^2 + w^2/(12 n^2), m_i = lo + w (i - 1/2)/n, w = hi - lo.
    // x = {-0.5, 0.5} on U[-1, 1]: by hand, 2 int_0^{1/2} (-0.5 - (-1 + 2t))^2 dt
    //   = 2 int_0^{1/2} (0.5 - 2t)^2 dt = 2 * (1/2) int_{-1/2}^{1/2} u^2 du = 2 * (1/2)(1/12) = 1/12.
    CHECK(std::abs(metaloss::w2_to_uniform(vec({-0.5, 0.5})) - 1.0 / 12.0) <= 1e-15);
    CHECK(std::abs(metaloss::w2_to_uniform(vec({0.5, -0.5})) - 1.0 / 12.0) <= 1e-15);
    // Labels at the quantile midpoints give the minimum: each interval contributes only the
    // variance of Q over it, (1/n)(w/n)^2/12, so n of them sum to w^2/(12 n^2) = 1/(3 n^2) for w = 2.
    for (int n : {1, 2, 5, 100}) {
        CAPTURE(n);
        Eigen::VectorXd mid(n);
        for (int i = 0; i < n; ++i) mid[i] = -1.0 + 2.0 * (i + 0.5) / n;
        CHECK(std::abs(metaloss::w2_to_uniform(mid) - 1.0 / (3.0 * n * n)) <= 1e-15);
        // Any other labels do worse.
        Eigen::VectorXd moved = mid;
        moved[0] += 0.01;
        CHECK(metaloss::w2_to_uniform(moved) > metaloss::w2_to_uniform(mid));
    }
    // All labels at 0: W2^2(delta_0, U[-1, 1]) = E U^2 = 1/3 whatever n is.
    for (int n : {1, 3, 8}) CHECK(std::abs(metaloss::w2_to_uniform(Eigen::VectorXd::Zero(n)) - 1.0 / 3.0) <= 1e-15);
    // Another interval: all at 1 against U[0, 2] is E (U - 1)^2 = 1/3 too; shifted by 5: +25.
    CHECK(std::abs(metaloss::w2_to_uniform(Eigen::VectorXd::Ones(4), 0.0, 2.0) - 1.0 / 3.0) <= 1e-15);
    CHECK(std::abs(metaloss::w2_to_uniform(Eigen::VectorXd::Constant(4, 6.0), 0.0, 2.0) - (1.0 / 3.0 + 25.0)) <=
          1e-13);
}

TEST_CASE("divergences: w2 to uniform gradient lands at the unsorted positions") {
    ad::TapeScope scope;
    const Eigen::VectorXd xv = vec({0.9, -0.8, 0.1, -0.05});  // sorted: -0.8, -0.05, 0.1, 0.9
    ad::Var x = ad::param(xv);
    ad::Var l = metaloss::w2_to_uniform(x);
    CHECK(std::abs(l.item() - metaloss::w2_to_uniform(xv)) <= 1e-15);
    // midpoints for n = 4 on [-1, 1]: -0.75, -0.25, 0.25, 0.75; gradient (2/n)(x_(i) - m_i).
    const Eigen::VectorXd want =
        vec({0.5 * (0.9 - 0.75), 0.5 * (-0.8 + 0.75), 0.5 * (0.1 - 0.25), 0.5 * (-0.05 + 0.25)});
    ad::Var g = ad::grad(l, {x}, {.create_graph = true})[0];
    CHECK((g.value().col(0) - want).cwiseAbs().maxCoeff() <= 1e-15);
    // The Hessian is diagonal 2/n: d/dx sum(g) = 2/n everywhere.
    ad::Var h = ad::grad(ad::sum(g), {x})[0];
    CHECK((h.value().array() - 0.5).abs().maxCoeff() <= 1e-15);
    // Value check from the sorted closed form.
    const double by_hand = 0.25 * (0.05 * 0.05 + 0.2 * 0.2 + 0.15 * 0.15 + 0.15 * 0.15) + 4.0 / (12.0 * 16.0);
    CHECK(std::abs(l.item() - by_hand) <= 1e-15);
}

TEST_CASE("divergences: bad inputs raise clear errors") {
    const Eigen::VectorXd x = case_a_x(), y = case_a_y();
    Eigen::VectorXd bad = x;
    bad[0] = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(metaloss::energy_distance(bad, y), std::domain_error);
    CHECK_THROWS_AS(metaloss::gaussian_mmd(x, bad), std::domain_error);
    CHECK_THROWS_AS(metaloss::variance_penalty(bad), std::domain_error);
    CHECK_THROWS_WITH_AS(metaloss::w2_to_uniform(bad), doctest::Contains("NaN or inf"), std::domain_error);
    CHECK_THROWS_AS(metaloss::gaussian_mmd(x, y, 0.0), std::invalid_argument);
    CHECK_THROWS_AS(metaloss::w2_to_uniform(x, 1.0, 1.0), std::invalid_argument);
    CHECK_THROWS_AS(metaloss::variance_penalty(vec({0.4})), std::invalid_argument);
    CHECK_THROWS_AS(metaloss::energy_distance(Eigen::VectorXd(0), y), std::invalid_argument);

    ad::TapeScope scope;
    ad::Var xb = ad::param(bad), xv = ad::param(x), yv = ad::param(y);
    ad::Var row = ad::param(Eigen::MatrixXd(x.transpose()));
    CHECK_THROWS_AS(metaloss::energy_distance(xb, yv), std::domain_error);
    CHECK_THROWS_AS(metaloss::gaussian_mmd(xv, xb), std::domain_error);
    CHECK_THROWS_AS(metaloss::variance_penalty(xb), std::domain_error);
    CHECK_THROWS_AS(metaloss::w2_to_uniform(xb), std::domain_error);
    CHECK_THROWS_WITH_AS(metaloss::energy_distance(row, yv), doctest::Contains("1x3"), ad::ShapeError);
    CHECK_THROWS_AS(metaloss::gaussian_mmd(xv, row), ad::ShapeError);
    CHECK_THROWS_AS(metaloss::variance_penalty(row), ad::ShapeError);
    CHECK_THROWS_AS(metaloss::w2_to_uniform(row), ad::ShapeError);
    CHECK_THROWS_AS(metaloss::variance_penalty(ad::param(vec({0.4}))), std::invalid_argument);
}
