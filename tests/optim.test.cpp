// The plain optimisers against torch's update rules written out again here as scalar loops, the
// unrolled ones by differentiating whole training runs against central differences and a
// hand-written forward-mode recursion, and truncated meta-gradients against a hand-built cut.
#include <doctest/doctest.h>

#include "autodiff/autodiff.hpp"
#include "autodiff/optim.hpp"
#include "learners/mlp.hpp"

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

namespace {

/// A number and its derivative along one direction (forward mode written out by hand), for the
/// reference meta-gradients below: each operation applies its own derivative rule, no tape.
struct Dual {
    double v, d;
};
Dual operator+(Dual a, Dual b) { return {a.v + b.v, a.d + b.d}; }
Dual operator+(Dual a, double b) { return {a.v + b, a.d}; }
Dual operator-(Dual a, Dual b) { return {a.v - b.v, a.d - b.d}; }
Dual operator*(Dual a, Dual b) { return {a.v * b.v, a.d * b.v + a.v * b.d}; }
Dual operator*(double s, Dual a) { return {s * a.v, s * a.d}; }
Dual operator/(Dual a, Dual b) { return {a.v / b.v, (a.d * b.v - a.v * b.d) / (b.v * b.v)}; }
Dual sqrt(Dual a) {
    const double r = std::sqrt(a.v);
    return {r, a.d / (2 * r)};
}

/// One entry of the zero-gradient Adam run below, as a plain scalar recursion: the loss
/// sum_i (c_i p_i)^2 is a sum over entries, so entry i of the gradient is 2 c_i^2 p_i and every
/// entry trains on its own. Adam (UnrolledAdam's documented rule, m = v = 0 at the start):
///   g = 2 c^2 p,  m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
///   p <- p - lr (m / (1 - b1^t)) / sqrt(v / (1 - b2^t) + eps^2),
/// then meta = p + p^2. T is double (values) or Dual (values and one derivative).
template <class T>
T zero_grad_adam_meta(T p, T c, const optim::AdamOptions& o, int steps) {
    using std::sqrt;
    T m{}, v{};
    for (int t = 1; t <= steps; ++t) {
        const T g = 2.0 * (c * c * p);
        m = o.beta1 * m + (1 - o.beta1) * g;
        v = o.beta2 * v + (1 - o.beta2) * (g * g);
        const T m_hat = (1 / (1 - std::pow(o.beta1, t))) * m;
        const T v_hat = (1 / (1 - std::pow(o.beta2, t))) * v;
        p = p - o.lr * (m_hat / sqrt(v_hat + o.eps * o.eps));
    }
    return p + p * p;
}
}  // namespace

