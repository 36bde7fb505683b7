// DistributedTrainer: data-parallel training over the processes of an MPI job (fastai's
// DistributedTrainer and learn.to_distributed(); PyTorch's DistributedDataParallel and
// DistributedSampler), on the process group of <strata/dist.hpp>.
//
//   // mpirun --allow-run-as-root -np 2 ./train        every rank runs the same program
//   Learner learn(dls, model, nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}});
//   learn.to_distributed();                           // or ({.bucket_mb = 4, .sync_bn = true})
//   learn.fit_one_cycle(5, 1e-2);                     // rank 0 prints; all ranks end with the same weights
//   if (learn.is_main_process()) learn.recorder().plot_loss("loss.png");
//
// One process per GPU: a Learner on cuda:0 (learn.to(kCUDA)) is moved to cuda(local_rank % device_count())
// by to_distributed() or, when learn.to(kCUDA) came later, at before_fit (the optimizer is rebuilt
// then, keeping its hypers), and that device becomes the process's current one (PyTorch's
// torch.cuda.set_device(local_rank)). A Learner on another cuda:i stays there (the user chose it), and
// so does every Learner with {.device_per_rank = false}. Everything below then runs on cuda tensors
// (the gradient buckets live on the parameters' device; the collectives are NCCL's with STRATA_NCCL,
// else MPI's through pinned host memory, see dist/process_group.hpp).
//
//   learn.to(kCUDA).to_distributed();                  // mpirun -np 4 on a 4-GPU machine: rank r on cuda:r
//
// Event by event (W ranks, each with the same model, data, callbacks and fits):
// - before_fit      broadcasts rank 0's parameters and buffers; lays the trainable parameters out in
//                   buckets and gives each one a gradient hook (once per parameter). sync_bn: makes
//                   every BatchNorm layer without a sync hook synchronized (dist::convert_sync_batchnorm,
//                   PyTorch's SyncBatchNorm: training normalizes with the GLOBAL batch's statistics and
//                   the backward is exact for it, see dist/sync_batch_norm.hpp); after_fit (or an
//                   exception) takes those hooks off again, so outside a fit the model runs alone.
// - before_train    the training loader takes shard {rank, W} of each epoch (DataLoaderOptions::shard,
//                   padded so that every rank takes the same number of steps) with rank 0's shuffle
//                   seed and epoch number; put back at after_train.
// - after_loss      (training) starts averaging the batch's logged loss (learn.loss) over the ranks:
//                   the Recorder and the callbacks that watch the loss (TerminateOnNaN, lr_find's
//                   stop_div) see the same global-batch loss everywhere and so decide alike.
// - backward        a parameter's hook copies its gradient (plus what .grad already holds) into its
//                   bucket: a flat buffer of about bucket_mb MB of gradients, filled in reverse parameter
//                   order, the order backward produces them. A full bucket's all-reduce (average)
//                   starts at once, while backward goes on (the engine accumulates a leaf as soon as
//                   its last consumer has run); buckets start in index order, so every rank issues the
//                   same collectives in the same order. Each hook also polls the running ones (MPI
//                   progresses a nonblocking collective inside MPI calls).
// - after_backward  starts what is left (a parameter that got no gradient sends what .grad holds, or
//                   zeros), waits for every bucket and copies the averages into .grad. Callbacks of a
//                   higher order (GradientClip 11, the step) see averaged gradients; this one's is 5.
// - after_train     buffers: rank 0's broadcast (PyTorch's broadcast_buffers). With sync_bn every rank's
//                   running statistics are the global batch's already (this used to average them once
//                   per epoch instead, while the forward normalized per rank: no longer needed).
// - validation      (in a fit, shard_valid) the valid loader is sharded the same way; after_loss
//                   all-gathers each batch's predictions and targets, drops the padding and recomputes
//                   the loss on the gathered batch, so the valid loss and metrics are those of the
//                   whole set, identical on every rank. validate() / get_preds() / predict() outside a
//                   fit run on the whole set on each rank and are not collectives: rank 0 may call them
//                   alone (if (learn.is_main_process()) learn.get_preds()).
// - rank 0 only     to_distributed() sets learn.rank / learn.world_size; learn.is_main_process() is
//                   false on ranks > 0, where progress, CSVLogger, the trackers' messages, save(), the
//                   Recorder's plots and lr_find's plot do nothing. after_fit is a barrier, so a file
//                   rank 0 saved is there before any rank loads it (SaveModelCallback's after_fit).
// Why it equals one process: with equal shards and a mean-reduced loss, the average of the ranks'
// batch gradients is the gradient of the mean loss over their union, the global batch (items
// b * bs * W .. (b + 1) * bs * W of the epoch's order); identical gradients and steps keep the
// replicas identical. A model with BatchNorm normalizes per rank (each rank's bs items), so it equals
// one process only with sync_bn = true (normalized with the global batch's statistics, as one process).
// Timing since the fit's first training phase: wait_s (blocked in Work::wait), step_s (before_batch to
// after_batch of training batches), steps; wait_share() = wait_s / step_s. (With NCCL and 2 ranks or
// more, Work::wait orders the default stream instead of blocking the host, so wait_s stays near 0 there:
// the GPU waits, not the host.) sync_bn's own all-reduces block inside forward and backward, uncounted.
// Every rank must run the same fits and callbacks (collectives pair up by order); a dead rank makes
// the others fail after the group's timeout instead of hanging.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "strata/dist.hpp"
#include "strata/learn/learner.hpp"

