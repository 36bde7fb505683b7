// The cuda path of the batch augmentations (data/augment.hpp): grid_sample (AffineAug: flips,
// dihedral turns, rotation, zoom, warp, random resized and padded crops, in one resampling),
// lighting (brightness and contrast) and random_erase, on cuda tensors.
//
// Fills data/augment.hpp's hooks (cuda_grid_sample_hook, cuda_lighting_hook,
// cuda_random_erase_hook) with launchers of kernels/cuda/augment.cuh. The transforms draw their
// per-image parameters on the host exactly as on the CPU (the same TfmRng streams); here those
// few numbers (the 3x3 matrices, the brightness/contrast pairs, the rectangles) go to device
// memory in one small tensor per call and the kernels run on the batch where it lies. So a batch
// augmented on cuda equals the one augmented on the CPU: exactly for pixel-aligned maps, nearest
// sampling and the erased rectangles' noise, within a few ulp for bilinear sampling and lighting.
// Included by <strata/backend/cuda.hpp>.
#pragma once

#include <cstring>
#include <vector>

#include "kernels/cuda/augment.cuh"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/data/augment.hpp"

namespace strata::detail {

/// `n` host doubles in a new f64 tensor on `device` (keep it alive until the launch is queued).
inline Tensor cuda_aug_doubles(const std::vector<double>& v, Device device) {
  Tensor t = Tensor::empty({int64_t(v.size())}, DType::f64, device);
  if (!v.empty()) cuda::memcpy(cuda_ptr<double>(t), v.data(), v.size() * sizeof(double));
  return t;
}

/// cuda_grid_sample_hook's implementation: y = x resampled at mats (data/augment.hpp has checked shapes).
inline void cuda_grid_sample_impl(const Tensor& x, const Tensor& y, const std::vector<double>& mats,
                                  const cpu::GridSampleGeom& g) {
  STRATA_CHECK(x.device() == y.device(), "grid_sample", "got x on ", x.device(), " and y on ", y.device(),
               ", expected one device");
  const cuda::DeviceGuard guard(x.device().index);  // launch on its device
  const Tensor m = cuda_aug_doubles(mats, x.device());
  cuda::dispatch_device(x.dtype(), "grid_sample", [&]<class S>(type_tag<S>) {
    cuda::grid_sample<S>(cuda_ptr<const S>(x), cuda_ptr<S>(y), cuda_ptr<const double>(m), g);
  });
}

/// cuda_lighting_hook's implementation: y [B, N] = lighting of x [B, N], per image add[b], mul[b].
inline void cuda_lighting_impl(const Tensor& x, const Tensor& y, const std::vector<double>& add,
                               const std::vector<double>& mul) {
  STRATA_CHECK(x.device() == y.device(), "lighting", "got x on ", x.device(), " and y on ", y.device(),
               ", expected one device");
  const cuda::DeviceGuard guard(x.device().index);
  std::vector<double> both(add);
  both.insert(both.end(), mul.begin(), mul.end());
  const Tensor p = cuda_aug_doubles(both, x.device());
  const int64_t B = x.size(0), N = B ? x.numel() / B : 0;
  cuda::dispatch_device_floating(x.dtype(), "lighting", [&]<class S>(type_tag<S>) {
    cuda::lighting<S>(cuda_ptr<const S>(x), cuda_ptr<S>(y), B, N, cuda_ptr<const double>(p),
                      cuda_ptr<const double>(p) + add.size());
  });
}

/// cuda_random_erase_hook's implementation: the rectangles of y [B, C, H, W] filled with noise, in place.
inline void cuda_random_erase_impl(const Tensor& y, const std::vector<cpu::EraseRect>& rects,
                                   std::array<uint32_t, 2> key) {
  static_assert(sizeof(cpu::EraseRect) == 5 * sizeof(int64_t), "random_erase: a rectangle is 5 i64 on the device");
  if (rects.empty()) return;
  const cuda::DeviceGuard guard(y.device().index);
  Tensor r = Tensor::empty({int64_t(5 * rects.size())}, DType::i64, y.device());
  cuda::memcpy(cuda_ptr<int64_t>(r), rects.data(), rects.size() * sizeof(cpu::EraseRect));
  bool grouped = true;  // each image's rectangles adjacent (RandomErasing makes them so)
  for (size_t k = 1; k < rects.size(); ++k) grouped = grouped && rects[k].image >= rects[k - 1].image;
  cuda::dispatch_device_floating(y.dtype(), "random_erase", [&]<class S>(type_tag<S>) {
    cuda::random_erase<S>(cuda_ptr<S>(y), y.size(0), y.size(1), y.size(2), y.size(3),
                          reinterpret_cast<const cpu::EraseRect*>(cuda_ptr<const int64_t>(r)),
                          int64_t(rects.size()), grouped, key);
  });
}

inline const bool cuda_augment_registered = [] {
  cuda_grid_sample_hook.fn = &cuda_grid_sample_impl;
  cuda_lighting_hook.fn = &cuda_lighting_impl;
  cuda_random_erase_hook.fn = &cuda_random_erase_impl;
  return true;
}();

}  // namespace strata::detail
