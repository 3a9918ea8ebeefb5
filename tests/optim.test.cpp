// The plain optimisers against torch's update rules written out again here as scalar loops, and
// the unrolled ones by differentiating whole training runs against central differences.
#include <doctest/doctest.h>

#include "autodiff/autodiff.hpp"
#include "autodiff/optim.hpp"

#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace occam;
namespace optim = occam::ad::optim;

namespace {

// ---- a fixed quadratic: f(p) = 1/2 sum_i c_i (p_i - target_i)^2, plus a fixed per-step drift
// so the gradients change sign and size from step to step. Entry i runs over all parameters
// flattened (each matrix column-major, matrices in order), which is also the reference's layout.
double grad_entry(double p, int i, int t) {
    const double c = 0.5 + 0.25 * (i % 4);
    const double target = 0.3 * i - 1.0;
    return c * (p - target) + 0.2 * std::sin(1.3 * t + 0.7 * i);
}

std::vector<Eigen::MatrixXd> initial_params() {
    Eigen::MatrixXd a(2, 3), b(1, 2);
    a << 0.5, -1.2, 2.0, 0.1, 0.0, -0.7;
    b << 1.5, -0.3;
    return {a, b};
}

std::vector<Eigen::MatrixXd> grads_at(const std::vector<Eigen::MatrixXd>& ps, int t) {
    std::vector<Eigen::MatrixXd> gs;
    int i = 0;
    for (const auto& p : ps) {
        Eigen::MatrixXd g(p.rows(), p.cols());
        for (Eigen::Index k = 0; k < p.size(); ++k, ++i) g.data()[k] = grad_entry(p.data()[k], i, t);
        gs.push_back(g);
    }
    return gs;
}

std::vector<double> flat(const std::vector<Eigen::MatrixXd>& ps) {
    std::vector<double> v;
    for (const auto& p : ps)
        for (Eigen::Index k = 0; k < p.size(); ++k) v.push_back(p.data()[k]);
    return v;
}

// ---- torch's rules, one scalar at a time, written from the PyTorch sources (single_tensor path).

std::vector<double> reference_adam(std::vector<double> p, const optim::AdamOptions& o, int steps) {
    std::vector<double> m(p.size(), 0.0), v(p.size(), 0.0);
    for (int t = 1; t <= steps; ++t) {
        for (std::size_t i = 0; i < p.size(); ++i) {
            double g = grad_entry(p[i], int(i), t);
            if (o.weight_decay != 0) g = g + o.weight_decay * p[i];
            m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
            v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
            const double bias_correction1 = 1 - std::pow(o.beta1, t);
            const double bias_correction2 = 1 - std::pow(o.beta2, t);
            const double step_size = o.lr / bias_correction1;
            const double denom = std::sqrt(v[i]) / std::sqrt(bias_correction2) + o.eps;
            p[i] = p[i] - step_size * m[i] / denom;
        }
    }
    return p;
}

std::vector<double> reference_adagrad(std::vector<double> p, const optim::AdagradOptions& o, int steps) {
    std::vector<double> state_sum(p.size(), o.initial_accumulator_value);
    for (int t = 1; t <= steps; ++t) {
        for (std::size_t i = 0; i < p.size(); ++i) {
            double g = grad_entry(p[i], int(i), t);
            if (o.weight_decay != 0) g = g + o.weight_decay * p[i];
            const double clr = o.lr / (1 + (t - 1) * o.lr_decay);
            state_sum[i] += g * g;
            const double std_ = std::sqrt(state_sum[i]) + o.eps;
            p[i] = p[i] - clr * g / std_;
        }
    }
    return p;
}

std::vector<double> reference_sgd(std::vector<double> p, const optim::SGDOptions& o, int steps) {
    std::vector<double> buf(p.size(), 0.0);
    for (int t = 1; t <= steps; ++t) {
        for (std::size_t i = 0; i < p.size(); ++i) {
            double d_p = grad_entry(p[i], int(i), t);
            if (o.weight_decay != 0) d_p = d_p + o.weight_decay * p[i];
            if (o.momentum != 0) {
                if (t == 1) buf[i] = d_p;  // torch.clone(d_p).detach()
                else buf[i] = o.momentum * buf[i] + (1 - o.dampening) * d_p;
                if (o.nesterov) d_p = d_p + o.momentum * buf[i];
                else d_p = buf[i];
            }
            p[i] = p[i] - o.lr * d_p;
        }
    }
    return p;
}

/// Runs `opt` for `steps` steps on the quadratic and compares every entry with the reference.
template <class Opt>
void check_against_reference(Opt& opt, const std::vector<double>& expected, int steps) {
    std::vector<Eigen::MatrixXd> ps = initial_params();
    for (int t = 1; t <= steps; ++t) opt.step(ps, grads_at(ps, t));
    CHECK(opt.steps() == steps);
    const std::vector<double> got = flat(ps);
    REQUIRE(got.size() == expected.size());
    const std::vector<double> start = flat(initial_params());
    for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        CHECK(got[i] != start[i]);  // the optimiser really moved every entry
        CHECK(std::abs(got[i] - expected[i]) <= 1e-13 * (1 + std::abs(expected[i])));
    }
}

