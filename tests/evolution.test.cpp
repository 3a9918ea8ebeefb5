// Evolution strategies: the reference weight vectors, and each rule actually minimising.
#include "metaloss/evolution.hpp"

#include <doctest/doctest.h>

using namespace occam;
using metaloss::EsMethod;

TEST_CASE("evolution: DES weights match evosax's") {
    // The recombination weights of evosax's DES (github.com/RobertTLange/evosax, temperature 12.5)
    // for populations of 2, 4 and 8.
    const Eigen::VectorXd w2 = metaloss::des_weights(2, 12.5);
    CHECK(w2[0] == doctest::Approx(1.0).epsilon(1e-8));  // 1 - 2.2e-9
    CHECK(w2[1] == doctest::Approx(2.226e-9).epsilon(1e-3));
    const Eigen::VectorXd w4 = metaloss::des_weights(4, 12.5);
    const double ref4[] = {0.898075, 0.101925, 1.76167e-8, 1.99937e-9};
    for (int i = 0; i < 4; ++i) CHECK(w4[i] == doctest::Approx(ref4[i]).epsilon(1e-5));
    const Eigen::VectorXd w8 = metaloss::des_weights(8, 12.5);
    const double ref8[] = {0.472068, 0.390732, 0.13573, 0.00146998, 3.375e-7, 3.655e-9, 1.270e-9, 1.051e-9};
    for (int i = 0; i < 8; ++i) CHECK(w8[i] == doctest::Approx(ref8[i]).epsilon(1e-3));
    CHECK(w8.sum() == doctest::Approx(1.0));
}

TEST_CASE("evolution: SNES utilities sum to zero (reference N=4 vector)") {
    const Eigen::VectorXd u = metaloss::snes_utilities(4);
    const double ref[] = {0.4804, 0.0196, -0.25, -0.25};
    for (int i = 0; i < 4; ++i) CHECK(u[i] == doctest::Approx(ref[i]).epsilon(1e-3));
    CHECK(std::abs(metaloss::snes_utilities(64).sum()) < 1e-12);
}

TEST_CASE("evolution: ranks put NaN last and keep ties in index order") {
    Eigen::VectorXd f(5);
    f << 2.0, std::nan(""), 1.0, 2.0, -1.0;
    const std::vector<int> order = metaloss::rank_order(f);
    CHECK(order == std::vector<int>{4, 2, 0, 3, 1});
}

TEST_CASE("evolution: members depend only on (seed, generation, member), and OpenAI-ES pairs them") {
    metaloss::EsOptions o;
    o.population = 6;
    metaloss::EvolutionStrategy a(EsMethod::openai_es, Eigen::VectorXd::Zero(7), o, 3, 9);
    metaloss::EvolutionStrategy b(EsMethod::openai_es, Eigen::VectorXd::Zero(7), o, 3, 9);
    std::vector<Eigen::VectorXd> fwd, rev(6);
    for (int i = 0; i < 6; ++i) fwd.push_back(a.sample(i));
    for (int i = 5; i >= 0; --i) rev[std::size_t(i)] = b.sample(i);
    for (int i = 0; i < 6; ++i) CHECK(fwd[std::size_t(i)] == rev[std::size_t(i)]);
    for (int i = 0; i < 3; ++i) CHECK(fwd[std::size_t(i)] == -fwd[std::size_t(i + 3)]);
    metaloss::EvolutionStrategy other_seed(EsMethod::openai_es, Eigen::VectorXd::Zero(7), o, 4, 9);
    CHECK(other_seed.sample(0) != fwd[0]);
}

namespace {
/// Runs a strategy on f(x) = sum_j s_j (x_j - 1)^2 from x = 0; returns f at the final mean.
double minimise(EsMethod method, const Eigen::VectorXd& scale, int generations, metaloss::EsOptions o) {
    const int d = int(scale.size());
    metaloss::EvolutionStrategy es(method, Eigen::VectorXd::Zero(d), o, 1, 2);
    auto f = [&](const Eigen::VectorXd& x) { return (scale.array() * (x.array() - 1.0).square()).sum(); };
    for (int g = 0; g < generations; ++g) {
        Eigen::VectorXd fit(o.population);
        for (int i = 0; i < o.population; ++i) fit[i] = f(es.sample(i));
        es.tell(fit);
    }
    return f(es.mean());
}
}  // namespace

