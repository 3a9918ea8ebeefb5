// What this file teaches: the tape. Every operation appends one Node (a whole matrix, its
// inputs and its backward formula) to a per-thread list in creation order; creation order is
// already a topological order, so the backward pass is a plain reverse loop, never recursion.
#pragma once

#include <Eigen/Dense>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "arena.hpp"

namespace occam::ad {

/// Every error the engine raises; the message names the op and the shapes involved.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};
/// Shapes that do not fit the op (matmul inner sizes, broadcasting, reshape sizes...).
class ShapeError : public Error {
public:
    using Error::Error;
};
/// A linear system that is singular or holds non-finite numbers.
class SolveError : public Error {
public:
    using Error::Error;
};

struct Node;
class Var;

/// A backward formula: given the gradient `g` flowing into `self`, write the gradient for each
/// input k that needs one into grads[k] (self.n_inputs slots, all undefined on entry; leave a
/// slot undefined for "no gradient"). Written with differentiable ops on Var, so with
/// create_graph the formula itself is recorded and can be differentiated again.
using BackwardFn = void (*)(const Node& self, const Var& g, Var* grads);

/// What a node's backward formula supports. The engine never guesses: a backward that computes
/// raw numbers by hand says so, and ad::grad with create_graph through it is an error instead
/// of a silently wrong (usually zero) second derivative.
enum class Derivatives : std::uint8_t {
    /// The backward is written with differentiable ops (or switches to them when
    /// ad::grad_enabled() is true, as a fast hand-written path's fallback): create_graph
    /// records it, so gradients of gradients are right.
    any_order,
    /// The backward writes numbers by hand: first-order gradients only. ad::grad with
    /// create_graph through the node raises ad::Error naming the op.
    first_order,
};

/// One tape entry: a whole column-major matrix value plus what the backward pass needs.
/// Nodes live in the arena and are trivially destructible; an op's state with a destructor
/// (a factorisation, a std::function) is owned by the tape's `owned` list, released with the scope.
struct Node {
    double* data = nullptr;
    int rows = 0;
    int cols = 0;
    std::uint32_t id = 0;          ///< position on the tape
    std::uint32_t n_inputs = 0;    ///< inputs recorded (0 unless the node needs a gradient)
    std::uint64_t serial = 0;      ///< unique over the thread's lifetime: tells a reused slot from the original
    bool requires_grad = false;
    Derivatives derivatives = Derivatives::any_order;
    const char* op = "";           ///< op name, for messages and ad::print_tape
    BackwardFn backward = nullptr; ///< null for leaves and for nodes that need no gradient
    Node** inputs = nullptr;       ///< n_inputs entries, stored right after the node in the arena
    /// The op's state (its backward closure's captures), stored by Tape::push and read back
    /// only by the function that push generated for that closure type: ops never cast it.
    const void* closure = nullptr;

    Eigen::Map<const Eigen::MatrixXd> value() const { return {data, rows, cols}; }
    Eigen::Map<Eigen::MatrixXd> mutable_value() { return {data, rows, cols}; }
    Eigen::Index size() const { return Eigen::Index(rows) * cols; }
    /// Whether input k takes a gradient (the backward may skip the work for the others).
    bool needs(int k) const;
    /// Input k as a Var (for a backward formula written with ops).
    Var input(int k) const;
    /// This node as a Var: the op's output y, for backward formulas such as d e^x = g e^x.
    Var output() const;
};

/// A handle to a tape node. Cheap to copy (one pointer). A Var is valid until the TapeScope
/// that was open when it was created closes; using it afterwards is undefined, as with a
/// dangling reference.
class Var {
public:
    Var() = default;
    explicit Var(Node* n) : node_(n), serial_(n ? n->serial : 0) {}

