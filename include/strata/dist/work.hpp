// Work: the handle of an asynchronous collective (ProcessGroup::all_reduce_async).
//
//   Work w = pg.all_reduce_async(grad);   // starts the all-reduce and returns at once
//   ...                                   // compute something else meanwhile
//   w.wait();                             // blocks until done (or throws after the group's timeout)
//
// wait() is idempotent: once done it returns at once, and a failed collective throws its Error again
// on every call. done() never blocks and never throws: true once the collective finished or failed
// (then wait() says how). A default-constructed Work is already done. The Work keeps the tensor's
// storage alive until it completes. For a cuda tensor over MPI the result is in device memory once
// wait() returns (staged through pinned host memory). With NCCL, wait() does not block the host: it
// orders the default stream (where strata's kernels run) after the collective (cudaStreamWaitEvent on
// the event recorded after NCCL's kernels), so every later op sees the result and the host reads it
// through the usual synchronizing copies (to(kCPU), item()); the group's watcher thread then applies
// the timeout (the collective fails, the communicator is aborted so the stream goes on, and the next
// collective throws the error naming the lost rank). Without a watcher (one rank, or MPI below
// MPI_THREAD_SERIALIZED) wait() blocks as over MPI. done() is true once NCCL's kernels have finished.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "strata/backend/runtime.hpp"
#include "strata/dist/detail/mpi.hpp"
#include "strata/tensor/detail/tensor_class.hpp"

namespace strata::dist {

class ProcessGroup;

namespace detail {
/// What a collective in flight owns: its request, buffers, and the step that finishes it.
struct WorkState {
  ProcessGroup* group = nullptr;
  std::string op;                      // "all_reduce", "broadcast", ...
  int64_t seq = 0;                     // the collective's number in this group (1, 2, ...)
  MPI_Request request = MPI_REQUEST_NULL;
  std::atomic<bool> completed{false};  // finished (successfully or not); read by Work without the lock
  std::exception_ptr error;            // set when it failed
  std::function<void()> finish;        // runs once after MPI completes (convert back, divide for avg)
  Tensor keep;                         // the caller's tensor, alive until completion
  std::vector<float> staging;          // f16/bf16 values widened to float for the reduction
  void* host = nullptr;                // a cuda tensor's pinned host copy (MPI path), back to the group's cache
  size_t host_bytes = 0;               //   when the collective completes
  cuda::Event event = nullptr;         // NCCL path: recorded after the NCCL call; done when it has completed
  int device = 0;                      // the cuda tensor's device (for the copies and the event)
  bool stream_ordered = false;         // NCCL path: wait() returned after ordering the default stream
  std::chrono::steady_clock::time_point waited_at{};  // then: when (the watcher's timeout counts from it)
};
}  // namespace detail

/// Handle of an asynchronous collective.
class Work {
 public:
  Work() = default;
  explicit Work(std::shared_ptr<detail::WorkState> s) : state_(std::move(s)) {}
  /// Blocks until the collective is done (at most the group's timeout), rethrows its error; idempotent.
  void wait();
  /// Non-blocking test: true once finished or failed (wait() then returns or throws).
  bool done();

 private:
  std::shared_ptr<detail::WorkState> state_;
};

}  // namespace strata::dist
