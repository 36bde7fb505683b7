// DataLoader: batches of a Dataset, in order or shuffled, made ahead by background workers.
//
//   auto dl = DataLoader(ds, {.bs = 256, .shuffle = true, .num_workers = 2, .seed = 42,
//                             .after_batch = {IntToFloat{}.as_transform()}});
//   for (Batch& b : dl) { ... b.xb[0] ... b.yb[0] ... }     // one epoch
//
// Contract
// - An epoch is one range-for (one begin()): size() batches of bs items (the last one smaller
//   unless drop_last). Every begin() starts the next epoch. Shuffled, epoch e uses a permutation
//   drawn from Philox with key = seed and counter = (k, e): the same seed gives the same sequence of
//   epochs, whatever the number of workers. seed = 0 takes a seed from strata's default generator
//   the first time the loader shuffles (so manual_seed() before that makes it reproducible too).
// - A batch is dataset.get_batch(idxs, ctx) followed by every after_batch transform(batch, ctx), in
//   order (fastai's after_batch, in the worker that made the batch). With .device = kCUDA (fastai's
//   dls.device; DataLoaders::to(d), which Learner::to(d) calls) the collated batch's tensors move to
//   that device first, so the batch transforms (IntToFloat, Normalize, the augmentations) run there;
//   with the same seed the batches equal the CPU loader's (within the kernels' tolerances). With
//   .pin_memory (PyTorch's pin_memory=True) cpu batches are copied into page-locked memory last, on
//   the worker (tensor/to_device.hpp; needs <strata/backend/cuda.hpp>). ctx is the
//   BatchContext {seed(), epoch, batch number}: random item and batch transforms draw from a stream
//   of it, so a seeded loader makes the same batches whatever its number of workers. Batch-making
//   runs with grad recording off.
// - num_workers = W > 0: W threads make batches ahead, batch b in worker b % W, each worker at most
//   `prefetch` batches ahead in its own queue; the consumer takes them in order, so the sequence is
//   exactly the one num_workers = 0 gives. Workers run strata ops single-threaded
//   (detail::in_parallel_region), leaving the thread pool to the training step. A worker's
//   exception is rethrown by the consumer when it reaches that batch. Leaving the loop early (break,
//   exception) stops and joins the workers when the iterator goes away.
// - shard = {rank, world} (distributed training; PyTorch's DistributedSampler): the epoch's order
//   (shuffled or not) is first made a multiple of world long, by repeating its first items (or, with
//   drop_last, by cutting its tail), then this loader takes items rank, rank + world, rank + 2 world,
//   ... of it. Every rank gets the same number of items and batches, so data-parallel ranks take the
//   same number of steps; with the same seed the ranks' batch b together are the items b * bs * world
//   .. (b + 1) * bs * world of that order, one global batch. size() counts the shard's batches.
// - Transforms that draw from the default generator instead of their context do so from several
//   threads when W > 1: their order across batches is then not deterministic.
// References: PyTorch torch.utils.data.DataLoader (workers, prefetch_factor, in-order delivery);
// fastai DataLoader (one_batch, new, after_batch).
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "strata/core/parallel.hpp"
#include "strata/core/random.hpp"
#include "strata/data/dataset.hpp"
#include "strata/tensor/to_device.hpp"

namespace strata {

/// A transform applied in place to a whole collated batch: a callable taking (Batch&) or
/// (Batch&, const BatchContext&) (the latter for transforms that draw random numbers).
class BatchTransform {
 public:
  BatchTransform() = default;
  template <class F>
    requires std::is_invocable_v<const F&, Batch&, const BatchContext&>
  BatchTransform(F f) : f_(std::move(f)) {}
  template <class F>
    requires(std::is_invocable_v<const F&, Batch&> && !std::is_invocable_v<const F&, Batch&, const BatchContext&>)
  BatchTransform(F f) : f_([g = std::move(f)](Batch& b, const BatchContext&) { g(b); }) {}

  void operator()(Batch& b, const BatchContext& ctx = {}) const {
    STRATA_CHECK(bool(f_), "BatchTransform", "got an empty transform, expected a callable");
    f_(b, ctx);
  }
  explicit operator bool() const { return bool(f_); }

