// What this teaches: adding an op from outside the engine with ad::custom_node. A row-wise
// softmax cross-entropy becomes ONE tape node with a hand-written backward, written twice:
// (a) first-order only, its backward filling numbers by hand, so ad::grad with create_graph
// through it is refused with an ad::Error naming it; (b) the same fast path, switching to
// differentiable ops under create_graph, so second derivatives (gradgradcheck) are right too.
// docs/autodiff.md walks through the API.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "autodiff/autodiff.hpp"

namespace ad = occam::ad;

// The op. Logits Z and targets T, both n x c; T is any non-negative weights (soft labels,
// rows need not sum to 1). One loss per row, an n x 1 output:
//
//     loss_i = -sum_j t_ij log p_ij = sum_j t_ij (lse_i - z_ij),
//     p_ij = exp(z_ij - lse_i),  lse_i = log sum_j exp(z_ij).
//
// The derivatives, with s_i = sum_j t_ij and d lse_i / d z_ij = p_ij:
//
//     d loss_i / d z_ij = s_i p_ij - t_ij,       d loss_i / d t_ij = lse_i - z_ij.
//
// The backward pass receives g = dL/d loss (n x 1) and returns, row i scaled by g_i,
//
//     dL/dZ = g (s P - T),                        dL/dT = g (lse - Z).
//
// Composed from built-in ops the same loss is row_sums(T * (row_logsumexp(Z) - Z)): four nodes
// and four backward formulas; fused, one node whose backward reuses the softmax P and the lse
// that the forward pass computed anyway.

// The op's typed state: the forward pass's softmax and log-sum-exp, kept for the backward. The
// backward lambda captures it by value; Eigen matrices have destructors, so the tape keeps its
// copy of the lambda on its owned list and frees it when the node's TapeScope closes (a closure
// of plain numbers or pointers would sit in the arena instead).
struct Kept {
    Eigen::MatrixXd P;    // n x c softmax of the logits
    Eigen::VectorXd lse;  // n log-sum-exps
};

// How often a backward took the hand-written path (to show which path ran).
int fast_backward_calls = 0;

// The hand-written backward on raw numbers: the formulas above with Eigen, no tape nodes
// except the two constants that carry the results.
void xent_backward_by_hand(const Kept& kept, const ad::Node& self, const ad::Var& g, ad::Var* grads) {
    ++fast_backward_calls;
    const Eigen::ArrayXd gv = g.value().col(0).array();
    if (self.needs(0)) {
        const Eigen::ArrayXd s = self.input(1).value().rowwise().sum().array();
        const Eigen::ArrayXXd dZ = kept.P.array().colwise() * s - self.input(1).value().array();
        grads[0] = ad::constant((dZ.colwise() * gv).matrix());
    }
    if (self.needs(1)) {
        const Eigen::ArrayXXd dT = (-self.input(0).value().array()).colwise() + kept.lse.array();
        grads[1] = ad::constant((dT.colwise() * gv).matrix());
    }
}

// The forward pass, shared by both versions: the value (n x 1) and the state for the backward.
Kept xent_forward(const ad::Var& logits, const ad::Var& targets, Eigen::MatrixXd& value) {
    const auto Z = logits.value();
    Kept kept;
    const Eigen::VectorXd m = Z.rowwise().maxCoeff();  // shift by the max: exp never overflows
    kept.lse = m.array() + (Z.colwise() - m).array().exp().rowwise().sum().log();
    kept.P = (Z.colwise() - kept.lse).array().exp().matrix();
    value = ((-Z).colwise() + kept.lse).cwiseProduct(targets.value()).rowwise().sum();
    return kept;
}

void check_shapes(const ad::Var& logits, const ad::Var& targets) {
    if (logits.rows() != targets.rows() || logits.cols() != targets.cols())
        throw ad::ShapeError("softmax_xent: logits are " + ad::shape_str(logits) + " but targets are " +
                             ad::shape_str(targets));
}

