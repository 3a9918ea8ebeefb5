// What this file teaches: what the tape holds. One line per node in creation order (which is a
// topological order): its id, op, shape, the inputs it recorded and whether a gradient flows
// through it. Print before and after ad::grad with create_graph to see the backward formulas
// land on the tape as ordinary nodes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include "grad.hpp"
#include "tape.hpp"

namespace occam::ad {
namespace detail {
/// The columns of one node's line.
struct TapeLine {
    std::string id, op, shape, inputs, flags;
};

inline TapeLine tape_line(const Node& n) {
    TapeLine l{"#" + std::to_string(n.id), n.op, shape_str(&n), "", ""};
    for (std::uint32_t k = 0; k < n.n_inputs; ++k) l.inputs += (k ? " #" : "<- #") + std::to_string(n.inputs[k]->id);
    if (n.requires_grad) l.flags = "grad";
    if (n.backward && n.derivatives == Derivatives::first_order) l.flags += " first-order";
    return l;
}
}  // namespace detail

/// Prints nodes [first, last) of this thread's tape (clamped to its size), one line each:
///
///     #3  mul  3x1  <- #1 #2  grad
///
/// id, op, shape (rows x cols), the ids of the inputs it recorded, then flags:
///   grad         a gradient flows through it (requires_grad): a parameter, or an op on one;
///   first-order  its backward is hand-written (Derivatives::first_order): ad::grad with
///                create_graph through it raises ad::Error.
/// A node that needs no gradient records no inputs (a constant, a value computed under
/// NoGradGuard or from constants only), so its line lists none. Columns are aligned over the
/// lines printed.
inline void print_tape(std::ostream& os, std::size_t first, std::size_t last) {
    const Tape& t = tape();
    last = std::min(last, t.size());
    if (first >= last) return;
    std::vector<detail::TapeLine> lines;
    lines.reserve(last - first);
    std::size_t w_id = 0, w_op = 0, w_shape = 0, w_inputs = 0;
    for (std::size_t i = first; i < last; ++i) {
        lines.push_back(detail::tape_line(*t.nodes[i]));
        const detail::TapeLine& l = lines.back();
        w_id = std::max(w_id, l.id.size());
        w_op = std::max(w_op, l.op.size());
        w_shape = std::max(w_shape, l.shape.size());
        w_inputs = std::max(w_inputs, l.inputs.size());
    }
    for (const detail::TapeLine& l : lines) {
        std::string s;
        auto column = [&s](const std::string& text, std::size_t width) {
            s += text;
            s.append(width - text.size() + 2, ' ');
        };
        column(l.id, w_id);
        column(l.op, w_op);
        column(l.shape, w_shape);
        if (w_inputs) column(l.inputs, w_inputs);
        s += l.flags;
        s.erase(s.find_last_not_of(' ') + 1);
        os << s << '\n';
    }
}

/// Prints this thread's whole tape.
inline void print_tape(std::ostream& os) { print_tape(os, 0, tape().size()); }

/// Prints the tape from `from` (included) to its end: e.g. pass the first node a computation
/// made, to leave out what was on the tape before it.
inline void print_tape(std::ostream& os, const Var& from) {
    if (!detail::alive(from))
        throw Error("ad::print_tape: the Var is not on the tape (was its TapeScope closed?)");
    print_tape(os, from.node()->id, tape().size());
}

}  // namespace occam::ad
