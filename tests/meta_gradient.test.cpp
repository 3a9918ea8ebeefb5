// The whole meta-gradient, checked where it is used: the meta-loss of one meta-step on a fixed
// task, differentiated with respect to the meta-learner's parameters, against central
// differences of the same loss, for every learner kind, divergence, orthogonality mode and game.
// Any path the meta-gradient misses (a detached learner term, a projection left out of the
// backward pass) shows up here as a mismatch, whatever the loss values look like.
#include <doctest/doctest.h>

#include "experiment/meta_learning.hpp"
#include "experiment/presets.hpp"

using namespace occam;

namespace {

experiment::Config small(const std::string& learner, const std::string& divergence) {
    experiment::Config c;
    c.inputs = "sphere:3";
    c.learner = learner;
    c.divergence = divergence;
    c.n_train = 8;
    c.n_test = 12;
    c.meta_hidden = 10;
    c.meta_depth = 2;
    c.meta_output = "cos";
    c.meta_optimizer = "adam";
    c.lr = 0.01;
    c.steps = 4;
    c.learner_hidden = "6";
    c.inner_steps = 6;
    c.inner_lr = 0.1;
    return c;
}

/// d/de L(p + e v) at e = 0 two ways: the autodiff gradient's inner product with a random
/// direction v, and the central difference (L(p + h v) - L(p - h v)) / 2h. The difference has
/// truncation error O(h^2 L''') and rounding error O(eps |L| / h); with h = 1e-5 both stay below
/// 1e-7 relative for these smooth losses, so the 1e-5 tolerance leaves room while a missing term
/// (here worth 1-100% of the derivative) fails by orders of magnitude.
///
/// The Sinkhorn term is the exception: its gradient is geomloss's envelope gradient at the
/// potentials of the last annealing step, which are not converged (one iteration at the final
/// blur), so it differs from the derivative of the loss value by ~0.1-10% here, by design (the
/// Sinkhorn tests check it against geomloss). For it the reference is central differences of
/// every other term plus the chain rule through that gradient: w grad S(z) . dz/de, with dz/de
/// the central difference of the labels.
struct Directional {
    double autodiff, finite_difference;
};
Directional directional(experiment::MetaTrainer& t, std::uint64_t seed) {
    const experiment::Config& c = t.config();
    const std::vector<Eigen::MatrixXd> p = t.params();
    ad::Rng rng(seed, 77);
    std::vector<Eigen::MatrixXd> v, plus = p, minus = p;
    const double h = 1e-5;
    for (std::size_t k = 0; k < p.size(); ++k) {
        v.push_back(rng.normal_matrix(int(p[k].rows()), int(p[k].cols())));
        plus[k] += h * v[k];
        minus[k] -= h * v[k];
    }
    const auto [loss, g] = t.loss_and_gradient(p);
    // The tape-free loss is the same number (to rounding: a fused step evaluates the same
    // formula in another order than the ops of the no-tape path).
    CHECK(std::abs(loss - t.loss_at(p)) <= 1e-12 * std::max(1.0, std::abs(loss)));
    double ad_dir = 0;
    for (std::size_t k = 0; k < p.size(); ++k) ad_dir += g[k].cwiseProduct(v[k]).sum();
    double fd = (t.loss_at(plus) - t.loss_at(minus)) / (2 * h);
    if (experiment::divergence_for(c, t.function_index()) == "sinkhorn") {
        REQUIRE(c.div_on == "all");
        metaloss::SinkhornOptions o;
        o.blur = c.blur;
        o.scaling = c.scaling;
        const experiment::MetaTrainer::Batch b = t.next_batch(p);
        ad::Rng draw = b.rng;  // the divergence's target samples: the first draw after the task
        const Eigen::VectorXd target = draw.uniform_matrix(int(b.labels.size()), 1, -1.0, 1.0).col(0);
        const Eigen::VectorXd zp = t.next_batch(plus).labels, zm = t.next_batch(minus).labels;
        const double s_fd = (metaloss::sinkhorn(zp, target, o).value - metaloss::sinkhorn(zm, target, o).value) / (2 * h);
        const double s_chain = metaloss::sinkhorn(b.labels, target, o).grad_x.dot((zp - zm) / (2 * h));
        fd += c.div_weight * (s_chain - s_fd);
    }
    return {ad_dir, fd};
}

void check_directions(experiment::MetaTrainer& t) {
    for (std::uint64_t dir = 1; dir <= 2; ++dir) {
        const Directional d = directional(t, dir);
        CAPTURE(d.autodiff);
        CAPTURE(d.finite_difference);
        CHECK(std::abs(d.autodiff - d.finite_difference) <= 1e-5 * std::max(1.0, std::abs(d.finite_difference)));
    }
}

void check_meta_gradient(const experiment::Config& c) {
    experiment::MetaTrainer t(c);
    // A few steps first, so the weights are not at their initialisation's symmetries.
    for (int s = 0; s < 2; ++s) t.step();
    check_directions(t);
}

}  // namespace