// (a) First-order only. The backward always fills numbers by hand; those numbers are constants
// on the tape, so a create_graph backward through them would record nothing of how they depend
// on Z and T, and a second derivative would come out silently wrong (zero). Declaring
// Derivatives::first_order makes ad::grad refuse instead, naming the node.
ad::Var softmax_xent_first_order(const ad::Var& logits, const ad::Var& targets) {
    check_shapes(logits, targets);
    // The usual order: compute the value and the state, make the node with a closure that
    // captures the state, copy the value in, hand out the Var.
    Eigen::MatrixXd value;
    Kept kept = xent_forward(logits, targets, value);
    ad::Node* n = ad::custom_node(
        "softmax_xent_first_order", logits.rows(), 1, {logits, targets},
        [kept](const ad::Node& self, const ad::Var& g, ad::Var* grads) { xent_backward_by_hand(kept, self, g, grads); },
        ad::Derivatives::first_order);
    n->mutable_value() = value;
    return ad::Var(n);
}

// (b) Any order. The same fast path for plain gradients; when ad::grad_enabled() is true (ad::grad
// with create_graph, which records the backward pass) the same formulas written with ops
// instead, recorded like any other computation and so differentiable again. The kept P and lse
// are numbers, so this path recomputes them as functions of Z.
ad::Var softmax_xent(const ad::Var& logits, const ad::Var& targets) {
    check_shapes(logits, targets);
    Eigen::MatrixXd value;
    Kept kept = xent_forward(logits, targets, value);
    ad::Node* n = ad::custom_node(
        "softmax_xent", logits.rows(), 1, {logits, targets},
        [kept](const ad::Node& self, const ad::Var& g, ad::Var* grads) {
            if (!ad::grad_enabled()) {  // a plain gradient: the fast path
                xent_backward_by_hand(kept, self, g, grads);
                return;
            }
            ad::Var Z = self.input(0), T = self.input(1);
            ad::Var lse = ad::row_logsumexp(Z);
            if (self.needs(0)) grads[0] = g * (ad::row_sums(T) * ad::exp(Z - lse) - T);  // g (s P - T)
            if (self.needs(1)) grads[1] = g * (lse - Z);                                   // g (lse - Z)
        });  // Derivatives::any_order is the default
    n->mutable_value() = value;
    return ad::Var(n);
}

// The reference: the same loss composed from built-in ops (each with its own backward formula).
ad::Var softmax_xent_composed(const ad::Var& Z, const ad::Var& T) { return ad::row_sums(T * (ad::row_logsumexp(Z) - Z)); }

using Fn = ad::Var (*)(const ad::Var&, const ad::Var&);

// A scalar loss around the op: a weighted sum of the row losses, so every row's g differs.
ad::Var total(Fn xent, const std::vector<ad::Var>& in) {
    ad::Var w = ad::constant(Eigen::VectorXd::LinSpaced(in[0].rows(), 0.5, 1.5));
    return ad::sum(w * xent(in[0], in[1]));
}

// The gradient of total() at the inputs (with create_graph: through the op path of (b)), and
// the Hessian-vector product along a direction.
std::vector<Eigen::MatrixXd> gradients(Fn xent, const std::vector<Eigen::MatrixXd>& in, bool create_graph = false) {
    ad::TapeScope scope;
    std::vector<ad::Var> v = ad::params(in);
    return ad::values(ad::grad(total(xent, v), v, {.create_graph = create_graph}));
}
std::vector<Eigen::MatrixXd> hessian_vector(Fn xent, const std::vector<Eigen::MatrixXd>& in,
                                            const std::vector<Eigen::MatrixXd>& dir) {
    ad::TapeScope scope;
    std::vector<ad::Var> v = ad::params(in);
    std::vector<ad::Var> g = ad::grad(total(xent, v), v, {.create_graph = true});
    ad::Var gv = ad::sum(g[0] * ad::constant(dir[0])) + ad::sum(g[1] * ad::constant(dir[1]));
    return ad::values(ad::grad(gv, v));
}

double max_diff(const std::vector<Eigen::MatrixXd>& a, const std::vector<Eigen::MatrixXd>& b) {
    double d = 0.0;
    for (std::size_t k = 0; k < a.size(); ++k) d = std::max(d, (a[k] - b[k]).cwiseAbs().maxCoeff());
    return d;
}

