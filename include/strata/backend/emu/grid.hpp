// How the CUDA emulator runs a grid: blocks in parallel on the thread pool, the threads of a block
// as fibers on one worker thread, barriers and warp operations as cooperative waits.
//
//   run_grid(grid, block, shared_bytes, invoke, call)   runs invoke(call) once per CUDA thread
//
// Each worker thread of core/parallel.hpp's pool takes blocks from a shared counter and runs each
// to completion before the next, so everything per block (`__shared__` variables, which are
// `static thread_local`, and the dynamic shared buffer) is per worker thread. A block's threads
// are fibers (fiber.hpp) scheduled round-robin: a fiber runs until it waits (at __syncthreads or
// at a warp operation) or returns, then switches straight to the next fiber that can run (first in
// its own warp, then in later warps), and when none is left it switches back to the worker's own
// stack, which starts the next round. A thread gets a stack when it first runs; when the next
// thread to run has not started yet and the current one returned, it runs on the same fiber with
// no switch at all, so a kernel without barriers costs a function call per thread. A round that finds no fiber able to run
// while some have not returned is a deadlock and throws.
//
// __syncthreads: a thread arrives and waits; when the arrivals equal the threads still running (a
// thread that has returned no longer counts, as on Volta and later) all are released. Warp
// operations: a lane stores its value and the mask it passed and waits; when every lane named by
// the mask (and still running) has arrived, the last one computes each lane's result (the value of
// the source lane for a shuffle, the vote for ballot/any/all) and releases them. Lanes of one warp
// that pass disjoint masks form separate groups. A group whose lanes disagree on the operation or
// on the mask throws, as does a mask without the calling lane.
//
// A kernel that throws stops its block and the launch; run_grid rethrows the first error as
// strata::Error naming the block and thread. Fibers of an abandoned block are never resumed: a
// kernel must not rely on destructors of its locals running after another thread threw.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "strata/backend/emu/dim3.hpp"
#include "strata/backend/emu/fiber.hpp"
#include "strata/core/error.hpp"
#include "strata/core/parallel.hpp"

// the few functions every barrier and warp operation goes through: inlined even at -O1
#define STRATA_EMU_HOT [[gnu::always_inline]] inline

namespace strata::emu::detail {

enum class Wait : uint8_t { none, block, warp };
enum class WarpOp : uint8_t { sync, shfl, ballot, any, all };

inline const char* warp_op_name(WarpOp op) {
  switch (op) {
    case WarpOp::sync: return "__syncwarp";
    case WarpOp::shfl: return "__shfl_*_sync";
    case WarpOp::ballot: return "__ballot_sync";
    case WarpOp::any: return "__any_sync";
    case WarpOp::all: return "__all_sync";
  }
  return "?";
}

/// One CUDA thread of the running block.
struct Lane {
  Context ctx;
  uint3 thread_idx{0, 0, 0};
  int stack = -1;  // index of its fiber stack, -1 before it first runs
  Wait wait = Wait::none;
  bool done = false;
  // the pending warp operation
  WarpOp op = WarpOp::sync;
  uint32_t mask = 0;    // lanes (of this warp) the operation names
  int src = 0;          // shuffle: the lane whose value this lane receives
  uint64_t value = 0;   // the bits this lane contributes
  uint64_t result = 0;  // the bits it receives
};

/// One launch, shared by the workers running its blocks.
struct Grid {
  dim3 grid, block;
  size_t shared_bytes = 0;
  void (*invoke)(const void*) = nullptr;  // runs the kernel for the current fiber
  const void* call = nullptr;
  std::atomic<uint64_t> next_block{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;

  void fail(std::exception_ptr e) {
    std::lock_guard g(error_mutex);
    if (!error) error = e;
    failed = true;
  }
};

/// The order in which the fibers of a block run in each round: forward (lane 0 first, the default)
/// or reverse (the last lane first). A kernel whose result depends on it has a race between threads
/// of a block, typically a missing __syncthreads. Forward order exposes a thread reading what a
/// later thread writes (the writer has not run yet) but hides one reading what an earlier thread
/// writes; reverse order exposes the second kind. Set with strata::emu::set_schedule_order or
/// STRATA_EMU_SCHEDULE=reverse; read when each block starts.
enum class ScheduleOrder : uint8_t { forward, reverse };

inline std::atomic<ScheduleOrder>& schedule_order_setting() {
  static std::atomic<ScheduleOrder> order{[] {
    const char* s = std::getenv("STRATA_EMU_SCHEDULE");
    return s && std::string(s) == "reverse" ? ScheduleOrder::reverse : ScheduleOrder::forward;
  }()};
  return order;
}
inline ScheduleOrder schedule_order() { return schedule_order_setting().load(std::memory_order_relaxed); }

class Worker;
inline thread_local Worker* tl_worker = nullptr;  // the worker of this OS thread (set per block)
inline thread_local Lane* tl_lane = nullptr;      // the fiber running on this OS thread

inline std::string dims_str(uint3 d) {
  std::ostringstream os;
  os << '(' << d.x << ", " << d.y << ", " << d.z << ')';
  return os.str();
}

/// Per OS thread: the fiber stacks, the lanes of the block being run, the block-wide state.
class Worker {
 public:
  static Worker& current() {
    thread_local Worker w;
    return w;
  }

