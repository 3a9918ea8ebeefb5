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

// ---- Learner specs and the sizes they imply, checked before a run (experiment::validate):
// a value that cannot be read, or a matrix that cannot fit, is one line naming the setting and
// the size, never std::bad_alloc or an int overflow half-way through a run.

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "experiment/meta_learning.hpp"
#include "experiment/presets.hpp"

namespace {
/// validate's message for `c`, or "" if it accepts it.
std::string validate_error(const experiment::Config& c) {
    try {
        experiment::validate(c);
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("learner specs: numbers are read whole") {
    const experiment::Config c;
    const auto s = experiment::parse_learner_spec("kernel:features=10-20,ridge=0.5", c);
    CHECK(s.features_min == 10);
    CHECK(s.features_max == 20);
    CHECK(s.ridge == 0.5);
    auto error = [&](const std::string& spec) {
        try {
            experiment::parse_learner_spec(spec, c);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    // std::stoi read "20x" as 20: the second number of a range was never checked.
    CHECK(error("kernel:features=10-20x") ==
          "learner 'kernel:features=10-20x': features must be K or MIN-MAX, integers with 1 <= MIN <= MAX <= "
          "2147483647 (got '10-20x')");
    CHECK(has(error("kernel:features=20x"), "features must be K or MIN-MAX"));
    CHECK(has(error("kernel:features=99999999999"), "features must be K or MIN-MAX"));
    CHECK(has(error("kernel:features=30-10"), "features must be K or MIN-MAX"));
    CHECK(has(error("kernel:features=0"), "features must be K or MIN-MAX"));
    CHECK(error("kernel:ridge=nan") == "learner 'kernel:ridge=nan': ridge: 'nan' is not a finite number");
    CHECK(has(error("kernel:ridge=-1"), "ridge: '-1' is out of range (must be >= 0)"));
    CHECK(has(error("kernel:ridge=0.1x"), "is not a number"));
    CHECK(has(error("kernel:features"), "bad setting"));

    experiment::Config m;
    for (const char* hidden : {"20,0", "20,-5", "1.7", "1e20", "20x"}) {
        CAPTURE(hidden);
        m.learner_hidden = hidden;
        CHECK_THROWS_WITH_AS(experiment::parse_learner_spec("mlp", m), doctest::Contains("--learner-hidden"),
                             std::invalid_argument);
    }
    m = experiment::Config{};
    m.connectivity = "biased:0.5,nan,0.5";
    CHECK_THROWS_WITH_AS(experiment::parse_learner_spec("mlp", m), doctest::Contains("--connectivity: 'nan'"),
                         std::invalid_argument);
}

TEST_CASE("validate: sizes that cannot fit are refused with the size, before anything is allocated") {
    experiment::Config c;  // kernel, sphere:3, 20 + 80 points
    CHECK(validate_error(c).empty());
    auto refused = [&](const experiment::Config& bad, const std::string& part) {
        const std::string msg = validate_error(bad);
        CAPTURE(msg);
        CHECK(has(msg, part));
        CHECK(msg.find('\n') == std::string::npos);
    };
    c.learner = "kernel:features=100000000";
    refused(c, "learner 'kernel:features=100000000' needs a 80 x 100000000 matrix of test features");
    c = {};
    c.features_min = c.features_max = 2000000000;
    refused(c, "learner 'kernel' with --features 2000000000 needs a 3 x 2000000000 weight matrix");
    c = {};
    c.n_train = 1000000000;
    refused(c, "needs a");
    c = {};
    c.n_train = c.n_test = 2000000000;  // their sum overflows int
    refused(c, "--train + --test needs a 4000000000 x 3 matrix of task inputs");
    c = {};
    c.meta_hidden = 100000;
    refused(c, "--meta-hidden needs a 100000 x 100000 hidden weight matrix");
    c = {};
    c.probe = 1000000000;
    refused(c, "--probe needs a 1000000000 x 3 matrix of probe inputs");
    c = {};
    c.meta_optimizer = "des";
    c.population = 100000000;
    refused(c, "--population needs a 100000000 x");
    c = {};
    c.learner = "arccos";
    c.n_train = 100000;
    refused(c, "learner 'arccos' needs a 100000 x 100000 Gram matrix");
    c = {};
    c.divergence = "energy";
    c.n_test = 60000;
    refused(c, "--divergence energy needs a 60020 x 60020 matrix of pairwise distances");
    c = {};
    c.learner = "mlp";
    c.learner_hidden = "100000,100000";
    refused(c, "weight matrix");
    // Each matrix fits, all of them together do not: 2e9 inner steps of 521 parameters (8 TB).
    c = {};
    c.learner = "mlp";
    c.inner_steps = 2000000000;
    refused(c, "this machine has");
    // The sizes of a normal run pass, and so do the presets.
    for (const auto& p : experiment::presets()) {
        CAPTURE(p.name);
        CHECK(validate_error(p.config).empty());
    }
}

TEST_CASE("validate: absurd values are refused naming the flag") {
    const double nan = std::nan(""), inf = HUGE_VAL;
    struct Case {
        const char* flag;
        std::function<void(experiment::Config&)> set;
    };
    const std::vector<Case> cases = {
        {"--exec-timeout", [](auto& c) { c.exec_timeout = 1e300; }},
        {"--exec-timeout", [&](auto& c) { c.exec_timeout = nan; }},
        {"--exec-timeout", [](auto& c) { c.exec_timeout = 0; }},
        {"--lr", [&](auto& c) { c.lr = inf; }},
        {"--lr", [&](auto& c) { c.lr = nan; }},
        {"--inner-lr", [&](auto& c) { c.inner_lr = nan; }},
        {"--inner-lr", [](auto& c) { c.inner_lr = 0; }},
        {"--ridge", [&](auto& c) { c.ridge = inf; }},
        {"--sigma", [&](auto& c) { c.sigma = inf; }},
        {"--blur", [&](auto& c) { c.blur = inf; }},
        {"--div-weight", [&](auto& c) { c.div_weight = inf; }},
        {"--mse-weight", [&](auto& c) { c.mse_weight = nan; }},
        {"--orth-weight", [&](auto& c) { c.orth_weight = inf; }},
        {"--scaling", [](auto& c) { c.scaling = 0.999999; }},  // millions of Sinkhorn iterations
        {"--inner-steps", [](auto& c) { c.inner_steps = 0; }},
        {"--inner-batch", [](auto& c) { c.inner_batch = -1; }},
        {"--truncate", [](auto& c) { c.truncate = -1; }},
        {"--threads", [](auto& c) { c.threads = 0; }},
        {"--threads", [](auto& c) { c.threads = 1000000; }},
        {"--meta-depth", [](auto& c) { c.meta_depth = 1000000; }},
        {"--checkpoint-every", [](auto& c) { c.checkpoint_every = 0; }},
        {"--functions x --steps", [](auto& c) { c.functions = 100000, c.steps = 100000; }},
    };
    for (const Case& k : cases) {
        experiment::Config c;
        k.set(c);
        const std::string msg = validate_error(c);
        CAPTURE(msg);
        CHECK(msg.rfind(k.flag, 0) == 0);
    }
    experiment::Config c;
    c.exec_timeout = 604800;  // a week is allowed
    CHECK(validate_error(c).empty());
}

TEST_CASE("warnings: a CSV file with fewer rows than a task's points says they are drawn with replacement") {
    const auto path = std::filesystem::temp_directory_path() / "occam-warnings-test.csv";
    {
        std::ofstream out(path);
        for (int i = 0; i < 30; ++i) out << i << "," << 0.5 * i << "\n";
    }
    experiment::Config c;
    c.inputs = "file:" + path.string();
    c.n_train = 20;
    c.n_test = 10;
    CHECK(experiment::warnings(c).empty());  // 30 rows for 30 points: drawn without replacement
    c.n_test = 80;
    const auto w = experiment::warnings(c);
    REQUIRE(w.size() == 1);
    CHECK(w[0] == "inputs file '" + path.string() +
                      "' has 30 rows, fewer than the 100 points of a task (--train 20 + --test 80): points are drawn "
                      "with replacement, so a task repeats points and a point can be in both its training and its "
                      "test set");
    CHECK(experiment::warnings(experiment::Config{}).empty());
    std::filesystem::remove(path);
}
