// What this file teaches: an elementwise op is a forward expression and a derivative, so all
// of them fit in one table (Adept's idea, PyTorch's derivatives.yaml in miniature). Each
// derivative is written with differentiable ops on Var, in terms of the input `in`, the
// output `y` and the incoming gradient `g`, so second derivatives come for free.
#pragma once

#include "elementwise.hpp"

namespace occam::ad {

// name | forward, on the Eigen array x | backward: the gradient for the input
#define OCCAM_UNARY_OPS(X)                                                          \
    X(exp, x.exp(), g * y)                            /* d e^x = e^x            */ \
    X(log, x.log(), g / in)                           /* d log x = 1/x          */ \
    X(sqrt, x.sqrt(), mul_scalar(g / y, 0.5))         /* d sqrt x = 1/(2 sqrt x) */ \
    X(abs, x.abs(), g * sign(in))                     /* d |x| = sign x, 0 at 0 */ \
    X(tanh, x.tanh(), g * (1.0 - square(y)))          /* d tanh = 1 - tanh^2    */ \
    X(sigmoid, (1.0 + (-x).exp()).inverse(), g * (y * (1.0 - y))) /* s (1 - s)  */ \
    X(sin, x.sin(), g * cos(in))                      /* d sin = cos            */ \
    X(cos, x.cos(), neg(g * sin(in)))                 /* d cos = -sin           */ \
    X(relu, x.max(0.0), relu_grad(g, in))             /* step(x); relu'(0) = 0  */ \
    X(relu6, x.max(0.0).min(6.0), g * (gt(in, 0.0) * lt(in, 6.0)))                 \
    X(square, x.square(), g * mul_scalar(in, 2.0))    /* d x^2 = 2x             */

#define OCCAM_DEFINE_UNARY(NAME, FORWARD, BACKWARD)                                              \
    inline Var NAME(const Var& in_) {                                                            \
        Node* n = tape().push(#NAME, in_.rows(), in_.cols(),                                      \
                              [](const Node& self, const Var& g, Var* out) {                      \
                                  Var in = self.input(0);                                         \
                                  Var y = self.output();                                \
                                  (void)in;                                                       \
                                  (void)y;                                                        \
                                  out[0] = BACKWARD;                                              \
                              },                                                                  \
                              {in_.node()});                                                      \
        auto x = detail::arr(static_cast<const Node*>(in_.node()));                              \
        detail::arr(n) = FORWARD;                                                                \
        return Var(n);                                                                           \
    }

OCCAM_UNARY_OPS(OCCAM_DEFINE_UNARY)
#undef OCCAM_DEFINE_UNARY

// d x^p = p x^(p-1). The exponent is a constant kept on the node.
inline Var pow(const Var& x, double p) {
    Node* n = tape().push("pow", x.rows(), x.cols(),
                          [p](const Node& self, const Var& g, Var* out) {
                              Var in = self.input(0);
                              Var dy = (p == 2.0) ? in : pow(in, p - 1.0);
                              out[0] = mul_scalar(g * dy, p);
                          },
                          {x.node()});
    detail::arr(n) = detail::arr(static_cast<const Node*>(x.node())).pow(p);
    return Var(n);
}

}  // namespace occam::ad