TEST_CASE("optim: UnrolledAdam with an exactly-zero gradient entry gives the exact meta-gradient") {
    // loss = sum((c p)^2): where c is 0 the gradient 2 c^2 p is exactly 0 at every step.
    Eigen::MatrixXd p0(1, 3), c0(1, 3);
    p0 << 0.5, -1.0, 2.0;
    c0 << 1.0, 0.0, 0.7;
    const optim::AdamOptions opts{.lr = 0.1};
    ad::TapeScope scope;
    ad::Var p_init = ad::param(p0), c = ad::param(c0);
    std::vector<ad::Var> p = {p_init};
    optim::UnrolledAdam adam(opts);
    for (int s = 0; s < 3; ++s) {
        ad::Var loss = ad::sum(ad::square(c * p[0]));
        std::vector<ad::Var> g = ad::grad(loss, p, {.create_graph = true});
        CHECK(ad::value(g[0])(0, 1) == 0.0);
        p = adam.step(p, g);
    }
    ad::Var meta = ad::sum(p[0]) + ad::sum(ad::square(p[0]));
    const std::vector<ad::Var> mg = ad::grad(meta, {p_init, c});
    REQUIRE(all_finite(ad::values(mg)));
    double meta_plain = 0.0;  // the forward value too, entry by entry
    for (int i = 0; i < 3; ++i) meta_plain += zero_grad_adam_meta(p0(0, i), c0(0, i), opts, 3);
    CHECK(std::abs(meta.item() - meta_plain) <= 1e-12);

    // The expected meta-gradient, entry by entry, by the forward-mode recursion above seeded with
    // dp0 = 1 (for d meta / dp0) or dc = 1 (for d meta / dc). It is the same real number the tape
    // computes, so the two differ by rounding only: about 60 operations on O(1) numbers (the
    // gradients are 0.5 to 4, the steps 0.1), each off by at most half an ulp, so an absolute
    // error of a few 1e-15 even where O(1) terms cancel (below). 1e-12 absolute is a generous
    // bound that a wrong derivative anywhere in the chain (off by 1e-3 to 1) cannot meet.
    // The c = 0 entry has a closed form: p never moves, so d meta / dp0 = 1 + 2 p0 = -1, and
    // g, m, v are O(c^2), so d meta / dc = 0 exactly. Where c != 0, d meta / dc is 0 up to
    // O(eps^2 / g^2) ~ 1e-16: Adam's step m_hat / sqrt(v_hat) does not change when every g is
    // scaled by the same factor, and c only scales g (by c^2), so the tape's c-gradient is a sum
    // of O(1) terms that must cancel to rounding.
    for (int i = 0; i < 3; ++i) {
        CAPTURE(i);
        const Dual wrt_p = zero_grad_adam_meta(Dual{p0(0, i), 1.0}, Dual{c0(0, i), 0.0}, opts, 3);
        const Dual wrt_c = zero_grad_adam_meta(Dual{p0(0, i), 0.0}, Dual{c0(0, i), 1.0}, opts, 3);
        CHECK(std::abs(ad::value(mg[0])(0, i) - wrt_p.d) <= 1e-12);
        CHECK(std::abs(ad::value(mg[1])(0, i) - wrt_c.d) <= 1e-12);
        // The reference checked on its own against central differences of the plain double
        // recursion (h = 1e-6: truncation O(h^2) ~ 1e-12, rounding O(1e-16 / h) ~ 1e-10).
        const double h = 1e-6;
        const double fd_p = (zero_grad_adam_meta(p0(0, i) + h, c0(0, i), opts, 3) -
                             zero_grad_adam_meta(p0(0, i) - h, c0(0, i), opts, 3)) / (2 * h);
        const double fd_c = (zero_grad_adam_meta(p0(0, i), c0(0, i) + h, opts, 3) -
                             zero_grad_adam_meta(p0(0, i), c0(0, i) - h, opts, 3)) / (2 * h);
        CHECK(std::abs(wrt_p.d - fd_p) <= 1e-8);
        CHECK(std::abs(wrt_c.d - fd_c) <= 1e-8);
    }
    CHECK(ad::value(mg[0])(0, 1) == -1.0);
    CHECK(ad::value(mg[1])(0, 1) == 0.0);

    // Why the denominator is sqrt(v_hat + eps^2): torch's sqrt(v_hat) + eps, written with the
    // same ops, differentiates sqrt at 0 and gives NaN for that entry.
    ad::Var g = ad::grad(ad::sum(ad::square(c * p_init)), {p_init}, {.create_graph = true})[0];
    // On the first step the bias corrections cancel exactly: m_hat = g, v_hat = g^2.
    ad::Var m_hat = g, v_hat = ad::square(g);
    ad::Var naive = p_init - ad::mul_scalar(m_hat / ad::add_scalar(ad::sqrt(v_hat), 1e-8), 0.1);
    const Eigen::MatrixXd naive_grad = ad::value(ad::grad(ad::sum(naive), {p_init})[0]);
    CHECK(std::isnan(naive_grad(0, 1)));
}

// ---------------------------------------------------------------------------------------------
// Truncated meta-gradients: differentiate through the last K of N inner steps only
// ---------------------------------------------------------------------------------------------

namespace {

/// torch's SGD (momentum, dampening, weight decay, Nesterov) and UnrolledAdam's Adam (denominator
/// sqrt(v_hat + eps^2)) written again with Var ops, the same operations in the same order as
/// optim.hpp, with the state in plain Vars so that the test itself can cut it.
struct HandUnroll {
    bool is_adam = false;
    optim::SGDOptions sgd{};
    optim::AdamOptions adam{};
    std::vector<ad::Var> buf, m, v;  // empty before the first step
    int t = 0;