bool all_finite(const std::vector<Eigen::MatrixXd>& ms) {
    for (const auto& m : ms)
        if (!m.allFinite()) return false;
    return true;
}

// ---- a tiny regression problem for unrolled training: a 2-4-1 tanh net, 5 points.
Eigen::MatrixXd train_x() { return ad::Rng(3, 1).uniform_matrix(5, 2, -1.0, 1.0); }
Eigen::MatrixXd val_x() { return ad::Rng(3, 2).uniform_matrix(4, 2, -1.0, 1.0); }
Eigen::MatrixXd val_y() { return ad::Rng(3, 3).uniform_matrix(4, 1, -1.0, 1.0); }
Eigen::MatrixXd train_labels() { return ad::Rng(3, 4).uniform_matrix(5, 1, -1.0, 1.0); }
std::vector<Eigen::MatrixXd> net_init() {
    ad::Rng rng(3, 5);
    return {rng.uniform_matrix(4, 2, -0.7, 0.7), rng.uniform_matrix(1, 4, -0.7, 0.7),
            rng.uniform_matrix(1, 4, -0.5, 0.5), rng.uniform_matrix(1, 1, -0.5, 0.5)};
}

ad::Var net(const std::vector<ad::Var>& p, const ad::Var& x) {
    ad::Var h = ad::tanh(ad::matmul_nt(x, p[0]) + p[1]);
    return ad::matmul_nt(h, p[2]) + p[3];
}

/// The whole training run as a function of (labels, W0, b0, W1, b1): `steps` inner steps on the
/// training MSE with the given optimiser, then the validation MSE of the trained net.
/// `make_optimiser` returns a fresh step function (params, grads) -> params for each run.
template <class MakeOptimiser>
ad::CheckFn training_run(MakeOptimiser make_optimiser, int steps) {
    return [make_optimiser, steps](const std::vector<ad::Var>& in) {
        ad::Var labels = in[0];
        std::vector<ad::Var> params(in.begin() + 1, in.end());
        ad::Var x = ad::constant(train_x());
        auto opt = make_optimiser();
        for (int s = 0; s < steps; ++s) {
            ad::Var loss = ad::mean(ad::square(net(params, x) - labels));
            std::vector<ad::Var> g = ad::grad(loss, params, {.create_graph = true});
            params = opt(params, g);
        }
        return ad::mean(ad::square(net(params, ad::constant(val_x())) - ad::constant(val_y())));
    };
}

