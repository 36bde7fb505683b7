// Explicit instantiations of the device launchers that strata_gpu_tests (built by nvcc in CI) does
// not otherwise use, so CI compiles these kernels natively for sm_80/sm_90 on every change. The
// tensor-level tests (strata_gpu_ops_tests) use them too but put the whole library through nvcc, so
// they are built only where a GPU is present (tests/gpu/CMakeLists.txt). Compile-only: nothing here runs.
#pragma once

#include <cstdint>

#include "kernels/cuda/augment.cuh"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/index.cuh"
#include "kernels/cuda/softmax.cuh"

namespace strata::cuda {

#define STRATA_NVCC_FLOATING(M) M(float) M(double) M(f16_t) M(bf16_t)

// softmax / log_softmax
#define STRATA_NVCC_SOFTMAX(T)                                                                          \
  template void softmax_fwd<T>(const T*, T*, int64_t, int64_t, int64_t, bool, Stream);                 \
  template void softmax_bwd<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, bool, Stream);
STRATA_NVCC_FLOATING(STRATA_NVCC_SOFTMAX)

// batch augmentation
#define STRATA_NVCC_AUGMENT(T)                                                                          \
  template void grid_sample<T>(const T*, T*, const double*, const GridSampleDims&, Stream);              \
  template void lighting<T>(const T*, T*, int64_t, int64_t, const double*, const double*, Stream);      \
  template void random_erase<T>(T*, int64_t, int64_t, int64_t, int64_t, const EraseRect*, int64_t, bool, \
                                std::array<uint32_t, 2>, Stream);
STRATA_NVCC_FLOATING(STRATA_NVCC_AUGMENT)
template void grid_sample<int64_t>(const int64_t*, int64_t*, const double*, const GridSampleDims&, Stream);
template void grid_sample<uint8_t>(const uint8_t*, uint8_t*, const double*, const GridSampleDims&, Stream);

// index ops
#define STRATA_NVCC_INDEX(T)                                                                            \
  template void index_gather<T, int64_t>(const GatherGeom&, T*, const T*, const int64_t*, Stream);      \
  template void index_gather<T, int32_t>(const GatherGeom&, T*, const T*, const int32_t*, Stream);      \
  template void index_scatter_add<T, int64_t>(const ScatterGeom&, T*, const T*, const int64_t*, Stream); \
  template void index_scatter_add<T, int32_t>(const ScatterGeom&, T*, const T*, const int32_t*, Stream);
STRATA_NVCC_FLOATING(STRATA_NVCC_INDEX)
STRATA_NVCC_INDEX(int64_t)
template void one_hot<int64_t>(int64_t, const int64_t*, int64_t, int64_t*, Stream);
template void one_hot<int32_t>(int64_t, const int32_t*, int64_t, int64_t*, Stream);

#undef STRATA_NVCC_INDEX
#undef STRATA_NVCC_AUGMENT
#undef STRATA_NVCC_SOFTMAX
#undef STRATA_NVCC_FLOATING

}  // namespace strata::cuda
