// What this file teaches: meta-learning without gradients. An evolution strategy keeps a search
// distribution over the meta-learner's flattened weights, samples a population from it, ranks
// the members by fitness alone and moves the distribution towards the best ones. Four rules:
// DES (the default), SNES, OpenAI-ES and sep-CMA-ES, restated from the evosax/cmaes sources.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "../autodiff/optim.hpp"
#include "../autodiff/random.hpp"
#include "../kernels/normal.hpp"

namespace occam::metaloss {

enum class EsMethod { des, snes, openai_es, sep_cma_es };

inline EsMethod parse_es_method(const std::string& name) {
    if (name == "des") return EsMethod::des;
    if (name == "snes") return EsMethod::snes;
    if (name == "openai-es") return EsMethod::openai_es;
    if (name == "sep-cma-es") return EsMethod::sep_cma_es;
    throw std::invalid_argument("unknown evolution strategy '" + name + "' (des, snes, openai-es or sep-cma-es)");
}
inline bool is_es_method(const std::string& name) {
    return name == "des" || name == "snes" || name == "openai-es" || name == "sep-cma-es";
}

struct EsOptions {
    int population = 64;        ///< N (OpenAI-ES: even, for antithetic pairs)
    double sigma = 0.05;        ///< initial std of every coordinate (effectively the step size)
    double temperature = 12.5;  ///< DES: sharpness of the rank weights
    double lr_mean = 1.0;       ///< DES alpha_m, SNES eta_m
    double lr_sigma = 0.1;      ///< DES alpha_sigma; SNES uses (3 + ln d) / (5 sqrt d)
    double lr = 0.01;           ///< OpenAI-ES: Adam's learning rate on the mean
};

/// Member order by fitness, best (lowest) first; NaN counts as worst; ties keep index order.
inline std::vector<int> rank_order(const Eigen::VectorXd& fitness) {
    std::vector<int> order(std::size_t(fitness.size()));
    std::iota(order.begin(), order.end(), 0);
    auto key = [&](int i) { return std::isnan(fitness[i]) ? HUGE_VAL : fitness[i]; };
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) < key(b); });
    return order;
}

/// DES recombination weights for ranks r = 0 (best) .. N-1:
///   c_r = r/(N-1) - 1/2,  s_r = sigmoid(T c_r),  w_r = exp(-20 s_r) / sum_j exp(-20 s_j).
/// A smooth truncation: positive, summing to 1, about 88% of the mass on the top quarter.
inline Eigen::VectorXd des_weights(int n, double temperature) {
    if (n < 2) throw std::invalid_argument("DES: the population must be >= 2");
    Eigen::VectorXd w(n);
    for (int r = 0; r < n; ++r) {
        const double c = double(r) / (n - 1) - 0.5;
        const double s = 1.0 / (1.0 + std::exp(-temperature * c));
        w[r] = std::exp(-20.0 * s);
    }
    return w / w.sum();
}

/// SNES utilities for ranks k = 1 (best) .. N: max(0, ln(N/2 + 1) - ln k), normalised to sum
/// 1, minus 1/N, so they sum to 0 (the better half pulls, everyone pushes a little).
inline Eigen::VectorXd snes_utilities(int n) {
    Eigen::VectorXd u(n);
    for (int k = 1; k <= n; ++k) u[k - 1] = std::max(0.0, std::log(n / 2.0 + 1.0) - std::log(double(k)));
    return u / u.sum() - Eigen::VectorXd::Constant(n, 1.0 / n);
}

/// A search distribution over R^d: ask for members (thread-safe, each a pure function of
/// (seed, stream, generation, member)), tell it their fitness (minimised), repeat.
class EvolutionStrategy {
public:
    EvolutionStrategy(EsMethod method, Eigen::VectorXd mean, EsOptions opts, std::uint64_t seed, std::uint64_t stream)
        : method_(method), opts_(opts), seed_(seed), stream_(stream), mean_(std::move(mean)) {
        const int d = dim(), n = opts_.population;
        if (d < 1) throw std::invalid_argument("evolution strategy: empty search vector");
        if (n < 2) throw std::invalid_argument("evolution strategy: --population must be >= 2");
        if (method_ == EsMethod::openai_es && n % 2)
            throw std::invalid_argument("openai-es: --population must be even (antithetic pairs)");
        if (!(opts_.sigma > 0)) throw std::invalid_argument("evolution strategy: --sigma must be > 0");
        sigma_ = Eigen::VectorXd::Constant(d, opts_.sigma);
        c_ = Eigen::VectorXd::Ones(d);
        p_sigma_ = p_c_ = Eigen::VectorXd::Zero(d);
        z_.resize(n, d);
        x_.resize(n, d);
        if (method_ == EsMethod::des) weights_ = des_weights(n, opts_.temperature);
        if (method_ == EsMethod::snes) weights_ = snes_utilities(n);
        if (method_ == EsMethod::openai_es) adam_ = ad::optim::Adam({.lr = opts_.lr});
        if (method_ == EsMethod::sep_cma_es) init_sep_cma();
        refresh_sample_std();
    }

