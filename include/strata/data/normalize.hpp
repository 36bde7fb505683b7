// Batch transforms for images: IntToFloat (u8 -> float / 255) and Normalize (per-channel mean/std).
//
// Both are reversible, as fastai's are: decode(encode(x)) gives x back (up to rounding), so a
// normalized batch or a prediction can be shown as a picture again.
//   IntToFloat:  encode(x) = float(x) / div            decode(y) = round(y * div) as u8 (clamped)
//   Normalize:   encode(x) = (x - mean) / std          decode(y) = y * std + mean
// mean and std are [1, C, 1, 1] float32 tensors; they broadcast over [B, C, H, W] batches and are
// viewed as [C, 1, 1] for a single [C, H, W] image. They stay on the cpu; a cuda batch (or image)
// gets a copy of them on its device, so both transforms run where the batch is. C = 1 applies one mean/std to every channel.
// as_transform() gives the after_batch form, which changes xb[0] (the image input) only.
// In a Pipeline (data/transform.hpp) both are typed transforms: Image encodes/decodes, every other
// item type (Mask, Category, ...) passes through; orders as fastai's (IntToFloatTensor 10,
// Normalize 99). A Normalize made without statistics learns them in setups, per channel over the
// Images it is shown (fastai's Normalize.setups on a batch). imagenet_stats, cifar_stats and
// mnist_stats are fastai's constants: Normalize::from_stats(imagenet_stats).
// References: fastai.data.transforms.Normalize and IntToFloatTensor.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "strata/data/dataloader.hpp"
#include "strata/data/transform.hpp"

namespace strata {

/// Per-channel mean and std of a dataset's images (in [0, 1]).
struct ChannelStats {
  std::vector<double> mean, std;
};
inline const ChannelStats imagenet_stats{{0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}};
inline const ChannelStats cifar_stats{{0.491, 0.482, 0.447}, {0.247, 0.243, 0.261}};
inline const ChannelStats mnist_stats{{0.131}, {0.308}};

/// u8 (or other integer) images to floats in [0, 1]: x / div.
struct IntToFloat {
  static constexpr const char* name = "IntToFloat";
  static constexpr int order = 10;
  double div = 255.0;
  DType dtype = DType::f32;

  /// Typed form: Images only (already floating ones pass unchanged).
  Image encodes(const Image& x) const { return Image{encode(x.data)}; }
  /// Back to u8 pixels; an integer Image (never encoded) passes unchanged.
  Image decodes(const Image& x) const { return x.data.is_floating_point() ? Image{decode(x.data)} : x; }

  Tensor encode(const Tensor& x) const {
    STRATA_CHECK(dtype == DType::f32 || dtype == DType::f64 || dtype == DType::f16 || dtype == DType::bf16,
                 "IntToFloat", "got target dtype ", dtype, ", expected a floating dtype");
    if (x.is_floating_point()) return x;  // already converted
    return (x.to(DType::f32) / div).to(dtype);
  }
  /// Back to u8 pixels: round(y * div), clamped to [0, 255].
  Tensor decode(const Tensor& y) const {
    STRATA_CHECK(y.is_floating_point(), "IntToFloat::decode", "got dtype ", y.dtype(), ", expected a floating dtype");
    const Tensor v = (y.to(DType::f32) * div).clamp(0.0, 255.0);
    return (v + 0.5).to(DType::u8);  // truncating v + 0.5 rounds (v >= 0)
  }
  BatchTransform as_transform() const {
    return [t = *this](Batch& b) {
      if (!b.xb.empty()) b.xb[0] = t.encode(b.xb[0]);
    };
  }
};

/// Per-channel normalization with fixed statistics.
struct Normalize {
  static constexpr const char* name = "Normalize";
  static constexpr int order = 99;
  Tensor mean, std;  // [1, C, 1, 1] float32

  /// Typed form: Images only.
  Image encodes(const Image& x) const { return Image{encode(x.data)}; }
  Image decodes(const Image& x) const { return Image{decode(x.data)}; }

