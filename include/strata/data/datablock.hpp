// DataBlock: the recipe from raw items to typed, decodable DataLoaders (fastai's DataBlock).
//
//   auto dblock = DataBlock<std::filesystem::path>{
//       .blocks = {ImageBlock(), CategoryBlock()},
//       .get_items = [](const std::filesystem::path& d) { return get_image_files(d); },
//       .get_y = parent_label,
//       .splitter = GrandparentSplitter("train", "valid"),
//       .item_tfms = {make_transform(Resize({.size = {128, 128}}))},
//       .batch_tfms = aug_transforms()};
//   DataLoaders dls = dblock.dataloaders(dir, {.bs = 64, .num_workers = 2, .seed = 42});
//   dblock.summary(dir);   // walks one item through every step and prints it
//
// Contract
// - Items: get_items(source), or a vector<Src> given directly. A getter per block turns an item
//   into a Raw (data/block.hpp): `getters` (one per block), else get_x (the input block when
//   n_inp = 1) and get_y (the target block when there is one); a block without a getter takes the
//   item itself when Src converts to a Raw (fastai's noop).
// - splitter(items) -> {train, valid} indices (RandomSplitter, GrandparentSplitter, FuncSplitter,
//   IndexSplitter, fastai's names and defaults); items in neither split are left out.
// - Setup (dataloaders() time): each block's vocab from the training raws (validation labels are
//   checked against it then), then Pipeline::setup of the item tfms on the first few training
//   tuples and of the batch tfms on their collated batch. Item tfms = the blocks' defaults + item_tfms,
//   batch tfms = the blocks' defaults + batch_tfms; a default is dropped when a transform of the same
//   name follows it (a user's IntToFloat replaces ImageBlock's), as fastai's _merge_tfms does.
// - An item of a batch: raws -> type transforms -> Tuple -> after_item (TfmContext{.train = split
//   is train, .rng = TfmRng(seed, epoch, batch, k)} for the k-th item of the batch); the tuples are
//   collated slot by slot; after_batch runs as the loader's BatchTransform with TfmRng(seed, epoch,
//   batch). So a seed gives the same batches whatever the number of workers.
// - DataLoaders: train shuffled (shuffle_train), valid in order, never dropping; c and vocab from
//   the last Category / MultiCategory target (c = the target's size for a Regression); block set to
//   the DataBlockInfo (kinds, n_inp, vocabs, pipelines) that show_batch and decode_batch read.
// - skip_bad_items: the image and mask files of both splits go through verify_images first and
//   items with a file that does not decode are dropped, with one warning line on stderr; otherwise
//   a bad file throws from the loader, naming the item and the file.
// References: fastai.data.block (DataBlock, summary), fastai.data.transforms (splitters),
// fastai.data.core (Datasets, TfmdDL.decode_batch).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "strata/data/block.hpp"
#include "strata/data/dataloader.hpp"
#include "strata/data/transform.hpp"

namespace strata {

/// What DataBlock loaders know about their batches: the item kinds (inputs first, as collated, before
/// the batch tfms), how many are inputs, each block's vocab, and the pipelines to decode with.
struct DataBlockInfo {
  std::vector<ItemKind> kinds;
  int n_inp = 1;
  std::vector<std::vector<std::string>> vocabs;  // one per block (empty where it has none)
  Pipeline after_item, after_batch;

