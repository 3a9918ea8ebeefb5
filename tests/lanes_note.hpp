// The "AVX2 copy == AVX-512 copy" tests need a CPU with AVX-512 to compare two copies; on any
// other CPU both calls run the AVX2 copy, and the test says so instead of passing silently.
#pragma once

#include <doctest/doctest.h>

#include "kernels/lanes.hpp"

inline void note_when_copies_are_one() {
    if (!occam::lanes::wide_lanes_available())
        MESSAGE("this CPU has no AVX-512: the AVX2 copy is compared with itself (nothing to compare)");
}
