// Custom nodes: typed state held by the tape, any number of inputs, and second order that is
// explicit (recorded, provided by a hand-written node, or refused with an error naming the node).
#include <doctest/doctest.h>

#include <memory>

#include "autodiff/autodiff.hpp"
#include "learners/fused_step.hpp"
#include "metaloss/divergences.hpp"

using namespace occam;

namespace {

/// y = sum_k w_k x_k for any number of same-shape inputs, the weights kept in the closure
/// (a std::vector: not trivially destructible, so the tape owns the copy). Backward with ops:
/// dy/dx_k = w_k g.
ad::Var weighted_sum(const std::vector<ad::Var>& xs, std::vector<double> w) {
    ad::Node* n = ad::custom_node("weighted_sum", xs[0].rows(), xs[0].cols(), std::span<const ad::Var>(xs),
                                  [w](const ad::Node& self, const ad::Var& g, ad::Var* grads) {
                                      for (int k = 0; k < int(self.n_inputs); ++k)
                                          if (self.needs(k)) grads[k] = g * w[std::size_t(k)];
                                  });
    auto v = n->mutable_value();
    v.setZero();
    for (std::size_t k = 0; k < xs.size(); ++k) v += w[k] * xs[k].value();
    return ad::Var(n);
}

/// softplus(x) = log(1 + e^x), derivative sigmoid(x). The fast backward fills numbers by hand;
/// under create_graph it switches to the same formula written with ops, so it is any-order.
ad::Var softplus(const ad::Var& x, bool first_order_only, int* fast_calls) {
    ad::Node* n = ad::custom_node(
        "softplus", x.rows(), x.cols(), {x},
        [first_order_only, fast_calls](const ad::Node& self, const ad::Var& g, ad::Var* grads) {
            if (!first_order_only && ad::grad_enabled()) {
                grads[0] = g * ad::sigmoid(self.input(0));  // recorded: differentiable again
                return;
            }
            ++*fast_calls;
            Eigen::MatrixXd d = g.value().array() / (1.0 + (-self.input(0).value().array()).exp());
            grads[0] = ad::constant(d);
        },
        first_order_only ? ad::Derivatives::first_order : ad::Derivatives::any_order);
    n->mutable_value() = (1.0 + x.value().array().exp()).log().matrix();
    return ad::Var(n);
}

}  // namespace

TEST_CASE("custom node: any number of inputs, typed state, gradcheck and gradgradcheck") {
    const std::vector<Eigen::MatrixXd> in = {Eigen::MatrixXd::Random(3, 2), Eigen::MatrixXd::Random(3, 2),
                                             Eigen::MatrixXd::Random(3, 2), Eigen::MatrixXd::Random(3, 2),
                                             Eigen::MatrixXd::Random(3, 2)};
    ad::CheckFn f = [](const std::vector<ad::Var>& v) {
        return ad::sum(ad::square(weighted_sum(v, {0.5, -1.0, 2.0, 0.25, 3.0})));
    };
    CHECK(ad::gradcheck(f, in).ok);
    CHECK(ad::gradgradcheck(f, in).ok);
    ad::TapeScope scope;
    std::vector<ad::Var> v = ad::params(in);
    ad::Var y = weighted_sum(v, {1, 2, 3, 4, 5});
    CHECK(y.node()->n_inputs == 5);
    // Inputs that need no gradient get none (and the node still records them all).
    v[2] = ad::constant(in[2]);
    ad::Var z = ad::sum(weighted_sum(v, {1, 2, 3, 4, 5}));
    std::vector<ad::Var> g = ad::grad(z, {v[0], v[4]});
    CHECK((g[1].value().array() == 5.0).all());
}

