// metaloss/sinkhorn.hpp against geomloss. Every number marked "reference" was computed with
// geomloss v0.3.1 on float64 (SamplesLoss, tensorized backend,
// uniform weights, scaling 0.5, reach None); the doc prints 10 to 12 digits, so the tolerance
// is 1e-9 absolute.
#include <doctest/doctest.h>

#include "lanes_note.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "metaloss/sinkhorn.hpp"

#include "geomloss_cases.hpp"

using namespace occam;
using metaloss::SinkhornOptions;

namespace {

using namespace geomloss_cases;

void check_close(const Eigen::VectorXd& got, const Eigen::VectorXd& want, double tol) {
    REQUIRE(got.size() == want.size());
    for (Eigen::Index i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        CHECK(std::abs(got[i] - want[i]) <= tol);
    }
}
void check_close(const std::vector<double>& got, const std::vector<double>& want, double rel) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        CHECK(std::abs(got[i] - want[i]) <= rel * std::abs(want[i]));
    }
}

SinkhornOptions with_blur(double blur) {
    SinkhornOptions o;
    o.blur = blur;
    return o;
}
SinkhornOptions with_p1() {
    SinkhornOptions o;
    o.p = 1;
    return o;
}
SinkhornOptions no_debias() {
    SinkhornOptions o;
    o.debias = false;
    return o;
}

}  // namespace

TEST_CASE("sinkhorn: case A values match geomloss") {
    const Eigen::VectorXd x = case_a_x(), y = case_a_y();
    // reference: S = 0.058333333333 (= W2^2 / 2; the problem is effectively converged).
    CHECK(std::abs(metaloss::sinkhorn_divergence(x, y) - 0.058333333333) <= kTol);
    CHECK(std::abs(metaloss::sinkhorn_divergence(x, y, with_blur(0.5)) - 0.058377890277) <= kTol);
    CHECK(std::abs(metaloss::sinkhorn_divergence(x, y, with_p1()) - 0.299898202935) <= kTol);
    CHECK(std::abs(metaloss::sinkhorn_divergence(x, y, no_debias()) - 0.061079864055) <= kTol);
}

TEST_CASE("sinkhorn: case A potentials and gradients match geomloss") {
    const metaloss::SinkhornResult r = metaloss::sinkhorn(case_a_x(), case_a_y(), {});
    CHECK(std::abs(r.value - 0.058333333333) <= kTol);
    check_close(r.f, vec({-0.070983312566, 0.107480630753, 0.046010780889}), kTol);
    check_close(r.g, vec({0.198729843288, -0.099734100032, 0.001735749833}), kTol);
    check_close(r.p, Eigen::VectorXd::Constant(3, 0.001373265361), kTol);
    check_close(r.q, Eigen::VectorXd::Constant(3, 0.001373265361), kTol);
    check_close(r.F, vec({-0.0723565779, 0.1061073654, 0.0446375155}), kTol);
    check_close(r.G, vec({0.1973565779, -0.1011073654, 0.0003624845}), kTol);
    check_close(r.grad_x, vec({0.1666666667, 0.0333333333, -0.1}), kTol);
    check_close(r.grad_y, vec({-0.1666666667, -0.0333333333, 0.1}), kTol);
    // d = 2: the duplicated d^2 and the trailing blur^2.
    check_close(r.eps_list, {4, 4, 1, 0.25, 0.0625, 0.015625, 0.00390625, 0.0025}, 1e-14);
}

TEST_CASE("sinkhorn: case B values match geomloss") {
    const Eigen::VectorXd x = case_b_x(), y = case_b_y();
    CHECK(std::abs(metaloss::sinkhorn_divergence(x, y) - 0.147637068278) <= kTol);
    CHECK(std::abs(metaloss::sinkhorn_divergence(x, y, with_blur(0.01)) - 0.147320901505) <= kTol);
    CHECK(std::abs(metaloss::sinkhorn_divergence(x, y, with_blur(0.5)) - 0.140000718510) <= kTol);
    CHECK(std::abs(metaloss::sinkhorn_divergence(x, y, with_p1()) - 0.397210378951) <= kTol);
    CHECK(std::abs(metaloss::sinkhorn_divergence(x, y, no_debias()) - 0.151231979683) <= kTol);
}

