// What this file teaches: convolution's three products are one closed family. For y = conv(x, w)
// and <g, y> = <g, conv(x, w)>, linear in x and in w:
//   dx = conv2d_transpose(g, w)        (the adjoint of conv in x)
//   dw = conv2d_weight_grad(x, g)      (the adjoint of conv in w)
// and each of those is linear in both arguments, so their backward passes are members of the
// same family again; create_graph needs nothing else. Max pooling keeps the index of each
// window's maximum: its backward scatters the gradient there (put), and put's backward gathers
// it back (take).
//
// Images are rows: a batch of N images with C channels of H x W is an N x (C H W) matrix,
// column c H W + y W + x (kernels/conv.hpp). Weights are Cout x (C kh kw), bias 1 x Cout.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../../kernels/conv.hpp"
#include "../../kernels/conv_relu_pool.hpp"
#include "../../kernels/conv_relu_pool_pair.hpp"
#include "../core/grad.hpp"
#include "elementwise.hpp"
#include "matmul.hpp"
#include "reduce.hpp"
#include "shape.hpp"

namespace occam::ad {

using kernels::ConvGeometry;

Var conv2d(const Var& x, const Var& w, const ConvGeometry& g);
Var conv2d_transpose(const Var& gy, const Var& w, const ConvGeometry& g);
Var conv2d_weight_grad(const Var& x, const Var& gy, const ConvGeometry& g);

namespace detail {

inline std::string geometry_str(const ConvGeometry& g) {
    return std::to_string(g.channels) + " x " + std::to_string(g.height) + " x " + std::to_string(g.width);
}
/// The checks every member of the family shares: x has C H W columns, w has C kh kw columns,
/// gy has Cout P columns (Cout = w's rows, or gy's columns / P where w is what is computed).
inline void check_conv(const char* op, const ConvGeometry& g, const Var* x, const Var* w, const Var* gy) {
    const std::string who = std::string("ad::") + op + ": ";
    try {
        g.check(("ad::" + std::string(op)).c_str());
    } catch (const std::invalid_argument& e) {
        throw ShapeError(e.what());
    }
    if (x && x->cols() != g.in_size())
        throw ShapeError(who + "the images are " + shape_str(*x) + ", but " + geometry_str(g) + " images need " +
                         std::to_string(g.in_size()) + " columns");
    if (w && w->cols() != g.patch())
        throw ShapeError(who + "the weights are " + shape_str(*w) + ", but " + std::to_string(g.channels) +
                         " channels of " + std::to_string(g.kernel_h) + " x " + std::to_string(g.kernel_w) +
                         " kernels need " + std::to_string(g.patch()) + " columns");
    if (gy && gy->cols() % g.positions() != 0)
        throw ShapeError(who + "the output gradient is " + shape_str(*gy) + ", not a multiple of the " +
                         std::to_string(g.positions()) + " output positions per channel");
    if (gy && w && gy->cols() != w->rows() * g.positions())
        throw ShapeError(who + "the output gradient is " + shape_str(*gy) + ", but " + std::to_string(w->rows()) +
                         " output channels need " + std::to_string(w->rows() * g.positions()) + " columns");
    if (x && gy && x->rows() != gy->rows())
        throw ShapeError(who + "the images (" + shape_str(*x) + ") and the output gradient (" + shape_str(*gy) +
                         ") have different batch sizes");
}

}  // namespace detail

// y = conv(x, w). Backward (both linear maps' adjoints):
//   dx = conv2d_transpose(g, w),  dw = conv2d_weight_grad(x, g).
inline Var conv2d(const Var& x, const Var& w, const ConvGeometry& g) {
    detail::check_conv("conv2d", g, &x, &w, nullptr);
    Node* n = tape().push("conv2d", x.rows(), w.rows() * g.positions(),
                          [g](const Node& self, const Var& gy, Var* out) {
                              if (self.needs(0)) out[0] = conv2d_transpose(gy, self.input(1), g);
                              if (self.needs(1)) out[1] = conv2d_weight_grad(self.input(0), gy, g);
                          },
                          {x.node(), w.node()});
    kernels::conv2d_forward(g, x.rows(), x.value().data(), w.value().data(), w.rows(), n->data);
    return Var(n);
}

// y = conv(x, w) + b, b a 1 x Cout row: the bias is an ordinary broadcasting add on y read as
// N P x Cout (the same memory), so db = col_sums of the gradient read that way.
inline Var conv2d(const Var& x, const Var& w, const Var& b, const ConvGeometry& g) {
    if (b.rows() != 1 || b.cols() != w.rows())
        throw ShapeError("ad::conv2d: the bias is " + shape_str(b) + ", not 1 x " + std::to_string(w.rows()) +
                         " (one per output channel)");
    const Var y = conv2d(x, w, g);
    return reshape(reshape(y, y.rows() * g.positions(), w.rows()) + b, y.rows(), y.cols());
}

// dx = T(gy, w), the transposed convolution: <h, T(gy, w)> = <conv(h, w), gy> for every h.
// Backward with incoming h (shaped as x):  d gy = conv2d(h, w),  d w = conv2d_weight_grad(h, gy).
inline Var conv2d_transpose(const Var& gy, const Var& w, const ConvGeometry& g) {
    detail::check_conv("conv2d_transpose", g, nullptr, &w, &gy);
    Node* n = tape().push("conv2d_transpose", gy.rows(), int(g.in_size()),
                          [g](const Node& self, const Var& h, Var* out) {
                              if (self.needs(0)) out[0] = conv2d(h, self.input(1), g);
                              if (self.needs(1)) out[1] = conv2d_weight_grad(h, self.input(0), g);
                          },
                          {gy.node(), w.node()});
    kernels::conv2d_input_grad(g, gy.rows(), gy.value().data(), w.value().data(), w.rows(), n->data);
    return Var(n);
}

// dw = WG(x, gy), the weight gradient: <V, WG(x, gy)> = <conv(x, V), gy> for every V.
// Backward with incoming V (shaped as w):  d x = conv2d_transpose(gy, V),  d gy = conv2d(x, V).
inline Var conv2d_weight_grad(const Var& x, const Var& gy, const ConvGeometry& g) {
    detail::check_conv("conv2d_weight_grad", g, &x, nullptr, &gy);
    const int cout = gy.cols() / g.positions();
    Node* n = tape().push("conv2d_weight_grad", cout, g.patch(),
                          [g](const Node& self, const Var& v, Var* out) {
                              if (self.needs(0)) out[0] = conv2d_transpose(self.input(1), v, g);
                              if (self.needs(1)) out[1] = conv2d(self.input(0), v, g);
                          },
                          {x.node(), gy.node()});
    kernels::conv2d_weight_grad(g, x.rows(), x.value().data(), gy.value().data(), cout, n->data);
    return Var(n);
}

// ---- take and put: entries by flat (column-major) position, a pair of adjoints.
namespace detail {
inline Var take_kept(const Var& x, std::span<const int> index, int rows, int cols, const char* op = "take");
inline Var put_kept(const Var& x, std::span<const int> index, int rows, int cols);

// out(i) = x(index[i]); backward: put the gradient back where it was taken from.
inline Var take_kept(const Var& x, std::span<const int> index, int rows, int cols, const char* op) {
    Node* n = tape().push(op, rows, cols,
                          [index](const Node& self, const Var& g, Var* out) {
                              out[0] = put_kept(g, index, self.inputs[0]->rows, self.inputs[0]->cols);
                          },
                          {x.node()});
    const double* xv = x.node()->data;
    for (std::size_t i = 0; i < index.size(); ++i) n->data[i] = xv[index[i]];
    return Var(n);
}
// out = 0, then out(index[i]) += x(i); backward: take the gradient at the same places.
inline Var put_kept(const Var& x, std::span<const int> index, int rows, int cols) {
    Node* n = tape().push("put", rows, cols,
                          [index](const Node& self, const Var& g, Var* out) {
                              out[0] = take_kept(g, index, self.inputs[0]->rows, self.inputs[0]->cols);
                          },
                          {x.node()});
    std::fill(n->data, n->data + n->size(), 0.0);
    const double* xv = x.node()->data;
    for (std::size_t i = 0; i < index.size(); ++i) n->data[index[i]] += xv[i];
    return Var(n);
}
inline void check_flat_index(const char* op, std::span<const int> index, Eigen::Index size) {
    for (int i : index)
        if (i < 0 || i >= size)
            throw ShapeError(std::string("ad::") + op + ": index " + std::to_string(i) + " is outside 0.." +
                             std::to_string(size - 1));
}
}  // namespace detail

/// A rows x cols matrix of x's entries at the flat (column-major) positions `index`.
inline Var take(const Var& x, const std::vector<int>& index, int rows, int cols) {
    if (Eigen::Index(index.size()) != Eigen::Index(rows) * cols)
        throw ShapeError("ad::take: " + std::to_string(index.size()) + " indices for a " + shape_str(rows, cols) +
                         " result");
    detail::check_flat_index("take", index, x.size());
    return detail::take_kept(x, detail::keep_index(index), rows, cols);
}
/// A rows x cols matrix of zeros with x's entries added at the flat positions `index`.
inline Var put(const Var& x, const std::vector<int>& index, int rows, int cols) {
    if (Eigen::Index(index.size()) != x.size())
        throw ShapeError("ad::put: " + std::to_string(index.size()) + " indices for " + shape_str(x));
    detail::check_flat_index("put", index, Eigen::Index(rows) * cols);
    return detail::put_kept(x, detail::keep_index(index), rows, cols);
}

/// Max pooling of N images (N x C H W) over size x size windows with stride size: N x (C Ho Wo),
/// Ho = H / size (a partial last window is dropped). The forward pass finds each window's
/// maximum (the first, on ties) and the node is a `take` of those entries, so its backward puts
/// the gradient on the maxima and every higher derivative follows from take/put.
inline Var max_pool2d(const Var& x, int channels, int height, int width, int size = 2) {
    if (channels < 1 || height < 1 || width < 1 || size < 1 || size > height || size > width)
        throw ShapeError("ad::max_pool2d: a " + std::to_string(size) + " x " + std::to_string(size) +
                         " window does not fit " + std::to_string(channels) + " x " + std::to_string(height) +
                         " x " + std::to_string(width) + " images");
    if (x.cols() != long(channels) * height * width)
        throw ShapeError("ad::max_pool2d: the images are " + shape_str(x) + ", but " + std::to_string(channels) +
                         " x " + std::to_string(height) + " x " + std::to_string(width) + " images need " +
                         std::to_string(long(channels) * height * width) + " columns");
    if (x.size() > std::numeric_limits<int>::max())
        throw ShapeError("ad::max_pool2d: " + shape_str(x) + " has more entries than an int index can name");
    const int cols = channels * (height / size) * (width / size);
    int* index = tape().arena.allocate_array<int>(std::size_t(x.rows()) * cols);
    kernels::max_pool2d_forward(channels, height, width, size, x.rows(), x.value().data(), nullptr, index);
    return detail::take_kept(x, {index, std::size_t(x.rows()) * cols}, x.rows(), cols, "max_pool2d");
}

namespace detail {
/// A conv2d_relu_pool layer's checks (check_conv's, the bias, the pool, the int indices of the
/// recorded backward) for `rows` images x (x's columns unchecked where it is null); `op` names
/// the caller.
inline void check_relu_pool(const char* op, const ConvGeometry& g, const Var* x, int rows, const Var& w, const Var& b,
                            int pool) {
    check_conv(op, g, x, &w, nullptr);
    const std::string who = std::string("ad::") + op + ": ";
    const int cout = w.rows();
    if (b.rows() != 1 || b.cols() != cout)
        throw ShapeError(who + "the bias is " + shape_str(b) + ", not 1 x " + std::to_string(cout));
    if (pool < 1 || pool > g.out_h() || pool > g.out_w() || pool > kernels::kMaxPoolWindow)
        throw ShapeError(who + "a " + std::to_string(pool) + " x " + std::to_string(pool) + " pool does not fit the " +
                         std::to_string(g.out_h()) + " x " + std::to_string(g.out_w()) + " output (or is wider than " +
                         std::to_string(kernels::kMaxPoolWindow) + ")");
    if (double(rows) * cout * g.positions() > std::numeric_limits<int>::max())
        throw ShapeError(who + "the convolution's output has more entries than an int index can name");
}
/// The columns of a layer's pooled output.
inline int pooled_cols(const ConvGeometry& g, int cout, int pool) {
    return cout * (g.out_h() / pool) * (g.out_w() / pool);
}
}  // namespace detail

/// max_pool2d(relu(conv2d(x, w, b))) as one node, the CNN layer's usual stack. The tape keeps
/// only the pooled output and, per entry, which element of its window won (two bytes), not the
/// N x Cout P convolution: kernels/conv_relu_pool.hpp runs the layer a block of images at a time, so
/// the convolution's output exists only for one block, in cache. relu is monotone, so pooling
/// first and then relu gives the same value, and the gradient reaches a pre-activation only at
/// its window's winner when the output there is > 0:
///   gz = put(g * [y > 0], winners)     (N x Cout P, the gradient at the convolution's output)
///   dx = conv2d_transpose(gz, w),  dw = conv2d_weight_grad(x, gz),  db = col_sums(gz as N P x Cout)
/// With create_graph these are recorded as the differentiable ops they name, so the higher
/// derivatives are right; without it the kernel computes them block by block, gz never whole.
inline Var conv2d_relu_pool(const Var& x, const Var& w, const Var& b, const ConvGeometry& g, int pool = 2) {
    detail::check_relu_pool("conv2d_relu_pool", g, &x, x.rows(), w, b, pool);
    const int cout = w.rows(), n = x.rows(), P = g.positions();
    const int cols = detail::pooled_cols(g, cout, pool);
    std::uint16_t* win = tape().arena.allocate_array<std::uint16_t>(std::size_t(n) * cols);
    Node* node = tape().push(
        "conv2d_relu_pool", n, cols,
        [g, pool, win, cout, P](const Node& self, const Var& gy, Var* out) {
            const int rows = self.inputs[0]->rows;
            if (!grad_enabled()) {  // values only: the kernel, block by block, writes every entry
                auto fresh = [](int r, int c) { return Var(tape().leaf("constant", r, c, false)); };
                if (self.needs(0)) out[0] = fresh(rows, int(g.in_size()));
                if (self.needs(1)) out[1] = fresh(cout, g.patch());
                if (self.needs(2)) out[2] = fresh(1, cout);
                kernels::conv_relu_pool_backward(
                    g, pool, rows, self.inputs[0]->data, self.inputs[1]->data, cout, win, gy.node()->data,
                    self.needs(0) ? out[0].node()->data : nullptr, self.needs(1) ? out[1].node()->data : nullptr,
                    self.needs(2) ? out[2].node()->data : nullptr);
                return;
            }
            // Recorded: the winners' flat indices into the convolution's output, then put.
            const std::size_t count = std::size_t(rows) * self.cols;
            int* index = tape().arena.allocate_array<int>(count);
            for (long col = 0; col < self.cols; ++col)
                for (int i = 0; i < rows; ++i) {
                    const std::size_t k = std::size_t(col) * rows + i;
                    index[k] = int(kernels::relu_pool_source(g, pool, rows, i, col, win[k]));
                }
            const Var gz = detail::put_kept(gy * gt(self.output(), 0.0), {index, count}, rows, cout * P);
            if (self.needs(0)) out[0] = conv2d_transpose(gz, self.input(1), g);
            if (self.needs(1)) out[1] = conv2d_weight_grad(self.input(0), gz, g);
            if (self.needs(2)) out[2] = col_sums(reshape(gz, rows * P, cout));
        },
        {x.node(), w.node(), b.node()});
    kernels::conv_relu_pool_forward(g, pool, n, x.value().data(), w.value().data(), b.value().data(), cout, node->data,
                                    win);
    return Var(node);
}

namespace detail {
/// conv2d_relu_pool_stack (head false) and conv2d_relu_pool_linear (head true: params end with
/// the linear layer's W and b), `op` naming which in messages.
inline Var relu_pool_stack(const char* op, const Var& x, std::span<const Var> params,
                           std::span<const ConvGeometry> geometry, int pool, bool head) {
    const int L = int(geometry.size()), n = x.rows();
    const std::string who = std::string("ad::") + op + ": ";
    if (L < 1 || params.size() != 2 * geometry.size() + (head ? 2 : 0))
        throw ShapeError(who + std::to_string(params.size()) + " parameters for " + std::to_string(L) +
                         " layers (a weight and a bias each" + (head ? ", then the linear layer's)" : ")"));
    long in_cols = x.cols();
    for (int l = 0; l < L; ++l) {
        const ConvGeometry& g = geometry[std::size_t(l)];
        const Var &w = params[std::size_t(2 * l)], &b = params[std::size_t(2 * l + 1)];
        if (l > 0 && in_cols != g.in_size())
            throw ShapeError(who + "layer " + std::to_string(l - 1) + " gives " + std::to_string(in_cols) +
                             " columns, but layer " + std::to_string(l) + "'s " + geometry_str(g) + " images need " +
                             std::to_string(g.in_size()));
        // (layer 0's image columns are check_conv's)
        check_relu_pool(op, g, l == 0 ? &x : nullptr, n, w, b, pool);
        in_cols = pooled_cols(g, w.rows(), pool);
    }
    const long features = in_cols;
    int outputs = int(features);
    if (head) {
        const Var &W = params[std::size_t(2 * L)], &b = params[std::size_t(2 * L + 1)];
        if (W.cols() != features || b.rows() != 1 || b.cols() != W.rows())
            throw ShapeError(who + "the linear layer's W is " + shape_str(W) + " and b " + shape_str(b) + ", but the " +
                             "layers give " + std::to_string(features) + " features (W: outputs x " +
                             std::to_string(features) + ", b: 1 x outputs)");
        outputs = W.rows();
    }
    // What the backward reads: each layer's geometry, channels, codes and output (the last one's
    // is the node's value unless a head follows: the node then aliases it). Plain data in the
    // arena, so the closure holds two pointers.
    struct Layer {
        ConvGeometry g;
        int cout;
        std::uint16_t* win;
        double* out;
    };
    Arena& arena = tape().arena;
    Layer* layers = arena.allocate_array<Layer>(std::size_t(L));
    for (int l = 0; l < L; ++l) {
        const ConvGeometry& g = geometry[std::size_t(l)];
        const int cout = params[std::size_t(2 * l)].rows(), cols = pooled_cols(g, cout, pool);
        layers[l] = {g, cout, arena.allocate_array<std::uint16_t>(std::size_t(n) * cols),
                     arena.allocate_array<double>(std::size_t(n) * cols)};
    }
    // The features (the last layer's output) as a value on the tape without a copy.
    const auto features_var = [n, features](double* at) {
        return Var(tape().push("features", n, int(features), nullptr, std::initializer_list<Node*>{},
                               Derivatives::any_order, at));
    };
    std::vector<Node*> inputs{x.node()};
    for (const Var& p : params) inputs.push_back(p.node());
    const auto backward = [layers, L, pool, head, features_var](const Node& self, const Var& gy, Var* out) {
        const int rows = self.inputs[0]->rows, top = 2 * L;
        const auto in = [&](int l) { return l == 0 ? self.inputs[0]->data : layers[l - 1].out; };
        if (grad_enabled()) {  // recorded: the chain again, differentiated as ops
            Var h = self.input(0);
            for (int l = 0; l < L; ++l)
                h = conv2d_relu_pool(h, self.input(1 + 2 * l), self.input(2 + 2 * l), layers[l].g, pool);
            if (head) h = add(matmul_nt(h, self.input(1 + top)), self.input(2 + top));  // nn::Linear's formula
            std::vector<Var> wanted;
            std::vector<int> at;
            for (int k = 0; k < int(self.n_inputs); ++k)
                if (self.needs(k)) wanted.push_back(self.input(k)), at.push_back(k);
            const std::vector<Var> g = grad(h, wanted, {.create_graph = true, .allow_unused = true}, gy);
            for (std::size_t j = 0; j < at.size(); ++j) out[at[j]] = g[j];
            return;
        }
        auto fresh = [](int r, int c) { return Var(tape().leaf("constant", r, c, false)); };
        const auto grad_of = [&](int k, int r, int c) -> double* {
            if (!self.needs(k)) return nullptr;
            if (!out[k].defined()) out[k] = fresh(r, c);  // (the pair's, where it declined)
            return out[k].node()->data;
        };
        // Whether anything at or below layer l's input takes a gradient.
        const auto wanted_below = [&](int l) {
            for (int k = 0; k < 1 + 2 * l; ++k)
                if (self.needs(k)) return true;
            return false;
        };
        const double* g = gy.node()->data;
        const double* rank_one = nullptr;  // with one output, the features' gradient is g W: made as read
        if (head) {  // the linear layer's backward, by the ops matmul_nt and add would record
            const Var W = self.input(1 + top);
            const Var h = features_var(layers[L - 1].out);
            if (self.needs(1 + top)) out[1 + top] = matmul_flags(gy, h, 1);
            if (self.needs(2 + top)) out[2 + top] = sum_to(gy, 1, W.rows());
            if (!wanted_below(L)) return;
            if (W.rows() == 1) rank_one = W.node()->data;
            else g = matmul(gy, W).node()->data;
        }
        for (int l = L - 1; l >= 0; --l) {
            const Layer& layer = layers[l];
            const Var& w = self.input(1 + 2 * l);
            double* dw = grad_of(1 + 2 * l, w.rows(), w.cols());
            double* db = grad_of(2 + 2 * l, 1, layer.cout);
            const double* head_w = l == L - 1 ? rank_one : nullptr;
            if (l == 1 && !self.needs(0) && (self.needs(1) || self.needs(2))) {
                const Layer& low = layers[0];
                const Var& w0 = self.input(1);
                double* dw0 = grad_of(1, w0.rows(), w0.cols());
                double* db0 = grad_of(2, 1, low.cout);
                if (kernels::conv_relu_pool_pair_backward(low.g, layer.g, pool, rows, in(0), low.cout, low.win,
                                                          low.out, w.node()->data, layer.cout, layer.win, g, dw0, db0,
                                                          dw, db, head_w))
                    return;
            }
            double* dx = nullptr;
            if (wanted_below(l))
                dx = l == 0 ? grad_of(0, rows, int(layer.g.in_size()))
                            : tape().arena.allocate_array<double>(std::size_t(rows) * layer.g.in_size());
            kernels::conv_relu_pool_backward(layer.g, pool, rows, in(l), w.node()->data, layer.cout, layer.win, g, dx,
                                             dw, db, head_w);
            if (!dx) return;
            g = dx;
        }
    };
    const double* h = x.value().data();
    for (int l = 0; l < L; ++l) {
        const Var &w = params[std::size_t(2 * l)], &b = params[std::size_t(2 * l + 1)];
        kernels::conv_relu_pool_forward(layers[l].g, pool, n, h, w.value().data(), b.value().data(), layers[l].cout,
                                        layers[l].out, layers[l].win);
        h = layers[l].out;
    }
    double* value = layers[L - 1].out;
    if (head) {  // nn::Linear's formula on the features, its nodes dropped from the graph
        NoGradGuard values_only;
        value = add(matmul_nt(features_var(layers[L - 1].out), params[std::size_t(2 * L)]),
                    params[std::size_t(2 * L + 1)])
                    .node()
                    ->data;
    }
    Node* node = tape().push(op, n, outputs, backward, inputs, Derivatives::any_order, value);
    return Var(node);
}
}  // namespace detail

/// conv2d_relu_pool layers applied in turn, as one node: layer l takes the one below's output
/// (x for l = 0) with weights params[2 l], bias params[2 l + 1] and geometry[l], each pooled by
/// `pool`. The values are the chain's to the bit; the node keeps each layer's output and codes.
/// Its backward without create_graph goes down the layers as conv2d_relu_pool's does, except
/// that where x needs no gradient (the images) the bottom two layers go together
/// (kernels/conv_relu_pool_pair.hpp): the gradient between them exists only a block of images
/// at a time, in cache. With create_graph it runs the layers again as conv2d_relu_pool nodes and
/// records their backward, so higher derivatives are the chain's.
inline Var conv2d_relu_pool_stack(const Var& x, std::span<const Var> params, std::span<const ConvGeometry> geometry,
                                  int pool = 2) {
    return detail::relu_pool_stack("conv2d_relu_pool_stack", x, params, geometry, pool, false);
}

/// conv2d_relu_pool_stack then a linear layer (nn::Linear: features W^T + b, W = params[2 L],
/// b = params[2 L + 1]) as one node, with the same values and gradients as those ops. With one
/// output (a scalar per image) the features' gradient is the outer product g W, which the layers'
/// backward makes a block of rows at a time as it reads them, instead of the linear layer's
/// backward writing the n x F matrix for it to transpose (fig6: 25 MB for the meta-learner, 35
/// MB for the learner's test images).
inline Var conv2d_relu_pool_linear(const Var& x, std::span<const Var> params, std::span<const ConvGeometry> geometry,
                                   int pool = 2) {
    return detail::relu_pool_stack("conv2d_relu_pool_linear", x, params, geometry, pool, true);
}

}  // namespace occam::ad
