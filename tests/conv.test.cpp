// Convolution and pooling (autodiff/ops/conv.hpp, kernels/conv.hpp): forward values against a
// direct loop over the definition, the family's adjoint identities on sizes that split im2col
// into several blocks, max pooling's ties and NaNs, and one-line errors for wrong shapes. The
// first- and second-order gradient checks are rows of the op table (ops.test.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "autodiff/autodiff.hpp"

using namespace occam;
using ad::ConvGeometry;

namespace {
/// Equal to the bit, NaN where NaN (NaN != NaN would fail a plain ==).
bool same_bits(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
    for (Eigen::Index k = 0; k < a.size(); ++k) {
        const double u = a.data()[k], v = b.data()[k];
        if (std::isnan(u) ? !std::isnan(v) : std::memcmp(&u, &v, sizeof u) != 0) return false;
    }
    return true;
}

/// a b + c as the kernels' lanes compute it: one rounding where the target has fused
/// multiply-adds (the compiler contracts the kernels' a * b + c; the portable lanes call
/// std::fma), two where it has not.
double multiply_add(double a, double b, double c) {
#if defined(__FMA__) || defined(OCCAM_PORTABLE_LANES)
    return std::fma(a, b, c);
#else
    return a * b + c;
#endif
}

/// y(n, o, oy, ox) = sum_{c, ky, kx} w(o, c, ky, kx) x(n, c, oy s - p + ky, ox s - p + kx), zero
/// outside the image: the definition, written as loops.
Eigen::MatrixXd direct_conv(const Eigen::MatrixXd& x, const Eigen::MatrixXd& w, const ConvGeometry& g) {
    const int N = int(x.rows()), cout = int(w.rows()), ho = g.out_h(), wo = g.out_w();
    Eigen::MatrixXd y = Eigen::MatrixXd::Zero(N, cout * ho * wo);
    for (int n = 0; n < N; ++n)
        for (int o = 0; o < cout; ++o)
            for (int oy = 0; oy < ho; ++oy)
                for (int ox = 0; ox < wo; ++ox) {
                    double s = 0;
                    for (int c = 0; c < g.channels; ++c)
                        for (int ky = 0; ky < g.kernel_h; ++ky)
                            for (int kx = 0; kx < g.kernel_w; ++kx) {
                                const int iy = oy * g.stride - g.padding + ky, ix = ox * g.stride - g.padding + kx;
                                if (iy < 0 || iy >= g.height || ix < 0 || ix >= g.width) continue;
                                s += w(o, (c * g.kernel_h + ky) * g.kernel_w + kx) *
                                     x(n, (c * g.height + iy) * g.width + ix);
                            }
                    y(n, (o * ho + oy) * wo + ox) = s;
                }
    return y;
}

double dot(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) { return (a.array() * b.array()).sum(); }

/// Short stride-1 convolutions (the direct kernels' cases): the learner's 5 x 5 and the
/// meta-learner's 3 x 3 on MNIST, several channels, no padding, padding wider than the kernel,
/// and padding on every side of a kernel as large as the padded image allows.
const ConvGeometry kShortStride1[] = {
    {.channels = 1, .height = 28, .width = 28, .kernel_h = 5, .kernel_w = 5, .stride = 1, .padding = 2},
    {.channels = 1, .height = 28, .width = 28, .kernel_h = 3, .kernel_w = 3, .stride = 1, .padding = 1},
    {.channels = 3, .height = 7, .width = 9, .kernel_h = 3, .kernel_w = 2, .stride = 1, .padding = 1},
    {.channels = 2, .height = 6, .width = 5, .kernel_h = 2, .kernel_w = 4, .stride = 1, .padding = 0},
    {.channels = 1, .height = 4, .width = 3, .kernel_h = 1, .kernel_w = 1, .stride = 1, .padding = 3},
    {.channels = 2, .height = 5, .width = 5, .kernel_h = 4, .kernel_w = 4, .stride = 1, .padding = 2},
};

}  // namespace

TEST_CASE("conv2d: the forward pass is the definition, in one block and in several") {
    ad::Rng rng(7, 1);
    const ConvGeometry cases[] = {
        {.channels = 1, .height = 28, .width = 28, .kernel_h = 5, .kernel_w = 5, .stride = 1, .padding = 2},
        {.channels = 3, .height = 7, .width = 9, .kernel_h = 3, .kernel_w = 2, .stride = 2, .padding = 1},
        {.channels = 2, .height = 6, .width = 5, .kernel_h = 6, .kernel_w = 5, .stride = 1, .padding = 0},
        // 64 images x 36 taps x 256 positions: im2col's 512 KB blocks split this into ten.
        {.channels = 4, .height = 16, .width = 16, .kernel_h = 3, .kernel_w = 3, .stride = 1, .padding = 1},
    };
    const int batch[] = {5, 3, 2, 64};
    for (int k = 0; k < 4; ++k) {
        const ConvGeometry& g = cases[k];
        CAPTURE(k);
        ad::TapeScope scope;
        const Eigen::MatrixXd x = rng.normal_matrix(batch[k], int(g.in_size()));
        const Eigen::MatrixXd w = rng.normal_matrix(4, g.patch());
        const Eigen::MatrixXd y = ad::value(ad::conv2d(ad::constant(x), ad::constant(w), g));
        const Eigen::MatrixXd want = direct_conv(x, w, g);
        REQUIRE(y.rows() == want.rows());
        REQUIRE(y.cols() == want.cols());
        CHECK((y - want).cwiseAbs().maxCoeff() < 1e-12 * (1 + want.cwiseAbs().maxCoeff()));

        // The transposed convolution and the weight gradient are the adjoints of conv in x and
        // in w: <conv(h, w), gy> = <h, T(gy, w)> and <conv(x, v), gy> = <v, WG(x, gy)>.
        const Eigen::MatrixXd gy = rng.normal_matrix(y.rows(), int(y.cols()));
        const Eigen::MatrixXd t = ad::value(ad::conv2d_transpose(ad::constant(gy), ad::constant(w), g));
        const Eigen::MatrixXd wg = ad::value(ad::conv2d_weight_grad(ad::constant(x), ad::constant(gy), g));
        const double scale = 1e-12 * (1 + std::abs(dot(want, gy)));
        CHECK(std::abs(dot(direct_conv(x, w, g), gy) - dot(x, t)) < 1e3 * scale);
        CHECK(std::abs(dot(direct_conv(x, w, g), gy) - dot(w, wg)) < 1e3 * scale);
    }
}

