// What this file teaches: scoring a whole population of meta-learners at once, without a tape.
// An evolution strategy needs each member's loss and nothing else, so no graph is recorded: the
// members' first layers are one product over the shared inputs, every later layer is a product
// into a reused buffer, and the projection, the learner and the loss terms are passes over a
// matrix that holds one member per column.
#pragma once

#include <Eigen/Dense>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "../autodiff/nn.hpp"
#include "../kernels/buffer.hpp"
#include "../kernels/gemm.hpp"
#include "../metaloss/divergences.hpp"

namespace occam::experiment {

/// The terms of one member's meta-loss, as numbers.
struct LossValues {
    double loss = 0, mse_term = 0, divergence = 0, orthogonality = 0;
    double mse_first = 0, mse_second = 0;  ///< the first two learners' test MSE (the second: students)
    std::string error;  ///< why the member has no loss (the taped path's exception), else empty
};

/// The std of U(-1, 1), the spread standardized labels get (here and in MetaTrainer).
inline constexpr double kUniformStd = 0.57735026918962576;

/// How the learners' test MSEs make the loss's learner term (MetaTrainer's games).
enum class MseTerm { first, difference, log_ratio, mean };

/// Everything the meta-loss of a task is made of when every learner is linear in its labels,
/// as plain values. The same loss as MetaTrainer::meta_loss computes on its tape:
///   z = h - F (G h)                      (project mode; G = (F^T F)^{-1} F^T)
///   z = standardized(z)                  (--standardize-labels)
///   mse_i = mean((M_i z_train - z_test)^2)
///   loss = mse_weight * term(mse) + div_weight * div(z) + [mean(z)^2]
struct LinearTaskLoss {
    int n_train = 0, n_test = 0;
    Eigen::MatrixXd F, G;                ///< empty: no projection
    std::vector<Eigen::MatrixXd> maps;   ///< each learner's prediction map M_i (test x train)
    MseTerm mse_term = MseTerm::first;
    std::string divergence = "variance"; ///< variance or w2 (the two that draw no target samples)
    std::string div_on = "all";          ///< all | split | test
    bool standardize = false, orth_constant = false;
    double mse_weight = 1, div_weight = 1;
};

/// The divergences the batched scorer computes (the others compare with random samples drawn
/// per member, which the per-member path does).
inline bool batched_divergence(const std::string& kind) { return kind == "variance" || kind == "w2"; }

namespace detail {

/// Scratch memory of one thread, grown once and reused every generation.
struct PopulationScratch {
    kernels::AlignedVector stacked, stacked_bias, a, b, pred, mses;
};
inline PopulationScratch& population_scratch() {
    thread_local PopulationScratch s;
    return s;
}

/// x <- activation(x) on a column (the same array expressions as the ops in autodiff/ops/unary.hpp,
/// so the values agree with the taped path's).
inline void activate_in_place(Eigen::Map<Eigen::ArrayXd> x, ad::nn::Activation a) {
    switch (a) {
        case ad::nn::Activation::relu: x = x.max(0.0); return;
        case ad::nn::Activation::tanh: x = x.tanh(); return;
        case ad::nn::Activation::sigmoid: x = (1.0 + (-x).exp()).inverse(); return;
        case ad::nn::Activation::identity: return;
        case ad::nn::Activation::relu6: x = x.max(0.0).min(6.0); return;
    }
}
inline void output_map_in_place(Eigen::Map<Eigen::ArrayXd> x, ad::nn::OutputMap m) {
    switch (m) {
        case ad::nn::OutputMap::identity: return;
        case ad::nn::OutputMap::cos: x = x.cos(); return;
        case ad::nn::OutputMap::tanh: x = x.tanh(); return;
        case ad::nn::OutputMap::relu6_over_6: x = x.max(0.0).min(6.0) * (1.0 / 6.0); return;
    }
}

inline double divergence_term(const Eigen::Ref<const Eigen::VectorXd>& x, const std::string& kind) {
    return kind == "variance" ? metaloss::variance_penalty(x) : metaloss::w2_to_uniform(x);
}

}  // namespace detail

/// Scores members of a population of MLP meta-learners on one task. Each member's parameters
/// are one flat vector in ad::nn::flatten's order (W0, b0, W1, b1, ...; each column-major).
/// A member's values depend on its own parameters and the task only, never on which other
/// members share its batch or where it sits in it: every product goes through kernels::gemm,
/// which sums each entry over k in order whatever its position, and everything else is a loop
/// over one member's column. So any split of a population over threads or processes gives the
/// same bits. Against the taped path (MetaTrainer::meta_loss), sums run in another order: the
/// values agree to about 1e-15 relative (tests/population_scoring.test.cpp checks 1e-12).
class PopulationScorer {
public:
    PopulationScorer(const ad::nn::MLP& net, const Eigen::MatrixXd& X, const LinearTaskLoss& loss)
        : net_(net), X_(X), loss_(loss) {
        if (X.cols() != net.widths.front() || net.widths.back() != 1)
            throw std::invalid_argument("PopulationScorer: the net must map the samples' " +
                                        std::to_string(X.cols()) + " columns to one output");
        if (loss.n_train + loss.n_test != X.rows())
            throw std::invalid_argument("PopulationScorer: n_train + n_test must be the number of samples");
        if (!batched_divergence(loss.divergence))
            throw std::invalid_argument("PopulationScorer: no batched divergence '" + loss.divergence + "'");
        for (std::size_t l = 0; l + 1 < net.widths.size(); ++l) width_max_ = std::max(width_max_, net.widths[l + 1]);
    }

