// The CUDA language for the emulator: keywords, built-in variables, barriers and warp operations.
//
// Keywords: __global__ __device__ __host__ __launch_bounds__(...) are defined away (__global__ as
// [[gnu::unused]], so an unused kernel in a header does not warn), __forceinline__ is `inline`,
// __align__(n) is an alignment attribute, and __shared__ is `static thread_local`: a worker thread
// runs one block at a time to completion, so a thread-local is exactly per block. (Shared memory is
// not zeroed between blocks, as on a GPU.) __restrict__ is GCC's own; __noinline__ is left alone
// (libstdc++ uses it as an attribute name). Dynamic shared memory goes through
// STRATA_DYNAMIC_SHARED(T, name) from backend/cuda_compat.hpp.
//
// Built-ins: threadIdx blockIdx blockDim gridDim (read-only references to the running fiber's and
// block's values) and warpSize. The lane of a thread is its linear index within the block mod 32,
// as on the GPU (x fastest, then y, then z).
//
// __syncthreads() (and _count/_and/_or) and __syncwarp(mask), __shfl_sync __shfl_up_sync
// __shfl_down_sync __shfl_xor_sync (any trivially copyable type of at most 8 bytes, width a power
// of two <= 32), __ballot_sync __any_sync __all_sync __activemask. The mask says which lanes take
// part; the semantics are grid.hpp's. A source lane outside the mask, or no longer running, gives
// the calling lane its own value (undefined on a GPU).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "strata/backend/emu/dim3.hpp"
#include "strata/backend/emu/grid.hpp"
#include "strata/core/error.hpp"

#define __global__ __attribute__((unused))
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local

namespace strata::emu::detail {
STRATA_EMU_HOT const uint3& thread_idx() { return tl_lane->thread_idx; }
STRATA_EMU_HOT const uint3& block_idx() { return tl_worker->block_idx; }
STRATA_EMU_HOT const dim3& block_dim() { return tl_worker->block_dim; }
STRATA_EMU_HOT const dim3& grid_dim() { return tl_worker->grid_dim; }
STRATA_EMU_HOT unsigned char* dynamic_shared() { return tl_worker->dynamic_shared(); }

template <class T>
STRATA_EMU_HOT uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                "warp shuffles move trivially copyable values of at most 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
STRATA_EMU_HOT T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

inline void check_width(int width, const char* op) {
  STRATA_CHECK(width >= 1 && width <= 32 && (width & (width - 1)) == 0, op, "got width ", width,
               ", expected a power of two in [1, 32]");
}

template <class T>
STRATA_EMU_HOT T shuffle(uint32_t mask, T var, int src, const char* op) {
  return from_bits<T>(
      tl_worker->warp_op(*tl_lane, WarpOp::shfl, mask, to_bits(var), src, op));
}
}  // namespace strata::emu::detail

#define threadIdx (::strata::emu::detail::thread_idx())
#define blockIdx (::strata::emu::detail::block_idx())
#define blockDim (::strata::emu::detail::block_dim())
#define gridDim (::strata::emu::detail::grid_dim())

inline constexpr int warpSize = 32;

// --- barriers --------------------------------------------------------------------------------

STRATA_EMU_HOT void __syncthreads() { strata::emu::detail::tl_worker->sync_block(*strata::emu::detail::tl_lane, 0); }
/// Number of threads of the block whose pred != 0.
inline int __syncthreads_count(int pred) {
  return strata::emu::detail::tl_worker->sync_block(*strata::emu::detail::tl_lane, pred);
}
inline int __syncthreads_and(int pred) {
  int arrived = 0;
  const int count =
      strata::emu::detail::tl_worker->sync_block(*strata::emu::detail::tl_lane, pred, &arrived);
  return count == arrived;
}
inline int __syncthreads_or(int pred) { return __syncthreads_count(pred) > 0; }

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  using namespace strata::emu::detail;
  tl_worker->warp_op(*tl_lane, WarpOp::sync, mask, 0, 0, "__syncwarp");
}

/// The lanes of the calling warp that have not returned.
inline unsigned __activemask() {
  using namespace strata::emu::detail;
  return tl_worker->live_lanes(*tl_lane);
}

// --- warp shuffles and votes ------------------------------------------------------------------

/// The value of `var` in lane src_lane (mod width) of the caller's width-lane segment.
template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  using namespace strata::emu::detail;
  check_width(width, "__shfl_sync");
  const int lane = tl_worker->lane_id(*tl_lane);
  return shuffle(mask, var, (lane & ~(width - 1)) | (src_lane & (width - 1)), "__shfl_sync");
}

/// The value of `var` in lane (lane - delta), or the caller's own if that leaves its segment.
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  using namespace strata::emu::detail;
  check_width(width, "__shfl_up_sync");
  const int lane = tl_worker->lane_id(*tl_lane);
  const int src = unsigned(lane & (width - 1)) >= delta ? lane - int(delta) : lane;
  return shuffle(mask, var, src, "__shfl_up_sync");
}

/// The value of `var` in lane (lane + delta), or the caller's own if that leaves its segment.
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  using namespace strata::emu::detail;
  check_width(width, "__shfl_down_sync");
  const int lane = tl_worker->lane_id(*tl_lane);
  const int src = unsigned(lane & (width - 1)) + delta < unsigned(width) ? lane + int(delta) : lane;
  return shuffle(mask, var, src, "__shfl_down_sync");
}

/// The value of `var` in lane (lane ^ lane_mask); the caller's own if that is in a later segment.
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  using namespace strata::emu::detail;
  check_width(width, "__shfl_xor_sync");
  const int lane = tl_worker->lane_id(*tl_lane);
  int src = lane ^ (lane_mask & 31);
  if ((src & ~(width - 1)) > (lane & ~(width - 1))) src = lane;
  return shuffle(mask, var, src, "__shfl_xor_sync");
}

/// Bit i set when lane i of the mask passed pred != 0.
inline unsigned __ballot_sync(unsigned mask, int pred) {
  using namespace strata::emu::detail;
  return unsigned(tl_worker->warp_op(*tl_lane, WarpOp::ballot, mask, pred != 0, 0, "__ballot_sync"));
}
inline int __any_sync(unsigned mask, int pred) {
  using namespace strata::emu::detail;
  return int(tl_worker->warp_op(*tl_lane, WarpOp::any, mask, pred != 0, 0, "__any_sync"));
}
inline int __all_sync(unsigned mask, int pred) {
  using namespace strata::emu::detail;
  return int(tl_worker->warp_op(*tl_lane, WarpOp::all, mask, pred != 0, 0, "__all_sync"));
}