    std::vector<ad::Var> step(const std::vector<ad::Var>& p, const std::vector<ad::Var>& grads) {
        ++t;
        const bool first = t == 1;
        if (first) {
            buf.assign(p.size(), ad::Var());
            m.assign(p.size(), ad::Var());
            v.assign(p.size(), ad::Var());
        }
        std::vector<ad::Var> out;
        for (std::size_t k = 0; k < p.size(); ++k) {
            ad::Var g = grads[k];
            const double wd = is_adam ? adam.weight_decay : sgd.weight_decay;
            if (wd != 0.0) g = g + ad::mul_scalar(p[k], wd);
            if (is_adam) {
                const double b1 = adam.beta1, b2 = adam.beta2;
                const ad::Var gm = ad::mul_scalar(g, 1.0 - b1), gv = ad::mul_scalar(ad::square(g), 1.0 - b2);
                m[k] = first ? gm : ad::mul_scalar(m[k], b1) + gm;
                v[k] = first ? gv : ad::mul_scalar(v[k], b2) + gv;
                const ad::Var m_hat = ad::mul_scalar(m[k], 1.0 / (1.0 - std::pow(b1, t)));
                const ad::Var v_hat = ad::mul_scalar(v[k], 1.0 / (1.0 - std::pow(b2, t)));
                const ad::Var denom = ad::sqrt(ad::add_scalar(v_hat, adam.eps * adam.eps));
                out.push_back(p[k] - ad::mul_scalar(m_hat / denom, adam.lr));
            } else {
                const double mu = sgd.momentum;
                if (mu != 0.0) {
                    buf[k] = first ? g : ad::mul_scalar(buf[k], mu) + ad::mul_scalar(g, 1.0 - sgd.dampening);
                    g = sgd.nesterov ? g + ad::mul_scalar(buf[k], mu) : buf[k];
                }
                out.push_back(p[k] - ad::mul_scalar(g, sgd.lr));
            }
        }
        return out;
    }
    /// The cut: every state matrix becomes a constant with the same value.
    void detach() {
        for (std::vector<ad::Var>* s : {&buf, &m, &v})
            for (ad::Var& x : *s)
                if (x.defined()) x = ad::constant(Eigen::MatrixXd(x.value()));
    }
};

/// Fresh leaves with the same values (what a cut does to the parameters).
std::vector<ad::Var> releaf(const std::vector<ad::Var>& p) {
    std::vector<ad::Var> out;
    for (const ad::Var& x : p) out.push_back(ad::param(Eigen::MatrixXd(x.value())));
    return out;
}

/// d(validation MSE)/d(labels) after `steps` steps on the 2-4-1 net, every step recorded with
/// create_graph, and the gradient path cut before step steps - keep (0-based): the parameters
/// become fresh leaves there and `cut_state(opt)` is called on the optimiser.
template <class Opt, class Cut>
Eigen::MatrixXd meta_grad_cut(Opt opt, Cut cut_state, int steps, int keep) {
    ad::TapeScope scope;
    const ad::Var labels = ad::param(train_labels()), x = ad::constant(train_x());
    std::vector<ad::Var> p = ad::params(net_init());
    for (int t = 0; t < steps; ++t) {
        if (t == steps - keep) {
            p = releaf(p);
            cut_state(opt);
        }
        const ad::Var loss = ad::mean(ad::square(net(p, x) - labels));
        p = opt.step(p, ad::grad(loss, p, {.create_graph = true}));
    }
    const ad::Var meta = ad::mean(ad::square(net(p, ad::constant(val_x())) - ad::constant(val_y())));
    return ad::grad(meta, {labels})[0].value();
}

double max_abs(const Eigen::MatrixXd& m) { return m.cwiseAbs().maxCoeff(); }

}  // namespace

TEST_CASE("optim: detach_state truncates the meta-gradient exactly like a hand-built cut") {
    // Truncation to the last K of N steps: the meta-gradient through steps N-K..N-1 only, with
    // the parameters and the optimiser's state entering step N-K as constants (their values
    // unchanged; the step count, and so Adam's bias corrections, carries on). The library's way:
    // fresh parameter leaves plus UnrolledSGD/UnrolledAdam::detach_state(). The reference:
    // HandUnroll, the same update written out here, whose state is replaced by
    // ad::constant(value) at the cut. Both tapes then hold the same operations on the same
    // numbers, so the two meta-gradients agree to rounding (they come out identical; 1e-13 of
    // the gradient's size leaves room for a different summation order). Forgetting to cut the
    // state keeps the path labels -> early gradients -> state -> late steps; checked below to
    // move the meta-gradient by far more than that, so the comparison sees it.
    const int steps = 5;
    const optim::SGDOptions momentum{.lr = 0.2, .momentum = 0.9, .dampening = 0.1},
                            nesterov{.lr = 0.2, .momentum = 0.8, .weight_decay = 0.05, .nesterov = true};
    const optim::AdamOptions adam{.lr = 0.05, .weight_decay = 0.01};
    const auto library_cut = [](auto& opt) { opt.detach_state(); };
    const auto hand_cut = [](HandUnroll& h) { h.detach(); };
    const auto no_cut = [](auto&) {};
    for (int keep : {1, 2, 4, 5}) {
        for (int which = 0; which < 3; ++which) {
            CAPTURE(keep);
            CAPTURE(which);
            Eigen::MatrixXd lib;
            HandUnroll hand;
            if (which < 2) {
                hand.sgd = which == 0 ? momentum : nesterov;
                lib = meta_grad_cut(optim::UnrolledSGD(hand.sgd), library_cut, steps, keep);
            } else {
                hand.is_adam = true;
                hand.adam = adam;
                lib = meta_grad_cut(optim::UnrolledAdam(adam), library_cut, steps, keep);
            }
            const Eigen::MatrixXd want = meta_grad_cut(hand, hand_cut, steps, keep);
            const double scale = max_abs(want);
            REQUIRE(scale > 1e-3);
            INFO("library " << lib.transpose() << "\nhand    " << want.transpose());
            CHECK(max_abs(lib - want) <= 1e-13 * scale);
            // Not vacuous: the state's path matters (keep < N), and so does the cut itself.
            if (keep < steps) {
                CHECK(max_abs(meta_grad_cut(hand, no_cut, steps, keep) - want) > 1e-3 * scale);
                CHECK(max_abs(meta_grad_cut(hand, hand_cut, steps, steps) - want) > 1e-3 * scale);
            }
        }
    }
}

