// Every op in the table of autodiff/check/op_checks.hpp passes a first- and a second-order
// check against central differences, plus forward values for ops whose forward is not obvious.
#include <doctest/doctest.h>

#include <cstring>

#include "lanes_note.hpp"

#include "autodiff/autodiff.hpp"
#include "autodiff/check/op_checks.hpp"

using namespace occam;

TEST_CASE("ops: every op passes gradcheck and gradgradcheck") {
    for (const ad::OpCheck& c : ad::op_checks()) {
        CAPTURE(c.name);
        ad::CheckReport first = ad::gradcheck(c.f, c.inputs);
        INFO("first order: " << first.message());
        CHECK(first.ok);
        ad::CheckReport second = ad::gradgradcheck(c.f, c.inputs);
        INFO("second order: " << second.message());
        CHECK(second.ok);
    }
}

TEST_CASE("ops: gradcheck detects a wrong gradient") {
    // abs with the derivative of the identity would be wrong for negative entries: simulate
    // with a function whose gradient we cut with detach, which must be reported.
    ad::CheckFn f = [](const std::vector<ad::Var>& x) { return ad::sum(ad::mul(x[0], ad::detach(x[0]))); };
    ad::CheckReport r = ad::gradcheck(f, {Eigen::MatrixXd::Constant(2, 2, 0.7)});
    CHECK_FALSE(r.ok);
    CHECK(r.max_error > 1.0);
    CHECK(r.numeric == doctest::Approx(1.4));
    CHECK(r.analytic == doctest::Approx(0.7));
}

TEST_CASE("ops: forward values") {
    ad::TapeScope scope;
    Eigen::MatrixXd a(2, 3);
    a << 1, -2, 3, 4, 5, -6;
    ad::Var x = ad::constant(a);
    CHECK(ad::value(ad::relu(x)).isApprox((a.array().max(0.0)).matrix()));
    CHECK(ad::value(ad::relu6(x * 2.0))(1, 1) == 6.0);
    CHECK(ad::value(ad::sum(x)).value() == doctest::Approx(5.0));
    CHECK(ad::value(ad::row_sums(x))(1, 0) == doctest::Approx(3.0));
    CHECK(ad::value(ad::col_sums(x))(0, 2) == doctest::Approx(-3.0));
    CHECK(ad::value(ad::transpose(x))(2, 1) == -6.0);
    CHECK(ad::value(ad::reshape(x, 3, 2))(2, 0) == -2.0);  // column-major: 1, 4, -2, 5, 3, -6
    CHECK(ad::value(ad::gather_rows(x, {1, 1, 0})).row(1) == a.row(1));
    CHECK(ad::value(ad::scatter_rows(x, {1, 1}, 3)).row(1) == (a.row(0) + a.row(1)));
    CHECK(ad::value(ad::hcat(x, x)).cols() == 6);
    CHECK(ad::value(ad::maximum(x, ad::constant(0.0))) == a.array().max(0.0).matrix());
    // logsumexp is stable far beyond exp's range
    Eigen::MatrixXd big(1, 2);
    big << 1000.0, 1000.0;
    CHECK(ad::value(ad::row_logsumexp(ad::constant(big)))(0, 0) == doctest::Approx(1000.0 + std::log(2.0)));
    // broadcasting: column vector + row vector gives the outer sum
    Eigen::MatrixXd c(2, 1), r(1, 3);
    c << 1, 2;
    r << 10, 20, 30;
    Eigen::MatrixXd outer = ad::value(ad::constant(c) + ad::constant(r));
    CHECK(outer(1, 2) == 32.0);
    CHECK(ad::value(ad::matmul_nt(x, x)).isApprox(a * a.transpose()));
    CHECK(ad::value(ad::matmul_tn(x, x)).isApprox(a.transpose() * a));
}

