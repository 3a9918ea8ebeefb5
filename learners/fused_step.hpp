// What this file teaches: one step of gradient descent on a ReLU network as ONE tape node
// whose backward pass is written by hand. The vector-Jacobian product of p' = p - lr grad L(p)
// needs a Hessian-vector product, computed with Pearlmutter's R-operator (a forward-mode pass
// through the network's forward and backward passes) instead of recording ~100 small nodes.
#pragma once

#include <Eigen/Dense>
#include <string>
#include <vector>

#include "../autodiff/autodiff.hpp"

namespace occam::learners {

/// One full-batch or minibatch SGD step of a ReLU MLP (identity output) on the mean squared
/// error, with an optional 0/1 mask on the first layer's weights and an optional |W0| projection
/// after the step. Parameters are packed in one column: W0, b0, W1, b1, ... each column-major.
struct FusedSgdStep {
    std::vector<int> widths;
    Eigen::MatrixXd mask;  ///< empty: dense first layer
    bool positive = false;
    double lr = 0.0;
    Eigen::MatrixXd x;      ///< the step's (batch of) inputs
    std::vector<int> rows;  ///< which label rows the batch uses (empty: all, in order)

    int layers() const { return int(widths.size()) - 1; }

    /// The values the forward and the backward pass share.
    struct Pass {
        std::vector<Eigen::MatrixXd> W, a, z;  ///< effective weights, activations a_l, pre-activations z_l
        std::vector<Eigen::MatrixXd> delta;    ///< dL/dz_l
        std::vector<Eigen::MatrixXd> gW;       ///< dL/dW_l (masked for l = 0)
        std::vector<Eigen::RowVectorXd> gb;
    };

    /// Forward and backward pass of the loss at packed parameters p with batch labels y.
    ///   z_l = a_l W_l^T + b_l,  a_{l+1} = relu(z_l),  out = z_{L-1},  L = mean((out - y)^2)
    ///   delta_{L-1} = 2 (out - y) / n,  gW_l = delta_l^T a_l,  gb_l = colsum(delta_l),
    ///   delta_{l-1} = (delta_l W_l) .* [z_{l-1} > 0]
    Pass run(const Eigen::VectorXd& p, const Eigen::VectorXd& y) const {
        const int L = layers();
        Pass s;
        s.W.resize(L);
        s.a.resize(L + 1);
        s.z.resize(L);
        s.delta.resize(L);
        s.gW.resize(L);
        s.gb.resize(L);
        Eigen::Index at = 0;
        std::vector<Eigen::RowVectorXd> b(static_cast<std::size_t>(L));
        for (int l = 0; l < L; ++l) {
            const int out = widths[std::size_t(l + 1)], in = widths[std::size_t(l)];
            s.W[l] = Eigen::Map<const Eigen::MatrixXd>(p.data() + at, out, in);
            at += Eigen::Index(out) * in;
            b[l] = Eigen::Map<const Eigen::RowVectorXd>(p.data() + at, out);
            at += out;
            if (l == 0 && mask.size()) s.W[0] = s.W[0].cwiseProduct(mask);
        }
        s.a[0] = x;
        for (int l = 0; l < L; ++l) {
            s.z[l] = (s.a[l] * s.W[l].transpose()).rowwise() + b[l];
            if (l + 1 < L) s.a[l + 1] = s.z[l].cwiseMax(0.0);
        }
        const double n = double(x.rows());
        s.delta[L - 1] = (2.0 / n) * (s.z[L - 1] - y);
        for (int l = L - 1; l >= 0; --l) {
            s.gW[l] = s.delta[l].transpose() * s.a[l];
            s.gb[l] = s.delta[l].colwise().sum();
            if (l > 0) s.delta[l - 1] = relu_gate(s.delta[l] * s.W[l], s.z[l - 1]);
        }
        if (mask.size()) s.gW[0] = s.gW[0].cwiseProduct(mask);
        return s;
    }

    /// x where z > 0, else 0 (x .* relu'(z)), without a mask matrix.
    template <class X>
    static Eigen::MatrixXd relu_gate(const X& x, const Eigen::MatrixXd& z) {
        Eigen::MatrixXd out = x;
        out = (z.array() > 0.0).select(out.array(), 0.0).matrix();
        return out;
    }

    /// p - lr g, then |W0| if positive.
    Eigen::VectorXd step(const Eigen::VectorXd& p, const Pass& s) const {
        Eigen::VectorXd q = p;
        Eigen::Index at = 0;
        for (int l = 0; l < layers(); ++l) {
            const Eigen::Index nw = s.gW[l].size(), nb = s.gb[l].size();
            q.segment(at, nw) -= lr * Eigen::Map<const Eigen::VectorXd>(s.gW[l].data(), nw);
            if (l == 0 && positive) q.segment(at, nw) = q.segment(at, nw).cwiseAbs();
            at += nw;
            q.segment(at, nb) -= lr * s.gb[l].transpose();
            at += nb;
        }
        return q;
    }

    /// The batch labels from all labels.
    Eigen::VectorXd batch_labels(const Eigen::VectorXd& y) const { return rows.empty() ? y : Eigen::VectorXd(y(rows)); }

