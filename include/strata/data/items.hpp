// Semantic item types: what a tensor means, so transforms can overload on it and show_batch can
// draw it (fastai's TensorImage, TensorMask, TensorPoint, TensorBBox, TensorCategory,
// TensorMultiCategory). Each type is one tensor; the same type holds one item or a whole batch
// (a leading batch dim B), so item transforms and batch transforms overload on the same names.
//
//   type            item shape       batch shape        dtype and meaning
//   Image           [C, H, W]        [B, C, H, W]       u8 pixels 0..255, or floating after IntToFloat
//   Mask            [H, W]           [B, H, W]          i64 class code per pixel
//   Points          [N, 2]           [B, N, 2]          f32 (x, y) in pixels of the tuple's Image
//   BBoxes          [N, 4]           [B, N, 4]          f32 (x0, y0, x1, y1) in pixels of the tuple's Image
//   Category        []               [B]                i64 index into the block's vocab
//   MultiCategory   [C]              [B, C]             f32 one-hot over the vocab
//   Regression      [K] or []        [B, K] or [B]      f32 targets
//
// A Tuple is one sample as the blocks made it: inputs first, then targets (DataBlock's n_inp says
// where they split). to_batch/to_tuple convert to and from the Learner's untyped Batch, with the
// kinds remembered by whoever made the Tuple (the DataBlock).
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "strata/data/dataset.hpp"

namespace strata {

struct Image { Tensor data; };
struct Mask { Tensor data; };
struct Points { Tensor data; };
struct BBoxes { Tensor data; };
struct Category { Tensor data; };
struct MultiCategory { Tensor data; };
struct Regression { Tensor data; };

/// One typed element of a sample; the variant index is its ItemKind.
using Item = std::variant<Image, Mask, Points, BBoxes, Category, MultiCategory, Regression>;
/// One sample (or one batch): typed elements, inputs first.
using Tuple = std::vector<Item>;

enum class ItemKind { image, mask, points, bboxes, category, multi_category, regression };

inline ItemKind kind_of(const Item& it) { return ItemKind(it.index()); }

inline const char* kind_name(ItemKind k) {
  constexpr const char* names[] = {"Image", "Mask", "Points", "BBoxes", "Category", "MultiCategory", "Regression"};
  return names[int(k)];
}

/// The tensor inside an item, whatever its type.
inline const Tensor& data_of(const Item& it) {
  return std::visit([](const auto& x) -> const Tensor& { return x.data; }, it);
}
inline Tensor& data_of(Item& it) {
  return std::visit([](auto& x) -> Tensor& { return x.data; }, it);
}

/// Wraps a tensor as an item of kind k.
inline Item make_item(ItemKind k, Tensor t) {
  switch (k) {
    case ItemKind::image: return Image{std::move(t)};
    case ItemKind::mask: return Mask{std::move(t)};
    case ItemKind::points: return Points{std::move(t)};
    case ItemKind::bboxes: return BBoxes{std::move(t)};
    case ItemKind::category: return Category{std::move(t)};
    case ItemKind::multi_category: return MultiCategory{std::move(t)};
    case ItemKind::regression: return Regression{std::move(t)};
  }
  throw Error("make_item: got an unknown ItemKind " + std::to_string(int(k)));
}

/// The kinds of a tuple's items, in order.
inline std::vector<ItemKind> kinds_of(const Tuple& t) {
  std::vector<ItemKind> ks;
  ks.reserve(t.size());
  for (const Item& it : t) ks.push_back(kind_of(it));
  return ks;
}

/// Tuple -> Batch: the first n_inp items become xb, the rest yb.
inline Batch to_batch(const Tuple& t, int n_inp) {
  STRATA_CHECK(n_inp >= 0 && size_t(n_inp) <= t.size(), "to_batch", "got n_inp = ", n_inp, " for a tuple of ",
               t.size(), " items, expected 0 <= n_inp <= ", t.size());
  Batch b;
  for (size_t i = 0; i < t.size(); ++i) (int(i) < n_inp ? b.xb : b.yb).push_back(data_of(t[i]));
  return b;
}

/// Batch -> Tuple: xb then yb, typed by kinds in order. Trailing kinds may be missing (a batch of
/// inputs only, as Learner::predict makes).
inline Tuple to_tuple(const Batch& b, const std::vector<ItemKind>& kinds) {
  STRATA_CHECK(b.xb.size() + b.yb.size() <= kinds.size(), "to_tuple", "got a batch of ", b.xb.size(), " + ",
               b.yb.size(), " tensors, expected at most ", kinds.size(), " (one per kind)");
  Tuple t;
  t.reserve(kinds.size());
  for (size_t i = 0; i < b.xb.size(); ++i) t.push_back(make_item(kinds[i], b.xb[i]));
  for (size_t i = 0; i < b.yb.size(); ++i) t.push_back(make_item(kinds[b.xb.size() + i], b.yb[i]));
  return t;
}

}  // namespace strata
