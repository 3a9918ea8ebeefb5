// What this file teaches: how to read a learned labelling function. We ask how linear it is (R^2
// of a least-squares fit), how its energy splits across polynomial degrees (spherical harmonics
// on a sphere, Legendre polynomials on an interval), and how different functions correlate.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace occam::experiment {

namespace detail {

/// Throws std::invalid_argument unless f has one finite value per row of X.
inline void check_samples(const char* who, Eigen::Index rows, const Eigen::VectorXd& f) {
    if (f.size() != rows)
        throw std::invalid_argument(std::string(who) + ": " + std::to_string(rows) + " points but " +
                                    std::to_string(f.size()) + " function values");
    if (!f.allFinite()) throw std::invalid_argument(std::string(who) + ": function values must be finite");
}

/// |P f|^2 / |f|^2, where P projects onto the column span of A in R^n (the empirical measure).
/// With A's column-pivoted QR, A P = Q R, the span is that of the first r = rank columns of Q, so
/// |P f|^2 = |(Q^T f)_{1..r}|^2. This is right even when columns are dependent on the data. We do
/// not form A * qr.solve(f): Eigen's solve keeps every pivot above ~eps (it ignores setThreshold),
/// so a round-off-sized pivot of a dependent column adds a spurious direction of R^n that soaks up
/// ~1/n of f's energy. Columns are scaled to unit norm first so the rank threshold compares
/// directions, not the sizes of monomials (x^4 is small on a sphere in R^10).
inline double projected_fraction(Eigen::MatrixXd A, const Eigen::VectorXd& f) {
    for (Eigen::Index j = 0; j < A.cols(); ++j) {
        const double norm = A.col(j).norm();
        if (norm > 0.0) A.col(j) /= norm;
    }
    Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(A.rows(), A.cols());
    // Genuine pivots of these bases are >= ~1e-4 of the largest; dependent ones are round-off (~1e-15).
    qr.setThreshold(1e-10);
    qr.compute(A);
    const Eigen::VectorXd c = qr.householderQ().transpose() * f;
    return c.head(qr.rank()).squaredNorm() / f.squaredNorm();
}

/// Per-degree energies from cumulative fractions E(<=0), ..., E(<=L): entry l is E(<=l) - E(<=l-1).
/// The subspaces are nested, so differences are >= 0 up to round-off, which is clamped away.
inline Eigen::VectorXd degree_differences(const std::vector<double>& cumulative) {
    Eigen::VectorXd energy(static_cast<Eigen::Index>(cumulative.size()));
    double previous = 0.0;
    for (size_t l = 0; l < cumulative.size(); ++l) {
        energy(static_cast<Eigen::Index>(l)) = std::max(0.0, cumulative[l] - previous);
        previous = std::max(previous, cumulative[l]);
    }
    return energy;
}

/// All monomials of total degree exactly `degree` in the columns of X, one per column.
inline Eigen::MatrixXd homogeneous_monomials(const Eigen::MatrixXd& X, int degree) {
    // Build degree k from degree k-1 by multiplying by x_i with i >= the last variable used, so each
    // monomial x_{i1} x_{i2} ... (i1 <= i2 <= ...) appears exactly once.
    std::vector<Eigen::VectorXd> columns = {Eigen::VectorXd::Ones(X.rows())};
    std::vector<Eigen::Index> last = {0};
    for (int k = 1; k <= degree; ++k) {
        std::vector<Eigen::VectorXd> next_columns;
        std::vector<Eigen::Index> next_last;
        for (size_t m = 0; m < columns.size(); ++m)
            for (Eigen::Index i = last[m]; i < X.cols(); ++i) {
                next_columns.push_back(columns[m].cwiseProduct(X.col(i)));
                next_last.push_back(i);
            }
        columns = std::move(next_columns);
        last = std::move(next_last);
    }
    Eigen::MatrixXd A(X.rows(), static_cast<Eigen::Index>(columns.size()));
    for (size_t j = 0; j < columns.size(); ++j) A.col(static_cast<Eigen::Index>(j)) = columns[j];
    return A;
}

/// Binomial coefficient as a double (exact for the sizes used here; never overflows an int).
inline double binomial(int n, int k) {
    if (k < 0 || k > n) return 0.0;
    double c = 1.0;
    for (int i = 1; i <= k; ++i) c = c * (n - k + i) / i;
    return c;
}

}  // namespace detail

