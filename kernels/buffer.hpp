// What this file teaches: the kernels' scratch memory. Buffers are aligned as Eigen aligns its
// own matrices, so the blocks of eight they hold start on a vector boundary, and they grow but
// never shrink, so a warm meta-step allocates nothing.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <vector>

namespace occam::kernels {

/// Storage aligned as Eigen aligns its matrices (32 bytes for AVX, 64 for AVX-512).
using AlignedVector = std::vector<double, Eigen::aligned_allocator<double>>;

/// Makes room for n values; never shrinks (a resize down and up again would zero the memory).
inline void grow(AlignedVector& b, std::size_t n) {
    if (b.size() < n) b.resize(n);
}

}  // namespace occam::kernels
