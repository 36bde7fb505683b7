// ProcessGroup: collectives on CPU Tensors over MPI, each with a timeout that names a lost rank.
//
//   ProcessGroup& pg = strata::dist::init_process_group({.timeout_s = 60});
//   pg.all_reduce(grad, ReduceOp::avg);       // in place, every rank ends with the mean
//   Work w = pg.all_reduce_async(bucket);     // overlaps with compute; w.wait() later
//   pg.broadcast(weights, /*root=*/0);
//   Tensor all = pg.all_gather(metric);       // [world_size, *metric.shape()], rank order
//
// Contract: tensors are contiguous, on the cpu or a cuda device, of f32 f64 f16 bf16 i32 i64 u8
// (broadcast and all_gather also bool); every rank calls the same collectives in the same order
// (MPI's rule). f16/bf16 reduce in float (widened, reduced, rounded back once). avg is for floating dtypes.
//
// cuda tensors (one device per process: DistributedTrainer puts rank r on cuda(local_rank % devices)):
// - over MPI (the emulator, or a GPU build without STRATA_NCCL): each call copies the tensor down to a
//   pinned host buffer (cuda::malloc_host, kept in a small cache for the next call of that size), runs
//   the MPI collective on it exactly as for a cpu tensor, and copies the result up when it completes,
//   so the answers are the cpu tensors' answers, bit for bit.
// - with NCCL (STRATA_CUDA and STRATA_NCCL, detail/nccl.hpp): ncclAllReduce / ncclBroadcast /
//   ncclAllGather on a stream of the group's, after the default stream's work (where strata's kernels
//   run; an event between them, so backward's kernels and the buckets' all-reduces overlap), f16/bf16
//   natively, avg as ncclAvg. The communicator is made at the first collective on a cuda tensor, on
//   that tensor's device (rank 0's ncclUniqueId broadcast over MPI; ncclCommInitRank waited for with
//   the timeout too; every later cuda tensor must be on the same device). The Work's completion is an
//   event recorded after the NCCL call, polled like an MPI request, so the timeout and the lost-rank
//   report work the same; a timed-out NCCL collective aborts the communicator. Work::wait() does not
//   block the host there: it makes the default stream wait for that event (work.hpp), and the watcher
//   thread times the collective out from then on.
//
// Timeouts: every collective is a nonblocking MPI call (MPI_Iallreduce, MPI_Ibcast, MPI_Iallgather,
// MPI_Ibarrier) polled with MPI_Test until timeout_s. To say WHO is missing, a rank entering
// collective #s sends a tiny "arrived s" message to every other rank on a private communicator;
// when #s times out, the ranks whose "arrived s" never came are named ("rank 1 was lost ...").
// A watcher thread also sends the same message every timeout_s / 10 (at most 1 s) as a heartbeat:
// a rank silent for 4 beats is "lost" (dead), one still beating but not arriving is "alive but did
// not reach" (hung, or calling other collectives); so a rank that dies inside a collective it had
// already reached is named too. The watcher's polling also drives MPI's progress engine while
// collectives are in flight, so all_reduce_async makes progress during the caller's compute.
// After a timeout the group is broken (MPI cannot cancel a collective): every later call throws,
// and destroy_process_group skips MPI_Finalize, which would wait for the dead rank forever.
// The communicators use MPI_ERRORS_RETURN, so MPI failures become strata::Error, not an abort.
//
// Threads: the group serializes its MPI calls with a mutex (MPI_THREAD_SERIALIZED), so any thread may
// start or wait on collectives, as long as all ranks start them in the same order. Without that
// thread level from MPI, there is no watcher: arrivals alone name the missing ranks.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <climits>
#include <cstdio>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "strata/backend/runtime.hpp"
#include "strata/dist/detail/mpi.hpp"
#include "strata/dist/detail/nccl.hpp"
#include "strata/dist/env.hpp"
#include "strata/dist/work.hpp"

namespace strata::dist {

/// Options of init_process_group.
struct InitOptions {
  double timeout_s = 120;  // every collective fails with strata::Error after this many seconds
};

class ProcessGroup {
 public:
  /// Made by init_process_group (collective over `world`: every rank must call it).
  ProcessGroup(MPI_Comm world, const InitOptions& o);
  ~ProcessGroup() {
    stop_watcher();
    free_host_cache();
  }
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return size_; }
  /// Rank among the processes on this machine (launcher's variable, else MPI's shared-memory split).
  int local_rank() const { return local_rank_; }
  double timeout_s() const { return timeout_s_; }

