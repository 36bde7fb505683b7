// MPI glue for the process group: error codes as strata::Error, DType -> MPI_Datatype, ReduceOp -> MPI_Op.
//
// The group's communicators use MPI_ERRORS_RETURN, so a failing MPI call returns a code that
// mpi_check turns into "op: MPI_Xxx failed: <MPI's own message>" instead of aborting the job.
#pragma once

// Only MPI's C API: Open MPI's deprecated C++ bindings (mpicxx.h) warn under -Wextra.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <string>
#include <string_view>

#include "strata/core/dtype.hpp"
#include "strata/core/error.hpp"

namespace strata::dist {

/// How all_reduce combines the ranks' values. avg = sum / world_size (floating dtypes only).
enum class ReduceOp { sum, avg, max, min };

inline constexpr std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::avg: return "avg";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "?";
}

namespace detail {

/// Throws "op: call failed: <MPI's message>" when rc is not MPI_SUCCESS.
inline void mpi_check(int rc, std::string_view op, std::string_view call) {
  if (rc == MPI_SUCCESS) [[likely]] return;
  char msg[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  strata::detail::fail(op, call, " failed with MPI error ", rc, " (", std::string(msg, size_t(len)), ")");
}

/// The MPI type of one element, as the wire sees it. f16/bf16 travel as 16-bit words (reductions
/// convert them to float first); bool as a byte.
inline MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::f16: case DType::bf16: return MPI_UINT16_T;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: case DType::b8: return MPI_UINT8_T;
  }
  return MPI_DATATYPE_NULL;
}

/// The MPI reduction for op (avg reduces with MPI_SUM and divides afterwards).
inline MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: case ReduceOp::avg: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

}  // namespace detail
}  // namespace strata::dist
