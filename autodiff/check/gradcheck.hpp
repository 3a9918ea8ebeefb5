// What this file teaches: how to trust a gradient. Compare it with central differences
// (f(x+h) - f(x-h)) / 2h entry by entry; for second order, check the gradient of a random
// projection of the gradient the same way (a Hessian-vector product against differences).
#pragma once

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "../core/grad.hpp"
#include "../ops/declarations.hpp"
#include "../random.hpp"

namespace occam::ad {

using CheckFn = std::function<Var(const std::vector<Var>&)>;

struct CheckOptions {
    double step = 1e-6;  ///< finite-difference step h
    double atol = 1e-6;  ///< pass if |analytic - numeric| <= atol + rtol |numeric|
    double rtol = 1e-5;
    std::uint64_t seed = 12345;  ///< for the random projections of non-scalar outputs
};

/// Result of a check. max_error is the worst |analytic - numeric| / (atol + rtol |numeric|):
/// the check passes when it is at most 1. The worst entry is named for debugging.
struct CheckReport {
    bool ok = true;
    double max_error = 0.0;
    double max_abs_diff = 0.0;
    int input = -1, row = -1, col = -1;
    double analytic = 0.0, numeric = 0.0;
    std::string message() const {
        std::ostringstream s;
        s.precision(6);
        s << (ok ? "ok" : "FAILED") << ": worst error ratio " << max_error << " (|diff| " << max_abs_diff << ")";
        if (input >= 0)
            s << " at input " << input << " (" << row << "," << col << "): analytic " << analytic << ", numeric "
              << numeric;
        return s.str();
    }
};

namespace detail {
/// Reduces any output to a scalar by a fixed random projection <R, f(x)>, so a non-scalar f is
/// checked through J^T R (a random direction checks every entry of J with probability one).
inline Var project_to_scalar(const Var& y, std::uint64_t seed) {
    if (y.rows() == 1 && y.cols() == 1) return y;
    Rng rng(seed, 7);
    return sum(mul(y, constant(rng.normal_matrix(y.rows(), y.cols()))));
}

inline double eval_scalar(const CheckFn& f, const std::vector<Eigen::MatrixXd>& xs, std::uint64_t seed) {
    TapeScope scope;
    // Gradients stay on: f may itself call grad (as in gradgradcheck).
    std::vector<Var> vars = params(xs);
    return project_to_scalar(f(vars), seed).item();
}
}  // namespace detail

/// Checks d f / d inputs against central differences. f maps the inputs to any output.
inline CheckReport gradcheck(const CheckFn& f, const std::vector<Eigen::MatrixXd>& inputs, CheckOptions opts = {}) {
    CheckReport rep;
    std::vector<Eigen::MatrixXd> analytic;
    {
        TapeScope scope;
        std::vector<Var> vars = params(inputs);
        Var y = detail::project_to_scalar(f(vars), opts.seed);
        analytic = values(grad(y, vars, {.create_graph = false, .allow_unused = true}));
    }
    std::vector<Eigen::MatrixXd> xs = inputs;
    for (std::size_t k = 0; k < xs.size(); ++k) {
        for (Eigen::Index j = 0; j < xs[k].cols(); ++j) {
            for (Eigen::Index i = 0; i < xs[k].rows(); ++i) {
                const double x0 = xs[k](i, j);
                xs[k](i, j) = x0 + opts.step;
                const double fp = detail::eval_scalar(f, xs, opts.seed);
                xs[k](i, j) = x0 - opts.step;
                const double fm = detail::eval_scalar(f, xs, opts.seed);
                xs[k](i, j) = x0;
                const double num = (fp - fm) / (2 * opts.step);
                const double ana = analytic[k](i, j);
                const double diff = std::abs(ana - num);
                const double ratio = diff / (opts.atol + opts.rtol * std::abs(num));
                if (!(ratio <= 1.0)) rep.ok = false;
                if (!(ratio <= rep.max_error)) {  // also catches NaN
                    rep.max_error = ratio;
                    rep.max_abs_diff = diff;
                    rep.input = int(k);
                    rep.row = int(i);
                    rep.col = int(j);
                    rep.analytic = ana;
                    rep.numeric = num;
                }
            }
        }
    }
    return rep;
}

/// Checks second derivatives: gradcheck of x -> <V, df/dx(x)> for a fixed random V, with the
/// inner gradient taken with create_graph (this is what differentiating through training does).
inline CheckReport gradgradcheck(const CheckFn& f, const std::vector<Eigen::MatrixXd>& inputs,
                                 CheckOptions opts = {}) {
    Rng rng(opts.seed, 11);
    std::vector<Eigen::MatrixXd> directions;
    for (const auto& x : inputs) directions.push_back(rng.normal_matrix(int(x.rows()), int(x.cols())));
    CheckFn h = [&f, &directions, seed = opts.seed](const std::vector<Var>& xs) {
        Var y = detail::project_to_scalar(f(xs), seed);
        std::vector<Var> g = grad(y, xs, {.create_graph = true, .allow_unused = true});
        Var total = constant(0.0);
        for (std::size_t k = 0; k < g.size(); ++k) total = total + sum(mul(g[k], constant(directions[k])));
        return total;
    };
    return gradcheck(h, inputs, opts);
}

}  // namespace occam::ad