  /// In place: every rank ends with op over all ranks' t. t contiguous, cpu or cuda.
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum) { all_reduce_async(t, op).wait(); }
  /// Starts an all_reduce and returns at once; t is written when the Work completes.
  Work all_reduce_async(Tensor& t, ReduceOp op = ReduceOp::sum);
  /// In place: every rank ends with root's t (same shape and dtype on every rank).
  void broadcast(Tensor& t, int root = 0);
  /// Every rank's t stacked in rank order: shape [world_size, *t.shape()], on t's device.
  Tensor all_gather(const Tensor& t);
  /// Returns once every rank has called it.
  void barrier();

  /// True after a collective failed or timed out; every later collective throws.
  bool broken() const { std::lock_guard lock(mutex_); return !broken_.empty(); }
  /// The number of collectives this rank has started.
  int64_t collectives_started() const { std::lock_guard lock(mutex_); return seq_; }

  /// Last barrier, drains the arrival messages, frees the communicators. False (and MPI must not be
  /// finalized) when the group is broken or the barrier times out. Used by destroy_process_group.
  bool shutdown() noexcept;

 private:
  friend class Work;
  using Clock = std::chrono::steady_clock;
  using WorkPtr = std::shared_ptr<detail::WorkState>;
  static constexpr int kTagArrive = 7;

  struct Send {
    int64_t value = 0;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  void check_tensor(const Tensor& t, const char* op) const;
  void* take_host(const WorkPtr& w, size_t bytes);  // lock held: a pinned buffer of >= bytes, owned by w
  void copy_down(const WorkPtr& w, void* host, const Tensor& t);  // lock held: t's bytes to host (fails w on error)
  void give_host(void* p, size_t bytes) noexcept;   // lock held: back to the cache (or freed)
  void free_host_cache() noexcept;
#if defined(STRATA_DIST_NCCL)
  void ensure_nccl(int device, const char* op);     // makes the communicator at the first cuda collective
  cuda::Stream nccl_enqueue();                     // lock held: the NCCL stream, after the default stream's work
  void nccl_started(const WorkPtr& w, int device, ncclResult_t rc, const char* call);  // lock held
  bool nccl_done(const WorkPtr& w);                 // lock held: the event has completed
#endif
  WorkPtr start(const char* op, const Tensor& keep);  // lock held: numbers the collective, announces it
  void post_recv(int peer);
  void poll_control();                                 // lock held
  bool test_locked(const WorkPtr& w);                  // lock held
  bool complete_locked(const WorkPtr& w);              // lock held: MPI_Test, and finish it when done
  void progress_locked();                              // lock held: completes every collective in flight
  void fail_locked(const WorkPtr& w, const std::string& msg);
  void fail_on(int rc, const WorkPtr& w, const std::string& op, const char* call);  // lock held: rc != MPI_SUCCESS fails w
  std::string describe_timeout(const detail::WorkState& w);
  void wait_work(const WorkPtr& w);
  bool test_work(const WorkPtr& w);
#if defined(STRATA_DIST_NCCL)
  bool order_after(const WorkPtr& w);                  // Work::wait of an NCCL collective: the default stream waits
  void expire_ordered();                               // lock held: the timeout of those (the watcher)
#endif
  void send_beats();                                   // lock held
  void watch();                                        // the watcher thread's loop
  void stop_watcher();
  double seconds_since(Clock::time_point t) const { return std::chrono::duration<double>(Clock::now() - t).count(); }

  mutable std::mutex mutex_;
  MPI_Comm comm_ = MPI_COMM_NULL;  // the collectives
  MPI_Comm ctl_ = MPI_COMM_NULL;   // the arrival messages
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  double timeout_s_ = 120;
  int64_t seq_ = 0;                 // collectives started here
  std::string broken_;              // why the group is broken; empty while healthy
  std::vector<int64_t> arrived_;    // highest collective number each rank announced
  std::vector<Clock::time_point> heard_;  // when each rank's last message came
  std::vector<int64_t> recv_buf_;
  std::vector<MPI_Request> recv_req_;
  std::vector<int> idx_;            // MPI_Testsome's output
  std::list<Send> sends_;           // arrival messages not yet sent out (list: stable buffer addresses)
  std::vector<WorkPtr> graveyard_;  // failed collectives: MPI may still touch their buffers
  // the watcher: heartbeats and progress
  std::thread watcher_;
  std::condition_variable wake_;
  bool stop_ = false;
  int64_t inflight_ = 0;            // collectives started and not finished: the watcher polls often then
  std::vector<WorkPtr> running_;    // those collectives: the group owns them (and their buffers) until
                                    // they finish, so a Work handle dropped early frees nothing MPI writes
  double beat_s_ = 1;               // heartbeat interval
  Clock::time_point last_beat_;
  std::vector<Send> beats_;         // one heartbeat in flight per peer at most
  // pinned host buffers of finished cuda collectives (MPI path), by size, for the next ones
  std::multimap<size_t, void*> host_cache_;
  size_t host_cached_ = 0;
  static constexpr size_t kHostCacheBytes = size_t(256) << 20;
#if defined(STRATA_DIST_NCCL)
  ncclComm_t nccl_ = nullptr;       // made at the first cuda collective
  int nccl_device_ = -1;
  cuda::Stream nccl_stream_ = nullptr;  // NCCL's kernels run here, so they overlap the default stream's
  cuda::Event nccl_ready_ = nullptr;    // recorded on the default stream before each collective
#endif
};

namespace detail {
/// The first byte of t's elements, wherever they live (device memory for a cuda tensor).
inline char* tensor_bytes(const Tensor& t) {
  return static_cast<char*>(t.storage()->data()) + t.offset() * t.element_size();
}
/// Copies between host and a cuda tensor's memory on its device (synchronous: the default stream's
/// kernels that wrote src have finished; the copy has landed on return).
inline void copy_device(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  cuda::DeviceGuard guard(device);
  cuda::memcpy(dst, src, bytes);
}
}  // namespace detail

