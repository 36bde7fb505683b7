// Batch transforms for images: IntToFloat (u8 -> float / 255) and Normalize (per-channel mean/std).
//
// Both are reversible, as fastai's are: decode(encode(x)) gives x back (up to rounding), so a
// normalized batch or a prediction can be shown as a picture again.
//   IntToFloat:  encode(x) = float(x) / div            decode(y) = round(y * div) as u8 (clamped)
//   Normalize:   encode(x) = (x - mean) / std          decode(y) = y * std + mean
// mean and std are [1, C, 1, 1] float32 tensors; they broadcast over [B, C, H, W] batches and are
// viewed as [C, 1, 1] for a single [C, H, W] image. C = 1 applies one mean/std to every channel.
// as_transform() gives the after_batch form, which changes xb[0] (the image input) only.
// References: fastai.data.transforms.Normalize and IntToFloatTensor.
#pragma once

#include <vector>

#include "strata/data/dataloader.hpp"

namespace strata {

/// u8 (or other integer) images to floats in [0, 1]: x / div.
struct IntToFloat {
  double div = 255.0;
  DType dtype = DType::f32;

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
  Tensor mean, std;  // [1, C, 1, 1] float32

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
    return {mean.reshape(s).to(x.dtype()), std.reshape(s).to(x.dtype())};
  }
};

}  // namespace strata
