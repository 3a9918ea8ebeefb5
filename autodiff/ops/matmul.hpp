// What this file teaches: the matrix product's backward pass is two more matrix products.
// For C = A B:  dA = G B^T,  dB = A^T G.  Transposed variants (A B^T, A^T B) keep those
// products free of materialised transposes, which is where small-matrix time goes.
#pragma once

#include "../../kernels/gemm.hpp"
#include "elementwise.hpp"

namespace occam::ad {
namespace detail {

/// Products with fewer multiply-adds than this go to Eigen (whose small-product path wins
/// there); larger ones to the register-blocked kernel (kernels/gemm.hpp).
constexpr long kGemmMinWork = 32 * 1024;
/// The threshold in force on this thread (GemmThreshold changes it for a scope).
inline long& gemm_min_work() {
    thread_local long work = kGemmMinWork;
    return work;
}
/// Sends products of at least `work` multiply-adds to the kernel while it lives (the gradient
/// checks use it to run the kernel on matrices small enough for exact finite differences).
struct GemmThreshold {
    long saved;
    explicit GemmThreshold(long work) : saved(gemm_min_work()) { gemm_min_work() = work; }
    ~GemmThreshold() { gemm_min_work() = saved; }
    GemmThreshold(const GemmThreshold&) = delete;
    GemmThreshold& operator=(const GemmThreshold&) = delete;
};

// Flags: bit 0 = transpose a, bit 1 = transpose b. C = op(A) op(B).
inline Var matmul_flags(const Var& a, const Var& b, int flags);

/// One backward function per transpose case (the flags are a template argument, so the node
/// keeps no state).
template <int Flags>
void matmul_backward(const Node& self, const Var& g, Var* out) {
    Var a = self.input(0), b = self.input(1);
    constexpr bool ta = Flags & 1, tb = Flags & 2;
    // Each case is d<G, op(A) op(B)> written out for A and for B.
    if (self.needs(0)) {
        if (!ta && !tb) out[0] = matmul_flags(g, b, 2);      // C = A B     : dA = G B^T
        else if (!ta && tb) out[0] = matmul_flags(g, b, 0);  // C = A B^T   : dA = G B
        else if (ta && !tb) out[0] = matmul_flags(b, g, 2);  // C = A^T B   : dA = B G^T
        else out[0] = matmul_flags(b, g, 3);                 // C = A^T B^T : dA = B^T G^T
    }
    if (self.needs(1)) {
        if (!ta && !tb) out[1] = matmul_flags(a, g, 1);      // dB = A^T G
        else if (!ta && tb) out[1] = matmul_flags(g, a, 1);  // dB = G^T A
        else if (ta && !tb) out[1] = matmul_flags(a, g, 0);  // dB = A G
        else out[1] = matmul_flags(g, a, 3);                 // dB = G^T A^T
    }
}

inline Var matmul_flags(const Var& a, const Var& b, int flags) {
    static const char* names[4] = {"matmul", "matmul_tn", "matmul_nt", "matmul_tt"};
    const bool ta = flags & 1, tb = flags & 2;
    const int m = ta ? a.cols() : a.rows(), ka = ta ? a.rows() : a.cols();
    const int kb = tb ? b.cols() : b.rows(), n = tb ? b.rows() : b.cols();
    if (ka != kb)
        throw ShapeError(std::string("ad::") + names[flags] + ": inner sizes differ (" + shape_str(a) + " and " +
                         shape_str(b) + ")");
    static constexpr BackwardFn backward[4] = {matmul_backward<0>, matmul_backward<1>, matmul_backward<2>,
                                               matmul_backward<3>};
    Node* node = tape().push(names[flags], m, n, backward[flags], {a.node(), b.node()});
    auto A = a.value();
    auto B = b.value();
    auto C = node->mutable_value();
    if (long(m) * n * ka >= gemm_min_work()) {  // the register-blocked kernel (kernels/gemm.hpp)
        kernels::gemm(ta, tb, m, n, ka, A.data(), A.rows(), B.data(), B.rows(), C.data());
        return Var(node);
    }
    switch (flags) {
        case 0: C.noalias() = A * B; break;
        case 1: C.noalias() = A.transpose() * B; break;
        case 2: C.noalias() = A * B.transpose(); break;
        default: C.noalias() = A.transpose() * B.transpose(); break;
    }
    return Var(node);
}
}  // namespace detail

inline Var matmul(const Var& a, const Var& b) { return detail::matmul_flags(a, b, 0); }
inline Var matmul_tn(const Var& a, const Var& b) { return detail::matmul_flags(a, b, 1); }
inline Var matmul_nt(const Var& a, const Var& b) { return detail::matmul_flags(a, b, 2); }

}  // namespace occam::ad