// ---- construction -------------------------------------------------------------------------------

inline ProcessGroup::ProcessGroup(MPI_Comm world, const InitOptions& o) : timeout_s_(o.timeout_s) {
  const char* op = "init_process_group";
  STRATA_CHECK(o.timeout_s > 0, op, "got timeout_s=", o.timeout_s, ", expected > 0");
  detail::mpi_check(MPI_Comm_dup(world, &comm_), op, "MPI_Comm_dup");
  detail::mpi_check(MPI_Comm_dup(world, &ctl_), op, "MPI_Comm_dup");
  detail::mpi_check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), op, "MPI_Comm_set_errhandler");
  detail::mpi_check(MPI_Comm_set_errhandler(ctl_, MPI_ERRORS_RETURN), op, "MPI_Comm_set_errhandler");
  detail::mpi_check(MPI_Comm_rank(comm_, &rank_), op, "MPI_Comm_rank");
  detail::mpi_check(MPI_Comm_size(comm_, &size_), op, "MPI_Comm_size");
  const LaunchEnv env = read_launch_env();
  check_launch_env(env, rank_, size_);
  if (env.local_rank >= 0) {
    local_rank_ = env.local_rank;
  } else {  // no launcher variable: the rank among the processes sharing this machine's memory
    MPI_Comm node = MPI_COMM_NULL;
    detail::mpi_check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node), op,
                      "MPI_Comm_split_type");
    detail::mpi_check(MPI_Comm_rank(node, &local_rank_), op, "MPI_Comm_rank");
    MPI_Comm_free(&node);
  }
  arrived_.assign(size_t(size_), 0);
  heard_.assign(size_t(size_), Clock::now());
  recv_buf_.assign(size_t(size_), 0);
  recv_req_.assign(size_t(size_), MPI_REQUEST_NULL);
  idx_.assign(size_t(size_), 0);
  for (int p = 0; p < size_; ++p)
    if (p != rank_) post_recv(p);
  int level = MPI_THREAD_SINGLE;
  MPI_Query_thread(&level);
  if (size_ > 1 && level >= MPI_THREAD_SERIALIZED) {
    beat_s_ = std::clamp(timeout_s_ / 10, 0.01, 1.0);
    beats_.resize(size_t(size_));
    last_beat_ = Clock::now() - std::chrono::hours(1);  // beat at once
    watcher_ = std::thread([this] { watch(); });
  }
}

// ---- collectives --------------------------------------------------------------------------------

inline void ProcessGroup::check_tensor(const Tensor& t, const char* op) const {
  STRATA_CHECK(t.defined(), op, "got an undefined tensor, expected a defined one");
  STRATA_CHECK(t.device().is_cpu() || t.device().is_cuda(), op, "got a tensor on ", t.device(),
               ", expected a cpu or cuda tensor");
  STRATA_CHECK(t.is_contiguous(), op, "got a non-contiguous tensor (shape ", t.shape(), ", strides ", t.strides(),
               "), expected a contiguous one (pass t.contiguous() and copy the result back)");
  STRATA_CHECK(t.numel() <= INT_MAX, op, "got ", t.numel(), " elements, expected at most ", INT_MAX,
               " (MPI counts are int): split the tensor");
}