  /// A loader's batch as typed items, decoded through the batch tfms (u8 images again after IntToFloat).
  Tuple decode_batch(const Batch& b) const { return after_batch.decode(to_tuple(b, kinds)); }
};

/// Indices of the training and validation items.
struct Splits {
  std::vector<int64_t> train, valid;
};

/// A random valid_pct of the items for validation, the same for the same seed (fastai's RandomSplitter).
inline auto RandomSplitter(double valid_pct = 0.2, uint64_t seed = 42) {
  STRATA_CHECK(valid_pct >= 0.0 && valid_pct <= 1.0, "RandomSplitter", "got valid_pct = ", valid_pct,
               ", expected a fraction in [0, 1]");
  return [=](const auto& items) -> Splits {
    const auto n = int64_t(items.size());
    const std::vector<int64_t> order = detail::shuffled_order(n, seed, 0);
    const auto cut = int64_t(valid_pct * double(n));
    return {std::vector<int64_t>(order.begin() + cut, order.end()), std::vector<int64_t>(order.begin(), order.begin() + cut)};
  };
}

/// Splits paths by the name of their grandparent folder (ImageNet layout: train/<class>/x.jpg);
/// other items are left out.
inline auto GrandparentSplitter(std::string train_name = "train", std::string valid_name = "valid") {
  return [=](const auto& items) -> Splits {
    using Src = std::decay_t<decltype(items[0])>;
    static_assert(std::is_convertible_v<const Src&, std::filesystem::path>,
                  "GrandparentSplitter: items must be paths (or strings)");
    Splits s;
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string g = std::filesystem::path(items[i]).parent_path().parent_path().filename().string();
      if (g == train_name) s.train.push_back(int64_t(i));
      else if (g == valid_name) s.valid.push_back(int64_t(i));
    }
    return s;
  };
}

/// Items for which fn(item) is true go to validation (fastai's FuncSplitter).
template <class F>
auto FuncSplitter(F fn) {
  return [fn = std::move(fn)](const auto& items) -> Splits {
    Splits s;
    for (size_t i = 0; i < items.size(); ++i) (fn(items[i]) ? s.valid : s.train).push_back(int64_t(i));
    return s;
  };
}

/// The items at valid_idx go to validation, the rest to training (fastai's IndexSplitter).
inline auto IndexSplitter(std::vector<int64_t> valid_idx) {
  return [valid_idx = std::move(valid_idx)](const auto& items) -> Splits {
    const auto n = int64_t(items.size());
    std::vector<char> is_valid(size_t(n), 0);
    for (int64_t i : valid_idx) {
      STRATA_CHECK(i >= 0 && i < n, "IndexSplitter", "got index ", i, ", expected indices in [0, ", n, ")");
      is_valid[size_t(i)] = 1;
    }
    Splits s;
    for (int64_t i = 0; i < n; ++i) (is_valid[size_t(i)] ? s.valid : s.train).push_back(i);
    return s;
  };
}

struct DataLoadersOptions {
  int64_t bs = 64;
  int num_workers = 0;
  uint64_t seed = 0;  // shuffles and random transforms; 0: drawn from strata's default generator
  bool shuffle_train = true;
  bool drop_last = false;  // train only; valid never drops
};

/// "Image [3, 28, 28] u8", "Category [] i64 = 3 (dog)".
inline std::string describe_item(const Item& it, const std::vector<std::string>* vocab = nullptr) {
  std::ostringstream os;
  const Tensor& t = data_of(it);
  os << kind_name(kind_of(it)) << ' ';
  if (!t.defined()) return os.str() + "(undefined)";
  os << t.shape() << ' ' << t.dtype();
  if (kind_of(it) == ItemKind::category && t.dim() == 0) {
    const auto v = t.item<int64_t>();
    os << " = " << v;
    if (vocab && v >= 0 && v < int64_t(vocab->size())) os << " (" << (*vocab)[size_t(v)] << ')';
  }
  return os.str();
}

/// "(Image [3, 8, 8] u8, Category [] i64 = 0 (cat))".
inline std::string describe_tuple(const Tuple& t, const std::vector<std::vector<std::string>>* vocabs = nullptr) {
  std::string s = "(";
  for (size_t i = 0; i < t.size(); ++i)
    s += (i ? ", " : "") + describe_item(t[i], vocabs && i < vocabs->size() ? &(*vocabs)[i] : nullptr);
  return s + ")";
}

