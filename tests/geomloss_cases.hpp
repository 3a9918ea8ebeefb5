// The point clouds of the geomloss reference cases (values computed with geomloss v0.3.1's
// SamplesLoss on float64 tensors, github.com/jeanfeydy/geomloss), shared by the Sinkhorn and
// divergence tests. The expected values live beside each test.
#pragma once

#include <Eigen/Dense>

#include <cmath>
#include <initializer_list>

namespace geomloss_cases {

constexpr double kTol = 1e-9;

inline Eigen::VectorXd vec(std::initializer_list<double> v) {
    Eigen::VectorXd out(Eigen::Index(v.size()));
    Eigen::Index i = 0;
    for (double d : v) out[i++] = d;
    return out;
}

// Case A: x = [-0.5, 0.1, 0.7], y = [-1, 0, 1].
inline Eigen::VectorXd case_a_x() { return vec({-0.5, 0.1, 0.7}); }
inline Eigen::VectorXd case_a_y() { return vec({-1.0, 0.0, 1.0}); }

// Case B: x_i = 0.8 cos(0.7 i), i = 0..6; y_j = 0.3 + 0.5 sin(1.1 j), j = 0..4 (radians).
inline Eigen::VectorXd case_b_x() {
    Eigen::VectorXd x(7);
    for (int i = 0; i < 7; ++i) x[i] = 0.8 * std::cos(0.7 * i);
    return x;
}
inline Eigen::VectorXd case_b_y() {
    Eigen::VectorXd y(5);
    for (int j = 0; j < 5; ++j) y[j] = 0.3 + 0.5 * std::sin(1.1 * j);
    return y;
}

}  // namespace geomloss_cases
