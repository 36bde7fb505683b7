// strata_gpu_tests: tests/test_emu.cpp compiled by nvcc, so the emulator's checks run natively on
// a GPU (CTest label `gpu`). Exits with 77 (CTest: skipped) when the machine has no GPU, so the
// nvcc build can be compiled and linked in CI without one.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "test_emu.cpp"
#include "test_cuda_fused.cpp"  // the fused kernels against their CPU twins
#include "kernels_nvcc.cuh"       // the other device launchers, instantiated (compile-only coverage in CI)

int main(int argc, char** argv) {
  if (strata::cuda::device_count() == 0) {
    std::printf("strata_gpu_tests: no CUDA device, skipped\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
