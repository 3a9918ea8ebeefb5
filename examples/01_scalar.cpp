// What this teaches: the whole reverse-mode algorithm on scalars, in one page and without the
// library. A tape records every operation in creation order; one reverse loop over it gives the
// gradient of the output with respect to every input. occam's autodiff/ is this, per matrix.
#include <cmath>
#include <cstdio>
#include <vector>

// One tape entry. The value is computed in the forward pass; `partial[k]` is the local
// derivative d(this)/d(parent k), also computed in the forward pass while the inputs are at hand.
struct Node {
    double value;
    int parent[2];      // indices into the tape; -1 when there is no such parent (leaves, unary ops)
    double partial[2];  // d value / d parent value
};

// The tape: every node ever made, in creation order. A node can only use nodes that already
// exist, so every node comes after all of its parents: creation order is a topological order.
std::vector<Node> tape;

// A variable is just its position on the tape.
struct Var {
    int id;
};

Var push(double value, int p0 = -1, double d0 = 0.0, int p1 = -1, double d1 = 0.0) {
    tape.push_back({value, {p0, p1}, {d0, d1}});
    return {int(tape.size()) - 1};
}

double val(Var v) { return tape[v.id].value; }

// Leaves: the inputs we want derivatives for.
Var input(double x) { return push(x); }

// Each op computes its value and records its local partial derivatives. occam's ops do the same
// with whole matrices, except that they store a backward *formula* instead of numbers, so that
// the backward pass can itself be recorded and differentiated again (create_graph).
Var add(Var a, Var b) { return push(val(a) + val(b), a.id, 1.0, b.id, 1.0); }
Var mul(Var a, Var b) { return push(val(a) * val(b), a.id, val(b), b.id, val(a)); }
Var tanh(Var a) {
    double t = std::tanh(val(a));
    return push(t, a.id, 1.0 - t * t);
}
Var exp(Var a) {
    double e = std::exp(val(a));
    return push(e, a.id, e);
}

// The backward pass. adjoint[i] = d(output)/d(node i). Start with d(out)/d(out) = 1 and walk the
// tape backwards. When we reach node i, every node that uses i comes later on the tape and has
// therefore already been visited and has already pushed its contribution into adjoint[i]: so
// adjoint[i] is complete, and we can pass it on to i's parents with the chain rule.
// Contributions are added with +=, because a node used twice (x below feeds both x*y and exp(x))
// influences the output along each path, and the multivariate chain rule sums over the paths.
std::vector<double> backward(Var out) {
    std::vector<double> adjoint(tape.size(), 0.0);
    adjoint[out.id] = 1.0;
    for (int i = out.id; i >= 0; --i) {
        const Node& n = tape[i];
        for (int k = 0; k < 2; ++k)
            if (n.parent[k] >= 0) adjoint[n.parent[k]] += adjoint[i] * n.partial[k];
    }
    return adjoint;
}

// f(x, y) = tanh(x*y + exp(x)) on plain doubles, for the finite-difference check.
double f_plain(double x, double y) { return std::tanh(x * y + std::exp(x)); }

int main() {
    const double x0 = 0.3, y0 = -0.7;
    Var x = input(x0), y = input(y0);
    // The same f built from the ops: the forward pass fills the tape (6 nodes), and no
    // derivative of f is ever written by hand.
    Var f = tanh(add(mul(x, y), exp(x)));
    std::vector<double> adj = backward(f);  // one reverse loop gives *all* partial derivatives

    // Check against central differences (f(x+h) - f(x-h)) / 2h, whose error is O(h^2).
    const double h = 1e-5;
    double fd_x = (f_plain(x0 + h, y0) - f_plain(x0 - h, y0)) / (2 * h);
    double fd_y = (f_plain(x0, y0 + h) - f_plain(x0, y0 - h)) / (2 * h);

    std::printf("tape has %zu nodes\n", tape.size());
    std::printf("f(%.2f, %.2f) = %.12f\n", x0, y0, val(f));
    std::printf("df/dx = %.12f (finite difference %.12f)\n", adj[x.id], fd_x);
    std::printf("df/dy = %.12f (finite difference %.12f)\n", adj[y.id], fd_y);
    double err = std::fmax(std::fabs(adj[x.id] - fd_x), std::fabs(adj[y.id] - fd_y));
    std::printf("max abs difference %.2e\n", err);
    return err < 1e-8 ? 0 : 1;
}