  /// Without statistics: learns per-channel mean and std (population) from the Images of items.
  void setups(const std::vector<Tuple>& items) {
    if (mean.defined()) return;
    std::vector<double> s, s2;
    double n = 0;
    for (const Tuple& t : items)
      for (const Item& it : t) {
        if (kind_of(it) != ItemKind::image) continue;
        const Tensor& x = data_of(it);
        STRATA_CHECK(x.dim() == 3 || x.dim() == 4, "Normalize::setups", "got an Image of shape ", x.shape(),
                     ", expected [B, C, H, W] or [C, H, W]");
        STRATA_CHECK(x.is_floating_point(), "Normalize::setups", "got dtype ", x.dtype(),
                     ", expected a floating dtype (IntToFloat first)");
        const Tensor x4 = (x.dim() == 3 ? x.unsqueeze(0) : x).to(DType::f64).contiguous();
        const int64_t B = x4.size(0), C = x4.size(1), HW = x4.size(2) * x4.size(3);
        if (s.empty()) s.assign(size_t(C), 0.0), s2.assign(size_t(C), 0.0);
        STRATA_CHECK(int64_t(s.size()) == C, "Normalize::setups", "got Images with ", C, " and ", s.size(),
                     " channels, expected one channel count");
        const double* p = x4.data_ptr<double>();
        for (int64_t b = 0; b < B; ++b)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < HW; ++i) {
              const double v = p[(b * C + c) * HW + i];
              s[size_t(c)] += v, s2[size_t(c)] += v * v;
            }
        n += double(B * HW);
      }
    STRATA_CHECK(n > 0, "Normalize::setups", "got no Image pixels, expected items with Images to learn statistics");
    std::vector<double> m(s.size()), sd(s.size());
    for (size_t c = 0; c < s.size(); ++c) {
      m[c] = s[c] / n;
      sd[c] = std::sqrt(std::max(s2[c] / n - m[c] * m[c], 0.0)) + 1e-7;
    }
    *this = from_stats(m, sd);
  }

  static Normalize from_stats(const ChannelStats& st) { return from_stats(st.mean, st.std); }

  /// From per-channel statistics (one value each, or C values).
  static Normalize from_stats(std::vector<double> mean, std::vector<double> std) {
    STRATA_CHECK(!mean.empty() && mean.size() == std.size(), "Normalize", "got ", mean.size(), " means and ",
                 std.size(), " stds, expected the same nonzero count (one per channel)");
    for (double s : std)
      STRATA_CHECK(s > 0, "Normalize", "got std ", s, ", expected every std > 0");
    const auto C = int64_t(mean.size());
    return {.mean = from_vector(mean, {1, C, 1, 1}, {.dtype = DType::f32}),
            .std = from_vector(std, {1, C, 1, 1}, {.dtype = DType::f32})};
  }

  /// (x - mean) / std; x is [B, C, H, W] or [C, H, W] and floating (use IntToFloat first).
  Tensor encode(const Tensor& x) const {
    auto [m, s] = stats_for(x, "Normalize::encode");
    return (x - m) / s;
  }
  /// y * std + mean.
  Tensor decode(const Tensor& y) const {
    auto [m, s] = stats_for(y, "Normalize::decode");
    return y * s + m;
  }
  BatchTransform as_transform() const {
    return [t = *this](Batch& b) {
      if (!b.xb.empty()) b.xb[0] = t.encode(b.xb[0]);
    };
  }

 private:
  /// mean and std in x's dtype, shaped to broadcast over x's channel dim.
  std::pair<Tensor, Tensor> stats_for(const Tensor& x, const char* op) const {
    STRATA_CHECK(mean.defined() && std.defined(), op, "got an empty Normalize, expected one from from_stats");
    STRATA_CHECK(x.is_floating_point(), op, "got dtype ", x.dtype(),
                 ", expected a floating dtype (convert integer images with IntToFloat first)");
    const int64_t C = mean.numel();
    STRATA_CHECK(x.dim() == 3 || x.dim() == 4, op, "got shape ", x.shape(), ", expected [B, C, H, W] or [C, H, W]");
    STRATA_CHECK(C == 1 || x.size(-3) == C, op, "got shape ", x.shape(), " with ", x.size(-3),
                 " channels, expected ", C, " channels like the statistics");
    const Shape s = x.dim() == 4 ? Shape{1, C, 1, 1} : Shape{C, 1, 1};
    // on x's device (a cuda batch: the few statistics are copied over, the batch stays there)
    return {strata::to(mean.reshape(s).to(x.dtype()), x.device()), strata::to(std.reshape(s).to(x.dtype()), x.device())};
  }
};

}  // namespace strata
