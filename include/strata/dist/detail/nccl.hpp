// NCCL glue for the process group: error codes as strata::Error, DType -> ncclDataType_t,
// ReduceOp -> ncclRedOp_t. Only with STRATA_CUDA and STRATA_NCCL on a real GPU build (nvcc, or a host
// compiler linking cudart and libnccl): then STRATA_DIST_NCCL is defined and the ProcessGroup runs its
// collectives on cuda tensors with NCCL. Otherwise (the emulator, or no NCCL) this header defines
// nothing and cuda tensors go through MPI, staged in pinned host memory.
//
//   detail::nccl_check(ncclAllReduce(...), "all_reduce", "ncclAllReduce");   // throws on failure
#pragma once

#include "strata/backend/runtime.hpp"  // defines STRATA_CUDA_EMULATE when there is no real CUDA

#if defined(STRATA_CUDA) && defined(STRATA_NCCL) && !defined(STRATA_CUDA_EMULATE)
#define STRATA_DIST_NCCL 1
#include <nccl.h>

#include <string_view>

#include "strata/core/dtype.hpp"
#include "strata/core/error.hpp"
#include "strata/dist/detail/mpi.hpp"  // ReduceOp

namespace strata::dist::detail {

/// Throws "op: call failed with NCCL error r (NCCL's message)" unless r is ncclSuccess.
inline void nccl_check(ncclResult_t r, std::string_view op, std::string_view call) {
  if (r == ncclSuccess) [[likely]] return;
  strata::detail::fail(op, call, " failed with NCCL error ", int(r), " (", ncclGetErrorString(r), ")");
}

/// The NCCL type of one element (f16/bf16 reduce natively in NCCL; bool travels as a byte).
inline ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: case DType::b8: return ncclUint8;
  }
  return ncclUint8;
}

/// The NCCL reduction (avg is NCCL's own ncclAvg: sum / nranks, NCCL >= 2.10).
inline ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  return ncclSum;
}

}  // namespace strata::dist::detail
#endif
