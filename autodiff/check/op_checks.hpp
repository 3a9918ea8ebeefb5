// What this file teaches: a table of gradient checks, one row per op, shared by the unit tests
// and by `occam gradcheck`. Each row wraps its op as f(x) = sum(C * op(x)^2) with a fixed
// random C, so the first- and the second-order checks both see the op's own derivative.
#pragma once

#include <string>
#include <vector>

#include "../autodiff.hpp"

namespace occam::ad {

struct OpCheck {
    std::string name;
    CheckFn f;
    std::vector<Eigen::MatrixXd> inputs;
};

namespace detail {
/// Random entries with |x| in [lo, hi] and random signs: keeps kinks (0 for relu/abs) and ties
/// away from the finite-difference stencil.
inline Eigen::MatrixXd away_from_zero(Rng& rng, int r, int c, double lo = 0.2, double hi = 1.5) {
    Eigen::MatrixXd m(r, c);
    for (Eigen::Index k = 0; k < m.size(); ++k) {
        double mag = rng.uniform(lo, hi);
        m.data()[k] = rng.uniform() < 0.5 ? -mag : mag;
    }
    return m;
}
inline Eigen::MatrixXd positive(Rng& rng, int r, int c) { return rng.uniform_matrix(r, c, 0.3, 2.0); }


/// f(x) = sum(C * op(x)^2): a non-linear scalar wrapper so second order is exercised.
inline CheckFn wrap(std::function<Var(const std::vector<Var>&)> op, std::uint64_t salt) {
    return [op, salt](const std::vector<Var>& xs) {
        Var y = op(xs);
        Rng rng(99, salt);
        Var c = constant(rng.uniform_matrix(y.rows(), y.cols(), 0.5, 1.5));
        return sum(mul(c, square(y)));
    };
}
}  // namespace detail

/// Every differentiable op with inputs that keep the checks well-conditioned.
inline std::vector<OpCheck> op_checks() {
    using detail::away_from_zero;
    using detail::positive;
    using V = const std::vector<Var>&;
    Rng rng(2024, 1);
    std::vector<OpCheck> rows;
    std::uint64_t salt = 0;
    auto row = [&](std::string name, std::function<Var(V)> op, std::vector<Eigen::MatrixXd> in) {
        rows.push_back({std::move(name), detail::wrap(std::move(op), ++salt), std::move(in)});
    };
    auto R = [&](int r, int c) { return rng.normal_matrix(r, c); };

    row("add", [](V x) { return x[0] + x[1]; }, {R(3, 4), R(3, 4)});
    row("add (row broadcast)", [](V x) { return x[0] + x[1]; }, {R(3, 4), R(1, 4)});
    row("add (column broadcast)", [](V x) { return x[0] + x[1]; }, {R(3, 1), R(3, 4)});
    row("add (scalar broadcast)", [](V x) { return x[0] + x[1]; }, {R(1, 1), R(3, 4)});
    row("sub", [](V x) { return x[0] - x[1]; }, {R(3, 4), R(1, 4)});
    row("mul", [](V x) { return x[0] * x[1]; }, {R(3, 4), R(3, 1)});
    row("div", [](V x) { return x[0] / x[1]; }, {R(3, 4), away_from_zero(rng, 1, 4, 0.5, 1.5)});
    row("add_scalar", [](V x) { return x[0] + 0.7; }, {R(3, 4)});
    row("mul_scalar", [](V x) { return 1.3 * x[0]; }, {R(3, 4)});
    row("neg", [](V x) { return -x[0]; }, {R(3, 4)});
    row("exp", [](V x) { return exp(x[0]); }, {R(3, 4)});
    row("log", [](V x) { return log(x[0]); }, {positive(rng, 3, 4)});
    row("sqrt", [](V x) { return sqrt(x[0]); }, {positive(rng, 3, 4)});
    row("abs", [](V x) { return abs(x[0]); }, {away_from_zero(rng, 3, 4)});
    row("tanh", [](V x) { return tanh(x[0]); }, {R(3, 4)});
    row("sigmoid", [](V x) { return sigmoid(x[0]); }, {R(3, 4)});
    row("sin", [](V x) { return sin(x[0]); }, {R(3, 4)});
    row("cos", [](V x) { return cos(x[0]); }, {R(3, 4)});
    row("relu", [](V x) { return relu(x[0]); }, {away_from_zero(rng, 3, 4)});
    row("relu_grad", [](V x) { return relu_grad(x[0], x[1]); }, {rng.normal_matrix(3, 4), away_from_zero(rng, 3, 4)});
    {
        Eigen::MatrixXd m = away_from_zero(rng, 3, 4);
        m(0, 0) = 6.5;  // above the upper kink
        m(1, 1) = 5.2;
        row("relu6", [](V x) { return relu6(x[0]); }, {m});
    }
    row("square", [](V x) { return square(x[0]); }, {R(3, 4)});
    // A spike's backward is a surrogate, not H' = 0: only its smooth version (forward = the
    // surrogate's antiderivative) is a function finite differences can check. The fast sigmoid's
    // g' jumps at 0, so its inputs stay away from 0.
    row("spike (smooth, sigmoid surrogate)",
        [](V x) { return spike(x[0], {.kind = SpikeSurrogate::Kind::sigmoid, .beta = 5.0, .smooth = true}); },
        {Eigen::MatrixXd(0.5 * R(3, 4))});
    row("spike (smooth, fast-sigmoid surrogate)",
        [](V x) { return spike(x[0], {.kind = SpikeSurrogate::Kind::fast_sigmoid, .scale = 3.0, .smooth = true}); },
        {away_from_zero(rng, 3, 4, 0.1, 1.0)});
    row("pow 2.5", [](V x) { return pow(x[0], 2.5); }, {positive(rng, 3, 4)});
    row("pow -1", [](V x) { return pow(x[0], -1.0); }, {positive(rng, 3, 4)});
    {
        Eigen::MatrixXd m = (rng.uniform_matrix(3, 4, 0, 1).array() > 0.5).cast<double>();
        row("where", [m](V x) { return where(constant(m), x[0], x[1]); }, {R(3, 4), R(1, 4)});
    }
    {
        Eigen::MatrixXd a = R(3, 4), b = a + away_from_zero(rng, 3, 4, 0.1, 0.5);
        row("maximum", [](V x) { return maximum(x[0], x[1]); }, {a, b});
        row("minimum", [](V x) { return minimum(x[0], x[1]); }, {a, b});
    }
    row("transpose", [](V x) { return transpose(x[0]); }, {R(3, 4)});
    row("reshape", [](V x) { return reshape(x[0], 2, 6); }, {R(3, 4)});
    row("block", [](V x) { return block(x[0], 1, 1, 2, 2); }, {R(3, 4)});
    row("embed", [](V x) { return embed(x[0], 1, 2, 4, 5); }, {R(2, 3)});
    row("gather_rows", [](V x) { return gather_rows(x[0], {2, 0, 2, 1}); }, {R(3, 4)});
    row("gather_cols", [](V x) { return gather_cols(x[0], {3, 3, 0}); }, {R(3, 4)});
    row("scatter_rows", [](V x) { return scatter_rows(x[0], {1, 1, 3}, 5); }, {R(3, 2)});
    row("scatter_cols", [](V x) { return scatter_cols(x[0], {0, 2}, 4); }, {R(3, 2)});
    row("hcat", [](V x) { return hcat(x[0], x[1]); }, {R(3, 2), R(3, 3)});
    row("vcat", [](V x) { return vcat(x[0], x[1]); }, {R(2, 3), R(1, 3)});
    row("broadcast_to", [](V x) { return broadcast_to(x[0], 3, 4); }, {R(1, 4)});
    row("sum_to", [](V x) { return sum_to(x[0], 3, 1); }, {R(3, 4)});
    row("sum", [](V x) { return sum(x[0]); }, {R(3, 4)});
    row("mean", [](V x) { return mean(x[0]); }, {R(3, 4)});
    row("row_sums", [](V x) { return row_sums(x[0]); }, {R(3, 4)});
    row("col_sums", [](V x) { return col_sums(x[0]); }, {R(3, 4)});
    row("row_means", [](V x) { return row_means(x[0]); }, {R(3, 4)});
    row("col_means", [](V x) { return col_means(x[0]); }, {R(3, 4)});
    row("row_logsumexp", [](V x) { return row_logsumexp(x[0]); }, {R(3, 4)});
    row("col_logsumexp", [](V x) { return col_logsumexp(x[0]); }, {R(3, 4)});
    row("matmul", [](V x) { return matmul(x[0], x[1]); }, {R(3, 4), R(4, 2)});
    row("matmul_nt", [](V x) { return matmul_nt(x[0], x[1]); }, {R(3, 4), R(2, 4)});
    row("matmul_tn", [](V x) { return matmul_tn(x[0], x[1]); }, {R(4, 3), R(4, 2)});
    // The same through kernels/gemm.hpp's blocked kernel (used above kGemmMinWork multiply-adds),
    // on sizes that are not multiples of its 8-row blocks and 6- or 8-column panels.
    row("matmul (blocked kernel)", [](V x) { detail::GemmThreshold all(0); return matmul(x[0], x[1]); },
        {R(11, 5), R(5, 9)});
    row("matmul_nt (blocked kernel)", [](V x) { detail::GemmThreshold all(0); return matmul_nt(x[0], x[1]); },
        {R(11, 5), R(9, 5)});
    row("matmul_tn (blocked kernel)", [](V x) { detail::GemmThreshold all(0); return matmul_tn(x[0], x[1]); },
        {R(5, 11), R(5, 9)});
    // Convolutions on sizes with padding, stride, a rectangular kernel and channels on both
    // sides; each backward is another member of the family, so the second-order check runs
    // all three.
    {
        const ConvGeometry g{.channels = 2, .height = 5, .width = 4, .kernel_h = 3, .kernel_w = 2, .stride = 1,
                             .padding = 1};
        const ConvGeometry s{.channels = 2, .height = 5, .width = 6, .kernel_h = 3, .kernel_w = 3, .stride = 2};
        const int cout = 3;
        row("conv2d (padding 1)", [g](V x) { return conv2d(x[0], x[1], g); }, {R(2, 40), R(cout, g.patch())});
        row("conv2d (stride 2)", [s](V x) { return conv2d(x[0], x[1], s); }, {R(3, 60), R(cout, s.patch())});
        row("conv2d (bias)", [g](V x) { return conv2d(x[0], x[1], x[2], g); },
            {R(2, 40), R(cout, g.patch()), R(1, cout)});
        row("conv2d_transpose", [g](V x) { return conv2d_transpose(x[0], x[1], g); },
            {R(2, cout * g.positions()), R(cout, g.patch())});
        row("conv2d_weight_grad", [s](V x) { return conv2d_weight_grad(x[0], x[1], s); },
            {R(3, 60), R(3, cout * s.positions())});
        // Pre-activations at random normal values: no window maximum sits at relu's kink or ties.
        row("conv2d_relu_pool", [g](V x) { return conv2d_relu_pool(x[0], x[1], x[2], g); },
            {R(2, 40), R(cout, g.patch()), R(1, cout)});
    }
    // Distinct normal entries: no two in a window are within the finite-difference step, so
    // no maximum changes place. 5 x 4 images lose their last row of pixels (floor mode).
    row("max_pool2d", [](V x) { return max_pool2d(x[0], 2, 5, 4); }, {R(3, 40)});
    row("take", [](V x) { return take(x[0], {5, 0, 5, 11, 3, 7}, 2, 3); }, {R(3, 4)});
    row("put", [](V x) { return put(x[0], {5, 0, 5, 11}, 3, 4); }, {R(2, 2)});
    {
        Eigen::MatrixXd a = R(4, 4);
        Eigen::MatrixXd spd = a * a.transpose() + 2.0 * Eigen::MatrixXd::Identity(4, 4);
        Eigen::MatrixXd general = R(4, 4) + 4.0 * Eigen::MatrixXd::Identity(4, 4);
        // The SPD case keeps its input symmetric (A = S + S^T) so the forward pass really takes
        // the Cholesky path under every finite-difference perturbation.
        row("solve (Cholesky)", [](V x) { return solve(x[0] + transpose(x[0]), x[1]); }, {0.5 * spd, R(4, 2)});
        row("solve (LU)", [](V x) { return solve(x[0], x[1]); }, {general, R(4, 2)});
    }
    // Two conv2d_relu_pool layers as one node: with the images an input, layer by layer; with
    // them as data, the bottom pair's fused backward (kernels/conv_relu_pool_pair.hpp). The
    // second order runs the recorded chain.
    {
        const std::vector<ConvGeometry> gs{
            {.channels = 1, .height = 6, .width = 6, .kernel_h = 3, .kernel_w = 3, .padding = 1},
            {.channels = 2, .height = 3, .width = 3, .kernel_h = 3, .kernel_w = 3, .padding = 1}};
        row("conv2d_relu_pool_stack", [gs](V x) { return conv2d_relu_pool_stack(x[0], std::span(x).subspan(1), gs); },
            {R(3, 36), R(2, 9), R(1, 2), R(3, 18), R(1, 3)});
        const Eigen::MatrixXd images = R(3, 36);
        row("conv2d_relu_pool_stack (images as data)",
            [gs, images](V x) { return conv2d_relu_pool_stack(constant(images), x, gs); },
            {R(2, 9), R(1, 2), R(3, 18), R(1, 3)});
        // Then a linear layer: one output (its gradient's rows made as the layers read them)
        // with the images as data, two outputs (the product) with the images an input.
        row("conv2d_relu_pool_linear (one output, images as data)",
            [gs, images](V x) { return conv2d_relu_pool_linear(constant(images), x, gs); },
            {R(2, 9), R(1, 2), R(3, 18), R(1, 3), R(1, 3), R(1, 1)});
        row("conv2d_relu_pool_linear (two outputs)",
            [gs](V x) { return conv2d_relu_pool_linear(x[0], std::span(x).subspan(1), gs); },
            {R(3, 36), R(2, 9), R(1, 2), R(3, 18), R(1, 3), R(2, 3), R(1, 2)});
    }
    return rows;
}

}  // namespace occam::ad