TEST_CASE("meta-gradient: every learner kind and divergence against finite differences") {
    for (const char* learner : {"ridge", "kernel", "arccos", "mlp"})
        for (const char* div : {"sinkhorn", "energy", "mmd", "w2", "variance"}) {
            CAPTURE(std::string(learner));
            CAPTURE(std::string(div));
            experiment::Config c = small(learner, div);
            check_meta_gradient(c);
            if (c.learner == "mlp") {  // the op-by-op unroll as well as the fused steps
                c.fused_steps = false;
                check_meta_gradient(c);
            }
        }
}

TEST_CASE("meta-gradient: redrawn features, split divergence, mlp options") {
    experiment::Config c = small("kernel", "mmd");
    c.redraw_features = true;
    c.features_min = 10;
    c.features_max = 30;
    c.div_on = "split";
    check_meta_gradient(c);
    c = small("mlp", "energy");
    c.inner_optimizer = "adam";
    c.inner_lr = 0.02;
    c.div_on = "test";
    check_meta_gradient(c);
    c = small("mlp", "energy");
    c.step_checkpointing = true;
    c.inner_batch = 4;
    check_meta_gradient(c);
    c = small("mlp", "energy");
    c.truncate = 3;  // the truncated meta-gradient is the exact gradient of nothing: not checked
    experiment::MetaTrainer t(c);
    CHECK(std::isfinite(t.step().loss));
}

TEST_CASE("meta-gradient: through the orthogonality of a second function") {
    for (const char* orth : {"project", "penalty"}) {
        CAPTURE(std::string(orth));
        experiment::Config c = small("kernel", "sinkhorn");
        c.functions = 2;
        c.orthogonality = orth;
        c.orth_constant = true;
        experiment::MetaTrainer t(c);
        for (int s = 0; s < c.steps; ++s) t.step();
        ad::Rng rng(5, 5);
        t.finish_function(t.inputs().sample(200, rng));
        REQUIRE(t.function_index() == 1);
        t.step();
        check_directions(t);
    }
}

TEST_CASE("meta-gradient: the students and cooperative games") {
    for (const char* loss : {"difference", "log-ratio"}) {
        experiment::Config c = small("kernel", "sinkhorn");
        c.chosen = "kernel";
        c.neglected = "ridge:bias=1";
        c.students_loss = loss;
        check_meta_gradient(c);
    }
    experiment::Config c = small("kernel", "energy");
    c.cooperative = "kernel,arccos,mlp";
    check_meta_gradient(c);
}

TEST_CASE("meta-gradient: the learner's term carries most of fig2c's gradient") {
    // The check above must not pass because the learner's term is negligible: at fig2c's
    // weights (mse_weight 10) the directional derivative with and without it differ by far
    // more than the tolerance.
    experiment::Config c = experiment::find_preset("fig2c-kernel").config;
    c.meta_hidden = 16;
    experiment::MetaTrainer with(c);
    c.mse_weight = 0;
    experiment::MetaTrainer without(c);
    for (int s = 0; s < 3; ++s) {
        with.step();
        without.step();
    }
    const Directional a = directional(with, 1);
    const auto [loss, g] = without.loss_and_gradient(with.params());
    (void)loss;
    ad::Rng rng(1, 77);
    double b = 0;
    for (std::size_t k = 0; k < g.size(); ++k)
        b += g[k].cwiseProduct(rng.normal_matrix(int(g[k].rows()), int(g[k].cols()))).sum();
    CHECK(std::abs(a.autodiff - b) > 1e-3 * std::max(1.0, std::abs(a.autodiff)));
}