    int dim() const { return int(mean_.size()); }
    int population() const { return opts_.population; }
    int generation() const { return generation_; }
    EsMethod method() const { return method_; }
    /// The distribution's centre: the solution to report (the best sample is noisy when the
    /// task changes every generation).
    const Eigen::VectorXd& mean() const { return mean_; }
    /// The per-coordinate std of the next samples.
    const Eigen::VectorXd& sigma() const { return sample_std_; }

    /// Member i of the current generation: x_i = m + sigma * z_i with z_i ~ N(0, I) drawn from
    /// its own counter range, so members can be drawn in any order, on any thread.
    /// OpenAI-ES pairs member i + N/2 with member i: z_{i+N/2} = -z_i. The normals come in
    /// pairs from one Philox block each (kernels/normal.hpp: vectorised, with occam's own log
    /// and sin/cos, so the same bits everywhere), ten times faster than ad::Rng::normal().
    Eigen::VectorXd sample(int i) { return Eigen::Map<const Eigen::VectorXd>(draw(i), dim()); }
    /// sample(i) without the copy: member i's dim() values, valid until it is drawn again.
    const double* draw(int i) {
        const int n = population(), d = dim();
        if (i < 0 || i >= n) throw std::out_of_range("evolution strategy: member index out of range");
        const bool mirrored = method_ == EsMethod::openai_es && i >= n / 2;
        const int base = mirrored ? i - n / 2 : i;
        // Member (generation, base) owns blocks [c, c + d): it uses the first ceil(d / 2).
        const std::uint64_t c = (std::uint64_t(generation_) * std::uint64_t(n) + std::uint64_t(base)) * std::uint64_t(d);
        double* z = z_.row(i).data();
        kernels::normal_pairs(seed_, stream_, c, d, z);
        if (mirrored)
            for (int j = 0; j < d; ++j) z[j] = -z[j];
        x_.row(i) = mean_.transpose() + z_.row(i).cwiseProduct(sample_std_.transpose());
        return x_.row(i).data();
    }

    /// Updates the distribution from the fitness (lower is better) of every member sampled this
    /// generation. Only ranks matter except for OpenAI-ES's centred ranks (also ranks).
    void tell(const Eigen::VectorXd& fitness) {
        if (fitness.size() != population())
            throw std::invalid_argument("evolution strategy: " + std::to_string(fitness.size()) +
                                        " fitness values for " + std::to_string(population()) + " members");
        const std::vector<int> order = rank_order(fitness);
        const bool all_nan = fitness.array().isNaN().all();
        switch (method_) {
            case EsMethod::des:
                tell_des(order, all_nan);
                break;
            case EsMethod::snes:
                tell_snes(order);
                break;
            case EsMethod::openai_es:
                tell_openai(order);
                break;
            case EsMethod::sep_cma_es:
                tell_sep_cma(order);
                break;
        }
        ++generation_;
        refresh_sample_std();
    }

