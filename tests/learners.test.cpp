// The closed-form learners: their fits against direct formulas, their meta-gradients against
// finite differences, and their errors.
#include <doctest/doctest.h>

#include "learners/kernel_ridge.hpp"
#include "learners/ridge.hpp"

using namespace occam;

namespace {
struct Data {
    Eigen::MatrixXd x, xt;
    Eigen::MatrixXd y;
};
Data make_data(int n, int nt, int d, std::uint64_t seed) {
    ad::Rng rng(seed, 0);
    return {rng.normal_matrix(n, d), rng.normal_matrix(nt, d), rng.normal_matrix(n, 1)};
}
Eigen::MatrixXd predict(learners::Learner& l, const Data& D) {
    ad::TapeScope scope;
    return l.fit_predict(ad::constant(D.x), ad::constant(D.y), ad::constant(D.xt)).value();
}
}  // namespace

TEST_CASE("learners: ridge matches the closed form in both the primal and the dual system") {
    for (int n : {3, 12}) {  // n < d uses the dual system, n > d the primal one
        Data D = make_data(n, 7, 5, 1);
        const double lambda = 0.1;
        Eigen::MatrixXd w = (D.x.transpose() * D.x + lambda * Eigen::MatrixXd::Identity(5, 5))
                                .ldlt()
                                .solve(D.x.transpose() * D.y);
        learners::Ridge ridge(lambda, false);
        CHECK((predict(ridge, D) - D.xt * w).cwiseAbs().maxCoeff() < 1e-10);
    }
}

TEST_CASE("learners: ridge with a bias fits an unpenalised intercept") {
    Data D = make_data(30, 5, 2, 2);
    D.y = D.x * Eigen::Vector2d(1.5, -2.0) + Eigen::MatrixXd::Constant(30, 1, 7.0);  // exactly affine
    learners::Ridge with_bias(1e-8, true), without(1e-8, false);
    Eigen::MatrixXd truth = D.xt * Eigen::Vector2d(1.5, -2.0) + Eigen::MatrixXd::Constant(5, 1, 7.0);
    CHECK((predict(with_bias, D) - truth).cwiseAbs().maxCoeff() < 1e-6);
    CHECK((predict(without, D) - truth).cwiseAbs().maxCoeff() > 1.0);  // a linear map cannot add 7
}

TEST_CASE("learners: meta-gradients through every closed-form learner match finite differences") {
    Data D = make_data(8, 6, 3, 3);
    learners::Ridge ridge(1e-2, true);
    learners::RandomFeatureRidge kernel(3, 20, 20, 1e-3, false, ad::Rng(4, 0));
    learners::ArcCosKernelRidge arccos(1e-2);
    for (learners::Learner* l : std::vector<learners::Learner*>{&ridge, &kernel, &arccos}) {
        CAPTURE(l->describe());
        ad::CheckFn f = [&](const std::vector<ad::Var>& in) {
            ad::Var pred = l->fit_predict(ad::constant(D.x), in[0], ad::constant(D.xt));
            return ad::mean(ad::square(pred - ad::constant(Eigen::MatrixXd::Ones(6, 1))));
        };
        CHECK(ad::gradcheck(f, {D.y}).ok);
    }
}

TEST_CASE("learners: the arc-cosine kernel is the limit of random ReLU features") {
    ad::Rng rng(5, 0);
    Eigen::MatrixXd a = rng.normal_matrix(4, 3), b = rng.normal_matrix(5, 3);
    const int K = 200000;
    Eigen::MatrixXd J = rng.normal_matrix(3, K);
    Eigen::MatrixXd fa = (a * J).cwiseMax(0.0), fb = (b * J).cwiseMax(0.0);
    Eigen::MatrixXd mc = fa * fb.transpose() / double(K);
    Eigen::MatrixXd exact = learners::arccos_kernel(a, b);
    CHECK((mc - exact).cwiseAbs().maxCoeff() < 0.03 * exact.cwiseAbs().maxCoeff());
    // k(x, x) = |x|^2 / 2 (theta = 0)
    CHECK(learners::arccos_kernel(a.topRows(1), a.topRows(1))(0, 0) == doctest::Approx(a.row(0).squaredNorm() / 2));
}

TEST_CASE("learners: a singular system is an error naming the learner") {
    Data D = make_data(4, 2, 2, 6);
    D.x.row(1) = D.x.row(0);  // duplicate points and no ridge: the dual system is singular
    D.x.row(3) = D.x.row(2);
    learners::ArcCosKernelRidge arccos(0.0);
    CHECK_THROWS_WITH_AS(predict(arccos, D),
                         doctest::Contains("arc-cosine kernel ridge (exact, lambda 0): ad::solve: the 4x4 matrix is "
                                           "singular"),
                         learners::LearnerError);
    learners::Ridge ridge(0.0, true);
    Data E = make_data(2, 2, 3, 7);  // 2 points, 3 weights and a bias, lambda 0: singular
    CHECK_THROWS_AS(predict(ridge, E), learners::LearnerError);
}

TEST_CASE("learners: random features are fixed or redrawn as asked") {
    ad::Rng task(8, 1);
    learners::RandomFeatureRidge fixed(3, 20, 20, 1e-3, false, ad::Rng(1, 0));
    Eigen::MatrixXd j0 = fixed.features();
    fixed.new_task(task);
    CHECK(fixed.features() == j0);
    learners::RandomFeatureRidge redrawn(3, 20, 100, 1e-3, true, ad::Rng(1, 0));
    Eigen::MatrixXd r0 = redrawn.features();
    redrawn.new_task(task);
    CHECK(redrawn.features().rows() == 3);
    CHECK(redrawn.features().cols() >= 20);
    CHECK(redrawn.features().cols() <= 100);
    CHECK_FALSE((redrawn.features().cols() == r0.cols() && redrawn.features() == r0));
    CHECK_THROWS_AS(learners::RandomFeatureRidge(3, 20, 100, 1e-3, false, ad::Rng(1, 0)), std::invalid_argument);
    CHECK_THROWS_AS(learners::Ridge(-1.0, false), std::invalid_argument);
}

TEST_CASE("learners: linear learners' prediction map H = fit_predict(x, I, x_test) gives H y = fit_predict(x, y, x_test)") {
    ad::Rng rng(4, 0);
    const Eigen::MatrixXd x = rng.normal_matrix(8, 3), xt = rng.normal_matrix(11, 3), y = rng.normal_matrix(8, 1);
    learners::Ridge ridge(1e-3, true);
    learners::RandomFeatureRidge kernel(3, 20, 20, 1e-3, false, ad::Rng(5, 0));
    learners::ArcCosKernelRidge arccos(1e-2);
    for (learners::Learner* l : std::vector<learners::Learner*>{&ridge, &kernel, &arccos}) {
        CAPTURE(l->describe());
        CHECK(l->linear_in_labels());
        ad::TapeScope scope;
        ad::NoGradGuard no_grad;
        const Eigen::MatrixXd H =
            l->fit_predict(ad::constant(x), ad::constant(Eigen::MatrixXd(Eigen::MatrixXd::Identity(8, 8))), ad::constant(xt))
                .value();
        const Eigen::MatrixXd direct = l->fit_predict(ad::constant(x), ad::constant(y), ad::constant(xt)).value();
        CHECK((H * y - direct).norm() <= 1e-10 * direct.norm());
    }
}
