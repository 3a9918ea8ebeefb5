// What this file teaches: elementwise ops with broadcasting, and why broadcasting has a price
// in the backward pass: an input that was repeated must receive the *sum* of the gradients of
// its copies (sum_to), which is the adjoint of the repetition (broadcast_to).
#pragma once

#include <string>

#include "declarations.hpp"

namespace occam::ad {
namespace detail {

using ArrayMap = Eigen::Map<Eigen::ArrayXXd>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXXd>;

inline ConstArrayMap arr(const Node* n) { return {n->data, n->rows, n->cols}; }
inline ArrayMap arr(Node* n) { return {n->data, n->rows, n->cols}; }

/// The broadcast result shape of a and b: each dimension must be equal or 1 on one side.
inline void broadcast_shape(const char* op, const Node* a, const Node* b, int& rows, int& cols) {
    auto dim = [&](int x, int y, int& out) {
        if (x == y || y == 1) out = x;
        else if (x == 1) out = y;
        else
            throw ShapeError(std::string("ad::") + op + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                             " do not broadcast");
    };
    dim(a->rows, b->rows, rows);
    dim(a->cols, b->cols, cols);
}

/// Element (i, j) of a broadcast operand: a dimension of size 1 repeats.
struct Strided {
    const double* data;
    int rstride, cstride;
    Strided(const Node* n) : data(n->data), rstride(n->rows == 1 ? 0 : 1), cstride(n->cols == 1 ? 0 : n->rows) {}
    double operator()(int i, int j) const { return data[i * rstride + j * cstride]; }
};

/// out = f(a, b) with broadcasting. `f` is generic: it is called on whole Eigen arrays in the
/// common same-shape and scalar cases (vectorised) and on doubles otherwise.
template <class F>
void broadcast_apply(const Node* a, const Node* b, Node* out, F f) {
    if (a->rows == out->rows && a->cols == out->cols && b->rows == out->rows && b->cols == out->cols) {
        arr(out) = f(arr(a), arr(b));
    } else if (b->rows == 1 && b->cols == 1 && a->rows == out->rows && a->cols == out->cols) {
        arr(out) = f(arr(a), b->data[0]);
    } else if (a->rows == 1 && a->cols == 1 && b->rows == out->rows && b->cols == out->cols) {
        arr(out) = f(a->data[0], arr(b));
    } else {
        Strided sa(a), sb(b);
        double* o = out->data;
        for (int j = 0; j < out->cols; ++j)
            for (int i = 0; i < out->rows; ++i) *o++ = f(sa(i, j), sb(i, j));
    }
}

template <class F>
Var binary(const char* op, const Var& a, const Var& b, BackwardFn backward, F f) {
    int r, c;
    broadcast_shape(op, a.node(), b.node(), r, c);
    Node* n = tape().push(op, r, c, backward, {a.node(), b.node()});
    broadcast_apply(a.node(), b.node(), n, f);
    return Var(n);
}

/// Reduces a gradient to the shape of input k (undoing any broadcast of that input).
inline Var to_input_shape(const Node& self, int k, const Var& g) {
    return sum_to(g, self.inputs[k]->rows, self.inputs[k]->cols);
}

/// A constant 0/1 mask from a comparison, broadcast like a binary op.
template <class F>
Var mask(const char* op, const Var& a, const Var& b, F cmp) {
    int r, c;
    broadcast_shape(op, a.node(), b.node(), r, c);
    Node* n = tape().push(op, r, c, nullptr, {});
    Strided sa(a.node()), sb(b.node());
    double* o = n->data;
    for (int j = 0; j < c; ++j)
        for (int i = 0; i < r; ++i) *o++ = cmp(sa(i, j), sb(i, j)) ? 1.0 : 0.0;
    return Var(n);
}

}  // namespace detail

// d(a+b)/da = 1, d(a+b)/db = 1; each summed back to its input's shape.
inline Var add(const Var& a, const Var& b) {
    return detail::binary("add", a, b,
                          [](const Node& self, const Var& g, Var* out) {
                              if (self.needs(0)) out[0] = detail::to_input_shape(self, 0, g);
                              if (self.needs(1)) out[1] = detail::to_input_shape(self, 1, g);
                          },
                          [](const auto& x, const auto& y) { return x + y; });
}

// d(a-b)/da = 1, d(a-b)/db = -1.
inline Var sub(const Var& a, const Var& b) {
    return detail::binary("sub", a, b,
                          [](const Node& self, const Var& g, Var* out) {
                              if (self.needs(0)) out[0] = detail::to_input_shape(self, 0, g);
                              if (self.needs(1)) out[1] = detail::to_input_shape(self, 1, neg(g));
                          },
                          [](const auto& x, const auto& y) { return x - y; });
}

// d(ab)/da = b, d(ab)/db = a (the product rule, each input gets the other one).
inline Var mul(const Var& a, const Var& b) {
    return detail::binary("mul", a, b,
                          [](const Node& self, const Var& g, Var* out) {
                              Var x = self.input(0), y = self.input(1);
                              if (self.needs(0)) out[0] = detail::to_input_shape(self, 0, mul(g, y));
                              if (self.needs(1)) out[1] = detail::to_input_shape(self, 1, mul(g, x));
                          },
                          [](const auto& x, const auto& y) { return x * y; });
}

// d(a/b)/da = 1/b, d(a/b)/db = -a/b^2.
inline Var div(const Var& a, const Var& b) {
    return detail::binary("div", a, b,
                          [](const Node& self, const Var& g, Var* out) {
                              Var x = self.input(0), y = self.input(1);
                              Var g_over_b = div(g, y);
                              if (self.needs(0)) out[0] = detail::to_input_shape(self, 0, g_over_b);
                              if (self.needs(1))
                                  out[1] = detail::to_input_shape(self, 1, neg(mul(g_over_b, div(x, y))));
                          },
                          [](const auto& x, const auto& y) { return x / y; });
}

// d(x+s)/dx = 1.
inline Var add_scalar(const Var& x, double s) {
    Node* n = tape().push("add_scalar", x.rows(), x.cols(),
                          [](const Node&, const Var& g, Var* out) { out[0] = g; }, {x.node()});
    detail::arr(n) = detail::arr(x.node()) + s;
    return Var(n);
}

// d(s x)/dx = s.
inline Var mul_scalar(const Var& x, double s) {
    Node* n = tape().push("mul_scalar", x.rows(), x.cols(),
                          [s](const Node&, const Var& g, Var* out) { out[0] = mul_scalar(g, s); }, {x.node()});
    detail::arr(n) = detail::arr(x.node()) * s;
    return Var(n);
}

// d(-x)/dx = -1.
inline Var neg(const Var& x) {
    Node* n = tape().push("neg", x.rows(), x.cols(), [](const Node&, const Var& g, Var* out) { out[0] = neg(g); },
                          {x.node()});
    detail::arr(n) = -detail::arr(x.node());
    return Var(n);
}

// ---- masks: comparisons are piecewise constant, so they carry no gradient at all.
inline Var gt(const Var& a, const Var& b) { return detail::mask("gt", a, b, [](double x, double y) { return x > y; }); }
inline Var ge(const Var& a, const Var& b) { return detail::mask("ge", a, b, [](double x, double y) { return x >= y; }); }
inline Var lt(const Var& a, const Var& b) { return detail::mask("lt", a, b, [](double x, double y) { return x < y; }); }
inline Var le(const Var& a, const Var& b) { return detail::mask("le", a, b, [](double x, double y) { return x <= y; }); }
inline Var gt(const Var& a, double b) { return gt(a, constant(b)); }
inline Var lt(const Var& a, double b) { return lt(a, constant(b)); }

inline Var sign(const Var& x) {
    Node* n = tape().push("sign", x.rows(), x.cols(), nullptr, {});
    detail::arr(n) = detail::arr(x.node()).sign();
    return Var(n);
}

// where(m, a, b): the gradient goes to a where m is 1 and to b where it is 0. The mask is the
// node's third input (a constant: it takes no gradient).
inline Var where(const Var& mask, const Var& a, const Var& b) {
    int r1, c1, r, c;
    detail::broadcast_shape("where", a.node(), b.node(), r1, c1);
    Node tmp;
    tmp.rows = r1;
    tmp.cols = c1;
    detail::broadcast_shape("where", mask.node(), &tmp, r, c);
    Node* n = tape().push(
        "where", r, c,
        [](const Node& self, const Var& g, Var* out) {
            Var m = self.input(2);
            Var zero = constant(0.0);
            if (self.needs(0)) out[0] = detail::to_input_shape(self, 0, where(m, g, zero));
            if (self.needs(1)) out[1] = detail::to_input_shape(self, 1, where(m, zero, g));
        },
        {a.node(), b.node(), mask.node()});
    detail::Strided sm(mask.node()), sa(a.node()), sb(b.node());
    double* o = n->data;
    for (int j = 0; j < c; ++j)
        for (int i = 0; i < r; ++i) *o++ = sm(i, j) != 0.0 ? sa(i, j) : sb(i, j);
    return Var(n);
}

inline Var maximum(const Var& a, const Var& b) { return where(ge(a, b), a, b); }

// relu_grad(g, x) = g where x > 0, else 0: relu's backward as ONE node (instead of a mask, a
// constant and a product; unrolled ReLU training makes millions of them). It is linear in g
// with the same mask, so d/dg is relu_grad again; it is piecewise constant in x (no gradient).
inline Var relu_grad(const Var& g, const Var& x) {
    if (g.rows() != x.rows() || g.cols() != x.cols())
        throw ShapeError("ad::relu_grad: gradient is " + shape_str(g) + " but the input is " + shape_str(x));
    Node* n = tape().push(
        "relu_grad", g.rows(), g.cols(),
        [](const Node& self, const Var& gg, Var* out) {
            if (self.needs(0)) out[0] = relu_grad(gg, Var(self.inputs[1]));
        },
        {g.node(), x.node()});
    detail::arr(n) = (detail::arr(x.node()) > 0.0).select(detail::arr(g.node()), 0.0);
    return Var(n);
}
inline Var minimum(const Var& a, const Var& b) { return where(le(a, b), a, b); }

// stop-gradient: shares x's storage, records nothing.
inline Var detach(const Var& x) {
    return Var(tape().push("detach", x.rows(), x.cols(), nullptr, std::initializer_list<Node*>{},
                           Derivatives::any_order, x.node()->data));
}

}  // namespace occam::ad