    /// Everything the next generation depends on besides the mean, to checkpoint a run.
    std::vector<Eigen::MatrixXd> state() const {
        std::vector<Eigen::MatrixXd> s = {sigma_, c_, p_sigma_, p_c_, Eigen::MatrixXd::Constant(1, 1, cma_sigma_)};
        const ad::optim::OptimizerState a = adam_.state();
        for (const auto& buffer : a.buffers) s.insert(s.end(), buffer.begin(), buffer.end());
        return s;
    }
    void load_state(const Eigen::VectorXd& mean, const std::vector<Eigen::MatrixXd>& s, int generation) {
        if (mean.size() != dim() || s.size() < 5 || s[0].size() != dim())
            throw std::invalid_argument("evolution strategy: the saved state does not fit this search space");
        mean_ = mean;
        sigma_ = s[0];
        c_ = s[1];
        p_sigma_ = s[2];
        p_c_ = s[3];
        cma_sigma_ = s[4](0, 0);
        generation_ = generation;
        refresh_sample_std();
        if (method_ == EsMethod::openai_es && s.size() == 7 && generation > 0) {
            std::vector<Eigen::MatrixXd> p = {mean_};
            adam_.load_state({generation, {{s[5]}, {s[6]}}}, p);
        }
    }

private:
    /// The samples' per-coordinate std, computed once per generation (members read it from
    /// several threads): sigma, or for sep-CMA-ES sigma * sqrt(c).
    void refresh_sample_std() {
        sample_std_ = method_ == EsMethod::sep_cma_es ? Eigen::VectorXd(cma_sigma_ * c_.array().sqrt()) : sigma_;
    }

    /// DES (evosax): m' = m + alpha_m sum_r w_r (x_(r) - m);
    /// sigma' = (1 - alpha_s) sigma + alpha_s sqrt(sum_r w_r (x_(r) - m)^2), with the OLD m.
    /// If every fitness is NaN the weights are all zero: m stays, sigma shrinks.
    void tell_des(const std::vector<int>& order, bool all_nan) {
        Eigen::VectorXd step = Eigen::VectorXd::Zero(dim()), second = Eigen::VectorXd::Zero(dim());
        if (!all_nan) {
            for (int r = 0; r < population(); ++r) {
                const Eigen::VectorXd dx = x_.row(order[std::size_t(r)]).transpose() - mean_;
                step += weights_[r] * dx;
                second += weights_[r] * dx.cwiseProduct(dx);
            }
        }
        mean_ += opts_.lr_mean * step;
        sigma_ = (1.0 - opts_.lr_sigma) * sigma_ + opts_.lr_sigma * second.cwiseSqrt();
    }

    /// SNES (Schaul et al. 2011): with utilities u_k and z_(k) the standardised samples,
    /// m' = m + eta_m sigma * sum_k u_k z_(k);  sigma' = sigma * exp(eta_s / 2 * sum_k u_k (z_(k)^2 - 1)).
    void tell_snes(const std::vector<int>& order) {
        const double d = dim();
        const double eta_sigma = (3.0 + std::log(d)) / (5.0 * std::sqrt(d));
        Eigen::VectorXd gm = Eigen::VectorXd::Zero(dim()), gs = Eigen::VectorXd::Zero(dim());
        for (int k = 0; k < population(); ++k) {
            const auto z = z_.row(order[std::size_t(k)]).transpose();
            gm += weights_[k] * z;
            gs += weights_[k] * (z.array().square() - 1.0).matrix();
        }
        mean_ += opts_.lr_mean * sigma_.cwiseProduct(gm);
        sigma_ = sigma_.cwiseProduct((0.5 * eta_sigma * gs).array().exp().matrix());
    }

    /// OpenAI-ES (Salimans et al. 2017): centred ranks f_i = rank_i/(N-1) - 1/2, the gradient
    /// estimate g = 1/(N sigma) sum_i f_i z_i, and an Adam step down g; sigma stays fixed.
    void tell_openai(const std::vector<int>& order) {
        const int n = population();
        Eigen::VectorXd g = Eigen::VectorXd::Zero(dim());
        for (int r = 0; r < n; ++r) g += (double(r) / (n - 1) - 0.5) * z_.row(order[std::size_t(r)]).transpose();
        g = g.cwiseQuotient(sigma_) / double(n);
        std::vector<Eigen::MatrixXd> p = {mean_};
        adam_.step(p, std::vector<Eigen::MatrixXd>{g});
        mean_ = p[0];
    }