 private:
  std::function<void(Batch&, const BatchContext&)> f_;
};

/// This process's share of every epoch (distributed training; see the top of this file).
struct Shard {
  int rank = 0;   // this process, 0 <= rank < world
  int world = 1;  // processes sharing the data (1: the whole epoch)
};

struct DataLoaderOptions {
  int64_t bs = 64;            // items per batch
  bool shuffle = false;       // a new permutation every epoch
  bool drop_last = false;     // drop the last batch when it has fewer than bs items
  int num_workers = 0;        // background threads making batches (0: made on the caller's thread)
  int prefetch = 2;           // batches each worker may have ready ahead
  uint64_t seed = 0;          // shuffle seed; 0: drawn once from strata's default generator
  std::vector<BatchTransform> after_batch = {};  // run in order on every batch
  Shard shard = {};           // distributed training: this rank's part of each epoch
  Device device = kCPU;       // where batches are made: the collated batch moves here before after_batch
  bool pin_memory = false;    // cpu batches end in page-locked memory, so their copy to a GPU is a DMA
};

namespace detail {

/// Permutation of [0, n) for (seed, epoch): Fisher-Yates, each swap position from 64 Philox bits
/// (key = seed, counter = (draw, epoch)) mapped to [0, i] by a multiply-high (bias < n / 2^64).
inline std::vector<int64_t> shuffled_order(int64_t n, uint64_t seed, uint64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  const std::array<uint32_t, 2> key{uint32_t(seed), uint32_t(seed >> 32)};
  std::array<uint32_t, 4> words{};
  uint64_t draw = 0;
  for (int64_t i = n - 1; i > 0; --i, ++draw) {
    if (draw % 2 == 0)
      words = philox4x32({uint32_t(draw / 2), uint32_t(draw / 2 >> 32), uint32_t(epoch), uint32_t(epoch >> 32)}, key);
    const size_t w = size_t(draw % 2) * 2;
    const uint64_t r = uint64_t(words[w]) << 32 | words[w + 1];
    const auto j = int64_t((unsigned __int128)r * uint64_t(i + 1) >> 64);  // uniform in [0, i]
    std::swap(order[size_t(i)], order[size_t(j)]);
  }
  return order;
}

/// One epoch in progress: the item order, and the workers (if any) making its batches.
class EpochRun {
 public:
  EpochRun(std::shared_ptr<const Dataset> ds, DataLoaderOptions o, std::vector<int64_t> order, int64_t nb,
           uint64_t seed, uint64_t epoch)
      : ds_(std::move(ds)), o_(std::move(o)), order_(std::move(order)), nb_(nb), seed_(seed), epoch_(epoch) {}
  EpochRun(const EpochRun&) = delete;
  EpochRun& operator=(const EpochRun&) = delete;
  ~EpochRun() { stop(); }

  /// Starts the workers and fetches batch 0 (outside the constructor, so a throw still joins).
  void start() {
    const int W = o_.num_workers;
    if (W > 0 && nb_ > 0) {
      queues_.resize(size_t(W));
      for (int w = 0; w < W; ++w) workers_.emplace_back([this, w] { work(w); });
    }
    if (nb_ > 0) current_ = fetch(0);
  }
  bool done() const { return pos_ >= nb_; }
  Batch& current() { return current_; }
  void advance() {
    if (++pos_ < nb_) current_ = fetch(pos_);
    else current_ = Batch{};
  }

  /// Batch b made on the calling thread: get_batch on its slice of the order, then the transforms.
  static Batch make_batch(const Dataset& ds, const DataLoaderOptions& o, const std::vector<int64_t>& order,
                          int64_t b, const BatchContext& ctx) {
    NoGrad ng;
    const int64_t lo = b * o.bs, hi = std::min<int64_t>(int64_t(order.size()), lo + o.bs);
    Batch batch = ds.get_batch(std::vector<int64_t>(order.begin() + lo, order.begin() + hi), ctx);
    if (!o.device.is_cpu()) {  // dls.device: the batch transforms run where the model is
      for (Tensor& t : batch.xb) t = strata::to(t, o.device);
      for (Tensor& t : batch.yb) t = strata::to(t, o.device);
    }
    for (const BatchTransform& t : o.after_batch) t(batch, ctx);
    if (o.pin_memory) {  // PyTorch's pin_memory=True: on the worker, off the training thread
      for (Tensor& t : batch.xb) if (t.device().is_cpu()) t = t.pin_memory();
      for (Tensor& t : batch.yb) if (t.device().is_cpu()) t = t.pin_memory();
    }
    return batch;
  }

 private:
  struct Result {
    Batch batch;
    std::exception_ptr error;
  };

  Batch fetch(int64_t b) {
    if (workers_.empty()) {
      try {
        return make_batch(*ds_, o_, order_, b, context(b));
      } catch (...) {
        pos_ = nb_;  // the epoch ends with the error
        throw;
      }
    }
    std::deque<Result>& q = queues_[size_t(b % o_.num_workers)];
    Result r;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [&] { return !q.empty(); });
      r = std::move(q.front());
      q.pop_front();
    }
    room_.notify_all();
    if (r.error) {
      pos_ = nb_;
      std::rethrow_exception(r.error);
    }
    return std::move(r.batch);
  }

