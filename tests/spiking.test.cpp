// The spiking learner's derivatives, each checked against something independent: the surrogate
// against central differences; the fused nodes against the op-by-op circuit (to 1e-10, values,
// gradients and second derivatives, in every mode); the gradient against the hand-written
// backpropagation through time of the circuit's equations; and, with soft spikes (whose true
// derivatives are the surrogate's), first and second order and the meta-gradient through
// training against central differences.
#include "learners/spiking.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

using namespace occam;
using kernels::lif::Circuit;
using kernels::lif::Order;
using kernels::lif::Surrogate;

namespace {

/// Random 0/1 spike trains, trials x (bins * inputs).
Eigen::MatrixXd random_spikes(int trials, int bins, int inputs, double p, std::uint64_t seed) {
    ad::Rng rng(seed, 3);
    Eigen::MatrixXd X(trials, bins * inputs);
    for (Eigen::Index k = 0; k < X.size(); ++k) X.data()[k] = rng.uniform() < p ? 1.0 : 0.0;
    return X;
}

/// The tiny circuit of the checks: 2 x 4 input fibres, 3 units, 10 bins.
Circuit tiny(Order order, bool detach, Surrogate s) { return Circuit(8, 3, 10, std::exp(-0.1), order, detach, s); }

struct Weights {
    Eigen::MatrixXd w1, w2;
};
/// Weights large enough that the units spike often (every mode is exercised).
Weights weights(std::uint64_t seed) {
    ad::Rng rng(seed, 5);
    return {rng.uniform_matrix(8, 3, -0.4, 1.0), rng.uniform_matrix(3, 1, -1.0, 1.0)};
}

Surrogate sigmoid_surrogate(bool smooth = false) { return {Surrogate::Kind::sigmoid, 5.0, 100.0, smooth}; }
Surrogate fast_surrogate() { return {Surrogate::Kind::fast_sigmoid, 5.0, 10.0, false}; }

double max_diff(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
    REQUIRE(a.rows() == b.rows());
    REQUIRE(a.cols() == b.cols());
    return (a - b).cwiseAbs().maxCoeff();
}

/// The circuit's output (fused or op by op) as a function of (W1, W2) for fixed spikes.
ad::Var output(bool fused, const Circuit& c, const Eigen::MatrixXd& X, const ad::Var& w1, const ad::Var& w2) {
    if (fused) return learners::lif_output(c, learners::tape_spike_trains(X, c.bins), w1, w2);
    return learners::lif_output_ops(c, X, w1, w2);
}

/// Everything a training step differentiates, for one implementation: y, the loss's gradient G
/// (W1-bar, W2-bar) taken with create_graph, and the gradient of <C, G> with respect to W1, W2
/// and the labels t (a second derivative, as a meta-gradient takes it).
struct Derivs {
    Eigen::MatrixXd y, g1, g2, h1, h2, ht;
};
Derivs derivatives(bool fused, const Circuit& c, const Eigen::MatrixXd& X, const Weights& w, const Eigen::MatrixXd& t) {
    ad::TapeScope scope;
    std::vector<ad::Var> p = ad::params({w.w1, w.w2});
    const ad::Var labels = ad::param(t);
    const ad::Var y = output(fused, c, X, p[0], p[1]);
    const ad::Var loss = ad::mean(ad::square(y - labels));
    const std::vector<ad::Var> g = ad::grad(loss, p, {.create_graph = true});
    ad::Rng rng(77, 1);
    const ad::Var phi =
        ad::sum(g[0] * ad::constant(rng.normal_matrix(8, 3))) + ad::sum(g[1] * ad::constant(rng.normal_matrix(3, 1)));
    const std::vector<ad::Var> h = ad::grad(phi, {p[0], p[1], labels});
    return {y.value(), g[0].value(), g[1].value(), h[0].value(), h[1].value(), h[2].value()};
}

/// The spec's hand BPTT for SpyTorch order (one trial at a time, plain loops): the gradient of
/// L = sum_b y-bar_b y_b with respect to W1 and W2.
void hand_bptt(const Circuit& c, const Eigen::MatrixXd& X, const Weights& w, const Eigen::VectorXd& y_bar,
               Eigen::MatrixXd& g1, Eigen::MatrixXd& g2) {
    const int N = c.inputs, H = c.hidden, T = c.bins;
    g1 = Eigen::MatrixXd::Zero(N, H);
    g2 = Eigen::MatrixXd::Zero(H, 1);
    for (int b = 0; b < X.rows(); ++b) {
        // Forward, keeping v_k, s_k, I_k.
        std::vector<Eigen::VectorXd> v(std::size_t(T + 1), Eigen::VectorXd::Zero(H));
        std::vector<Eigen::VectorXd> s(static_cast<std::size_t>(T)), I(static_cast<std::size_t>(T));
        for (int k = 0; k < T; ++k) {
            const Eigen::VectorXd x = X.row(b).segment(k * N, N).transpose();
            I[std::size_t(k)] = w.w1.transpose() * x;
            s[std::size_t(k)] = (v[std::size_t(k)].array() - 1.0 > 0.0).cast<double>().matrix();
            v[std::size_t(k + 1)] = (c.alpha * v[std::size_t(k)] + I[std::size_t(k)])
                                        .cwiseProduct((1.0 - s[std::size_t(k)].array()).matrix());
        }
        // Readout: y = (1/T) sum_k A_k W2 . s_k, A_k = (1 - alpha^(T-1-k)) / (1 - alpha).
        Eigen::VectorXd vbar_next = Eigen::VectorXd::Zero(H);
        for (int k = T - 1; k >= 0; --k) {
            const double A = (1.0 - std::pow(c.alpha, T - 1 - k)) / (1.0 - c.alpha) / T;
            const Eigen::VectorXd& vk = v[std::size_t(k)];
            const Eigen::VectorXd& sk = s[std::size_t(k)];
            Eigen::VectorXd sbar = y_bar(b) * A * w.w2.col(0);
            if (!c.detach_reset) sbar -= vbar_next.cwiseProduct(c.alpha * vk + I[std::size_t(k)]);
            Eigen::VectorXd g(H);
            for (int i = 0; i < H; ++i) g(i) = c.surrogate.g(vk(i) - 1.0);
            const Eigen::VectorXd ibar = vbar_next.cwiseProduct((1.0 - sk.array()).matrix());
            const Eigen::VectorXd vbar = sbar.cwiseProduct(g) + c.alpha * ibar;
            g1 += X.row(b).segment(k * N, N).transpose() * ibar.transpose();
            g2 += y_bar(b) * A * sk;
            vbar_next = vbar;
        }
    }
}

}  // namespace