TEST_CASE("sinkhorn: case B potentials gradients and schedule match geomloss") {
    const metaloss::SinkhornResult r = metaloss::sinkhorn(case_b_x(), case_b_y(), {});
    CHECK(std::abs(r.value - 0.147637068278) <= kTol);
    check_close(r.grad_x,
                vec({0.0088448481, -0.0141389754, -0.0234336785, -0.0918927184, -0.0822503113, -0.0822489109,
                     -0.0928082200}),
                kTol);
    check_close(r.grad_y, vec({0.1064896724, -0.0107743205, 0.0092191914, 0.1273469551, 0.1151507460}), kTol);
    check_close(r.F,
                vec({-0.2091866065, -0.2057446753, -0.0747485891, 0.1574128254, 0.3615539181, 0.3588982707,
                     0.1498705781}),
                kTol);
    check_close(r.G, vec({0.0887203321, 0.2107345413, 0.2113026481, 0.0376298608, -0.1945275562}), kTol);
    // reference: d = 1.5537778725349265, L = 7.
    REQUIRE(r.eps_list.size() == 7);
    check_close(r.eps_list,
                {2.414225677179162, 2.414225677179162, 0.6035564192947905, 0.15088910482369763,
                 0.037722276205924415, 0.009430569051481107, 0.0025000000000000005},
                1e-14);
    CHECK(std::abs(std::sqrt(r.eps_list[0]) - 1.5537778725349265) <= 1e-15);
}

TEST_CASE("sinkhorn: epsilon schedule edge cases follow numpy arange") {
    // geomloss's epsilon schedule: d/blur an exact power of 1/scaling; numpy gives L = 6 for d = 0.8 and L = 8
    // for d = 3.2, with no extra value near blur^p before the final one.
    std::vector<double> e08 = metaloss::epsilon_schedule(2, 0.8, 0.05, 0.5);
    REQUIRE(e08.size() == 6);
    check_close(e08, {0.64, 0.64, 0.16, 0.04, 0.01, 0.0025}, 1e-13);
    std::vector<double> e32 = metaloss::epsilon_schedule(2, 3.2, 0.05, 0.5);
    REQUIRE(e32.size() == 8);
    check_close(e32, {10.24, 10.24, 2.56, 0.64, 0.16, 0.04, 0.01, 0.0025}, 1e-13);
    // p = 1, d = 2.
    check_close(metaloss::epsilon_schedule(1, 2.0, 0.05, 0.5), {2, 2, 1, .5, .25, .125, .0625, .05}, 1e-14);
    // d < blur: epsilon goes up, [d^p, blur^p].
    check_close(metaloss::epsilon_schedule(2, 0.01, 0.05, 0.5), {1e-4, 0.0025}, 1e-14);
    // The numpy.arange artefact of the schedule: for d = 2 the fifth value is exp(t) with t one ulp off
    // 2 ln 0.25, which numpy prints as 0.06250000000000003.
    CHECK(metaloss::epsilon_schedule(2, 2.0, 0.05, 0.5)[4] == 0.06250000000000003);
    CHECK_THROWS_AS(metaloss::epsilon_schedule(2, 0.0, 0.05, 0.5), std::invalid_argument);
}

TEST_CASE("sinkhorn: Var version gives the closed-form gradient") {
    for (int which = 0; which < 2; ++which) {
        CAPTURE(which);
        const Eigen::VectorXd xv = which ? case_b_x() : case_a_x();
        const Eigen::VectorXd yv = which ? case_b_y() : case_a_y();
        for (const SinkhornOptions& o : {SinkhornOptions{}, with_p1(), no_debias(), with_blur(0.5)}) {
            const metaloss::SinkhornResult r = metaloss::sinkhorn(xv, yv, o);
            ad::TapeScope scope;
            ad::Var x = ad::param(xv), y = ad::param(yv);
            ad::Var s = metaloss::sinkhorn_divergence(x, y, o);
            CHECK(std::abs(s.item() - r.value) <= 1e-15);
            std::vector<Eigen::MatrixXd> g = ad::values(ad::grad(s, {x, y}));
            CHECK((g[0].col(0) - r.grad_x).cwiseAbs().maxCoeff() <= 1e-12);
            CHECK((g[1].col(0) - r.grad_y).cwiseAbs().maxCoeff() <= 1e-12);
            // The incoming gradient scales the result (g * dS/dx).
            std::vector<Eigen::MatrixXd> g3 = ad::values(ad::grad(ad::mul_scalar(s, 3.0), {x}));
            CHECK((g3[0].col(0) - 3.0 * r.grad_x).cwiseAbs().maxCoeff() <= 1e-12);
        }
    }
}

