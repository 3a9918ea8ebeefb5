// The MLP learner trained by unrolled gradient descent: meta-gradients through its whole
// training against central differences (SGD, momentum, Adam, minibatches, masks, positive
// weights), truncation, and the connectivity schemes of the connectome learner.
#include "learners/mlp.hpp"

#include <doctest/doctest.h>

#include "lanes_note.hpp"

using namespace occam;

namespace {
learners::UnrolledMLP make(const std::string& opt, int steps, int batch, learners::Connectivity conn = {},
                           int truncate = 0, ad::nn::Activation act = ad::nn::Activation::tanh,
                           bool checkpoint = false) {
    learners::InnerTraining t;
    t.optimizer = opt;
    t.lr = opt == "adam" ? 0.05 : 0.2;
    t.steps = steps;
    t.batch = batch;
    t.truncate = truncate;
    t.checkpoint = checkpoint;
    return learners::UnrolledMLP(ad::nn::MLP{{3, 6, 1}, act, ad::nn::OutputMap::identity}, t, std::move(conn));
}

/// A ReLU net (identity output) trained by plain SGD, with fused steps or op by op.
learners::UnrolledMLP relu_sgd(std::vector<int> widths, double lr, int steps, int batch, bool fused,
                               learners::Connectivity conn = {}, int truncate = 0) {
    learners::InnerTraining t;
    t.lr = lr;
    t.steps = steps;
    t.batch = batch;
    t.truncate = truncate;
    t.fused = fused;
    return learners::UnrolledMLP(ad::nn::MLP{std::move(widths), ad::nn::Activation::relu, ad::nn::OutputMap::identity},
                                 t, std::move(conn));
}

/// Two random inputs per hidden unit with positive weights (the connectome's constraints).
learners::Connectivity masked_positive() {
    learners::Connectivity c;
    c.scheme = "random";
    c.positive = true;
    return c;
}

struct Task {
    Eigen::MatrixXd x, xt, y, target;
};
Task make_task() {
    ad::Rng rng(11, 0);
    return {rng.normal_matrix(8, 3), rng.normal_matrix(5, 3), rng.normal_matrix(8, 1), rng.normal_matrix(5, 1)};
}

/// The tape's peak memory while `body` runs inside its own scope, above what was in use before.
template <class F>
std::size_t peak_tape_bytes(F&& body) {
    ad::Arena& arena = ad::tape().arena;
    arena.reset_peak();
    const std::size_t before = arena.bytes_in_use();
    {
        ad::TapeScope scope;
        body();
    }
    return arena.peak_bytes() - before;
}

/// The test loss of the trained learner as a function of the training labels.
ad::CheckFn meta_loss(learners::UnrolledMLP& l, const Task& T) {
    return [&l, &T](const std::vector<ad::Var>& in) {
        ad::Var pred = l.fit_predict(ad::constant(T.x), in[0], ad::constant(T.xt));
        return ad::mean(ad::square(pred - ad::constant(T.target)));
    };
}
/// One meta-gradient on the task: the learner's test predictions, the gradient of its test
/// loss with respect to the training labels, and the tape's peak memory meanwhile.
struct MetaRun {
    Eigen::MatrixXd pred, grad;
    std::size_t tape_bytes = 0;
};
MetaRun meta_run(learners::UnrolledMLP& l, const Task& T) {
    ad::Rng task(3, 1);
    l.new_task(task);
    MetaRun r;
    r.tape_bytes = peak_tape_bytes([&] {
        ad::Var y = ad::param(T.y);
        ad::Var pred = l.fit_predict(ad::constant(T.x), y, ad::constant(T.xt));
        r.pred = pred.value();
        r.grad = ad::grad(ad::mean(ad::square(pred - ad::constant(T.target))), {y})[0].value();
    });
    return r;
}
}  // namespace

TEST_CASE("mlp: meta-gradients through unrolled training match central differences") {
    const Task T = make_task();
    learners::Connectivity random;
    random.scheme = "random";
    learners::Connectivity positive = random;
    positive.positive = true;
    struct Case {
        const char* name;
        learners::UnrolledMLP learner;
    } cases[] = {
        {"sgd full batch", make("sgd", 4, 0)}, {"momentum", make("momentum", 4, 0)},
        {"adam", make("adam", 4, 0)},          {"sgd minibatches", make("sgd", 4, 5)},
        {"masked", make("sgd", 4, 0, random)}, {"masked and positive", make("sgd", 4, 0, positive)},
    };
    for (auto& c : cases) {
        CAPTURE(c.name);
        ad::Rng task(3, 1);
        c.learner.new_task(task);
        ad::CheckReport r = ad::gradcheck(meta_loss(c.learner, T), {T.y});
        INFO(r.message());
        CHECK(r.ok);
        CHECK(r.max_abs_diff < 1e-6);
    }
}

