// Synchronized BatchNorm over a process group (PyTorch's SyncBatchNorm and
// torch.nn.SyncBatchNorm.convert_sync_batchnorm), and the differentiable all-reduce it is built on.
//
//   dist::convert_sync_batchnorm(*model);   // every BatchNorm1d/2d below model: global-batch statistics
//   // or: learn.to_distributed({.sync_bn = true}), which does this at before_fit
//
// In training, each rank's BatchNorm then normalizes with the mean and biased variance of the global
// batch (all ranks' samples, uneven counts included: the count is all-reduced too), updates its running
// statistics with the global mean and unbiased variance (so every rank's are the same), and its
// backward is exact for the global batch. The math is nn/norm.hpp's (BatchNormBase::sync); this file
// gives it the collective: all_reduce_sum, an autograd op whose forward sums t over the ranks and whose
// backward sums the incoming gradient over the ranks (the gradient of every rank's loss with respect to
// the shared sum). Per training forward a layer costs 2 blocking all-reduces of C + 1 and C float64 values, its
// backward 2 more. Eval (running statistics) runs no collective.
//
// Ordering: the all-reduces in backward are issued in the graph's order, the same on every rank (same
// model, same graph), among the DDP buckets' nonblocking all-reduces that gradient hooks start during
// backward; MPI matches collectives on a communicator by the order each rank starts them, and any
// number may be in flight, so a blocking one between them is legal (and numbered like the others for
// the timeout's report). Every rank must therefore run the same training forwards and backwards.
#pragma once

#include <cstdint>
#include <memory>

#include "strata/dist/init.hpp"
#include "strata/dist/process_group.hpp"
#include "strata/nn/norm.hpp"

namespace strata::dist {

/// The sum of t over every rank of pg, as a new contiguous tensor, differentiable: t's gradient is the
/// sum over the ranks of the result's gradient (torch.distributed.nn.functional.all_reduce). A collective
/// (also its backward): every rank calls it in the same order with t of the same shape and dtype.
inline Tensor all_reduce_sum(const Tensor& t, ProcessGroup& pg) {
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  {
    NoGrad ng;
    out.copy_(detach(t));
    pg.all_reduce(out, ReduceOp::sum);
  }
  ProcessGroup* g = &pg;
  return record("all_reduce_sum_backward", out, {t}, [g](const Tensor& dout) {
    Tensor d = Tensor::empty(dout.shape(), dout.dtype(), dout.device());
    d.copy_(dout);
    g->all_reduce(d, ReduceOp::sum);
    return std::vector<Tensor>{d};
  });
}
/// all_reduce_sum over the default group.
inline Tensor all_reduce_sum(const Tensor& t) { return all_reduce_sum(t, group()); }

/// nn::BatchNormSync over a process group (the default group when made without one).
class GroupBatchNormSync : public nn::BatchNormSync {
 public:
  explicit GroupBatchNormSync(ProcessGroup& pg) : pg_(&pg) {}
  GroupBatchNormSync() : pg_(&group()) {}
  Tensor all_reduce_sum(const Tensor& t) override { return dist::all_reduce_sum(t, *pg_); }
  ProcessGroup& process_group() const { return *pg_; }

 private:
  ProcessGroup* pg_;
};

/// Makes every BatchNorm layer below (and including) model synchronized over pg (see the top of this
/// file). Returns how many layers it set. One hook object is shared by them all.
inline int64_t convert_sync_batchnorm(nn::Module& model, ProcessGroup& pg) {
  auto sync = std::make_shared<GroupBatchNormSync>(pg);
  int64_t n = 0;
  model.apply([&](nn::Module& m) {
    if (auto* bn = dynamic_cast<nn::BatchNormBase*>(&m)) {
      bn->sync = sync;
      ++n;
    }
  });
  return n;
}
/// convert_sync_batchnorm over the default group.
inline int64_t convert_sync_batchnorm(nn::Module& model) { return convert_sync_batchnorm(model, group()); }

/// Undoes convert_sync_batchnorm: every BatchNorm layer below model normalizes per process again.
/// Returns how many layers had a sync hook.
inline int64_t revert_sync_batchnorm(nn::Module& model) {
  int64_t n = 0;
  model.apply([&](nn::Module& m) {
    if (auto* bn = dynamic_cast<nn::BatchNormBase*>(&m); bn && bn->sync) {
      bn->sync.reset();
      ++n;
    }
  });
  return n;
}

}  // namespace strata::dist