  Worker() { init_thread_context(home_); }
  ~Worker() { ::operator delete(dynamic_, std::align_val_t(kSharedAlign)); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // what the builtins read
  uint3 block_idx{0, 0, 0};
  dim3 block_dim, grid_dim;
  unsigned char* dynamic_shared() const { return dynamic_; }

  /// Runs block number b (x fastest) of the grid to completion; throws on a kernel error.
  void run_block(Grid& g, uint64_t b) {
    tl_worker = this;
    grid_ = &g;
    grid_dim = g.grid;
    block_dim = g.block;
    block_idx = {unsigned(b % g.grid.x), unsigned(b / g.grid.x % g.grid.y),
                 unsigned(b / (uint64_t(g.grid.x) * g.grid.y))};
    reserve_shared(g.shared_bytes);
    n_ = int(uint64_t(g.block.x) * g.block.y * g.block.z);
    live_ = n_;
    stacks_.reserve(n_);
    if (dirty_) {  // the last block was abandoned: its fibers' frames stay poisoned for ASan
      stacks_.unpoison(stacks_.count());
      dirty_ = false;
    }
    if (int(lanes_.size()) < n_) lanes_.resize(size_t(n_));
    const int warps = (n_ + 31) / 32;
    warp_live_.assign(size_t(warps), ~0u);
    if (n_ % 32) warp_live_.back() = (1u << (n_ % 32)) - 1;
    warp_pending_.assign(size_t(warps), 0u);
    block_arrived_ = block_count_ = 0;
    uint3 t{0, 0, 0};  // x fastest, counted up without divisions
    for (int i = 0; i < n_; ++i) {
      Lane& l = lanes_[size_t(i)];
      l.thread_idx = t;
      if (++t.x == g.block.x) {
        t.x = 0;
        if (++t.y == g.block.y) {
          t.y = 0;
          ++t.z;
        }
      }
      l.wait = Wait::none;
      l.done = false;
      l.stack = -1;  // gets a stack when it first runs
    }
    free_stacks_.clear();
    for (int s = n_ - 1; s >= 0; --s) free_stacks_.push_back(s);
    retiring_stack_ = -1;
    error_ = nullptr;
    reverse_ = schedule_order() == ScheduleOrder::reverse;
    struct Leave {  // back on the worker's own stack: no fiber runs on this thread
      ~Leave() { tl_lane = nullptr; }
    } leave;
    while (live_ > 0) {
      const int j = first_lane(n_ - 1);
      if (j == n_) {
        dirty_ = true;
        throw Error(deadlock_message());
      }
      switch_context(home_, enter(j));
      reclaim();
      if (error_) {
        dirty_ = true;
        rethrow_kernel_error();
      }
    }
  }

  /// __syncthreads and its counting variants: returns how many arrivals had pred != 0, and
  /// through `arrived` how many threads took part.
  STRATA_EMU_HOT int sync_block(Lane& me, int pred, int* arrived = nullptr) {
    me.wait = Wait::block;
    ++block_arrived_;
    block_count_ += pred != 0;
    if (block_arrived_ == live_) release_block();
    else yield(me);
    if (arrived) *arrived = released_arrived_;
    return released_count_;
  }

  /// A warp operation by the calling lane: contributes `value` and waits for the lanes of `mask`.
  STRATA_EMU_HOT uint64_t warp_op(Lane& me, WarpOp op, uint32_t mask, uint64_t value, int src, const char* name) {
    const int i = index(me), warp = i >> 5;
    const uint32_t bit = 1u << (i & 31);
    STRATA_CHECK(mask & bit, name, "got mask 0x", std::hex, mask, std::dec, " in lane ", i & 31,
                 " of warp ", warp, ", expected a mask that includes the calling lane");
    me.op = op;
    me.mask = mask;
    me.value = value;
    me.src = src;
    me.wait = Wait::warp;
    warp_pending_[size_t(warp)] |= bit;
    if (!try_complete_warp(warp, mask)) yield(me);
    return me.result;
  }

  /// Lanes of the calling lane's warp that are still running (the emulator's __activemask).
  uint32_t live_lanes(const Lane& me) const { return warp_live_[size_t(index(me) >> 5)]; }
  int lane_id(const Lane& me) const { return index(me) & 31; }

 private:
  static constexpr size_t kSharedAlign = 128;

  int index(const Lane& me) const { return int(&me - lanes_.data()); }

  bool runnable(int k) const { return !lanes_[size_t(k)].done && lanes_[size_t(k)].wait == Wait::none; }

  int next_runnable(int k) const {
    while (k < n_ && !runnable(k)) ++k;
    return k;
  }

  // The lane to run after lane i waits or returns: the next runnable lane of its own warp (after
  // i, then wrapping to the warp's start), else of a later warp, else n_ (home). Staying in the
  // warp keeps its 32 stacks in the L1 cache through a sequence of warp operations.
  int next_lane(int i) const {
    const int w0 = i & ~31, w1 = std::min(w0 + 32, n_);
    if (reverse_) {  // the mirror image: down the warp, wrap to its end, then earlier warps
      for (int k = i - 1; k >= w0; --k)
        if (runnable(k)) return k;
      for (int k = w1 - 1; k > i; --k)
        if (runnable(k)) return k;
      return first_lane(w0 - 1);
    }
    for (int k = i + 1; k < w1; ++k)
      if (runnable(k)) return k;
    for (int k = w0; k < i; ++k)
      if (runnable(k)) return k;
    return next_runnable(w1);
  }

  // The first runnable lane of a round (forward: from lane 0 up; reverse: from lane k down), or n_.
  int first_lane(int k) const {
    if (!reverse_) return next_runnable(0);
    while (k >= 0 && !runnable(k)) --k;
    return k < 0 ? n_ : k;
  }

  // Switches from the waiting lane `me` to the next lane that can run, or home.
  STRATA_EMU_HOT void yield(Lane& me) {
    const int j = next_lane(index(me));
    switch_context(me.ctx, j < n_ ? enter(j) : home_);
    reclaim();
  }

  // The context to switch to for lane j, which becomes the running lane. A lane that has not run
  // yet gets a free stack now (the most recently freed: a block whose threads run to completion
  // without waiting cycles through two stacks that stay in the L1 cache).
  Context& enter(int j) {
    Lane& l = lanes_[size_t(j)];
    tl_lane = &l;
    if (l.stack < 0) [[unlikely]]
      start(l);
    return l.ctx;
  }

  [[gnu::noinline]] void start(Lane& l) {
    l.stack = free_stacks_.back();
    free_stacks_.pop_back();
    // stack tops staggered by 128 bytes over 4 KiB, so the hot frames of different fibers fall on
    // different L1 cache sets instead of all on the same page offset
    make_context(l.ctx, stacks_.stack(l.stack), stacks_.size() - size_t(l.stack % 32) * 128, &fiber_main, this);
  }

  // After a switch: the stack of a fiber that returned (it was still running on it when it
  // switched away) is free now.
  void reclaim() {
    if (retiring_stack_ >= 0) {
      free_stacks_.push_back(retiring_stack_);
      retiring_stack_ = -1;
    }
  }

  void release_block() {
    released_count_ = block_count_;
    released_arrived_ = block_arrived_;
    block_arrived_ = block_count_ = 0;
    for (int i = 0; i < n_; ++i)
      if (lanes_[size_t(i)].wait == Wait::block) lanes_[size_t(i)].wait = Wait::none;
  }

  // Completes the group of `warp` named by `mask` if all its running lanes have arrived.
  bool try_complete_warp(int warp, uint32_t mask) {
    const uint32_t need = mask & warp_live_[size_t(warp)];
    if ((warp_pending_[size_t(warp)] & need) != need) return false;
    Lane* lane = &lanes_[size_t(warp) * 32];
    const WarpOp op = lane[std::countr_zero(need)].op;
    uint32_t vote = 0;
    for (uint32_t m = need; m; m &= m - 1) {
      const Lane& l = lane[std::countr_zero(m)];
      if (l.op != op || l.mask != mask) {
        std::ostringstream os;
        os << warp_op_name(op) << ": got lanes of warp " << warp << " that disagree: lane "
           << std::countr_zero(need) << " called " << warp_op_name(op) << " with mask 0x" << std::hex
           << mask << ", lane " << std::dec << std::countr_zero(m) << " called " << warp_op_name(l.op)
           << " with mask 0x" << std::hex << l.mask
           << ", expected every lane of a mask to call the same operation with the same mask";
        throw Error(os.str());
      }
      vote |= uint32_t(l.value != 0) << std::countr_zero(m);
    }
    for (uint32_t m = need; m; m &= m - 1) {
      Lane& l = lane[std::countr_zero(m)];
      switch (op) {
        case WarpOp::shfl: l.result = (need >> l.src) & 1u ? lane[l.src].value : l.value; break;
        case WarpOp::ballot: l.result = vote; break;
        case WarpOp::any: l.result = vote != 0; break;
        case WarpOp::all: l.result = vote == need; break;
        case WarpOp::sync: break;
      }
      l.wait = Wait::none;
    }
    warp_pending_[size_t(warp)] &= ~need;
    return true;
  }

  // A lane has returned: it no longer counts for the barrier or for its warp's pending groups.
  void retire(Lane& me) {
    const int i = index(me), warp = i >> 5;
    me.done = true;
    --live_;
    warp_live_[size_t(warp)] &= ~(1u << (i & 31));
    if (block_arrived_ > 0 && block_arrived_ == live_) release_block();
    for (uint32_t p = warp_pending_[size_t(warp)]; p; p &= warp_pending_[size_t(warp)]) {
      const uint32_t mask = lanes_[size_t(warp) * 32 + std::countr_zero(p)].mask;
      try_complete_warp(warp, mask);
      p &= ~mask;
    }
  }

  static void fiber_main(void* arg) {
    fiber_started();
    auto& w = *static_cast<Worker*>(arg);
    w.reclaim();
    for (;;) {
      Lane& me = *tl_lane;
      try {
        w.grid_->invoke(w.grid_->call);
        w.retire(me);
      } catch (...) {
        me.done = true;
        if (!w.error_) {
          w.error_ = std::current_exception();
          w.error_thread_ = me.thread_idx;
        }
      }
      // next: the next runnable lane, or home (always home after an error)
      const int j = w.error_ ? w.n_ : w.next_lane(w.index(me));
      if (j < w.n_ && w.lanes_[size_t(j)].stack < 0) {
        // a lane that has not started runs right here, on this stack, with no switch at all: a
        // block whose threads never wait runs them all as plain calls on one fiber
        Lane& next = w.lanes_[size_t(j)];
        next.stack = me.stack;
        next.ctx.stack_lo = me.ctx.stack_lo;  // the bounds ASan is told when switching back to it
        next.ctx.stack_size = me.ctx.stack_size;
        tl_lane = &next;
        continue;
      }
      // switch away for good
      Context& next = j < w.n_ ? w.enter(j) : w.home_;
      w.retiring_stack_ = me.stack;
      switch_context(me.ctx, next, true);
      __builtin_unreachable();
    }
  }

  [[noreturn]] void rethrow_kernel_error() {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error_);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    throw Error("launch: kernel threw in block " + dims_str(block_idx) + ", thread " +
                dims_str(error_thread_) + ": " + what);
  }