/// A least-squares fit f ~ intercept + X coef.
struct LinearFit {
    double r2;              ///< 1 - SS_res / SS_tot: the fraction of f's variance that is linear in X
    double intercept;
    Eigen::VectorXd coef;   ///< one per column of X
};

/// Least squares of f on [1, X] (rows are points). A complete orthogonal decomposition gives the
/// minimum-norm coefficients when columns of X are collinear, instead of failing. A constant f
/// has SS_tot = 0; the intercept then fits it exactly, so r2 = 1 (0 if, impossibly, it did not).
inline LinearFit linear_fit(const Eigen::MatrixXd& X, const Eigen::VectorXd& f) {
    detail::check_samples("linear_fit", X.rows(), f);
    if (X.rows() == 0) throw std::invalid_argument("linear_fit: need at least one point");
    Eigen::MatrixXd A(X.rows(), X.cols() + 1);
    A.col(0).setOnes();
    A.rightCols(X.cols()) = X;
    const Eigen::VectorXd beta = Eigen::CompleteOrthogonalDecomposition<Eigen::MatrixXd>(A).solve(f);
    const double ss_res = (A * beta - f).squaredNorm();
    const double ss_tot = (f.array() - f.mean()).matrix().squaredNorm();
    double r2 = 0.0;
    if (ss_tot > 0.0) {
        r2 = 1.0 - ss_res / ss_tot;
    } else {
        // "Residual is 0" up to round-off relative to f's own size.
        r2 = ss_res <= 1e-20 * std::max(1.0, f.squaredNorm()) ? 1.0 : 0.0;
    }
    return {r2, beta(0), beta.tail(X.cols())};
}

/// Fraction of f's energy (mean of f^2 over the points) in spherical harmonics of each degree
/// 0..max_degree, for points on the unit sphere S^(D-1) in R^D (rows of X, any D >= 2). The
/// remainder, 1 - sum, is energy above max_degree.
///
/// Why this works: restricted to the sphere, polynomials of degree <= l span exactly the harmonics
/// of degree <= l. So E(<=l) = |P_l f|^2 / |f|^2, with P_l the least-squares projection onto those
/// polynomials over the probe points (the empirical measure), and degree l holds E(<=l) - E(<=l-1).
/// Because |x|^2 = 1 on the sphere, a monomial of degree l - 2k equals itself times |x|^(2k), so the
/// homogeneous monomials of degrees l and l-1 alone already span all polynomials of degree <= l
/// there; and unlike the full set of monomials (where x^2 + y^2 + z^2 = 1 makes columns dependent)
/// they are linearly independent on the sphere, so the basis has exactly the harmonic dimension.
/// The projection is rank revealing all the same, for probe sets on a lower-dimensional slice.
///
/// Under the empirical measure different degrees are only approximately orthogonal, so expect
/// deviations of order 1/sqrt(points). Needs more points than harmonics of degree <= max_degree
/// (otherwise any f is interpolated); throws std::invalid_argument if not, or if a point is off
/// the unit sphere. A zero f has no energy anywhere: the result is all zeros.
inline Eigen::VectorXd sphere_degree_energy(const Eigen::MatrixXd& X, const Eigen::VectorXd& f, int max_degree = 4) {
    detail::check_samples("sphere_degree_energy", X.rows(), f);
    const auto d = static_cast<int>(X.cols());
    if (d < 2) throw std::invalid_argument("sphere_degree_energy: points need dimension >= 2");
    if (max_degree < 0) throw std::invalid_argument("sphere_degree_energy: max_degree must be >= 0");
    // Harmonics of degree <= L on S^(D-1): homogeneous polynomials of degree L and L-1 in D variables.
    const double harmonics = detail::binomial(d + max_degree - 1, max_degree) +
                             (max_degree >= 1 ? detail::binomial(d + max_degree - 2, max_degree - 1) : 0.0);
    if (harmonics >= static_cast<double>(X.rows()))
        throw std::invalid_argument("sphere_degree_energy: " + std::to_string(X.rows()) +
                                    " points cannot resolve the " + std::to_string(static_cast<long long>(harmonics)) +
                                    " spherical harmonics of degree <= " + std::to_string(max_degree) + " in R^" +
                                    std::to_string(d) + "; use more points or a lower max_degree");
    // Loose tolerance: probe sets may come back from a CSV file written with a few digits.
    for (Eigen::Index i = 0; i < X.rows(); ++i)
        if (!(std::abs(X.row(i).norm() - 1.0) <= 1e-3))
            throw std::invalid_argument("sphere_degree_energy: point " + std::to_string(i) +
                                        " is not on the unit sphere (norm " + std::to_string(X.row(i).norm()) + ")");

    if (f.squaredNorm() == 0.0) return Eigen::VectorXd::Zero(max_degree + 1);
    std::vector<double> cumulative;
    Eigen::MatrixXd lower = Eigen::MatrixXd::Zero(X.rows(), 0);  // homogeneous degree l-1 (none for l = 0)
    for (int l = 0; l <= max_degree; ++l) {
        Eigen::MatrixXd top = detail::homogeneous_monomials(X, l);
        Eigen::MatrixXd A(X.rows(), top.cols() + lower.cols());
        A.leftCols(top.cols()) = top;
        A.rightCols(lower.cols()) = lower;
        cumulative.push_back(detail::projected_fraction(A, f));
        lower = std::move(top);
    }
    return detail::degree_differences(cumulative);
}