TEST_CASE("custom node: state with a destructor lives exactly as long as its node") {
    auto token = std::make_shared<int>(7);
    {
        ad::TapeScope scope;
        ad::Var x = ad::param(Eigen::MatrixXd::Constant(2, 2, 1.0));
        ad::Node* n = ad::custom_node(
            "holds_token", 2, 2, {x},
            [token](const ad::Node&, const ad::Var& g, ad::Var* grads) { grads[0] = g * double(*token); });
        n->mutable_value() = x.value() * 7.0;
        CHECK(token.use_count() == 2);  // the tape's copy
        CHECK(ad::grad(ad::sum(ad::Var(n)), {x})[0].value()(0, 0) == 7.0);
    }
    CHECK(token.use_count() == 1);  // released with the scope
    // A node that needs no gradient stores no state at all.
    {
        ad::TapeScope scope;
        ad::Node* n = ad::custom_node("holds_token", 1, 1, {ad::constant(1.0)},
                                      [token](const ad::Node&, const ad::Var&, ad::Var*) {});
        CHECK(token.use_count() == 1);
        CHECK_FALSE(n->requires_grad);
    }
}

TEST_CASE("custom node: a hand-written backward either provides second order or refuses create_graph") {
    const std::vector<Eigen::MatrixXd> in = {Eigen::MatrixXd::Random(4, 3)};
    int fast = 0;
    // Any-order: its fast path runs for first-order gradients, its op path under create_graph.
    ad::CheckFn f = [&fast](const std::vector<ad::Var>& v) { return ad::sum(softplus(v[0], false, &fast)); };
    CHECK(ad::gradcheck(f, in).ok);
    CHECK(fast > 0);
    CHECK(ad::gradgradcheck(f, in).ok);
    {
        // gradgradcheck differentiates whatever the op path computes; that it computes the same
        // gradient as the fast path is a separate check.
        ad::TapeScope scope;
        ad::Var x = ad::param(in[0]);
        const Eigen::MatrixXd by_hand = ad::grad(f({x}), {x})[0].value();
        const Eigen::MatrixXd with_ops = ad::grad(f({x}), {x}, {.create_graph = true})[0].value();
        CHECK((by_hand - with_ops).cwiseAbs().maxCoeff() <= 1e-15);
    }
    // First-order only: first-order gradients are right, create_graph raises naming the node.
    ad::CheckFn h = [&fast](const std::vector<ad::Var>& v) { return ad::sum(softplus(v[0], true, &fast)); };
    CHECK(ad::gradcheck(h, in).ok);
    ad::TapeScope scope;
    ad::Var x = ad::param(in[0]);
    ad::Var y = h({x});
    CHECK_THROWS_WITH_AS(ad::grad(y, {x}, {.create_graph = true}), doctest::Contains("softplus"), ad::Error);
    // ... but only when the gradient actually flows through it.
    ad::Var other = ad::param(in[0]);
    ad::Var both = y + ad::sum(ad::square(other));
    CHECK(ad::grad(both, {other}, {.create_graph = true})[0].rows() == 4);
}

TEST_CASE("custom node: the engine's hand-written nodes refuse create_graph, naming themselves") {
    ad::TapeScope scope;
    // The fused SGD step (a hand-written Hessian-vector backward).
    const learners::FusedSgdNet& net = learners::fused_sgd_net({2, 3, 1}, Eigen::MatrixXd(), false, 0.1);
    ad::Rng rng(1, 0);
    const Eigen::MatrixXd X = rng.normal_matrix(5, 2);
    ad::Var p = ad::param(rng.normal_matrix(net.packed_size(), 1));
    ad::Var yl = ad::param(rng.normal_matrix(5, 1));
    ad::Var stepped = ad::sum(learners::fused_sgd_step(net, X, {}, p, yl));
    CHECK(ad::grad(stepped, {p, yl})[1].rows() == 5);
    CHECK_THROWS_WITH_AS(ad::grad(stepped, {yl}, {.create_graph = true}), doctest::Contains("fused_sgd_step"),
                         ad::Error);
    // Checkpointed blocks.
    ad::Var c = ad::sum(ad::checkpoint([](const std::vector<ad::Var>& v) { return ad::tanh(v[0]); }, {yl}));
    CHECK_THROWS_WITH_AS(ad::grad(c, {yl}, {.create_graph = true}), doctest::Contains("checkpoint"), ad::Error);
    // Sinkhorn (the envelope gradient's motion with x is not recorded).
    ad::Var s = metaloss::sinkhorn_divergence(yl, ad::constant(rng.normal_matrix(7, 1)));
    CHECK_THROWS_WITH_AS(ad::grad(s, {yl}, {.create_graph = true}), doctest::Contains("sinkhorn"), ad::Error);
}