TEST_CASE("sinkhorn: gradient agrees with finite differences on converged case A") {
    // Case A converges, so the envelope gradient is the derivative of the value.
    const Eigen::VectorXd x0 = case_a_x(), y0 = case_a_y();
    const metaloss::SinkhornResult r = metaloss::sinkhorn(x0, y0);
    const double h = 1e-5;
    for (int i = 0; i < 3; ++i) {
        Eigen::VectorXd xp = x0, xm = x0, yp = y0, ym = y0;
        xp[i] += h;
        xm[i] -= h;
        yp[i] += h;
        ym[i] -= h;
        const double dx = (metaloss::sinkhorn_divergence(xp, y0) - metaloss::sinkhorn_divergence(xm, y0)) / (2 * h);
        const double dy = (metaloss::sinkhorn_divergence(x0, yp) - metaloss::sinkhorn_divergence(x0, ym)) / (2 * h);
        CAPTURE(i);
        CHECK(std::abs(dx - r.grad_x[i]) <= 1e-6);
        CHECK(std::abs(dy - r.grad_y[i]) <= 1e-6);
    }
}

TEST_CASE("sinkhorn: ad gradcheck passes on converged case A") {
    ad::CheckFn f = [](const std::vector<ad::Var>& v) { return metaloss::sinkhorn_divergence(v[0], v[1]); };
    ad::CheckReport r = ad::gradcheck(f, {Eigen::MatrixXd(case_a_x()), Eigen::MatrixXd(case_a_y())});
    INFO(r.message());
    CHECK(r.ok);
}

TEST_CASE("sinkhorn: only the inputs that need a gradient get one") {
    ad::TapeScope scope;
    ad::Var x = ad::param(case_b_x());
    ad::Var y = ad::constant(case_b_y());
    ad::Var s = metaloss::sinkhorn_divergence(x, y);
    CHECK(s.requires_grad());
    std::vector<Eigen::MatrixXd> g = ad::values(ad::grad(s, {x}));
    CHECK((g[0].col(0) - metaloss::sinkhorn(case_b_x(), case_b_y()).grad_x).cwiseAbs().maxCoeff() <= 1e-12);
    // Both constant: a plain value with no backward.
    ad::Var c = metaloss::sinkhorn_divergence(ad::constant(case_b_x()), y);
    CHECK_FALSE(c.requires_grad());
    CHECK(std::abs(c.item() - 0.147637068278) <= kTol);
    // Under NoGradGuard too.
    {
        ad::NoGradGuard ng;
        CHECK_FALSE(metaloss::sinkhorn_divergence(x, y).requires_grad());
    }
    // create_graph through the solver is refused, naming it: the envelope gradient moves with x
    // and that motion is not recorded, so a second derivative would be a silent zero.
    // Each part of that sentence, in order:
    // (1) The envelope gradient moves with x: d(grad_x[i])/dx[i], by central differences of the
    //     plain solver, is far from 0. x[2] = 0.8 cos 1.4 = 0.136 is inside the clouds, so moving
    //     it by +-h leaves the diameter and hence the epsilon schedule alone, and the solver's
    //     output is a smooth function of it. (For a converged plan with W2^2 / 2 cost this is
    //     about 1/n = 1/7 less the plan's spread; the checked bound is a tenth of that.) The
    //     differences' error is O(h^2) + O(1e-16 / h), under 1e-6 here, far below the bound.
    {
        const double h = 1e-4;
        Eigen::VectorXd xp = case_b_x(), xm = case_b_x();
        xp[2] += h;
        xm[2] -= h;
        const metaloss::SinkhornResult rp = metaloss::sinkhorn(xp, case_b_y()), rm = metaloss::sinkhorn(xm, case_b_y());
        REQUIRE(rp.eps_list == rm.eps_list);  // the schedule really did not move
        const double second = (rp.grad_x[2] - rm.grad_x[2]) / (2 * h);
        INFO("d grad_x[2] / dx[2] = " << second);
        CHECK(std::abs(second) > 0.014);
    }
    // (2) That motion is not recorded: the node is declared first-order (its backward multiplies
    //     by the stored numbers grad_x, grad_y, which on the tape are constants in x).
    CHECK(s.node()->derivatives == ad::Derivatives::first_order);
    // (3) So create_graph through it is refused with ad::Error rather than returning that silent
    //     zero, and the message names the solver as the node create_graph could not go through.
    CHECK_THROWS_WITH_AS(ad::grad(s, {x}, {.create_graph = true}),
                         doctest::Contains("create_graph through sinkhorn_divergence"), ad::Error);
    // A refusal, not a broken tape: gradient mode is back on and the first-order gradient of the
    // same node is still the envelope gradient.
    CHECK(ad::grad_enabled());
    const std::vector<Eigen::MatrixXd> again = ad::values(ad::grad(s, {x}));
    CHECK((again[0].col(0) - metaloss::sinkhorn(case_b_x(), case_b_y()).grad_x).cwiseAbs().maxCoeff() <= 1e-12);
}

