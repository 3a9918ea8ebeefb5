// What this file teaches: a neural network is nothing but a function of (parameters, inputs)
// built from the ops: x W^T + b, an activation, repeat. Parameters are a plain ordered list
// (W0, b0, W1, b1, ...) in PyTorch's layout and initialisation, so they can be flattened,
// handed to an optimiser, or unrolled through training without any module machinery.
#pragma once

#include <Eigen/Dense>

#include <cmath>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "autodiff.hpp"

namespace occam::ad::nn {

/// The nonlinearity applied after every hidden layer.
enum class Activation { relu, tanh, sigmoid, identity, relu6 };
/// The map applied to the last layer's output.
enum class OutputMap { identity, cos, tanh, relu6_over_6 };

/// x passed through the activation a.
inline Var activate(const Var& x, Activation a) {
    switch (a) {
        case Activation::relu: return ad::relu(x);
        case Activation::tanh: return ad::tanh(x);
        case Activation::sigmoid: return ad::sigmoid(x);
        case Activation::identity: return x;
        case Activation::relu6: return ad::relu6(x);
    }
    throw std::invalid_argument("ad::nn::activate: unknown Activation value " + std::to_string(int(a)));
}

/// x passed through the output map m.
inline Var output_map(const Var& x, OutputMap m) {
    switch (m) {
        case OutputMap::identity: return x;
        case OutputMap::cos: return ad::cos(x);
        case OutputMap::tanh: return ad::tanh(x);
        case OutputMap::relu6_over_6: return mul_scalar(ad::relu6(x), 1.0 / 6.0);  // in [0, 1]
    }
    throw std::invalid_argument("ad::nn::output_map: unknown OutputMap value " + std::to_string(int(m)));
}

/// The name used in configuration files ("relu", "tanh", "sigmoid", "identity", "relu6").
inline std::string name(Activation a) {
    switch (a) {
        case Activation::relu: return "relu";
        case Activation::tanh: return "tanh";
        case Activation::sigmoid: return "sigmoid";
        case Activation::identity: return "identity";
        case Activation::relu6: return "relu6";
    }
    throw std::invalid_argument("ad::nn::name: unknown Activation value " + std::to_string(int(a)));
}

/// The name used in configuration files ("identity", "cos", "tanh", "relu6/6").
inline std::string name(OutputMap m) {
    switch (m) {
        case OutputMap::identity: return "identity";
        case OutputMap::cos: return "cos";
        case OutputMap::tanh: return "tanh";
        case OutputMap::relu6_over_6: return "relu6/6";
    }
    throw std::invalid_argument("ad::nn::name: unknown OutputMap value " + std::to_string(int(m)));
}

/// The Activation called s; an unknown name throws, listing the valid ones.
inline Activation parse_activation(const std::string& s) {
    for (Activation a : {Activation::relu, Activation::tanh, Activation::sigmoid, Activation::identity,
                         Activation::relu6})
        if (s == name(a)) return a;
    throw std::invalid_argument("ad::nn::parse_activation: unknown activation '" + s +
                                "'; valid names are relu, tanh, sigmoid, identity, relu6");
}

/// The OutputMap called s; an unknown name throws, listing the valid ones.
inline OutputMap parse_output_map(const std::string& s) {
    for (OutputMap m : {OutputMap::identity, OutputMap::cos, OutputMap::tanh, OutputMap::relu6_over_6})
        if (s == name(m)) return m;
    throw std::invalid_argument("ad::nn::parse_output_map: unknown output map '" + s +
                                "'; valid names are identity, cos, tanh, relu6/6");
}

/// A fully connected layer in PyTorch's layout: W is out x in, b is 1 x out, and a batch x holds
/// one sample per row (samples x in), so y = x W^T + b is samples x out.
struct Linear {
    int in = 0;
    int out = 0;

    /// {W, b} with torch.nn.Linear's default init: both U(-1/sqrt(in), 1/sqrt(in)). (Kaiming
    /// uniform with a = sqrt(5) reduces to exactly this bound for W.) W is drawn first.
    std::vector<Eigen::MatrixXd> init(Rng& rng) const {
        if (in <= 0 || out <= 0)
            throw std::invalid_argument("ad::nn::Linear::init: sizes must be positive, got in=" + std::to_string(in) +
                                        ", out=" + std::to_string(out));
        const double bound = 1.0 / std::sqrt(double(in));
        std::vector<Eigen::MatrixXd> wb;
        wb.reserve(2);
        wb.push_back(rng.uniform_matrix(out, in, -bound, bound));
        wb.push_back(rng.uniform_matrix(1, out, -bound, bound));
        return wb;
    }

