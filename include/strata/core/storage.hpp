// Storage: a reference-counted block of device memory that tensors view.
//
// Host memory comes from a caching pool: blocks are 64-byte aligned (one cache line, one AVX-512
// register), rounded up to a size class (4 classes per power of two, so at most 25% slack), and kept
// on a free list when released, so a training step that allocates the same sizes every batch stops
// calling the system allocator after the first one. `memory_stats()` reports bytes in use, the peak
// and bytes cached; `empty_cache()` returns cached blocks to the system. The free lists and counters
// are a BlockCache, which the cuda device and pinned allocators (backend/device_allocator.hpp) use too.
//
// Device (cuda) memory: core never includes backend headers (they bring the CUDA runtime or the
// emulator's CUDA names), so a cuda Storage reaches device memory through a small table of function
// pointers, `cuda_backend()`, that backend/device_allocator.hpp fills at static initialization
// (its caching allocator over strata::cuda::malloc/free). Without it a cuda Storage is an Error.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "strata/core/device.hpp"
#include "strata/core/error.hpp"

namespace strata {

inline constexpr size_t kAlignment = 64;

struct MemoryStats {
  int64_t in_use = 0;   // bytes handed out and not yet released
  int64_t peak = 0;     // highest in_use since start or reset_peak()
  int64_t cached = 0;   // bytes held on free lists
};

/// The free lists and counters of a caching allocator, shared by the host pool below and the cuda
/// device and pinned allocators (backend/device_allocator.hpp): blocks kept by their rounded size
/// (the owner's size class), bytes in use, peak and cached. Not locked: its owner holds a mutex.
class BlockCache {
 public:
  /// A cached block of exactly `size` bytes, now counted in use; nullptr when none is cached.
  void* take(size_t size) {
    auto it = free_.find(size);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    stats_.cached -= int64_t(size);
    note_alloc(size);
    return p;
  }
  /// Counts a new block of `size` bytes (from the system) in use.
  void note_alloc(size_t size) {
    stats_.in_use += int64_t(size);
    if (stats_.in_use > stats_.peak) stats_.peak = stats_.in_use;
  }
  /// Counts a block of `size` bytes out of use (it goes back to the system, or to put()).
  void note_free(size_t size) { stats_.in_use -= int64_t(size); }
  /// Keeps a released block of `size` bytes for take(): in use -> cached.
  void put(void* p, size_t size) {
    note_free(size);
    free_[size].push_back(p);
    stats_.cached += int64_t(size);
  }
  /// Hands every cached block to free_block(p) and forgets them.
  template <class F>
  void clear(F&& free_block) {
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) free_block(p);
    free_.clear();
    stats_.cached = 0;
  }
  const MemoryStats& stats() const { return stats_; }
  void reset_peak() { stats_.peak = stats_.in_use; }

 private:
  std::unordered_map<size_t, std::vector<void*>> free_;
  MemoryStats stats_;
};

/// Caching allocator for host memory (one process-wide instance: host_pool()).
class HostPool {
 public:
  /// Size class: 64-byte multiple below 256 B, else 4 classes per power of two.
  static size_t round_size(size_t n) {
    if (n <= 256) return (n + 63) & ~size_t(63);
    const size_t p = std::bit_floor(n - 1);  // n-1 in [p, 2p)
    const size_t step = p / 4;
    return (n + step - 1) / step * step;
  }

  void* allocate(size_t nbytes) {
    const size_t size = round_size(nbytes == 0 ? 1 : nbytes);
    {
      std::lock_guard lock(mutex_);
      if (void* p = cache_.take(size)) return p;
    }
    void* p = std::aligned_alloc(kAlignment, size);
    if (!p) {  // out of memory: drop the cache and try once more
      empty_cache();
      p = std::aligned_alloc(kAlignment, size);
    }
    STRATA_CHECK(p != nullptr, "alloc", "got a request for ", nbytes,
                 " bytes, expected it to fit in host memory");
    std::lock_guard lock(mutex_);
    cache_.note_alloc(size);
    return p;
  }

  void release(void* p, size_t nbytes) {
    if (!p) return;
    const size_t size = round_size(nbytes == 0 ? 1 : nbytes);
    std::lock_guard lock(mutex_);
    if (cache_.stats().cached + int64_t(size) > cache_limit_) {
      cache_.note_free(size);
      std::free(p);
      return;
    }
    cache_.put(p, size);
  }