/// Stacks the tuples of one batch slot by slot (each slot's kind, shape and dtype must match):
/// one allocation per slot, contiguous CPU parts copied with memcpy.
inline Tuple collate_tuples(const std::vector<Tuple>& ts) {
  STRATA_CHECK(!ts.empty(), "collate", "got no items, expected at least one");
  Tuple out;
  out.reserve(ts[0].size());
  for (size_t s = 0; s < ts[0].size(); ++s) {
    const ItemKind k0 = kind_of(ts[0][s]);
    const Tensor& t0 = data_of(ts[0][s]);
    STRATA_CHECK(t0.defined(), "collate", "got an undefined ", kind_name(k0), " in sample 0, expected a tensor");
    const Shape& s0 = t0.shape();
    Shape shape{int64_t(ts.size())};
    shape.insert(shape.end(), s0.begin(), s0.end());
    Tensor batch = Tensor::empty(shape, t0.dtype(), t0.device());
    const auto bytes = size_t(t0.numel() * t0.element_size());
    auto* dst = static_cast<char*>(batch.raw_data());
    for (size_t k = 0; k < ts.size(); ++k) {
      STRATA_CHECK(ts[k].size() == ts[0].size(), "collate", "got ", ts[k].size(), " items in sample ", k, " and ",
                   ts[0].size(), " in sample 0, expected the same count");
      STRATA_CHECK(kind_of(ts[k][s]) == k0, "collate", "got ", kind_name(kind_of(ts[k][s])), " in slot ", s,
                   " of sample ", k, " and ", kind_name(k0), " in sample 0, expected the same kind");
      const Tensor& t = data_of(ts[k][s]);
      STRATA_CHECK(t.defined() && t.shape() == s0, "collate", "got ", kind_name(k0), " of shape ",
                   t.defined() ? to_string(t.shape()) : std::string("(undefined)"), " in sample ", k, " and ", s0,
                   " in sample 0, expected equal shapes (items of one batch must match: add an item_tfm such as Resize)");
      STRATA_CHECK(t.dtype() == t0.dtype() && t.device() == t0.device(), "collate", "got ", kind_name(k0), " of dtype ",
                   t.dtype(), " on ", t.device(), " in sample ", k, " and ", t0.dtype(), " on ", t0.device(),
                   " in sample 0, expected the same dtype and device");
      if (t.device().is_cpu() && t.is_contiguous()) {
        if (bytes) std::memcpy(dst + k * bytes, t.raw_data(), bytes);
      } else {
        batch.select(0, int64_t(k)).copy_(t);
      }
    }
    out.push_back(make_item(k0, std::move(batch)));
  }
  return out;
}

namespace detail {

/// A short name for an item in messages: its path, its value, or nothing.
template <class Src>
std::string describe_src(const Src& s) {
  if constexpr (std::is_convertible_v<const Src&, std::filesystem::path>) return " ('" + std::filesystem::path(s).string() + "')";
  else if constexpr (std::is_arithmetic_v<Src>) return " (" + std::to_string(s) + ")";
  else return "";
}

/// What both splits' datasets share: the blocks (vocabs set up), a getter per block, the pipelines.
template <class Src>
struct BlockCore {
  std::vector<TransformBlock> blocks;
  std::vector<std::function<Raw(const Src&)>> getters;
  std::shared_ptr<const DataBlockInfo> info;  // null until the pipelines are set up
};

}  // namespace detail

/// One split of a DataBlock: items of type Src, made into typed tuples and collated batches.
template <class Src>
class TypedDataset : public Dataset {
 public:
  TypedDataset(std::shared_ptr<const detail::BlockCore<Src>> core, std::vector<Src> items, bool train)
      : core_(std::move(core)), items_(std::move(items)), train_(train) {}

  int64_t size() const override { return int64_t(items_.size()); }
  const std::vector<Src>& items() const { return items_; }
  bool train() const { return train_; }
  /// The same items with the other split's item transforms (for tta).
  std::shared_ptr<const Dataset> with_split(bool train) const override {
    return std::make_shared<TypedDataset<Src>>(core_, items_, train);
  }

  /// Block b (with its vocab set up) and its getter's raw value for item i.
  const TransformBlock& block(size_t b) const { return core_->blocks.at(b); }
  Raw raw(int64_t i, size_t b) const {
    check_index(i, "TypedDataset::raw");
    return core_->getters.at(b)(items_[size_t(i)]);
  }

