// strata::cuda::launch: the one way strata launches a CUDA kernel (never `<<<>>>` in kernel code).
//
//   cuda::launch(kernel, grid, block, shared_bytes, stream, args...);
//   cuda::set_max_dynamic_shared(kernel, bytes);   // opt in to more than 48 KiB of dynamic shared
//   cuda::launch_count();                          // launches so far (tests check fusion with it)
//
// Under nvcc it is `kernel<<<grid, block, shared_bytes, stream>>>(args...)` followed by a check of
// cudaGetLastError; under the emulator it runs the grid on the CPU (emu/grid.hpp) and returns when
// every block has finished. The arguments are converted to the kernel's parameter types and
// copied, as CUDA copies kernel parameters. Before launching it checks the configuration and throws
// strata::Error naming what is wrong:
//   - every dimension >= 1; block.x, block.y <= 1024, block.z <= 64, at most 1024 threads a block;
//     grid.x < 2^31, grid.y, grid.z <= 65535;
//   - shared_bytes (dynamic shared memory) <= 48 KiB, or <= the limit set for this kernel with
//     set_max_dynamic_shared (at most 227 KiB, sm_90's limit; sm_80's is 163 KiB).
// Under the emulator an exception thrown by the kernel, a deadlock at a barrier and a misused warp
// operation become strata::Error too, naming the block and thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <ostream>
#include <tuple>
#include <type_traits>
#include <utility>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/runtime.hpp"
#include "strata/core/error.hpp"

namespace strata::cuda {

inline constexpr uint64_t kMaxThreadsPerBlock = 1024;
inline constexpr size_t kDefaultMaxDynamicShared = 48 * 1024;  // without opting in
inline constexpr size_t kMaxDynamicShared = 227 * 1024;        // opt-in limit on sm_90

namespace detail {

struct Dims {  // prints a dim3 as (x, y, z)
  dim3 d;
  friend std::ostream& operator<<(std::ostream& os, Dims v) {
    return os << '(' << v.d.x << ", " << v.d.y << ", " << v.d.z << ')';
  }
};

inline std::mutex& shared_limits_mutex() {
  static std::mutex m;
  return m;
}
inline std::map<const void*, size_t>& shared_limits() {
  static std::map<const void*, size_t> limits;  // kernel -> opted-in dynamic shared bytes
  return limits;
}

inline size_t max_dynamic_shared(const void* kernel) {
  std::lock_guard g(shared_limits_mutex());
  const auto it = shared_limits().find(kernel);
  return it == shared_limits().end() ? kDefaultMaxDynamicShared : it->second;
}

inline void check_launch(dim3 grid, dim3 block, size_t shared_bytes, size_t shared_limit) {
  STRATA_CHECK(grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && block.x >= 1 && block.y >= 1 && block.z >= 1,
               "launch", "got grid ", Dims{grid}, " and block ", Dims{block},
               ", expected every dimension >= 1");
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  STRATA_CHECK(threads <= kMaxThreadsPerBlock, "launch", "got block ", Dims{block}, " = ", threads,
               " threads, expected at most ", kMaxThreadsPerBlock, " threads per block");
  STRATA_CHECK(block.x <= 1024 && block.y <= 1024 && block.z <= 64, "launch", "got block ", Dims{block},
               ", expected block.x and block.y <= 1024 and block.z <= 64");
  STRATA_CHECK(grid.x <= 0x7fffffffu && grid.y <= 65535 && grid.z <= 65535, "launch", "got grid ",
               Dims{grid}, ", expected grid.x < 2^31 and grid.y, grid.z <= 65535");
  STRATA_CHECK(shared_bytes <= shared_limit, "launch", "got ", shared_bytes,
               " bytes of dynamic shared memory, expected at most ", shared_limit,
               " (raise a kernel's limit with set_max_dynamic_shared, up to ", kMaxDynamicShared, ")");
}

}  // namespace detail

/// Lets `kernel` be launched with up to `bytes` of dynamic shared memory (CUDA's
/// cudaFuncAttributeMaxDynamicSharedMemorySize).
template <class... Params>
void set_max_dynamic_shared(void (*kernel)(Params...), size_t bytes) {
  STRATA_CHECK(bytes <= kMaxDynamicShared, "set_max_dynamic_shared", "got ", bytes,
               " bytes, expected at most ", kMaxDynamicShared, " bytes of dynamic shared memory");
  const void* key = reinterpret_cast<const void*>(kernel);
#if !defined(STRATA_CUDA_EMULATE)
  detail::check_cuda(cudaFuncSetAttribute(key, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
                     "set_max_dynamic_shared", "cudaFuncSetAttribute");
#endif
  std::lock_guard g(detail::shared_limits_mutex());
  detail::shared_limits()[key] = std::max(bytes, kDefaultMaxDynamicShared);
}

namespace detail {
inline std::atomic<uint64_t> launches{0};
}  // namespace detail

/// Kernels launched through launch() by this process so far (for tests and profiling: a fused or
/// multi-tensor path shows up as fewer launches).
inline uint64_t launch_count() { return detail::launches.load(std::memory_order_relaxed); }

/// Runs kernel(args...) on a grid of `grid` blocks of `block` threads with `shared_bytes` of
/// dynamic shared memory, on `stream` (finished on return under the emulator).
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, Stream stream,
            Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "launch: pass one argument per kernel parameter");
  detail::launches.fetch_add(1, std::memory_order_relaxed);
  detail::check_launch(grid, block, shared_bytes,
                       shared_bytes > kDefaultMaxDynamicShared
                           ? detail::max_dynamic_shared(reinterpret_cast<const void*>(kernel))
                           : kDefaultMaxDynamicShared);
#if defined(STRATA_CUDA_EMULATE)
  (void)stream;
  using Values = std::tuple<std::decay_t<Params>...>;
  struct Call {
    void (*kernel)(Params...);
    Values values;
  };
  const Call call{kernel, Values(std::forward<Args>(args)...)};
  emu::detail::run_grid(
      grid, block, shared_bytes,
      [](const void* c) {
        const auto& call = *static_cast<const Call*>(c);
        std::apply(call.kernel, call.values);
      },
      &call);
#else
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
  detail::check_cuda(cudaGetLastError(), "launch", "the kernel launch");
#endif
}

}  // namespace strata::cuda