TEST_CASE("spiking: the surrogate's first and second derivatives against central differences") {
    for (const Surrogate s :
         {Surrogate{Surrogate::Kind::sigmoid, 5.0, 100.0, true}, Surrogate{Surrogate::Kind::sigmoid, 2.0, 100.0, true},
          Surrogate{Surrogate::Kind::fast_sigmoid, 5.0, 100.0, true},
          Surrogate{Surrogate::Kind::fast_sigmoid, 5.0, 3.0, true}}) {
        for (double x : {-1.3, -0.4, -0.05, 0.02, 0.3, 0.9}) {
            CAPTURE(x);
            const double h = 1e-6;
            // The soft spike's derivative is g, g's derivative is g'.
            CHECK(s.g(x) == doctest::Approx((s.spike(x + h) - s.spike(x - h)) / (2 * h)).epsilon(1e-7));
            CHECK(s.dg(x) == doctest::Approx((s.g(x + h) - s.g(x - h)) / (2 * h)).epsilon(1e-6));
        }
    }
    // The published forms: sigmoid peak beta / 4; g' of the sigmoid bounded by beta^2 sqrt(3)/18.
    const Surrogate s = sigmoid_surrogate();
    CHECK(s.g(0.0) == doctest::Approx(1.25));
    double worst = 0;
    for (double x = -2; x <= 2; x += 1e-4) worst = std::max(worst, std::abs(s.dg(x)));
    CHECK(worst == doctest::Approx(25.0 * std::sqrt(3.0) / 18.0).epsilon(1e-6));
    CHECK(fast_surrogate().dg(0.0) == 0.0);
    // The hard spike is strict: H(0) = 0.
    CHECK(s.spike(0.0) == 0.0);
    CHECK(s.spike(1e-300) == 1.0);
}