  void work(int w) {
    detail::in_parallel_region = true;  // strata ops on this thread stay single-threaded
    std::deque<Result>& q = queues_[size_t(w)];
    for (int64_t b = w; b < nb_; b += o_.num_workers) {
      {
        std::unique_lock lock(mutex_);
        room_.wait(lock, [&] { return stopping_ || int64_t(q.size()) < o_.prefetch; });
        if (stopping_) return;
      }
      Result r;
      try {
        r.batch = make_batch(*ds_, o_, order_, b, context(b));
      } catch (...) {
        r.error = std::current_exception();
      }
      const bool failed = r.error != nullptr;
      {
        std::lock_guard lock(mutex_);
        q.push_back(std::move(r));
      }
      ready_.notify_all();
      if (failed) return;  // later batches of this worker would never be read
    }
  }

  BatchContext context(int64_t b) const {
    return {.seed = seed_, .epoch = epoch_, .batch = b, .rank = o_.shard.rank, .world = o_.shard.world};
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    room_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  std::shared_ptr<const Dataset> ds_;
  DataLoaderOptions o_;
  std::vector<int64_t> order_;
  int64_t nb_ = 0, pos_ = 0;
  uint64_t seed_ = 0, epoch_ = 0;
  Batch current_;
  std::vector<std::thread> workers_;
  std::vector<std::deque<Result>> queues_;  // one per worker, in batch order
  std::mutex mutex_;
  std::condition_variable room_, ready_;
  bool stopping_ = false;
};

}  // namespace detail

class DataLoader {
 public:
  /// The end of an epoch (range-for compares the iterator with it).
  struct Sentinel {};

  /// Walks one epoch; owns its workers, which stop when it is destroyed.
  class Iterator {
   public:
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using iterator_category = std::input_iterator_tag;
    Iterator() = default;
    explicit Iterator(std::unique_ptr<detail::EpochRun> run) : run_(std::move(run)) {}
    Batch& operator*() const { return run_->current(); }
    Batch* operator->() const { return &run_->current(); }
    Iterator& operator++() {
      run_->advance();
      return *this;
    }
    bool operator==(Sentinel) const { return !run_ || run_->done(); }

   private:
    std::unique_ptr<detail::EpochRun> run_;
  };

  /// An empty loader (no dataset, no batches); assign a real one before use.
  DataLoader() = default;
  DataLoader(std::shared_ptr<const Dataset> ds, DataLoaderOptions o = {}) : ds_(std::move(ds)), o_(std::move(o)) {
    STRATA_CHECK(ds_ != nullptr, "DataLoader", "got a null dataset, expected a dataset");
    check_options();
  }

  /// Batches per epoch (len(dl)), honouring drop_last.
  int64_t size() const {
    if (!ds_ || o_.bs < 1) return 0;
    const int64_t m = shard_n();
    return o_.drop_last ? m / o_.bs : (m + o_.bs - 1) / o_.bs;
  }
  /// Items in the dataset.
  int64_t n() const { return ds_ ? ds_->size() : 0; }
  /// Items this loader walks per epoch: n(), or its shard's share (options().shard).
  int64_t shard_n() const {
    const int64_t w = o_.shard.world;
    if (w <= 1) return n();
    return o_.drop_last ? n() / w : (n() + w - 1) / w;
  }
  int64_t bs() const { return o_.bs; }
  const Dataset& dataset() const {
    STRATA_CHECK(ds_ != nullptr, "DataLoader::dataset", "got an empty loader, expected one made with a dataset");
    return *ds_;
  }
  std::shared_ptr<const Dataset> dataset_ptr() const { return ds_; }
  /// The options; bs, shuffle, drop_last, workers and transforms may change between epochs.
  DataLoaderOptions& options() { return o_; }
  const DataLoaderOptions& options() const { return o_; }
  /// Epochs started so far (the next begin() uses this one's permutation).
  uint64_t epoch() const { return epoch_; }
  /// Sets the next epoch's number (to resume a shuffled run where it stopped).
  void set_epoch(uint64_t e) { epoch_ = e; }
  /// The seed of shuffles and random transforms: options().seed, else the one drawn at the first
  /// shuffle (0 while none was drawn: an unshuffled loader with seed 0 uses seed 0).
  uint64_t seed() const { return o_.seed ? o_.seed : drawn_seed_; }

  /// A loader over the same dataset with other options (fastai's dl.new); it continues this one's
  /// epoch count and drawn seed.
  DataLoader new_with(DataLoaderOptions o) const {
    DataLoader dl = *this;
    dl.o_ = std::move(o);
    dl.check_options();
    return dl;
  }