namespace strata {

/// learn.to_distributed's options.
struct DistributedOptions {
  double bucket_mb = 1;     // gradient bucket size in MB (PyTorch's bucket_cap_mb, 25 there, sized for GPUs)
  bool sync_bn = false;     // SyncBatchNorm during fits: BatchNorm normalizes with the global batch's statistics
  bool shard_valid = true;  // shard validation in fits (gathered); false: every rank validates the whole set
  bool device_per_rank = true;  // a Learner on cuda:0 goes to cuda(local_rank % device_count()) (see the top)
};

namespace detail {

/// The gradient buckets of a DistributedTrainer. Parameters' hooks reach it through a weak_ptr, so a
/// hook left on a parameter after its trainer is gone does nothing.
struct GradBuckets {
  struct Bucket {
    Tensor flat;                     // [numel] its parameters' gradients back to back
    int n_params = 0, pending = 0;   // parameters in it / not yet arrived in this backward
    std::optional<dist::Work> work;  // the running all-reduce
    bool done = false;               // work has completed (polled)
  };
  struct Slot {
    size_t bucket = 0;
    int64_t offset = 0;
    bool ready = false;
  };
  dist::ProcessGroup* pg = nullptr;
  std::vector<Tensor> params;  // trainable parameters, in bucket order (reverse model order)
  std::vector<Slot> slots;     // one per parameter
  std::vector<Bucket> buckets;
  std::unordered_map<const TensorImpl*, size_t> index;  // parameter -> position in params
  std::unordered_set<const TensorImpl*> hooked;         // parameters given a hook to this object
  size_t next = 0;     // the next bucket to start
  bool armed = false;  // between before_backward and after_backward: hooks fill buckets
  double wait_s = 0;   // time blocked in Work::wait

