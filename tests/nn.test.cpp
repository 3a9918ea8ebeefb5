// Layers and MLPs: PyTorch's layout and init, forward values by hand, first and second
// derivatives against central differences, flatten/unflatten, and the errors.
#include <doctest/doctest.h>

#include "autodiff/autodiff.hpp"
#include "autodiff/nn.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

using namespace occam;
namespace nn = occam::ad::nn;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

template <class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

/// f(x, W0, b0, W1, b1, ...) = mlp(params, x), for the checkers.
ad::CheckFn as_function(const nn::MLP& mlp) {
    return [mlp](const std::vector<ad::Var>& in) {
        std::vector<ad::Var> params(in.begin() + 1, in.end());
        return mlp(params, in[0]);
    };
}

}  // namespace

TEST_CASE("nn: names parse and print both ways") {
    for (nn::Activation a : {nn::Activation::relu, nn::Activation::tanh, nn::Activation::sigmoid,
                             nn::Activation::identity, nn::Activation::relu6})
        CHECK(nn::parse_activation(nn::name(a)) == a);
    for (nn::OutputMap m :
         {nn::OutputMap::identity, nn::OutputMap::cos, nn::OutputMap::tanh, nn::OutputMap::relu6_over_6})
        CHECK(nn::parse_output_map(nn::name(m)) == m);
    CHECK(nn::name(nn::Activation::relu6) == "relu6");
    CHECK(nn::name(nn::OutputMap::relu6_over_6) == "relu6/6");
    CHECK(nn::parse_output_map("relu6/6") == nn::OutputMap::relu6_over_6);

    CHECK_THROWS_AS(nn::parse_activation("gelu"), std::invalid_argument);
    const std::string msg = error_of([] { nn::parse_activation("gelu"); });
    CHECK(contains(msg, "'gelu'"));
    CHECK(contains(msg, "relu, tanh, sigmoid, identity, relu6"));
    const std::string msg2 = error_of([] { nn::parse_output_map("sin"); });
    CHECK(contains(msg2, "'sin'"));
    CHECK(contains(msg2, "identity, cos, tanh, relu6/6"));
    CHECK_THROWS_AS(nn::parse_output_map("Tanh"), std::invalid_argument);  // names are exact
}

TEST_CASE("nn: activations and output maps compute the named functions") {
    ad::TapeScope scope;
    Eigen::MatrixXd v(1, 4);
    v << -1.0, 0.5, 3.0, 7.0;
    ad::Var x = ad::constant(v);
    auto at = [](const ad::Var& y, int j) { return ad::value(y)(0, j); };
    CHECK(at(nn::activate(x, nn::Activation::relu), 0) == 0.0);
    CHECK(at(nn::activate(x, nn::Activation::relu), 3) == 7.0);
    CHECK(at(nn::activate(x, nn::Activation::relu6), 3) == 6.0);
    CHECK(at(nn::activate(x, nn::Activation::relu6), 1) == 0.5);
    CHECK(at(nn::activate(x, nn::Activation::tanh), 1) == doctest::Approx(std::tanh(0.5)));
    CHECK(at(nn::activate(x, nn::Activation::sigmoid), 0) == doctest::Approx(1.0 / (1.0 + std::exp(1.0))));
    CHECK(at(nn::activate(x, nn::Activation::identity), 2) == 3.0);
    CHECK(at(nn::output_map(x, nn::OutputMap::cos), 2) == doctest::Approx(std::cos(3.0)));
    CHECK(at(nn::output_map(x, nn::OutputMap::tanh), 0) == doctest::Approx(std::tanh(-1.0)));
    CHECK(at(nn::output_map(x, nn::OutputMap::identity), 1) == 0.5);
    ad::Var r = nn::output_map(x, nn::OutputMap::relu6_over_6);  // relu6(x) / 6, in [0, 1]
    CHECK(at(r, 0) == 0.0);
    CHECK(at(r, 2) == doctest::Approx(0.5));
    CHECK(at(r, 3) == doctest::Approx(1.0));
}