std::vector<Eigen::MatrixXd> run_inputs() {
    std::vector<Eigen::MatrixXd> in = {train_labels()};
    for (auto& m : net_init()) in.push_back(m);
    return in;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Plain optimisers
// ---------------------------------------------------------------------------------------------

TEST_CASE("optim: defaults are torch's") {
    const optim::AdamOptions adam;
    CHECK(adam.lr == 1e-3);
    CHECK(adam.beta1 == 0.9);
    CHECK(adam.beta2 == 0.999);
    CHECK(adam.eps == 1e-8);
    CHECK(adam.weight_decay == 0.0);
    const optim::AdagradOptions adagrad;
    CHECK(adagrad.lr == 1e-2);
    CHECK(adagrad.lr_decay == 0.0);
    CHECK(adagrad.weight_decay == 0.0);
    CHECK(adagrad.initial_accumulator_value == 0.0);
    CHECK(adagrad.eps == 1e-10);
    const optim::SGDOptions sgd;
    CHECK(sgd.lr == 1e-3);
    CHECK(sgd.momentum == 0.0);
    CHECK(sgd.dampening == 0.0);
    CHECK(sgd.weight_decay == 0.0);
    CHECK(sgd.nesterov == false);
    CHECK(optim::Adam().options().lr == 1e-3);
    CHECK(optim::Adagrad().options().eps == 1e-10);
    CHECK(optim::SGD().options().lr == 1e-3);
}

TEST_CASE("optim: Adam matches torch's formula over 5 steps") {
    for (const optim::AdamOptions& o :
         {optim::AdamOptions{}, optim::AdamOptions{.lr = 0.1},
          optim::AdamOptions{.lr = 0.05, .beta1 = 0.8, .beta2 = 0.99},
          optim::AdamOptions{.lr = 0.02, .eps = 1e-3, .weight_decay = 0.1}}) {
        CAPTURE(o.lr);
        CAPTURE(o.weight_decay);
        optim::Adam adam(o);
        check_against_reference(adam, reference_adam(flat(initial_params()), o, 5), 5);
    }
}

TEST_CASE("optim: Adagrad matches torch's formula over 5 steps") {
    for (const optim::AdagradOptions& o :
         {optim::AdagradOptions{}, optim::AdagradOptions{.lr = 0.3, .lr_decay = 0.1},
          optim::AdagradOptions{.lr = 0.1, .weight_decay = 0.05, .initial_accumulator_value = 0.5, .eps = 1e-6}}) {
        CAPTURE(o.lr);
        optim::Adagrad adagrad(o);
        check_against_reference(adagrad, reference_adagrad(flat(initial_params()), o, 5), 5);
    }
}

TEST_CASE("optim: SGD matches torch's formula over 5 steps") {
    for (const optim::SGDOptions& o :
         {optim::SGDOptions{}, optim::SGDOptions{.lr = 0.1, .weight_decay = 0.1},
          optim::SGDOptions{.lr = 0.1, .momentum = 0.9},
          optim::SGDOptions{.lr = 0.05, .momentum = 0.8, .dampening = 0.3, .weight_decay = 0.01},
          optim::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.02, .nesterov = true}}) {
        CAPTURE(o.momentum);
        CAPTURE(o.nesterov);
        optim::SGD sgd(o);
        check_against_reference(sgd, reference_sgd(flat(initial_params()), o, 5), 5);
    }
}

TEST_CASE("optim: a step from Var gradients equals a step from matrices") {
    ad::TapeScope scope;
    std::vector<Eigen::MatrixXd> a = initial_params(), b = initial_params(), c = initial_params(),
                                 d = initial_params(), e = initial_params(), f = initial_params();
    optim::Adam adam_m({.lr = 0.1}), adam_v({.lr = 0.1});
    optim::Adagrad ada_m({.lr = 0.1}), ada_v({.lr = 0.1});
    optim::SGD sgd_m({.lr = 0.1, .momentum = 0.9}), sgd_v({.lr = 0.1, .momentum = 0.9});
    for (int t = 1; t <= 3; ++t) {
        adam_m.step(a, grads_at(a, t));
        adam_v.step(b, ad::params(grads_at(b, t)));
        ada_m.step(c, grads_at(c, t));
        ada_v.step(d, ad::params(grads_at(d, t)));
        sgd_m.step(e, grads_at(e, t));
        sgd_v.step(f, ad::params(grads_at(f, t)));
    }
    for (std::size_t k = 0; k < a.size(); ++k) {
        CHECK(a[k] == b[k]);
        CHECK(c[k] == d[k]);
        CHECK(e[k] == f[k]);
    }
}