inline Work ProcessGroup::all_reduce_async(Tensor& t, ReduceOp rop) {
  const char* op = "all_reduce";
  check_tensor(t, op);
  STRATA_CHECK(t.dtype() != DType::b8, op, "got dtype ", t.dtype(),
               ", expected a numeric dtype (float32, float64, float16, bfloat16, int32, int64, uint8)");
  STRATA_CHECK(rop != ReduceOp::avg || t.is_floating_point(), op, "got ReduceOp::avg on dtype ", t.dtype(),
               ", expected a floating dtype (an integer mean would be truncated: use sum and divide)");
  const bool on_cuda = t.device().is_cuda();
  const int n = int(t.numel());
  const size_t bytes = size_t(n) * t.element_size();
#if defined(STRATA_DIST_NCCL)
  if (on_cuda) {
    ensure_nccl(t.device().index, op);
    std::lock_guard lock(mutex_);
    WorkPtr w = start(op, t);
    void* p = detail::tensor_bytes(t);
    cuda::DeviceGuard guard(t.device().index);
    nccl_started(w, t.device().index,
                 ncclAllReduce(p, p, size_t(n), detail::nccl_type(t.dtype()), detail::nccl_op(rop), nccl_, nccl_enqueue()),
                 "ncclAllReduce");
    return Work(w);
  }
#endif
  std::lock_guard lock(mutex_);
  WorkPtr w = start(op, t);
  // the host memory MPI works on: t's own (cpu), or a pinned copy of it (cuda), copied up at the end
  void* data = on_cuda ? take_host(w, bytes) : t.raw_data();
  if (on_cuda) copy_down(w, data, t);
  const float div = rop == ReduceOp::avg ? float(size_) : 1.0f;  // avg = sum / world_size
  detail::WorkState* s = w.get();
  int rc = MPI_SUCCESS;
  if (t.dtype() == DType::f16 || t.dtype() == DType::bf16) {
    // widen to float, reduce in float, round back once (no per-hop rounding in 16 bits)
    w->staging.resize(size_t(n));
    dispatch_float(t.dtype(), op, [&]<class T>(type_tag<T>) {
      if constexpr (std::is_same_v<T, f16> || std::is_same_v<T, bf16>) {
        const T* p = static_cast<const T*>(data);
        for (int i = 0; i < n; ++i) w->staging[size_t(i)] = float(p[i]);
        s->finish = [s, n, div, data]() {
          T* q = static_cast<T*>(data);
          for (int i = 0; i < n; ++i) q[i] = T(s->staging[size_t(i)] / div);
        };
      }
    });
    rc = MPI_Iallreduce(MPI_IN_PLACE, w->staging.data(), n, MPI_FLOAT, detail::mpi_op(rop), comm_, &w->request);
  } else {
    if (rop == ReduceOp::avg) {
      const int size = size_;
      const DType dt = t.dtype();
      s->finish = [n, size, data, dt]() {
        dispatch_float(dt, "all_reduce", [&]<class T>(type_tag<T>) {
          if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
            T* q = static_cast<T*>(data);
            for (int i = 0; i < n; ++i) q[i] = q[i] / T(size);
          }
        });
      };
    }
    rc = MPI_Iallreduce(MPI_IN_PLACE, data, n, detail::mpi_type(t.dtype()), detail::mpi_op(rop), comm_,
                        &w->request);
  }
  if (on_cuda) {  // then the result goes up to the device
    s->finish = [s, host_finish = std::move(s->finish), bytes]() {
      if (host_finish) host_finish();
      detail::copy_device(detail::tensor_bytes(s->keep), s->host, bytes, s->device);
    };
  }
  fail_on(rc, w, op, "MPI_Iallreduce");
  return Work(w);
}

inline void ProcessGroup::broadcast(Tensor& t, int root) {
  const char* op = "broadcast";
  check_tensor(t, op);
  STRATA_CHECK(root >= 0 && root < size_, op, "got root ", root, ", expected a rank in [0, ", size_, ")");
  const bool on_cuda = t.device().is_cuda();
  const size_t bytes = size_t(t.numel()) * t.element_size();
#if defined(STRATA_DIST_NCCL)
  if (on_cuda) ensure_nccl(t.device().index, op);
#endif
  WorkPtr w;
  {
    std::lock_guard lock(mutex_);
    w = start(op, t);
#if defined(STRATA_DIST_NCCL)
    if (on_cuda) {
      void* p = detail::tensor_bytes(t);
      cuda::DeviceGuard guard(t.device().index);
      nccl_started(w, t.device().index,
                   ncclBroadcast(p, p, size_t(t.numel()), detail::nccl_type(t.dtype()), root, nccl_, nccl_enqueue()),
                   "ncclBroadcast");
    } else
#endif
    {
      void* data = on_cuda ? take_host(w, bytes) : t.raw_data();
      if (on_cuda && rank_ == root) copy_down(w, data, t);
      if (on_cuda && rank_ != root) {
        detail::WorkState* s = w.get();
        s->finish = [s, bytes]() { detail::copy_device(detail::tensor_bytes(s->keep), s->host, bytes, s->device); };
      }
      const int rc = MPI_Ibcast(data, int(t.numel()), detail::mpi_type(t.dtype()), root, comm_, &w->request);
      fail_on(rc, w, op, "MPI_Ibcast");
    }
  }
  wait_work(w);
}

inline Tensor ProcessGroup::all_gather(const Tensor& t) {
  const char* op = "all_gather";
  check_tensor(t, op);
  Shape shape{int64_t(size_)};
  shape.insert(shape.end(), t.shape().begin(), t.shape().end());
  STRATA_CHECK(numel(shape) <= INT_MAX, op, "got ", t.numel(), " elements per rank, expected at most ",
               INT_MAX / size_, " for ", size_, " ranks (MPI counts are int)");
  const bool on_cuda = t.device().is_cuda();
  const size_t bytes = size_t(t.numel()) * t.element_size();
#if defined(STRATA_DIST_NCCL)
  if (on_cuda) ensure_nccl(t.device().index, op);
#endif
  Tensor out = Tensor::empty(shape, t.dtype(), t.device());
  WorkPtr w;
  {
    std::lock_guard lock(mutex_);
    w = start(op, out);
    const int n = int(t.numel());
#if defined(STRATA_DIST_NCCL)
    if (on_cuda) {
      cuda::DeviceGuard guard(t.device().index);
      nccl_started(w, t.device().index,
                   ncclAllGather(detail::tensor_bytes(t), detail::tensor_bytes(out), size_t(n),
                                 detail::nccl_type(t.dtype()), nccl_, nccl_enqueue()),
                   "ncclAllGather");
    } else
#endif
    {
      const MPI_Datatype type = detail::mpi_type(t.dtype());
      const void* send = on_cuda ? nullptr : t.raw_data();
      void* recv = on_cuda ? nullptr : out.raw_data();
      if (on_cuda) {  // one pinned buffer: this rank's part, then everyone's
        char* host = static_cast<char*>(take_host(w, bytes * size_t(size_ + 1)));
        copy_down(w, host, t);
        send = host;
        recv = host + bytes;
        detail::WorkState* s = w.get();
        const size_t all = bytes * size_t(size_);
        s->finish = [s, bytes, all]() {
          detail::copy_device(detail::tensor_bytes(s->keep), static_cast<char*>(s->host) + bytes, all, s->device);
        };
      }
      const int rc = MPI_Iallgather(send, n, type, recv, n, type, comm_, &w->request);
      fail_on(rc, w, op, "MPI_Iallgather");
    }
  }
  wait_work(w);
  return out;
}

