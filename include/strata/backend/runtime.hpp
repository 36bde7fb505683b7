// strata::cuda: the one thin wrapper over device memory, streams and events.
//
// With STRATA_CUDA (and not STRATA_CUDA_EMULATE) each call is the CUDA runtime call of the same
// name (cudaMalloc, cudaMemcpy with cudaMemcpyDefault, cudaStreamCreate, cudaEventRecord, ...) and
// a failure throws strata::Error naming the call and the CUDA error. Otherwise (the emulator,
// STRATA_CUDA_EMULATE, defined here when neither is set) device memory is host memory, one device
// exists, and streams and events are synchronous: every operation has finished when it returns,
// an event records the host time.
//
//   void* p = cuda::malloc(bytes);             cuda::free(p);
//   void* h = cuda::malloc_host(bytes);        cuda::free_host(h);      // pinned on a GPU
//   cuda::memcpy(dst, src, bytes);             cuda::memcpy_async(dst, src, bytes, stream);
//   cuda::memset(p, byte, bytes);              cuda::memset_async(p, byte, bytes, stream);
//   cuda::Stream s = cuda::stream_create();    cuda::stream_synchronize(s);  cuda::stream_destroy(s);
//   cuda::Event e = cuda::event_create();      cuda::event_record(e, s);     cuda::event_synchronize(e);
//   float ms = cuda::event_elapsed_ms(e0, e1); cuda::event_destroy(e);
//   cuda::stream_wait_event(s, e);  cuda::device_synchronize();  cuda::device_count();  cuda::set_device(i);
// Copies go in any direction (host or device pointers, found by unified addressing). A Stream{}
// is the default stream. Emulated allocations are 256-byte aligned heap blocks, so under
// AddressSanitizer a kernel that reads past the end of one is reported.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>

#include "strata/core/error.hpp"

#if !defined(STRATA_CUDA_EMULATE) && !defined(STRATA_CUDA) && !defined(__CUDACC__)
#define STRATA_CUDA_EMULATE 1
#endif

#if !defined(STRATA_CUDA_EMULATE)
#include <cuda_runtime_api.h>
#endif

namespace strata::cuda {

#if defined(STRATA_CUDA_EMULATE)
/// True when the CUDA backend runs on the emulator.
inline constexpr bool kEmulated = true;
struct StreamImpl {};
struct EventImpl {
  std::chrono::steady_clock::time_point time;
  bool recorded = false;
};
using Stream = StreamImpl*;
using Event = EventImpl*;
#else
inline constexpr bool kEmulated = false;
using Stream = cudaStream_t;
using Event = cudaEvent_t;
#endif

namespace detail {
inline void check_not_null(const void* p, size_t bytes, const char* op, const char* arg) {
  STRATA_CHECK(p != nullptr || bytes == 0, op, "got a null ", arg, " for ", bytes,
               " bytes, expected a valid pointer");
}
#if !defined(STRATA_CUDA_EMULATE)
inline void check_cuda(cudaError_t e, const char* op, const char* call) {
  if (e == cudaSuccess) [[likely]]
    return;
  cudaGetLastError();  // clear the sticky state of a non-fatal error
  throw Error(std::string(op) + ": got " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
              ") from " + call + ", expected cudaSuccess");
}
#endif
inline constexpr size_t kEmulatedAlign = 256;  // what cudaMalloc guarantees

#if defined(STRATA_CUDA_EMULATE)
inline void* emulated_alloc(size_t bytes, const char* op) {
  void* p = ::operator new(bytes, std::align_val_t(kEmulatedAlign), std::nothrow);
  STRATA_CHECK(p != nullptr, op, "got no memory for ", bytes, " bytes, expected the allocation to succeed");
  return p;
}
#endif
}  // namespace detail

/// Device memory of `bytes` bytes (nullptr for 0).
inline void* malloc(size_t bytes) {
  if (bytes == 0) return nullptr;
#if defined(STRATA_CUDA_EMULATE)
  return detail::emulated_alloc(bytes, "cuda::malloc");
#else
  void* p = nullptr;
  detail::check_cuda(cudaMalloc(&p, bytes), "cuda::malloc", "cudaMalloc");
  return p;
#endif
}

/// Frees memory from cuda::malloc (nullptr is a no-op).
inline void free(void* p) {
  if (!p) return;
#if defined(STRATA_CUDA_EMULATE)
  ::operator delete(p, std::align_val_t(detail::kEmulatedAlign));
#else
  detail::check_cuda(cudaFree(p), "cuda::free", "cudaFree");
#endif
}

/// Page-locked host memory (plain host memory under the emulator).
inline void* malloc_host(size_t bytes) {
  if (bytes == 0) return nullptr;
#if defined(STRATA_CUDA_EMULATE)
  return detail::emulated_alloc(bytes, "cuda::malloc_host");
#else
  void* p = nullptr;
  detail::check_cuda(cudaMallocHost(&p, bytes), "cuda::malloc_host", "cudaMallocHost");
  return p;
#endif
}

inline void free_host(void* p) {
  if (!p) return;
#if defined(STRATA_CUDA_EMULATE)
  ::operator delete(p, std::align_val_t(detail::kEmulatedAlign));
#else
  detail::check_cuda(cudaFreeHost(p), "cuda::free_host", "cudaFreeHost");
#endif
}

/// Copies `bytes` bytes between any two of host and device memory; returns when done.
inline void memcpy(void* dst, const void* src, size_t bytes) {
  detail::check_not_null(dst, bytes, "cuda::memcpy", "destination");
  detail::check_not_null(src, bytes, "cuda::memcpy", "source");
  if (bytes == 0) return;
#if defined(STRATA_CUDA_EMULATE)
  std::memcpy(dst, src, bytes);
#else
  detail::check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "cuda::memcpy", "cudaMemcpy");
#endif
}