    Node* node() const { return node_; }
    /// The serial number of the node this handle was made for (to detect use after a scope).
    std::uint64_t serial() const { return serial_; }
    bool defined() const { return node_ != nullptr; }
    int rows() const { return node_->rows; }
    int cols() const { return node_->cols; }
    Eigen::Index size() const { return node_->size(); }
    bool requires_grad() const { return node_->requires_grad; }
    Eigen::Map<const Eigen::MatrixXd> value() const { return node_->value(); }
    /// The value of a 1x1 Var.
    double item() const {
        if (node_->rows != 1 || node_->cols != 1)
            throw ShapeError("ad::Var::item: value is " + std::to_string(rows()) + "x" + std::to_string(cols()) +
                             ", not 1x1");
        return node_->data[0];
    }

private:
    Node* node_ = nullptr;
    std::uint64_t serial_ = 0;
};

inline bool Node::needs(int k) const { return k < int(n_inputs) && inputs[k]->requires_grad; }
inline Var Node::input(int k) const { return Var(inputs[k]); }
inline Var Node::output() const { return Var(const_cast<Node*>(this)); }

/// Anything with a destructor that a node needs to keep alive (e.g. a factorisation).
struct Owned {
    virtual ~Owned() = default;
};

/// The per-thread tape: the node list, the arena that holds node storage, and owned objects.
/// One tape per thread and no locks: a Var must only be used on the thread that made it.
class Tape {
public:
    std::vector<Node*> nodes;
    Arena arena;
    std::vector<std::unique_ptr<Owned>> owned;
    bool grad_enabled = true;
    std::uint64_t next_serial = 1;

    std::size_t size() const { return nodes.size(); }

    /// Values start on a cache line (64 bytes: at least as Eigen aligns its own matrices, 32
    /// with AVX and 64 with AVX-512). Eigen's vectorised sums peel scalar steps up to the first
    /// aligned address, so a value's alignment decides its summation order, and it must not
    /// depend on where the arena's block happened to start; and a kernel's block of eight at
    /// 32 mod 64 straddles two lines (the convolutions' weight gradient ran 1.7x slower there).
    static constexpr std::size_t kValueAlign = EIGEN_MAX_ALIGN_BYTES > 64 ? EIGEN_MAX_ALIGN_BYTES : 64;

    /// Appends a node of the given shape: the one way every op, built-in or custom, gets onto
    /// the tape. Storage comes from the arena unless `alias` is given (reshape and detach share
    /// their input's storage). `inputs` is any list of Node* or Var, of any length. The inputs
    /// and the backward formula are recorded only when gradients are on and at least one input
    /// needs a gradient.
    ///
    /// `backward` is a BackwardFn, a lambda (capturing the op's state: an index list, a scalar,
    /// a pointer to a factorisation; the captures ARE the node's typed state), or nullptr for a
    /// node that carries no gradient. A capturing lambda is stored beside the node, in the arena
    /// when it is trivially destructible, else on the `owned` list, and called through a
    /// function generated for its type, so no op ever casts untyped state.
    template <class Backward, class Inputs>
    Node* push(const char* op, int rows, int cols, const Backward& backward, const Inputs& inputs,
               Derivatives derivatives = Derivatives::any_order, double* alias = nullptr) {
        bool needs = false;
        std::size_t n_in = 0;
        if constexpr (!std::is_same_v<Backward, std::nullptr_t>) {
            for (const auto& in : inputs) {
                const Node* p = node_of(in);
                needs = needs || (p && p->requires_grad);
                ++n_in;
            }
            needs = needs && grad_enabled;
        }
        // One allocation: the node, then its input list when it records one.
        const std::size_t n_slots = needs ? n_in : 0;
        void* mem = arena.allocate(sizeof(Node) + n_slots * sizeof(Node*), alignof(Node));
        Node* n = new (mem) Node();
        n->op = op;
        n->rows = rows;
        n->cols = cols;
        n->id = static_cast<std::uint32_t>(nodes.size());
        n->serial = next_serial++;
        n->derivatives = derivatives;
        n->data = alias ? alias
                        : static_cast<double*>(arena.allocate(sizeof(double) * (std::size_t(rows) * cols + 1), kValueAlign));
        if (needs) {
            n->requires_grad = true;
            n->inputs = reinterpret_cast<Node**>(n + 1);
            for (const auto& in : inputs) n->inputs[n->n_inputs++] = node_of(in);
            if constexpr (std::is_convertible_v<Backward, BackwardFn>) {
                n->backward = backward;  // a function, or a lambda that captures nothing
            } else {
                n->closure = store(backward);
                n->backward = [](const Node& self, const Var& g, Var* grads) {
                    (*static_cast<const Backward*>(self.closure))(self, g, grads);
                };
            }
        }
        nodes.push_back(n);
        return n;
    }
    template <class Backward>
    Node* push(const char* op, int rows, int cols, const Backward& backward, std::initializer_list<Node*> inputs,
               Derivatives derivatives = Derivatives::any_order, double* alias = nullptr) {
        return push<Backward, std::initializer_list<Node*>>(op, rows, cols, backward, inputs, derivatives, alias);
    }