    /// out[b] = the loss terms of the member whose parameters start at members[b], b < count.
    void score(const double* const* members, int count, LossValues* out) const {
        const int n = int(X_.rows()), L = int(net_.widths.size()) - 1;
        auto& s = detail::population_scratch();
        kernels::grow(s.a, std::size_t(n) * count * width_max_);
        kernels::grow(s.b, std::size_t(n) * count * width_max_);
        double* in = nullptr;   // the current layer's input, member b at in + b * n * width (null: X)
        double* out_h = s.a.data();
        std::size_t offset = 0;  // of the current layer's W in each member's vector
        for (int l = 0; l < L; ++l) {
            const int w_in = net_.widths[l], w_out = net_.widths[l + 1];
            const std::size_t bias_at = offset + std::size_t(w_in) * w_out;
            if (w_out == 1) {
                last_layer(members, count, in, w_in, offset, bias_at, out_h);
            } else {
                hidden_layer(members, count, in, w_in, w_out, offset, bias_at, out_h, s);
                if (net_.activation != ad::nn::Activation::relu)  // a ReLU was applied in the product
                    detail::activate_in_place(Eigen::Map<Eigen::ArrayXd>(out_h, Eigen::Index(n) * count * w_out),
                                              net_.activation);
            }
            offset = bias_at + std::size_t(w_out);
            in = out_h;
            out_h = (out_h == s.a.data()) ? s.b.data() : s.a.data();
        }
        // `in` now holds h, n x count (the last layer has one output).
        for (int b = 0; b < count; ++b)
            detail::output_map_in_place(Eigen::Map<Eigen::ArrayXd>(in + std::size_t(b) * n, n), net_.output);
        labels_and_loss(in, count, out, s);
    }

private:
    /// H = act_in W^T + b for every member, through a ReLU when that is the activation (the
    /// product adds the bias and clamps each entry while it is in a register): for the first
    /// layer one product of the shared samples with the members' stacked W (count w_out x w_in),
    /// else one product per member.
    void hidden_layer(const double* const* members, int count, const double* in, int w_in, int w_out,
                      std::size_t offset, std::size_t bias_at, double* H, detail::PopulationScratch& s) const {
        const int n = int(X_.rows());
        const bool relu = net_.activation == ad::nn::Activation::relu;
        if (!in) {
            const int rows = count * w_out;
            kernels::grow(s.stacked, std::size_t(rows) * w_in);
            kernels::grow(s.stacked_bias, std::size_t(rows));
            for (int b = 0; b < count; ++b) {  // member b's W (w_out x w_in) becomes rows [b w_out, (b + 1) w_out)
                for (int i = 0; i < w_in; ++i)
                    std::copy(members[b] + offset + std::size_t(i) * w_out,
                              members[b] + offset + std::size_t(i + 1) * w_out,
                              s.stacked.data() + std::size_t(i) * rows + std::size_t(b) * w_out);
                std::copy(members[b] + bias_at, members[b] + bias_at + w_out, s.stacked_bias.data() + std::size_t(b) * w_out);
            }
            kernels::gemm(false, true, n, rows, w_in, X_.data(), n, s.stacked.data(), rows, H,
                          {s.stacked_bias.data(), relu});
            return;
        }
        for (int b = 0; b < count; ++b)
            kernels::gemm(false, true, n, w_out, w_in, in + std::size_t(b) * n * w_in, n, members[b] + offset, w_out,
                          H + std::size_t(b) * n * w_out, {members[b] + bias_at, relu});
    }