/// Copies on `stream` (finished on return under the emulator).
inline void memcpy_async(void* dst, const void* src, size_t bytes, Stream stream) {
  detail::check_not_null(dst, bytes, "cuda::memcpy_async", "destination");
  detail::check_not_null(src, bytes, "cuda::memcpy_async", "source");
  if (bytes == 0) return;
#if defined(STRATA_CUDA_EMULATE)
  (void)stream;
  std::memcpy(dst, src, bytes);
#else
  detail::check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream), "cuda::memcpy_async",
                     "cudaMemcpyAsync");
#endif
}

/// Sets `bytes` bytes at dst to (unsigned char)value.
inline void memset(void* dst, int value, size_t bytes) {
  detail::check_not_null(dst, bytes, "cuda::memset", "destination");
  if (bytes == 0) return;
#if defined(STRATA_CUDA_EMULATE)
  std::memset(dst, value, bytes);
#else
  detail::check_cuda(cudaMemset(dst, value, bytes), "cuda::memset", "cudaMemset");
#endif
}

inline void memset_async(void* dst, int value, size_t bytes, Stream stream) {
  detail::check_not_null(dst, bytes, "cuda::memset_async", "destination");
  if (bytes == 0) return;
#if defined(STRATA_CUDA_EMULATE)
  (void)stream;
  std::memset(dst, value, bytes);
#else
  detail::check_cuda(cudaMemsetAsync(dst, value, bytes, stream), "cuda::memset_async", "cudaMemsetAsync");
#endif
}

// --- streams and events ------------------------------------------------------------------------

inline Stream stream_create() {
#if defined(STRATA_CUDA_EMULATE)
  return new StreamImpl;
#else
  cudaStream_t s = nullptr;
  detail::check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cuda::stream_create",
                     "cudaStreamCreateWithFlags");
  return s;
#endif
}

inline void stream_destroy(Stream s) {
#if defined(STRATA_CUDA_EMULATE)
  delete s;
#else
  if (s) detail::check_cuda(cudaStreamDestroy(s), "cuda::stream_destroy", "cudaStreamDestroy");
#endif
}

/// Waits until all work queued on `s` has finished.
inline void stream_synchronize([[maybe_unused]] Stream s) {
#if !defined(STRATA_CUDA_EMULATE)
  detail::check_cuda(cudaStreamSynchronize(s), "cuda::stream_synchronize", "cudaStreamSynchronize");
#endif
}

inline Event event_create() {
#if defined(STRATA_CUDA_EMULATE)
  return new EventImpl;
#else
  cudaEvent_t e = nullptr;
  detail::check_cuda(cudaEventCreate(&e), "cuda::event_create", "cudaEventCreate");
  return e;
#endif
}