    /// A leaf: a parameter (requires_grad) or a constant.
    Node* leaf(const char* op, int rows, int cols, bool requires_grad) {
        Node* n = push(op, rows, cols, nullptr, std::initializer_list<Node*>{});
        n->requires_grad = requires_grad;
        return n;
    }

    template <class T, class... Args>
    T* own(Args&&... args) {
        auto p = std::make_unique<T>(std::forward<Args>(args)...);
        T* raw = p.get();
        owned.push_back(std::move(p));
        return raw;
    }

  private:
    template <class F>
    struct OwnedClosure : Owned {
        explicit OwnedClosure(const F& f) : fn(f) {}
        F fn;
    };
    /// A copy of a backward closure that lives as long as its node.
    template <class F>
    const F* store(const F& f) {
        if constexpr (std::is_trivially_destructible_v<F>)
            return new (arena.allocate(sizeof(F), alignof(F))) F(f);
        else
            return &own<OwnedClosure<F>>(f)->fn;
    }
    static Node* node_of(Node* n) { return n; }
    static Node* node_of(const Var& v);

  public:
    /// Drops every node, owned object and arena byte created after the given marks.
    void rewind(std::size_t n_nodes, const Arena::Mark& mark, std::size_t n_owned) {
        nodes.resize(n_nodes);
        owned.resize(n_owned);
        arena.rewind(mark);
    }
};

/// This thread's tape.
inline Tape& tape() {
    thread_local Tape t;
    return t;
}

inline Node* Tape::node_of(const Var& v) { return v.node(); }

/// Defines a node from outside the engine, the way every op in autodiff/ops is defined:
/// a name, the output's shape, any number of inputs, and a backward formula whose captures
/// are the op's state (the tape keeps a copy as long as the node lives). Write the value into
/// the returned node's mutable_value(), then hand out Var(node).
///
/// Derivatives::any_order (the default) promises that the backward is written with
/// differentiable ops whenever ad::grad_enabled() is true, so create_graph gives the right
/// second derivative; a backward that fills gradients by hand passes Derivatives::first_order,
/// and ad::grad with create_graph through the node raises ad::Error naming it.
/// examples/04_custom_node.cpp and docs/autodiff.md walk through one.
template <class Backward>
Node* custom_node(const char* op, int rows, int cols, std::span<const Var> inputs, const Backward& backward,
                  Derivatives derivatives = Derivatives::any_order) {
    return tape().push(op, rows, cols, backward, inputs, derivatives);
}
template <class Backward>
Node* custom_node(const char* op, int rows, int cols, std::initializer_list<Var> inputs, const Backward& backward,
                  Derivatives derivatives = Derivatives::any_order) {
    return tape().push(op, rows, cols, backward, inputs, derivatives);
}

/// RAII: everything put on the tape inside the scope is released when it closes
/// (modelled on Stan's nested_rev_autodiff). Scopes nest; Vars made inside die with it.
class TapeScope {
public:
    TapeScope() : tape_(tape()), n_nodes_(tape_.size()), mark_(tape_.arena.mark()), n_owned_(tape_.owned.size()) {}
    ~TapeScope() { tape_.rewind(n_nodes_, mark_, n_owned_); }
    TapeScope(const TapeScope&) = delete;
    TapeScope& operator=(const TapeScope&) = delete;

private:
    Tape& tape_;
    std::size_t n_nodes_;
    Arena::Mark mark_;
    std::size_t n_owned_;
};

/// RAII: sets gradient recording on or off, restoring the previous state on exit.
class GradModeGuard {
public:
    explicit GradModeGuard(bool enabled) : saved_(tape().grad_enabled) { tape().grad_enabled = enabled; }
    ~GradModeGuard() { tape().grad_enabled = saved_; }
    GradModeGuard(const GradModeGuard&) = delete;
    GradModeGuard& operator=(const GradModeGuard&) = delete;

private:
    bool saved_;
};

/// RAII: ops inside record no backward formulas (values only), like torch.no_grad().
struct NoGradGuard : GradModeGuard {
    NoGradGuard() : GradModeGuard(false) {}
};

inline bool grad_enabled() { return tape().grad_enabled; }

// ---------------------------------------------------------------------------------------------
// Leaves
// ---------------------------------------------------------------------------------------------

/// A trainable leaf holding a copy of M.
template <class Derived>
Var param(const Eigen::MatrixBase<Derived>& m) {
    Node* n = tape().leaf("param", int(m.rows()), int(m.cols()), true);
    n->mutable_value() = m;
    return Var(n);
}
/// A constant leaf holding a copy of M (no gradient flows into it).
template <class Derived>
Var constant(const Eigen::MatrixBase<Derived>& m) {
    Node* n = tape().leaf("constant", int(m.rows()), int(m.cols()), false);
    n->mutable_value() = m;
    return Var(n);
}
/// A 1x1 constant.
inline Var constant(double v) {
    Node* n = tape().leaf("constant", 1, 1, false);
    n->data[0] = v;
    return Var(n);
}
/// A rows x cols constant filled with v.
inline Var full(int rows, int cols, double v) {
    Node* n = tape().leaf("constant", rows, cols, false);
    n->mutable_value().setConstant(v);
    return Var(n);
}
inline Var zeros(int rows, int cols) { return full(rows, cols, 0.0); }
inline Var ones(int rows, int cols) { return full(rows, cols, 1.0); }

/// The value of x (a view into tape storage, valid while x is).
inline Eigen::Map<const Eigen::MatrixXd> value(const Var& x) { return x.value(); }

/// Overwrites a leaf's value in place (for optimisers that keep parameters on the tape below a
/// scope). Only leaves may be changed: an op's value is a function of its inputs.
template <class Derived>
void set_value(const Var& leaf, const Eigen::MatrixBase<Derived>& m) {
    Node* n = leaf.node();
    if (n->backward || n->n_inputs)
        throw Error(std::string("ad::set_value: only leaves can be overwritten, not the result of ") + n->op);
    if (m.rows() != n->rows || m.cols() != n->cols)
        throw ShapeError("ad::set_value: value is " + std::to_string(n->rows) + "x" + std::to_string(n->cols) +
                         ", new value is " + std::to_string(m.rows()) + "x" + std::to_string(m.cols()));
    n->mutable_value() = m;
}

/// Whether every entry of v's value is finite. One pass that vectorises (x * 0 is 0 for a
/// finite x and NaN for inf or NaN; eight independent sums), where Eigen's allFinite() runs
/// a scalar loop: the meta-gradient check on 23 k weights took 3% of a fig2c meta-step.
inline bool all_finite(const Var& v) {
    const double* x = v.node()->data;
    const Eigen::Index n = v.size();
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    Eigen::Index i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) acc[l] += x[i + l] * 0.0;
    for (; i < n; ++i) acc[0] += x[i] * 0.0;
    double all = 0.0;
    for (double a : acc) all += a;
    return all == 0.0;
}

/// Copies the values of a list of Vars (e.g. the result of grad) into plain matrices.
inline std::vector<Eigen::MatrixXd> values(const std::vector<Var>& xs) {
    std::vector<Eigen::MatrixXd> out;
    out.reserve(xs.size());
    for (const Var& x : xs) out.emplace_back(x.value());
    return out;
}

/// Parameters for a list of matrices, in order.
inline std::vector<Var> params(const std::vector<Eigen::MatrixXd>& ms) {
    std::vector<Var> out;
    out.reserve(ms.size());
    for (const auto& m : ms) out.push_back(param(m));
    return out;
}

/// "rows x cols" as the engine's messages write a shape.
inline std::string shape_str(long rows, long cols) { return std::to_string(rows) + "x" + std::to_string(cols); }
inline std::string shape_str(const Node* n) { return shape_str(n->rows, n->cols); }
inline std::string shape_str(const Var& v) { return shape_str(v.node()); }

}  // namespace occam::ad