  /// Buckets of at most cap_bytes (at least one parameter each, one dtype and device each).
  void build(const std::vector<Tensor>& model_order, double cap_bytes) {
    params.clear();
    slots.clear();
    buckets.clear();
    index.clear();
    for (auto it = model_order.rbegin(); it != model_order.rend(); ++it)
      if (index.try_emplace(&it->impl(), params.size()).second) params.push_back(*it);
    std::vector<int64_t> sizes;  // elements per bucket
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor& p = params[i];
      const bool fresh = buckets.empty() || p.dtype() != params[i - 1].dtype() ||
                         p.device() != params[i - 1].device() ||
                         double((sizes.back() + p.numel()) * p.element_size()) > cap_bytes;
      if (fresh) {
        buckets.emplace_back();
        sizes.push_back(0);
      }
      slots.push_back({.bucket = buckets.size() - 1, .offset = sizes.back()});
      sizes.back() += p.numel();
      ++buckets.back().n_params;
    }
    for (size_t i = 0; i < params.size(); ++i)
      if (slots[i].offset == 0)  // the bucket's first parameter gives its dtype and device
        buckets[slots[i].bucket].flat =
            zeros({sizes[slots[i].bucket]}, {.dtype = params[i].dtype(), .device = params[i].device()});
  }
  /// Parameter i's place in its bucket, shaped like it.
  Tensor view(size_t i) const {
    return buckets[slots[i].bucket].flat.narrow(0, slots[i].offset, params[i].numel()).view(params[i].shape());
  }
  void arm() {
    for (Bucket& b : buckets) {
      b.pending = b.n_params;
      b.work.reset();
      b.done = false;
    }
    for (Slot& s : slots) s.ready = false;
    next = 0;
    armed = true;
  }
  /// The hook: parameter p's gradient g of this backward (before the engine adds it to p.grad).
  void on_grad(const TensorImpl* p, const Tensor& g) {
    auto it = index.find(p);
    if (it != index.end()) arrive(it->second, g);
  }
  void arrive(size_t i, const Tensor& g) {
    Slot& s = slots[i];
    if (s.ready) return;
    NoGrad ng;
    Tensor v = view(i);
    const Tensor old = params[i].grad();
    if (g.defined()) {
      v.copy_(g);
      if (old.defined()) v.add_(old);
    } else if (old.defined()) {
      v.copy_(old);
    } else {
      v.zero_();
    }
    s.ready = true;
    --buckets[s.bucket].pending;
    start_ready();
  }
  /// Starts the buckets that are full, in index order, and polls the running ones.
  void start_ready() {
    for (size_t b = 0; b < next; ++b)
      if (!buckets[b].done) buckets[b].done = buckets[b].work->done();
    while (next < buckets.size() && buckets[next].pending == 0) {
      buckets[next].work = pg->all_reduce_async(buckets[next].flat, dist::ReduceOp::avg);
      ++next;
    }
  }
  /// Sends what has not arrived, waits for every bucket and writes the averages into .grad.
  void finish() {
    if (!armed) arm();
    for (size_t i = 0; i < params.size(); ++i)
      if (!slots[i].ready) arrive(i, Tensor());
    const auto t0 = std::chrono::steady_clock::now();
    for (Bucket& b : buckets)
      if (b.work) b.work->wait();
    wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    NoGrad ng;
    for (size_t i = 0; i < params.size(); ++i) {
      Tensor g = params[i].grad();
      if (g.defined()) g.copy_(view(i));
      else params[i].set_grad(view(i).clone());
    }
    disarm();
  }
  /// Forgets this backward (an exception: the running collectives are dropped, not awaited).
  void disarm() {
    for (Bucket& b : buckets) b.work.reset();
    armed = false;
  }
};

/// Moves a Learner on cuda:0 to its rank's device (see the top of this file) and makes that device
/// current; the optimizer, rebuilt by Learner::to, keeps its hypers (lr, wd, ... of the fit under way).
inline void place_on_rank_device(Learner& l, const DistributedOptions& o, int local_rank);

}  // namespace detail

/// The device of a process with local rank `local_rank` whose Learner is on `d`, with `device_count`
/// GPUs: cuda(local_rank % device_count) for cuda:0 (the default cuda device), else d itself.
inline Device rank_device(Device d, int local_rank, int device_count) {
  if (!d.is_cuda() || d.index != 0 || device_count <= 0) return d;
  return Device::cuda(local_rank % device_count);
}

inline void detail::place_on_rank_device(Learner& l, const DistributedOptions& o, int local_rank) {
  if (!o.device_per_rank || !l.device.is_cuda()) return;
  const Device d = rank_device(l.device, local_rank, cuda::device_count());
  if (d != l.device) {
    std::vector<Hypers> hypers;
    if (l.opt) hypers = l.opt->hypers();
    l.to(d);
    if (l.opt && hypers.size() == l.opt->param_groups.size())
      for (size_t g = 0; g < hypers.size(); ++g) l.opt->param_groups[g].hypers = hypers[g];
  }
  cuda::set_device(d.index);
}

/// Data-parallel training (see the top of this file); learn.to_distributed() adds one.
class DistributedTrainer : public Callback {
 public:
  DistributedOptions opts;
  double wait_s = 0, step_s = 0;  // since the fit's first training phase
  int64_t steps = 0;

  explicit DistributedTrainer(DistributedOptions o = {}) : opts(o) {
    STRATA_CHECK(opts.bucket_mb > 0, "DistributedTrainer", "got bucket_mb = ", opts.bucket_mb, ", expected > 0");
    order = 5;  // after ChannelsLast (1), before GradientAccumulation (6), MixedPrecision (10), GradientClip (11)
  }
  std::string name() const override { return "DistributedTrainer"; }
  /// The share of training-step time spent blocked on all-reduces.
  double wait_share() const { return step_s > 0 ? wait_s / step_s : 0; }
  /// Number of gradient buckets (after the first before_fit).
  size_t n_buckets() const { return buckets_->buckets.size(); }

