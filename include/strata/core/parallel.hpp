// A fixed thread pool and parallel_for.
//
// The thread count comes from STRATA_NUM_THREADS, else std::thread::hardware_concurrency(); it can
// be changed with set_num_threads(). parallel_for(begin, end, grain, fn) calls fn(lo, hi) on
// disjoint chunks covering [begin, end): when the range is smaller than `grain`, or when called
// from inside a worker (no nested parallelism), it runs inline on the calling thread, so small ops
// pay nothing. Chunks are contiguous and at most one per thread; results therefore do not depend
// on scheduling, only (for floating sums) on the thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace strata {

namespace detail {
inline thread_local bool in_parallel_region = false;

inline int default_num_threads() {
  if (const char* s = std::getenv("STRATA_NUM_THREADS")) {
    const int n = std::atoi(s);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? int(hw) : 1;
}
}  // namespace detail

class ThreadPool {
 public:
  explicit ThreadPool(int n) { resize(n); }
  ~ThreadPool() { stop(); }

  int size() const { return int(workers_.size()) + 1; }  // the caller works too

  void resize(int n) {
    stop();
    stopping_ = false;
    // new workers wait for the next run: seeing an earlier run's generation, they would call its
    // (already cleared) task
    const uint64_t gen = generation_;
    for (int i = 1; i < std::max(n, 1); ++i) workers_.emplace_back([this, i, gen] { work(i, gen); });
  }

  /// Runs task(i) for i in [0, n) with n <= size(); task(0) runs on the calling thread.
  void run(int n, const std::function<void(int)>& task) {
    std::unique_lock lock(run_mutex_);  // one parallel region at a time
    {
      std::lock_guard g(mutex_);
      task_ = &task;
      ntasks_ = n;
      pending_ = n - 1;
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    detail::in_parallel_region = true;
    try {
      task(0);
    } catch (...) {
      std::lock_guard g(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    detail::in_parallel_region = false;
    std::unique_lock g(mutex_);
    done_.wait(g, [&] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work(int id, uint64_t seen) {
    detail::in_parallel_region = true;
    for (;;) {
      const std::function<void(int)>* task;
      {
        std::unique_lock g(mutex_);
        cv_.wait(g, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        if (id >= ntasks_) continue;
        task = task_;
      }
      try {
        (*task)(id);
      } catch (...) {
        std::lock_guard g(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard g(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  void stop() {
    {
      std::lock_guard g(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_, run_mutex_;
  std::condition_variable cv_, done_;
  const std::function<void(int)>* task_ = nullptr;
  int ntasks_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

inline ThreadPool& thread_pool() {
  static ThreadPool* pool = new ThreadPool(detail::default_num_threads());  // outlives statics
  return *pool;
}

/// Threads parallel_for may use (including the caller).
inline int num_threads() { return thread_pool().size(); }
/// Changes the thread count (not from inside a parallel region).
inline void set_num_threads(int n) { thread_pool().resize(n); }

/// Calls fn(lo, hi) over disjoint contiguous chunks covering [begin, end), at most one per thread and
/// no more chunks than (end - begin) / grain rounded up.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, F&& fn) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int threads = detail::in_parallel_region ? 1 : num_threads();
  const int chunks = int(std::min<int64_t>(threads, max_chunks));
  if (chunks <= 1) {
    fn(begin, end);
    return;
  }
  const int64_t per = (n + chunks - 1) / chunks;
  thread_pool().run(chunks, [&](int i) {
    const int64_t lo = begin + i * per, hi = std::min(end, lo + per);
    if (lo < hi) fn(lo, hi);
  });
}

}  // namespace strata
