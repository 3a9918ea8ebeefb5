// What this file teaches: which functions a kernel-regression learner finds easy. Theory says they
// are the kernel's top eigenfunctions; we estimate those from a Gram matrix on probe points (the
// Nystrom method) and measure how much of a learned function lies in them, and with what eigenvalue.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace occam::experiment {

/// A kernel k(A, B): the matrix of k(a_i, b_j) between the rows of A and the rows of B.
using KernelFn = std::function<Eigen::MatrixXd(const Eigen::MatrixXd&, const Eigen::MatrixXd&)>;

/// Default relative gap below which neighbouring eigenvalues count as one eigenspace (see nystrom).
inline constexpr double kDefaultSpaceTolerance = 0.15;

/// The top of a kernel's spectrum, estimated on n probe points.
struct KernelEigen {
    Eigen::VectorXd eigenvalues;              ///< descending: eigenvalues of K/n, i.e. of the integral operator
    Eigen::MatrixXd eigenfunctions;           ///< n x m; column i is eigenfunction i on the probe points, mean(v^2) = 1
    std::vector<int> space_of;                ///< the eigenspace index of each eigenfunction
    std::vector<std::pair<int, int>> spaces;  ///< [first, last] eigenfunction index of each eigenspace
};

/// How a function f splits over a kernel's top eigenfunctions.
struct EigenOverlap {
    std::vector<double> energy_in_top;       ///< entry m-1: fraction of |f|^2 in the span of eigenfunctions 1..m
    std::vector<double> energy_per_space;    ///< fraction of |f|^2 in each eigenspace
    double weighted_eigenvalue = 0.0;        ///< sum_i lambda_i c_i^2 / sum_i c_i^2 over the kept eigenfunctions
    int dominant_space = 0;                  ///< the eigenspace holding the most energy (lowest on a tie)
    double dominant_space_eigenvalue = 0.0;  ///< mean eigenvalue of that space
    double energy_in_top_spaces = 0.0;       ///< fraction of |f|^2 in the span of all kept spaces
};

namespace detail {

/// Throws std::invalid_argument unless A and B have the same number of columns.
inline void check_same_dim(const char* who, const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
    if (a.cols() != b.cols())
        throw std::invalid_argument(std::string(who) + ": points have " + std::to_string(a.cols()) + " and " +
                                    std::to_string(b.cols()) + " columns");
}

}  // namespace detail

/// The linear kernel A B^T. Its eigenfunctions on a sphere are the D coordinates, one eigenspace.
inline Eigen::MatrixXd linear_kernel(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
    detail::check_same_dim("linear_kernel", a, b);
    return a * b.transpose();
}

/// The Gram matrix of K random ReLU features: relu(A J) relu(B J)^T / K, K = J.cols(). For
/// J ~ N(0, 1) it is an unbiased Monte Carlo estimate of the degree-1 arc-cosine kernel, because
/// E_w[relu(w.a) relu(w.b)] = arccos_kernel(a, b) for w ~ N(0, I) (learners/kernel_ridge.hpp); the error
/// per entry shrinks like 1/sqrt(K). This is the kernel a RandomFeatureRidge with features J fits.
inline Eigen::MatrixXd random_feature_kernel(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b,
                                             const Eigen::MatrixXd& j) {
    detail::check_same_dim("random_feature_kernel", a, b);
    if (j.rows() != a.cols())
        throw std::invalid_argument("random_feature_kernel: features have " + std::to_string(j.rows()) +
                                    " rows but points have " + std::to_string(a.cols()) + " columns");
    if (j.cols() < 1) throw std::invalid_argument("random_feature_kernel: need at least one feature");
    const Eigen::MatrixXd fa = (a * j).cwiseMax(0.0), fb = (b * j).cwiseMax(0.0);
    return fa * fb.transpose() / static_cast<double>(j.cols());
}