int main() {
    bool ok = true;
    auto report = [&ok](const char* what, bool pass, const std::string& detail) {
        std::printf("  %-58s %s  %s\n", what, pass ? "ok    " : "FAILED", detail.c_str());
        ok = ok && pass;
    };
    auto num = [](double v) {
        char s[32];
        std::snprintf(s, sizeof s, "%.2e", v);
        return std::string(s);
    };

    // 1. What the tape holds: one node for the fused loss, then what create_graph records.
    {
        ad::TapeScope scope;
        ad::Var Z = ad::param(Eigen::MatrixXd{{1.0, 2.0, 0.5}, {0.0, -1.0, 1.0}});
        ad::Var T = ad::constant(Eigen::MatrixXd{{0.0, 1.0, 0.0}, {0.5, 0.0, 0.5}});
        ad::Var L = ad::sum(softmax_xent(Z, T));
        std::printf("The tape of sum(softmax_xent(Z, T)), T a constant:\n");
        ad::print_tape(std::cout, Z);
        const std::size_t before = ad::tape().size();
        ad::grad(L, {Z}, {.create_graph = true});
        std::printf("... and what ad::grad with create_graph recorded after it (the op path of the backward):\n");
        ad::print_tape(std::cout, before, ad::tape().size());
        std::printf("\n");
    }

    ad::Rng rng(4);
    const int n = 5, c = 4;
    // Soft targets whose rows do NOT sum to 1, so the s_i in s P - T matters.
    const std::vector<Eigen::MatrixXd> in = {rng.normal_matrix(n, c), rng.uniform_matrix(n, c, 0.0, 1.0)};
    const std::vector<Eigen::MatrixXd> dir = {rng.normal_matrix(n, c), rng.normal_matrix(n, c)};

    // 2. The value: fused and composed agree.
    {
        ad::TapeScope scope;
        std::vector<ad::Var> v = ad::params(in);
        const double d = (softmax_xent(v[0], v[1]).value() - softmax_xent_composed(v[0], v[1]).value()).cwiseAbs().maxCoeff();
        report("value: fused = composed from built-in ops", d < 1e-12, "max |diff| " + num(d));
    }

    // 3. First order: the by-hand backward against the composed graph's, and against central
    //    differences (ad::gradcheck); the any-order node takes its fast path here.
    const std::vector<Eigen::MatrixXd> g_ref = gradients(softmax_xent_composed, in);
    const double d_a = max_diff(gradients(softmax_xent_first_order, in), g_ref);
    report("(a) first-order: gradient = composed ops' gradient", d_a < 1e-12, "max |diff| " + num(d_a));
    fast_backward_calls = 0;
    const double d_b = max_diff(gradients(softmax_xent, in), g_ref);
    report("(b) any-order: gradient = composed ops' gradient", d_b < 1e-12 && fast_backward_calls == 1,
           "max |diff| " + num(d_b) + ", by-hand path ran " + std::to_string(fast_backward_calls) + "x");
    const ad::CheckFn fa = [](const std::vector<ad::Var>& v) { return total(softmax_xent_first_order, v); };
    const ad::CheckFn fb = [](const std::vector<ad::Var>& v) { return total(softmax_xent, v); };
    const ad::CheckReport ca = ad::gradcheck(fa, in);
    report("(a) gradcheck", ca.ok, ca.message());
    const ad::CheckReport cb = ad::gradcheck(fb, in);
    report("(b) gradcheck", cb.ok, cb.message());

    // 4. Second order. (b) has two backward paths, and each needs checking: gradcheck above saw
    //    only the by-hand one, and gradgradcheck differentiates the op path's gradient without
    //    ever comparing it with the true gradient (a wrong but smooth op path passes it). So:
    //    the op path's gradient equals the by-hand one, its Hessian-vector product equals the
    //    composed graph's, and gradgradcheck passes. (a) refuses create_graph, naming itself.
    const double d_paths = max_diff(gradients(softmax_xent, in, true), gradients(softmax_xent, in));
    report("(b) op path's gradient (create_graph) = by-hand path's", d_paths < 1e-12, "max |diff| " + num(d_paths));
    const double d_hv = max_diff(hessian_vector(softmax_xent, in, dir), hessian_vector(softmax_xent_composed, in, dir));
    report("(b) Hessian-vector product = composed ops' one", d_hv < 1e-12, "max |diff| " + num(d_hv));
    const ad::CheckReport cc = ad::gradgradcheck(fb, in);
    report("(b) gradgradcheck", cc.ok, cc.message());
    std::string refusal;
    try {
        hessian_vector(softmax_xent_first_order, in, dir);
    } catch (const ad::Error& e) {
        refusal = e.what();
    }
    report("(a) create_graph raises ad::Error naming the node",
           refusal.find("softmax_xent_first_order") != std::string::npos, "\"" + refusal + "\"");

    std::printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