TEST_CASE("conv2d: the bias adds one number per output channel") {
    ad::TapeScope scope;
    ad::Rng rng(7, 2);
    const ConvGeometry g{.channels = 2, .height = 4, .width = 4, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    const Eigen::MatrixXd x = rng.normal_matrix(3, 32), w = rng.normal_matrix(2, g.patch());
    Eigen::MatrixXd b(1, 2);
    b << 0.5, -2.0;
    const Eigen::MatrixXd y = ad::value(ad::conv2d(ad::constant(x), ad::constant(w), ad::constant(b), g));
    Eigen::MatrixXd want = direct_conv(x, w, g);
    want.leftCols(16).array() += 0.5;
    want.rightCols(16).array() -= 2.0;
    CHECK((y - want).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("max_pool2d: window maxima, the first on ties, NaN propagates, a partial window is dropped") {
    ad::TapeScope scope;
    // One image, one channel, 3 x 4: rows (1 2 3 4), (5 6 5 1), (9 9 9 9); the last row is a
    // partial window and is dropped.
    Eigen::MatrixXd x(1, 12);
    x << 1, 2, 3, 4, 6, 6, 5, 1, 9, 9, 9, 9;
    ad::Var xv = ad::param(x);
    ad::Var y = ad::max_pool2d(xv, 1, 3, 4);
    REQUIRE(y.cols() == 2);
    CHECK(ad::value(y)(0, 0) == 6);
    CHECK(ad::value(y)(0, 1) == 5);
    // Both 6s tie in the first window: the gradient goes to the first in row-major order.
    const Eigen::MatrixXd g = ad::value(ad::grad(ad::sum(y), {xv})[0]);
    Eigen::MatrixXd want = Eigen::MatrixXd::Zero(1, 12);
    want(0, 4) = 1;
    want(0, 6) = 1;
    CHECK(g == want);

    x(0, 1) = std::numeric_limits<double>::quiet_NaN();
    CHECK(std::isnan(ad::value(ad::max_pool2d(ad::constant(x), 1, 3, 4))(0, 0)));
}

TEST_CASE("conv2d and max_pool2d: wrong shapes are one-line errors naming the op") {
    ad::TapeScope scope;
    const ConvGeometry g{.channels = 2, .height = 4, .width = 4, .kernel_h = 3, .kernel_w = 3};
    ad::Var x = ad::constant(Eigen::MatrixXd::Zero(2, 32));
    ad::Var w = ad::constant(Eigen::MatrixXd::Zero(3, 18));
    CHECK_THROWS_WITH_AS(ad::conv2d(ad::constant(Eigen::MatrixXd::Zero(2, 31)), w, g),
                         doctest::Contains("ad::conv2d: the images are 2x31"), ad::ShapeError);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, ad::constant(Eigen::MatrixXd::Zero(3, 9)), g),
                         doctest::Contains("need 18 columns"), ad::ShapeError);
    ConvGeometry big = g;
    big.kernel_h = 7;
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w, big), doctest::Contains("larger than the padded image"), ad::ShapeError);
    ConvGeometry zero = g;
    zero.stride = 0;
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w, zero), doctest::Contains("stride must be >= 1"), ad::ShapeError);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w, ad::constant(Eigen::MatrixXd::Zero(1, 2)), g),
                         doctest::Contains("bias"), ad::ShapeError);
    CHECK_THROWS_WITH_AS(ad::conv2d_transpose(ad::constant(Eigen::MatrixXd::Zero(2, 7)), w, g),
                         doctest::Contains("ad::conv2d_transpose"), ad::ShapeError);
    CHECK_THROWS_WITH_AS(ad::max_pool2d(x, 2, 4, 5), doctest::Contains("ad::max_pool2d"), ad::ShapeError);
    CHECK_THROWS_WITH_AS(ad::max_pool2d(x, 2, 4, 4, 5), doctest::Contains("does not fit"), ad::ShapeError);
    CHECK_THROWS_AS(ad::take(x, {0, 64}, 1, 2), ad::ShapeError);
    CHECK_THROWS_AS(ad::put(ad::constant(Eigen::MatrixXd::Zero(1, 2)), {0, -1}, 2, 2), ad::ShapeError);
    // The fused layer keeps each winner's place in its window in 15 bits: windows up to 181 wide.
    const ConvGeometry wide{.channels = 1, .height = 182, .width = 182, .kernel_h = 1, .kernel_w = 1};
    ad::Var image = ad::constant(Eigen::MatrixXd::Zero(1, 182 * 182)), w1 = ad::constant(Eigen::MatrixXd::Ones(1, 1));
    ad::Var b1 = ad::constant(Eigen::MatrixXd::Zero(1, 1));
    CHECK_THROWS_WITH_AS(ad::conv2d_relu_pool(image, w1, b1, wide, 182), doctest::Contains("wider than 181"),
                         ad::ShapeError);
    CHECK(ad::conv2d_relu_pool(image, w1, b1, wide, 181).cols() == 1);
    CHECK_THROWS_WITH_AS(ad::conv2d_relu_pool(x, w, b1, g, 2), doctest::Contains("the bias is 1x1"), ad::ShapeError);
}