    /// y = x W^T + b: matmul_nt never materialises W^T, and the 1 x out bias broadcasts over
    /// the rows (so its gradient is the column sums of the incoming gradient).
    static Var apply(const Var& x, const Var& W, const Var& b) {
        if (b.rows() != 1 || b.cols() != W.rows())
            throw ShapeError("ad::nn::Linear::apply: bias is " + shape_str(b) + " but W is " + shape_str(W) +
                             ", so the bias must be 1x" + std::to_string(W.rows()));
        return add(matmul_nt(x, W), b);
    }
};

/// A multilayer perceptron. widths = {3, 150, 150, 1}: 3 inputs, two hidden layers of 150 and
/// 1 output; widths = {3, 1} is a linear model. The activation follows every hidden layer and
/// the output map follows the last layer. Parameters are ordered W0, b0, W1, b1, ...
struct MLP {
    std::vector<int> widths;
    Activation activation = Activation::relu;
    OutputMap output = OutputMap::identity;

    /// Number of Linear layers.
    std::size_t num_layers() const {
        validate("num_layers");
        return widths.size() - 1;
    }

    /// PyTorch-default parameters, layer by layer (W0, b0, W1, b1, ...), from one generator.
    std::vector<Eigen::MatrixXd> init(Rng& rng) const {
        validate("init");
        std::vector<Eigen::MatrixXd> ps;
        ps.reserve(2 * (widths.size() - 1));
        for (std::size_t l = 0; l + 1 < widths.size(); ++l)
            for (auto& m : Linear{widths[l], widths[l + 1]}.init(rng)) ps.push_back(std::move(m));
        return ps;
    }

    /// The network's output, samples x widths.back(), for x of samples x widths.front().
    Var operator()(const std::vector<Var>& params, const Var& x) const {
        check_params(params, x);
        Var h = x;
        const std::size_t n_layers = widths.size() - 1;
        for (std::size_t l = 0; l < n_layers; ++l) {
            h = Linear::apply(h, params[2 * l], params[2 * l + 1]);
            h = (l + 1 < n_layers) ? activate(h, activation) : output_map(h, output);
        }
        return h;
    }

    /// Total number of scalars in all weights and biases.
    std::size_t num_parameters() const {
        std::size_t n = 0;
        for (const auto& [r, c] : shapes()) n += std::size_t(r) * std::size_t(c);
        return n;
    }

    /// (rows, cols) of each parameter in order: (out, in) for W, (1, out) for b.
    std::vector<std::pair<int, int>> shapes() const {
        validate("shapes");
        std::vector<std::pair<int, int>> s;
        s.reserve(2 * (widths.size() - 1));
        for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
            s.emplace_back(widths[l + 1], widths[l]);
            s.emplace_back(1, widths[l + 1]);
        }
        return s;
    }

private:
    void validate(const char* who) const {
        const std::string w = std::string("ad::nn::MLP::") + who;
        if (widths.size() < 2)
            throw std::invalid_argument(w + ": widths needs at least 2 entries (inputs and outputs), got " +
                                        std::to_string(widths.size()));
        for (std::size_t l = 0; l < widths.size(); ++l)
            if (widths[l] <= 0)
                throw std::invalid_argument(w + ": widths[" + std::to_string(l) + "] = " + std::to_string(widths[l]) +
                                            " must be positive");
    }

    void check_params(const std::vector<Var>& params, const Var& x) const {
        validate("operator()");
        const std::string w = "ad::nn::MLP::operator(): ";
        const std::size_t expected = 2 * (widths.size() - 1);
        if (params.size() != expected)
            throw std::invalid_argument(w + "expected " + std::to_string(expected) +
                                        " parameters (W, b per layer), got " + std::to_string(params.size()));
        for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
            const Var& W = params[2 * l];
            const Var& b = params[2 * l + 1];
            if (W.rows() != widths[l + 1] || W.cols() != widths[l])
                throw std::invalid_argument(w + "parameter " + std::to_string(2 * l) + " (W" + std::to_string(l) +
                                            ") expected " + std::to_string(widths[l + 1]) + "x" +
                                            std::to_string(widths[l]) + ", got " + shape_str(W));
            if (b.rows() != 1 || b.cols() != widths[l + 1])
                throw std::invalid_argument(w + "parameter " + std::to_string(2 * l + 1) + " (b" + std::to_string(l) +
                                            ") expected 1x" + std::to_string(widths[l + 1]) + ", got " + shape_str(b));
        }
        if (x.cols() != widths.front())
            throw std::invalid_argument(w + "input expected " + std::to_string(widths.front()) +
                                        " columns (one row per sample), got " + shape_str(x));
    }
};

