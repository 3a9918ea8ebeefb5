// The batched, tape-free population scorer (experiment/population_scoring.hpp) against the
// taped per-member path it replaces, on every loss it claims to compute; and that a member's
// fitness does not depend on its batch, its thread or the population's split.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "experiment/meta_learning.hpp"
#include "experiment/presets.hpp"

using namespace occam;

namespace {

/// fig8-evolution made small: 16 members, 3 functions, a few generations per function.
experiment::Config small_fig8() {
    experiment::Config c = experiment::find_preset("fig8-evolution").config;
    c.population = 16;
    c.functions = 3;
    c.steps = 2;
    c.n_test = 40;
    return c;
}

/// The largest difference between the batched and the per-member fitness of every member,
/// relative to the fitness or to 1 if it is smaller (a students' log-ratio can cancel to near 0
/// from terms of order 1), on each function in turn (the later ones project on the earlier).
double worst_relative_gap(const experiment::Config& c) {
    experiment::MetaTrainer t(c);
    double worst = 0;
    ad::Rng probe_rng(7, 7);
    const Eigen::MatrixXd probe = t.inputs().sample(64, probe_rng);
    while (!t.finished()) {
        for (int s = 0; s < c.steps; ++s) {
            const Eigen::VectorXd batched = t.population_fitness(true), taped = t.population_fitness(false);
            REQUIRE(batched.size() == taped.size());
            for (Eigen::Index i = 0; i < taped.size(); ++i) {
                REQUIRE(std::isfinite(taped[i]));
                worst = std::max(worst, std::abs(batched[i] - taped[i]) / std::max(1.0, std::abs(taped[i])));
            }
            t.step();
        }
        t.finish_function(probe);
    }
    return worst;
}

}  // namespace

TEST_CASE("population scoring: the batch gives the taped path's fitness to 1e-12 on every loss it computes") {
    const std::vector<std::pair<std::string, std::function<void(experiment::Config&)>>> variants = {
        {"fig8 (relu, identity output, variance, mean^2, projection)", [](experiment::Config&) {}},
        {"linear meta-learner", [](experiment::Config& c) { c.meta_depth = 0; }},
        {"one hidden layer, tanh, cos output", [](experiment::Config& c) {
             c.meta_depth = 1, c.meta_activation = "tanh", c.meta_output = "cos";
         }},
        {"three layers, sigmoid, tanh output", [](experiment::Config& c) {
             c.meta_depth = 3, c.meta_activation = "sigmoid", c.meta_output = "tanh", c.meta_hidden = 12;
         }},
        {"relu6 and relu6/6", [](experiment::Config& c) { c.meta_activation = "relu6", c.meta_output = "relu6/6"; }},
        {"standardized labels", [](experiment::Config& c) { c.standardize_labels = true; }},
        {"w2 on the test labels", [](experiment::Config& c) { c.divergence = "w2", c.div_on = "test"; }},
        {"variance on train and test apart", [](experiment::Config& c) { c.div_on = "split", c.orth_constant = false; }},
        {"divergence alternating w2, variance", [](experiment::Config& c) { c.divergence = "w2,variance"; }},
        {"ridge learner, no orthogonality", [](experiment::Config& c) { c.learner = "ridge", c.orthogonality = "none"; }},
        {"arccos learner", [](experiment::Config& c) { c.learner = "arccos"; }},
        {"students (difference)", [](experiment::Config& c) {
             c.chosen = "kernel", c.neglected = "ridge", c.students_loss = "difference";
         }},
        {"students (log-ratio)", [](experiment::Config& c) {
             c.chosen = "kernel", c.neglected = "ridge:bias=1", c.students_loss = "log-ratio";
         }},
        {"cooperative", [](experiment::Config& c) { c.cooperative = "kernel,ridge,arccos"; }},
        {"snes", [](experiment::Config& c) { c.meta_optimizer = "snes"; }},
        {"openai-es (mirrored members)", [](experiment::Config& c) { c.meta_optimizer = "openai-es"; }},
        {"sep-cma-es", [](experiment::Config& c) { c.meta_optimizer = "sep-cma-es"; }},
        {"weights", [](experiment::Config& c) { c.mse_weight = 10, c.div_weight = 0.5; }},
    };
    for (const auto& [name, edit] : variants) {
        CAPTURE(name);
        experiment::Config c = small_fig8();
        edit(c);
        const double gap = worst_relative_gap(c);
        MESSAGE(name << ": worst relative gap " << gap);
        CHECK(gap <= 1e-12);
    }
}