TEST_CASE("spiking: the autodiff spike op uses the same surrogate as the kernels") {
    for (const Surrogate s : {sigmoid_surrogate(), fast_surrogate()}) {
        ad::TapeScope scope;
        const Eigen::MatrixXd x0 = ad::Rng(4, 4).uniform_matrix(5, 4, -1.5, 1.5);
        const ad::Var x = ad::param(x0);
        const ad::Var y = ad::spike(x, learners::spike_surrogate(s));
        const ad::Var g = ad::grad(ad::sum(y), {x}, {.create_graph = true})[0];
        const ad::Var dg = ad::grad(ad::sum(g), {x})[0];
        for (Eigen::Index k = 0; k < x0.size(); ++k) {
            CHECK(y.value()(k) == s.spike(x0(k)));
            CHECK(g.value()(k) == doctest::Approx(s.g(x0(k))).epsilon(1e-13));
            CHECK(dg.value()(k) == doctest::Approx(s.dg(x0(k))).epsilon(1e-10));
        }
    }
}

TEST_CASE("spiking: the gradient equals the hand-written BPTT of the circuit's equations") {
    const Eigen::MatrixXd X = random_spikes(5, 10, 8, 0.3, 1);
    const Weights w = weights(2);
    for (bool detach : {false, true}) {
        CAPTURE(detach);
        const Circuit c = tiny(Order::spytorch, detach, sigmoid_surrogate());
        ad::Rng rng(9, 9);
        const Eigen::VectorXd y_bar = rng.normal_matrix(5, 1);
        Eigen::MatrixXd g1, g2;
        hand_bptt(c, X, w, y_bar, g1, g2);
        for (bool fused : {true, false}) {
            CAPTURE(fused);
            ad::TapeScope scope;
            std::vector<ad::Var> p = ad::params({w.w1, w.w2});
            const ad::Var y = output(fused, c, X, p[0], p[1]);
            const auto g = ad::grad(ad::sum(y * ad::constant(Eigen::MatrixXd(y_bar))), p);
            CHECK(max_diff(g[0].value(), g1) < 1e-12);
            CHECK(max_diff(g[1].value(), g2) < 1e-12);
        }
        // The units did spike: the check went through resets and the surrogate.
        ad::TapeScope scope;
        std::vector<ad::Var> p = ad::params({w.w1, w.w2});
        CHECK(output(true, c, X, p[0], p[1]).value().cwiseAbs().maxCoeff() > 0);
    }
}

