// Blocks of a DataBlock (fastai's TransformBlock, ImageBlock, MaskBlock, CategoryBlock,
// MultiCategoryBlock, RegressionBlock, PointBlock): what a raw value from a getter means, and how
// it becomes a typed item.
//
// A getter (get_x / get_y) returns a Raw: a file path, a string, an integer, a number, a list of
// labels, a list of numbers or a tensor. A TransformBlock turns a Raw into one Item (its type
// transform, fastai's type_tfms), after learning a vocab from the training raws where it needs one
// (fastai's Categorize.setups), and brings default item and batch transforms:
//
//   block                 raw accepted                                       item
//   ImageBlock            path or string (read_image), u8 or floating          Image u8 [C,H,W]
//                         [C,H,W] / [H,W] tensor (used as is, no copy)
//   MaskBlock             path or string of an image (read as 1 channel),     Mask i64 [H,W]
//                         integer [H,W] / [1,H,W] tensor
//   CategoryBlock         string label; int64: an index when a vocab was      Category i64 []
//                         given, else a label ("7") learned like the strings
//   MultiCategoryBlock    vector<string> labels; vector<double> / Tensor      MultiCategory f32 [C]
//                         already one-hot (with a given vocab)
//   RegressionBlock       double, int64, vector<double>, Tensor               Regression f32 [] or [K]
//   PointBlock            Tensor [N,2] or vector<double> x0,y0,x1,y1,...      Points f32 [N,2]
//
// The learned vocab is the sorted unique training labels (integers sorted as numbers), as fastai's
// Categorize(sort=True). A label outside the vocab, or a Raw of a type the block does not take,
// throws strata::Error naming the block, the label or type, and what it expected.
// References: fastai.data.block (TransformBlock, CategoryBlock, MultiCategoryBlock, RegressionBlock),
// fastai.vision.data (ImageBlock, MaskBlock, PointBlock), fastai.data.transforms (Categorize).
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "strata/data/items.hpp"
#include "strata/data/normalize.hpp"
#include "strata/data/transform.hpp"
#include "strata/io/image.hpp"

namespace strata {

/// A value returned by a getter, before its block gives it a type.
using Raw = std::variant<std::filesystem::path, std::string, int64_t, double, std::vector<std::string>,
                         std::vector<double>, Tensor>;

/// "path", "string", "int64", "double", "vector<string>", "vector<double>" or "Tensor".
inline const char* raw_type_name(const Raw& r) {
  constexpr const char* names[] = {"path", "string", "int64", "double", "vector<string>", "vector<double>", "Tensor"};
  return names[r.index()];
}

/// One line saying what a raw value is: type and value (or shape and dtype), shortened.
inline std::string describe_raw(const Raw& r) {
  std::ostringstream os;
  os << raw_type_name(r) << ' ';
  std::visit([&](const auto& v) {
    using V = std::decay_t<decltype(v)>;
    if constexpr (std::is_same_v<V, std::filesystem::path>) os << '\'' << v.string() << '\'';
    else if constexpr (std::is_same_v<V, std::string>) os << '\'' << v << '\'';
    else if constexpr (std::is_same_v<V, Tensor>) {
      if (v.defined()) os << v.shape() << ' ' << v.dtype();
      else os << "(undefined)";
    } else if constexpr (std::is_arithmetic_v<V>) os << v;
    else {
      os << '[';
      for (size_t i = 0; i < v.size() && i < 8; ++i) {
        if constexpr (std::is_same_v<V, std::vector<std::string>>) os << (i ? ", " : "") << '\'' << v[i] << '\'';
        else os << (i ? ", " : "") << v[i];
      }
      os << (v.size() > 8 ? ", ...]" : "]");
    }
  }, r);
  return os.str();
}

/// What a block does with raw values: the type transform, the vocab it learns, its default tfms.
struct TransformBlock {
  std::string name = "TransformBlock";
  ItemKind kind = ItemKind::image;
  /// The type transform: a raw value -> an item (reads `self` for the vocab).
  std::function<Item(const Raw& raw, const TransformBlock& self)> create = {};
  /// Learns the vocab from the training raws (left empty by blocks that learn nothing).
  std::function<std::vector<std::string>(const std::vector<Raw>& train_raws, const TransformBlock& self)>
      learn_vocab = {};
  std::vector<std::shared_ptr<Transform>> item_tfms = {}, batch_tfms = {};  // defaults the DataBlock adds
  std::vector<std::string> vocab = {};  // class names (Category, MultiCategory) or mask codes
  bool vocab_given = false;             // the vocab came from the user: setup keeps it
  std::shared_ptr<const std::unordered_map<std::string, int64_t>> lookup = {};  // label -> index, made by setup