  std::string deadlock_message() const {
    int at_block = 0, at_warp = 0;
    for (int i = 0; i < n_; ++i) {
      if (lanes_[size_t(i)].done) continue;
      (lanes_[size_t(i)].wait == Wait::block ? at_block : at_warp) += 1;
    }
    std::ostringstream os;
    os << "launch: got a deadlock in block " << dims_str(block_idx) << ": " << at_block
       << " threads wait at __syncthreads and " << at_warp
       << " at a warp operation whose lanes never all arrive, expected every running thread of the "
          "block to reach the same barriers";
    return os.str();
  }

  void reserve_shared(size_t bytes) {
#if defined(STRATA_EMU_ASAN)
    const bool realloc = bytes != shared_capacity_ || !dynamic_;  // exact size: ASan sees overflows
#else
    const bool realloc = bytes > shared_capacity_ || !dynamic_;
#endif
    if (!realloc) return;
    ::operator delete(dynamic_, std::align_val_t(kSharedAlign));
    dynamic_ = nullptr;  // (a throwing new below leaves the worker consistent)
    shared_capacity_ = 0;
    dynamic_ = static_cast<unsigned char*>(::operator new(bytes, std::align_val_t(kSharedAlign)));
    shared_capacity_ = bytes;
  }

  Context home_;  // the worker thread's own stack, which runs the scheduler loop
  FiberStacks stacks_;
  std::vector<Lane> lanes_;
  std::vector<uint32_t> warp_live_, warp_pending_;
  std::vector<int> free_stacks_;  // stacks no lane holds, the most recently freed last
  int retiring_stack_ = -1;       // stack of a fiber that returned, freed after the next switch
  int n_ = 0, live_ = 0;
  int block_arrived_ = 0, block_count_ = 0;        // the barrier being filled
  int released_arrived_ = 0, released_count_ = 0;  // the barrier last released
  Grid* grid_ = nullptr;
  std::exception_ptr error_;
  uint3 error_thread_{0, 0, 0};
  bool dirty_ = false;
  bool reverse_ = false;  // this block runs its rounds from the last lane down
  unsigned char* dynamic_ = nullptr;
  size_t shared_capacity_ = 0;
};

/// Runs invoke(call) once for every thread of every block of the grid; blocks in parallel.
inline void run_grid(dim3 grid, dim3 block, size_t shared_bytes, void (*invoke)(const void*),
                     const void* call) {
  Grid g;
  g.grid = grid;
  g.block = block;
  g.shared_bytes = shared_bytes;
  g.invoke = invoke;
  g.call = call;
  STRATA_CHECK(tl_lane == nullptr, "launch", "got a launch from inside a kernel (block ",
               dims_str(tl_worker->block_idx), ", thread ", dims_str(tl_lane->thread_idx),
               "), expected launches from host code only (dynamic parallelism is not emulated)");
  const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
  const int workers = int(std::min<uint64_t>(uint64_t(num_threads()), blocks));
  parallel_for(0, workers, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {  // one per pool thread, or all on this one when nested
      Worker& w = Worker::current();
      while (!g.failed.load(std::memory_order_relaxed)) {
        const uint64_t b = g.next_block.fetch_add(1, std::memory_order_relaxed);
        if (b >= blocks) break;
        try {
          w.run_block(g, b);
        } catch (...) {
          g.fail(std::current_exception());
        }
      }
    }
  });
  if (g.error) std::rethrow_exception(g.error);
}

}  // namespace strata::emu::detail

namespace strata::emu {
using detail::ScheduleOrder;
/// Runs the fibers of later blocks in `order` (see ScheduleOrder); for tests that hunt races.
inline void set_schedule_order(ScheduleOrder order) { detail::schedule_order_setting() = order; }
}  // namespace strata::emu