TEST_CASE("spiking: fused nodes equal the op-by-op circuit to 1e-10, first and second order, in every mode") {
    const Eigen::MatrixXd X = random_spikes(6, 10, 8, 0.35, 3);
    const Eigen::MatrixXd t = ad::Rng(5, 5).uniform_matrix(6, 1, -1, 1);
    int spikes_seen = 0;
    for (Order order : {Order::spytorch, Order::tutorial})
        for (bool detach : {false, true})
            for (const Surrogate s : {sigmoid_surrogate(), fast_surrogate(), sigmoid_surrogate(true)})
                for (std::uint64_t seed : {11u, 12u}) {
                    CAPTURE(int(order));
                    CAPTURE(detach);
                    CAPTURE(int(s.kind));
                    CAPTURE(s.smooth);
                    const Circuit c = tiny(order, detach, s);
                    const Weights w = weights(seed);
                    const Derivs a = derivatives(true, c, X, w, t), b = derivatives(false, c, X, w, t);
                    CHECK(max_diff(a.y, b.y) < 1e-12);
                    CHECK(max_diff(a.g1, b.g1) < 1e-10);
                    CHECK(max_diff(a.g2, b.g2) < 1e-10);
                    CHECK(max_diff(a.h1, b.h1) < 1e-10);
                    CHECK(max_diff(a.h2, b.h2) < 1e-10);
                    CHECK(max_diff(a.ht, b.ht) < 1e-10);
                    CHECK(a.h1.cwiseAbs().maxCoeff() > 1e-3);  // the second derivative is not trivially 0
                    spikes_seen += a.y.cwiseAbs().maxCoeff() > 0;
                }
    CHECK(spikes_seen > 0);
}

// A detached reset drops a path on purpose (its gradient is not the function's derivative even
// with soft spikes), so the checks against finite differences use the attached reset; the
// detached one is checked against the op-by-op circuit above.
TEST_CASE("spiking: with soft spikes the fused nodes pass gradcheck and gradgradcheck") {
    const Eigen::MatrixXd X = random_spikes(4, 10, 8, 0.35, 4);
    for (Order order : {Order::spytorch, Order::tutorial}) {
        CAPTURE(int(order));
        const Circuit c = tiny(order, false, sigmoid_surrogate(true));
        const Weights w = weights(21);
        const Eigen::MatrixXd t = ad::Rng(6, 6).uniform_matrix(4, 1, -1, 1);
        const ad::CheckFn f = [&](const std::vector<ad::Var>& in) {
            return ad::mean(ad::square(output(true, c, X, in[0], in[1]) - in[2]));
        };
        const ad::CheckReport first = ad::gradcheck(f, {w.w1, w.w2, t});
        INFO(first.message());
        CHECK(first.ok);
        const ad::CheckReport second = ad::gradgradcheck(f, {w.w1, w.w2, t});
        INFO(second.message());
        CHECK(second.ok);
    }
}

namespace {
/// The meta-loss of a learner: train on (X, t) and return sum(C * prediction) on the test set,
/// and its gradient with respect to the labels t.
std::pair<double, Eigen::MatrixXd> meta_loss(learners::SpikingLearner& l, const Eigen::MatrixXd& X,
                                             const Eigen::MatrixXd& Xt, const Eigen::MatrixXd& t, bool gradient) {
    ad::TapeScope scope;
    ad::Rng rng(31, 0);
    l.new_task(rng);
    const ad::Var labels = gradient ? ad::param(t) : ad::constant(t);
    const ad::Var pred = l.fit_predict(ad::constant(X), labels, ad::constant(Xt));
    const ad::Var loss = ad::sum(pred * ad::constant(ad::Rng(8, 8).normal_matrix(int(Xt.rows()), 1)));
    if (!gradient) return {loss.item(), {}};
    return {loss.item(), ad::grad(loss, {labels})[0].value()};
}
learners::SpikingLearner learner(const Circuit& c, int steps, const std::string& optimizer, bool checkpoint,
                                 bool fused) {
    learners::SpikingTraining tr;
    tr.optimizer = optimizer;
    tr.steps = steps;
    tr.lr = 0.05;
    tr.checkpoint = checkpoint;
    tr.fused = fused;
    return learners::SpikingLearner(c, 0.8, 0.5, tr);
}
}  // namespace

