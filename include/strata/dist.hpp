// strata::dist: data-parallel building blocks over MPI (CPU tensors). Not part of strata.hpp:
// it needs <mpi.h> and MPI at link time (CMake: strata::dist, or MPI::MPI_CXX beside strata::strata).
//
//   #include <strata/dist.hpp>
//   using namespace strata::dist;
//   int main() {
//     ProcessGroup& pg = init_process_group({.timeout_s = 60});   // rank/size from mpirun or RANK/WORLD_SIZE
//     Tensor g = ...;                                             // contiguous cpu tensor
//     pg.all_reduce(g, ReduceOp::avg);                            // every rank: the mean over ranks
//     Work w = pg.all_reduce_async(g);  /* compute */  w.wait();  // overlapped
//     pg.broadcast(g, 0);  Tensor all = pg.all_gather(g);  pg.barrier();
//   }                                                             // MPI_Finalize at exit
//
//   mpirun --allow-run-as-root --oversubscribe -np 2 ./app
//
// A collective that does not finish within timeout_s throws strata::Error naming the rank(s) that
// never reached it ("all_reduce: rank 1 was lost: ..."); the group is broken from then on.
// Open MPI's mpirun kills every rank as soon as one dies by a signal, before a survivor can report;
// see process_group.hpp for the flags that let the survivors see the loss.
#pragma once

#include "strata/dist/env.hpp"
#include "strata/dist/init.hpp"
#include "strata/dist/process_group.hpp"
#include "strata/dist/work.hpp"
