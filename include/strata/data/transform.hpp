// Typed, reversible transforms and the Pipeline that composes them (fastai's Transform and Pipeline).
//
// A transform is a plain struct whose `encodes` / `decodes` are overloaded per item type; C++
// overload resolution is the type dispatch. An item whose type has no overload passes through
// unchanged, so one Flip can act on the Image and the Mask of a tuple and leave its Category alone:
//
//   struct FlipLR {
//     static constexpr const char* name = "FlipLR";
//     static constexpr Split split = Split::train;   // train-only (fastai's split_idx = 0)
//     int order = 0;                                 // Pipeline runs transforms by ascending order
//     double p = 0.5;
//     bool flip = false;                             // drawn once per tuple, used for every item
//     void before_call(const Tuple&, TfmContext& ctx) { flip = ctx.rng.bernoulli(p); }
//     Image encodes(const Image& x) const { return flip ? Image{x.data.flip(-1)} : x; }
//     Mask encodes(const Mask& x) const { return flip ? Mask{x.data.flip(-1)} : x; }
//   };
//   Pipeline pipe({make_transform(FlipLR{}), make_transform(IntToFloat{})});
//   Tuple out = pipe(Tuple{Image{img}, Category{label}}, ctx);
//   Tuple back = pipe.decode(out);                   // decodes in reverse order
//
// What a transform struct T may define (all optional but at least one encodes):
//   encodes(const X&) const -> X' for any item types X  (X' is any item type, usually X)
//   decodes(const X&) const -> X'                       (the inverse, where one exists)
//   void setups(const std::vector<Tuple>& items)        learns state (a vocab, statistics) from the
//                                                       training items as the previous transforms left them
//   void before_call(const Tuple& t, TfmContext& ctx)   draws this call's random parameters once per
//                                                       tuple (or batch); runs on a copy of T, so the
//                                                       shared transform is never written by workers
//   name, order, split                                  members or static members read at make_transform
// Random numbers come only from ctx.rng, a Philox stream fixed by (seed, epoch, batch, item): the
// DataLoader gives the same augmentations for the same seed, whatever its number of workers.
// References: fastai.core.transform (Transform, Pipeline, split_idx, order, setups, decode).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "strata/core/random.hpp"
#include "strata/data/items.hpp"

namespace strata {

/// Which data a transform runs on (fastai's split_idx: None, 0, 1).
enum class Split { both, train, valid };

/// Random numbers for one tuple or batch: Philox with key = seed and counter = (draw, item, batch,
/// epoch), so every (seed, epoch, batch, item) has its own reproducible stream.
class TfmRng {
 public:
  static constexpr uint32_t kBatchItem = 0xffffffffu;  // `item` of a batch-level stream
  TfmRng(uint64_t seed = 0, uint64_t epoch = 0, uint64_t batch = 0, uint32_t item = kBatchItem)
      : key_{uint32_t(seed), uint32_t(seed >> 32)}, item_(item), batch_(uint32_t(batch)), epoch_(uint32_t(epoch)) {}

  /// Uniform in [lo, hi).
  double uniform(double lo = 0.0, double hi = 1.0) {
    const uint32_t a = next(), b = next();
    return lo + (hi - lo) * uints_to_unit_double(a, b);
  }
  /// Normal(mean, std) by Box-Muller.
  double normal(double mean = 0.0, double std = 1.0) {
    const double u1 = 1.0 - uniform(), u2 = uniform();  // u1 in (0, 1]
    return mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  /// Uniform integer in [lo, hi); requires lo < hi.
  int64_t randint(int64_t lo, int64_t hi) {
    STRATA_CHECK(lo < hi, "TfmRng::randint", "got [", lo, ", ", hi, "), expected lo < hi");
    const uint64_t r = uint64_t(next()) << 32 | next();
    return lo + int64_t((unsigned __int128)r * uint64_t(hi - lo) >> 64);
  }
  /// True with probability p.
  bool bernoulli(double p) { return uniform() < p; }
  /// Beta(a, b) from two gammas (Marsaglia-Tsang), for MixUp-style transforms.
  double beta(double a, double b) {
    const double x = gamma(a), y = gamma(b);
    return x / (x + y);
  }

 private:
  uint32_t next() {
    if (used_ == 4) {
      words_ = philox4x32({draw_++, item_, batch_, epoch_}, key_);
      used_ = 0;
    }
    return words_[size_t(used_++)];
  }
  double gamma(double a) {
    if (a < 1.0) return gamma(a + 1.0) * std::pow(uniform() + 1e-300, 1.0 / a);
    const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do {
        x = normal();
        v = 1.0 + c * x;
      } while (v <= 0.0);
      v = v * v * v;
      const double u = uniform();
      if (u < 1.0 - 0.0331 * x * x * x * x || std::log(u + 1e-300) < 0.5 * x * x + d * (1.0 - v + std::log(v)))
        return d * v;
    }
  }

  std::array<uint32_t, 2> key_;
  uint32_t item_, batch_, epoch_;
  uint32_t draw_ = 0;
  std::array<uint32_t, 4> words_{};
  int used_ = 4;
};

/// What a transform call knows besides its input: which split it runs on, and its random stream.
struct TfmContext {
  bool train = true;  // processing training data (false: validation / test / inference)
  TfmRng rng = {};
};

/// The runtime face of a transform: what Pipeline, DataBlock and the loaders hold.
class Transform {
 public:
  virtual ~Transform() = default;
  std::string name = "Transform";
  int order = 0;
  Split split = Split::both;