TEST_CASE("mlp: meta-gradients through fused SGD steps match central differences") {
    // The fused step's hand-written backward checked on its own (not only against the unroll):
    // ReLU is piecewise linear, so central differences with h = 1e-6 are exact away from kinks.
    const Task T = make_task();
    for (int batch : {0, 5}) {
        for (bool masked : {false, true}) {
            CAPTURE(batch);
            CAPTURE(masked);
            auto l = relu_sgd({3, 6, 5, 1}, 0.2, 4, batch, true, masked ? masked_positive() : learners::Connectivity{});
            ad::Rng task(3, 1);
            l.new_task(task);
            ad::CheckReport r = ad::gradcheck(meta_loss(l, T), {T.y});
            INFO(r.message());
            CHECK(r.ok);
            CHECK(r.max_abs_diff < 1e-6);
        }
    }
}

TEST_CASE("mlp: truncating at every step equals the full unroll and shorter truncation cuts the path") {
    const Task T = make_task();
    auto meta_grad = [&](int truncate) {
        auto l = make("sgd", 5, 0, {}, truncate);
        ad::Rng task(3, 1);
        l.new_task(task);
        ad::TapeScope scope;
        ad::Var y = ad::param(T.y);
        ad::Var loss = meta_loss(l, T)({y});
        return Eigen::MatrixXd(ad::grad(loss, {y})[0].value());
    };
    const Eigen::MatrixXd full = meta_grad(0);
    CHECK(meta_grad(5) == full);
    const Eigen::MatrixXd last = meta_grad(1);
    CHECK(last.allFinite());
    CHECK((last - full).norm() > 1e-6 * full.norm());
}

TEST_CASE("mlp: step checkpointing gives the full unroll's predictions and meta-gradient with a short tape") {
    const Task T = make_task();
    const learners::Connectivity positive = masked_positive();
    auto run = [&](const std::string& opt, int batch, const learners::Connectivity& conn, int truncate,
                   bool checkpoint) {
        auto l = make(opt, 12, batch, conn, truncate, ad::nn::Activation::relu, checkpoint);
        return meta_run(l, T);
    };
    struct Case {
        const char* name;
        std::string opt;
        int batch;
        learners::Connectivity conn;
        int truncate;
    } cases[] = {
        {"sgd", "sgd", 0, {}, 0},
        {"momentum", "momentum", 0, {}, 0},
        {"adam", "adam", 0, {}, 0},
        {"minibatches", "sgd", 5, {}, 0},
        {"masked positive", "sgd", 0, positive, 0},
        {"adam truncated", "adam", 5, {}, 4},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        const MetaRun full = run(c.opt, c.batch, c.conn, c.truncate, false);
        const MetaRun ckpt = run(c.opt, c.batch, c.conn, c.truncate, true);
        // The forward pass runs the same ops on the same values: identical predictions. The
        // backward pass sums the same terms in another order: equal to rounding.
        CHECK(ckpt.pred == full.pred);
        CHECK((ckpt.grad - full.grad).norm() <= 1e-12 * full.grad.norm());
        CHECK(full.grad.norm() > 0);
        if (c.truncate == 0) CHECK(ckpt.tape_bytes < full.tape_bytes / 2);
    }
}

TEST_CASE("mlp: fused SGD steps (hand-written Hessian-vector backward) give the full unroll's meta-gradient") {
    const Task T = make_task();
    const learners::Connectivity positive = masked_positive();
    struct Case {
        const char* name;
        int batch;
        learners::Connectivity conn;
        int truncate;
    } cases[] = {{"full batch", 0, {}, 0},
                 {"minibatches", 5, {}, 0},
                 {"masked positive", 0, positive, 0},
                 {"truncated", 5, {}, 4}};
    for (const Case& c : cases) {
        CAPTURE(c.name);
        auto run = [&](bool fused) {
            auto l = relu_sgd({3, 6, 5, 1}, 0.2, 12, c.batch, fused, c.conn, c.truncate);
            return meta_run(l, T);
        };
        const MetaRun full = run(false), fused = run(true);
        CHECK((fused.pred - full.pred).norm() <= 1e-12 * full.pred.norm());
        CHECK((fused.grad - full.grad).norm() <= 1e-10 * full.grad.norm());
        CHECK(full.grad.norm() > 0);
    }
    learners::InnerTraining adam;
    adam.optimizer = "adam";
    adam.fused = true;
    CHECK_THROWS_AS(learners::UnrolledMLP(ad::nn::MLP{{3, 4, 1}}, adam, {}), std::invalid_argument);
}

TEST_CASE("mlp: fused steps give the same bits with the AVX2 and the AVX-512 kernels") {
    note_when_copies_are_one();
    // Widths and batches that are not whole blocks of 8 (the padding rows must stay inert),
    // a masked positive first layer and two hidden layers; also against the full unroll.
    ad::Rng rng(12, 0);
    const Task T{rng.normal_matrix(21, 5), rng.normal_matrix(9, 5), rng.normal_matrix(21, 1), rng.normal_matrix(9, 1)};
    for (int batch : {0, 13}) {
        CAPTURE(batch);
        auto run = [&](bool fused) {
            auto l = relu_sgd({5, 7, 4, 1}, 0.1, 7, batch, fused, masked_positive());
            return meta_run(l, T);
        };
        const MetaRun wide = run(true);
        lanes::wide_allowed() = false;
        const MetaRun narrow = run(true);
        lanes::wide_allowed() = true;
        CHECK(wide.pred == narrow.pred);
        CHECK(wide.grad == narrow.grad);
        const MetaRun full = run(false);
        CHECK((wide.pred - full.pred).norm() <= 1e-12 * full.pred.norm());
        CHECK((wide.grad - full.grad).norm() <= 1e-10 * full.grad.norm());
        CHECK(full.grad.norm() > 0);
    }
}