TEST_CASE("spiking: the meta-gradient through 2 inner Adam steps against central differences (soft spikes)") {
    const Eigen::MatrixXd X = random_spikes(6, 10, 8, 0.35, 5), Xt = random_spikes(7, 10, 8, 0.35, 6);
    const Eigen::MatrixXd t = ad::Rng(7, 7).uniform_matrix(6, 1, -1, 1);
    for (const std::string opt : {"adam", "sgd"})
        for (Order order : {Order::spytorch, Order::tutorial}) {
            CAPTURE(opt);
            CAPTURE(int(order));
            auto l = learner(tiny(order, false, sigmoid_surrogate(true)), 2, opt, false, true);
            const Eigen::MatrixXd g = meta_loss(l, X, Xt, t, true).second;
            for (Eigen::Index i = 0; i < t.rows(); ++i) {
                const double h = 1e-6;
                Eigen::MatrixXd tp = t, tm = t;
                tp(i) += h;
                tm(i) -= h;
                const double numeric =
                    (meta_loss(l, X, Xt, tp, false).first - meta_loss(l, X, Xt, tm, false).first) / (2 * h);
                CHECK(g(i) == doctest::Approx(numeric).epsilon(1e-6).scale(1e-3));
            }
            CHECK(g.cwiseAbs().maxCoeff() > 1e-4);
        }
}

TEST_CASE("spiking: hard spikes: the meta-gradient is the same fused, op by op and checkpointed") {
    const Eigen::MatrixXd X = random_spikes(6, 10, 8, 0.35, 7), Xt = random_spikes(7, 10, 8, 0.35, 8);
    const Eigen::MatrixXd t = ad::Rng(9, 7).uniform_matrix(6, 1, -1, 1);
    for (Order order : {Order::spytorch, Order::tutorial}) {
        CAPTURE(int(order));
        const Circuit c = tiny(order, false, sigmoid_surrogate());
        auto fused = learner(c, 3, "adam", false, true), ops = learner(c, 3, "adam", false, false),
             checkpointed = learner(c, 3, "adam", true, true);
        const auto a = meta_loss(fused, X, Xt, t, true), b = meta_loss(ops, X, Xt, t, true),
                   k = meta_loss(checkpointed, X, Xt, t, true);
        CHECK(a.first == doctest::Approx(b.first).epsilon(1e-12));
        CHECK(max_diff(a.second, b.second) < 1e-10);
        // A checkpointed step recomputes the same spikes: the same loss bit for bit, and the same
        // meta-gradient up to summation order.
        CHECK(a.first == k.first);
        CHECK(max_diff(a.second, k.second) < 1e-12);
        CHECK(a.second.cwiseAbs().maxCoeff() > 1e-6);
    }
}

TEST_CASE("spiking: bad inputs are refused with a clear message") {
    const Circuit c = tiny(Order::spytorch, false, sigmoid_surrogate());
    auto l = learner(c, 2, "adam", false, true);
    ad::TapeScope scope;
    ad::Rng rng(1, 1);
    const Eigen::MatrixXd X = random_spikes(4, 10, 8, 0.3, 9);
    CHECK_THROWS_WITH_AS(l.fit_predict(ad::constant(X), ad::constant(Eigen::MatrixXd::Zero(4, 1)), ad::constant(X)),
                         doctest::Contains("new_task() was not called"), learners::LearnerError);
    l.new_task(rng);
    CHECK_THROWS_WITH_AS(
        l.fit_predict(ad::constant(X.leftCols(70)), ad::constant(Eigen::MatrixXd::Zero(4, 1)), ad::constant(X)),
        doctest::Contains("expected 80"), learners::LearnerError);
    Eigen::MatrixXd bad = X;
    bad(0, 0) = 0.5;
    CHECK_THROWS_WITH_AS(l.fit_predict(ad::constant(bad), ad::constant(Eigen::MatrixXd::Zero(4, 1)), ad::constant(X)),
                         doctest::Contains("values must be 0 or 1"), learners::LearnerError);
    CHECK_THROWS_AS(learners::SpikingLearner(c, 0.8, 0.5, {.optimizer = "rmsprop"}), std::invalid_argument);
    CHECK_THROWS_AS(Circuit(8, 3, 10, 1.5, Order::spytorch, false, sigmoid_surrogate()), std::invalid_argument);
}