TEST_CASE("sinkhorn: symmetric and zero on identical clouds") {
    const Eigen::VectorXd x = case_b_x(), y = case_b_y();
    CHECK(std::abs(metaloss::sinkhorn_divergence(x, y) - metaloss::sinkhorn_divergence(y, x)) <= 1e-12);
    // x against itself: f follows p and g follows q step for step, so S = 0 and the gradient too.
    const metaloss::SinkhornResult r = metaloss::sinkhorn(x, x);
    CHECK(std::abs(r.value) <= 1e-14);
    CHECK(r.grad_x.cwiseAbs().maxCoeff() <= 1e-14);
}

TEST_CASE("sinkhorn: bad inputs and options raise clear errors") {
    const Eigen::VectorXd x = case_a_x(), y = case_a_y();
    Eigen::VectorXd bad = x;
    bad[1] = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(metaloss::sinkhorn_divergence(bad, y), std::domain_error);
    bad[1] = std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH_AS(metaloss::sinkhorn_divergence(x, bad), doctest::Contains("NaN or inf"), std::domain_error);
    CHECK_THROWS_WITH_AS(metaloss::sinkhorn_divergence(bad, y), doctest::Contains("labels contain NaN or inf"),
                         std::domain_error);
    // All points identical: the diameter is 0 and geomloss raises.
    CHECK_THROWS_WITH_AS(metaloss::sinkhorn_divergence(Eigen::VectorXd::Constant(3, 0.2),
                                                       Eigen::VectorXd::Constant(2, 0.2)),
                         doctest::Contains("identical"), std::invalid_argument);
    CHECK_THROWS_AS(metaloss::sinkhorn_divergence(Eigen::VectorXd(0), y), std::invalid_argument);

    SinkhornOptions o;
    o.p = 3;
    CHECK_THROWS_WITH_AS(metaloss::sinkhorn_divergence(x, y, o), doctest::Contains("SinkhornOptions.p"),
                         std::invalid_argument);
    o = {};
    o.blur = 0.0;
    CHECK_THROWS_WITH_AS(metaloss::sinkhorn_divergence(x, y, o), doctest::Contains("SinkhornOptions.blur"),
                         std::invalid_argument);
    o = {};
    o.scaling = 1.0;
    CHECK_THROWS_WITH_AS(metaloss::sinkhorn_divergence(x, y, o), doctest::Contains("SinkhornOptions.scaling"),
                         std::invalid_argument);

    ad::TapeScope scope;
    ad::Var row = ad::param(Eigen::MatrixXd(x.transpose()));
    CHECK_THROWS_WITH_AS(metaloss::sinkhorn_divergence(row, ad::param(y)), doctest::Contains("1x3"),
                         ad::ShapeError);
    CHECK_THROWS_AS(metaloss::sinkhorn_divergence(ad::param(x), ad::param(Eigen::MatrixXd::Zero(3, 2))),
                    ad::ShapeError);
    CHECK_THROWS_AS(metaloss::sinkhorn_divergence(ad::param(bad), ad::param(y)), std::domain_error);
}