    /// h = act_in w^T + b for a layer of one output: a sum over the inputs in order, per member.
    void last_layer(const double* const* members, int count, const double* in, int w_in, std::size_t offset,
                    std::size_t bias_at, double* h) const {
        const int n = int(X_.rows());
        for (int b = 0; b < count; ++b) {
            const double* act = in ? in + std::size_t(b) * n * w_in : X_.data();
            Eigen::Map<Eigen::ArrayXd> out(h + std::size_t(b) * n, n);
            out.setZero();
            for (int j = 0; j < w_in; ++j) out += Eigen::Map<const Eigen::ArrayXd>(act + std::size_t(j) * n, n) * members[b][offset + j];
            out += members[b][bias_at];
        }
    }

    /// Projection, standardisation, the learners' predictions and the loss terms, per column of Z.
    void labels_and_loss(double* Z, int count, LossValues* out, detail::PopulationScratch& s) const {
        const int n = int(X_.rows()), ntr = loss_.n_train, nte = loss_.n_test;
        const int k = int(loss_.F.cols());
        for (int b = 0; b < count; ++b) {
            Eigen::Map<Eigen::VectorXd> z(Z + std::size_t(b) * n, n);
            if (k > 0) {
                Eigen::Matrix<double, Eigen::Dynamic, 1, 0, 8, 1> c(k);  // k < 8 stays on the stack
                c.noalias() = loss_.G * z;
                z.noalias() -= loss_.F * c;
            }
            if (loss_.standardize) {
                z.array() -= z.mean();
                z *= kUniformStd / std::sqrt(z.squaredNorm() / n + 1e-12);
            }
        }
        // Every learner's predictions for every member: one product M_i Z_train.
        kernels::grow(s.pred, std::size_t(nte) * count);
        kernels::grow(s.mses, loss_.maps.size() * std::size_t(count));
        double* mses = s.mses.data();
        for (std::size_t i = 0; i < loss_.maps.size(); ++i) {
            kernels::gemm(false, false, nte, count, ntr, loss_.maps[i].data(), nte, Z, n, s.pred.data());
            for (int b = 0; b < count; ++b) {
                Eigen::Map<const Eigen::VectorXd> pred(s.pred.data() + std::size_t(b) * nte, nte);
                Eigen::Map<const Eigen::VectorXd> z_test(Z + std::size_t(b) * n + ntr, nte);
                mses[i * count + b] = (pred - z_test).squaredNorm() / nte;
            }
        }
        for (int b = 0; b < count; ++b) {
            Eigen::Map<const Eigen::VectorXd> z(Z + std::size_t(b) * n, n);
            LossValues& v = out[b];
            const double m0 = mses[std::size_t(b)];
            const double m1 = loss_.maps.size() > 1 ? mses[std::size_t(count) + b] : 0.0;
            v.mse_first = m0, v.mse_second = m1;
            try {  // the divergences refuse labels that are not finite, as on the taped path
                v.divergence = divergence(z);
            } catch (const std::exception& e) {
                v.error = e.what();
                v.loss = std::nan("");
                continue;
            }
            switch (loss_.mse_term) {
                case MseTerm::first: v.mse_term = m0; break;
                case MseTerm::difference: v.mse_term = m0 - m1; break;
                case MseTerm::log_ratio: v.mse_term = std::log(m0) - std::log(m1); break;
                case MseTerm::mean: {
                    double sum = m0;
                    for (std::size_t i = 1; i < loss_.maps.size(); ++i) sum += mses[i * count + b];
                    v.mse_term = sum * (1.0 / double(loss_.maps.size()));
                    break;
                }
            }
            v.orthogonality = loss_.orth_constant ? z.mean() * z.mean() : 0.0;
            v.loss = loss_.mse_weight * v.mse_term + loss_.div_weight * v.divergence + v.orthogonality;
        }
    }

    /// The label-distribution term on the rows --div-on names (split: the test labels' first).
    double divergence(const Eigen::Ref<const Eigen::VectorXd>& z) const {
        const int ntr = loss_.n_train, nte = loss_.n_test;
        if (loss_.div_on == "split") {
            const double d_test = detail::divergence_term(z.tail(nte), loss_.divergence);
            return detail::divergence_term(z.head(ntr), loss_.divergence) + d_test;
        }
        return detail::divergence_term(loss_.div_on == "all" ? z : z.tail(nte), loss_.divergence);
    }

    const ad::nn::MLP& net_;
    const Eigen::MatrixXd& X_;
    const LinearTaskLoss& loss_;
    int width_max_ = 1;
};

}  // namespace occam::experiment
