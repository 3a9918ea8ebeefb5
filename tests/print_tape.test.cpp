// ad::print_tape: one aligned line per node (id, op, shape, recorded inputs, flags), the whole
// tape or from a given Var on.
#include <doctest/doctest.h>

#include <sstream>
#include <string>

#include "autodiff/autodiff.hpp"

using namespace occam;

namespace {
std::string printed(const ad::Var& from) {
    std::ostringstream s;
    ad::print_tape(s, from);
    return s.str();
}
}  // namespace

TEST_CASE("print_tape: one line per node with its inputs, and the create_graph backward after it") {
    ad::TapeScope scope;
    ad::Var x = ad::param(Eigen::MatrixXd::Constant(3, 1, 2.0));
    ad::Var c = ad::constant(Eigen::MatrixXd::Constant(3, 1, 1.0));
    ad::Var y = ad::sum(ad::exp(x) * c);
    const std::uint32_t base = x.node()->id;
    auto id = [base](int k) { return "#" + std::to_string(base + std::uint32_t(k)); };
    std::ostringstream whole;
    ad::print_tape(whole);
    CHECK(whole.str().size() >= printed(x).size());
    if (base == 0) {  // alone on the tape: the exact text
        CHECK(printed(x) ==
              "#0  param     3x1            grad\n"
              "#1  constant  3x1\n"
              "#2  exp       3x1  <- #0     grad\n"
              "#3  mul       3x1  <- #2 #1  grad\n"
              "#4  sum_to    1x1  <- #3     grad\n");
    }
    CHECK(printed(y) == id(4) + "  sum_to  1x1  <- " + id(3) + "  grad\n");
    const std::size_t before = ad::tape().size();
    ad::grad(y, {x}, {.create_graph = true});
    // The backward formula of exp (g * y) was recorded: its last node reads exp's output.
    std::ostringstream after;
    ad::print_tape(after, before, ad::tape().size());
    const std::string text = after.str();
    CHECK(text.find("mul") != std::string::npos);
    CHECK(text.find(" " + id(2) + "  grad\n") != std::string::npos);
    // Ranges are clamped, empty ranges print nothing.
    std::ostringstream none;
    ad::print_tape(none, ad::tape().size(), ad::tape().size() + 10);
    CHECK(none.str().empty());
}

TEST_CASE("print_tape: no inputs without gradients, and the first-order flag") {
    ad::TapeScope scope;
    ad::Var x = ad::param(Eigen::MatrixXd::Constant(2, 2, 1.0));
    {
        ad::NoGradGuard no_grad;
        ad::Var z = ad::tanh(x);
        CHECK(printed(z) == "#" + std::to_string(z.node()->id) + "  tanh  2x2\n");
    }
    ad::Node* n = ad::custom_node(
        "by_hand", 2, 2, {x},
        [](const ad::Node&, const ad::Var& g, ad::Var* grads) { grads[0] = ad::constant(g.value()); },
        ad::Derivatives::first_order);
    n->mutable_value() = x.value();
    const std::string line = printed(ad::Var(n));
    CHECK(line.find("by_hand  2x2  <- #" + std::to_string(x.node()->id) + "  grad first-order\n") !=
          std::string::npos);
}

TEST_CASE("print_tape: a Var from a closed scope is refused") {
    ad::TapeScope outer;
    ad::Var stale;
    {
        ad::TapeScope inner;
        stale = ad::param(Eigen::MatrixXd::Zero(1, 1));
    }
    ad::Var fresh = ad::constant(1.0);  // reuses the slot: a different serial
    (void)fresh;
    std::ostringstream s;
    CHECK_THROWS_AS(ad::print_tape(s, stale), ad::Error);
}