  /// Starts the next epoch (an empty loader has no batches).
  Iterator begin() {
    check_options();
    if (!ds_) return Iterator();
    auto order = order_for(epoch_);
    auto run = std::make_unique<detail::EpochRun>(ds_, o_, std::move(order), size(), seed(), epoch_);
    ++epoch_;
    run->start();
    return Iterator(std::move(run));
  }
  Sentinel end() const { return {}; }

  /// The first batch of the next epoch, made on this thread; the epoch count does not move.
  Batch one_batch() {
    check_options();
    STRATA_CHECK(size() > 0, "one_batch", "got a loader with 0 batches (n=", n(), ", bs=", o_.bs,
                 ", drop_last=", o_.drop_last, "), expected at least one batch");
    const auto order = order_for(epoch_);
    return detail::EpochRun::make_batch(*ds_, o_, order, 0, {.seed = seed(), .epoch = epoch_, .batch = 0});
  }

 private:
  void check_options() const {
    STRATA_CHECK(o_.bs >= 1, "DataLoader", "got bs=", o_.bs, ", expected bs >= 1");
    STRATA_CHECK(o_.num_workers >= 0, "DataLoader", "got num_workers=", o_.num_workers, ", expected >= 0");
    STRATA_CHECK(o_.prefetch >= 1, "DataLoader", "got prefetch=", o_.prefetch, ", expected >= 1");
    STRATA_CHECK(o_.shard.world >= 1 && o_.shard.rank >= 0 && o_.shard.rank < o_.shard.world, "DataLoader",
                 "got shard {rank=", o_.shard.rank, ", world=", o_.shard.world, "}, expected 0 <= rank < world");
  }

  /// Item order of epoch e: 0..n-1, or the permutation of (seed, e); then this loader's shard of it.
  std::vector<int64_t> order_for(uint64_t e) { return shard_of(full_order_for(e)); }

  /// Items rank, rank + world, ... of the order made a multiple of world long (padded by repeating its
  /// start, or cut with drop_last), as PyTorch's DistributedSampler.
  std::vector<int64_t> shard_of(std::vector<int64_t> order) const {
    const int64_t w = o_.shard.world, r = o_.shard.rank, m = shard_n();
    if (w <= 1 || order.empty()) return order;
    std::vector<int64_t> out(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) out[size_t(i)] = order[size_t((r + i * w) % int64_t(order.size()))];
    return out;
  }

  std::vector<int64_t> full_order_for(uint64_t e) {
    if (!o_.shuffle) {
      std::vector<int64_t> order(static_cast<size_t>(n()));
      for (int64_t i = 0; i < n(); ++i) order[size_t(i)] = i;
      return order;
    }
    if (o_.seed == 0 && drawn_seed_ == 0) {  // draw once, lazily: building a loader costs no randomness
      const auto w = default_generator().block(default_generator().reserve(1));
      drawn_seed_ = (uint64_t(w[0]) << 32 | w[1]) | 1;  // never 0 ("not drawn yet")
    }
    return detail::shuffled_order(n(), o_.seed ? o_.seed : drawn_seed_, e);
  }

  std::shared_ptr<const Dataset> ds_;
  DataLoaderOptions o_;
  uint64_t epoch_ = 0;
  uint64_t drawn_seed_ = 0;
};

struct DataBlockInfo;  // data/datablock.hpp: item kinds and decode pipelines of DataBlock loaders

/// The training and validation loaders of a task, with what is known about its targets.
struct DataLoaders {
  DataLoader train = {}, valid = {};
  int64_t c = 0;                    // number of classes (0: unknown / not a classification)
  std::vector<std::string> vocab = {};  // class names, when known
  std::shared_ptr<const DataBlockInfo> block = {};  // set by DataBlock::dataloaders (typed, decodable batches)

  /// train shuffled with `o`, valid in order with the same bs, workers and transforms (never drops
  /// items). Unlike fastai, train keeps o.drop_last (default false) rather than forcing it on.
  static DataLoaders from_dsets(std::shared_ptr<const Dataset> train, std::shared_ptr<const Dataset> valid,
                                DataLoaderOptions o = {}) {
    DataLoaderOptions vo = o;
    vo.shuffle = false;
    vo.drop_last = false;
    o.shuffle = true;
    return {.train = DataLoader(std::move(train), std::move(o)), .valid = DataLoader(std::move(valid), std::move(vo))};
  }
  /// Makes both loaders' batches on `d` (fastai's dls.to(device) / dls.device): the collated batch
  /// moves there before the batch transforms run. cuda needs <strata/backend/cuda.hpp>.
  DataLoaders& to(Device d) {
    train.options().device = d;
    valid.options().device = d;
    return *this;
  }
  /// Where the batches are made (train's; both, after to()).
  Device device() const { return train.options().device; }
};

}  // namespace strata