TEST_CASE("custom node: the energy distance's recorded second derivative equals the dense formula's") {
    // Its kept gradient counts points on either side, so it is locally constant: the node is
    // any-order and its Hessian-vector product must equal the op-by-op dense form's (zero).
    ad::TapeScope scope;
    ad::Rng rng(4, 0);
    const Eigen::MatrixXd xv = rng.normal_matrix(9, 1), yv = rng.normal_matrix(6, 1), dir = rng.normal_matrix(9, 1);
    auto dense = [](const ad::Var& a, const ad::Var& b) {
        auto mean_dist = [](const ad::Var& u, const ad::Var& v) {
            ad::Var d = ad::matmul(u, ad::ones(1, v.rows())) - ad::transpose(ad::matmul(v, ad::ones(1, u.rows())));
            return ad::mean(ad::sqrt(ad::maximum(ad::square(d), ad::constant(1e-8))));
        };
        return mean_dist(a, b) - 0.5 * mean_dist(a, a) - 0.5 * mean_dist(b, b);
    };
    ad::Var x = ad::param(xv);
    ad::Var y = ad::constant(yv);
    for (int which = 0; which < 2; ++which) {
        ad::Var l = which ? dense(x, y) : metaloss::energy_distance(x, y);
        ad::Var g = ad::grad(l, {x}, {.create_graph = true})[0];
        ad::Var hv = ad::grad(ad::sum(g * ad::constant(dir)), {x}, {.allow_unused = true})[0];
        CHECK(hv.value().cwiseAbs().maxCoeff() == doctest::Approx(0.0).epsilon(1e-12));
    }
    CHECK(metaloss::energy_distance(x, y).item() == doctest::Approx(dense(x, y).item()).epsilon(1e-12));
}

TEST_CASE("custom node: hcat and vcat of many blocks are one node with the right gradients") {
    ad::TapeScope scope;
    std::vector<ad::Var> blocks;
    for (int k = 0; k < 6; ++k) blocks.push_back(ad::param(Eigen::MatrixXd::Constant(2, k + 1, double(k))));
    const std::size_t before = ad::tape().size();
    ad::Var h = ad::hcat(blocks);
    CHECK(ad::tape().size() == before + 1);
    CHECK(h.cols() == 21);
    CHECK(h.value()(1, 20) == 5.0);
    std::vector<ad::Var> g = ad::grad(ad::sum(ad::square(h)), blocks);
    for (int k = 0; k < 6; ++k) CHECK((g[std::size_t(k)].value().array() == 2.0 * k).all());
    std::vector<ad::Var> rows;
    for (int k = 0; k < 5; ++k) rows.push_back(ad::param(Eigen::MatrixXd::Constant(k + 1, 3, double(k))));
    ad::Var v = ad::vcat(rows);
    CHECK(v.rows() == 15);
    const std::vector<Eigen::MatrixXd> in = {Eigen::MatrixXd::Random(2, 3), Eigen::MatrixXd::Random(1, 3),
                                             Eigen::MatrixXd::Random(4, 3)};
    CHECK(ad::gradgradcheck([](const std::vector<ad::Var>& x) { return ad::sum(ad::exp(ad::vcat(x))); }, in).ok);
    CHECK(ad::gradgradcheck(
              [](const std::vector<ad::Var>& x) {
                  return ad::sum(ad::exp(
                      ad::hcat(std::vector<ad::Var>{ad::transpose(x[0]), ad::transpose(x[1]), ad::transpose(x[2])})));
              },
              in)
              .ok);
}
