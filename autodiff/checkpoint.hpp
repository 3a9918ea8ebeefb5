// What this file teaches: trading compute for memory. A checkpointed block is ONE tape node:
// its forward keeps only its inputs and output, and its backward re-runs the block on a
// scratch tape to get the vector-Jacobian product. An unrolled training run built from such
// nodes stores one state per step instead of every intermediate of every step.
#pragma once

#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "core/grad.hpp"
#include "core/tape.hpp"

namespace occam::ad {

/// A block to checkpoint: a function of its input Vars, written with ordinary ops (it may
/// itself call ad::grad with create_graph, as one step of gradient descent does).
using CheckpointFn = std::function<Var(const std::vector<Var>&)>;

namespace detail {
/// Fresh leaves on the current (scratch) tape holding the values of the given inputs; an input
/// that needs a gradient becomes a parameter (so the block may differentiate with respect to
/// it), the others constants.
template <class Inputs>
std::vector<Var> scratch_leaves(const Inputs& inputs) {
    std::vector<Var> in;
    in.reserve(inputs.size());
    for (const auto& x : inputs) {
        const Node* n = &*x;
        in.push_back(n->requires_grad ? param(n->value()) : constant(n->value()));
    }
    return in;
}
}  // namespace detail

/// y = f(inputs), recorded as one node. Memory: the output only; f's intermediates are dropped
/// as soon as it returns and rebuilt in the backward pass. Cost: f runs twice.
///
/// Backward (the math): the node's input gradients are the vector-Jacobian products
///   grads[k] = (d f / d input_k)^T g,
/// which is exactly ad::grad(f(leaves), leaves, seed = g) on the re-run. The result is a plain
/// value: a checkpointed block is Derivatives::first_order, so ad::grad with create_graph
/// through it raises ad::Error (differentiate the un-checkpointed code instead).
inline Var checkpoint(CheckpointFn f, const std::vector<Var>& inputs) {
    if (inputs.empty()) throw Error("ad::checkpoint: needs at least one input");
    // Run f once on a scratch tape to learn the output shape and value. Inputs that need a
    // gradient become parameters there, so that f may call ad::grad on them.
    Eigen::MatrixXd out_value;
    {
        TapeScope scratch;
        GradModeGuard on(true);
        std::vector<const Node*> in;
        for (const Var& x : inputs) in.push_back(x.node());
        out_value = f(detail::scratch_leaves(std::span<const Node* const>(in))).value();
    }
    Node* n = tape().push(
        "checkpoint", int(out_value.rows()), int(out_value.cols()),
        [fn = std::move(f)](const Node& self, const Var& g, Var* grads) {
            const std::span<Node* const> in(self.inputs, self.n_inputs);
            // The result nodes are made before the scratch scope, so they outlive it.
            for (std::size_t k = 0; k < in.size(); ++k)
                if (in[k]->requires_grad) grads[k] = zeros(in[k]->rows, in[k]->cols);
            TapeScope scratch;
            GradModeGuard on(true);
            std::vector<Var> leaves = detail::scratch_leaves(in);
            Var y = fn(leaves);
            std::vector<Var> wrt;
            for (std::size_t k = 0; k < in.size(); ++k)
                if (in[k]->requires_grad) wrt.push_back(leaves[k]);
            GradModeGuard off(false);
            std::vector<Var> vjp = grad(y, wrt, {.allow_unused = true}, constant(g.value()));
            std::size_t j = 0;
            for (std::size_t k = 0; k < in.size(); ++k)
                if (in[k]->requires_grad) grads[k].node()->mutable_value() = vjp[j++].value();
        },
        inputs, Derivatives::first_order);
    n->mutable_value() = out_value;
    return Var(n);
}
inline Var checkpoint(CheckpointFn f, std::initializer_list<Var> inputs) {
    return checkpoint(std::move(f), std::vector<Var>(inputs));
}

}  // namespace occam::ad