TEST_CASE("population scoring: a member's fitness does not depend on its batch, thread or process") {
    experiment::Config c = small_fig8();
    c.population = 21;  // blocks of 8, 8 and 5
    experiment::MetaTrainer one(c);
    const Eigen::VectorXd expected = one.population_fitness(true);
    for (int threads : {2, 3}) {
        experiment::Config ct = c;
        ct.threads = threads;
        experiment::MetaTrainer t(ct);
        const Eigen::VectorXd got = t.population_fitness(true);
        CHECK(got == expected);  // bit for bit
    }
    // Split over 3 "processes" (members 0-6, 7-13, 14-20: blocks start elsewhere), each gathering
    // the others' fitness through a fake all_gather that supplies the whole population's.
    for (int rank = 0; rank < 3; ++rank) {
        experiment::MetaTrainer part(c);
        experiment::PopulationSplit split{rank, 3, {}, {}};
        split.all_gather = [&](const std::vector<double>& mine) {
            std::vector<double> all;
            for (int r = 0; r < 3; ++r) {
                if (r == rank) {
                    all.insert(all.end(), mine.begin(), mine.end());
                    continue;
                }
                for (int i = split.first(21, r); i < split.first(21, r + 1); ++i) all.push_back(expected[i]);
                all.push_back(21);  // no failure there
            }
            return all;
        };
        split.broadcast = [](const std::string& s, int) { return s; };
        part.set_population_split(split);
        const Eigen::VectorXd got = part.population_fitness(true);
        CHECK(got == expected);
    }
}

TEST_CASE("population scoring: training batched and per member takes the same steps") {
    for (const char* method : {"des", "sep-cma-es"}) {
        CAPTURE(method);
        experiment::Config c = small_fig8();
        c.meta_optimizer = method;
        c.steps = 4;
        experiment::MetaTrainer batched(c), taped(c);
        taped.set_batched_scoring(false);
        for (int s = 0; s < c.steps; ++s) {
            const experiment::StepLog a = batched.step(), b = taped.step();
            CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
            CHECK(a.mse == doctest::Approx(b.mse).epsilon(1e-12));
            CHECK(a.divergence == doctest::Approx(b.divergence).epsilon(1e-12));
            CHECK(a.orthogonality == doctest::Approx(b.orthogonality).epsilon(1e-10));
            // Only the ranks move the distribution, and they agree: the same parameters, bit for bit.
            REQUIRE(batched.params().size() == taped.params().size());
            for (std::size_t k = 0; k < batched.params().size(); ++k) CHECK(batched.params()[k] == taped.params()[k]);
        }
    }
}

TEST_CASE("population scoring: runs it cannot score as a batch are scored per member") {
    const std::vector<std::pair<std::string, std::function<void(experiment::Config&)>>> others = {
        {"sinkhorn draws target samples", [](experiment::Config& c) { c.divergence = "sinkhorn"; }},
        {"an unrolled MLP learner is not linear in its labels", [](experiment::Config& c) {
             c.learner = "mlp", c.learner_hidden = "4", c.inner_steps = 2;
         }},
    };
    for (const auto& [name, edit] : others) {
        CAPTURE(name);
        experiment::Config c = small_fig8();
        edit(c);
        experiment::MetaTrainer t(c);
        CHECK_THROWS_WITH_AS(t.population_fitness(true), doctest::Contains("cannot be scored as a batch"),
                             std::logic_error);
        CHECK(t.population_fitness(false).allFinite());
        CHECK(std::isfinite(t.step().loss));  // and step() falls back
    }
    // The overlap penalty needs the taped path from the second function on.
    experiment::Config c = small_fig8();
    c.orthogonality = "penalty";
    experiment::MetaTrainer t(c);
    CHECK(t.population_fitness(true).allFinite());  // function 1: no penalty yet
    t.step(), t.step();
    ad::Rng r(3, 3);
    t.finish_function(t.inputs().sample(32, r));
    CHECK_THROWS_AS(t.population_fitness(true), std::logic_error);
    // A gradient method has no population.
    experiment::Config g = small_fig8();
    g.meta_optimizer = "adam";
    experiment::MetaTrainer gt(g);
    CHECK_THROWS_AS(gt.population_fitness(true), std::logic_error);
}

TEST_CASE("population scoring: a member whose labels overflow stops the run with the taped path's error") {
    experiment::Config c = small_fig8();
    c.sigma = 1e200;  // weights ~1e200: the labels overflow to inf, and inf - inf is NaN
    experiment::MetaTrainer t(c);
    auto error_of = [&](bool batched) {
        try {
            t.population_fitness(batched);
        } catch (const experiment::TrainingError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    const std::string batched = error_of(true);
    CHECK(batched == error_of(false));
    CHECK(batched == "function 1, step 0: member 0: variance_penalty: labels contain NaN or inf");
    CHECK_THROWS_WITH_AS(t.step(), "function 1, step 0: member 0: variance_penalty: labels contain NaN or inf",
                         experiment::TrainingError);
}