TEST_CASE("nn: Linear uses torch's layout and default init") {
    const nn::Linear lin{.in = 4, .out = 3};
    ad::Rng rng(11);
    const std::vector<Eigen::MatrixXd> wb = lin.init(rng);
    REQUIRE(wb.size() == 2);
    CHECK(wb[0].rows() == 3);
    CHECK(wb[0].cols() == 4);
    CHECK(wb[1].rows() == 1);
    CHECK(wb[1].cols() == 3);
    const double bound = 1.0 / std::sqrt(4.0);
    CHECK(wb[0].cwiseAbs().maxCoeff() <= bound);
    CHECK(wb[1].cwiseAbs().maxCoeff() <= bound);
    // W is drawn first, then b, from the same generator.
    ad::Rng again(11);
    CHECK(wb[0] == again.uniform_matrix(3, 4, -bound, bound));
    CHECK(wb[1] == again.uniform_matrix(1, 3, -bound, bound));

    ad::TapeScope scope;
    Eigen::MatrixXd xv(2, 4);
    xv << 1, 2, 3, 4, -1, 0, 0.5, 2;
    ad::Var y = nn::Linear::apply(ad::constant(xv), ad::constant(wb[0]), ad::constant(wb[1]));
    const Eigen::MatrixXd expected = (xv * wb[0].transpose()).rowwise() + wb[1].row(0);
    CHECK((ad::value(y) - expected).cwiseAbs().maxCoeff() < 1e-14);
    CHECK_THROWS_AS(nn::Linear::apply(ad::constant(xv), ad::constant(wb[0]), ad::constant(wb[1].transpose())),
                    ad::ShapeError);
    CHECK_THROWS_AS(nn::Linear::apply(ad::constant(xv), ad::constant(wb[0].transpose()), ad::constant(wb[1])),
                    ad::ShapeError);
    CHECK_THROWS_AS((nn::Linear{.in = 0, .out = 3}.init(rng)), std::invalid_argument);
}

TEST_CASE("nn: MLP shapes, parameter count, init bounds and determinism") {
    const nn::MLP mlp{.widths = {3, 150, 150, 1}};
    CHECK(mlp.activation == nn::Activation::relu);
    CHECK(mlp.output == nn::OutputMap::identity);
    const std::vector<std::pair<int, int>> shapes = mlp.shapes();
    const std::vector<std::pair<int, int>> expected = {{150, 3}, {1, 150}, {150, 150}, {1, 150}, {1, 150}, {1, 1}};
    CHECK(shapes == expected);
    CHECK(mlp.num_parameters() == std::size_t(3 * 150 + 150 + 150 * 150 + 150 + 150 + 1));
    CHECK(mlp.num_layers() == 3);

    ad::Rng rng(2024);
    const std::vector<Eigen::MatrixXd> ps = mlp.init(rng);
    REQUIRE(ps.size() == 6);
    for (std::size_t k = 0; k < ps.size(); ++k) {
        CAPTURE(k);
        CHECK(ps[k].rows() == shapes[k].first);
        CHECK(ps[k].cols() == shapes[k].second);
        const int fan_in = mlp.widths[k / 2];
        const double bound = 1.0 / std::sqrt(double(fan_in));
        CHECK(ps[k].cwiseAbs().maxCoeff() <= bound);
        if (ps[k].size() >= 150) CHECK(ps[k].cwiseAbs().maxCoeff() > 0.9 * bound);  // fills the range
    }
    // The 150-wide W1 really is uniform: mean ~ 0 and variance ~ bound^2 / 3.
    const double b1 = 1.0 / std::sqrt(150.0);
    CHECK(std::abs(ps[2].mean()) < 0.01 * b1 * 3);
    CHECK((ps[2].array().square().mean()) == doctest::Approx(b1 * b1 / 3).epsilon(0.03));

    ad::Rng same(2024), other(2025);
    const std::vector<Eigen::MatrixXd> again = mlp.init(same), different = mlp.init(other);
    for (std::size_t k = 0; k < ps.size(); ++k) {
        CHECK(ps[k] == again[k]);
        CHECK(ps[k] != different[k]);
    }
    // Layer by layer, in order, from one generator.
    ad::Rng seq(2024);
    for (std::size_t l = 0; l + 1 < mlp.widths.size(); ++l) {
        const std::vector<Eigen::MatrixXd> wb = nn::Linear{mlp.widths[l], mlp.widths[l + 1]}.init(seq);
        CHECK(wb[0] == ps[2 * l]);
        CHECK(wb[1] == ps[2 * l + 1]);
    }

    const nn::MLP linear{.widths = {3, 1}};
    CHECK(linear.num_parameters() == 4);
    CHECK(linear.shapes().size() == 2);
}

