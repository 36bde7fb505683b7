// Dataset: indexed access to items, and Batch, the (xb, yb) pair every loader yields.
//
// Contract (fastai's Datasets / PyTorch's map-style Dataset):
//   size()          number of items
//   get(i)          item i as a Batch whose tensors have no batch dim (i in [0, size()))
//   get_batch(idxs) the items idxs collated: each tensor gets a leading batch dim of idxs.size().
//                   The default stacks get(i); a dataset that can pick many items at once
//                   (TensorDataset: one index_select per tensor) overrides it.
// get and get_batch must be safe to call from several threads at once (DataLoader workers do):
// const methods that only read are.
//
//   TensorDataset ds({images /*[N,1,28,28]*/}, {labels /*[N]*/});
//   Batch b = ds.get_batch({3, 1, 4});   // b.xb[0]: [3,1,28,28], b.yb[0]: [3]
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "strata/autograd/grad_mode.hpp"
#include "strata/tensor/tensor.hpp"

namespace strata {

/// Inputs and targets of one item or one batch (fastai's (xb, yb) tuples).
struct Batch {
  std::vector<Tensor> xb, yb;
};

/// Stacks items (each a Batch without batch dim) slot by slot into one Batch with a batch dim.
inline Batch collate(const std::vector<Batch>& items) {
  STRATA_CHECK(!items.empty(), "collate", "got no items, expected at least one");
  Batch out;
  auto stack_slot = [&](auto member, size_t slots, std::vector<Tensor>& dst, const char* side) {
    for (size_t s = 0; s < slots; ++s) {
      std::vector<Tensor> parts;
      parts.reserve(items.size());
      for (size_t k = 0; k < items.size(); ++k) {
        const std::vector<Tensor>& v = items[k].*member;
        STRATA_CHECK(v.size() == slots, "collate", "got item ", k, " with ", v.size(), " ", side,
                     " tensors, expected ", slots, " like item 0");
        STRATA_CHECK(v[s].shape() == (items[0].*member)[s].shape(), "collate", "got ", side, "[", s,
                     "] of shape ", v[s].shape(), " in item ", k, " and ", (items[0].*member)[s].shape(),
                     " in item 0, expected equal shapes (items of one batch must match)");
        parts.push_back(v[s]);
      }
      dst.push_back(stack(parts, 0));
    }
  };
  stack_slot(&Batch::xb, items[0].xb.size(), out.xb, "xb");
  stack_slot(&Batch::yb, items[0].yb.size(), out.yb, "yb");
  return out;
}

/// Where a batch sits in the loader's run: the seed of its random streams, the epoch and the batch
/// number. Datasets and transforms that draw random numbers derive them from it (see TfmRng in
/// data/transform.hpp), so a seeded loader gives the same batches whatever its number of workers.
struct BatchContext {
  uint64_t seed = 0;   // the loader's seed (0 when it has none)
  uint64_t epoch = 0;  // the epoch this batch belongs to
  int64_t batch = 0;   // the batch's number within its epoch
  int64_t rank = 0;    // the loader's shard (distributed training): item k of this batch is item
  int64_t world = 1;   //   k * world + rank of the global batch, and draws that item's random numbers
};

/// A map-style dataset: items by index.
class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Number of items.
  virtual int64_t size() const = 0;
  /// Item i (no batch dim).
  virtual Batch get(int64_t i) const = 0;
  /// The items idxs with a leading batch dim; the default stacks get(i).
  virtual Batch get_batch(const std::vector<int64_t>& idxs) const {
    std::vector<Batch> items;
    items.reserve(idxs.size());
    for (int64_t i : idxs) items.push_back(get(i));
    return collate(items);
  }
  /// The same, told where the batch sits (for datasets with random item transforms); the default
  /// ignores the context. A class overriding only one of the two adds `using Dataset::get_batch;`.
  virtual Batch get_batch(const std::vector<int64_t>& idxs, const BatchContext& ctx) const {
    (void)ctx;
    return get_batch(idxs);
  }
  /// The same items with the transforms of the given split (fastai's set_split_idx), for test-time
  /// augmentation; nullptr when the dataset's items do not depend on the split (the default).
  virtual std::shared_ptr<const Dataset> with_split(bool train) const {
    (void)train;
    return nullptr;
  }

 protected:
  /// Throws unless i is a valid item index (for get implementations).
  void check_index(int64_t i, const char* op) const {
    STRATA_CHECK(i >= 0 && i < size(), op, "got item index ", i, ", expected an index in [0, ", size(), ")");
  }
};

/// Items are slices along dim 0 of in-memory tensors: xs[k][i], ys[k][i].
class TensorDataset : public Dataset {
 public:
  /// All tensors must have the same size in dim 0 (the item count) and at least one dim.
  TensorDataset(std::vector<Tensor> xs, std::vector<Tensor> ys) : xs_(std::move(xs)), ys_(std::move(ys)) {
    STRATA_CHECK(!xs_.empty() || !ys_.empty(), "TensorDataset", "got no tensors, expected at least one");
    n_ = -1;
    auto check = [&](const std::vector<Tensor>& ts, const char* side) {
      for (size_t k = 0; k < ts.size(); ++k) {
        STRATA_CHECK(ts[k].defined() && ts[k].dim() >= 1, "TensorDataset", "got ", side, "[", k, "] ",
                     ts[k].defined() ? "of shape " + to_string(ts[k].shape()) : std::string("undefined"),
                     ", expected a tensor with a leading item dim");
        if (n_ < 0) n_ = ts[k].size(0);
        STRATA_CHECK(ts[k].size(0) == n_, "TensorDataset", "got ", side, "[", k, "] of shape ", ts[k].shape(),
                     " with ", ts[k].size(0), " items, expected ", n_, " items like the first tensor");
      }
    };
    check(xs_, "xs");
    check(ys_, "ys");
  }

  int64_t size() const override { return n_; }

  /// Views of row i of every tensor (no copy).
  Batch get(int64_t i) const override {
    check_index(i, "TensorDataset::get");
    NoGrad ng;
    Batch b;
    for (const Tensor& x : xs_) b.xb.push_back(select(x, 0, i));
    for (const Tensor& y : ys_) b.yb.push_back(select(y, 0, i));
    return b;
  }

  using Dataset::get_batch;
  /// One index_select per tensor: no per-item work.
  Batch get_batch(const std::vector<int64_t>& idxs) const override {
    NoGrad ng;
    const Tensor index = from_vector(idxs, {int64_t(idxs.size())});
    Batch b;
    for (const Tensor& x : xs_) b.xb.push_back(index_select(x, 0, index));
    for (const Tensor& y : ys_) b.yb.push_back(index_select(y, 0, index));
    return b;
  }

  const std::vector<Tensor>& xs() const { return xs_; }
  const std::vector<Tensor>& ys() const { return ys_; }

 private:
  std::vector<Tensor> xs_, ys_;
  int64_t n_ = 0;
};

}  // namespace strata