TEST_CASE("evolution: every strategy minimises a quadratic in 20 dimensions") {
    const Eigen::VectorXd ones = Eigen::VectorXd::Ones(20);  // f = 20 at the start
    metaloss::EsOptions o;
    o.population = 32;
    o.sigma = 0.3;
    CHECK(minimise(EsMethod::des, ones, 300, o) < 1e-3);
    CHECK(minimise(EsMethod::snes, ones, 300, o) < 1e-3);
    CHECK(minimise(EsMethod::sep_cma_es, ones, 300, o) < 1e-3);
    o.lr = 0.05;
    CHECK(minimise(EsMethod::openai_es, ones, 300, o) < 2e-2);  // fixed sigma: a noise floor
}

TEST_CASE("evolution: sep-CMA-ES and SNES adapt per-coordinate scales on an ill-conditioned quadratic") {
    Eigen::VectorXd scale(10);
    for (int j = 0; j < 10; ++j) scale[j] = std::pow(10.0, j / 3.0);  // condition number 1000
    metaloss::EsOptions o;
    o.population = 16;
    o.sigma = 0.3;
    CHECK(minimise(EsMethod::sep_cma_es, scale, 400, o) < 1e-6);
    CHECK(minimise(EsMethod::snes, scale, 400, o) < 1e-4);
    // The learned stds follow 1/sqrt(scale): the steepest coordinate gets the smallest.
    metaloss::EvolutionStrategy es(EsMethod::sep_cma_es, Eigen::VectorXd::Zero(10), o, 1, 2);
    for (int g = 0; g < 150; ++g) {
        Eigen::VectorXd fit(o.population);
        for (int i = 0; i < o.population; ++i) {
            const Eigen::VectorXd x = es.sample(i);
            fit[i] = (scale.array() * (x.array() - 1.0).square()).sum();
        }
        es.tell(fit);
    }
    CHECK(es.sigma()[0] > 5 * es.sigma()[9]);
}

TEST_CASE("evolution: saving and loading the state continues the run bit for bit") {
    for (EsMethod m : {EsMethod::des, EsMethod::snes, EsMethod::openai_es, EsMethod::sep_cma_es}) {
        metaloss::EsOptions o;
        o.population = 8;
        auto f = [](const Eigen::VectorXd& x) { return x.squaredNorm() + std::sin(3 * x[0]); };
        auto gen = [&](metaloss::EvolutionStrategy& es) {
            Eigen::VectorXd fit(o.population);
            for (int i = 0; i < o.population; ++i) fit[i] = f(es.sample(i));
            es.tell(fit);
        };
        metaloss::EvolutionStrategy a(m, Eigen::VectorXd::Ones(5), o, 1, 2);
        for (int g = 0; g < 4; ++g) gen(a);
        metaloss::EvolutionStrategy b(m, Eigen::VectorXd::Zero(5), o, 1, 2);
        b.load_state(a.mean(), a.state(), a.generation());
        gen(a);
        gen(b);
        CHECK(a.mean() == b.mean());
        CHECK(a.sigma() == b.sigma());
    }
}

TEST_CASE("evolution: bad settings are errors") {
    metaloss::EsOptions o;
    o.population = 5;
    CHECK_THROWS_AS(metaloss::EvolutionStrategy(EsMethod::openai_es, Eigen::VectorXd::Zero(3), o, 1, 2),
                    std::invalid_argument);
    o.population = 1;
    CHECK_THROWS_AS(metaloss::EvolutionStrategy(EsMethod::des, Eigen::VectorXd::Zero(3), o, 1, 2),
                    std::invalid_argument);
    CHECK_THROWS_AS(metaloss::parse_es_method("cma"), std::invalid_argument);
    o.population = 4;
    metaloss::EvolutionStrategy es(EsMethod::des, Eigen::VectorXd::Zero(3), o, 1, 2);
    CHECK_THROWS_AS(es.tell(Eigen::VectorXd::Zero(3)), std::invalid_argument);
}