TEST_CASE("nn: MLP forward values by hand") {
    ad::TapeScope scope;
    Eigen::MatrixXd W0(3, 2), b0(1, 3), W1(1, 3), b1(1, 1), x(2, 2);
    W0 << 1, -1, 0.5, 2, -1, 0;
    b0 << 0.1, -0.2, 0.3;
    W1 << 1, -2, 0.5;
    b1 << 0.25;
    x << 1, 2, -1, 0.5;
    const std::vector<ad::Var> ps = ad::params({W0, b0, W1, b1});

    // relu: row 1 pre-activations (-0.9, 4.3, -0.7) -> (0, 4.3, 0) -> -8.6 + 0.25;
    //       row 2 pre-activations (-1.4, 0.3, 1.3) -> (0, 0.3, 1.3) -> -0.6 + 0.65 + 0.25.
    const nn::MLP relu_net{.widths = {2, 3, 1}};
    ad::Var y = relu_net(ps, ad::constant(x));
    REQUIRE(y.rows() == 2);
    REQUIRE(y.cols() == 1);
    CHECK(ad::value(y)(0, 0) == doctest::Approx(-8.35));
    CHECK(ad::value(y)(1, 0) == doctest::Approx(0.3));

    // tanh hidden layer, cos output.
    const nn::MLP tanh_net{.widths = {2, 3, 1}, .activation = nn::Activation::tanh, .output = nn::OutputMap::cos};
    ad::Var z = tanh_net(ps, ad::constant(x));
    const double r1 = std::cos(std::tanh(-0.9) - 2 * std::tanh(4.3) + 0.5 * std::tanh(-0.7) + 0.25);
    const double r2 = std::cos(std::tanh(-1.4) - 2 * std::tanh(0.3) + 0.5 * std::tanh(1.3) + 0.25);
    CHECK(ad::value(z)(0, 0) == doctest::Approx(r1).epsilon(1e-12));
    CHECK(ad::value(z)(1, 0) == doctest::Approx(r2).epsilon(1e-12));

    // {2, 1} is a linear model: no activation at all, only the output map.
    const nn::MLP linear{.widths = {2, 1}, .output = nn::OutputMap::tanh};
    Eigen::MatrixXd w(1, 2), b(1, 1);
    w << 0.5, -0.25;
    b << 0.1;
    ad::Var l = linear(ad::params({w, b}), ad::constant(x));
    CHECK(ad::value(l)(0, 0) == doctest::Approx(std::tanh(0.5 - 0.5 + 0.1)));
    CHECK(ad::value(l)(1, 0) == doctest::Approx(std::tanh(-0.5 - 0.125 + 0.1)));
}

TEST_CASE("nn: MLP gradients wrt parameters and inputs pass gradcheck and gradgradcheck") {
    for (const nn::MLP& mlp :
         {nn::MLP{.widths = {3, 5, 4, 2}, .activation = nn::Activation::tanh, .output = nn::OutputMap::identity},
          nn::MLP{.widths = {2, 4, 1}, .activation = nn::Activation::sigmoid, .output = nn::OutputMap::cos},
          nn::MLP{.widths = {3, 4, 2}, .activation = nn::Activation::tanh, .output = nn::OutputMap::tanh},
          nn::MLP{.widths = {3, 2}, .activation = nn::Activation::relu, .output = nn::OutputMap::identity}}) {
        CAPTURE(nn::name(mlp.activation));
        CAPTURE(nn::name(mlp.output));
        ad::Rng rng(7);
        std::vector<Eigen::MatrixXd> inputs = {rng.uniform_matrix(4, mlp.widths.front(), -1.0, 1.0)};
        for (auto& m : mlp.init(rng)) inputs.push_back(m);
        const ad::CheckReport first = ad::gradcheck(as_function(mlp), inputs);
        INFO("first order: " << first.message());
        CHECK(first.ok);
        const ad::CheckReport second = ad::gradgradcheck(as_function(mlp), inputs);
        INFO("second order: " << second.message());
        CHECK(second.ok);
    }
}

