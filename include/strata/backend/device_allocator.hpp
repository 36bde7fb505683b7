// The cuda caching allocator, and the header that switches cuda tensors on.
//
// Including this header registers the cuda backend with core (core/storage.hpp's cuda_backend()
// table, filled at static initialization), so Tensor::empty(shape, dtype, Device::cuda(0)) and
// to(x, Device::cuda()) work. It includes only backend/runtime.hpp (no CUDA kernel names), so any
// translation unit may include it; with STRATA_CUDA it needs the CUDA runtime, else it runs on the
// emulator, where device memory is host memory.
//
// Like PyTorch's CUDACachingAllocator, simplified: a released block goes on a free list of its
// device, keyed by its rounded size (512-byte multiples up to 1 MiB, then 4 size classes per
// power of two, so at most 25% slack), and the next request of that size class takes it back
// without calling cudaMalloc. No splitting or merging of blocks, no per-stream pools: every
// tensor op runs on the default stream today, so a block freed on the host may be reused by the
// next op in stream order. When cuda::malloc fails, the device's cache is freed and it tries once
// more.
//
//   MemoryStats s = cuda_memory_stats(0);   // in_use, peak, cached (bytes, rounded sizes)
//   cuda_empty_cache();                     // cudaFree every cached block of every device
//   cuda_pinned_memory_stats();             // the cache of pinned host blocks (x.pin_memory())
//   cuda_reset_peak_memory_stats(0);
#pragma once

#include <bit>
#include <mutex>
#include <vector>

#include "strata/backend/runtime.hpp"
#include "strata/core/storage.hpp"

namespace strata {

/// The caching allocator for device memory (one process-wide instance: cuda_caching_allocator()).
class CudaCachingAllocator {
 public:
  /// Size class: a 512-byte multiple up to 1 MiB, above that 4 classes per power of two.
  static size_t round_size(size_t n) {
    constexpr size_t kSmall = size_t(1) << 20;
    if (n <= kSmall) return (n + 511) & ~size_t(511);
    const size_t step = std::bit_floor(n - 1) / 4;  // n-1 in [p, 2p)
    return (n + step - 1) / step * step;
  }

  /// A block of at least nbytes on `device` (nullptr for 0 bytes).
  void* allocate(size_t nbytes, int device) {
    const int n = cuda::device_count();
    STRATA_CHECK(device >= 0 && device < n, "cuda allocator", "got device cuda:", device,
                 ", expected an index in [0, ", n, ")");
    if (nbytes == 0) return nullptr;
    const size_t size = round_size(nbytes);
    {
      std::lock_guard lock(mutex_);
      if (void* p = at(device).take(size)) return p;
    }
    void* p = nullptr;
    try {
      p = device_malloc(size, device);
    } catch (const Error&) {  // out of memory: give the cache back and try once more
      empty_cache(device);
      p = device_malloc(size, device);
    }
    std::lock_guard lock(mutex_);
    at(device).note_alloc(size);
    return p;
  }

  /// Puts a block from allocate(nbytes, device) on its free list.
  void release(void* p, size_t nbytes, int device) {
    if (!p) return;
    const size_t size = round_size(nbytes);
    std::lock_guard lock(mutex_);
    at(device).put(p, size);
  }

  /// Frees the cached blocks of `device` (all devices for -1).
  void empty_cache(int device = -1) {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < devices_.size(); ++i) {
      if (device >= 0 && int(i) != device) continue;
      devices_[i].clear([i](void* p) { device_free(p, int(i)); });
    }
  }

  MemoryStats stats(int device) {
    std::lock_guard lock(mutex_);
    return at(device).stats();
  }
  void reset_peak(int device) {
    std::lock_guard lock(mutex_);
    at(device).reset_peak();
  }