inline void ProcessGroup::barrier() {
  const char* op = "barrier";
  WorkPtr w;
  {
    std::lock_guard lock(mutex_);
    w = start(op, Tensor());
    const int rc = MPI_Ibarrier(comm_, &w->request);
    fail_on(rc, w, op, "MPI_Ibarrier");
  }
  wait_work(w);
}

// ---- pinned host staging of cuda tensors (MPI path) ----------------------------------------------

inline void* ProcessGroup::take_host(const WorkPtr& w, size_t bytes) {
  w->device = w->keep.defined() && w->keep.device().is_cuda() ? w->keep.device().index : 0;
  if (bytes == 0) return nullptr;
  // the smallest cached buffer that fits and wastes at most half of itself (buckets repeat their sizes)
  auto it = host_cache_.lower_bound(bytes);
  if (it != host_cache_.end() && it->first / 2 <= bytes) {
    w->host = it->second;
    w->host_bytes = it->first;
    host_cached_ -= it->first;
    host_cache_.erase(it);
  } else {
    const size_t rounded = (bytes + 4095) / 4096 * 4096;
    w->host = cuda::malloc_host(rounded);
    w->host_bytes = rounded;
  }
  return w->host;
}

inline void ProcessGroup::copy_down(const WorkPtr& w, void* host, const Tensor& t) {
  try {
    detail::copy_device(host, detail::tensor_bytes(t), size_t(t.numel()) * t.element_size(), t.device().index);
  } catch (const std::exception& e) {  // numbered and announced, but never started: the group breaks
    fail_locked(w, w->op + ": copying the cuda tensor to host memory failed: " + e.what());
    throw;
  }
}

inline void ProcessGroup::give_host(void* p, size_t bytes) noexcept {
  if (!p) return;
  try {
    host_cache_.emplace(bytes, p);
    host_cached_ += bytes;
    while (host_cached_ > kHostCacheBytes && !host_cache_.empty()) {  // the smallest go first
      auto it = host_cache_.begin();
      host_cached_ -= it->first;
      cuda::free_host(it->second);
      host_cache_.erase(it);
    }
  } catch (...) {  // a failing free (the CUDA runtime unloading at exit): the memory goes with the process
  }
}

inline void ProcessGroup::free_host_cache() noexcept {
  std::lock_guard lock(mutex_);
  for (auto& [bytes, p] : host_cache_) {
    try {
      cuda::free_host(p);
    } catch (...) {
    }
  }
  host_cache_.clear();
  host_cached_ = 0;
}

// ---- NCCL (cuda tensors, STRATA_CUDA + STRATA_NCCL) ----------------------------------------------