TEST_CASE("nn: relu MLP gradient away from the kinks") {
    // relu is not differentiable at 0, so the check needs every hidden pre-activation to sit
    // well away from 0 (more than the finite-difference step could move it).
    const nn::MLP mlp{.widths = {2, 5, 1}};
    ad::Rng rng(5);
    std::vector<Eigen::MatrixXd> inputs = {rng.uniform_matrix(4, 2, -1.0, 1.0)};
    for (auto& m : mlp.init(rng)) inputs.push_back(m);
    {
        ad::TapeScope scope;
        ad::Var z = nn::Linear::apply(ad::constant(inputs[0]), ad::constant(inputs[1]), ad::constant(inputs[2]));
        REQUIRE(ad::value(z).cwiseAbs().minCoeff() > 1e-3);
        REQUIRE((ad::value(z).array() > 0).count() > 0);  // some units are active
        REQUIRE((ad::value(z).array() < 0).count() > 0);  // and some are not
    }
    const ad::CheckReport rep = ad::gradcheck(as_function(mlp), inputs);
    INFO(rep.message());
    CHECK(rep.ok);
}

TEST_CASE("nn: MLP errors name what was expected and what was got") {
    CHECK_THROWS_AS(nn::MLP{.widths = {3}}.shapes(), std::invalid_argument);
    CHECK_THROWS_AS(nn::MLP{.widths = {}}.num_parameters(), std::invalid_argument);
    ad::Rng rng(1);
    CHECK_THROWS_AS((nn::MLP{.widths = {3, 0, 1}}.init(rng)), std::invalid_argument);
    CHECK(contains(error_of([&] { nn::MLP{.widths = {3, -2, 1}}.init(rng); }), "widths[1] = -2"));

    const nn::MLP mlp{.widths = {3, 4, 1}};
    ad::TapeScope scope;
    std::vector<ad::Var> ps = ad::params(mlp.init(rng));
    ad::Var x = ad::constant(Eigen::MatrixXd::Ones(5, 3));
    CHECK(mlp(ps, x).rows() == 5);

    std::vector<ad::Var> fewer(ps.begin(), ps.begin() + 3);
    const std::string count = error_of([&] { mlp(fewer, x); });
    CHECK(contains(count, "expected 4"));
    CHECK(contains(count, "got 3"));
    CHECK_THROWS_AS(mlp(fewer, x), std::invalid_argument);

    std::vector<ad::Var> wrong = ps;
    wrong[0] = ad::transpose(ps[0]);
    const std::string shape = error_of([&] { mlp(wrong, x); });
    CHECK(contains(shape, "expected 4x3"));
    CHECK(contains(shape, "got 3x4"));
    wrong = ps;
    wrong[3] = ad::constant(Eigen::MatrixXd::Ones(1, 2));
    const std::string bias = error_of([&] { mlp(wrong, x); });
    CHECK(contains(bias, "expected 1x1"));
    CHECK(contains(bias, "got 1x2"));

    const std::string input = error_of([&] { mlp(ps, ad::constant(Eigen::MatrixXd::Ones(5, 2))); });
    CHECK(contains(input, "expected 3 columns"));
    CHECK(contains(input, "got 5x2"));
}

TEST_CASE("nn: flatten and unflatten") {
    Eigen::MatrixXd a(2, 2), b(1, 2);
    a << 1, 3, 2, 4;
    b << 5, 6;
    const Eigen::VectorXd v = nn::flatten({a, b});
    REQUIRE(v.size() == 6);
    for (int i = 0; i < 6; ++i) CHECK(v(i) == i + 1);  // column-major, matrices in order

    const std::vector<Eigen::MatrixXd> back = nn::unflatten(v, {{2, 2}, {1, 2}});
    REQUIRE(back.size() == 2);
    CHECK(back[0] == a);
    CHECK(back[1] == b);

    const nn::MLP mlp{.widths = {3, 7, 5, 2}};
    ad::Rng rng(9);
    const std::vector<Eigen::MatrixXd> ps = mlp.init(rng);
    const Eigen::VectorXd flat = nn::flatten(ps);
    CHECK(std::size_t(flat.size()) == mlp.num_parameters());
    const std::vector<Eigen::MatrixXd> round = nn::unflatten(flat, mlp.shapes());
    REQUIRE(round.size() == ps.size());
    for (std::size_t k = 0; k < ps.size(); ++k) CHECK(round[k] == ps[k]);
    CHECK(nn::flatten(round) == flat);

    CHECK(nn::flatten({}).size() == 0);
    CHECK(nn::unflatten(Eigen::VectorXd(0), {}).empty());
    CHECK_THROWS_AS(nn::unflatten(v, {{2, 2}}), std::invalid_argument);
    CHECK_THROWS_AS(nn::unflatten(v, {{2, 2}, {2, 2}}), std::invalid_argument);
    CHECK(contains(error_of([&] { nn::unflatten(v, {{2, 2}}); }), "hold 4 entries but the vector has 6"));
}