  /// Item i after the type transforms only (no item tfms).
  Tuple typed(int64_t i) const {
    check_index(i, "TypedDataset::typed");
    const Src& src = items_[size_t(i)];
    Tuple t;
    t.reserve(core_->blocks.size());
    for (size_t b = 0; b < core_->blocks.size(); ++b) {
      try {
        t.push_back(core_->blocks[b](core_->getters[b](src)));
      } catch (const std::exception& e) {
        throw Error(where(i) + ", " + core_->blocks[b].name + ": " + e.what());
      }
    }
    return t;
  }
  /// Item i through the type transforms and the item tfms that apply to this split.
  Tuple sample(int64_t i, TfmContext& ctx) const {
    Tuple t = typed(i);
    if (!core_->info) return t;
    for (const auto& tf : core_->info->after_item.transforms()) {
      if (!tf->applies(ctx.train)) continue;
      try {
        tf->encode(t, ctx);
      } catch (const std::exception& e) {
        throw Error(where(i) + ", item tfm " + tf->name + ": " + e.what());
      }
    }
    return t;
  }

  /// Item i as a Batch without batch dim (random item tfms use TfmRng(0, 0, 0, 0)).
  Batch get(int64_t i) const override {
    TfmContext ctx{.train = train_, .rng = TfmRng(0, 0, 0, 0)};
    return to_batch(sample(i, ctx), n_inp());
  }
  using Dataset::get_batch;
  Batch get_batch(const std::vector<int64_t>& idxs) const override { return get_batch(idxs, BatchContext{}); }
  /// The items idxs through their transforms, the k-th with TfmRng(seed, epoch, batch, k), collated.
  /// A shard's item k is item k * world + rank of the global batch and draws as that one would in a
  /// single process, so every rank augments differently and together they match one process.
  Batch get_batch(const std::vector<int64_t>& idxs, const BatchContext& ctx) const override {
    std::vector<Tuple> ts;
    ts.reserve(idxs.size());
    for (size_t k = 0; k < idxs.size(); ++k) {
      const auto item = uint32_t(int64_t(k) * ctx.world + ctx.rank);
      TfmContext tc{.train = train_, .rng = TfmRng(ctx.seed, ctx.epoch, uint64_t(ctx.batch), item)};
      ts.push_back(sample(idxs[k], tc));
    }
    return to_batch(collate_tuples(ts), n_inp());
  }

 private:
  int n_inp() const { return core_->info ? core_->info->n_inp : 1; }
  std::string where(int64_t i) const {
    std::string s = "DataBlock: ";  // built with += : GCC 12 warns falsely (-Warray-bounds) on a + chain here
    s += train_ ? "train" : "valid";
    s += " item ";
    s += std::to_string(i);
    s += detail::describe_src(items_[size_t(i)]);
    return s;
  }

  std::shared_ptr<const detail::BlockCore<Src>> core_;
  std::vector<Src> items_;
  bool train_ = true;
};

/// The two splits of a DataBlock, set up, with their shared info.
template <class Src>
struct BlockDatasets {
  std::shared_ptr<const TypedDataset<Src>> train, valid;
  std::shared_ptr<const DataBlockInfo> info;
};

/// The after_batch pipeline as a loader's BatchTransform: to_tuple, the pipeline with
/// TfmRng(seed, epoch, batch), to_batch.
inline BatchTransform after_batch_transform(std::shared_ptr<const DataBlockInfo> info, bool train) {
  return [info = std::move(info), train](Batch& b, const BatchContext& ctx) {
    // each rank's part of a global batch draws its own batch-level numbers (rank 0: a single process's)
    TfmContext tc{.train = train, .rng = TfmRng(ctx.seed, ctx.epoch, uint64_t(ctx.batch), TfmRng::kBatchItem - uint32_t(ctx.rank))};
    b = to_batch(info->after_batch(to_tuple(b, info->kinds), tc), info->n_inp);
  };
}

template <class Src>
struct DataBlock {
  using Getter = std::function<Raw(const Src&)>;
  using Splitter = std::function<Splits(const std::vector<Src>&)>;

  std::vector<TransformBlock> blocks;
  int n_inp = 1;
  std::function<std::vector<Src>(const std::filesystem::path&)> get_items = {};
  std::vector<Getter> getters = {};  // one per block; or get_x / get_y
  Getter get_x = {}, get_y = {};
  Splitter splitter = RandomSplitter();
  std::vector<std::shared_ptr<Transform>> item_tfms = {}, batch_tfms = {};
  bool skip_bad_items = false;