#if defined(STRATA_DIST_NCCL)
inline void ProcessGroup::ensure_nccl(int device, const char* op) {
  {
    std::lock_guard lock(mutex_);
    if (nccl_) {
      STRATA_CHECK(device == nccl_device_, op, "got a tensor on cuda:", device, ", expected cuda:", nccl_device_,
                   " (this rank's NCCL communicator was made there at its first cuda collective: one device per "
                   "process)");
      return;
    }
  }
  // rank 0's unique id to every rank over MPI (a collective: every rank gets here at the same call)
  ncclUniqueId id{};
  if (rank_ == 0) detail::nccl_check(ncclGetUniqueId(&id), op, "ncclGetUniqueId");
  Tensor idt = Tensor::empty({int64_t(sizeof id)}, DType::u8);
  std::memcpy(idt.raw_data(), &id, sizeof id);
  broadcast(idt, 0);
  std::memcpy(&id, idt.raw_data(), sizeof id);
  // ncclCommInitRank blocks until every rank has joined: it runs on a thread of its own, waited for with
  // the group's timeout (a rank that dies now is an Error here, not a hang; the thread is then left
  // behind, and the broken group ends the job with MPI_Abort at exit)
  struct Init {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    ncclResult_t rc = ncclSuccess;
    ncclComm_t comm = nullptr;
    std::string error;  // from cudaSetDevice
  };
  auto init = std::make_shared<Init>();
  std::thread([init, device, id, size = size_, rank = rank_] {
    ncclComm_t comm = nullptr;
    ncclResult_t rc = ncclSuccess;
    std::string error;
    try {
      cuda::set_device(device);  // the communicator's device
      rc = ncclCommInitRank(&comm, size, id, rank);
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::lock_guard lock(init->m);
    init->comm = comm;
    init->rc = rc;
    init->error = error;
    init->done = true;
    init->cv.notify_all();
  }).detach();
  std::unique_lock wait(init->m);
  if (!init->cv.wait_for(wait, std::chrono::duration<double>(timeout_s_), [&] { return init->done; })) {
    std::ostringstream os;
    os << op << ": ncclCommInitRank did not complete within the timeout of " << timeout_s_
       << " s (a rank died or cannot reach this one over NCCL's network). The process group (rank " << rank_
       << " of " << size_ << ") is broken now: end this process and restart the job";
    {
      std::lock_guard lock(mutex_);
      if (broken_.empty()) broken_ = os.str();
    }
    throw Error(os.str());
  }
  STRATA_CHECK(init->error.empty(), op, "got an error making the NCCL communicator on cuda:", device, " (",
               init->error, "), expected it made");
  detail::nccl_check(init->rc, op, "ncclCommInitRank");
  cuda::DeviceGuard guard(device);
  std::lock_guard lock(mutex_);
  nccl_ = init->comm;
  nccl_device_ = device;
  nccl_stream_ = cuda::stream_create();
  nccl_ready_ = cuda::event_create();
}

inline cuda::Stream ProcessGroup::nccl_enqueue() {
  // the tensor was written by kernels on the default stream (strata launches there): NCCL's stream
  // waits for them on the device, and the host waits for NCCL's event in Work::wait()
  cuda::event_record(nccl_ready_, cuda::Stream{});
  cuda::stream_wait_event(nccl_stream_, nccl_ready_);
  return nccl_stream_;
}

inline void ProcessGroup::nccl_started(const WorkPtr& w, int device, ncclResult_t rc, const char* call) {
  w->device = device;
  if (rc != ncclSuccess) {
    try { detail::nccl_check(rc, w->op, call); } catch (const Error& e) { fail_locked(w, e.what()); }
    return;
  }
  try {
    w->event = cuda::event_create();
    cuda::event_record(w->event, nccl_stream_);
  } catch (const Error& e) {
    fail_locked(w, e.what());
  }
}

inline bool ProcessGroup::nccl_done(const WorkPtr& w) {
  cuda::DeviceGuard guard(w->device);
  if (nccl_) {
    ncclResult_t async = ncclSuccess;
    detail::nccl_check(ncclCommGetAsyncError(nccl_, &async), w->op, "ncclCommGetAsyncError");
    detail::nccl_check(async, w->op, "the NCCL communicator (asynchronous error)");
  }
  if (!cuda::event_query(w->event)) return false;
  cuda::event_destroy(w->event);
  w->event = nullptr;
  return true;
}
#endif

// ---- bookkeeping: numbering, arrival messages, waiting with a deadline ---------------------------

inline ProcessGroup::WorkPtr ProcessGroup::start(const char* op, const Tensor& keep) {
  STRATA_CHECK(broken_.empty(), op, "got a call on a broken process group, expected a healthy one (it broke "
               "earlier: ", broken_, ")");
  auto w = std::make_shared<detail::WorkState>();
  w->group = this;
  w->op = op;
  w->seq = ++seq_;
  w->keep = keep;
  ++inflight_;
  running_.push_back(w);
  wake_.notify_one();  // the watcher polls faster while collectives are in flight
  for (int p = 0; p < size_; ++p) {  // "I have reached collective #seq"
    if (p == rank_) continue;
    Send& s = sends_.emplace_back();
    s.value = w->seq;
    detail::mpi_check(MPI_Isend(&s.value, 1, MPI_INT64_T, p, kTagArrive, ctl_, &s.request), op, "MPI_Isend");
  }
  return w;
}

inline void ProcessGroup::post_recv(int peer) {
  detail::mpi_check(MPI_Irecv(&recv_buf_[size_t(peer)], 1, MPI_INT64_T, peer, kTagArrive, ctl_,
                              &recv_req_[size_t(peer)]), "process_group", "MPI_Irecv");
}

inline void ProcessGroup::poll_control() {
  if (size_ == 1) return;
  for (;;) {  // drain every message that has come
    int count = 0;
    detail::mpi_check(MPI_Testsome(size_, recv_req_.data(), &count, idx_.data(), MPI_STATUSES_IGNORE),
                      "process_group", "MPI_Testsome");
    if (count == MPI_UNDEFINED || count == 0) break;
    for (int k = 0; k < count; ++k) {
      const int p = idx_[size_t(k)];
      arrived_[size_t(p)] = std::max(arrived_[size_t(p)], recv_buf_[size_t(p)]);
      heard_[size_t(p)] = Clock::now();
      post_recv(p);
    }
  }
  for (auto it = sends_.begin(); it != sends_.end();) {
    int flag = 0;
    detail::mpi_check(MPI_Test(&it->request, &flag, MPI_STATUS_IGNORE), "process_group", "MPI_Test");
    it = flag ? sends_.erase(it) : std::next(it);
  }
}

inline void ProcessGroup::fail_locked(const WorkPtr& w, const std::string& msg) {
  if (!w->completed && w->seq > 0) --inflight_;
#if defined(STRATA_DIST_NCCL)
  if (w->event && nccl_) {  // NCCL's kernels may wait for the lost rank forever: abort them
    ncclCommAbort(nccl_);
    nccl_ = nullptr;
  }
#endif
  w->error = std::make_exception_ptr(Error(msg));
  w->completed.store(true, std::memory_order_release);
  if (broken_.empty()) broken_ = msg;
  graveyard_.push_back(w);
}

inline void ProcessGroup::fail_on(int rc, const WorkPtr& w, const std::string& op, const char* call) {
  if (rc == MPI_SUCCESS) return;
  try { detail::mpi_check(rc, op, call); } catch (const Error& e) { fail_locked(w, e.what()); }
}

inline bool ProcessGroup::complete_locked(const WorkPtr& w) {
  if (w->completed) return true;
  int flag = 0;
#if defined(STRATA_DIST_NCCL)
  if (w->event) {  // an NCCL collective: its event has completed
    try {
      if (!nccl_done(w)) return false;
    } catch (const std::exception& e) {
      fail_locked(w, e.what());
      return true;
    }
    flag = 1;
  }
#endif
  const int rc = w->request == MPI_REQUEST_NULL ? MPI_SUCCESS : MPI_Test(&w->request, &flag, MPI_STATUS_IGNORE);
  if (rc != MPI_SUCCESS) {
    fail_on(rc, w, w->op, "MPI_Test");
    return true;
  }
  if (flag || w->request == MPI_REQUEST_NULL) {
    --inflight_;
    if (w->finish) {
      try { w->finish(); } catch (...) { w->error = std::current_exception(); }
    }
    w->keep = Tensor();
    w->staging = {};
    w->finish = nullptr;
    give_host(w->host, w->host_bytes);
    w->host = nullptr;
    w->completed.store(true, std::memory_order_release);  // last: a Work that sees it sees the result
  }
  return w->completed;
}

inline void ProcessGroup::progress_locked() {
  for (const WorkPtr& w : running_) complete_locked(w);
  std::erase_if(running_, [](const WorkPtr& w) { return w->completed.load(); });
}

inline bool ProcessGroup::test_locked(const WorkPtr& w) {
  const bool done = complete_locked(w);
  poll_control();
  return done;
}

inline std::string ProcessGroup::describe_timeout(const detail::WorkState& w) {
  poll_control();
  const bool beating = watcher_.joinable();
  const double lost_after = 4 * beat_s_;  // silent this long while heartbeats run: dead
  std::vector<int> lost, behind;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    if (beating ? seconds_since(heard_[size_t(p)]) > lost_after : arrived_[size_t(p)] < w.seq) lost.push_back(p);
    else if (arrived_[size_t(p)] < w.seq) behind.push_back(p);
  }
  auto names = [](const std::vector<int>& ranks) {
    std::ostringstream os;
    os << (ranks.size() == 1 ? "rank " : "ranks ");
    for (size_t k = 0; k < ranks.size(); ++k) os << (k ? ", " : "") << ranks[k];
    return os.str();
  };
  std::ostringstream os;
  os.precision(3);
  os << w.op << ": collective #" << w.seq << " did not complete within the timeout of " << timeout_s_ << " s: ";
  if (!lost.empty()) {
    os << names(lost) << (lost.size() == 1 ? " was" : " were") << " lost (";
    for (size_t k = 0; k < lost.size(); ++k) {
      const int p = lost[k];
      os << (k ? "; " : "") << "rank " << p << ": no message for " << seconds_since(heard_[size_t(p)])
         << " s, last reached collective #" << arrived_[size_t(p)];
    }
    os << (beating ? "): it died or its machine is unreachable" : "): it died, hangs, or called other collectives");
  }
  if (!behind.empty()) {
    os << (lost.empty() ? "" : "; ") << names(behind) << (behind.size() == 1 ? " is" : " are")
       << " alive but did not reach it (";
    for (size_t k = 0; k < behind.size(); ++k)
      os << (k ? "; " : "") << "rank " << behind[k] << " is at #" << arrived_[size_t(behind[k])];
    os << "): a hang, or ranks calling different collectives";
  }
  if (lost.empty() && behind.empty())
    os << "every rank reached it and is alive, yet it did not finish (ranks calling collectives with "
          "different sizes or roots?)";
  os << ". The process group (rank " << rank_ << " of " << size_
     << ") is broken now: end this process and restart the job";
  return os.str();
}

