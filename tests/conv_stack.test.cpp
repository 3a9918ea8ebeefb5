// Two conv-relu-pool layers' backward taken together (kernels/conv_relu_pool_pair.hpp) against
// the layers taken one at a time, and the stack as one tape node (ad::conv2d_relu_pool_stack)
// against the chain of conv2d_relu_pool nodes.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "kernels/conv_relu_pool_pair.hpp"

using namespace occam;
using kernels::ConvGeometry;

namespace {

/// Two layers' forward and every gradient, by the pair and by the layers one at a time.
struct PairRun {
    ConvGeometry g1, g2;
    int c1 = 0, c2 = 0, pool = 2, n = 0;
    Eigen::MatrixXd x, w1, b1, p1, w2, b2, y, gy;
    std::vector<std::uint16_t> win1, win2;

    PairRun(ad::Rng& rng, ConvGeometry lower, int lower_channels, ConvGeometry upper, int upper_channels, int pool_,
            int images)
        : g1(lower), g2(upper), c1(lower_channels), c2(upper_channels), pool(pool_), n(images) {
        x = rng.normal_matrix(n, int(g1.in_size()));
        w1 = rng.normal_matrix(c1, g1.patch()), b1 = rng.normal_matrix(1, c1);
        w2 = rng.normal_matrix(c2, g2.patch()), b2 = rng.normal_matrix(1, c2);
        const int cols1 = c1 * (g1.out_h() / pool) * (g1.out_w() / pool);
        const int cols2 = c2 * (g2.out_h() / pool) * (g2.out_w() / pool);
        p1.resize(n, cols1), y.resize(n, cols2);
        win1.resize(std::size_t(n) * cols1), win2.resize(std::size_t(n) * cols2);
        forward();
        gy = rng.normal_matrix(n, cols2);
    }
    void forward() {
        kernels::conv_relu_pool_forward(g1, pool, n, x.data(), w1.data(), b1.data(), c1, p1.data(), win1.data());
        kernels::conv_relu_pool_forward(g2, pool, n, p1.data(), w2.data(), b2.data(), c2, y.data(), win2.data());
    }
    struct Grads {
        Eigen::MatrixXd dw1, db1, dw2, db2;
    };
    Grads blank() const {
        return {Eigen::MatrixXd::Constant(c1, g1.patch(), -7), Eigen::MatrixXd::Constant(1, c1, -7),
                Eigen::MatrixXd::Constant(c2, g2.patch(), -7), Eigen::MatrixXd::Constant(1, c2, -7)};
    }
    /// The layers one at a time: the upper one's input gradient whole, then the lower one's.
    Grads layered() const {
        Grads r = blank();
        Eigen::MatrixXd dp1(n, p1.cols());
        kernels::conv_relu_pool_backward(g2, pool, n, p1.data(), w2.data(), c2, win2.data(), gy.data(), dp1.data(),
                                         r.dw2.data(), r.db2.data());
        kernels::conv_relu_pool_backward(g1, pool, n, x.data(), w1.data(), c1, win1.data(), dp1.data(), nullptr,
                                         r.dw1.data(), r.db1.data());
        return r;
    }
    bool pair(Grads& r, bool wide) const {
        lanes::wide_allowed() = wide;
        const bool ok = kernels::conv_relu_pool_pair_backward(g1, g2, pool, n, x.data(), c1, win1.data(), p1.data(),
                                                              w2.data(), c2, win2.data(), gy.data(), r.dw1.data(),
                                                              r.db1.data(), r.dw2.data(), r.db2.data());
        lanes::wide_allowed() = true;
        return ok;
    }
};

/// Equal to the bit, NaNs included (NaN == NaN here).
bool same_bits(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
    if (a.size() != b.size()) return false;
    for (Eigen::Index k = 0; k < a.size(); ++k)
        if (!(a.data()[k] == b.data()[k] || (std::isnan(a.data()[k]) && std::isnan(b.data()[k])))) return false;
    return true;
}
/// Equal to rounding: within 1e-12 of the largest entry.
bool close(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
    return a.size() == b.size() && (a - b).cwiseAbs().maxCoeff() <= 1e-12 * std::max(1.0, b.cwiseAbs().maxCoeff());
}

}  // namespace