TEST_CASE("optim: state is sized on the first step; other shapes throw until reset") {
    std::vector<Eigen::MatrixXd> ps = initial_params();
    optim::Adam adam;
    CHECK(adam.steps() == 0);
    adam.step(ps, grads_at(ps, 1));

    std::vector<Eigen::MatrixXd> fewer = {ps[0]};
    CHECK_THROWS_AS(adam.step(fewer, grads_at(fewer, 2)), std::invalid_argument);
    std::vector<Eigen::MatrixXd> reshaped = {ps[0].transpose(), ps[1]};
    CHECK_THROWS_AS(adam.step(reshaped, grads_at(reshaped, 2)), std::invalid_argument);
    try {
        adam.step(reshaped, grads_at(reshaped, 2));
    } catch (const std::invalid_argument& e) {
        const std::string msg = e.what();
        CHECK(msg.find("parameter 0 is 3x2") != std::string::npos);
        CHECK(msg.find("sized for 2x3") != std::string::npos);
    }
    // Gradients that do not match the parameters, in number or in shape.
    CHECK_THROWS_AS(adam.step(ps, grads_at(fewer, 2)), std::invalid_argument);
    CHECK_THROWS_AS(adam.step(ps, grads_at(reshaped, 2)), std::invalid_argument);
    CHECK(adam.steps() == 1);  // failed steps change nothing

    adam.reset();
    CHECK(adam.steps() == 0);
    CHECK_NOTHROW(adam.step(reshaped, grads_at(reshaped, 1)));

    optim::SGD sgd({.momentum = 0.5});
    sgd.step(ps, grads_at(ps, 1));
    CHECK_THROWS_AS(sgd.step(fewer, grads_at(fewer, 2)), std::invalid_argument);
    optim::Adagrad adagrad;
    adagrad.step(ps, grads_at(ps, 1));
    CHECK_THROWS_AS(adagrad.step(reshaped, grads_at(reshaped, 2)), std::invalid_argument);
}