inline void ProcessGroup::wait_work(const WorkPtr& w) {
  const auto t0 = Clock::now();
  const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s_));
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (test_locked(w)) break;
      if (!broken_.empty()) {
        fail_locked(w, w->op + ": the process group broke while this collective waited: " + broken_);
        break;
      }
      if (Clock::now() >= deadline) {
        fail_locked(w, describe_timeout(*w));
        break;
      }
    }
    // back off: spin first (fast collectives), then short sleeps so a waiting rank leaves the core
    // to compute on a shared machine
    const double waited = seconds_since(t0);
    if (waited > 20e-3) std::this_thread::sleep_for(std::chrono::microseconds(500));
    else if (waited > 200e-6) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  if (w->error) std::rethrow_exception(w->error);
}

inline bool ProcessGroup::test_work(const WorkPtr& w) {
  std::lock_guard lock(mutex_);
  try {
    if (test_locked(w)) return true;
  } catch (const std::exception& e) {  // done() never throws: the failure is kept for wait()
    fail_locked(w, e.what());
    return true;
  }
  if (!broken_.empty()) {
    fail_locked(w, w->op + ": the process group broke while this collective waited: " + broken_);
    return true;
  }
  return false;
}

inline bool ProcessGroup::shutdown() noexcept {
  try {
    stop_watcher();  // no heartbeats after this: the last barrier's arrival is each rank's last message
    if (broken()) return false;
    barrier();  // every rank has now sent its last arrival message
    std::unique_lock lock(mutex_);
    const auto t0 = Clock::now();
    auto pending = [&] {
      poll_control();
      for (int p = 0; p < size_; ++p)
        if (p != rank_ && arrived_[size_t(p)] < seq_) return true;
      return !sends_.empty();
    };
    while (pending()) {  // receive them all, so none is left unmatched at MPI_Finalize
      if (seconds_since(t0) > timeout_s_) return false;
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      lock.lock();
    }
    for (int p = 0; p < size_; ++p) {
      if (recv_req_[size_t(p)] == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&recv_req_[size_t(p)]);
      MPI_Wait(&recv_req_[size_t(p)], MPI_STATUS_IGNORE);
    }
    MPI_Comm_free(&ctl_);
    MPI_Comm_free(&comm_);
#if defined(STRATA_DIST_NCCL)
    if (nccl_) {
      ncclCommDestroy(nccl_);
      nccl_ = nullptr;
      cuda::DeviceGuard guard(nccl_device_);
      cuda::stream_destroy(nccl_stream_);
      cuda::event_destroy(nccl_ready_);
    }
#endif
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "destroy_process_group: %s\n", e.what());
    return false;
  }
}

