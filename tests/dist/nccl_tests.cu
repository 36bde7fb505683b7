// strata_dist_nccl_tests: the collectives tests compiled by nvcc with STRATA_CUDA and STRATA_NCCL, so
// that the collectives on cuda tensors run through NCCL on a real GPU (CTest dist_nccl: one process, as
// NCCL runs on one GPU too; label gpu). It exits with 77 (skipped) on a machine without a GPU, so CI
// compiles and links it there. With several GPUs on one machine:
//   mpirun --allow-run-as-root -np <number of GPUs> ./strata_dist_nccl_tests
// (rank r's tensors on cuda(local_rank % device_count()), as DistributedTrainer places a Learner).
#include "main.cpp"
#include "test_collectives.cpp"
#include "cuda_collectives.hpp"

#if !defined(STRATA_DIST_NCCL)
#error "strata_dist_nccl_tests needs STRATA_CUDA and STRATA_NCCL (and nvcc): the NCCL path is what it tests"
#endif
