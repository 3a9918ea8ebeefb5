// What this file teaches: the kernels' scratch memory. Buffers start on a cache line (64 bytes,
// the width of an AVX-512 register), so a block of eight they hold is one load, not two halves
// of two lines, and they grow but never shrink, so a warm meta-step allocates nothing.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace occam::kernels {

/// An allocator on 64-byte boundaries. Eigen's own aligns to its widest packet of the build (32
/// bytes for AVX2), and a block of eight at 32 mod 64 straddles two cache lines: the weight
/// gradient of the meta-learner's first layer ran 1.7x slower with its inputs there.
template <class T>
struct CacheAligned {
    using value_type = T;
    static constexpr std::align_val_t kAlign{64};
    CacheAligned() = default;
    template <class U>
    CacheAligned(const CacheAligned<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, kAlign); }
    template <class U>
    bool operator==(const CacheAligned<U>&) const noexcept {
        return true;
    }
};

/// The kernels' scratch: doubles on 64-byte boundaries.
using AlignedVector = std::vector<double, CacheAligned<double>>;

/// Makes room for n values; never shrinks (a resize down and up again would zero the memory).
inline void grow(AlignedVector& b, std::size_t n) {
    if (b.size() < n) b.resize(n);
}

}  // namespace occam::kernels