  void before_fit() override {
    // validate() / get_preds() / predict() (logging off: fastai's validation_context) are no fit here:
    // no broadcast, no barrier, so rank 0 may call them alone
    if (!learn->logging) return;
    pg_ = &dist::group();
    learn->rank = pg_->rank();
    learn->world_size = pg_->world_size();
    detail::place_on_rank_device(*learn, opts, pg_->local_rank());
    training_started_ = false;
    broadcast_state();
    if (opts.sync_bn) sync_batch_norms();
    std::vector<Tensor> trainable;
    for (Tensor& p : learn->model->parameters())
      if (p.requires_grad()) trainable.push_back(p);
    buckets_->pg = pg_;
    buckets_->build(trainable, opts.bucket_mb * 1024 * 1024);
    for (Tensor& p : buckets_->params)
      if (buckets_->hooked.insert(&p.impl()).second)
        p.register_hook([w = std::weak_ptr<detail::GradBuckets>(buckets_), key = &p.impl()](const Tensor& g) {
          if (auto b = w.lock(); b && b->armed) b->on_grad(key, g);
          return Tensor();  // the gradient goes on unchanged
        });
  }
  void before_train() override {
    if (!training_started_) {
      training_started_ = true;
      wait_s = step_s = 0;
      steps = 0;
      buckets_->wait_s = loss_wait_s_ = 0;
    }
    shard(learn->dl);
  }
  void before_validate() override {
    if (training_started_ && opts.shard_valid && pg_->world_size() > 1) shard(learn->dl);
  }
  void after_train() override {
    unshard();
    sync_buffers();
  }
  void after_validate() override { unshard(); }
  void before_batch() override {
    if (learn->training) batch_t0_ = std::chrono::steady_clock::now();
  }
  void after_loss() override {
    if (learn->training) {
      if (learn->loss.defined()) loss_work_ = pg_->all_reduce_async(learn->loss, dist::ReduceOp::avg);
    } else if (sharded_) {
      gather_valid();
    }
  }
  void before_backward() override { buckets_->arm(); }
  void after_backward() override {
    buckets_->finish();
    wait_loss();
  }
  void after_cancel_batch() override {
    if (buckets_->armed) buckets_->finish();
    wait_loss();
  }
  void after_batch() override {
    if (!learn->training) return;
    wait_loss();
    step_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - batch_t0_).count();
    wait_s = buckets_->wait_s + loss_wait_s_;
    ++steps;
  }
  void after_fit() override {
    if (!learn->logging) return;  // the end of a validation_context (see before_fit)
    unshard();
    training_started_ = false;
    unsync_batch_norms();
    pg_->barrier();  // rank 0's checkpoints are written before anyone loads them
  }
  void after_exception() override {
    buckets_->disarm();
    loss_work_.reset();
    unshard();
    unsync_batch_norms();
    training_started_ = false;
  }

 private:
  dist::ProcessGroup* pg_ = nullptr;
  std::shared_ptr<detail::GradBuckets> buckets_ = std::make_shared<detail::GradBuckets>();
  std::optional<dist::Work> loss_work_;
  double loss_wait_s_ = 0;
  bool training_started_ = false, sharded_ = false;
  DataLoader* sharded_dl_ = nullptr;
  DataLoaderOptions saved_opts_;
  std::chrono::steady_clock::time_point batch_t0_{};
  std::vector<nn::BatchNormBase*> synced_;  // the BatchNorm layers this fit made synchronized

  /// sync_bn: every BatchNorm layer of the model without a sync hook gets the group's (until after_fit).
  void sync_batch_norms() {
    unsync_batch_norms();
    auto sync = std::make_shared<dist::GroupBatchNormSync>(*pg_);
    learn->model->apply([&](nn::Module& m) {
      if (auto* bn = dynamic_cast<nn::BatchNormBase*>(&m); bn && !bn->sync) {
        bn->sync = sync;
        synced_.push_back(bn);
      }
    });
  }
  void unsync_batch_norms() {
    for (nn::BatchNormBase* bn : synced_) bn->sync.reset();
    synced_.clear();
  }

  void wait_loss() {
    if (!loss_work_) return;
    const auto t0 = std::chrono::steady_clock::now();
    loss_work_->wait();
    loss_wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    loss_work_.reset();
  }

  /// t = rank 0's t, in place (through a contiguous copy when t is not contiguous).
  void broadcast_(Tensor t) {
    NoGrad ng;
    Tensor c = t.is_contiguous() ? t : t.contiguous();
    pg_->broadcast(c, 0);
    if (!c.is_same(t)) t.copy_(c);
  }
  void broadcast_state() {
    for (auto& named : learn->model->state_dict()) broadcast_(named.second);
  }
  /// After each training phase: rank 0's buffers everywhere (with sync_bn they are equal already).
  void sync_buffers() {
    for (Tensor& b : learn->model->buffers()) broadcast_(b);
  }

  /// dl takes this rank's shard, with rank 0's seed and epoch number (until unshard()).
  void shard(DataLoader* dl) {
    if (!dl || !dl->dataset_ptr()) return;
    unshard();
    Tensor se = Tensor::empty({2}, DType::i64);
    int64_t* v = se.data_ptr<int64_t>();
    uint64_t seed = dl->seed();
    if (seed == 0 && pg_->rank() == 0) {  // not drawn yet: rank 0 draws one, as the loader would
      const auto w = default_generator().block(default_generator().reserve(1));
      seed = (uint64_t(w[0]) << 32 | w[1]) | 1;
    }
    std::memcpy(&v[0], &seed, sizeof seed);
    v[1] = int64_t(dl->epoch());
    pg_->broadcast(se, 0);
    std::memcpy(&seed, &v[0], sizeof seed);
    saved_opts_ = dl->options();
    sharded_dl_ = dl;
    sharded_ = true;
    dl->options().seed = seed;
    dl->options().shard = {.rank = pg_->rank(), .world = pg_->world_size()};
    dl->set_epoch(uint64_t(v[1]));
  }
  void unshard() {
    if (!sharded_dl_) return;
    DataLoaderOptions& o = sharded_dl_->options();
    o.shard = saved_opts_.shard;
    o.seed = saved_opts_.seed;
    sharded_dl_ = nullptr;
    sharded_ = false;
  }

  /// The validation batch of every rank, in the order of the whole set (rank r's item j is item
  /// j * W + r of the global batch), padding dropped; the loss recomputed on it.
  void gather_valid() {
    Learner& l = *learn;
    if (!l.pred.defined() || l.pred.dim() == 0 || !l.dl) return;
    NoGrad ng;
    const int64_t W = pg_->world_size(), b = l.pred.size(0), bs = l.dl->bs(), n = l.dl->n();
    const int64_t total = l.dl->options().drop_last ? n / W * W : n;
    const int64_t real = std::clamp<int64_t>(total - l.iter * bs * W, 0, b * W);
    auto gather = [&](const Tensor& t) {
      STRATA_CHECK(t.dim() >= 1 && t.size(0) == b, "DistributedTrainer", "got a validation tensor of shape ",
                   t.shape(), ", expected a batch of ", b, " items (the predictions' batch size)");
      Tensor all = pg_->all_gather(t.detach().contiguous());  // [W, b, ...]
      Shape s = t.shape();
      s[0] = b * W;
      return all.transpose(0, 1).contiguous().reshape(s).narrow(0, 0, real);
    };
    l.pred = gather(l.pred);
    for (Tensor& y : l.yb) y = gather(y);
    if (!l.yb.empty() && l.loss.defined() && real > 0) {
      l.loss_grad = l.loss_func(l.pred, l.yb[0]).detach();
      l.loss = l.loss_grad.clone();
    }
  }
};

inline Learner& Learner::to_distributed(const DistributedOptions& o) {
  if (!dist::is_initialized()) dist::init_process_group();
  rank = dist::group().rank();
  world_size = dist::group().world_size();
  remove_cb<DistributedTrainer>();
  detail::place_on_rank_device(*this, o, dist::group().local_rank());
  return add_cb(std::make_shared<DistributedTrainer>(o));
}
inline Learner& Learner::to_distributed() { return to_distributed(DistributedOptions{}); }

}  // namespace strata
