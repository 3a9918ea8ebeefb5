// What this file teaches: reverse mode is one backward loop over the tape. Gradients start at
// the output and each node hands its gradient to its inputs through its backward formula;
// fan-out is handled by summing. With create_graph the formulas are recorded too, so the
// returned gradients are ordinary Vars that can be differentiated again.
#pragma once

#include <algorithm>
#include <deque>
#include <vector>

#include "tape.hpp"

namespace occam::ad {

Var add(const Var& a, const Var& b);  // defined in ops/elementwise.hpp

struct GradOptions {
    /// Record the backward pass on the tape so the gradients can be differentiated again.
    bool create_graph = false;
    /// Give zeros for inputs that do not influence the output instead of raising an error.
    bool allow_unused = false;
};

namespace detail {
/// Reusable slot buffers, one per nesting depth, so a backward pass allocates nothing once warm.
/// A deque, so a nested call adding a level never moves an outer call's buffer.
struct GradSlots {
    std::deque<std::vector<Node*>> pool;
    std::deque<std::vector<Var>> in_grads;  ///< one node's input gradients, per depth
    int depth = 0;
};
inline GradSlots& grad_slots() {
    thread_local GradSlots s;
    return s;
}
inline bool alive(const Var& v) {
    const Tape& t = tape();
    return v.defined() && v.node()->id < t.size() && t.nodes[v.node()->id] == v.node() &&
           v.node()->serial == v.serial();
}
}  // namespace detail

/// d(y)/d(xs). y must be 1x1 unless `seed` (the gradient flowing into y, y's shape) is given.
/// Returns one Var per x with x's shape.
inline std::vector<Var> grad(const Var& y, const std::vector<Var>& xs, GradOptions opts = {}, const Var& seed = Var()) {
    Tape& t = tape();
    if (!detail::alive(y)) throw Error("ad::grad: the output Var is not on the tape (was its TapeScope closed?)");
    for (const Var& x : xs)
        if (!detail::alive(x)) throw Error("ad::grad: an input Var is not on the tape (was its TapeScope closed?)");
    if (seed.defined()) {
        if (seed.rows() != y.rows() || seed.cols() != y.cols())
            throw ShapeError("ad::grad: seed is " + shape_str(seed) + " but the output is " + shape_str(y));
    } else if (y.rows() != 1 || y.cols() != 1) {
        throw ShapeError("ad::grad: output is " + shape_str(y) +
                         "; reduce it to 1x1 (e.g. ad::sum) or pass a seed of the same shape");
    }

    const std::uint32_t hi = y.node()->id;
    std::uint32_t lo = hi;
    for (const Var& x : xs)
        if (x.requires_grad()) lo = std::min(lo, x.node()->id);

    auto& slots_pool = detail::grad_slots();
    if (int(slots_pool.pool.size()) <= slots_pool.depth) {
        slots_pool.pool.emplace_back();
        slots_pool.in_grads.emplace_back();
    }
    std::vector<Node*>& slot = slots_pool.pool[slots_pool.depth];
    std::vector<Var>& in_grads = slots_pool.in_grads[slots_pool.depth];
    struct DepthGuard {
        int& d;
        ~DepthGuard() { --d; }
    } depth_guard{++slots_pool.depth};
    slot.assign(hi - lo + 1, nullptr);

    GradModeGuard mode(opts.create_graph);
    if (y.requires_grad()) {
        slot[hi - lo] = seed.defined() ? seed.node() : constant(1.0).node();
        // The reverse loop: creation order is a topological order, so walking it backwards
        // visits every node after all the nodes that use it.
        for (std::uint32_t i = hi + 1; i-- > lo;) {
            Node* n = t.nodes[i];
            Node* g = slot[i - lo];
            if (!g || !n->backward) continue;
            if (opts.create_graph && n->derivatives == Derivatives::first_order)
                throw Error(std::string("ad::grad: create_graph through ") + n->op +
                            ", whose backward is hand-written and gives first-order gradients only");
            in_grads.assign(n->n_inputs, Var());
            n->backward(*n, Var(g), in_grads.data());
            for (std::uint32_t k = 0; k < n->n_inputs; ++k) {
                Node* p = n->inputs[k];
                if (!in_grads[k].defined() || !p->requires_grad || p->id < lo) continue;
                Node* gk = in_grads[k].node();
                if (gk->rows != p->rows || gk->cols != p->cols)
                    throw ShapeError(std::string("ad::grad: backward of ") + n->op + " gave a " + shape_str(gk) +
                                     " gradient for a " + shape_str(p) + " input");
                Node*& s = slot[p->id - lo];
                s = s ? add(Var(s), in_grads[k]).node() : gk;  // fan-out: gradients add up
            }
        }
    }

    std::vector<Var> out;
    out.reserve(xs.size());
    for (std::size_t k = 0; k < xs.size(); ++k) {
        const Var& x = xs[k];
        Node* g = (x.requires_grad() && y.requires_grad()) ? slot[x.node()->id - lo] : nullptr;
        if (!g) {
            if (!opts.allow_unused)
                throw Error("ad::grad: input " + std::to_string(k) + " (" + shape_str(x) +
                            ") does not influence the output" +
                            (x.requires_grad() ? "" : " (it does not require a gradient)") +
                            "; pass {.allow_unused = true} to get zeros");
            out.push_back(zeros(x.rows(), x.cols()));
        } else {
            out.push_back(Var(g));
        }
    }
    return out;
}

}  // namespace occam::ad