    /// The vector-Jacobian product for the adjoint v of p'. With R{.} the derivative along
    /// the direction V (v, after the |.| projection's sign for W0):
    ///   R z_l = R a_l W_l^T + a_l V_Wl^T + V_bl,  R a_{l+1} = R z_l .* [z_l > 0]
    ///   R delta_{L-1} = 2 R out / n
    ///   R gW_l = R delta_l^T a_l + delta_l^T R a_l,  R gb_l = colsum(R delta_l)
    ///   R delta_{l-1} = (R delta_l W_l + delta_l V_Wl) .* [z_{l-1} > 0]
    /// Then  p_bar = V - lr (R gW, R gb)  (= V - lr H V, H the loss's Hessian) and
    ///       y_bar = (2 lr / n) R out     (from d grad / d y = -(2/n) d out / d p).
    /// `s` is run(p, batch labels) from the forward pass, kept rather than recomputed.
    void vjp(const Eigen::VectorXd& p, const Pass& s, const Eigen::VectorXd& v, Eigen::VectorXd& p_bar,
             Eigen::VectorXd& y_bar, Eigen::Index n_labels) const {
        const int L = layers();
        std::vector<Eigen::MatrixXd> VW(static_cast<std::size_t>(L));
        std::vector<Eigen::RowVectorXd> Vb(static_cast<std::size_t>(L));
        std::vector<Eigen::Index> offs(static_cast<std::size_t>(L));  ///< where layer l's W starts in p
        Eigen::VectorXd V = v;
        Eigen::Index at = 0;
        for (int l = 0; l < L; ++l) {
            const int out = widths[std::size_t(l + 1)], in = widths[std::size_t(l)];
            const Eigen::Index nw = Eigen::Index(out) * in;
            offs[std::size_t(l)] = at;
            if (l == 0 && positive) {  // d|u|/du = sign(u) at the pre-projection weights
                const Eigen::VectorXd pre =
                    p.segment(0, nw) - lr * Eigen::Map<const Eigen::VectorXd>(s.gW[0].data(), nw);
                V.segment(0, nw) = V.segment(0, nw).cwiseProduct(pre.cwiseSign());
            }
            VW[l] = Eigen::Map<const Eigen::MatrixXd>(V.data() + at, out, in);
            if (l == 0 && mask.size()) VW[0] = VW[0].cwiseProduct(mask);
            at += nw;
            Vb[l] = Eigen::Map<const Eigen::RowVectorXd>(V.data() + at, out);
            at += out;
        }
        // R a_0 = 0 (the inputs are constants), so layer 0 skips the terms with R a_0.
        std::vector<Eigen::MatrixXd> Ra(static_cast<std::size_t>(L + 1));
        Eigen::MatrixXd Rz;
        for (int l = 0; l < L; ++l) {
            if (l == 0)
                Rz = (s.a[0] * VW[0].transpose()).rowwise() + Vb[0];
            else
                Rz = ((Ra[l] * s.W[l].transpose() + s.a[l] * VW[l].transpose()).rowwise() + Vb[l]);
            if (l + 1 < L) Ra[l + 1] = relu_gate(Rz, s.z[l]);
        }
        const double n = double(x.rows());
        Eigen::MatrixXd Rdelta = (2.0 / n) * Rz;
        p_bar = V;
        for (int l = L - 1; l >= 0; --l) {
            Eigen::MatrixXd RgW = Rdelta.transpose() * s.a[l];
            if (l > 0) RgW += s.delta[l].transpose() * Ra[l];
            if (l == 0 && mask.size()) RgW = RgW.cwiseProduct(mask);
            const Eigen::Index nw = RgW.size();
            p_bar.segment(offs[l], nw) -= lr * Eigen::Map<const Eigen::VectorXd>(RgW.data(), nw);
            p_bar.segment(offs[l] + nw, RgW.rows()) -= lr * Rdelta.colwise().sum().transpose();
            if (l > 0) Rdelta = relu_gate(Rdelta * s.W[l] + s.delta[l] * VW[l], s.z[l - 1]);
        }
        // Rz still holds R out (the last layer's).
        const Eigen::VectorXd yb = (2.0 * lr / n) * Rz.col(0);
        y_bar = Eigen::VectorXd::Zero(n_labels);
        if (rows.empty())
            y_bar = yb;
        else
            for (std::size_t k = 0; k < rows.size(); ++k) y_bar[rows[k]] += yb[Eigen::Index(k)];
    }
};

/// p' = step(p; y) as one node; first-order gradients for p and y (the step's inputs x are
/// constants of the task). The node keeps the step's forward pass (activations, deltas: a few
/// times the parameters' size) for its backward, so the backward does not run it again.
inline ad::Var fused_sgd_step(FusedSgdStep step, const ad::Var& packed, const ad::Var& y) {
    struct Kept : ad::Owned {  // released with the tape scope
        FusedSgdStep step;
        FusedSgdStep::Pass pass;
    };
    ad::Tape& t = ad::tape();
    auto* s = t.own<Kept>();
    s->step = std::move(step);
    const Eigen::VectorXd p = packed.value();
    s->pass = s->step.run(p, s->step.batch_labels(Eigen::VectorXd(y.value())));
    const Eigen::VectorXd q = s->step.step(p, s->pass);
    ad::Node* n = t.push(
        "fused_sgd_step", int(q.size()), 1,
        [](const ad::Node& self, const ad::Var& g, ad::Var* grads) {
            if (ad::grad_enabled())
                throw ad::Error("fused_sgd_step gives first-order gradients only; do not pass create_graph through it");
            const auto* st = static_cast<const Kept*>(self.ptr);
            Eigen::VectorXd p_bar, y_bar;
            st->step.vjp(self.inputs[0]->value(), st->pass, g.value(), p_bar, y_bar, self.inputs[1]->rows);
            if (self.inputs[0]->requires_grad) grads[0] = ad::constant(Eigen::MatrixXd(p_bar));
            if (self.inputs[1]->requires_grad) grads[1] = ad::constant(Eigen::MatrixXd(y_bar));
        },
        {packed.node(), y.node()});
    n->mutable_value() = q;
    n->ptr = s;
    return ad::Var(n);
}

}  // namespace occam::learners
