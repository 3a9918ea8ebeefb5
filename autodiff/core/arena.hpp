// What this file teaches: a bump allocator. Allocation is a pointer increment; freeing is
// rewinding to a saved mark, so a whole meta-step's worth of tape memory is reclaimed at once
// and the next step reuses the same blocks (no malloc in the hot loop once warmed up).
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace occam::ad {

/// Doubling list of memory blocks with mark/rewind (the idea of Stan Math's stack_alloc).
/// Blocks are kept after a rewind so that repeated meta-steps allocate nothing new. Doubling
/// stops at kMaxGrowth: past it a block's unused tail (an allocation that does not fit moves on
/// to the next block) could hold hundreds of MB that a later, differently shaped pass over the
/// same blocks faults in (fig6's 281 MB tape reserved 520 MB in blocks of up to 256 MB).
class Arena {
public:
    static constexpr std::size_t kMaxGrowth = std::size_t(64) << 20;

    /// Where the arena stood at some moment; pass it to rewind() to free everything after it.
    struct Mark {
        std::size_t block = 0;
        std::size_t offset = 0;
        std::size_t used = 0;
    };

    explicit Arena(std::size_t first_block_bytes = 1 << 20)
        : next_block_bytes_(first_block_bytes), first_block_bytes_(first_block_bytes) {}
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;

    /// Every block starts on a 64-byte boundary, so an offset aligned within a block is an
    /// address aligned in memory: where a value lands modulo 64 depends only on the sequence of
    /// allocations, never on where malloc put the block (Eigen's vectorised loops peel scalar
    /// steps up to an aligned address, so that would change results in the last bits).
    static constexpr std::size_t kMaxAlign = 64;

    /// Blocks of at least this many bytes start on a boundary of it and, on Linux, ask for
    /// transparent huge pages (`madvise`; systems set to "madvise" give none otherwise). The
    /// kernels read a tape value a column of n images at a time, each column 16 KB from the
    /// last for fig6's 2000 images: with 4 KB pages every column is a page of its own and a TLB
    /// miss (fig6's meta-step about 5% faster; on a VM whose host backs memory lazily the first
    /// touch of fresh huge pages cost 1-3 s a process: bench/NOTES.md).
    static constexpr std::size_t kHugePage = std::size_t(2) << 20;

    /// `bytes` bytes aligned to `align` (a power of two, at most 64).
    void* allocate(std::size_t bytes, std::size_t align = 64) {
        used_ = round_up(used_, align) + bytes;
        if (!blocks_.empty()) {
            Block& b = blocks_[current_];
            std::size_t start = round_up(offset_, align);
            if (start + bytes <= b.size) {
                offset_ = start + bytes;
                return b.data() + start;
            }
        }
        return allocate_slow(bytes);
    }

    /// Typed helper: uninitialised storage for n objects of trivially destructible T.
    template <class T>
    T* allocate_array(std::size_t n) {
        static_assert(std::is_trivially_destructible_v<T>, "the arena never runs destructors");
        return static_cast<T*>(allocate(n * sizeof(T) + (n == 0), alignof(T) < 64 ? 64 : alignof(T)));
    }

    Mark mark() const { return {current_, offset_, used_}; }

    /// Frees (for reuse) everything allocated after `m`. Blocks stay reserved.
    void rewind(const Mark& m) {
        update_peak();
        current_ = m.block;
        offset_ = m.offset;
        used_ = m.used;
    }

    /// Bytes handed out (with their alignment padding) and not yet rewound: the "in use"
    /// counter the tests watch and the tape memory the logs report. It counts as if all
    /// allocations sat in one block, so it does not depend on the blocks' sizes, which depend
    /// on what the thread ran before.
    std::size_t bytes_in_use() const { return used_; }

    /// Bytes reserved from the system, in use or not.
    std::size_t bytes_reserved() const {
        std::size_t total = 0;
        for (const Block& b : blocks_) total += b.size;
        return total;
    }

    /// Largest bytes_in_use() seen since the last reset_peak().
    std::size_t peak_bytes() const { return std::max(peak_, bytes_in_use()); }
    void reset_peak() { peak_ = bytes_in_use(); }

    /// Returns the blocks above the current one to the system (after a very deep unroll, say).
    void release_unused() {
        if (blocks_.empty()) return;
        blocks_.resize(current_ + 1);
        next_block_bytes_ = std::min(blocks_.back().size * 2, growth_cap());
    }

private:
    /// Frees a block with the alignment it was allocated with.
    struct Free {
        std::align_val_t align;
        void operator()(std::byte* p) const { ::operator delete(p, align); }
    };
    struct Block {
        std::unique_ptr<std::byte, Free> owner;
        std::size_t size;
        std::byte* data() const { return owner.get(); }
    };

    /// A block of `bytes` (uninitialised: untouched pages are never faulted in).
    static Block new_block(std::size_t bytes) {
        const std::align_val_t align{bytes >= kHugePage ? kHugePage : kMaxAlign};
        Block b{std::unique_ptr<std::byte, Free>(static_cast<std::byte*>(::operator new(bytes, align)), Free{align}),
                bytes};
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (bytes >= kHugePage) madvise(b.data(), bytes, MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
        return b;
    }

    static std::size_t round_up(std::size_t n, std::size_t align) { return (n + align - 1) & ~(align - 1); }

    /// The largest block doubling makes: kMaxGrowth, or a larger first block's size.
    std::size_t growth_cap() const { return std::max(kMaxGrowth, first_block_bytes_); }

    void* allocate_slow(std::size_t bytes) {
        // Move to the next block that fits (blocks start aligned, so the allocation starts at 0).
        update_peak();
        std::size_t next = blocks_.empty() ? 0 : current_ + 1;
        while (next < blocks_.size() && blocks_[next].size < bytes) ++next;
        if (next >= blocks_.size()) {
            while (next_block_bytes_ < bytes && next_block_bytes_ < growth_cap()) next_block_bytes_ *= 2;
            next_block_bytes_ = std::max(next_block_bytes_, bytes);  // past the cap: the allocation's own size
            blocks_.push_back(new_block(next_block_bytes_));
            next_block_bytes_ = std::min(next_block_bytes_ * 2, growth_cap());
            next = blocks_.size() - 1;
        }
        current_ = next;
        offset_ = bytes;
        update_peak();
        return blocks_[current_].data();
    }

    void update_peak() {
        std::size_t u = bytes_in_use();
        if (u > peak_) peak_ = u;
    }

    std::vector<Block> blocks_;
    std::size_t current_ = 0;
    std::size_t offset_ = 0;
    std::size_t used_ = 0;  ///< see bytes_in_use()
    std::size_t next_block_bytes_, first_block_bytes_;
    std::size_t peak_ = 0;
};

}  // namespace occam::ad