/// A convolutional network for images (rows of N x C H W, autodiff/ops/conv.hpp): conv layers,
/// each followed by the activation and a size `pool` max-pool, then one Linear layer to
/// `outputs` and the output map. channels = {16} on 1 x 28 x 28 inputs with kernel 5, padding
/// 2 is the paper's Fig. 6 learner, conv(1->16, 5x5) - ReLU - maxpool 2 - linear. Parameters
/// are ordered Wc0, bc0, Wc1, bc1, ..., W, b: a conv weight is Cout x (Cin k k) (PyTorch's
/// Cout x Cin x k x k, flattened in the same order), a bias 1 x Cout.
struct ConvNet {
    int in_channels = 1, height = 28, width = 28;
    std::vector<int> channels;  ///< output channels of each conv layer
    int kernel = 5, padding = 2, pool = 2;
    int outputs = 1;
    Activation activation = Activation::relu;
    OutputMap output = OutputMap::identity;

    /// Conv layer l's geometry (its input's channels and size).
    ConvGeometry geometry(std::size_t l) const {
        ConvGeometry g{.channels = in_channels, .height = height, .width = width, .kernel_h = kernel,
                       .kernel_w = kernel, .stride = 1, .padding = padding};
        for (std::size_t k = 0; k < l; ++k) {
            const int h = g.out_h() / pool, w = g.out_w() / pool;
            g.channels = channels[k], g.height = h, g.width = w;
        }
        return g;
    }
    /// The Linear layer's input width: the last pooled feature map, flattened.
    int features() const {
        validate("features");
        if (channels.empty()) return in_channels * height * width;
        const ConvGeometry g = geometry(channels.size() - 1);
        return channels.back() * (g.out_h() / pool) * (g.out_w() / pool);
    }

    /// PyTorch's default initialisation: Conv2d and Linear both draw W, then b, from
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = Cin k k for a conv layer.
    std::vector<Eigen::MatrixXd> init(Rng& rng) const {
        const auto s = shapes();
        std::vector<Eigen::MatrixXd> ps;
        for (std::size_t k = 0; k < s.size(); ++k) {
            const double fan_in = s[k - k % 2].second;  // a bias takes its weight's fan-in
            const double bound = 1.0 / std::sqrt(fan_in);
            ps.push_back(rng.uniform_matrix(s[k].first, s[k].second, -bound, bound));
        }
        return ps;
    }

    Var operator()(const std::vector<Var>& params, const Var& x) const {
        check_params(params, x);
        const std::size_t n = channels.size();
        if (activation == Activation::relu && n >= 1) {  // the layers and the linear layer as one node (ops/conv.hpp)
            std::vector<ConvGeometry> gs;
            for (std::size_t l = 0; l < n; ++l) gs.push_back(geometry(l));
            return output_map(conv2d_relu_pool_linear(x, params, gs, pool), output);
        }
        Var h = x;
        for (std::size_t l = 0; l < n; ++l) {
            const ConvGeometry g = geometry(l);
            h = activate(conv2d(h, params[2 * l], params[2 * l + 1], g), activation);
            h = max_pool2d(h, channels[l], g.out_h(), g.out_w(), pool);
        }
        return output_map(Linear::apply(h, params[2 * n], params[2 * n + 1]), output);
    }