/// The Nystrom method: the top `top` eigenvalues and eigenfunctions of a kernel from its n x n Gram
/// matrix K on probe points drawn from a measure mu.
///
/// Why it works: the integral operator (T g)(x) = E_{y~mu}[k(x, y) g(y)] becomes, under the
/// empirical measure of the probe points, the matrix K/n acting on the values g(x_j). If K has
/// eigenvalues lambda_i and unit eigenvectors u_i, then lambda_i/n approximate T's eigenvalues and
/// v_i = sqrt(n) u_i approximate its eigenfunctions at the probe points, normalised like them:
/// E_mu[phi_i^2] = 1 becomes mean(v_i^2) = |u_i|^2 = 1. For uniform points on a sphere and a
/// rotation-invariant kernel, the eigenfunctions are spherical harmonics, one eigenspace per degree.
///
/// Eigenspaces: a finite sample splits a degenerate eigenvalue slightly (the 3 degree-1 harmonics
/// on S^2 come out as three values a few percent apart, at 800 points), so neighbouring eigenvalues
/// are one space while |l_i - l_{i+1}| <= tolerance * l_i. The default 0.15 is well above that
/// sampling spread at hundreds of points and well below the gaps between degrees of the kernels
/// here (arc-cosine on S^2: 3/16, 1/12, 3/256, 1/3072). The rule chains, so a slowly decaying
/// spectrum (ratio > 0.85 per step) would merge into one space; raise the points or lower the
/// tolerance then. Eigenvalues below 1e-10 of the largest are round-off of zero (rank-deficient
/// kernels such as the linear one), where ratios mean nothing: they form one space of their own.
/// If `top` cuts through an eigenspace, the last space is incomplete: choose `top` at a gap.
///
/// Each eigenfunction's sign is fixed so that its entry of largest magnitude is positive, which
/// makes results reproducible (an eigensolver's signs are arbitrary). Cost: a dense symmetric
/// eigendecomposition, O(n^3); n = 2000 takes seconds (see nystrom_subsample).
inline KernelEigen nystrom(const Eigen::MatrixXd& K, int top, double tolerance = kDefaultSpaceTolerance) {
    const Eigen::Index n = K.rows();
    if (K.cols() != n || n == 0)
        throw std::invalid_argument("nystrom: need a non-empty square Gram matrix, got " + std::to_string(K.rows()) +
                                    " x " + std::to_string(K.cols()));
    if (top < 1 || top > n)
        throw std::invalid_argument("nystrom: top must be in [1, " + std::to_string(n) + "], got " +
                                    std::to_string(top));
    if (!(tolerance >= 0.0)) throw std::invalid_argument("nystrom: tolerance must be >= 0");
    if (!K.allFinite()) throw std::invalid_argument("nystrom: Gram matrix must be finite");
    // The solver reads only one triangle, so an asymmetric K (say k(X_sub, X_all) by mistake) would
    // be silently misread; kernels built in floating point are symmetric up to round-off.
    const double scale = K.cwiseAbs().maxCoeff();
    if ((K - K.transpose()).cwiseAbs().maxCoeff() > 1e-8 * std::max(scale, 1e-300))
        throw std::invalid_argument("nystrom: Gram matrix is not symmetric");

    const double nd = static_cast<double>(n);
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(K / nd);
    if (solver.info() != Eigen::Success) throw std::runtime_error("nystrom: eigendecomposition did not converge");

    KernelEigen e;
    e.eigenvalues.resize(top);
    e.eigenfunctions.resize(n, top);
    for (int i = 0; i < top; ++i) {
        const Eigen::Index src = n - 1 - i;  // Eigen sorts ascending
        e.eigenvalues(i) = solver.eigenvalues()(src);
        Eigen::VectorXd v = solver.eigenvectors().col(src) * std::sqrt(nd);
        Eigen::Index big = 0;
        v.cwiseAbs().maxCoeff(&big);
        if (v(big) < 0.0) v = -v;
        e.eigenfunctions.col(i) = v;
    }

    const double zero = 1e-10 * std::max(std::abs(e.eigenvalues(0)), 1e-300);
    auto is_zero = [&](int i) { return std::abs(e.eigenvalues(i)) <= zero; };
    int first = 0;
    for (int i = 0; i < top; ++i) {
        const bool ends =
            i + 1 == top || (is_zero(i) != is_zero(i + 1)) ||
            (!is_zero(i) && std::abs(e.eigenvalues(i) - e.eigenvalues(i + 1)) > tolerance * std::abs(e.eigenvalues(i)));
        e.space_of.push_back(static_cast<int>(e.spaces.size()));
        if (ends) {
            e.spaces.emplace_back(first, i);
            first = i + 1;
        }
    }
    return e;
}

