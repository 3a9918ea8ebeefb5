// What this file teaches: trading compute for memory. A checkpointed block is ONE tape node:
// its forward keeps only its inputs and output, and its backward re-runs the block on a
// scratch tape to get the vector-Jacobian product. An unrolled training run built from such
// nodes stores one state per step instead of every intermediate of every step.
#pragma once

#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/grad.hpp"
#include "core/tape.hpp"

namespace occam::ad {

/// A block to checkpoint: a function of up to three Vars, written with ordinary ops (it may
/// itself call ad::grad with create_graph, as one step of gradient descent does).
using CheckpointFn = std::function<Var(const std::vector<Var>&)>;

namespace detail {
struct CheckpointBlock : Owned {
    explicit CheckpointBlock(CheckpointFn f) : fn(std::move(f)) {}
    CheckpointFn fn;
};

/// Fresh leaves on the current (scratch) tape holding the values of the given inputs; an input
/// that needs a gradient becomes a parameter (so the block may differentiate with respect to
/// it), the others constants.
inline std::vector<Var> scratch_leaves(const Node* const* inputs, std::size_t n) {
    std::vector<Var> in;
    in.reserve(n);
    for (std::size_t k = 0; k < n; ++k)
        in.push_back(inputs[k]->requires_grad ? param(inputs[k]->value()) : constant(inputs[k]->value()));
    return in;
}
}  // namespace detail

/// y = f(inputs), recorded as one node. Memory: the output only; f's intermediates are dropped
/// as soon as it returns and rebuilt in the backward pass. Cost: f runs twice.
///
/// Backward (the math): the node's input gradients are the vector-Jacobian products
///   grads[k] = (d f / d input_k)^T g,
/// which is exactly ad::grad(f(leaves), leaves, seed = g) on the re-run. The result is a plain
/// value: a checkpointed block supports first-order gradients only, so calling ad::grad with
/// create_graph through it is an error (differentiate the un-checkpointed code instead).
inline Var checkpoint(CheckpointFn f, std::initializer_list<Var> inputs) {
    if (inputs.size() < 1 || inputs.size() > 3)
        throw Error("ad::checkpoint: takes 1 to 3 inputs, got " + std::to_string(inputs.size()));
    // Run f once on a scratch tape to learn the output shape and value. Inputs that need a
    // gradient become parameters there, so that f may call ad::grad on them.
    Tape& t = tape();
    Eigen::MatrixXd out_value;
    {
        TapeScope scratch;
        GradModeGuard on(true);
        const Node* in[3];
        std::size_t k = 0;
        for (const Var& x : inputs) in[k++] = x.node();
        out_value = f(detail::scratch_leaves(in, k)).value();
    }
    const BackwardFn backward = [](const Node& self, const Var& g, Var* grads) {
        if (grad_enabled())
            throw Error(
                "ad::checkpoint: a checkpointed block gives first-order gradients only; "
                "do not pass create_graph through it");
        const auto* block = static_cast<const detail::CheckpointBlock*>(self.ptr);
        // The result nodes are made before the scratch scope, so they outlive it.
        for (int k = 0; k < self.n_inputs; ++k)
            if (self.inputs[k]->requires_grad) grads[k] = zeros(self.inputs[k]->rows, self.inputs[k]->cols);
        TapeScope scratch;
        GradModeGuard on(true);
        std::vector<Var> leaves = detail::scratch_leaves(self.inputs, self.n_inputs);
        Var y = block->fn(leaves);
        std::vector<Var> wrt;
        for (int k = 0; k < self.n_inputs; ++k)
            if (self.inputs[k]->requires_grad) wrt.push_back(leaves[std::size_t(k)]);
        GradModeGuard off(false);
        std::vector<Var> vjp = grad(y, wrt, {.allow_unused = true}, constant(g.value()));
        std::size_t j = 0;
        for (int k = 0; k < self.n_inputs; ++k)
            if (self.inputs[k]->requires_grad) grads[k].node()->mutable_value() = vjp[j++].value();
    };
    const Var* x = inputs.begin();
    const int r = int(out_value.rows()), c = int(out_value.cols());
    Node* n = inputs.size() == 1   ? t.push("checkpoint", r, c, backward, {x[0].node()})
              : inputs.size() == 2 ? t.push("checkpoint", r, c, backward, {x[0].node(), x[1].node()})
                                   : t.push("checkpoint", r, c, backward, {x[0].node(), x[1].node(), x[2].node()});
    n->mutable_value() = out_value;
    n->ptr = t.own<detail::CheckpointBlock>(std::move(f));
    return Var(n);
}

}  // namespace occam::ad