inline void ProcessGroup::send_beats() {
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    Send& b = beats_[size_t(p)];
    int flag = 1;
    if (b.request != MPI_REQUEST_NULL) MPI_Test(&b.request, &flag, MPI_STATUS_IGNORE);
    if (!flag) continue;  // the last beat has not left yet (a dead peer stops reading): skip this one
    b.value = seq_;
    detail::mpi_check(MPI_Isend(&b.value, 1, MPI_INT64_T, p, kTagArrive, ctl_, &b.request), "process_group",
                      "MPI_Isend");
  }
  last_beat_ = Clock::now();
}

inline void ProcessGroup::watch() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    try {
      if (seconds_since(last_beat_) >= beat_s_) send_beats();
      poll_control();  // also advances MPI's nonblocking collectives
      progress_locked();
#if defined(STRATA_DIST_NCCL)
      expire_ordered();
#endif
    } catch (const std::exception& e) {
      if (broken_.empty()) broken_ = e.what();
      return;
    }
    if (inflight_ > 0) wake_.wait_for(lock, std::chrono::microseconds(500));
    else wake_.wait_for(lock, std::chrono::duration<double>(beat_s_));
  }
}

inline void ProcessGroup::stop_watcher() {
  if (!watcher_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  watcher_.join();
  std::lock_guard lock(mutex_);
  for (Send& b : beats_) {  // a beat to a live peer leaves at once; one to a dead peer is dropped
    if (b.request == MPI_REQUEST_NULL) continue;
    int flag = 0;
    for (int k = 0; k < 1000 && !flag; ++k) MPI_Test(&b.request, &flag, MPI_STATUS_IGNORE);
  }
}

#if defined(STRATA_DIST_NCCL)
inline bool ProcessGroup::order_after(const WorkPtr& w) {
  std::lock_guard lock(mutex_);
  // without the watcher nothing would time it out: the caller blocks in wait_work instead
  if (!watcher_.joinable() || !w->event || test_locked(w)) return false;
  if (!w->stream_ordered) {
    cuda::DeviceGuard guard(w->device);
    cuda::stream_wait_event(cuda::Stream{}, w->event);  // the default stream's next kernels run after NCCL's
    w->stream_ordered = true;
    w->waited_at = Clock::now();
  }
  return true;
}

inline void ProcessGroup::expire_ordered() {
  for (const WorkPtr& w : running_)
    if (w->stream_ordered && !w->completed && seconds_since(w->waited_at) > timeout_s_)
      fail_locked(w, describe_timeout(*w));  // aborts the communicator: NCCL's kernels end, the stream goes on
  std::erase_if(running_, [](const WorkPtr& w) { return w->completed.load(); });
}
#endif

// ---- Work ---------------------------------------------------------------------------------------

inline void Work::wait() {
  if (!state_) return;
  if (state_->completed) {
    if (state_->error) std::rethrow_exception(state_->error);
    return;
  }
#if defined(STRATA_DIST_NCCL)
  if (state_->event && state_->group->order_after(state_)) return;  // the default stream waits, not the host
#endif
  state_->group->wait_work(state_);
}

inline bool Work::done() {
  if (!state_ || state_->completed) return true;
  return state_->group->test_work(state_);
}

}  // namespace strata::dist