TEST_CASE("mlp: checkpointed tape memory does not grow with the step's activations") {
    // 40 steps on 8 points vs 40 steps on 64 points: the full unroll's tape grows with the
    // batch, the checkpointed one holds one parameter vector per step plus one step's graph.
    Eigen::MatrixXd x = ad::Rng(1, 0).normal_matrix(64, 3), y = ad::Rng(2, 0).normal_matrix(64, 1);
    auto peak = [&](int n, bool checkpoint) {  // peak tape bytes of one meta-gradient
        auto l = make("sgd", 40, 0, {}, 0, ad::nn::Activation::relu, checkpoint);
        ad::Rng task(3, 1);
        l.new_task(task);
        return double(peak_tape_bytes([&] {
            ad::Var yv = ad::param(Eigen::MatrixXd(y.topRows(n)));
            ad::grad(ad::sum(l.fit_predict(ad::constant(Eigen::MatrixXd(x.topRows(n))), yv, ad::constant(x))), {yv});
        }));
    };
    const double full_small = peak(8, false), full_big = peak(64, false);
    const double ckpt_small = peak(8, true), ckpt_big = peak(64, true);
    CHECK(full_big > 3 * full_small);
    // The checkpointed tape grows by about one step's activations, not 40 steps' worth.
    CHECK(ckpt_big - ckpt_small < 2 * (full_big - full_small) / 40);
    CHECK(ckpt_big < full_big / 5);
}

TEST_CASE("mlp: values without gradients equal the values of a meta-training call") {
    const Task T = make_task();
    auto l = make("adam", 6, 4);
    ad::Rng task(5, 1);
    l.new_task(task);
    ad::TapeScope scope;
    Eigen::MatrixXd with_grad = l.fit_predict(ad::constant(T.x), ad::param(T.y), ad::constant(T.xt)).value();
    Eigen::MatrixXd plain;
    {
        ad::NoGradGuard no_grad;
        plain = l.fit_predict(ad::constant(T.x), ad::constant(T.y), ad::constant(T.xt)).value();
    }
    CHECK(with_grad == plain);
}

TEST_CASE("mlp: connectivity schemes draw 2 inputs per hidden unit with the asked probabilities") {
    learners::Connectivity c;
    c.fan_in = 2;
    ad::Rng rng(7, 0);
    const int hidden = 20000;
    c.scheme = "random";
    Eigen::MatrixXd m = learners::draw_mask(c, hidden, 5, rng);
    CHECK((m.rowwise().sum().array() == 2.0).all());
    CHECK(m.col(0).mean() == doctest::Approx(0.4).epsilon(0.05));
    c.scheme = "biased";
    c.p = {0.6, 0.1, 0.1, 0.1, 0.1};
    m = learners::draw_mask(c, hidden, 5, rng);
    CHECK((m.rowwise().sum().array() == 2.0).all());
    // P(input 0 among the two) = 0.6 + 4 * 0.1 * 0.6 / 0.9
    CHECK(m.col(0).mean() == doctest::Approx(0.6 + 0.4 * 0.6 / 0.9).epsilon(0.02));
    c.scheme = "grouped";
    c.groups = {{0, 1}, {2, 3, 4}};
    c.group_weights = {{0.85, 0.05}, {0.4, 0.1}};
    m = learners::draw_mask(c, hidden, 5, rng);
    CHECK((m.rowwise().sum().array() == 2.0).all());
    // P(units joining 0 and 1) = P(first in {0,1}) * 0.85 = 0.4 * 0.85
    const double both01 = (m.col(0).array() * m.col(1).array()).mean();
    CHECK(both01 == doctest::Approx(0.4 * 0.85).epsilon(0.05));
}

TEST_CASE("mlp: bad settings are errors") {
    learners::InnerTraining t;
    t.optimizer = "rmsprop";
    CHECK_THROWS_AS(learners::UnrolledMLP(ad::nn::MLP{{3, 4, 1}}, t, {}), std::invalid_argument);
    learners::Connectivity c;
    c.scheme = "biased";
    c.p = {1, 1};
    CHECK_THROWS_AS(learners::UnrolledMLP(ad::nn::MLP{{3, 4, 1}}, {}, c), std::invalid_argument);
    auto l = make("sgd", 2, 0);
    ad::TapeScope scope;
    CHECK_THROWS_AS(l.fit_predict(ad::constant(Eigen::MatrixXd::Ones(4, 3)), ad::constant(Eigen::MatrixXd::Ones(4, 1)),
                                  ad::constant(Eigen::MatrixXd::Ones(2, 3))),
                    learners::LearnerError);  // no new_task yet
}