TEST_CASE("conv_relu_pool_pair_backward: the upper layer's bits and the lower layer's gradient to rounding") {
    // fig6's meta-learner (two blocks of images: 48 and 5); a lower layer of 3 channels, 5 x 5
    // kernels and 12 output channels (lanes 12-15 of the second block unused) whose last conv row
    // and column pooling drops; stride 2 with 3 x 3 pools and 20 channels (three blocks); 32
    // channels (four) and 1 (one lane used); both lane widths, which must agree to the bit.
    struct Case {
        ConvGeometry g1;
        int c1;
        ConvGeometry g2;
        int c2, pool, n;
    };
    const Case cases[] = {
        {{.channels = 1, .height = 28, .width = 28, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 16,
         {.channels = 16, .height = 14, .width = 14, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 32, 2, 53},
        {{.channels = 3, .height = 11, .width = 9, .kernel_h = 5, .kernel_w = 5, .padding = 2}, 12,
         {.channels = 12, .height = 5, .width = 4, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 7, 2, 29},
        {{.channels = 2, .height = 20, .width = 20, .kernel_h = 3, .kernel_w = 3, .stride = 2, .padding = 1}, 20,
         {.channels = 20, .height = 3, .width = 3, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 5, 3, 9},
        {{.channels = 1, .height = 8, .width = 8, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 32,
         {.channels = 32, .height = 4, .width = 4, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 3, 2, 17},
        {{.channels = 1, .height = 8, .width = 8, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 1,
         {.channels = 1, .height = 4, .width = 4, .kernel_h = 5, .kernel_w = 5, .padding = 2}, 4, 2, 11},
    };
    ad::Rng rng(31, 2);
    for (const Case& c : cases) {
        CAPTURE(c.c1);
        CAPTURE(c.n);
        const PairRun run(rng, c.g1, c.c1, c.g2, c.c2, c.pool, c.n);
        REQUIRE(kernels::conv_relu_pool_pair_applies(c.g1, c.c1, c.g2, c.pool));
        const PairRun::Grads want = run.layered();
        PairRun::Grads wide = run.blank(), narrow = run.blank();
        REQUIRE(run.pair(wide, true));
        REQUIRE(run.pair(narrow, false));
        CHECK(same_bits(wide.dw2, want.dw2));
        CHECK(same_bits(wide.db2, want.db2));
        CHECK(close(wide.dw1, want.dw1));
        CHECK(close(wide.db1, want.db1));
        CHECK(want.dw1.cwiseAbs().maxCoeff() > 0.1);  // relu kept something: the check means something
        CHECK(same_bits(wide.dw1, narrow.dw1));
        CHECK(same_bits(wide.db1, narrow.db1));
        CHECK(same_bits(wide.dw2, narrow.dw2));
    }
}

TEST_CASE("conv_relu_pool_pair_backward: stacks it does not take, and values it declines") {
    ad::Rng rng(32, 2);
    const ConvGeometry g1{.channels = 1, .height = 12, .width = 12, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    const ConvGeometry g2{.channels = 8, .height = 6, .width = 6, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    // More than 32 lower channels; an upper layer whose input is not the lower one's output; a
    // patch short enough for the dense path; a pool wider than 4 x 4.
    CHECK_FALSE(kernels::conv_relu_pool_pair_applies(g1, 40, {.channels = 40, .height = 6, .width = 6, .kernel_h = 3,
                                                              .kernel_w = 3, .padding = 1}, 2));
    CHECK_FALSE(kernels::conv_relu_pool_pair_applies(g1, 8, {.channels = 8, .height = 5, .width = 6, .kernel_h = 3,
                                                             .kernel_w = 3, .padding = 1}, 2));
    CHECK_FALSE(kernels::conv_relu_pool_pair_applies(g1, 8, {.channels = 8, .height = 6, .width = 6, .kernel_h = 1,
                                                             .kernel_w = 1}, 2));
    const ConvGeometry big{.channels = 1, .height = 25, .width = 25, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    CHECK_FALSE(kernels::conv_relu_pool_pair_applies(big, 8, {.channels = 8, .height = 5, .width = 5, .kernel_h = 3,
                                                              .kernel_w = 3, .padding = 1}, 5));
    CHECK(kernels::conv_relu_pool_pair_applies(g1, 8, g2, 2));

    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    SUBCASE("a NaN pixel, an infinite input of the upper layer, a NaN upper weight: declined") {
        for (int which = 0; which < 3; ++which) {
            CAPTURE(which);
            PairRun run(rng, g1, 8, g2, 6, 2, 19);
            if (which == 0) run.x(5, 30) = nan;
            if (which == 1) run.p1(3, 17) = inf;
            if (which == 2) run.w2(4, 11) = nan;
            PairRun::Grads got = run.blank();
            CHECK_FALSE(run.pair(got, true));
            CHECK_FALSE(run.pair(got, false));
        }
    }
    SUBCASE("NaN in the output gradient: taken, with NaNs where the layers one at a time put them") {
        PairRun run(rng, g1, 8, g2, 6, 2, 19);
        for (int k = 0; k < run.gy.cols(); ++k)  // a kept entry of image 4
            if ((run.win2[std::size_t(k) * run.n + 4] & kernels::kReluZero) == 0) {
                run.gy(4, k) = nan;
                break;
            }
        const PairRun::Grads want = run.layered();
        PairRun::Grads got = run.blank();
        REQUIRE(run.pair(got, true));
        REQUIRE(want.dw1.hasNaN());
        for (const auto& [a, b] : {std::pair{&got.dw1, &want.dw1}, {&got.db1, &want.db1}, {&got.dw2, &want.dw2},
                                   {&got.db2, &want.db2}})
            CHECK(a->array().isNaN().matrix() == b->array().isNaN().matrix());
    }
}

TEST_CASE("conv2d_relu_pool_stack: the chain's values and gradients, its second order recorded") {
    // Three layers: the images as data (the bottom pair together, the top layer alone), as a
    // parameter (every layer alone: the chain's kernels, so its bits), and with the bottom
    // layer frozen (no pair to take).
    ad::Rng rng(33, 2);
    const std::vector<ConvGeometry> gs{
        {.channels = 1, .height = 16, .width = 16, .kernel_h = 3, .kernel_w = 3, .padding = 1},
        {.channels = 4, .height = 8, .width = 8, .kernel_h = 3, .kernel_w = 3, .padding = 1},
        {.channels = 8, .height = 4, .width = 4, .kernel_h = 3, .kernel_w = 3, .padding = 1}};
    const int couts[] = {4, 8, 6}, n = 13;
    const Eigen::MatrixXd images = rng.normal_matrix(n, 256), c = rng.normal_matrix(n, 6 * 4);
    std::vector<Eigen::MatrixXd> values;
    for (int l = 0; l < 3; ++l)
        values.push_back(rng.normal_matrix(couts[l], gs[std::size_t(l)].patch())),
            values.push_back(0.1 * rng.normal_matrix(1, couts[l]));
    for (int mode = 0; mode < 3; ++mode) {
        CAPTURE(mode);
        ad::TapeScope scope;
        const ad::Var x = mode == 1 ? ad::param(images) : ad::constant(images);
        std::vector<ad::Var> ps;
        for (std::size_t k = 0; k < values.size(); ++k)
            ps.push_back(mode == 2 && k < 2 ? ad::constant(values[k]) : ad::param(values[k]));
        ad::Var h = x;
        for (int l = 0; l < 3; ++l) h = ad::conv2d_relu_pool(h, ps[std::size_t(2 * l)], ps[std::size_t(2 * l + 1)], gs[std::size_t(l)]);
        const ad::Var stack = ad::conv2d_relu_pool_stack(x, ps, gs);
        REQUIRE(same_bits(stack.value(), h.value()));
        const ad::Var chain_loss = ad::sum(ad::mul(ad::constant(c), h));
        const ad::Var stack_loss = ad::sum(ad::mul(ad::constant(c), stack));
        std::vector<ad::Var> wrt;
        if (mode == 1) wrt.push_back(x);
        for (std::size_t k = mode == 2 ? 2 : 0; k < ps.size(); ++k) wrt.push_back(ps[k]);
        const auto want = ad::grad(chain_loss, wrt), got = ad::grad(stack_loss, wrt);
        const auto recorded = ad::grad(stack_loss, wrt, {.create_graph = true});
        for (std::size_t k = 0; k < wrt.size(); ++k) {
            CAPTURE(k);
            // The pair's lower layer (mode 0, its weight and bias) sums in another order.
            const bool pair_lower = mode == 0 && k < 2;
            CHECK((pair_lower ? close(got[k].value(), want[k].value()) : same_bits(got[k].value(), want[k].value())));
            CHECK(close(recorded[k].value(), want[k].value()));
        }
        // Second order: the top weight's gradient differentiated by the first input, as the chain's.
        const auto chain_recorded = ad::grad(chain_loss, wrt, {.create_graph = true});
        const std::size_t top = wrt.size() - 2;
        REQUIRE(recorded[top].requires_grad());
        const auto second = ad::grad(ad::sum(ad::square(recorded[top])), {wrt[0]});
        const auto chain_second = ad::grad(ad::sum(ad::square(chain_recorded[top])), {wrt[0]});
        CHECK(close(second[0].value(), chain_second[0].value()));
        CHECK(chain_second[0].value().cwiseAbs().maxCoeff() > 0.1);
    }
}

TEST_CASE("conv2d_relu_pool_stack: with the images as data its gradients are the pair's, to the bit") {
    // The node must take the fused backward where it applies (and not only give the same values
    // by the layer-by-layer path): the lower layer's gradient in the pair's summation order.
    ad::Rng rng(35, 2);
    const ConvGeometry g1{.channels = 1, .height = 12, .width = 12, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    const ConvGeometry g2{.channels = 8, .height = 6, .width = 6, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    PairRun run(rng, g1, 8, g2, 5, 2, 23);
    ad::TapeScope scope;
    std::vector<ad::Var> ps{ad::param(run.w1), ad::param(run.b1), ad::param(run.w2), ad::param(run.b2)};
    const ad::Var y = ad::conv2d_relu_pool_stack(ad::constant(run.x), ps, std::vector{g1, g2});
    REQUIRE(same_bits(y.value(), run.y));
    const auto got = ad::grad(ad::sum(ad::mul(ad::constant(run.gy), y)), ps);
    PairRun::Grads want = run.blank();
    REQUIRE(run.pair(want, true));
    CHECK(same_bits(got[0].value(), want.dw1));
    CHECK(same_bits(got[1].value(), want.db1));
    CHECK(same_bits(got[2].value(), want.dw2));
    CHECK(same_bits(got[3].value(), want.db2));
    const PairRun::Grads layered = run.layered();  // (which this order is not: else the check above means little)
    CHECK_FALSE(same_bits(layered.dw1, want.dw1));
}

TEST_CASE("conv2d_relu_pool_stack: a NaN image or one layer gives the chain's values and gradients, NaNs included") {
    // A NaN pixel makes the pair decline (its copies check every entry): the node goes layer by
    // layer, which is the chain's own kernels, so every bit and every NaN lands where the chain's
    // does. One layer is conv2d_relu_pool itself.
    ad::Rng rng(36, 2);
    const ConvGeometry g1{.channels = 1, .height = 12, .width = 12, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    const ConvGeometry g2{.channels = 8, .height = 6, .width = 6, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    Eigen::MatrixXd images = rng.normal_matrix(9, 144);
    images(4, 50) = std::numeric_limits<double>::quiet_NaN();
    const Eigen::MatrixXd w1 = rng.normal_matrix(8, 9), b1 = rng.normal_matrix(1, 8), w2 = rng.normal_matrix(5, 72),
                          b2 = rng.normal_matrix(1, 5), c = rng.normal_matrix(9, 45), c1 = rng.normal_matrix(9, 288);
    ad::TapeScope scope;
    const ad::Var x = ad::constant(images);
    std::vector<ad::Var> ps{ad::param(w1), ad::param(b1), ad::param(w2), ad::param(b2)};
    const ad::Var chain = ad::conv2d_relu_pool(ad::conv2d_relu_pool(x, ps[0], ps[1], g1), ps[2], ps[3], g2);
    const ad::Var stack = ad::conv2d_relu_pool_stack(x, ps, std::vector{g1, g2});
    REQUIRE(same_bits(stack.value(), chain.value()));
    REQUIRE(stack.value().hasNaN());
    const auto want = ad::grad(ad::sum(ad::mul(ad::constant(c), chain)), ps);
    const auto got = ad::grad(ad::sum(ad::mul(ad::constant(c), stack)), ps);
    for (std::size_t k = 0; k < ps.size(); ++k) {
        CAPTURE(k);
        CHECK(same_bits(got[k].value(), want[k].value()));
    }
    CHECK(want[0].value().hasNaN());
    const ad::Var one = ad::conv2d_relu_pool_stack(x, std::span(ps).first(2), std::vector{g1});
    REQUIRE(same_bits(one.value(), ad::conv2d_relu_pool(x, ps[0], ps[1], g1).value()));
    const auto one_got = ad::grad(ad::sum(ad::mul(ad::constant(c1), one)), {ps[0], ps[1]});
    const auto one_want =
        ad::grad(ad::sum(ad::mul(ad::constant(c1), ad::conv2d_relu_pool(x, ps[0], ps[1], g1))), {ps[0], ps[1]});
    CHECK(same_bits(one_got[0].value(), one_want[0].value()));
    CHECK(same_bits(one_got[1].value(), one_want[1].value()));
}

TEST_CASE("conv2d_relu_pool_linear: nn::Linear on the stack, the same values and gradients") {
    // One and two layers, one output (the features' gradient made as the layers read it) and two
    // (the product), the images as data and as a parameter. 150 images of 2304 features make the
    // linear layer's products go through kernels/gemm.hpp, whose bits the one-output rows must
    // reproduce, and the winners take them in more than one block. Everything to the bit but the
    // pair's lower layer (its own summation order).
    ad::Rng rng(37, 2);
    const ConvGeometry g1{.channels = 1, .height = 24, .width = 24, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    const ConvGeometry g2{.channels = 16, .height = 12, .width = 12, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    const int n = 150;
    const Eigen::MatrixXd images = rng.normal_matrix(n, 576);
    for (int layers : {1, 2})
        for (int outputs : {1, 2})
            for (bool data : {true, false}) {
                CAPTURE(layers);
                CAPTURE(outputs);
                CAPTURE(data);
                ad::TapeScope scope;
                const ad::Var x = data ? ad::constant(images) : ad::param(images);
                std::vector<ad::Var> ps{ad::param(0.3 * rng.normal_matrix(16, 9)), ad::param(0.1 * rng.normal_matrix(1, 16))};
                std::vector<ConvGeometry> gs{g1};
                int features = 16 * 144;
                if (layers == 2) {
                    ps.push_back(ad::param(0.1 * rng.normal_matrix(8, 144)));
                    ps.push_back(ad::param(0.1 * rng.normal_matrix(1, 8)));
                    gs.push_back(g2), features = 8 * 36;
                }
                ps.push_back(ad::param(rng.normal_matrix(outputs, features)));
                ps.push_back(ad::param(rng.normal_matrix(1, outputs)));
                ad::Var h = x;
                for (int l = 0; l < layers; ++l) h = ad::conv2d_relu_pool(h, ps[std::size_t(2 * l)], ps[std::size_t(2 * l + 1)], gs[std::size_t(l)]);
                const ad::Var chain = ad::add(ad::matmul_nt(h, ps[std::size_t(2 * layers)]), ps[std::size_t(2 * layers + 1)]);
                const ad::Var fused = ad::conv2d_relu_pool_linear(x, ps, gs);
                REQUIRE(same_bits(fused.value(), chain.value()));
                const Eigen::MatrixXd c = rng.normal_matrix(n, outputs);
                const ad::Var chain_loss = ad::sum(ad::mul(ad::constant(c), ad::tanh(chain)));
                const ad::Var fused_loss = ad::sum(ad::mul(ad::constant(c), ad::tanh(fused)));
                std::vector<ad::Var> wrt = ps;
                if (!data) wrt.insert(wrt.begin(), x);
                const auto want = ad::grad(chain_loss, wrt);
                const std::size_t before = ad::tape().arena.bytes_in_use();
                const auto got = ad::grad(fused_loss, wrt);
                // One output: the n x F gradient of the features is never made (the chain's is).
                if (outputs == 1 && data)
                    CHECK(ad::tape().arena.bytes_in_use() - before < std::size_t(n) * features * sizeof(double) / 2);
                const auto recorded = ad::grad(fused_loss, wrt, {.create_graph = true});
                for (std::size_t k = 0; k < wrt.size(); ++k) {
                    CAPTURE(k);
                    const bool pair_lower = data && layers == 2 && k < 2;
                    CHECK((pair_lower ? close(got[k].value(), want[k].value()) : same_bits(got[k].value(), want[k].value())));
                    CHECK(close(recorded[k].value(), want[k].value()));
                }
            }
}

TEST_CASE("conv2d_relu_pool_stack: wrong parameters and layers that do not chain are named") {
    ad::Rng rng(34, 2);
    ad::TapeScope scope;
    const ConvGeometry g0{.channels = 1, .height = 8, .width = 8, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    const ConvGeometry g1{.channels = 4, .height = 4, .width = 4, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    const ad::Var x = ad::constant(rng.normal_matrix(3, 64));
    const ad::Var w0 = ad::param(rng.normal_matrix(4, 9)), b0 = ad::param(rng.normal_matrix(1, 4));
    const ad::Var w1 = ad::param(rng.normal_matrix(2, 36)), b1 = ad::param(rng.normal_matrix(1, 2));
    const std::vector<ConvGeometry> both{g0, g1};
    CHECK_THROWS_WITH_AS(ad::conv2d_relu_pool_stack(x, std::vector{w0, b0, w1}, both),
                         doctest::Contains("3 parameters for 2 layers"), ad::ShapeError);
    CHECK_THROWS_WITH_AS(ad::conv2d_relu_pool_stack(x, std::vector<ad::Var>{}, std::vector<ConvGeometry>{}),
                         doctest::Contains("0 parameters for 0 layers"), ad::ShapeError);
    ConvGeometry wrong = g1;
    wrong.height = 5;
    CHECK_THROWS_WITH_AS(ad::conv2d_relu_pool_stack(x, std::vector{w0, b0, w1, b1}, std::vector{g0, wrong}),
                         doctest::Contains("layer 0 gives 64 columns, but layer 1's 4 x 5 x 4 images need 80"),
                         ad::ShapeError);
    CHECK_THROWS_WITH_AS(ad::conv2d_relu_pool_stack(x, std::vector{w0, b0, w1, w0}, both),
                         doctest::Contains("the bias is 4x9"), ad::ShapeError);
    const ad::Var W = ad::param(rng.normal_matrix(1, 8)), b = ad::param(rng.normal_matrix(1, 1));
    CHECK_THROWS_WITH_AS(ad::conv2d_relu_pool_linear(x, std::vector{w0, b0, w1, b1}, both),
                         doctest::Contains("then the linear layer's"), ad::ShapeError);
    CHECK_THROWS_WITH_AS(ad::conv2d_relu_pool_linear(x, std::vector{w0, b0, w1, b1, ad::param(rng.normal_matrix(1, 7)), b}, both),
                         doctest::Contains("the layers give 8 features"), ad::ShapeError);
    CHECK(ad::conv2d_relu_pool_linear(x, std::vector{w0, b0, w1, b1, W, b}, both).cols() == 1);
    CHECK(ad::conv2d_relu_pool_stack(x, std::vector{w0, b0, w1, b1}, both).cols() == 8);
}