TEST_CASE("ops: shape errors name the op and the shapes") {
    ad::TapeScope scope;
    ad::Var a = ad::constant(Eigen::MatrixXd::Zero(2, 3)), b = ad::constant(Eigen::MatrixXd::Zero(3, 2));
    CHECK_THROWS_WITH_AS(ad::add(a, b), "ad::add: shapes 2x3 and 3x2 do not broadcast", ad::ShapeError);
    CHECK_THROWS_WITH_AS(ad::matmul(a, a), "ad::matmul: inner sizes differ (2x3 and 2x3)", ad::ShapeError);
    CHECK_THROWS_AS(ad::reshape(a, 4, 2), ad::ShapeError);
    CHECK_THROWS_AS(ad::block(a, 1, 1, 2, 2), ad::ShapeError);
    CHECK_THROWS_AS(ad::gather_rows(a, {0, 2}), ad::ShapeError);
    CHECK_THROWS_AS(ad::hcat(a, b), ad::ShapeError);
    CHECK_THROWS_AS(ad::solve(a, a), ad::ShapeError);
    CHECK_THROWS_AS(ad::Var(a).item(), ad::ShapeError);
}

TEST_CASE("ops: solve reports singular and non-finite systems instead of returning NaN") {
    ad::TapeScope scope;
    Eigen::MatrixXd s(2, 2);
    s << 1, 2, 2, 4;  // rank one
    ad::Var b = ad::constant(Eigen::MatrixXd::Ones(2, 1));
    CHECK_THROWS_AS(ad::solve(ad::constant(s), b), ad::SolveError);
    Eigen::MatrixXd n = Eigen::MatrixXd::Identity(2, 2);
    n(0, 1) = std::nan("");
    CHECK_THROWS_WITH_AS(ad::solve(ad::constant(n), b),
                         "ad::solve: the 2x2 matrix holds non-finite values (NaN or inf)", ad::SolveError);
    // a well-posed system solves to the right answer (LLT and LU paths)
    Eigen::MatrixXd spd(2, 2), gen(2, 2);
    spd << 4, 1, 1, 3;
    gen << 0, 1, 1, 0;  // symmetric but indefinite: LLT fails, LU takes over
    Eigen::MatrixXd rhs(2, 1);
    rhs << 1, 2;
    CHECK(ad::value(ad::solve(ad::constant(spd), ad::constant(rhs))).isApprox(spd.inverse() * rhs));
    CHECK(ad::value(ad::solve(ad::constant(gen), ad::constant(rhs))).isApprox(gen.inverse() * rhs));
}

TEST_CASE("ops: every path of the matrix-product kernel sums each entry as one chain of fused multiply-adds from +0") {
    // The kernel's promise, written out by hand: C_ij = fma(a_ik, b_kj, ...) in order of k from
    // +0, then + bias_j, then the ReLU. The tiles, the one-row and one-column paths and the
    // products over k = 1 must all give exactly this, so that an entry's bits do not depend on
    // the product's shape. A few factors are -0, so that a product of -0 is summed onto +0 (the
    // tiles' +0; a plain a * b would keep the -0).
    ad::Rng rng(11);
    for (int m : {1, 3, 8, 9, 30, 2100})
        for (int n : {1, 2, 9})
            for (int k : {1, 2, 5, 13})
                for (int flags = 0; flags < 4; ++flags)
                    for (bool epilogue : {false, true}) {
                        const bool ta = flags & 1, tb = flags & 2;
                        Eigen::MatrixXd A = rng.normal_matrix(ta ? k : m, ta ? m : k);
                        Eigen::MatrixXd B = rng.normal_matrix(tb ? n : k, tb ? k : n);
                        A(0, 0) = -0.0;
                        B(B.rows() - 1, B.cols() - 1) = -0.0;
                        const Eigen::VectorXd bias = rng.normal_matrix(n, 1);
                        const auto a = [&](int i, int kk) { return ta ? A(kk, i) : A(i, kk); };
                        const auto b = [&](int kk, int j) { return tb ? B(j, kk) : B(kk, j); };
                        Eigen::MatrixXd want(m, n), got(m, n);
                        for (int i = 0; i < m; ++i)
                            for (int j = 0; j < n; ++j) {
                                double s = 0.0;
                                for (int kk = 0; kk < k; ++kk) s = std::fma(a(i, kk), b(kk, j), s);
                                if (epilogue) s = s + bias(j), s = 0.0 > s ? 0.0 : s;
                                want(i, j) = s;
                            }
                        kernels::gemm(ta, tb, m, n, k, A.data(), A.rows(), B.data(), B.rows(), got.data(),
                                      epilogue ? kernels::Epilogue{bias.data(), true} : kernels::Epilogue{});
                        CAPTURE(m);
                        CAPTURE(n);
                        CAPTURE(k);
                        CAPTURE(flags);
                        CAPTURE(epilogue);
                        bool same = true;
                        for (int i = 0; i < m; ++i)
                            for (int j = 0; j < n; ++j)
                                same = same && std::memcmp(&want(i, j), &got(i, j), sizeof(double)) == 0;
                        CHECK(same);
                    }
}

