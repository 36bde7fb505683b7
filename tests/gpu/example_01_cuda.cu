// example_01_fashion_mnist_cuda: the flagship example (examples/01_fashion_mnist.cpp) compiled by nvcc and
// run natively with --cuda (CTest label `gpu`; exit 77, skipped, without a device). Built with
// strata_gpu_ops_tests (tests/gpu/CMakeLists.txt: where a GPU is present, or -DSTRATA_GPU_OPS_TESTS=ON).
#include <cstdio>
#include <string>
#include <vector>

#define main example_01_main
#include "../../examples/01_fashion_mnist.cpp"
#undef main

int main(int argc, char** argv) {
  if (strata::cuda::device_count() == 0) {
    std::printf("example_01_fashion_mnist_cuda: no CUDA device, skipped\n");
    return 77;
  }
  std::vector<char*> args(argv, argv + argc);
  std::string cuda_flag = "--cuda";
  args.push_back(cuda_flag.data());
  return example_01_main(int(args.size()), args.data());
}