  void empty_cache() {
    std::lock_guard lock(mutex_);
    cache_.clear([](void* p) { std::free(p); });
  }

  MemoryStats stats() {
    std::lock_guard lock(mutex_);
    return cache_.stats();
  }
  void reset_peak() {
    std::lock_guard lock(mutex_);
    cache_.reset_peak();
  }

 private:
  std::mutex mutex_;
  BlockCache cache_;
  int64_t cache_limit_ = int64_t(4) << 30;  // keep at most 4 GiB cached
};

inline HostPool& host_pool() {
  static HostPool* pool = new HostPool();  // never destroyed: storages may outlive static teardown
  return *pool;
}

/// Memory counters of the host pool.
inline MemoryStats memory_stats() { return host_pool().stats(); }
/// Frees every cached block.
inline void empty_cache() { host_pool().empty_cache(); }

/// What a device backend provides to core (see the top comment); null members: no backend.
struct DeviceBackend {
  void* (*allocate)(size_t nbytes, int device) = nullptr;  // throws Error on a bad index or no memory
  void (*release)(void* p, size_t nbytes, int device) = nullptr;
  void (*copy)(void* dst, const void* src, size_t nbytes) = nullptr;  // host/device, any direction
  void* (*allocate_pinned)(size_t nbytes) = nullptr;  // page-locked host memory (cudaMallocHost)
  void (*release_pinned)(void* p, size_t nbytes) = nullptr;
};

/// The cuda backend's table (filled by backend/device_allocator.hpp).
inline DeviceBackend& cuda_backend() {
  static DeviceBackend backend;
  return backend;
}

namespace detail {
/// The registered cuda backend, or an Error saying how to get one.
inline const DeviceBackend& require_cuda_backend(const char* op, Device device) {
  const DeviceBackend& b = cuda_backend();
  STRATA_CHECK(b.allocate != nullptr && b.release != nullptr && b.copy != nullptr, op, "got device ", device,
               ", expected a registered cuda backend: include <strata/backend/device_allocator.hpp> "
               "(the emulator builds with g++, a GPU with STRATA_CUDA)");
  return b;
}
}  // namespace detail

/// A block of memory on one device; tensors hold it through shared_ptr and view it.
class Storage {
 public:
  Storage(int64_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
    if (device.is_cpu()) {
      data_ = host_pool().allocate(size_t(nbytes));
      return;
    }
    const DeviceBackend& b = detail::require_cuda_backend("Storage", device);
    data_ = b.allocate(size_t(nbytes), device.index);
    release_ = b.release;  // kept: the table may change while this block lives
  }
  /// Page-locked ("pinned") host memory from the cuda backend: a cpu block the GPU copies from and
  /// to by DMA, at full bus speed and asynchronously (PyTorch's pin_memory).
  struct Pinned {};
  Storage(int64_t nbytes, Pinned) : nbytes_(nbytes), device_(kCPU) {
    const DeviceBackend& b = cuda_backend();
    STRATA_CHECK(b.allocate_pinned != nullptr && b.release_pinned != nullptr, "pin_memory",
                 "got a request for pinned host memory, expected a registered cuda backend: include "
                 "<strata/backend/device_allocator.hpp> (the emulator builds with g++, a GPU with STRATA_CUDA)");
    data_ = b.allocate_pinned(size_t(nbytes));
    release_pinned_ = b.release_pinned;
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (release_pinned_) release_pinned_(data_, size_t(nbytes_));
    else if (device_.is_cpu()) host_pool().release(data_, size_t(nbytes_));
    else if (release_) release_(data_, size_t(nbytes_), device_.index);
  }

  void* data() const { return data_; }
  int64_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  /// Whether this is page-locked host memory (Storage(nbytes, Pinned{})).
  bool pinned() const { return release_pinned_ != nullptr; }
  /// Bumped by every in-place write; autograd uses it to catch saved tensors changed in place.
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  int64_t nbytes_ = 0;
  Device device_;
  void (*release_)(void*, size_t, int) = nullptr;  // device blocks only
  void (*release_pinned_)(void*, size_t) = nullptr;  // pinned host blocks only
  std::atomic<uint64_t> version_{0};
};

}  // namespace strata