TEST_CASE("conv2d_relu_pool: the values-only backward equals the recorded one") {
    // ad::grad without create_graph takes the hand path (gz in a buffer); with it, the ops.
    ad::Rng rng(7, 3);
    const ConvGeometry g{.channels = 2, .height = 6, .width = 6, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    ad::TapeScope scope;
    ad::Var x = ad::param(rng.normal_matrix(4, 72)), w = ad::param(rng.normal_matrix(3, g.patch()));
    ad::Var b = ad::param(rng.normal_matrix(1, 3));
    ad::Var loss = ad::sum(ad::mul(ad::constant(rng.normal_matrix(4, 27)), ad::conv2d_relu_pool(x, w, b, g)));
    const auto fast = ad::grad(loss, {x, w, b});
    const auto recorded = ad::grad(loss, {x, w, b}, {.create_graph = true});
    for (int k = 0; k < 3; ++k) {
        CAPTURE(k);
        CHECK((fast[std::size_t(k)].value() - recorded[std::size_t(k)].value()).cwiseAbs().maxCoeff() < 1e-12);
        CHECK(fast[std::size_t(k)].value().cwiseAbs().maxCoeff() > 0.1);
    }
}

TEST_CASE("conv2d_weight_grad: long patches from x's runs give im2col and the product's bits") {
    // weight_grad_runs sums G^T against broadcasts of x's pixels tap by tap, never building
    // Col; each dw(o, t) must be the same products summed in the same order of rows, block by
    // block, as G^T Col through im2col and the blocked product, on both lane widths: long
    // patches, stride 2, padding, Cout not a multiple of 8 (1, 7, 13) and wider than one tile (40),
    // a partial last block of positions.
    ad::Rng rng(17, 3);
    const ConvGeometry cases[] = {
        {.channels = 16, .height = 14, .width = 14, .kernel_h = 3, .kernel_w = 3, .stride = 1, .padding = 1},
        {.channels = 3, .height = 9, .width = 7, .kernel_h = 3, .kernel_w = 2, .stride = 2, .padding = 1},
    };
    for (const ConvGeometry& g : cases)
        for (int n : {5, 37})
            for (int cout : {1, 7, 13, 32, 40})
                for (bool wide : {true, false}) {
                    CAPTURE(g.channels);
                    CAPTURE(n);
                    CAPTURE(cout);
                    CAPTURE(wide);
                    const int P = g.positions(), K = g.patch(), block = kernels::conv_detail::block_positions(g, n);
                    const Eigen::MatrixXd x = rng.normal_matrix(n, int(g.in_size()));
                    const Eigen::MatrixXd gy = rng.normal_matrix(n, cout * P);
                    Eigen::MatrixXd got(cout, K), want = Eigen::MatrixXd::Zero(cout, K);
                    lanes::wide_allowed() = wide;
                    kernels::conv_detail::weight_grad_runs(g, n, x.data(), gy.data(), cout, got.data());
                    for (int p0 = 0; p0 < P; p0 += block) {
                        const int p1 = std::min(P, p0 + block), rows = (p1 - p0) * n;
                        Eigen::MatrixXd col(rows, K), part(cout, K);
                        kernels::conv_detail::im2col(g, n, x.data(), p0, p1, col.data());
                        kernels::gemm(true, false, cout, K, rows, gy.data() + long(p0) * n, long(n) * P, col.data(),
                                      rows, part.data());
                        want += part;
                    }
                    lanes::wide_allowed() = true;
                    CHECK(got == want);
                }
}

TEST_CASE("conv2d_relu_pool: blocks of images give the unblocked layer's values and gradients") {
    // kernels/conv_relu_pool.hpp runs the layer a block of images at a time: two whole blocks
    // and a partial one, or one partial block. The values must be the unblocked ops' bits (each
    // entry is the same sum; the 3 x 3 layer over 4 channels sums by Winograd's tiles, to
    // rounding, whose own test compares it to the bands); the gradients, whose weight and bias parts are summed block by
    // block, agree to rounding, also through the recorded (create_graph) path. A 3 x 3 pool on
    // 28 x 28 drops a partial row and column of windows.
    ad::Rng rng(11, 3);
    const ConvGeometry mnist{.channels = 1, .height = 28, .width = 28, .kernel_h = 5, .kernel_w = 5, .padding = 2};
    const ConvGeometry deep{.channels = 4, .height = 14, .width = 14, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    struct Case {
        ConvGeometry g;
        int cout, pool, n;
    };
    const auto blocks = [](const ConvGeometry& g, int cout, int whole, int extra) {
        return whole * kernels::relu_pool_detail::block_images(1 << 20, cout, g.positions()) + extra;
    };
    for (const Case& c : {Case{mnist, 16, 2, blocks(mnist, 16, 2, 3)}, Case{mnist, 16, 2, 3},
                          Case{mnist, 16, 3, blocks(mnist, 16, 1, 5)}, Case{deep, 32, 2, blocks(deep, 32, 2, 1)}}) {
        CAPTURE(c.n);
        CAPTURE(c.pool);
        CAPTURE(c.cout);
        ad::TapeScope scope;
        ad::Var x = ad::param(rng.normal_matrix(c.n, int(c.g.in_size())));
        ad::Var w = ad::param(rng.normal_matrix(c.cout, c.g.patch()));
        ad::Var b = ad::param(rng.normal_matrix(1, c.cout));
        const int ho = c.g.out_h() / c.pool, wo = c.g.out_w() / c.pool;
        const ad::Var fused = ad::conv2d_relu_pool(x, w, b, c.g, c.pool);
        const ad::Var ops =
            ad::relu(ad::max_pool2d(ad::conv2d(x, w, b, c.g), c.cout, c.g.out_h(), c.g.out_w(), c.pool));
        if (kernels::winograd_detail::applies(c.g, c.pool))
            CHECK((fused.value() - ops.value()).cwiseAbs().maxCoeff() <=
                  64 * std::numeric_limits<double>::epsilon() * ops.value().cwiseAbs().maxCoeff());
        else
            CHECK(fused.value() == ops.value());
        REQUIRE(fused.cols() == c.cout * ho * wo);
        const ad::Var weights = ad::constant(rng.normal_matrix(c.n, c.cout * ho * wo));
        const ad::Var loss = ad::sum(ad::mul(weights, fused));
        const auto got = ad::grad(loss, {x, w, b});
        const auto recorded = ad::grad(loss, {x, w, b}, {.create_graph = true});  // winners' indices rebuilt
        const auto want = ad::grad(ad::sum(ad::mul(weights, ops)), {x, w, b});
        for (int k = 0; k < 3; ++k) {
            CAPTURE(k);
            const double scale = want[std::size_t(k)].value().cwiseAbs().maxCoeff();
            CHECK(scale > 0.1);
            CHECK((got[std::size_t(k)].value() - want[std::size_t(k)].value()).cwiseAbs().maxCoeff() <= 1e-12 * scale);
            CHECK((recorded[std::size_t(k)].value() - want[std::size_t(k)].value()).cwiseAbs().maxCoeff() <=
                  1e-12 * scale);
        }
    }
}

TEST_CASE("conv2d_relu_pool: a NaN pixel propagates as through the unblocked ops") {
    // A NaN wins its pooling window and relu keeps it, so the outputs it reaches are NaN in both
    // forms; the gradients agree entry by entry, NaN where the NaN pixel enters the weight
    // gradient (NaN x 0 is NaN) and finite in the input gradient, which never reads x.
    ad::Rng rng(13, 3);
    const ConvGeometry g{.channels = 1, .height = 28, .width = 28, .kernel_h = 5, .kernel_w = 5, .padding = 2};
    const int n = kernels::relu_pool_detail::block_images(1 << 20, 16, g.positions()) + 3;
    Eigen::MatrixXd x0 = rng.normal_matrix(n, int(g.in_size()));
    x0(n - 2, 14 * 28 + 14) = std::numeric_limits<double>::quiet_NaN();  // in the last, partial block
    ad::TapeScope scope;
    ad::Var x = ad::param(x0), w = ad::param(rng.normal_matrix(16, g.patch())), b = ad::param(rng.normal_matrix(1, 16));
    const ad::Var fused = ad::conv2d_relu_pool(x, w, b, g);
    const ad::Var ops = ad::relu(ad::max_pool2d(ad::conv2d(x, w, b, g), 16, g.out_h(), g.out_w(), 2));
    const auto same = [](const Eigen::MatrixXd& a, const Eigen::MatrixXd& e) {
        if (a.rows() != e.rows() || a.cols() != e.cols()) return false;
        for (Eigen::Index k = 0; k < a.size(); ++k) {
            const double u = a.data()[k], v = e.data()[k];
            if (std::isnan(u) != std::isnan(v) || (!std::isnan(u) && std::abs(u - v) > 1e-9 * (1 + std::abs(v))))
                return false;
        }
        return true;
    };
    CHECK(fused.value().array().isNaN().count() > 0);
    CHECK(same(fused.value(), ops.value()));
    const ad::Var weights = ad::constant(rng.normal_matrix(n, fused.cols()));
    const auto got = ad::grad(ad::sum(ad::mul(weights, fused)), {x, w, b});
    const auto want = ad::grad(ad::sum(ad::mul(weights, ops)), {x, w, b});
    for (int k = 0; k < 3; ++k) {
        CAPTURE(k);
        CHECK(same(got[std::size_t(k)].value(), want[std::size_t(k)].value()));
    }
    CHECK(got[0].value().allFinite());
    CHECK(got[1].value().array().isNaN().count() > 0);
}

TEST_CASE("conv2d_forward: the direct path (short patches, stride 1) gives the im2col path's bits") {
    // kernels/conv.hpp reads short patches straight from x instead of through im2col and the
    // blocked product; every entry must be the same sum in the same order, bit for bit, with
    // padding on every side, partial blocks of 8 rows, rows that end after one whole block of a
    // two-block tile, channel groups (6 for AVX2, 8 for AVX-512) and their remainders, on both
    // lane widths.
    ad::Rng rng(5, 3);
    for (const ConvGeometry& g : kShortStride1)
        for (int n : {1, 3, 8, 13, 20})
            for (int cout : {1, 5, 6, 7, 8, 11, 16}) {
                CAPTURE(g.channels);
                CAPTURE(g.kernel_h);
                CAPTURE(g.padding);
                CAPTURE(n);
                CAPTURE(cout);
                const Eigen::MatrixXd x = rng.normal_matrix(n, int(g.in_size()));
                const Eigen::MatrixXd w = rng.normal_matrix(cout, g.patch());
                const Eigen::VectorXd b = rng.normal_matrix(cout, 1);
                Eigen::MatrixXd via_col(n, cout * g.positions()), direct(n, cout * g.positions()),
                    narrow(n, cout * g.positions());
                kernels::conv_detail::conv2d_im2col(g, n, x.data(), w.data(), cout, via_col.data(), b.data());
                kernels::conv_detail::conv2d_direct(g, n, x.data(), w.data(), cout, direct.data(), b.data());
                lanes::wide_allowed() = false;
                kernels::conv_detail::conv2d_direct(g, n, x.data(), w.data(), cout, narrow.data(), b.data());
                lanes::wide_allowed() = true;
                CHECK(direct == via_col);
                CHECK(narrow == via_col);
                Eigen::MatrixXd want = direct_conv(x, w, g);
                for (int o = 0; o < cout; ++o) want.middleCols(o * g.positions(), g.positions()).array() += b[o];
                CHECK((direct - want).cwiseAbs().maxCoeff() <= 1e-12);
            }
}

TEST_CASE("conv2d_weight_grad: the direct path (short patches, stride 1) is the definition, the same bits on both widths") {
    // kernels/conv.hpp sums dw(o, t) = sum_r G(r, o) Col(r, t) in eight lanes down the rows,
    // reading Col from x, in tiles of 4 x 2 (AVX2) or 4 x 5 (AVX-512) sums over chunks of rows.
    // Cases: padding rows and columns (empty and partial tap runs), a batch whose output row is
    // not whole blocks of 8 (13 images), rows longer than a chunk (100 images of 28 x 28), channel
    // and tap counts that leave partial tiles of either width.
    ad::Rng rng(11, 4);
    for (const ConvGeometry& g : kShortStride1)
        for (int n : {1, 8, 13, 100})
            for (int cout : {1, 5, 9, 16}) {
                if (n == 100 && g.height < 28) continue;
                CAPTURE(g.channels);
                CAPTURE(g.kernel_h);
                CAPTURE(g.padding);
                CAPTURE(n);
                CAPTURE(cout);
                const int P = g.positions(), K = g.patch();
                const Eigen::MatrixXd x = rng.normal_matrix(n, int(g.in_size()));
                const Eigen::MatrixXd gy = rng.normal_matrix(n, cout * P);
                Eigen::MatrixXd wide(cout, K), narrow(cout, K), via_col(cout, K);
                kernels::conv2d_weight_grad(g, n, x.data(), gy.data(), cout, wide.data());
                lanes::wide_allowed() = false;
                kernels::conv2d_weight_grad(g, n, x.data(), gy.data(), cout, narrow.data());
                lanes::wide_allowed() = true;
                kernels::conv_detail::weight_grad_runs(g, n, x.data(), gy.data(), cout, via_col.data());
                CHECK(wide == narrow);
                // The definition: dw(o, (c, ky, kx)) = sum over images and outputs of gy times the
                // pixel under the tap (zero in the padding).
                Eigen::MatrixXd want = Eigen::MatrixXd::Zero(cout, K);
                for (int o = 0; o < cout; ++o)
                    for (int c = 0; c < g.channels; ++c)
                        for (int ky = 0; ky < g.kernel_h; ++ky)
                            for (int kx = 0; kx < g.kernel_w; ++kx)
                                for (int oy = 0; oy < g.out_h(); ++oy)
                                    for (int ox = 0; ox < g.out_w(); ++ox) {
                                        const int iy = oy - g.padding + ky, ix = ox - g.padding + kx;
                                        if (iy < 0 || iy >= g.height || ix < 0 || ix >= g.width) continue;
                                        for (int i = 0; i < n; ++i)
                                            want(o, (c * g.kernel_h + ky) * g.kernel_w + kx) +=
                                                gy(i, o * P + oy * g.out_w() + ox) * x(i, (c * g.height + iy) * g.width + ix);
                                    }
                const double scale = 1e-12 * (1 + want.cwiseAbs().maxCoeff()) * std::sqrt(double(n) * P);
                CHECK((wide - want).cwiseAbs().maxCoeff() <= scale);
                CHECK((via_col - want).cwiseAbs().maxCoeff() <= scale);
                // The order of sums, to the bit: eight lanes per entry, lane j taking the rows
                // r = ox n + i with r mod 8 = j of each output row in order, one multiply-add
                // each (zeros past the row's end and in the padding), then the lanes added in
                // lanes::Ops::sum's order. So however the kernel cuts a row into chunks and
                // tiles, the cuts fall on multiples of 8 and every tile adds in this order.
                Eigen::MatrixXd ordered(cout, K);
                const long row = long(g.out_w()) * n;
                for (int o = 0; o < cout; ++o)
                    for (int t = 0; t < K; ++t) {
                        const int c = t / (g.kernel_h * g.kernel_w), ky = t / g.kernel_w % g.kernel_h, kx = t % g.kernel_w;
                        double lane[8] = {};
                        for (int oy = 0; oy < g.out_h(); ++oy)
                            for (long r = 0; r < (row + 7) / 8 * 8; ++r) {
                                double gv = 0, xv = 0;
                                if (r < row) {
                                    const int ox = int(r / n), i = int(r % n);
                                    const int iy = oy - g.padding + ky, ix = ox - g.padding + kx;
                                    gv = gy(i, o * P + oy * g.out_w() + ox);
                                    if (iy >= 0 && iy < g.height && ix >= 0 && ix < g.width)
                                        xv = x(i, (c * g.height + iy) * g.width + ix);
                                }
                                lane[r % 8] = multiply_add(gv, xv, lane[r % 8]);
                            }
                        using L = lanes::Ops<lanes::Split>;
                        ordered(o, t) = L::sum(L::load(lane));
                    }
                CHECK(same_bits(wide, ordered));
            }
}

TEST_CASE("ChannelSums: entries given in runs of any length give channel_sums' bits") {
    // Sixteen partial sums by entry index, added pairwise, then the count mod 16 last entries:
    // runs that cut the sixteen anywhere, end inside the tail or start in it must not change
    // which sum an entry joins or the order.
    ad::Rng rng(19, 3);
    for (long count : {5L, 16L, 37L, 160L, 1003L})
        for (int cout : {1, 3}) {
            CAPTURE(count);
            CAPTURE(cout);
            const Eigen::MatrixXd g = rng.normal_matrix(int(count), cout);  // channel o's entries contiguous
            Eigen::VectorXd want(cout), got(cout);
            kernels::channel_sums(int(count), 1, cout, g.data(), want.data());
            for (const std::vector<long>& lengths : {std::vector<long>{1, 7, 16, 3, 33}, {16}, {15, 2}, {1000}}) {
                kernels::ChannelSums sums;
                sums.begin(cout, count);
                for (long done = 0, k = 0; done < count; ++k) {
                    const long len = std::min(count - done, lengths[std::size_t(k) % lengths.size()]);
                    sums.add(g.data() + done, count, len);
                    done += len;
                }
                sums.finish(got.data());
                CHECK(same_bits(got, want));
            }
        }
}

TEST_CASE("DirectWeightGrad: output rows given a band at a time give weight_grad_direct's bits") {
    // kernels/conv_relu_pool.hpp builds a first layer's output gradient a band of pool rows at a
    // time and feeds each band to DirectWeightGrad: the lane sums must take every product in the
    // order one pass over the whole gradient does, on both lane widths.
    ad::Rng rng(23, 3);
    for (const ConvGeometry& g : kShortStride1)
        for (int n : {3, 13})
            for (int cout : {5, 16})
                for (int band : {1, 2, 3})
                    for (bool wide : {true, false}) {
                        CAPTURE(g.kernel_h);
                        CAPTURE(n);
                        CAPTURE(cout);
                        CAPTURE(band);
                        const int P = g.positions(), K = g.patch(), ow = g.out_w();
                        const Eigen::MatrixXd x = rng.normal_matrix(n, int(g.in_size()));
                        const Eigen::MatrixXd gy = rng.normal_matrix(n, cout * P);
                        lanes::wide_allowed() = wide;
                        Eigen::MatrixXd want(cout, K), got(cout, K);
                        kernels::conv_detail::weight_grad_direct(g, n, x.data(), gy.data(), cout, want.data());
                        kernels::conv_detail::DirectWeightGrad grad;
                        grad.begin(g, n, x.data(), cout);
                        for (int oy0 = 0; oy0 < g.out_h(); oy0 += band) {
                            const int oy1 = std::min(g.out_h(), oy0 + band);
                            const long len = long(oy1 - oy0) * ow * n;  // the band: Cout x len
                            Eigen::MatrixXd part(len, cout);
                            for (int o = 0; o < cout; ++o)
                                part.col(o) = Eigen::Map<const Eigen::VectorXd>(
                                    gy.data() + long(o) * P * n + long(oy0) * ow * n, len);
                            grad.add_rows(oy0, oy1, part.data());
                        }
                        grad.finish(got.data());
                        lanes::wide_allowed() = true;
                        CHECK(got == want);
                    }
}

TEST_CASE("conv_relu_pool_backward: a first layer's band-by-band gradient gives the whole-block path's bits") {
    // With no input gradient wanted and short patches, the layer's backward builds its output
    // gradient a band of pool rows at a time; asking for dx as well takes the whole-block path
    // (gz for a block at once, conv2d_weight_grad, channel_sums). dw and db must agree to the bit:
    // two whole blocks and a partial one, pools of 2 and 3 (a dropped row of windows), a NaN pixel.
    ad::Rng rng(29, 3);
    const ConvGeometry learner{.channels = 1, .height = 28, .width = 28, .kernel_h = 5, .kernel_w = 5, .padding = 2};
    const ConvGeometry meta{.channels = 1, .height = 28, .width = 28, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    const ConvGeometry odd{.channels = 2, .height = 9, .width = 11, .kernel_h = 3, .kernel_w = 2, .padding = 1};
    for (const ConvGeometry& g : {learner, meta, odd})
        for (int pool : {2, 3})
            for (bool nan : {false, true}) {
                CAPTURE(g.kernel_h);
                CAPTURE(pool);
                CAPTURE(nan);
                const int cout = 16, P = g.positions(), K = g.patch();
                const int n = 2 * kernels::relu_pool_detail::block_images(1 << 20, cout, P) + 5;
                const int cols = cout * (g.out_h() / pool) * (g.out_w() / pool);
                Eigen::MatrixXd x = rng.normal_matrix(n, int(g.in_size()));
                if (nan) x(n - 3, g.in_size() / 2) = std::numeric_limits<double>::quiet_NaN();
                const Eigen::MatrixXd w = rng.normal_matrix(cout, K), b = rng.normal_matrix(cout, 1);
                const Eigen::MatrixXd gy = rng.normal_matrix(n, cols);
                Eigen::MatrixXd y(n, cols), dx(n, x.cols()), dw_band(cout, K), dw_whole(cout, K), db_band(cout, 1),
                    db_whole(cout, 1);
                std::vector<std::uint16_t> win(std::size_t(n) * cols);
                kernels::conv_relu_pool_forward(g, pool, n, x.data(), w.data(), b.data(), cout, y.data(), win.data());
                kernels::conv_relu_pool_backward(g, pool, n, x.data(), w.data(), cout, win.data(), gy.data(),
                                                 nullptr, dw_band.data(), db_band.data());
                kernels::conv_relu_pool_backward(g, pool, n, x.data(), w.data(), cout, win.data(), gy.data(),
                                                 dx.data(), dw_whole.data(), db_whole.data());
                CHECK(same_bits(dw_band, dw_whole));
                CHECK(same_bits(db_band, db_whole));
                CHECK(dw_band.array().isNaN().any() == nan);
                CHECK(db_band.allFinite());
                CHECK(db_band.cwiseAbs().maxCoeff() > 0.1);
            }
}

TEST_CASE("conv_relu_pool_backward: the winners' sums give the dense products' gradients") {
    // Behind relu and pooling only each window's winner carries a gradient; the winners' path
    // sums just those entries, an image at a time, from padded image-major copies. Against the
    // dense products (dx, dw, db to rounding): fig6's second layer; a patch row that is not whole
    // blocks of 8 (3 channels x 5, stride 2); a 3 x 3 pool that drops a row and a column of
    // windows; one input channel (the learner's). Batches below 8, a multiple of 8, and two
    // blocks and a part; both lane widths to the bit. Where relu zeroes every output the
    // gradients are exactly 0; where x or w holds a NaN or an infinity the path declines and the
    // public function's result is the dense one's, bit for bit (NaN x 0 is NaN there).
    ad::Rng rng(43, 3);
    struct Case {
        ConvGeometry g;
        int cout, pool;
    };
    const Case cases[] = {
        {{.channels = 16, .height = 14, .width = 14, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 32, 2},
        {{.channels = 3, .height = 11, .width = 9, .kernel_h = 5, .kernel_w = 5, .stride = 2, .padding = 2}, 7, 2},
        {{.channels = 8, .height = 9, .width = 9, .kernel_h = 2, .kernel_w = 3}, 5, 3},
        {{.channels = 1, .height = 28, .width = 28, .kernel_h = 5, .kernel_w = 5, .padding = 2}, 16, 2},
    };
    for (const Case& c : cases) {
        const ConvGeometry& g = c.g;
        const int cols = c.cout * (g.out_h() / c.pool) * (g.out_w() / c.pool), K = g.patch();
        const kernels::winner_detail::Patches patches(g);
        const int block = kernels::winner_detail::block_images(patches, 1 << 20, cols, true);
        for (int n : {5, 8, 2 * block + 3})
            for (bool with_dx : {true, false}) {
                CAPTURE(g.channels);
                CAPTURE(n);
                CAPTURE(with_dx);
                Eigen::MatrixXd x = rng.normal_matrix(n, int(g.in_size()));
                const Eigen::MatrixXd w = rng.normal_matrix(c.cout, K);
                const Eigen::MatrixXd b = rng.normal_matrix(c.cout, 1).array() - 2.0;  // relu zeroes some winners
                const Eigen::MatrixXd gy = rng.normal_matrix(n, cols);
                Eigen::MatrixXd y(n, cols);
                std::vector<std::uint16_t> win(std::size_t(n) * cols);
                kernels::conv_relu_pool_forward(g, c.pool, n, x.data(), w.data(), b.data(), c.cout, y.data(), win.data());
                REQUIRE((y.array() == 0).any());
                REQUIRE((y.array() > 0).any());
                Eigen::MatrixXd dx(n, x.cols()), dw(c.cout, K), db(c.cout, 1), want_dx(n, x.cols()), want_dw(c.cout, K),
                    want_db(c.cout, 1), narrow_dx(n, x.cols()), narrow_dw(c.cout, K), narrow_db(c.cout, 1);
                const auto winners = [&](Eigen::MatrixXd& to_dx, Eigen::MatrixXd& to_dw, Eigen::MatrixXd& to_db) {
                    return kernels::conv_relu_pool_backward_winners(g, c.pool, n, x.data(), w.data(), c.cout, win.data(),
                                                                    gy.data(), with_dx ? to_dx.data() : nullptr,
                                                                    to_dw.data(), to_db.data());
                };
                kernels::conv_relu_pool_backward_dense(g, c.pool, n, x.data(), w.data(), c.cout, win.data(), gy.data(),
                                                       with_dx ? want_dx.data() : nullptr, want_dw.data(),
                                                       want_db.data());
                REQUIRE(winners(dx, dw, db));
                const auto close = [](const Eigen::MatrixXd& got, const Eigen::MatrixXd& want) {
                    const double scale = want.cwiseAbs().maxCoeff();
                    return scale > 0.1 && (got - want).cwiseAbs().maxCoeff() <= 1e-12 * scale;
                };
                CHECK(close(dw, want_dw));
                CHECK(close(db, want_db));
                if (with_dx) CHECK(close(dx, want_dx));
                lanes::wide_allowed() = false;
                REQUIRE(winners(narrow_dx, narrow_dw, narrow_db));
                lanes::wide_allowed() = true;
                CHECK(same_bits(narrow_dw, dw));
                CHECK(same_bits(narrow_db, db));
                if (with_dx) CHECK(same_bits(narrow_dx, dx));
                // Image-major inputs (the matrices' transposes): the same bits, on both widths.
                const auto by_image = [&](const Eigen::MatrixXd& xs, const Eigen::MatrixXd& ws, Eigen::MatrixXd& to_dxT,
                                          Eigen::MatrixXd& to_dw, Eigen::MatrixXd& to_db) {
                    const Eigen::MatrixXd xT = xs.transpose(), gyT = gy.transpose();
                    std::vector<std::uint16_t> winT(win.size());
                    for (int i = 0; i < n; ++i)
                        for (int f = 0; f < cols; ++f) winT[std::size_t(i) * cols + f] = win[std::size_t(f) * n + i];
                    return kernels::conv_relu_pool_backward_winners_by_image(
                        g, c.pool, n, xT.data(), ws.data(), c.cout, winT.data(), gyT.data(),
                        with_dx ? to_dxT.data() : nullptr, to_dw.data(), to_db.data());
                };
                for (bool wide : {true, false}) {
                    Eigen::MatrixXd dxT(x.cols(), n), dwI(c.cout, K), dbI(c.cout, 1);
                    lanes::wide_allowed() = wide;
                    REQUIRE(by_image(x, w, dxT, dwI, dbI));
                    lanes::wide_allowed() = true;
                    CHECK(same_bits(dwI, dw));
                    CHECK(same_bits(dbI, db));
                    if (with_dx) CHECK(same_bits(Eigen::MatrixXd(dxT.transpose()), dx));
                }

                // relu zeroes everything: no winner carries a gradient.
                const Eigen::MatrixXd off = Eigen::MatrixXd::Constant(c.cout, 1, -1e3);
                kernels::conv_relu_pool_forward(g, c.pool, n, x.data(), w.data(), off.data(), c.cout, y.data(),
                                                win.data());
                REQUIRE(winners(dx, dw, db));
                CHECK(dw.isZero(0));
                CHECK(db.isZero(0));
                if (with_dx) CHECK(dx.isZero(0));

                // A NaN pixel (which dw reads), then a NaN weight (which dx reads): declined where read,
                // and then the public function's result is the dense one's, NaNs and all.
                kernels::conv_relu_pool_forward(g, c.pool, n, x.data(), w.data(), b.data(), c.cout, y.data(), win.data());
                for (int bad : {0, 1, 2}) {  // the last image mid-row; a weight; the first image's last pixel
                    CAPTURE(bad);
                    Eigen::MatrixXd xb = x, wb = w;
                    if (bad == 0) xb(n - 1, g.in_size() / 2) = std::numeric_limits<double>::quiet_NaN();
                    if (bad == 1) wb(c.cout - 1, K / 2) = std::numeric_limits<double>::quiet_NaN();
                    if (bad == 2) xb(0, g.in_size() - 1) = std::numeric_limits<double>::infinity();
                    const bool declines = bad != 1 || with_dx;
                    CHECK(kernels::conv_relu_pool_backward_winners(g, c.pool, n, xb.data(), wb.data(), c.cout, win.data(),
                                                                   gy.data(), with_dx ? dx.data() : nullptr, dw.data(),
                                                                   db.data()) == !declines);
                    Eigen::MatrixXd dxT(x.cols(), n);
                    CHECK(by_image(xb, wb, dxT, dw, db) == !declines);  // image-major: the same rule
                    kernels::conv_relu_pool_backward(g, c.pool, n, xb.data(), wb.data(), c.cout, win.data(), gy.data(),
                                                     with_dx ? dx.data() : nullptr, dw.data(), db.data());
                    kernels::conv_relu_pool_backward_dense(g, c.pool, n, xb.data(), wb.data(), c.cout, win.data(),
                                                           gy.data(), with_dx ? want_dx.data() : nullptr,
                                                           want_dw.data(), want_db.data());
                    if (declines || g.patch() < kernels::kWinnersFromPatch) {  // (dense there anyway)
                        CHECK(same_bits(dw, want_dw));
                        CHECK(same_bits(db, want_db));
                        if (with_dx) CHECK(same_bits(dx, want_dx));
                        if (declines) CHECK((dw.array().isNaN().any() || (with_dx && dx.array().isNaN().any())));
                    } else {
                        CHECK(close(dw, want_dw));
                        CHECK(close(db, want_db));
                    }
                }
            }
    }
}

#ifdef OCCAM_POOL_INTRINSICS  // (list_winners_wide exists only where the intrinsics do)
TEST_CASE("conv_relu_pool_backward: the AVX-512 copy lists the winners as list_winners does") {
    // Eight windows at a time, the places from a register and the kept entries packed by compress
    // stores: the same lists (where each winner's patch starts, its gradient, each channel's
    // first entry) for the learner's layer and the second meta layer, with none, some or all of
    // the winners zeroed by relu, and a channel's windows not a multiple of 8 (the scalar tail).
    if (!lanes::wide_lanes_available()) return;  // (no AVX-512 here: nothing to compare)
    const ConvGeometry geometries[] = {
        {.channels = 1, .height = 28, .width = 28, .kernel_h = 5, .kernel_w = 5, .padding = 2},
        {.channels = 16, .height = 14, .width = 14, .kernel_h = 3, .kernel_w = 3, .padding = 1},
        {.channels = 2, .height = 11, .width = 9, .kernel_h = 3, .kernel_w = 3}};
    ad::Rng rng(53, 3);
    for (const ConvGeometry& g : geometries) {
        using namespace kernels::winner_detail;
        const Patches patches(g);
        Windows wins;
        wins.set(g, patches, 2);
        const int cout = 5, count = wins.count();
        const long E = long(cout) * count;
        for (double zeroed : {0.0, 0.3, 1.0}) {
            CAPTURE(count);
            CAPTURE(zeroed);
            const Eigen::MatrixXd u = rng.uniform_matrix(int(E), 2, 0.0, 1.0), gt = rng.normal_matrix(int(E), 1);
            std::vector<std::uint16_t> ct(E);
            for (long j = 0; j < E; ++j)
                ct[j] = std::uint16_t(int(4 * u(j, 0)) | (u(j, 1) < zeroed ? kernels::kReluZero : 0));
            std::vector<int> at(E), want_at(E), first(cout + 1), want_first(cout + 1);
            std::vector<double> grad(E), want_grad(E);
            list_winners(wins, cout, ct.data(), gt.data(), want_at.data(), want_grad.data(), want_first.data());
            list_winners_wide(wins, cout, ct.data(), gt.data(), at.data(), grad.data(), first.data());
            REQUIRE(first == want_first);
            const int kept = first[cout];
            if (zeroed == 0.0) CHECK(kept == E);
            if (zeroed == 1.0) CHECK(kept == 0);
            CHECK(std::equal(at.begin(), at.begin() + kept, want_at.begin()));
            CHECK(std::equal(grad.begin(), grad.begin() + kept, want_grad.begin()));
        }
    }
}
#endif

TEST_CASE("codes_by_image: the winners' codes image-major, whatever the counts' remainders") {
    // The SSE tiles cover 8 codes by 8 images, and the last ones overlap those before them; below
    // 8 of either the plain copy runs. Each code must land once, at its place, and nothing past
    // the rows may be written.
    for (int n : {1, 7, 8, 9, 20, 61})
        for (long E : {1L, 7L, 8L, 13L, 3136L}) {
            CAPTURE(n);
            CAPTURE(E);
            std::vector<std::uint16_t> win(std::size_t(n) * E), ct(std::size_t(n) * E + 5, 0xBEEF);
            for (std::size_t k = 0; k < win.size(); ++k) win[k] = std::uint16_t(k * 2654435761u >> 7);
            kernels::codes_by_image(n, E, win.data(), ct.data());
            bool same = true;
            for (int i = 0; i < n; ++i)
                for (long j = 0; j < E; ++j) same = same && ct[std::size_t(i * E + j)] == win[std::size_t(j * n + i)];
            CHECK(same);
            for (int k = 0; k < 5; ++k) CHECK(ct[std::size_t(n) * E + k] == 0xBEEF);
        }
}

TEST_CASE("conv kernels: a block of a larger batch's rows read in place") {
    // conv_relu_pool runs the im2col path's forward on a block of rows through the batch's
    // leading dimension instead of a copy: whole, and for a range of output positions, it must
    // give the copied block's bits.
    ad::Rng rng(31, 3);
    const ConvGeometry g{.channels = 4, .height = 9, .width = 9, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    const int N = 21, r0 = 5, n = 11, cout = 7, P = g.positions(), K = g.patch();
    const Eigen::MatrixXd x = rng.normal_matrix(N, int(g.in_size())), w = rng.normal_matrix(cout, K);
    const Eigen::MatrixXd b = rng.normal_matrix(cout, 1), block = x.middleRows(r0, n);
    Eigen::MatrixXd want(n, cout * P), got(n, cout * P);
    kernels::conv_detail::conv2d_im2col(g, n, block.data(), w.data(), cout, want.data(), b.data());
    kernels::conv_detail::conv2d_im2col(g, n, x.data() + r0, w.data(), cout, got.data(), b.data(), N);
    CHECK(got == want);
    const int pa = 20, pb = 47;  // positions [pa, pb) of every channel
    Eigen::MatrixXd range(long(pb - pa) * n, cout);
    kernels::conv_detail::conv2d_im2col(g, n, x.data() + r0, w.data(), cout, range.data(), b.data(), N, pa, pb);
    for (int o = 0; o < cout; ++o)
        CHECK(range.col(o) ==
              Eigen::Map<const Eigen::VectorXd>(want.data() + (long(o) * P + pa) * n, long(pb - pa) * n));
}

TEST_CASE("conv_pool_take: the convolution at each window's winner where the layer's output is > 0") {
    // The fused CNN step's R-pass takes the convolution of a perturbation at the forward pass's
    // winners, a band of rows at a time: it must equal the whole convolution gathered at those
    // places (the bits), 0 where the output is 0 or NaN, for pools of 2 and 3, several blocks.
    ad::Rng rng(37, 3);
    const ConvGeometry short_patch{
        .channels = 1, .height = 28, .width = 28, .kernel_h = 5, .kernel_w = 5, .padding = 2};
    const ConvGeometry long_patch{.channels = 4, .height = 10, .width = 10, .kernel_h = 3, .kernel_w = 3, .padding = 1};
    for (const ConvGeometry& g : {short_patch, long_patch})
        for (int pool : {2, 3}) {
            CAPTURE(g.channels);
            CAPTURE(pool);
            const int cout = 16, P = g.positions(), ho = g.out_h() / pool, wo = g.out_w() / pool;
            const int n = kernels::relu_pool_detail::block_images(1 << 20, cout, P) + 7, cols = cout * ho * wo;
            Eigen::MatrixXd x = rng.normal_matrix(n, int(g.in_size()));
            x(1, g.in_size() / 2) = std::numeric_limits<double>::quiet_NaN();
            const Eigen::MatrixXd w = rng.normal_matrix(cout, g.patch()), b = rng.normal_matrix(cout, 1);
            const Eigen::MatrixXd v = rng.normal_matrix(cout, g.patch()), vb = rng.normal_matrix(cout, 1);
            Eigen::MatrixXd y(n, cols), got(n, cols), z(n, cout * P);
            std::vector<std::uint16_t> win(std::size_t(n) * cols);
            kernels::conv_relu_pool_forward(g, pool, n, x.data(), w.data(), b.data(), cout, y.data(), win.data());
            kernels::conv_pool_take(g, pool, n, x.data(), v.data(), vb.data(), cout, win.data(), got.data());
            kernels::conv2d_forward(g, n, x.data(), v.data(), cout, z.data(), vb.data());
            Eigen::MatrixXd want(n, cols);
            bool codes_mark_relu = true;  // a code's kReluZero bit is set exactly where not y > 0
            for (long col = 0; col < cols; ++col)
                for (int i = 0; i < n; ++i) {
                    const std::size_t k = std::size_t(col) * n + i;
                    want(i, col) =
                        y.data()[k] > 0 ? z.data()[kernels::relu_pool_source(g, pool, n, i, col, win[k])] : 0.0;
                    codes_mark_relu = codes_mark_relu && ((win[k] & kernels::kReluZero) != 0) == !(y.data()[k] > 0);
                }
            CHECK(codes_mark_relu);
            CHECK(y.array().isNaN().any());
            CHECK((y.array() == 0).any());
            CHECK(same_bits(got, want));
            CHECK(got.allFinite());
        }
}

TEST_CASE("conv_relu_pool: the pooled direct path gives the bands' bits") {
    // For stride 1, 2 x 2 pools and short patches the layer's forward and its R-pass keep each
    // window's four sums in registers (lanes across window columns and images, from a copy split
    // by column parity) instead of writing a band of the convolution and pooling it: every
    // output, code and taken sum must be the bands' bits. The learner's shape, odd heights and
    // widths (a dropped row or column of windows), no padding, padding wider than half the
    // kernel, channels not a multiple of the tile's, the first meta layer's 3 x 3, a 1 x 1 kernel
    // whose windows in the padding tie (the first place wins); one image, a partial block of
    // lanes, the learner's 20, and two blocks and a part; NaN and infinite pixels; both widths
    // (the path is called directly: AVX2 takes it only from 16 entries on).
    ad::Rng rng(47, 3);
    struct Case {
        ConvGeometry g;
        int cout;
    };
    const Case cases[] = {
        {{.channels = 1, .height = 28, .width = 28, .kernel_h = 5, .kernel_w = 5, .padding = 2}, 16},
        {{.channels = 2, .height = 9, .width = 11, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 5},
        {{.channels = 3, .height = 7, .width = 9, .kernel_h = 3, .kernel_w = 2}, 7},
        {{.channels = 1, .height = 5, .width = 5, .kernel_h = 4, .kernel_w = 4, .padding = 2}, 3},
        {{.channels = 4, .height = 6, .width = 7, .kernel_h = 2, .kernel_w = 2, .padding = 1}, 9},
        {{.channels = 1, .height = 12, .width = 10, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 16},
        {{.channels = 2, .height = 7, .width = 8, .kernel_h = 1, .kernel_w = 1, .padding = 1}, 5},
    };
    for (const Case& c : cases) {
        const ConvGeometry& g = c.g;
        REQUIRE(kernels::conv_detail::reads_x_directly(g));
        CHECK(kernels::pooled_detail::pooled_direct_applies(g, 2) == (lanes::use_wide() || g.patch() >= 16));
        const int cols = c.cout * (g.out_h() / 2) * (g.out_w() / 2), K = g.patch();
        for (int n : {1, 5, 20, 2 * kernels::pooled_detail::block_rows(g, 1 << 20) + 3})
            for (bool wide : {true, false}) {
                CAPTURE(g.channels);
                CAPTURE(g.kernel_h);
                CAPTURE(n);
                CAPTURE(wide);
                Eigen::MatrixXd x = rng.normal_matrix(n, int(g.in_size()));
                x(n - 1, g.in_size() / 2) = std::numeric_limits<double>::quiet_NaN();
                if (n > 2) x(1, 0) = -std::numeric_limits<double>::infinity();
                const Eigen::MatrixXd w = rng.normal_matrix(c.cout, K), b = rng.normal_matrix(c.cout, 1);
                const Eigen::MatrixXd v = rng.normal_matrix(c.cout, K), vb = rng.normal_matrix(c.cout, 1);
                Eigen::MatrixXd y(n, cols), want_y(n, cols), out(n, cols), want_out(n, cols);
                std::vector<std::uint16_t> win(std::size_t(n) * cols), want_win(win.size());
                lanes::wide_allowed() = wide;
                const long row = long(g.out_w() / 2) * n, plane = g.out_h() / 2 * row;
                kernels::pooled_detail::pooled_direct<false>(g, n, x.data(), w.data(), b.data(), c.cout,
                                                             {y.data(), win.data(), plane, row});
                kernels::pooled_detail::pooled_direct<true>(g, n, x.data(), v.data(), vb.data(), c.cout,
                                                            {out.data(), win.data(), plane, row});
                lanes::wide_allowed() = true;
                kernels::conv_relu_pool_forward_bands(g, 2, n, x.data(), w.data(), b.data(), c.cout, want_y.data(),
                                                      want_win.data());
                kernels::conv_pool_take_bands(g, 2, n, x.data(), v.data(), vb.data(), c.cout, want_win.data(),
                                              want_out.data());
                CHECK(same_bits(y, want_y));
                CHECK(win == want_win);
                CHECK(same_bits(out, want_out));
                CHECK(y.array().isNaN().any());
                if (n >= 5) {  // (one image's NaN pixel can reach every window of a small one)
                    CHECK((y.array() == 0).any());
                    CHECK((out.array() != 0).any());
                }
            }
    }
}

TEST_CASE("conv_relu_pool: Winograd's tiles give the bands' values to rounding and their NaNs to the bit") {
    // 3 x 3 layers over four or more input channels with 2 x 2 pools take Winograd's F(2 x 2,
    // 3 x 3): against the bands (the direct sums), every winner code the same, every value within
    // a few ulps of the largest, both widths to the bit. Fig6's second meta layer; padding 0 and
    // 2, odd sizes (a dropped row or column of windows); output channels that do not fill a
    // panel; images in blocks of 24, 8 and a zero-padded last part. A NaN or an infinite pixel
    // (infinity - infinity is NaN in the transforms) sends its windows back to the direct sums,
    // image by image: there the bits are the bands', NaNs where the bands have them and
    // nowhere else. A weight that is not finite, and three input channels, leave the path to the
    // bands (the same bits throughout).
    ad::Rng rng(53, 3);
    struct Case {
        ConvGeometry g;
        int cout, n;
    };
    const Case cases[] = {
        {{.channels = 16, .height = 14, .width = 14, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 32, 53},
        {{.channels = 4, .height = 9, .width = 11, .kernel_h = 3, .kernel_w = 3}, 13, 37},
        {{.channels = 5, .height = 8, .width = 7, .kernel_h = 3, .kernel_w = 3, .padding = 2}, 3, 5},
        {{.channels = 6, .height = 10, .width = 10, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 9, 27},
        {{.channels = 3, .height = 10, .width = 10, .kernel_h = 3, .kernel_w = 3, .padding = 1}, 9, 27},
    };
    for (const Case& c : cases)
        for (int bad : {0, 1, 2, 3}) {  // none; a NaN mid-image; infinities in two images; a NaN weight
            const ConvGeometry& g = c.g;
            const int n = c.n, cols = c.cout * (g.out_h() / 2) * (g.out_w() / 2);
            const bool winograd = g.channels >= 4 && bad != 3;
            CAPTURE(g.channels);
            CAPTURE(bad);
            CHECK(kernels::winograd_detail::applies(g, 2) == (g.channels >= 4));
            Eigen::MatrixXd x = rng.normal_matrix(n, int(g.in_size())), w = rng.normal_matrix(c.cout, g.patch());
            const Eigen::MatrixXd b = rng.normal_matrix(c.cout, 1);
            w *= 0.3;
            if (bad == 1) x(n - 1, g.in_size() / 2) = std::numeric_limits<double>::quiet_NaN();
            if (bad == 2) x(0, 3) = std::numeric_limits<double>::infinity(), x(n / 2, g.in_size() - 1) = -x(0, 3);
            if (bad == 3) w(c.cout - 1, 4) = std::numeric_limits<double>::quiet_NaN();
            Eigen::MatrixXd y(n, cols), narrow_y(n, cols), want(n, cols);
            std::vector<std::uint16_t> win(std::size_t(n) * cols), narrow_win(win.size()), want_win(win.size());
            kernels::conv_relu_pool_forward(g, 2, n, x.data(), w.data(), b.data(), c.cout, y.data(), win.data());
            lanes::wide_allowed() = false;
            kernels::conv_relu_pool_forward(g, 2, n, x.data(), w.data(), b.data(), c.cout, narrow_y.data(),
                                            narrow_win.data());
            lanes::wide_allowed() = true;
            kernels::conv_relu_pool_forward_bands(g, 2, n, x.data(), w.data(), b.data(), c.cout, want.data(),
                                                  want_win.data());
            CHECK(same_bits(narrow_y, y));
            CHECK(narrow_win == win);
            CHECK(win == want_win);
            const double scale = want.array().isFinite().select(want.array().abs(), 0.0).maxCoeff();
            REQUIRE(scale > 0.5);
            double worst = 0;
            long exact = 0, finite_count = 0;
            for (Eigen::Index k = 0; k < want.size(); ++k) {
                const double u = y.data()[k], v = want.data()[k];
                if (!std::isfinite(v)) {
                    CHECK(same_bits(Eigen::MatrixXd::Constant(1, 1, u), Eigen::MatrixXd::Constant(1, 1, v)));
                    continue;
                }
                ++finite_count;
                exact += std::memcmp(&u, &v, sizeof u) == 0;
                worst = std::max(worst, std::abs(u - v));
            }
            CHECK(worst <= 64 * std::numeric_limits<double>::epsilon() * scale);
            if (winograd)  // the path ran: most sums differ from the direct ones in the last bits
                CHECK(exact < finite_count * 9 / 10);
            else
                CHECK(same_bits(y, want));
            if (bad == 1 || bad == 2) CHECK(y.array().isNaN().any() == want.array().isNaN().any());
            if (bad == 2) CHECK(!y.array().isFinite().all());
        }
}

TEST_CASE("conv2d_im2col: the implicit product (no Col) gives im2col and the product's bits") {
    // With a multiple of 8 images the forward's product reads A straight from x through a table
    // of row pointers per position (zeros in the padding). Against im2col then gemm, bit for
    // bit: long and short patches, stride 2, no padding, a panel's narrow remainder, 1 to 6
    // blocks of 8 rows per position, a block read in place through a leading dimension, a
    // range of positions, both lane widths.
    ad::Rng rng(41, 3);
    const ConvGeometry geometries[] = {
        {.channels = 16, .height = 7, .width = 7, .kernel_h = 3, .kernel_w = 3, .padding = 1},
        {.channels = 3, .height = 9, .width = 8, .kernel_h = 3, .kernel_w = 2, .stride = 2, .padding = 1},
        {.channels = 2, .height = 6, .width = 6, .kernel_h = 4, .kernel_w = 4},
        {.channels = 1, .height = 10, .width = 10, .kernel_h = 5, .kernel_w = 5, .padding = 2}};
    for (const ConvGeometry& g : geometries)
        for (int n : {8, 16, 24, 40, 48})
            for (int cout : {1, 5, 7, 8, 13, 32}) {
                CAPTURE(g.channels);
                CAPTURE(g.stride);
                CAPTURE(n);
                CAPTURE(cout);
                const int P = g.positions(), K = g.patch(), N = n + 8, r0 = 8;
                const Eigen::MatrixXd x = rng.normal_matrix(N, int(g.in_size())), w = rng.normal_matrix(cout, K);
                const Eigen::VectorXd b = rng.normal_matrix(cout, 1);
                Eigen::MatrixXd col(long(n) * P, K), want(long(n) * P, cout);
                kernels::conv_detail::im2col(g, n, x.data() + r0, 0, P, col.data(), N);
                kernels::gemm(false, true, n * P, cout, K, col.data(), n * P, w.data(), cout, want.data(),
                              kernels::Epilogue{b.data()});
                for (bool wide : {true, false}) {
                    lanes::wide_allowed() = wide;
                    Eigen::MatrixXd got(long(n) * P, cout);
                    kernels::conv_detail::conv2d_im2col(g, n, x.data() + r0, w.data(), cout, got.data(), b.data(), N);
                    CHECK(got == want);
                    const int pa = P / 3, pb = P - 1;
                    Eigen::MatrixXd range(long(pb - pa) * n, cout);
                    kernels::conv_detail::conv2d_im2col(g, n, x.data() + r0, w.data(), cout, range.data(), b.data(), N,
                                                        pa, pb);
                    CHECK(range == want.middleRows(long(pa) * n, long(pb - pa) * n));
                    lanes::wide_allowed() = true;
                }
                CHECK(want.allFinite());
            }
}