  /// Whether this transform runs on data of the given split.
  bool applies(bool train) const { return split == Split::both || (split == Split::train) == train; }
  /// Learns state from items (as the transforms before it in the pipeline left them).
  virtual void setups(const std::vector<Tuple>& items) { (void)items; }
  /// Encodes every item of t in place (types it does not handle pass through).
  virtual void encode(Tuple& t, TfmContext& ctx) const = 0;
  /// Decodes every item of t in place (types without a decodes pass through).
  virtual void decode(Tuple& t) const = 0;
};

namespace detail {
template <class T, class X>
concept HasEncodes = requires(const T& t, const X& x) { t.encodes(x); };
template <class T, class X>
concept HasDecodes = requires(const T& t, const X& x) { t.decodes(x); };
// t.encodes(x) / t.decodes(x) behind a call that depends on x: inside the generic lambdas below,
// nvcc's front end (EDG) looks up a member of the known type T at once, so `t.decodes(x)` written
// there fails for a T without decodes even in the discarded branch of `if constexpr`
template <class T, class X>
auto call_encodes(const T& t, const X& x) { return t.encodes(x); }
template <class T, class X>
auto call_decodes(const T& t, const X& x) { return t.decodes(x); }
}  // namespace detail

/// A Transform made from a struct T with overloaded encodes/decodes (see the top of this file).
template <class T>
class TypedTransform final : public Transform {
 public:
  explicit TypedTransform(T t) : t_(std::move(t)) {
    if constexpr (requires(const T& x) { std::string(x.name); }) name = std::string(t_.name);
    if constexpr (requires(const T& x) { int(x.order); }) order = int(t_.order);
    if constexpr (requires(const T& x) { Split(x.split); }) split = Split(t_.split);
  }

  void setups(const std::vector<Tuple>& items) override {
    if constexpr (requires(T& x) { x.setups(items); }) t_.setups(items);
  }
  void encode(Tuple& t, TfmContext& ctx) const override {
    if constexpr (requires(T& x) { x.before_call(t, ctx); }) {
      T local = t_;  // this call's random parameters live in a copy: workers share t_
      local.before_call(t, ctx);
      for (Item& it : t) it = encode_one(local, it);
    } else {
      for (Item& it : t) it = encode_one(t_, it);
    }
  }
  void decode(Tuple& t) const override {
    for (Item& it : t) it = decode_one(t_, it);
  }

  /// The struct itself (to read its learned state, e.g. a vocab).
  T& impl() { return t_; }
  const T& impl() const { return t_; }

 private:
  static Item encode_one(const T& t, const Item& it) {
    return std::visit([&](const auto& x) -> Item {
      if constexpr (detail::HasEncodes<T, std::decay_t<decltype(x)>>) return detail::call_encodes(t, x);
      else return x;
    }, it);
  }
  static Item decode_one(const T& t, const Item& it) {
    return std::visit([&](const auto& x) -> Item {
      if constexpr (detail::HasDecodes<T, std::decay_t<decltype(x)>>) return detail::call_decodes(t, x);
      else return x;
    }, it);
  }
  T t_;
};

/// Wraps a transform struct for a Pipeline.
template <class T>
std::shared_ptr<TypedTransform<T>> make_transform(T t) {
  return std::make_shared<TypedTransform<T>>(std::move(t));
}

/// Transforms run in ascending `order` (stable), decoded in reverse.
class Pipeline {
 public:
  Pipeline() = default;
  Pipeline(std::vector<std::shared_ptr<Transform>> tfms) : tfms_(std::move(tfms)) { sort(); }

  /// Adds transforms and re-sorts by order.
  void add(std::shared_ptr<Transform> t) {
    STRATA_CHECK(t != nullptr, "Pipeline::add", "got a null transform, expected one from make_transform");
    tfms_.push_back(std::move(t));
    sort();
  }
  void add(const Pipeline& other) {
    for (const auto& t : other.tfms_) tfms_.push_back(t);
    sort();
  }

  /// fastai's Pipeline.setup: each transform's setups sees the items as the transforms before it
  /// left them (encoded as training data, with a fixed random stream).
  void setup(std::vector<Tuple> items) {
    for (size_t k = 0; k < tfms_.size(); ++k) {
      tfms_[k]->setups(items);
      if (k + 1 == tfms_.size()) break;
      for (size_t i = 0; i < items.size(); ++i) {
        TfmContext ctx{.train = true, .rng = TfmRng(0, 0, 0, uint32_t(i))};
        if (tfms_[k]->applies(true)) tfms_[k]->encode(items[i], ctx);
      }
    }
  }

  /// Encodes t through every transform that applies to ctx.train, in order.
  Tuple operator()(Tuple t, TfmContext& ctx) const {
    for (const auto& tf : tfms_)
      if (tf->applies(ctx.train)) tf->encode(t, ctx);
    return t;
  }
  /// Decodes t through every transform, last first.
  Tuple decode(Tuple t) const {
    for (auto it = tfms_.rbegin(); it != tfms_.rend(); ++it) (*it)->decode(t);
    return t;
  }

  const std::vector<std::shared_ptr<Transform>>& transforms() const { return tfms_; }
  bool empty() const { return tfms_.empty(); }
  size_t size() const { return tfms_.size(); }
  /// "Pipeline: A -> B -> C".
  std::string repr() const {
    std::string s = "Pipeline:";
    for (size_t k = 0; k < tfms_.size(); ++k) s += (k ? " -> " : " ") + tfms_[k]->name;
    return s;
  }

 private:
  void sort() {
    std::stable_sort(tfms_.begin(), tfms_.end(), [](const auto& a, const auto& b) { return a->order < b->order; });
  }
  std::vector<std::shared_ptr<Transform>> tfms_;
};

}  // namespace strata