TEST_CASE("ops: the blocked matrix-product kernel matches Eigen, and its two copies agree bit for bit") {
    note_when_copies_are_one();
    // kernels/gemm.hpp, every transpose case, with sizes around its 8-row blocks (1 to 3 of them
    // per stripe) and 6- or 8-column panels; k = 1 and k = 2 included.
    ad::Rng rng(3);
    for (int m : {1, 7, 8, 9, 23, 24, 25, 41, 350})
        for (int n : {1, 5, 6, 7, 8, 9, 150})
            for (int k : {1, 2, 150})
                for (int flags = 0; flags < 4; ++flags) {
                    const bool ta = flags & 1, tb = flags & 2;
                    const Eigen::MatrixXd A = rng.normal_matrix(ta ? k : m, ta ? m : k);
                    const Eigen::MatrixXd B = rng.normal_matrix(tb ? n : k, tb ? k : n);
                    const Eigen::MatrixXd want = (ta ? Eigen::MatrixXd(A.transpose()) : A) *
                                                 (tb ? Eigen::MatrixXd(B.transpose()) : B);
                    Eigen::MatrixXd wide(m, n), narrow(m, n);
                    kernels::gemm(ta, tb, m, n, k, A.data(), A.rows(), B.data(), B.rows(), wide.data());
                    lanes::wide_allowed() = false;
                    kernels::gemm(ta, tb, m, n, k, A.data(), A.rows(), B.data(), B.rows(), narrow.data());
                    lanes::wide_allowed() = true;
                    CAPTURE(m);
                    CAPTURE(n);
                    CAPTURE(k);
                    CAPTURE(flags);
                    CHECK((wide - want).cwiseAbs().maxCoeff() <= 1e-12 * std::sqrt(double(k)));
                    CHECK(wide == narrow);
                    // An entry does not depend on where it sits: each column alone (a one-column
                    // panel), and A given the other way round (copied, or read in place when its
                    // columns are whole blocks of 8), give the same bits. The batched population
                    // scorer relies on this.
                    for (int j : {0, n / 2, n - 1}) {
                        Eigen::VectorXd col(m);
                        const double* bj = tb ? B.data() + j : B.data() + long(j) * B.rows();
                        kernels::gemm(ta, tb, m, 1, k, A.data(), A.rows(), bj, B.rows(), col.data());
                        CHECK(col == wide.col(j));
                    }
                    // Nor on how many rows sit above it: the rows of a product with 9 more rows
                    // (so one-row products, which run as dot products, meet the tiles' bits).
                    const Eigen::MatrixXd more = rng.normal_matrix(9, k);
                    Eigen::MatrixXd Atall(ta ? k : m + 9, ta ? m + 9 : k);
                    if (ta)
                        Atall << more.transpose(), A;
                    else
                        Atall << more, A;
                    Eigen::MatrixXd tall(m + 9, n);
                    kernels::gemm(ta, tb, m + 9, n, k, Atall.data(), Atall.rows(), B.data(), B.rows(), tall.data());
                    CHECK(tall.bottomRows(m) == wide);
                    const Eigen::MatrixXd At = A.transpose();
                    Eigen::MatrixXd flipped(m, n);
                    kernels::gemm(!ta, tb, m, n, k, At.data(), At.rows(), B.data(), B.rows(), flipped.data());
                    CHECK(flipped == wide);
                    // The epilogue (a bias per column, then a ReLU) acts on each finished sum,
                    // in every path (the one-column A^T b too).
                    const Eigen::VectorXd bias = rng.normal_matrix(n, 1);
                    Eigen::MatrixXd fused(m, n);
                    kernels::gemm(ta, tb, m, n, k, A.data(), A.rows(), B.data(), B.rows(), fused.data(),
                                  kernels::Epilogue{bias.data(), true});
                    Eigen::MatrixXd by_hand = wide;
                    for (int j = 0; j < n; ++j)
                        for (int i = 0; i < m; ++i) by_hand(i, j) = std::max(0.0, wide(i, j) + bias(j));
                    CHECK(fused == by_hand);
                }
}
