// The one include that switches the cuda device on: the caching allocator and every op family's
// cuda path (each fills its op's CudaHook, tensor/detail/cuda_hook.hpp, at static initialization).
//
//   #include <strata/strata.hpp>
//   #include <strata/backend/cuda.hpp>
//   Tensor x = randn({64, 10}, {.device = kCUDA});   // the same numbers as on the cpu
//   Tensor y = relu(x * 2 + 1).sum();                 // runs the cuda kernels
//
// With g++ (no STRATA_CUDA) the kernels run on the emulator (backend/emu/), device memory being
// host memory: that is how CI runs the whole cuda path without a GPU. With STRATA_CUDA the same
// sources are compiled by nvcc and run on the GPU.
#pragma once

#include "strata/backend/device_allocator.hpp"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/backend/cuda/blas.hpp"
#include "strata/backend/cuda/loss.hpp"
#include "strata/backend/cuda/reduce.hpp"
#include "strata/backend/cuda/norm.hpp"
#include "strata/backend/cuda/pool.hpp"
#include "strata/backend/cuda/optim.hpp"
#include "strata/backend/cuda/amp.hpp"
#include "strata/backend/cuda/dnn.hpp"
#include "strata/backend/cuda/index.hpp"
#include "strata/backend/cuda/softmax.hpp"
#include "strata/backend/cuda/dropout.hpp"
#include "strata/backend/cuda/augment.hpp"