namespace {

/// geomloss's recipe written the plain way (a stored cost matrix, every soft-min shifted by its
/// own row maximum, two loops per update), as the yardstick for the fast solver's rewrites.
struct PlainSinkhorn {
    double value;
    Eigen::VectorXd grad_x, grad_y;
};
Eigen::MatrixXd plain_cost(const Eigen::VectorXd& u, const Eigen::VectorXd& v, int p) {
    Eigen::MatrixXd c(u.size(), v.size());
    for (Eigen::Index i = 0; i < u.size(); ++i)
        for (Eigen::Index j = 0; j < v.size(); ++j)
            c(i, j) = p == 2 ? 0.5 * (u[i] - v[j]) * (u[i] - v[j]) : std::max(std::abs(u[i] - v[j]), 1e-4);
    return c;
}
/// softmin(eps, C, h)_i = -eps log sum_j exp(h_j - C_ij / eps), and (optionally) its plan rows.
Eigen::VectorXd plain_softmin(double eps, const Eigen::MatrixXd& c, const Eigen::VectorXd& h,
                              Eigen::MatrixXd* plan = nullptr) {
    Eigen::VectorXd out(c.rows());
    if (plan) plan->resize(c.rows(), c.cols());
    for (Eigen::Index i = 0; i < c.rows(); ++i) {
        const Eigen::VectorXd z = h - c.row(i).transpose() / eps;
        const double mx = z.maxCoeff();
        const Eigen::VectorXd e = (z.array() - mx).exp().matrix();
        out[i] = -eps * (mx + std::log(e.sum()));
        if (plan) plan->row(i) = (e / e.sum()).transpose();
    }
    return out;
}
PlainSinkhorn plain_sinkhorn(const Eigen::VectorXd& x, const Eigen::VectorXd& y, int p) {
    const Eigen::Index n = x.size(), m = y.size();
    const double d = std::max(x.maxCoeff(), y.maxCoeff()) - std::min(x.minCoeff(), y.minCoeff());
    const std::vector<double> eps_list = metaloss::epsilon_schedule(p, d, 0.05, 0.5);
    const Eigen::MatrixXd cxy = plain_cost(x, y, p), cyx = cxy.transpose(), cxx = plain_cost(x, x, p),
                          cyy = plain_cost(y, y, p);
    const Eigen::VectorXd la = Eigen::VectorXd::Constant(n, std::log(1.0 / n)),
                          lb = Eigen::VectorXd::Constant(m, std::log(1.0 / m));
    double eps = eps_list.front();
    Eigen::VectorXd f = plain_softmin(eps, cxy, lb), g = plain_softmin(eps, cyx, la);
    Eigen::VectorXd pp = plain_softmin(eps, cxx, la), q = plain_softmin(eps, cyy, lb);
    for (double e : eps_list) {
        const Eigen::VectorXd ft = plain_softmin(e, cxy, lb + g / e), gt = plain_softmin(e, cyx, la + f / e);
        const Eigen::VectorXd pt = plain_softmin(e, cxx, la + pp / e), qt = plain_softmin(e, cyy, lb + q / e);
        f = 0.5 * (f + ft), g = 0.5 * (g + gt), pp = 0.5 * (pp + pt), q = 0.5 * (q + qt);
    }
    eps = eps_list.back();
    Eigen::MatrixXd pxy, pyx, pxx, pyy;
    const Eigen::VectorXd ft = plain_softmin(eps, cxy, lb + g / eps, &pxy), gt = plain_softmin(eps, cyx, la + f / eps, &pyx);
    const Eigen::VectorXd pt = plain_softmin(eps, cxx, la + pp / eps, &pxx), qt = plain_softmin(eps, cyy, lb + q / eps, &pyy);
    PlainSinkhorn r;
    r.value = (ft - pt).mean() + (gt - qt).mean();
    // dC(u, v)/du: u - v for p = 2, sign(u - v) for p = 1 (0 inside the clamp).
    auto dc = [p](double u, double v) {
        return p == 2 ? u - v : (std::abs(u - v) > 1e-4 ? (u > v ? 1.0 : -1.0) : 0.0);
    };
    r.grad_x.setZero(n);
    r.grad_y.setZero(m);
    for (Eigen::Index i = 0; i < n; ++i) {
        for (Eigen::Index j = 0; j < m; ++j) r.grad_x[i] += pxy(i, j) * dc(x[i], y[j]) / n;
        for (Eigen::Index k = 0; k < n; ++k) r.grad_x[i] -= pxx(i, k) * dc(x[i], x[k]) / n;
    }
    for (Eigen::Index j = 0; j < m; ++j) {
        for (Eigen::Index i = 0; i < n; ++i) r.grad_y[j] += pyx(j, i) * dc(y[j], x[i]) / m;
        for (Eigen::Index l = 0; l < m; ++l) r.grad_y[j] -= pyy(j, l) * dc(y[j], y[l]) / m;
    }
    return r;
}

}  // namespace

