// The CNN (ad::nn::ConvNet) and the CNN learner trained by unrolled SGD (the paper's Fig. 6
// learner, shrunk): the network against the ops composed by hand, PyTorch's initialisation
// bounds, and meta-gradients through its training against central differences, plain and with
// checkpointed steps.
#include <doctest/doctest.h>

#include "learners/mlp.hpp"

using namespace occam;

namespace {

/// Two 1 x 6 x 6 images' worth of net: conv(1->2, 3x3, pad 1) - ReLU - pool 2 - linear(18 -> 1).
/// With kernel 5 (pad 2) the layer's backward takes its winners' path (patches of 25 entries, as
/// fig6's learner), with 3 the dense products.
ad::nn::ConvNet tiny_net(int kernel = 3) {
    ad::nn::ConvNet net;
    net.in_channels = 1, net.height = 6, net.width = 6;
    net.channels = {2};
    net.kernel = kernel, net.padding = kernel / 2;
    return net;
}

learners::UnrolledCNN tiny_learner(const std::string& optimizer, int batch, bool checkpoint, bool fused = false,
                                   int kernel = 3) {
    learners::InnerTraining t;
    t.optimizer = optimizer;
    t.lr = optimizer == "adam" ? 0.05 : 0.1;
    t.steps = 3;
    t.batch = batch;
    t.checkpoint = checkpoint;
    t.fused = fused;
    return learners::UnrolledCNN(tiny_net(kernel), t, {});
}

struct Task {
    Eigen::MatrixXd x, xt, y, target;
};
Task make_task() {
    ad::Rng rng(5, 0);
    return {rng.normal_matrix(6, 36), rng.normal_matrix(4, 36), rng.normal_matrix(6, 1), rng.normal_matrix(4, 1)};
}

ad::CheckFn meta_loss(learners::UnrolledCNN& l, const Task& T) {
    return [&l, &T](const std::vector<ad::Var>& in) {
        ad::Var pred = l.fit_predict(ad::constant(T.x), in[0], ad::constant(T.xt));
        return ad::mean(ad::square(pred - ad::constant(T.target)));
    };
}

}  // namespace

TEST_CASE("cnn: the network is conv - relu - pool - linear, with PyTorch's initialisation") {
    const ad::nn::ConvNet net = tiny_net();
    REQUIRE(net.features() == 18);
    const auto shapes = net.shapes();
    REQUIRE(shapes.size() == 4);
    CHECK(shapes[0] == std::pair<int, int>(2, 9));
    CHECK(shapes[2] == std::pair<int, int>(1, 18));
    ad::Rng rng(1, 2);
    const auto p = net.init(rng);
    CHECK(p[0].cwiseAbs().maxCoeff() <= 1.0 / 3.0);  // fan-in 9
    CHECK(p[1].cwiseAbs().maxCoeff() <= 1.0 / 3.0);
    CHECK(p[2].cwiseAbs().maxCoeff() <= 1.0 / std::sqrt(18.0));
    CHECK(p[2].cwiseAbs().maxCoeff() > 0.5 / std::sqrt(18.0));  // drawn from the whole range

    ad::TapeScope scope;
    const Eigen::MatrixXd x = rng.normal_matrix(3, 36);
    const std::vector<ad::Var> P = ad::params(p);
    const Eigen::MatrixXd y = ad::value(net(P, ad::constant(x)));
    const ad::Var h = ad::max_pool2d(ad::relu(ad::conv2d(ad::constant(x), P[0], P[1], net.geometry(0))), 2, 6, 6);
    const Eigen::MatrixXd want = ad::value(ad::nn::Linear::apply(h, P[2], P[3]));
    CHECK((y - want).cwiseAbs().maxCoeff() == 0.0);

    ad::nn::ConvNet deep = net;
    deep.height = deep.width = 28;
    deep.channels = {16, 32};
    deep.kernel = 5, deep.padding = 2;
    CHECK(deep.features() == 32 * 7 * 7);
    CHECK(deep.geometry(1).channels == 16);
    CHECK(deep.geometry(1).height == 14);
    deep.channels = {4, 4, 4, 4, 4};
    CHECK_THROWS_WITH_AS(deep.shapes(), doctest::Contains("too small"), std::invalid_argument);
}