/// nystrom on the first min(max_points, rows) rows of X only: the eigenproblem is cubic in the
/// points, and a thousand uniform points already resolve the leading eigenspaces. The first rows
/// are a fair subsample only for i.i.d. probe points (shuffle a sorted grid first). The result
/// lives on that subsample: analyse f on the same rows (eigen_overlap(e, f.head(e.eigenfunctions
/// .rows()))), which is the simplest correct route, or carry the eigenfunctions to every point
/// with extend.
inline KernelEigen nystrom_subsample(const Eigen::MatrixXd& X, const KernelFn& kernel, int top, int max_points = 1000,
                                     double tolerance = kDefaultSpaceTolerance) {
    if (max_points < 1) throw std::invalid_argument("nystrom_subsample: max_points must be >= 1");
    if (!kernel) throw std::invalid_argument("nystrom_subsample: no kernel given");
    const Eigen::MatrixXd sub = X.topRows(std::min<Eigen::Index>(X.rows(), max_points));
    const Eigen::MatrixXd K = kernel(sub, sub);
    if (K.rows() != sub.rows() || K.cols() != sub.rows())
        throw std::invalid_argument("nystrom_subsample: kernel returned a " + std::to_string(K.rows()) + " x " +
                                    std::to_string(K.cols()) + " matrix for " + std::to_string(sub.rows()) + " points");
    return nystrom(K, top, tolerance);
}

/// The Nystrom extension: eigenfunctions found on X_sub, evaluated at the rows of X_all, from the
/// eigen-equation T v = lambda v itself: v_i(x) = (1/(m lambda_i)) sum_j k(x, x_j) v_i(x_j), with
/// m = rows of X_sub (lambda_i is an eigenvalue of K/m, so m lambda_i is one of K). At the rows of
/// X_sub it gives back e.eigenfunctions exactly; elsewhere it interpolates with the kernel. The
/// columns come out only approximately orthonormal on X_all (eigen_overlap handles that).
/// Dividing by lambda_i amplifies error, so an eigenfunction with eigenvalue below 1e-10 of the
/// largest (round-off of zero) cannot be extended: std::invalid_argument.
inline Eigen::MatrixXd extend(const KernelEigen& e, const Eigen::MatrixXd& X_sub, const Eigen::MatrixXd& X_all,
                              const KernelFn& kernel) {
    if (!kernel) throw std::invalid_argument("extend: no kernel given");
    if (e.eigenfunctions.rows() != X_sub.rows())
        throw std::invalid_argument("extend: eigenfunctions have " + std::to_string(e.eigenfunctions.rows()) +
                                    " rows but X_sub has " + std::to_string(X_sub.rows()));
    if (e.eigenvalues.size() == 0) return Eigen::MatrixXd(X_all.rows(), 0);
    const double largest = e.eigenvalues.cwiseAbs().maxCoeff();
    for (Eigen::Index i = 0; i < e.eigenvalues.size(); ++i)
        if (!(e.eigenvalues(i) > 1e-10 * largest))
            throw std::invalid_argument("extend: eigenfunction " + std::to_string(i) + " has eigenvalue " +
                                        std::to_string(e.eigenvalues(i)) + ", too small to extend");
    const Eigen::MatrixXd K = kernel(X_all, X_sub);
    if (K.rows() != X_all.rows() || K.cols() != X_sub.rows())
        throw std::invalid_argument("extend: kernel returned a " + std::to_string(K.rows()) + " x " +
                                    std::to_string(K.cols()) + " matrix, expected " + std::to_string(X_all.rows()) +
                                    " x " + std::to_string(X_sub.rows()));
    const double m = static_cast<double>(X_sub.rows());
    const Eigen::VectorXd scale = (m * e.eigenvalues).cwiseInverse();
    return (K * e.eigenfunctions) * scale.asDiagonal();
}

