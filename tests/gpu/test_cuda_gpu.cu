// strata_gpu_ops_tests: the tensor-level cuda tests (tests/test_cuda_*.cpp), which strata_tests runs on
// the emulator, compiled by nvcc so they run natively on a GPU (CTest label `gpu`; exit 77, skipped,
// without a device). Built where a GPU is present (see tests/gpu/CMakeLists.txt).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "test_cuda_tensor.cpp"
#include "test_cuda_elementwise.cpp"
#include "test_cuda_ops.cpp"
#include "test_cuda_reduce.cpp"
#include "test_cuda_matmul.cpp"
#include "test_cuda_dnn.cpp"
#include "test_cuda_normpool.cpp"
#include "test_cuda_index.cpp"
#include "test_cuda_softmax.cpp"
#include "test_cuda_train.cpp"
#include "test_cuda_sweep.cpp"
#include "test_cuda_augment.cpp"

int main(int argc, char** argv) {
  if (strata::cuda::device_count() == 0) {
    std::printf("strata_gpu_ops_tests: no CUDA device, skipped\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