  /// Train and valid loaders over get_items(source).
  DataLoaders dataloaders(const std::filesystem::path& source, DataLoadersOptions o = {}) const {
    return dataloaders(collect(source), o);
  }
  /// Train and valid loaders over the given items.
  DataLoaders dataloaders(const std::vector<Src>& items, DataLoadersOptions o = {}) const {
    BlockDatasets<Src> ds = datasets(items, o.bs);
    DataLoaders dls;
    auto options = [&](bool train) {
      DataLoaderOptions lo{.bs = o.bs, .shuffle = train && o.shuffle_train, .drop_last = train && o.drop_last,
                           .num_workers = o.num_workers, .seed = o.seed};
      if (!ds.info->after_batch.empty()) lo.after_batch.push_back(after_batch_transform(ds.info, train));
      return lo;
    };
    dls.train = DataLoader(ds.train, options(true));
    dls.valid = DataLoader(ds.valid, options(false));
    dls.block = ds.info;
    for (size_t b = size_t(n_inp); b < blocks.size(); ++b) {
      const ItemKind k = ds.info->kinds[b];
      if (k == ItemKind::category || k == ItemKind::multi_category) {
        dls.vocab = ds.info->vocabs[b];
        dls.c = int64_t(dls.vocab.size());
      } else if (k == ItemKind::regression && dls.vocab.empty()) {
        dls.c = std::max<int64_t>(1, data_of(ds.train->block(b)(ds.train->raw(0, b))).numel());
      }
    }
    return dls;
  }

  /// The two typed datasets, set up (fastai's dblock.datasets); `setup_bs` caps the setup batch.
  BlockDatasets<Src> datasets(const std::vector<Src>& items, int64_t setup_bs = 8) const {
    return build(items, nullptr, setup_bs);
  }

  /// Prints every step of making one batch of `bs` training items from get_items(source).
  void summary(const std::filesystem::path& source, std::ostream& os = std::cout, int bs = 4) const {
    os << "Collecting items from " << source.string() << "\n";
    std::vector<Src> items;
    step(&os, "collecting items", [&] { items = collect(source); });
    summary(items, os, bs);
  }
  /// Prints every step of making one batch of `bs` training items (fastai's DataBlock.summary): the
  /// items found, the split sizes, each getter's raw value, each type transform's result, each item
  /// tfm, the collate, each batch tfm and the final batch. A failing step is named, then rethrown.
  void summary(const std::vector<Src>& items, std::ostream& os = std::cout, int bs = 4) const {
    STRATA_CHECK(bs >= 1, "DataBlock::summary", "got bs = ", bs, ", expected bs >= 1");
    os << "Found " << items.size() << " items\n";
    BlockDatasets<Src> ds = build(items, &os, bs);
    const TypedDataset<Src>& train = *ds.train;
    const DataBlockInfo& info = *ds.info;
    const auto nb = std::min<int64_t>(bs, train.size());

    os << "\nBuilding one sample (train item 0" << detail::describe_src(train.items()[0]) << ")\n";
    Tuple t;
    for (size_t b = 0; b < blocks.size(); ++b) {
      Raw raw;
      step(&os, "getter of " + blocks[b].name, [&] { raw = train.raw(0, b); });
      os << "  " << blocks[b].name << (int(b) < n_inp ? " (input)" : " (target)") << "\n"
         << "    getter gives " << describe_raw(raw) << "\n";
      step(&os, "type transform of " + blocks[b].name, [&] { t.push_back(train.block(b)(raw)); });
      os << "    type transform gives " << describe_item(t.back(), &info.vocabs[b]) << "\n";
    }
    os << "Final sample: " << describe_tuple(t, &info.vocabs) << "\n";

    os << "\nBuilding one batch\nApplying item_tfms to the first sample:\n  " << info.after_item.repr() << "\n"
       << "    starting from " << describe_tuple(t, &info.vocabs) << "\n";
    TfmContext ictx{.train = true, .rng = TfmRng(0, 0, 0, 0)};
    walk(os, info.after_item, t, ictx, info);
    std::vector<Tuple> samples{t};
    if (nb > 1) os << "Adding the next " << nb - 1 << " samples\n";
    step(&os, "item tfms of the next samples", [&] {
      for (int64_t k = 1; k < nb; ++k) {
        TfmContext c{.train = true, .rng = TfmRng(0, 0, 0, uint32_t(k))};
        samples.push_back(train.sample(k, c));
      }
    });
    Tuple batch;
    step(&os, "collating", [&] { batch = collate_tuples(samples); });
    os << "Collating items in a batch: " << describe_tuple(batch) << "\n";
    os << "\nApplying batch_tfms to the batch built\n  " << info.after_batch.repr() << "\n"
       << "    starting from " << describe_tuple(batch) << "\n";
    TfmContext bctx{.train = true, .rng = TfmRng(0, 0, 0)};
    walk(os, info.after_batch, batch, bctx, info);
    const Batch fin = to_batch(batch, info.n_inp);
    os << "Final batch: xb";
    for (const Tensor& x : fin.xb) os << ' ' << x.shape() << ' ' << x.dtype();
    os << ", yb";
    for (const Tensor& y : fin.yb) os << ' ' << y.shape() << ' ' << y.dtype();
    os << "\n";
  }