TEST_CASE("cnn learner: meta-gradients through unrolled training, op by op and fused, match central differences") {
    // ReLU and max-pooling are piecewise linear: central differences with a small step are
    // exact away from kinks and ties, which random normal data keeps clear of.
    // ... and through fused steps, whose backward is written by hand (plain SGD only).
    const Task T = make_task();
    struct Case {
        const char* optimizer;
        bool fused;
        int kernel = 3;
    };
    for (const Case c :
         {Case{"sgd", false}, Case{"momentum", false}, Case{"adam", false}, Case{"sgd", true}, Case{"sgd", true, 5}})
        for (int batch : {0, 4}) {
            CAPTURE(c.optimizer);
            CAPTURE(c.fused);
            CAPTURE(c.kernel);
            CAPTURE(batch);
            auto l = tiny_learner(c.optimizer, batch, false, c.fused, c.kernel);
            ad::Rng task(3, 1);
            l.new_task(task);
            ad::CheckReport r = ad::gradcheck(meta_loss(l, T), {T.y});
            INFO(r.message());
            CHECK(r.ok);
            CHECK(r.max_abs_diff < 1e-6);
        }
}

TEST_CASE("cnn learner: checkpointed and fused steps give the op-by-op predictions and meta-gradient") {
    const Task T = make_task();
    for (int kernel : {3, 5}) {
        CAPTURE(kernel);
        Eigen::MatrixXd pred[3], grad[3];
        for (int k = 0; k < 3; ++k) {
            auto l = tiny_learner("sgd", 4, k == 1, k == 2, kernel);
            ad::Rng task(3, 1);
            l.new_task(task);
            ad::TapeScope scope;
            ad::Var y = ad::param(T.y);
            ad::Var p = l.fit_predict(ad::constant(T.x), y, ad::constant(T.xt));
            pred[k] = p.value();
            grad[k] = ad::grad(ad::mean(ad::square(p - ad::constant(T.target))), {y})[0].value();
        }
        CHECK(pred[0] == pred[1]);
        CHECK((grad[0] - grad[1]).cwiseAbs().maxCoeff() < 1e-12);
        // The fused step sums in another order (its own loops against the op-by-op nodes).
        CHECK((pred[0] - pred[2]).cwiseAbs().maxCoeff() < 1e-12);
        CHECK((grad[0] - grad[2]).cwiseAbs().maxCoeff() < 1e-10);
        CHECK(grad[0].cwiseAbs().maxCoeff() > 1e-3);  // not a vacuous comparison of zeros
    }
}

TEST_CASE("cnn learner: the MLP's sparse connectivity, and fused steps where they do not apply, are refused") {
    learners::InnerTraining t;
    learners::Connectivity sparse;
    sparse.scheme = "random";
    CHECK_THROWS_WITH_AS(learners::UnrolledCNN(tiny_net(), t, sparse), doctest::Contains("cnn learner"),
                         std::invalid_argument);
    t.fused = true;
    ad::nn::ConvNet two = tiny_net();
    two.channels = {2, 2};
    two.height = two.width = 12;
    CHECK_THROWS_WITH_AS(learners::UnrolledCNN(two, t, {}), doctest::Contains("one conv layer"), std::invalid_argument);
    t.optimizer = "adam";
    CHECK_THROWS_AS(learners::UnrolledCNN(tiny_net(), t, {}), std::invalid_argument);
}

TEST_CASE("fused_cnn_step: a batch row outside the images, or images not one per column, is refused") {
    const ad::nn::ConvNet net = tiny_net(5);
    const learners::FusedCnn fc{net.geometry(0), 2, net.pool, 0.1};
    ad::TapeScope scope;
    const Task T = make_task();
    const ad::Var images = ad::constant(T.x.transpose()), y = ad::param(T.y);
    const ad::Var packed = ad::param(Eigen::MatrixXd::Constant(fc.packed_size(), 1, 0.1));
    CHECK_NOTHROW(learners::fused_cnn_step(fc, images, {0, 5}, packed, y));
    CHECK_THROWS_WITH_AS(learners::fused_cnn_step(fc, images, {0, 6}, packed, y), doctest::Contains("batch row 6"),
                         ad::ShapeError);
    CHECK_THROWS_WITH_AS(learners::fused_cnn_step(fc, images, {-1}, packed, y), doctest::Contains("batch row -1"),
                         ad::ShapeError);
    CHECK_THROWS_AS(learners::fused_cnn_step(fc, ad::constant(T.x), {}, packed, y), ad::ShapeError);  // x, not x^T
}
