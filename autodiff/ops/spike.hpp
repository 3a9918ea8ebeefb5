// What this file teaches: a primitive whose backward pass is not its derivative. A spike
// s = H(x) has derivative 0 almost everywhere, which would stop all learning; surrogate-gradient
// training (Neftci, Mostafa & Zenke 2019) keeps H forward and uses a smooth bump g(x) backward.
// g is built from differentiable ops, so a meta-gradient (a gradient of that backward) uses g'.
#pragma once

#include "unary.hpp"

namespace occam::ad {

/// The surrogate derivative of a spike:
///   sigmoid:      g(x) = beta sig(beta x) (1 - sig(beta x))   (peak beta/4 at 0)
///   fast_sigmoid: g(x) = 1 / (1 + scale |x|)^2                 (SuperSpike as SpyTorch writes it)
/// `smooth` replaces the forward H(x) by a function whose true derivative IS g: sig(beta x), or
/// x / (1 + scale |x|). Such a "soft spike" is differentiable in the ordinary sense, so gradient
/// checks by finite differences apply to it; with H forward they cannot (H' = 0 there).
struct SpikeSurrogate {
    enum class Kind { sigmoid, fast_sigmoid };
    Kind kind = Kind::sigmoid;
    double beta = 5.0;
    double scale = 100.0;
    bool smooth = false;
};

/// g(x), composed of differentiable ops: its own derivative g'(x) comes from the tape. (For the
/// fast sigmoid, |x|' = sign(x) is 0 at 0, so g'(0) = 0, the convention for its jump there.)
inline Var surrogate_derivative(const Var& x, const SpikeSurrogate& s) {
    if (s.kind == SpikeSurrogate::Kind::sigmoid) {
        const Var sig = sigmoid(mul_scalar(x, s.beta));
        return mul_scalar(sig * add_scalar(neg(sig), 1.0), s.beta);  // beta sig (1 - sig)
    }
    return pow(add_scalar(mul_scalar(abs(x), s.scale), 1.0), -2.0);  // (1 + scale |x|)^-2
}

/// s = H(x) elementwise (1 where x > 0, else 0), or the smooth version; backward s-bar g(x).
inline Var spike(const Var& x, const SpikeSurrogate& s = {}) {
    Node* n = tape().push(
        "spike", x.rows(), x.cols(),
        [s](const Node& self, const Var& g, Var* out) { out[0] = g * surrogate_derivative(self.input(0), s); },
        {x.node()});
    const auto in = detail::arr(static_cast<const Node*>(x.node()));
    if (!s.smooth)
        detail::arr(n) = (in > 0.0).cast<double>();
    else if (s.kind == SpikeSurrogate::Kind::sigmoid)
        detail::arr(n) = (1.0 + (-s.beta * in).exp()).inverse();
    else
        detail::arr(n) = in / (1.0 + s.scale * in.abs());
    return Var(n);
}

}  // namespace occam::ad