 private:
  /// Runs fn as the named step; in summary mode (os set) a failure is printed and rethrown naming the step.
  template <class F>
  static void step(std::ostream* os, const std::string& name, F&& fn) {
    if (!os) return fn();
    try {
      fn();
    } catch (const std::exception& e) {
      *os << "Failed at step '" << name << "': " << e.what() << "\n";
      throw Error("DataBlock::summary: step '" + name + "' failed: " + e.what());
    }
  }

  /// Applies each transform of `pipe` to t in turn, printing what it gives.
  static void walk(std::ostream& os, const Pipeline& pipe, Tuple& t, TfmContext& ctx, const DataBlockInfo& info) {
    for (const auto& tf : pipe.transforms()) {
      if (!tf->applies(ctx.train)) {
        os << "    " << tf->name << " skipped (valid only)\n";
        continue;
      }
      step(&os, "transform " + tf->name, [&] { tf->encode(t, ctx); });
      os << "    applying " << tf->name << " gives " << describe_tuple(t, &info.vocabs) << "\n";
    }
  }

  std::vector<Src> collect(const std::filesystem::path& source) const {
    STRATA_CHECK(bool(get_items), "DataBlock::dataloaders", "got a source path '", source.string(),
                 "' but no get_items, expected get_items (or pass the items themselves)");
    return get_items(source);
  }

  /// The blocks and one getter per block (not set up).
  std::shared_ptr<detail::BlockCore<Src>> resolved() const {
    const auto nb = int64_t(blocks.size());
    STRATA_CHECK(nb >= 1, "DataBlock", "got no blocks, expected at least one (e.g. {ImageBlock(), CategoryBlock()})");
    STRATA_CHECK(n_inp >= 1 && n_inp <= nb, "DataBlock", "got n_inp = ", n_inp, " with ", nb,
                 " blocks, expected 1 <= n_inp <= ", nb);
    auto core = std::make_shared<detail::BlockCore<Src>>();
    core->blocks = blocks;
    core->getters.resize(size_t(nb));
    if (!getters.empty()) {
      STRATA_CHECK(int64_t(getters.size()) == nb, "DataBlock", "got ", getters.size(), " getters for ", nb,
                   " blocks, expected one per block");
      core->getters = getters;
    }
    if (get_x) {
      STRATA_CHECK(getters.empty() && n_inp == 1, "DataBlock", "got get_x with n_inp = ", n_inp, " and ",
                   getters.size(), " getters, expected n_inp = 1 and no getters (use getters for more inputs)");
      core->getters[0] = get_x;
    }
    if (get_y) {
      STRATA_CHECK(getters.empty() && nb - n_inp == 1, "DataBlock", "got get_y with ", nb - n_inp, " target blocks and ",
                   getters.size(), " getters, expected one target block and no getters (use getters for more)");
      core->getters[size_t(n_inp)] = get_y;
    }
    for (size_t b = 0; b < size_t(nb); ++b) {
      if (core->getters[b]) continue;
      if constexpr (std::is_constructible_v<Raw, const Src&>) {
        core->getters[b] = [](const Src& s) { return Raw(s); };
      } else {
        detail::fail("DataBlock", "got no getter for block ", b, " (", blocks[b].name,
                     ") and items that are not a raw value, expected get_x / get_y / getters");
      }
    }
    return core;
  }