    void init_sep_cma() {
        const double n = dim();
        const int mu = population() / 2;
        cma_w_.resize(mu);
        for (int i = 0; i < mu; ++i) cma_w_[i] = std::log(mu + 1.0) - std::log(i + 1.0);
        cma_w_ /= cma_w_.sum();
        mu_eff_ = 1.0 / cma_w_.squaredNorm();
        c_sigma_ = (mu_eff_ + 2.0) / (n + mu_eff_ + 3.0);
        d_sigma_ = 1.0 + 2.0 * std::max(0.0, std::sqrt((mu_eff_ - 1.0) / (n + 1.0)) - 1.0) + c_sigma_;
        c_c_ = 4.0 / (n + 4.0);
        c_1_ = 2.0 / ((n + 1.3) * (n + 1.3) + mu_eff_);
        // The sep-CMA rank-mu rate keeps the (n + 2) / 3 factor (Ros & Hansen 2008); evosax
        // v0.2+ drops it, and then the diagonal barely adapts in high dimension.
        c_mu_ = (n + 2.0) / 3.0 *
                (2.0 / (mu_eff_ * (n + std::sqrt(2.0)) * (n + std::sqrt(2.0))) +
                 (1.0 - 1.0 / mu_eff_) * std::min(1.0, (2.0 * mu_eff_ - 1.0) / ((n + 2.0) * (n + 2.0) + mu_eff_)));
        chi_n_ = std::sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n * n));
        cma_sigma_ = opts_.sigma;
    }

    /// sep-CMA-ES (Ros & Hansen 2008), diagonal covariance c (D = sqrt(c)), samples
    /// y_i = D z_i, x_i = m + sigma y_i; y_w = sum_{i<=mu} w_i y_(i):
    ///   m' = m + sigma y_w
    ///   p_s = (1 - c_s) p_s + sqrt(c_s (2 - c_s) mu_eff) y_w / D
    ///   sigma' = sigma exp((c_s / d_s)(|p_s| / chi_n - 1))
    ///   p_c = (1 - c_c) p_c + h_s sqrt(c_c (2 - c_c) mu_eff) y_w
    ///   c' = (1 - c_1 - c_mu + c_1 delta) c + c_1 p_c^2 + c_mu sum_i w_i y_(i)^2,
    /// with h_s = 0 while |p_s| is too long (the step-size path stalls the rank-one update)
    /// and delta = (1 - h_s) c_c (2 - c_c) making up for it.
    void tell_sep_cma(const std::vector<int>& order) {
        const int mu = population() / 2;
        const double n = dim();
        const Eigen::VectorXd D = c_.cwiseSqrt();
        Eigen::VectorXd y_w = Eigen::VectorXd::Zero(dim()), rank_mu = Eigen::VectorXd::Zero(dim());
        for (int i = 0; i < mu; ++i) {
            const Eigen::VectorXd y = z_.row(order[std::size_t(i)]).transpose().cwiseProduct(D);
            y_w += cma_w_[i] * y;
            rank_mu += cma_w_[i] * y.cwiseProduct(y);
        }
        mean_ += cma_sigma_ * y_w;
        p_sigma_ =
            (1.0 - c_sigma_) * p_sigma_ + std::sqrt(c_sigma_ * (2.0 - c_sigma_) * mu_eff_) * y_w.cwiseQuotient(D);
        const double ps_norm = p_sigma_.norm();
        cma_sigma_ *= std::exp((c_sigma_ / d_sigma_) * (ps_norm / chi_n_ - 1.0));
        const double decay = 1.0 - std::pow(1.0 - c_sigma_, 2.0 * (generation_ + 1));
        const double h_sigma = ps_norm / std::sqrt(decay) < (1.4 + 2.0 / (n + 1.0)) * chi_n_ ? 1.0 : 0.0;
        p_c_ = (1.0 - c_c_) * p_c_ + h_sigma * std::sqrt(c_c_ * (2.0 - c_c_) * mu_eff_) * y_w;
        const double delta = (1.0 - h_sigma) * c_c_ * (2.0 - c_c_);
        c_ = (1.0 - c_1_ - c_mu_ + c_1_ * delta) * c_ + c_1_ * p_c_.cwiseProduct(p_c_) + c_mu_ * rank_mu;
        c_ = c_.cwiseMax(1e-8);
    }

    EsMethod method_;
    EsOptions opts_;
    std::uint64_t seed_, stream_;
    int generation_ = 0;
    Eigen::VectorXd mean_, sigma_, sample_std_;
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> z_, x_;  ///< one member per row
    Eigen::VectorXd weights_;  ///< DES weights or SNES utilities, by rank
    ad::optim::Adam adam_;     ///< OpenAI-ES
    // sep-CMA-ES
    Eigen::VectorXd c_, p_sigma_, p_c_;
    Eigen::VectorXd cma_w_;
    double cma_sigma_ = 0, mu_eff_ = 0, c_sigma_ = 0, d_sigma_ = 0, c_c_ = 0, c_1_ = 0, c_mu_ = 0, chi_n_ = 0;
};

}  // namespace occam::metaloss