    /// (rows, cols) of each parameter in order.
    std::vector<std::pair<int, int>> shapes() const {
        validate("shapes");
        std::vector<std::pair<int, int>> s;
        for (std::size_t l = 0; l < channels.size(); ++l) {
            s.emplace_back(channels[l], geometry(l).patch());
            s.emplace_back(1, channels[l]);
        }
        s.emplace_back(outputs, features());
        s.emplace_back(1, outputs);
        return s;
    }
    std::size_t num_parameters() const {
        std::size_t n = 0;
        for (const auto& [r, c] : shapes()) n += std::size_t(r) * std::size_t(c);
        return n;
    }

private:
    void validate(const char* who) const {
        const std::string w = std::string("ad::nn::ConvNet::") + who + ": ";
        if (in_channels < 1 || height < 1 || width < 1 || outputs < 1 || kernel < 1 || padding < 0 || pool < 1)
            throw std::invalid_argument(w + "sizes must be positive (padding >= 0)");
        int c = in_channels, h = height, wd = width;
        for (std::size_t l = 0; l < channels.size(); ++l) {
            if (channels[l] < 1) throw std::invalid_argument(w + "conv layer " + std::to_string(l) + " has no channels");
            const ConvGeometry g{.channels = c, .height = h, .width = wd, .kernel_h = kernel, .kernel_w = kernel,
                                 .stride = 1, .padding = padding};
            if (kernel > h + 2 * padding || kernel > wd + 2 * padding || g.out_h() < pool || g.out_w() < pool)
                throw std::invalid_argument(w + "conv layer " + std::to_string(l) + "'s " + std::to_string(h) + " x " +
                                            std::to_string(wd) + " input is too small for a " + std::to_string(kernel) +
                                            " x " + std::to_string(kernel) + " kernel and " + std::to_string(pool) +
                                            " x " + std::to_string(pool) + " pooling");
            c = channels[l], h = g.out_h() / pool, wd = g.out_w() / pool;
        }
    }

    void check_params(const std::vector<Var>& params, const Var& x) const {
        const auto s = shapes();
        const std::string w = "ad::nn::ConvNet::operator(): ";
        if (params.size() != s.size())
            throw std::invalid_argument(w + "expected " + std::to_string(s.size()) + " parameters, got " +
                                        std::to_string(params.size()));
        for (std::size_t k = 0; k < s.size(); ++k)
            if (params[k].rows() != s[k].first || params[k].cols() != s[k].second)
                throw std::invalid_argument(w + "parameter " + std::to_string(k) + " expected " +
                                            std::to_string(s[k].first) + "x" + std::to_string(s[k].second) +
                                            ", got " + shape_str(params[k]));
        if (x.cols() != in_channels * height * width)
            throw std::invalid_argument(w + "input expected " + std::to_string(in_channels * height * width) +
                                        " columns (one image per row), got " + shape_str(x));
    }
};

/// All matrices in one vector: each matrix column-major, matrices in list order.
inline Eigen::VectorXd flatten(const std::vector<Eigen::MatrixXd>& ms) {
    Eigen::Index n = 0;
    for (const auto& m : ms) n += m.size();
    Eigen::VectorXd v(n);
    Eigen::Index at = 0;
    for (const auto& m : ms) {
        // A MatrixXd's storage is already column-major, so each matrix is one contiguous copy.
        v.segment(at, m.size()) = Eigen::Map<const Eigen::VectorXd>(m.data(), m.size());
        at += m.size();
    }
    return v;
}

/// The inverse of flatten for the given (rows, cols) shapes; the sizes must add up exactly.
inline std::vector<Eigen::MatrixXd> unflatten(const Eigen::VectorXd& v,
                                              const std::vector<std::pair<int, int>>& shapes) {
    Eigen::Index n = 0;
    for (std::size_t k = 0; k < shapes.size(); ++k) {
        const auto [r, c] = shapes[k];
        if (r < 0 || c < 0)
            throw std::invalid_argument("ad::nn::unflatten: shape " + std::to_string(k) + " is " + std::to_string(r) +
                                        "x" + std::to_string(c));
        n += Eigen::Index(r) * c;
    }
    if (n != v.size())
        throw std::invalid_argument("ad::nn::unflatten: the shapes hold " + std::to_string(n) +
                                    " entries but the vector has " + std::to_string(v.size()));
    std::vector<Eigen::MatrixXd> ms;
    ms.reserve(shapes.size());
    Eigen::Index at = 0;
    for (const auto& [r, c] : shapes) {
        ms.emplace_back(Eigen::Map<const Eigen::MatrixXd>(v.data() + at, r, c));
        at += Eigen::Index(r) * c;
    }
    return ms;
}

}  // namespace occam::ad::nn