  /// The items of `idx` (checked against n).
  static std::vector<Src> pick(const std::vector<Src>& items, const std::vector<int64_t>& idx, const char* side) {
    std::vector<Src> out;
    out.reserve(idx.size());
    for (int64_t i : idx) {
      STRATA_CHECK(i >= 0 && i < int64_t(items.size()), "DataBlock", "got ", side, " index ", i,
                   " from the splitter, expected indices in [0, ", items.size(), ")");
      out.push_back(items[size_t(i)]);
    }
    return out;
  }

  /// Drops the items whose image or mask file does not decode; one warning line on stderr.
  void drop_bad(const detail::BlockCore<Src>& core, std::vector<Src>& train, std::vector<Src>& valid) const {
    std::vector<std::string> files;
    for (const std::vector<Src>* split : {&train, &valid})
      for (const Src& s : *split)
        for (size_t b = 0; b < blocks.size(); ++b) {
          if (blocks[b].kind != ItemKind::image && blocks[b].kind != ItemKind::mask) continue;
          const Raw r = core.getters[b](s);
          std::filesystem::path tmp;
          if (const auto* p = detail::raw_path(r, tmp)) files.push_back(p->string());
        }
    const std::vector<std::string> bad = verify_images(files);
    if (bad.empty()) return;
    const std::unordered_set<std::string> bad_set(bad.begin(), bad.end());
    auto is_bad = [&](const Src& s) {
      for (size_t b = 0; b < blocks.size(); ++b) {
        if (blocks[b].kind != ItemKind::image && blocks[b].kind != ItemKind::mask) continue;
        const Raw r = core.getters[b](s);
        std::filesystem::path tmp;
        if (const auto* p = detail::raw_path(r, tmp); p && bad_set.count(p->string())) return true;
      }
      return false;
    };
    const size_t before = train.size() + valid.size();
    std::erase_if(train, is_bad);
    std::erase_if(valid, is_bad);
    std::ostringstream msg;
    msg << "strata DataBlock: skipped " << before - train.size() - valid.size() << " item(s) with " << bad.size()
        << " file(s) that do not decode:";
    for (size_t i = 0; i < bad.size() && i < 3; ++i) msg << (i ? ", '" : " '") << bad[i] << "'";
    if (bad.size() > 3) msg << ", ...";
    std::cerr << msg.str() << "\n";
  }

  /// Blocks' tfms then the user's; a default (named) transform is dropped when a later one has its name.
  static std::vector<std::shared_ptr<Transform>> merge_tfms(std::vector<std::shared_ptr<Transform>> defaults,
                                                            const std::vector<std::shared_ptr<Transform>>& user) {
    const size_t nd = defaults.size();
    defaults.insert(defaults.end(), user.begin(), user.end());
    std::vector<std::shared_ptr<Transform>> out;
    for (size_t i = 0; i < defaults.size(); ++i) {
      STRATA_CHECK(defaults[i] != nullptr, "DataBlock", "got a null transform, expected one from make_transform");
      bool replaced = false;
      for (size_t j = i + 1; j < defaults.size() && i < nd && defaults[i]->name != "Transform"; ++j)
        replaced = replaced || defaults[j]->name == defaults[i]->name;
      if (!replaced) out.push_back(defaults[i]);
    }
    return out;
  }