/// Fraction of f's energy (mean of f^2) in each Legendre degree 0..max_degree for a 1-D input u
/// in [-1, 1]: the same nested projections as sphere_degree_energy, onto polynomials of degree
/// <= l in u. The basis is P_0..P_l (same span as 1, u, ..., u^l, far better conditioned). Under
/// the empirical measure of u, entry l is the energy in the degree-l Legendre polynomial made
/// orthogonal to lower degrees. Needs more distinct points than max_degree + 1 for a meaningful
/// answer; a zero f gives all zeros.
inline Eigen::VectorXd legendre_degree_energy(const Eigen::VectorXd& u, const Eigen::VectorXd& f, int max_degree = 4) {
    detail::check_samples("legendre_degree_energy", u.size(), f);
    if (max_degree < 0) throw std::invalid_argument("legendre_degree_energy: max_degree must be >= 0");
    if (max_degree + 1 >= u.size())
        throw std::invalid_argument("legendre_degree_energy: " + std::to_string(u.size()) +
                                    " points cannot resolve degrees 0.." + std::to_string(max_degree));
    if (f.squaredNorm() == 0.0) return Eigen::VectorXd::Zero(max_degree + 1);
    // Bonnet's recurrence: (k+1) P_{k+1} = (2k+1) u P_k - k P_{k-1}.
    Eigen::MatrixXd P(u.size(), max_degree + 1);
    P.col(0).setOnes();
    if (max_degree >= 1) P.col(1) = u;
    for (int k = 1; k < max_degree; ++k)
        P.col(k + 1) = ((2.0 * k + 1.0) * u.cwiseProduct(P.col(k)) - k * P.col(k - 1)) / (k + 1.0);
    std::vector<double> cumulative;
    for (int l = 0; l <= max_degree; ++l) cumulative.push_back(detail::projected_fraction(P.leftCols(l + 1), f));
    return detail::degree_differences(cumulative);
}

/// f's energy split over Legendre degrees (legendre_energy).
struct LegendreEnergy {
    Eigen::VectorXd degree;  ///< fraction of the energy in each degree 0..max_degree (legendre_degree_energy)
    double even = 0;         ///< degrees 0, 2, 4, ... <= max_degree: the part symmetric in u
    double odd = 0;          ///< degrees 1, 3, 5, ... <= max_degree: the part antisymmetric in u
    double above = 0;        ///< above max_degree: 1 - even - odd (0 for a zero f)
};

