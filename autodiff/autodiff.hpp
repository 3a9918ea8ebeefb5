// occam's reverse-mode automatic differentiation, in one include.
// What it teaches, file by file: core/ (the tape, custom nodes, scopes, the backward loop, a
// tape printer), ops/ (every op with its backward formula beside it), check/ (how to test a
// gradient), optim.hpp, nn.hpp. The vector kernels behind matmul and
// conv2d live in kernels/.
// Needs only Eigen. Namespace occam::ad. docs/autodiff.md is the guided tour.
#pragma once

#include "core/arena.hpp"
#include "core/tape.hpp"
#include "core/grad.hpp"
#include "core/print.hpp"
#include "ops/declarations.hpp"
#include "ops/elementwise.hpp"
#include "ops/unary.hpp"
#include "ops/spike.hpp"
#include "ops/shape.hpp"
#include "ops/reduce.hpp"
#include "ops/matmul.hpp"
#include "ops/linalg.hpp"
#include "ops/conv.hpp"
#include "random.hpp"
#include "check/gradcheck.hpp"
#include "checkpoint.hpp"
#include "optim.hpp"
#include "nn.hpp"