  /// Whether setup has a vocab to learn from training raws.
  bool needs_setup() const { return bool(learn_vocab) && !vocab_given; }
  /// Learns the vocab from the training raws (unless given) and indexes it.
  void setup(const std::vector<Raw>& train_raws) {
    if (needs_setup()) vocab = learn_vocab(train_raws, *this);
    index_vocab();
  }
  /// The vocab's label -> index table (setup calls it; blocks made with a vocab call it too).
  void index_vocab() {
    auto m = std::make_shared<std::unordered_map<std::string, int64_t>>();
    for (size_t i = 0; i < vocab.size(); ++i) {
      const bool fresh = m->emplace(vocab[i], int64_t(i)).second;
      STRATA_CHECK(fresh, name, "got the label '", vocab[i], "' twice in the vocab, expected unique labels");
    }
    lookup = std::move(m);
  }
  /// Index of `label` in the vocab; an unknown label throws, naming it and the vocab.
  int64_t index_of(const std::string& label) const {
    STRATA_CHECK(lookup != nullptr, name, "got label '", label,
                 "' before the vocab was set up, expected setup() (DataBlock::dataloaders runs it)");
    const auto it = lookup->find(label);
    if (it == lookup->end()) {
      std::ostringstream v;
      for (size_t i = 0; i < vocab.size() && i < 10; ++i) v << (i ? ", " : "") << vocab[i];
      if (vocab.size() > 10) v << ", ...";
      detail::fail(name, "got label '", label, "', which is not in the vocab of ", vocab.size(), " labels [", v.str(),
                   "], expected a label of the vocab (", vocab_given ? "given to the block" : "learned from the training set",
                   ": a validation label must also appear in training)");
    }
    return it->second;
  }
  /// The type transform applied to one raw value.
  Item operator()(const Raw& raw) const {
    STRATA_CHECK(bool(create), name, "got a block without a type transform, expected `create` to be set");
    return create(raw, *this);
  }
  /// The error for a raw value of a type this block does not take.
  [[noreturn]] void wrong_raw(const Raw& raw, const char* expected) const {
    detail::fail(name, "got a raw value of type ", raw_type_name(raw), " (", describe_raw(raw), "), expected ",
                 expected, " (check the getter of this block)");
  }
};

namespace detail {

/// The path in a path or string raw (nullptr for other types).
inline const std::filesystem::path* raw_path(const Raw& r, std::filesystem::path& tmp) {
  if (const auto* p = std::get_if<std::filesystem::path>(&r)) return p;
  if (const auto* s = std::get_if<std::string>(&r)) {
    tmp = *s;
    return &tmp;
  }
  return nullptr;
}

/// Sorted unique labels of string raws, or of int64 raws (sorted as numbers, kept as their decimal text).
inline std::vector<std::string> learn_category_vocab(const std::vector<Raw>& raws, const TransformBlock& self) {
  std::vector<std::string> strs;
  std::vector<int64_t> ints;
  for (const Raw& r : raws) {
    if (const auto* s = std::get_if<std::string>(&r)) strs.push_back(*s);
    else if (const auto* i = std::get_if<int64_t>(&r)) ints.push_back(*i);
    else self.wrong_raw(r, "a string label or an int64");
  }
  STRATA_CHECK(strs.empty() || ints.empty(), self.name, "got both string and int64 labels (", strs.size(), " and ",
               ints.size(), "), expected one kind of label");
  std::sort(ints.begin(), ints.end());
  ints.erase(std::unique(ints.begin(), ints.end()), ints.end());
  for (int64_t i : ints) strs.push_back(std::to_string(i));
  if (ints.empty()) {
    std::sort(strs.begin(), strs.end());
    strs.erase(std::unique(strs.begin(), strs.end()), strs.end());
  }
  return strs;
}

}  // namespace detail

struct ImageBlockOptions {
  int channels = 3;  // 1, 3 or 4: files are converted to it, tensors must have it; 0: as stored
};

/// Images from files (read_image) or u8 / floating [C,H,W] tensors; default batch tfm IntToFloat.
inline TransformBlock ImageBlock(ImageBlockOptions o = {}) {
  STRATA_CHECK(o.channels == 0 || o.channels == 1 || o.channels == 3 || o.channels == 4, "ImageBlock", "got channels = ",
               o.channels, ", expected 0 (as stored), 1, 3 or 4");
  return {.name = "ImageBlock",
          .kind = ItemKind::image,
          .create = [c = o.channels](const Raw& raw, const TransformBlock& self) -> Item {
            std::filesystem::path tmp;
            if (const auto* p = detail::raw_path(raw, tmp)) return Image{read_image(p->string(), c)};
            const auto* t = std::get_if<Tensor>(&raw);
            if (!t) self.wrong_raw(raw, "a path, a string path or a [C,H,W] tensor");
            STRATA_CHECK(t->defined() && (t->dim() == 2 || t->dim() == 3), self.name, "got a tensor ",
                         describe_raw(raw), ", expected an image [C,H,W] or [H,W]");
            STRATA_CHECK(t->dtype() == DType::u8 || t->is_floating_point(), self.name, "got a tensor of dtype ",
                         t->dtype(), ", expected u8 pixels (or floating ones)");
            const Tensor x = t->dim() == 2 ? t->unsqueeze(0) : *t;
            STRATA_CHECK(c == 0 || x.size(0) == c, self.name, "got a tensor of shape ", x.shape(), " with ", x.size(0),
                         " channels, expected ", c, " channels (set ImageBlock({.channels = ", x.size(0), "}))");
            return Image{x};
          },
          .batch_tfms = {make_transform(IntToFloat{})}};
}

struct MaskBlockOptions {
  std::vector<std::string> codes = {};  // name of each class code (optional; when given, codes are checked)
};

/// Segmentation masks from image files (one channel) or integer [H,W] tensors, as i64 codes.
inline TransformBlock MaskBlock(MaskBlockOptions o = {}) {
  TransformBlock b{.name = "MaskBlock",
                   .kind = ItemKind::mask,
                   .create = [](const Raw& raw, const TransformBlock& self) -> Item {
                     Tensor m;
                     std::filesystem::path tmp;
                     if (const auto* p = detail::raw_path(raw, tmp)) {
                       m = read_image(p->string(), 1).select(0, 0);
                     } else if (const auto* t = std::get_if<Tensor>(&raw)) {
                       STRATA_CHECK(t->defined() && (t->dim() == 2 || (t->dim() == 3 && t->size(0) == 1)), self.name,
                                    "got a tensor ", describe_raw(raw), ", expected a mask [H,W] or [1,H,W]");
                       STRATA_CHECK(!t->is_floating_point() && t->dtype() != DType::b8, self.name,
                                    "got a tensor of dtype ", t->dtype(), ", expected integer class codes");
                       m = t->dim() == 3 ? t->select(0, 0) : *t;
                     } else {
                       self.wrong_raw(raw, "a path, a string path or an integer [H,W] tensor");
                     }
                     m = m.dtype() == DType::i64 ? m : m.to(DType::i64);
                     if (!self.vocab.empty() && m.numel() > 0) {
                       const auto lo = m.min().item<int64_t>(), hi = m.max().item<int64_t>();
                       STRATA_CHECK(lo >= 0 && hi < int64_t(self.vocab.size()), self.name, "got codes in [", lo, ", ",
                                    hi, "] in ", describe_raw(raw), ", expected codes in [0, ", self.vocab.size(),
                                    ") (one per name in codes)");
                     }
                     return Mask{m};
                   },
                   .vocab = std::move(o.codes)};
  b.vocab_given = !b.vocab.empty();
  b.index_vocab();
  return b;
}

struct CategoryBlockOptions {
  std::vector<std::string> vocab = {};  // empty: the sorted unique training labels
};

/// Single-label classification targets (fastai's Categorize): label -> index into the vocab.
inline TransformBlock CategoryBlock(CategoryBlockOptions o = {}) {
  TransformBlock b{.name = "CategoryBlock",
                   .kind = ItemKind::category,
                   .create = [](const Raw& raw, const TransformBlock& self) -> Item {
                     int64_t idx = 0;
                     if (const auto* s = std::get_if<std::string>(&raw)) {
                       idx = self.index_of(*s);
                     } else if (const auto* i = std::get_if<int64_t>(&raw)) {
                       if (self.vocab_given) {
                         STRATA_CHECK(*i >= 0 && *i < int64_t(self.vocab.size()), self.name, "got index ", *i,
                                      ", expected an index into the given vocab of ", self.vocab.size(), " labels");
                         idx = *i;
                       } else {
                         idx = self.index_of(std::to_string(*i));
                       }
                     } else {
                       self.wrong_raw(raw, "a string label or an int64");
                     }
                     return Category{scalar_tensor(double(idx), {.dtype = DType::i64})};
                   },
                   .learn_vocab = detail::learn_category_vocab,
                   .vocab = std::move(o.vocab)};
  b.vocab_given = !b.vocab.empty();
  if (b.vocab_given) b.index_vocab();
  return b;
}

struct MultiCategoryBlockOptions {
  std::vector<std::string> vocab = {};  // empty: the sorted union of the training labels
};

/// Multi-label targets: a list of labels -> one-hot f32 [C] over the vocab (fastai's
/// MultiCategorize + OneHotEncode); a vector<double> or tensor of C values is taken as one-hot already.
inline TransformBlock MultiCategoryBlock(MultiCategoryBlockOptions o = {}) {
  TransformBlock b{
      .name = "MultiCategoryBlock",
      .kind = ItemKind::multi_category,
      .create = [](const Raw& raw, const TransformBlock& self) -> Item {
        const auto C = int64_t(self.vocab.size());
        if (const auto* labels = std::get_if<std::vector<std::string>>(&raw)) {
          std::vector<float> hot(size_t(C), 0.0f);
          for (const std::string& l : *labels) hot[size_t(self.index_of(l))] = 1.0f;
          return MultiCategory{from_vector(hot, {C})};
        }
        Tensor t;
        if (const auto* v = std::get_if<std::vector<double>>(&raw)) t = from_vector(*v, {int64_t(v->size())});
        else if (const auto* x = std::get_if<Tensor>(&raw)) t = *x;
        else self.wrong_raw(raw, "a vector<string> of labels (or a one-hot vector<double> / tensor)");
        STRATA_CHECK(t.defined() && t.dim() == 1 && t.size(0) == C && C > 0, self.name, "got one-hot targets ",
                     describe_raw(raw), ", expected ", C, " values (one per label of the vocab; give the vocab ",
                     "to MultiCategoryBlock for encoded targets)");
        return MultiCategory{t.to(DType::f32)};
      },
      .learn_vocab = [](const std::vector<Raw>& raws, const TransformBlock& self) {
        std::vector<std::string> v;
        for (const Raw& r : raws) {
          const auto* labels = std::get_if<std::vector<std::string>>(&r);
          if (!labels) self.wrong_raw(r, "a vector<string> of labels (encoded targets need a given vocab)");
          v.insert(v.end(), labels->begin(), labels->end());
        }
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
        return v;
      },
      .vocab = std::move(o.vocab)};
  b.vocab_given = !b.vocab.empty();
  if (b.vocab_given) b.index_vocab();
  return b;
}

/// Continuous targets as f32: a number -> [], a list or tensor of K numbers -> [K] (any shape kept).
inline TransformBlock RegressionBlock() {
  return {.name = "RegressionBlock",
          .kind = ItemKind::regression,
          .create = [](const Raw& raw, const TransformBlock& self) -> Item {
            if (const auto* d = std::get_if<double>(&raw)) return Regression{scalar_tensor(*d)};
            if (const auto* i = std::get_if<int64_t>(&raw)) return Regression{scalar_tensor(double(*i))};
            if (const auto* v = std::get_if<std::vector<double>>(&raw))
              return Regression{from_vector(*v, {int64_t(v->size())}, {.dtype = DType::f32})};
            const auto* t = std::get_if<Tensor>(&raw);
            if (!t || !t->defined()) self.wrong_raw(raw, "a double, an int64, a vector<double> or a tensor");
            return Regression{t->dtype() == DType::f32 ? *t : t->to(DType::f32)};
          }};
}

/// Keypoints (x, y) in pixels of the tuple's image: a [N,2] tensor or x0,y0,x1,y1,... -> f32 [N,2].
inline TransformBlock PointBlock() {
  return {.name = "PointBlock",
          .kind = ItemKind::points,
          .create = [](const Raw& raw, const TransformBlock& self) -> Item {
            if (const auto* v = std::get_if<std::vector<double>>(&raw)) {
              STRATA_CHECK(v->size() % 2 == 0, self.name, "got ", v->size(),
                           " coordinates, expected an even count (x, y pairs)");
              return Points{from_vector(*v, {int64_t(v->size() / 2), 2}, {.dtype = DType::f32})};
            }
            const auto* t = std::get_if<Tensor>(&raw);
            if (!t) self.wrong_raw(raw, "a [N,2] tensor or a vector<double> of x, y pairs");
            STRATA_CHECK(t->defined() && t->dim() == 2 && t->size(1) == 2, self.name, "got a tensor ",
                         describe_raw(raw), ", expected points [N, 2]");
            return Points{t->dtype() == DType::f32 ? *t : t->to(DType::f32)};
          }};
}

}  // namespace strata