  /// Splits, sets up the type transforms and the pipelines (printing each step when log is set).
  BlockDatasets<Src> build(const std::vector<Src>& items, std::ostream* log, int64_t setup_bs) const {
    std::shared_ptr<detail::BlockCore<Src>> core = resolved();
    Splits sp;
    step(log, "splitting", [&] { sp = splitter(items); });
    std::vector<Src> train = pick(items, sp.train, "train"), valid = pick(items, sp.valid, "valid");
    if (skip_bad_items) drop_bad(*core, train, valid);
    STRATA_CHECK(!train.empty(), "DataBlock", "got ", items.size(), " items and 0 of them in the training split, ",
                 "expected at least one training item (check get_items and the splitter)");
    if (log) *log << "2 datasets of sizes " << train.size() << ", " << valid.size() << "\n";

    // type transforms: vocabs from the training raws; validation labels checked against them
    for (size_t b = 0; b < core->blocks.size(); ++b) {
      TransformBlock& blk = core->blocks[b];
      if (!blk.needs_setup()) continue;
      step(log, "setting up " + blk.name, [&] {
        std::vector<Raw> raws;
        raws.reserve(train.size());
        for (const Src& s : train) raws.push_back(core->getters[b](s));
        blk.setup(raws);
        for (size_t i = 0; i < valid.size(); ++i) {
          try {
            (void)blk(core->getters[b](valid[i]));
          } catch (const std::exception& e) {
            throw Error("DataBlock: valid item " + std::to_string(i) + detail::describe_src(valid[i]) + ", " + e.what());
          }
        }
      });
    }
    if (log) {
      *log << "Setting up type transforms:";
      for (const TransformBlock& blk : core->blocks) *log << ' ' << blk.name;
      *log << "\n";
      for (const TransformBlock& blk : core->blocks) {
        if (blk.vocab.empty()) continue;
        *log << "  " << blk.name << " vocab (" << blk.vocab.size() << "):";
        for (size_t i = 0; i < blk.vocab.size() && i < 20; ++i) *log << (i ? ", " : " ") << blk.vocab[i];
        *log << (blk.vocab.size() > 20 ? ", ...\n" : "\n");
      }
    }

    // pipelines: merged tfms, set up on the first few training tuples and their batch
    auto info = std::make_shared<DataBlockInfo>();
    info->n_inp = n_inp;
    std::vector<std::shared_ptr<Transform>> def_item, def_batch;
    for (const TransformBlock& blk : core->blocks) {
      info->vocabs.push_back(blk.vocab);
      def_item.insert(def_item.end(), blk.item_tfms.begin(), blk.item_tfms.end());
      def_batch.insert(def_batch.end(), blk.batch_tfms.begin(), blk.batch_tfms.end());
    }
    info->after_item = Pipeline(merge_tfms(def_item, item_tfms));
    info->after_batch = Pipeline(merge_tfms(def_batch, batch_tfms));
    auto train_ds = std::make_shared<TypedDataset<Src>>(core, std::move(train), true);
    const int64_t n_setup = std::min<int64_t>(train_ds->size(), std::max<int64_t>(1, std::min<int64_t>(setup_bs, 8)));
    std::vector<Tuple> tuples;
    step(log, "type transforms of the setup samples", [&] {
      for (int64_t i = 0; i < n_setup; ++i) tuples.push_back(train_ds->typed(i));
    });
    if (log) *log << "Setting up after_item: " << info->after_item.repr() << "\n";
    step(log, "setting up the item tfms", [&] {
      info->after_item.setup(tuples);
      for (size_t i = 0; i < tuples.size(); ++i) {
        TfmContext ctx{.train = true, .rng = TfmRng(0, 0, 0, uint32_t(i))};
        tuples[i] = info->after_item(tuples[i], ctx);
      }
    });
    Tuple batch;
    step(log, "collating the setup samples", [&] { batch = collate_tuples(tuples); });
    info->kinds = kinds_of(batch);
    if (log) *log << "Setting up after_batch: " << info->after_batch.repr() << "\n";
    step(log, "setting up the batch tfms", [&] { info->after_batch.setup({batch}); });

    core->info = info;
    BlockDatasets<Src> out;
    out.train = std::move(train_ds);
    out.valid = std::make_shared<TypedDataset<Src>>(core, std::move(valid), false);
    out.info = info;
    return out;
  }
};

}  // namespace strata
