// strata::dist: data-parallel building blocks over MPI (cpu tensors) and NCCL (cuda tensors). Not part
// of strata.hpp: it needs <mpi.h> and MPI at link time (CMake: strata::dist, or MPI::MPI_CXX beside
// strata::strata). cuda tensors work everywhere: over MPI through pinned host buffers (the emulator, or a
// GPU build without NCCL), or with NCCL when built with STRATA_CUDA and STRATA_NCCL (CMake:
// strata::dist_nccl, made with -DSTRATA_CUDA=ON when NCCL is found; by hand: -DSTRATA_CUDA -DSTRATA_NCCL,
// link cudart and nccl). One process per GPU: mpirun -np <GPUs>, rank r on cuda(local_rank % GPUs).
//
//   #include <strata/dist.hpp>
//   using namespace strata;  using namespace strata::dist;
//   int main() {
//     ProcessGroup& pg = init_process_group({.timeout_s = 60});   // rank/size from mpirun or RANK/WORLD_SIZE
//     Tensor g = ...;                                             // contiguous, cpu or cuda
//     pg.all_reduce(g, ReduceOp::avg);                            // every rank: the mean over ranks
//     Work w = pg.all_reduce_async(g);  /* compute */  w.wait();  // overlapped
//     pg.broadcast(g, 0);  Tensor all = pg.all_gather(g);  pg.barrier();
//     convert_sync_batchnorm(*model);                            // SyncBatchNorm (dist/sync_batch_norm.hpp)
//   }                                                             // MPI_Finalize at exit
//
//   mpirun --allow-run-as-root --oversubscribe -np 2 ./app
//   STRATA_RENDEZVOUS_DIR=/shared/job RANK=r WORLD_SIZE=2 ./app     (torchrun style: one command per rank)
//
// A collective that does not finish within timeout_s throws strata::Error naming the lost rank(s)
// ("all_reduce: collective #4 did not complete within the timeout of 60 s: rank 1 was lost (...)");
// the group is broken from then on, and at exit the process ends the job with MPI_Abort.
// Open MPI 4.1's mpirun kills every rank as soon as one dies (e.g. SIGKILL), before a survivor can say
// which: add `--mca orte_abort_on_non_zero_status 0` so the survivors run on and report the loss
// (mpirun still exits non-zero). (`--mca orte_enable_recovery 1` works too, but mpirun then exits 0.)
// Ranks joined through the file rendezvous are separate jobs: one dying takes no other down.
#pragma once

#include "strata/dist/env.hpp"
#include "strata/dist/init.hpp"
#include "strata/dist/process_group.hpp"
#include "strata/dist/rendezvous.hpp"
#include "strata/dist/sync_batch_norm.hpp"
#include "strata/dist/work.hpp"