/// The fraction of f's energy (mean of f^2 over the points, as in sphere_degree_energy, so
/// degree 0 holds the mean's share mean(f)^2 / mean(f^2)) in each Legendre degree 0..max_degree
/// for points u in [-1, 1]: least squares on P_0..P_L at the points, cumulative projections
/// E(<=l), per-degree differences (legendre_degree_energy). Then the even and odd shares (sums
/// over even and odd degrees <= max_degree) and the rest above max_degree. Subtract f's mean
/// first for the shares of its shape alone. Under the empirical measure of u the degrees are
/// only approximately orthogonal (deviations ~ 1/sqrt(points)), and so are even and odd parts.
/// Throws std::invalid_argument as legendre_degree_energy does.
inline LegendreEnergy legendre_energy(const Eigen::VectorXd& u, const Eigen::VectorXd& f, int max_degree) {
    LegendreEnergy e;
    e.degree = legendre_degree_energy(u, f, max_degree);
    for (Eigen::Index l = 0; l < e.degree.size(); ++l) (l % 2 ? e.odd : e.even) += e.degree(l);
    e.above = f.squaredNorm() == 0.0 ? 0.0 : std::max(0.0, 1.0 - e.even - e.odd);
    return e;
}

/// The degree holding the most energy (the lowest such degree on a tie).
inline int dominant_degree(const Eigen::VectorXd& energy) {
    if (energy.size() == 0) throw std::invalid_argument("dominant_degree: empty energy vector");
    Eigen::Index best = 0;
    energy.maxCoeff(&best);  // Eigen returns the first maximum
    return static_cast<int>(best);
}

/// Pearson correlation of a and b; 0 when either is constant (its correlation is undefined, and
/// "no linear relation" is the useful reading for a flat function).
inline double correlation(const Eigen::VectorXd& a, const Eigen::VectorXd& b) {
    if (a.size() != b.size())
        throw std::invalid_argument("correlation: sizes differ (" + std::to_string(a.size()) + " vs " +
                                    std::to_string(b.size()) + ")");
    // Exact comparison: centring a constant vector can leave round-off that would look like signal.
    if (a.size() == 0 || a.maxCoeff() == a.minCoeff() || b.maxCoeff() == b.minCoeff()) return 0.0;
    const Eigen::VectorXd ca = a.array() - a.mean();
    const Eigen::VectorXd cb = b.array() - b.mean();
    const double denom = ca.norm() * cb.norm();
    if (!(denom > 0.0)) return 0.0;
    return std::clamp(ca.dot(cb) / denom, -1.0, 1.0);
}

/// Pearson correlations between the columns of F (each column is one function on the same
/// points): entry (i, j) is correlation(F.col(i), F.col(j)), so a constant column gives a row and
/// column of zeros, its diagonal included.
inline Eigen::MatrixXd correlation_matrix(const Eigen::MatrixXd& F) {
    const Eigen::Index k = F.cols();
    Eigen::MatrixXd Z(F.rows(), k);  // centred, unit-norm columns (zero for constant ones)
    for (Eigen::Index j = 0; j < k; ++j) {
        const bool constant = F.rows() == 0 || F.col(j).maxCoeff() == F.col(j).minCoeff();
        Z.col(j) = F.col(j).array() - (F.rows() > 0 ? F.col(j).mean() : 0.0);
        const double norm = Z.col(j).norm();
        if (constant || !(norm > 0.0)) Z.col(j).setZero();
        else Z.col(j) /= norm;
    }
    Eigen::MatrixXd C = (Z.transpose() * Z).cwiseMax(-1.0).cwiseMin(1.0);
    for (Eigen::Index j = 0; j < k; ++j)
        if (Z.col(j).squaredNorm() > 0.0) C(j, j) = 1.0;  // exact, not 1 - round-off
    return C;
}

}  // namespace occam::experiment