/// How much of f (its values on the same probe points as e's eigenfunctions) lies in each of the
/// kernel's top eigenfunctions and eigenspaces; energies are fractions of |f|^2.
///
/// This is least squares on the eigenfunctions, computed with one unpivoted Householder QR V = Q R:
/// the span of V's first m columns is the span of Q's first m, so the energy in the first m
/// eigenfunctions is sum_{i<=m} (Q^T f)_i^2. For nystrom's output V/sqrt(n) is orthonormal, Q = U
/// up to signs, and this is just c = U^T f with energies c_i^2; the QR keeps it right for
/// eigenfunctions that are only nearly orthonormal (extend's, on new points), where each c_i^2 is
/// the energy eigenfunction i adds beyond those before it. A direction with |R_ii| at round-off
/// (dependent columns) is given no energy rather than a spurious direction of R^n.
/// A zero f has no energy anywhere: everything is 0 (dominant_space 0), as for an f orthogonal
/// to all kept eigenfunctions.
inline EigenOverlap eigen_overlap(const KernelEigen& e, const Eigen::VectorXd& f) {
    const Eigen::Index n = e.eigenfunctions.rows();
    const auto top = static_cast<int>(e.eigenfunctions.cols());
    if (f.size() != n)
        throw std::invalid_argument("eigen_overlap: " + std::to_string(n) + " probe points but " +
                                    std::to_string(f.size()) + " function values");
    if (!f.allFinite()) throw std::invalid_argument("eigen_overlap: function values must be finite");
    if (e.eigenvalues.size() != top || static_cast<int>(e.space_of.size()) != top || e.spaces.empty() ||
        e.spaces.back().second != top - 1)
        throw std::invalid_argument("eigen_overlap: inconsistent KernelEigen");
    if (top > n) throw std::invalid_argument("eigen_overlap: more eigenfunctions than probe points");

    EigenOverlap out;
    out.energy_in_top.assign(static_cast<size_t>(top), 0.0);
    out.energy_per_space.assign(e.spaces.size(), 0.0);
    const double total = f.squaredNorm();
    if (total == 0.0) return out;

    const Eigen::HouseholderQR<Eigen::MatrixXd> qr(e.eigenfunctions);
    const Eigen::VectorXd c = (qr.householderQ().transpose() * f).head(top);
    // Columns have norm ~sqrt(n); a diagonal this far below that means a dependent column.
    const double floor = 1e-10 * std::sqrt(static_cast<double>(n));
    double cumulative = 0.0, weighted = 0.0, captured = 0.0;
    for (int i = 0; i < top; ++i) {
        const double share = std::abs(qr.matrixQR()(i, i)) > floor ? c(i) * c(i) / total : 0.0;
        cumulative += share;
        captured += share;
        weighted += e.eigenvalues(i) * share;
        out.energy_in_top[static_cast<size_t>(i)] = cumulative;
        out.energy_per_space[static_cast<size_t>(e.space_of[static_cast<size_t>(i)])] += share;
    }
    out.energy_in_top_spaces = cumulative;
    if (!(captured > 0.0)) return out;  // f is orthogonal to every kept eigenfunction: nothing dominates
    out.weighted_eigenvalue = weighted / captured;
    const auto best = std::max_element(out.energy_per_space.begin(), out.energy_per_space.end());
    out.dominant_space = static_cast<int>(best - out.energy_per_space.begin());
    const auto [first, last] = e.spaces[static_cast<size_t>(out.dominant_space)];
    out.dominant_space_eigenvalue = e.eigenvalues.segment(first, last - first + 1).mean();
    return out;
}

}  // namespace occam::experiment
