// Embedding the Sinkhorn divergence: a program outside the project that includes only
// metaloss/sinkhorn.hpp (and so only Eigen) reproduces geomloss's reference values.
// Values: computed with geomloss v0.3.1's SamplesLoss on float64 tensors (tensorized backend).
#include <cmath>
#include <cstdio>

#include "metaloss/sinkhorn.hpp"

int main() {
    Eigen::VectorXd xa(3), ya(3);
    xa << -0.5, 0.1, 0.7;
    ya << -1.0, 0.0, 1.0;
    Eigen::VectorXd xb(7), yb(5);
    for (int i = 0; i < 7; ++i) xb(i) = 0.8 * std::cos(0.7 * i);
    for (int j = 0; j < 5; ++j) yb(j) = 0.3 + 0.5 * std::sin(1.1 * j);

    struct Case {
        const char* name;
        double got, want;
    };
    occam::metaloss::SinkhornOptions p1;
    p1.p = 1;
    occam::metaloss::SinkhornOptions blur5;
    blur5.blur = 0.5;
    const Case cases[] = {
        {"case A, defaults", occam::metaloss::sinkhorn_divergence(xa, ya), 0.058333333333},
        {"case A, blur 0.5", occam::metaloss::sinkhorn_divergence(xa, ya, blur5), 0.058377890277},
        {"case A, p = 1", occam::metaloss::sinkhorn_divergence(xa, ya, p1), 0.299898202935},
        {"case B, defaults", occam::metaloss::sinkhorn_divergence(xb, yb), 0.147637068278},
        {"case B, p = 1", occam::metaloss::sinkhorn_divergence(xb, yb, p1), 0.397210378951},
    };
    int failed = 0;
    for (const Case& c : cases) {
        const bool ok = std::abs(c.got - c.want) <= 1e-9;
        std::printf("%-18s %.12f (geomloss %.12f) %s\n", c.name, c.got, c.want, ok ? "ok" : "FAIL");
        failed += !ok;
    }
    return failed ? 1 : 0;
}