TEST_CASE("sinkhorn: large clouds agree with the plain two-loop recipe") {
    // Hundreds of points, as the presets use, at label scales that keep the one-exp-per-entry
    // path (0.5, 1, 30) and with two far outliers (1000 and -333), whose rows spread the maxima
    // by far more than kSpread in some steps and so take the direct fallback; both costs.
    ad::Rng rng(7);
    for (double scale : {0.5, 1.0, 30.0, 1000.0}) {
        for (int p : {2, 1}) {
            CAPTURE(scale);
            CAPTURE(p);
            Eigen::VectorXd x = (scale > 100 ? 0.3 : scale) * rng.normal_matrix(301, 1).col(0);
            if (scale > 100) x[5] = scale, x[17] = -scale / 3;
            const Eigen::VectorXd y = rng.uniform_matrix(250, 1, -1.0, 1.0).col(0);
            SinkhornOptions o;
            o.p = p;
            const metaloss::SinkhornResult r = metaloss::sinkhorn(x, y, o);
            const PlainSinkhorn want = plain_sinkhorn(x, y, p);
            CHECK(std::abs(r.value - want.value) <= 1e-10 * std::max(1.0, std::abs(want.value)));
            CHECK((r.grad_x - want.grad_x).cwiseAbs().maxCoeff() <= 1e-10 * scale);
            CHECK((r.grad_y - want.grad_y).cwiseAbs().maxCoeff() <= 1e-10 * scale);
        }
    }
}

TEST_CASE("sinkhorn: the AVX-512 and AVX2 copies of the solver give the same bits") {
    note_when_copies_are_one();
    // kernels/lanes.hpp: the schedule is compiled twice and the CPU picks; both must agree exactly, or a
    // result would depend on the machine. (On a CPU without AVX-512 both runs take one copy.)
    ad::Rng rng(11);
    for (int p : {2, 1}) {
        for (int n : {1, 7, 8, 9, 300}) {
            CAPTURE(p);
            CAPTURE(n);
            const Eigen::VectorXd x = rng.normal_matrix(n, 1).col(0), y = rng.uniform_matrix(n + 3, 1, -1, 1).col(0);
            SinkhornOptions o;
            o.p = p;
            const metaloss::SinkhornResult wide = metaloss::sinkhorn(x, y, o);
            lanes::wide_allowed() = false;
            const metaloss::SinkhornResult narrow = metaloss::sinkhorn(x, y, o);
            lanes::wide_allowed() = true;
            CHECK(wide.value == narrow.value);
            CHECK(wide.grad_x == narrow.grad_x);
            CHECK(wide.grad_y == narrow.grad_y);
            CHECK(wide.F == narrow.F);
        }
    }
}

TEST_CASE("sinkhorn: the upper envelope of lines finds the highest line at every point") {
    // envelope_argmax against brute force, with parallel lines, lines through one point, and
    // query points repeated and outside the lines' crossings.
    ad::Rng rng(5);
    for (int trial = 0; trial < 50; ++trial) {
        const int lines = 1 + trial % 17, queries = 1 + (trial * 7) % 23;
        std::vector<double> slope(lines), icept(lines), t(queries);
        for (int l = 0; l < lines; ++l) {
            if (trial % 2) {  // few distinct slopes (parallel lines); all through one point when trial % 3 == 1
                slope[l] = std::round(4 * rng.uniform()) - 2;
                icept[l] = trial % 3 == 1 ? -slope[l] * 0.5 : std::round(8 * rng.uniform());
            } else {
                slope[l] = 4 * rng.uniform() - 2, icept[l] = 4 * rng.uniform();
            }
        }
        for (int q = 0; q < queries; ++q) t[q] = q % 4 == 0 ? 0.5 : 6 * rng.uniform() - 3;
        std::vector<int> lo(lines), qo(queries), hull(lines), best(queries);
        for (int l = 0; l < lines; ++l) lo[l] = l;
        for (int q = 0; q < queries; ++q) qo[q] = q;
        std::sort(lo.begin(), lo.end(), [&](int a, int b) { return slope[a] < slope[b]; });
        std::sort(qo.begin(), qo.end(), [&](int a, int b) { return t[a] < t[b]; });
        metaloss::detail::envelope_argmax(slope.data(), icept.data(), lo.data(), lines, t.data(), qo.data(), queries,
                                          hull.data(), best.data());
        for (int q = 0; q < queries; ++q) {
            double top = -1e300;
            for (int l = 0; l < lines; ++l) top = std::max(top, icept[l] + slope[l] * t[q]);
            CAPTURE(trial);
            CAPTURE(q);
            CHECK(icept[best[q]] + slope[best[q]] * t[q] == doctest::Approx(top).epsilon(1e-12));
        }
    }
}