inline void event_destroy(Event e) {
#if defined(STRATA_CUDA_EMULATE)
  delete e;
#else
  if (e) detail::check_cuda(cudaEventDestroy(e), "cuda::event_destroy", "cudaEventDestroy");
#endif
}

/// Records `e` on `stream`: it completes when the work queued before it has.
inline void event_record(Event e, [[maybe_unused]] Stream stream = {}) {
  STRATA_CHECK(e != nullptr, "cuda::event_record", "got a null event, expected one from event_create()");
#if defined(STRATA_CUDA_EMULATE)
  e->time = std::chrono::steady_clock::now();
  e->recorded = true;
#else
  detail::check_cuda(cudaEventRecord(e, stream), "cuda::event_record", "cudaEventRecord");
#endif
}

inline void event_synchronize(Event e) {
  STRATA_CHECK(e != nullptr, "cuda::event_synchronize", "got a null event, expected one from event_create()");
#if !defined(STRATA_CUDA_EMULATE)
  detail::check_cuda(cudaEventSynchronize(e), "cuda::event_synchronize", "cudaEventSynchronize");
#endif
}

/// Whether the work before `e` has completed (always, under the emulator).
inline bool event_query(Event e) {
  STRATA_CHECK(e != nullptr, "cuda::event_query", "got a null event, expected one from event_create()");
#if defined(STRATA_CUDA_EMULATE)
  return true;
#else
  const cudaError_t r = cudaEventQuery(e);
  if (r == cudaErrorNotReady) return false;
  detail::check_cuda(r, "cuda::event_query", "cudaEventQuery");
  return true;
#endif
}

/// Milliseconds between two recorded events.
inline float event_elapsed_ms(Event start, Event end) {
  STRATA_CHECK(start != nullptr && end != nullptr, "cuda::event_elapsed_ms",
               "got a null event, expected two from event_create()");
#if defined(STRATA_CUDA_EMULATE)
  STRATA_CHECK(start->recorded && end->recorded, "cuda::event_elapsed_ms",
               "got an event that was never recorded, expected both recorded with event_record");
  return std::chrono::duration<float, std::milli>(end->time - start->time).count();
#else
  float ms = 0;
  detail::check_cuda(cudaEventElapsedTime(&ms, start, end), "cuda::event_elapsed_ms", "cudaEventElapsedTime");
  return ms;
#endif
}

/// Makes later work on `s` wait for `e`.
inline void stream_wait_event([[maybe_unused]] Stream s, Event e) {
  STRATA_CHECK(e != nullptr, "cuda::stream_wait_event", "got a null event, expected one from event_create()");
#if !defined(STRATA_CUDA_EMULATE)
  detail::check_cuda(cudaStreamWaitEvent(s, e, 0), "cuda::stream_wait_event", "cudaStreamWaitEvent");
#endif
}

inline void device_synchronize() {
#if !defined(STRATA_CUDA_EMULATE)
  detail::check_cuda(cudaDeviceSynchronize(), "cuda::device_synchronize", "cudaDeviceSynchronize");
#endif
}

/// Number of CUDA devices (1 under the emulator; 0 when the runtime finds no GPU).
inline int device_count() {
#if defined(STRATA_CUDA_EMULATE)
  return 1;
#else
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
#endif
}

inline void set_device(int index) {
  const int n = device_count();
  STRATA_CHECK(index >= 0 && index < n, "cuda::set_device", "got device ", index, ", expected an index in [0, ",
               n, ")");
#if !defined(STRATA_CUDA_EMULATE)
  detail::check_cuda(cudaSetDevice(index), "cuda::set_device", "cudaSetDevice");
#endif
}

inline int get_device() {
#if defined(STRATA_CUDA_EMULATE)
  return 0;
#else
  int d = 0;
  detail::check_cuda(cudaGetDevice(&d), "cuda::get_device", "cudaGetDevice");
  return d;
#endif
}

/// Makes device `index` current until the end of the scope, then restores the previous one (kernels
/// and library calls run on the current device, so an op on cuda:1 tensors takes one first).
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) : prev_(get_device()) {
    if (prev_ != index) set_device(index);
  }
  ~DeviceGuard() {
    try {
      if (get_device() != prev_) set_device(prev_);
    } catch (...) {  // a destructor must not throw (a sticky CUDA error is reported by the next call)
    }
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_;
};

}  // namespace strata::cuda