TEST_CASE("optim: the MLP learner's truncate equals a hand-built unroll cut before the last K steps") {
    // learners::UnrolledMLP with InnerTraining::truncate = K: T inner steps, the meta-gradient
    // (test MSE with respect to the training labels) through the last K only. The reference
    // rebuilds the same run here from its parts: the same network and initial weights
    // (MLP::init on the task's generator, as new_task draws them: dense connectivity draws no
    // mask), full-batch MSE steps with HandUnroll's update, and at step T - K the parameters
    // re-made as leaves and the optimiser state as ad::constant(value). Everything before the
    // cut is then a constant, so both sides differentiate the same K steps at the same numbers
    // and agree to rounding. (The learner takes its uncut steps without create_graph, whose
    // first-order backward may take other fast paths, so their values can differ in the last
    // bits: the bound is 1e-12 of the gradient's size, the predictions 1e-13 absolute.) K = T
    // is the full unroll; a cut one step early or late changes the result by far more (checked).
    ad::Rng data(21, 0);
    const Eigen::MatrixXd x = data.normal_matrix(8, 3), xt = data.normal_matrix(5, 3), y0 = data.normal_matrix(8, 1),
                          target = data.normal_matrix(5, 1);
    const ad::nn::MLP net_shape{{3, 6, 1}, ad::nn::Activation::tanh, ad::nn::OutputMap::identity};
    const int steps = 5;

    struct Result {
        Eigen::MatrixXd pred, grad;
    };
    auto learner_run = [&](const std::string& opt, int keep) {
        learners::InnerTraining t;
        t.optimizer = opt;
        t.lr = opt == "adam" ? 0.05 : 0.2;
        t.steps = steps;
        t.truncate = keep;
        learners::UnrolledMLP l(net_shape, t, {});
        ad::Rng task(3, 1);
        l.new_task(task);
        ad::TapeScope scope;
        const ad::Var y = ad::param(y0);
        const ad::Var pred = l.fit_predict(ad::constant(x), y, ad::constant(xt));
        const ad::Var loss = ad::mean(ad::square(pred - ad::constant(target)));
        return Result{pred.value(), ad::grad(loss, {y})[0].value()};
    };
    auto hand_run = [&](const std::string& opt, int cut_at) {
        HandUnroll h;
        h.is_adam = opt == "adam";
        h.sgd = {.lr = 0.2, .momentum = opt == "momentum" ? 0.9 : 0.0};
        h.adam = {.lr = 0.05};
        ad::Rng task(3, 1);
        ad::TapeScope scope;
        const ad::Var y = ad::param(y0), xv = ad::constant(x);
        std::vector<ad::Var> p = ad::params(net_shape.init(task));
        for (int s = 0; s < steps; ++s) {
            if (s == cut_at) {
                p = releaf(p);
                h.detach();
            }
            const ad::Var loss = ad::mean(ad::square(net_shape(p, xv) - y));
            p = h.step(p, ad::grad(loss, p, {.create_graph = true}));
        }
        const ad::Var pred = net_shape(p, ad::constant(xt));
        const ad::Var loss = ad::mean(ad::square(pred - ad::constant(target)));
        return Result{pred.value(), ad::grad(loss, {y})[0].value()};
    };
    for (const std::string opt : {"sgd", "momentum", "adam"}) {
        for (int keep : {1, 2, 4, 5}) {
            CAPTURE(opt);
            CAPTURE(keep);
            const Result got = learner_run(opt, keep), want = hand_run(opt, steps - keep);
            const double scale = max_abs(want.grad);
            REQUIRE(scale > 1e-3);
            INFO("learner " << got.grad.transpose() << "\nhand    " << want.grad.transpose());
            CHECK(max_abs(got.pred - want.pred) <= 1e-13);
            CHECK(max_abs(got.grad - want.grad) <= 1e-12 * scale);
            for (int off : {-1, 1}) {
                const int other = steps - keep + off;
                if (other < 0 || other >= steps) continue;
                CAPTURE(off);
                CHECK(max_abs(hand_run(opt, other).grad - want.grad) > 1e-3 * scale);
            }
        }
    }
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