 private:
  BlockCache& at(int device) {
    STRATA_CHECK(device >= 0 && device < cuda::device_count(), "cuda allocator", "got device cuda:", device,
                 ", expected an index in [0, ", cuda::device_count(), ")");
    if (size_t(device) >= devices_.size()) devices_.resize(size_t(device) + 1);
    return devices_[size_t(device)];
  }
  // cudaMalloc/cudaFree act on the current device: switch to `device` for the call
  struct DeviceGuard {
    int prev;
    explicit DeviceGuard(int device) : prev(cuda::get_device()) {
      if (prev != device) cuda::set_device(device);
    }
    ~DeviceGuard() {
      try {
        if (cuda::get_device() != prev) cuda::set_device(prev);
      } catch (const Error&) {  // a destructor must not throw; the next CUDA call reports the fault
      }
    }
  };
  static void* device_malloc(size_t size, int device) {
    DeviceGuard guard(device);
    return cuda::malloc(size);
  }
  static void device_free(void* p, int device) {
    DeviceGuard guard(device);
    cuda::free(p);
  }

  std::mutex mutex_;
  std::vector<BlockCache> devices_;  // by device index
};

inline CudaCachingAllocator& cuda_caching_allocator() {
  static auto* a = new CudaCachingAllocator();  // never destroyed: storages may outlive static teardown
  return *a;
}

/// Memory counters of cuda device `device` (bytes, in rounded block sizes).
inline MemoryStats cuda_memory_stats(int device = 0) { return cuda_caching_allocator().stats(device); }
/// Frees every cached device block (memory in use stays).
inline void cuda_empty_cache() { cuda_caching_allocator().empty_cache(); }
/// Sets the peak of `device` to what is in use now.
inline void cuda_reset_peak_memory_stats(int device = 0) { cuda_caching_allocator().reset_peak(device); }

/// A cache of page-locked host blocks (cudaMallocHost costs about a millisecond, so pinning every
/// batch needs a cache): free lists by the device allocator's size classes, never given back
/// except by empty_cache(). Under the emulator the blocks are ordinary heap memory.
class CudaPinnedAllocator {
 public:
  void* allocate(size_t nbytes) {
    if (nbytes == 0) return nullptr;
    const size_t size = CudaCachingAllocator::round_size(nbytes);
    {
      std::lock_guard lock(mutex_);
      if (void* p = cache_.take(size)) return p;
    }
    void* p = nullptr;
    try {
      p = cuda::malloc_host(size);
    } catch (const Error&) {  // out of page-locked memory: give the cache back and try once more
      empty_cache();
      p = cuda::malloc_host(size);
    }
    std::lock_guard lock(mutex_);
    cache_.note_alloc(size);
    return p;
  }
  void release(void* p, size_t nbytes) {
    if (!p) return;
    const size_t size = CudaCachingAllocator::round_size(nbytes);
    std::lock_guard lock(mutex_);
    cache_.put(p, size);
  }
  void empty_cache() {
    std::lock_guard lock(mutex_);
    cache_.clear([](void* p) { cuda::free_host(p); });
  }
  MemoryStats stats() {
    std::lock_guard lock(mutex_);
    return cache_.stats();
  }

 private:
  std::mutex mutex_;
  BlockCache cache_;
};

inline CudaPinnedAllocator& cuda_pinned_allocator() {
  static auto* a = new CudaPinnedAllocator();  // never destroyed, as the device allocator
  return *a;
}
/// Counters of the pinned host cache (bytes, rounded block sizes).
inline MemoryStats cuda_pinned_memory_stats() { return cuda_pinned_allocator().stats(); }

namespace detail {
/// Fills core's cuda_backend() table; runs once, at static initialization of the program.
inline bool register_cuda_backend() {
  DeviceBackend& b = cuda_backend();
  b.allocate = [](size_t nbytes, int device) { return cuda_caching_allocator().allocate(nbytes, device); };
  b.release = [](void* p, size_t nbytes, int device) { cuda_caching_allocator().release(p, nbytes, device); };
  b.copy = [](void* dst, const void* src, size_t nbytes) { cuda::memcpy(dst, src, nbytes); };
  b.allocate_pinned = [](size_t nbytes) { return cuda_pinned_allocator().allocate(nbytes); };
  b.release_pinned = [](void* p, size_t nbytes) { cuda_pinned_allocator().release(p, nbytes); };
  return true;
}
inline const bool cuda_backend_registered = register_cuda_backend();
}  // namespace detail

}  // namespace strata