TEST_CASE("optim: invalid options throw like torch") {
    CHECK_THROWS_AS(optim::Adam({.lr = -1.0}), std::invalid_argument);
    CHECK_THROWS_AS(optim::Adam({.beta1 = 1.0}), std::invalid_argument);
    CHECK_THROWS_AS(optim::Adam({.beta2 = -0.1}), std::invalid_argument);
    CHECK_THROWS_AS(optim::Adagrad({.lr_decay = -1.0}), std::invalid_argument);
    CHECK_THROWS_AS(optim::SGD({.nesterov = true}), std::invalid_argument);  // no momentum
    CHECK_THROWS_AS(optim::SGD({.momentum = 0.9, .dampening = 0.1, .nesterov = true}), std::invalid_argument);
    CHECK_THROWS_AS(optim::UnrolledSGD({.momentum = -0.5}), std::invalid_argument);
    CHECK_THROWS_AS(optim::UnrolledAdam({.eps = -1.0}), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Unrolled (differentiable) optimisers
// ---------------------------------------------------------------------------------------------

TEST_CASE("optim: unrolled SGD and Adam take the same steps as the plain ones") {
    ad::TapeScope scope;
    const optim::SGDOptions so{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.02, .nesterov = true};
    const optim::AdamOptions ao{.lr = 0.05, .weight_decay = 0.01};
    std::vector<Eigen::MatrixXd> plain_sgd = initial_params(), plain_adam = initial_params(),
                                 plain_lr = initial_params();
    std::vector<ad::Var> u_sgd = ad::params(initial_params()), u_adam = u_sgd, u_lr = u_sgd;
    optim::SGD sgd(so);
    optim::Adam adam(ao);
    optim::SGD sgd_lr({.lr = 0.1});
    optim::UnrolledSGD usgd(so);
    optim::UnrolledAdam uadam(ao);
    for (int t = 1; t <= 5; ++t) {
        sgd.step(plain_sgd, grads_at(plain_sgd, t));
        adam.step(plain_adam, grads_at(plain_adam, t));
        sgd_lr.step(plain_lr, grads_at(plain_lr, t));
        u_sgd = usgd.step(u_sgd, ad::params(grads_at(ad::values(u_sgd), t)));
        u_adam = uadam.step(u_adam, ad::params(grads_at(ad::values(u_adam), t)));
        u_lr = optim::sgd_step(u_lr, ad::params(grads_at(ad::values(u_lr), t)), 0.1);
    }
    CHECK(usgd.steps() == 5);
    CHECK(uadam.steps() == 5);
    for (std::size_t k = 0; k < plain_sgd.size(); ++k) {
        CHECK((ad::value(u_sgd[k]) - plain_sgd[k]).cwiseAbs().maxCoeff() < 1e-14);
        CHECK((ad::value(u_lr[k]) - plain_lr[k]).cwiseAbs().maxCoeff() < 1e-14);
        // Only the eps placement differs: sqrt(v_hat + eps^2) against sqrt(v_hat) + eps.
        CHECK((ad::value(u_adam[k]) - plain_adam[k]).cwiseAbs().maxCoeff() < 1e-8);
    }
}

TEST_CASE("optim: meta-gradient through 3 unrolled SGD steps matches central differences") {
    const ad::CheckFn run = training_run(
        [] {
            return [](const std::vector<ad::Var>& p, const std::vector<ad::Var>& g) {
                return optim::sgd_step(p, g, 0.5);
            };
        },
        3);
    const ad::CheckReport rep = ad::gradcheck(run, run_inputs());
    INFO(rep.message());
    CHECK(rep.ok);
}

TEST_CASE("optim: meta-gradient through 3 UnrolledSGD steps with momentum matches central differences") {
    for (const optim::SGDOptions& o :
         {optim::SGDOptions{.lr = 0.3}, optim::SGDOptions{.lr = 0.2, .momentum = 0.9, .dampening = 0.1},
          optim::SGDOptions{.lr = 0.2, .momentum = 0.8, .weight_decay = 0.05, .nesterov = true}}) {
        CAPTURE(o.momentum);
        CAPTURE(o.nesterov);
        const ad::CheckFn run = training_run(
            [o] {
                return [opt = optim::UnrolledSGD(o)](const std::vector<ad::Var>& p,
                                                     const std::vector<ad::Var>& g) mutable { return opt.step(p, g); };
            },
            3);
        const ad::CheckReport rep = ad::gradcheck(run, run_inputs());
        INFO(rep.message());
        CHECK(rep.ok);
    }
}

TEST_CASE("optim: meta-gradient through 3 UnrolledAdam steps matches central differences") {
    for (const optim::AdamOptions& o :
         {optim::AdamOptions{.lr = 0.05}, optim::AdamOptions{.lr = 0.1, .beta1 = 0.5, .weight_decay = 0.1}}) {
        CAPTURE(o.lr);
        const ad::CheckFn run = training_run(
            [o] {
                return [opt = optim::UnrolledAdam(o)](const std::vector<ad::Var>& p,
                                                      const std::vector<ad::Var>& g) mutable { return opt.step(p, g); };
            },
            3);
        const ad::CheckReport rep = ad::gradcheck(run, run_inputs());
        INFO(rep.message());
        CHECK(rep.ok);
    }
}

TEST_CASE("optim: UnrolledAdam with an exactly-zero gradient entry gives a finite meta-gradient") {
    // loss = sum((c p)^2): where c is 0 the gradient 2 c^2 p is exactly 0 at every step.
    Eigen::MatrixXd p0(1, 3), c0(1, 3);
    p0 << 0.5, -1.0, 2.0;
    c0 << 1.0, 0.0, 0.7;
    ad::TapeScope scope;
    ad::Var p_init = ad::param(p0), c = ad::param(c0);
    std::vector<ad::Var> p = {p_init};
    optim::UnrolledAdam adam({.lr = 0.1});
    for (int s = 0; s < 3; ++s) {
        ad::Var loss = ad::sum(ad::square(c * p[0]));
        std::vector<ad::Var> g = ad::grad(loss, p, {.create_graph = true});
        CHECK(ad::value(g[0])(0, 1) == 0.0);
        p = adam.step(p, g);
    }
    ad::Var meta = ad::sum(p[0]) + ad::sum(ad::square(p[0]));
    const std::vector<ad::Var> mg = ad::grad(meta, {p_init, c});
    CHECK(ad::value(mg[0]).allFinite());
    CHECK(ad::value(mg[1]).allFinite());
    CHECK(all_finite(ad::values(mg)));

    // Why the denominator is sqrt(v_hat + eps^2): torch's sqrt(v_hat) + eps, written with the
    // same ops, differentiates sqrt at 0 and gives NaN for that entry.
    ad::Var g = ad::grad(ad::sum(ad::square(c * p_init)), {p_init}, {.create_graph = true})[0];
    // On the first step the bias corrections cancel exactly: m_hat = g, v_hat = g^2.
    ad::Var m_hat = g, v_hat = ad::square(g);
    ad::Var naive = p_init - ad::mul_scalar(m_hat / ad::add_scalar(ad::sqrt(v_hat), 1e-8), 0.1);
    const Eigen::MatrixXd naive_grad = ad::value(ad::grad(ad::sum(naive), {p_init})[0]);
    CHECK(std::isnan(naive_grad(0, 1)));
}

TEST_CASE("optim: unrolled steps check their arguments") {
    ad::TapeScope scope;
    std::vector<ad::Var> ps = ad::params(initial_params());
    std::vector<ad::Var> gs = ad::params(grads_at(initial_params(), 1));
    CHECK_THROWS_AS(optim::sgd_step(ps, {gs[0]}, 0.1), std::invalid_argument);
    CHECK_THROWS_AS(optim::sgd_step(ps, {gs[1], gs[0]}, 0.1), std::invalid_argument);
    optim::UnrolledAdam adam;
    ps = adam.step(ps, gs);
    CHECK_THROWS_AS(adam.step({ps[0]}, {gs[0]}), std::invalid_argument);
    adam.reset();
    CHECK_NOTHROW(adam.step({ps[0]}, {gs[0]}));
    optim::UnrolledSGD sgd({.momentum = 0.9});
    ps = sgd.step(ps, gs);
    CHECK_THROWS_AS(sgd.step({ps[1], ps[0]}, {gs[1], gs[0]}), std::invalid_argument);
}

TEST_CASE("optim: a saved state resumes to the same parameters as an uninterrupted run") {
    using namespace occam::ad;
    auto run = [](auto make, bool interrupt) {
        std::vector<Eigen::MatrixXd> p = {Eigen::MatrixXd::Constant(2, 2, 0.5), Eigen::MatrixXd::Constant(1, 3, -1.0)};
        auto opt = make();
        for (int t = 0; t < 6; ++t) {
            if (interrupt && t == 3) {
                optim::OptimizerState saved = opt.state();
                opt = make();
                opt.load_state(saved, p);
            }
            std::vector<Eigen::MatrixXd> g = {p[0].array().sin().matrix() * (t + 1), p[1] * 0.3 + Eigen::MatrixXd::Ones(1, 3)};
            opt.step(p, g);
        }
        return p;
    };
    auto adam = [] { return optim::Adam({.lr = 0.1}); };
    auto adagrad = [] { return optim::Adagrad({.lr = 0.1}); };
    auto sgd = [] { return optim::SGD({.lr = 0.1, .momentum = 0.9}); };
    CHECK(run(adam, true)[0] == run(adam, false)[0]);
    CHECK(run(adam, true)[1] == run(adam, false)[1]);
    CHECK(run(adagrad, true)[0] == run(adagrad, false)[0]);
    CHECK(run(sgd, true)[1] == run(sgd, false)[1]);
}
