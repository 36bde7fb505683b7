// Batch augmentation (fastai's vision/augment.py batch transforms): flips, dihedral turns, rotation,
// zoom (with its random centre, the translation), perspective warp, random crop with padding,
// brightness, contrast, random erasing, and aug_transforms() with fastai's defaults. They run on the
// collated float batch (after IntToFloat), per image parameters drawn from the batch's stream. On a
// cuda batch (DataLoaderOptions.device, fastai's dls.device) the parameters are drawn on the host
// the same way and the resampling, lighting and erasing run on the device (backend/cuda/augment.hpp,
// kernels/cuda/augment.cuh, through the hooks below): the same batch as on the CPU.
//
//   Pipeline batch_tfms(aug_transforms({.max_rotate = 15, .size_h = 128, .size_w = 128}));
//   TfmContext ctx{.train = true, .rng = TfmRng(ctx.seed, ctx.epoch, ctx.batch)};  // batch-level stream
//   Tuple out = batch_tfms(Tuple{Image{xb}, Mask{mb}, Category{yb}}, ctx);
//
// fastai's positional spellings work too: Flip(0.5), Rotate(10, 0.75), Zoom(1, 1.2), Warp(0.2),
// Brightness(0.2), Contrast(0.2), RandomErasing(0.5). The CIFAR / DAWNBench crop with padding:
//   RandomCropPad({.padding = 4, .pad_mode = PadMode::reflection})              // alone (nearest, exact)
//   AffineAug({FlipOptions{.p = 0.5}, RandomCropPadOptions{.padding = 4}}, {.pad_mode = PadMode::reflection})
//                                                                    // flip + crop in one exact resampling
//
// Geometry: every affine part is a 3x3 matrix per image in normalized coordinates ([-1, 1] spans
// the image, align_corners = true as in fastai), mapping output positions to input positions
// (F.affine_grid's theta with a 0 0 1 row). AffineAug multiplies its parts in order (fastai's
// AffineCoordTfm: aff_m = aff_m @ m), then puts the perspective warps in front (fastai applies
// the warp to the affine grid's coordinates: sample = Warp(A (u, v, 1))), and resamples once with
// cpu::grid_sample: Image bilinear, Mask nearest (same pad mode), Points and BBoxes mapped by the
// inverse matrix. Flip, Dihedral, Rotate, Zoom and Warp alone are an AffineAug of one part.
// Points/BBoxes are in pixels with pixel i spanning [i, i + 1) (show.hpp's convention): x maps to
// u = 2 (x - 0.5) / (W - 1) - 1 (align_corners; 2 x / W - 1 without), so a point on a pixel's centre
// follows that pixel's content exactly. BBoxes become the box around their four mapped corners.
// Parts, as fastai draws them per image (p: the chance an image gets a non-neutral value):
//   Flip      [[-1 0 0] [0 1 0]] with probability p (else identity)
//   Dihedral  one of the 8 symmetries of the square, k = randint(0, 8) with probability p (else 0)
//   Rotate    theta ~ U(-max_deg, max_deg) degrees with probability p: [[cos sin 0] [-sin cos 0]]
//   Zoom      z ~ U(min_zoom, max_zoom) w.p. p, s = 1 / z, centre c ~ U(0, 1)^2: [[s 0 (1-s)(2cx-1)] [0 s (1-s)(2cy-1)]]
//   Warp      dx, dy ~ U(-magnitude, magnitude) each w.p. p: the homography that takes the corners
//             (-1-dy, -1-dx) (-1+dy, 1+dx) (1+dy, -1+dx) (1-dy, 1-dx) to (-1,-1) (-1,1) (1,-1) (1,1)
//             (fastai's _WarpCoord: find_coeffs(orig_pts, targ_pts))
//   RandomCropPad  top, left ~ randint(0, 2 padding + 1) each: a shift by (left - padding, top -
//             padding) pixels, the crop of the padded image (torchvision's RandomCrop(padding))
//   RandomResizedCrop  fastai's RandomResizedCropGPU draw (area, ratio, integer top-left), as the
//             map from the output onto the crop; last in aug_transforms' parts, so it acts first
//             on output coordinates, as fastai's separate crop after the affine resampling would
// Lighting (order 40, fastai's LightingTfm): brightness b ~ U(0.5 (1 - m), 0.5 (1 + m)) w.p. p
// (else 0.5), contrast c = e^U(log(1 - m), -log(1 - m)) w.p. p (else 1), y = sigmoid(c (logit(x) +
// logit(b))) for images in [0, 1]. RandomErasing (order 100, after Normalize): each image w.p. p
// gets randint(1, max_count + 1) rectangles of N(0, 1) noise, sized as fastai's _bounds/_slice
// (fastai draws p and the rectangles once for the whole batch; here per image).
// All are train-only (split = train); an AffineAug with an output size also runs on validation
// data, with the identity matrix (a plain resize, as fastai's AffineCoordTfm does).
// References: fastai vision/augment.py (affine_mat, flip_mat, dihedral_mat, rotate_mat, zoom_mat,
// _WarpCoord, find_coeffs, _BrightnessLogit, _ContrastLogit, RandomErasing, aug_transforms).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "kernels/cpu/augment.hpp"
#include "strata/data/transform.hpp"
#include "strata/tensor/creation.hpp"
#include "strata/tensor/detail/cuda_hook.hpp"
#include "strata/tensor/to_device.hpp"

namespace strata {

using PadMode = cpu::PadMode;  // as data/resize.hpp
using SampleMode = cpu::SampleMode;

/// A 3x3 matrix, row-major, in normalized coordinates: output (u, v, 1) -> input (x, y, w).
using Mat3 = std::array<double, 9>;

inline Mat3 mat3_identity() { return {1, 0, 0, 0, 1, 0, 0, 0, 1}; }
/// [[a b c] [d e f] [0 0 1]]: fastai's affine_mat.
inline Mat3 affine_mat(double a, double b, double c, double d, double e, double f) { return {a, b, c, d, e, f, 0, 0, 1}; }
inline Mat3 mat3_mul(const Mat3& a, const Mat3& b) {
  Mat3 r{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) r[size_t(3 * i + j)] += a[size_t(3 * i + k)] * b[size_t(3 * k + j)];
  return r;
}
/// The inverse by the adjugate; throws on a singular matrix.
inline Mat3 mat3_inverse(const Mat3& m) {
  const Mat3 adj = {m[4] * m[8] - m[5] * m[7], m[2] * m[7] - m[1] * m[8], m[1] * m[5] - m[2] * m[4],
                    m[5] * m[6] - m[3] * m[8], m[0] * m[8] - m[2] * m[6], m[2] * m[3] - m[0] * m[5],
                    m[3] * m[7] - m[4] * m[6], m[1] * m[6] - m[0] * m[7], m[0] * m[4] - m[1] * m[3]};
  const double det = m[0] * adj[0] + m[1] * adj[3] + m[2] * adj[6];
  STRATA_CHECK(std::fabs(det) > 1e-12, "mat3_inverse", "got a matrix with determinant ", det,
               ", expected an invertible one");
  Mat3 r;
  for (size_t i = 0; i < 9; ++i) r[i] = adj[i] / det;
  return r;
}

namespace detail {
// The cuda paths (backend/cuda/augment.hpp fills them): y [B, C, OH, OW] of x [B, C, H, W] (both
// contiguous, on one cuda device) at the host's matrices [B * 9]; lighting of x [B, N] into y; the
// rectangles erased in y [B, C, H, W] in place.
inline CudaHook<void(const Tensor& x, const Tensor& y, const std::vector<double>& mats, const cpu::GridSampleGeom& g)>
    cuda_grid_sample_hook{"grid_sample"};
inline CudaHook<void(const Tensor& x, const Tensor& y, const std::vector<double>& add, const std::vector<double>& mul)>
    cuda_lighting_hook{"lighting"};
inline CudaHook<void(const Tensor& y, const std::vector<cpu::EraseRect>& rects, std::array<uint32_t, 2> key)>
    cuda_random_erase_hook{"random_erase"};
}  // namespace detail

/// Output size and sampling of grid_sample (0 x 0: the input's size).
struct GridSampleOptions {
  int64_t height = 0, width = 0;
  SampleMode mode = SampleMode::bilinear;
  PadMode pad_mode = PadMode::zeros;
  bool align_corners = true;
};

/// x [B, C, H, W] (or [C, H, W]) resampled at mats[b] (one per image, or one for all): PyTorch's
/// F.grid_sample(x, F.affine_grid(theta)) for affine matrices, see kernels/cpu/augment.hpp.
inline Tensor grid_sample(const Tensor& x, const std::vector<Mat3>& mats, const GridSampleOptions& o = {}) {
  STRATA_CHECK(x.dim() == 3 || x.dim() == 4, "grid_sample", "got shape ", x.shape(),
               ", expected [B, C, H, W] or [C, H, W]");
  const Tensor x4 = (x.dim() == 3 ? x.unsqueeze(0) : x).contiguous();
  const int64_t B = x4.size(0);
  STRATA_CHECK(mats.size() == 1 || int64_t(mats.size()) == B, "grid_sample", "got ", mats.size(),
               " matrices for ", B, " images, expected 1 or ", B);
  STRATA_CHECK(o.mode == SampleMode::nearest || x4.is_floating_point(), "grid_sample", "got dtype ", x4.dtype(),
               " for bilinear sampling, expected a floating dtype (IntToFloat first, or nearest)");
  STRATA_CHECK(o.height >= 0 && o.width >= 0, "grid_sample", "got output size ", o.height, "x", o.width,
               ", expected sizes >= 0");
  STRATA_CHECK(x4.size(2) > 0 && x4.size(3) > 0, "grid_sample", "got shape ", x.shape(), ", expected H, W > 0");
  const cpu::GridSampleGeom g{.B = B, .C = x4.size(1), .H = x4.size(2), .W = x4.size(3),
                              .OH = o.height ? o.height : x4.size(2), .OW = o.width ? o.width : x4.size(3),
                              .mode = o.mode, .pad = o.pad_mode, .align_corners = o.align_corners};
  std::vector<double> m(size_t(9 * B));
  for (int64_t b = 0; b < B; ++b) std::copy_n(mats[mats.size() == 1 ? 0 : size_t(b)].begin(), 9, m.begin() + 9 * b);
  Tensor y = empty({g.B, g.C, g.OH, g.OW}, {.dtype = x4.dtype(), .device = x4.device()});
  if (x4.device().is_cuda()) detail::cuda_grid_sample_hook(x4, y, m, g);
  else
    dispatch_all(x4.dtype(), "grid_sample", [&]<class T>(type_tag<T>) {
      cpu::grid_sample_kernel<T>(x4.data_ptr<T>(), y.data_ptr<T>(), m.data(), g);
    });
  return x.dim() == 3 ? y.squeeze(0) : y;
}

/// y = sigmoid(mul[b] * (logit(x) + add[b])) per image b of x [B, ...] (kernels/cpu/augment.hpp).
inline Tensor lighting(const Tensor& x, const std::vector<double>& add, const std::vector<double>& mul) {
  STRATA_CHECK(x.is_floating_point(), "lighting", "got dtype ", x.dtype(), ", expected a floating dtype in [0, 1]");
  STRATA_CHECK(x.dim() >= 1 && int64_t(add.size()) == x.size(0) && mul.size() == add.size(), "lighting", "got ",
               add.size(), " brightness and ", mul.size(), " contrast values for shape ", x.shape(),
               ", expected one per image (dim 0)");
  const Tensor xc = x.contiguous();
  Tensor y = empty_like(xc);
  const int64_t B = x.size(0), N = B ? x.numel() / B : 0;
  if (xc.device().is_cuda()) detail::cuda_lighting_hook(xc, y, add, mul);
  else
    dispatch_float(x.dtype(), "lighting", [&]<class T>(type_tag<T>) {
      cpu::lighting_kernel<T>(xc.data_ptr<T>(), y.data_ptr<T>(), B, N, add.data(), mul.data());
    });
  return y;
}

/// x [B, C, H, W] with every rectangle filled with N(0, 1) noise from (key, rectangle, element).
inline Tensor random_erase(const Tensor& x, const std::vector<cpu::EraseRect>& rects, std::array<uint32_t, 2> key) {
  STRATA_CHECK(x.dim() == 4 && x.is_floating_point(), "random_erase", "got shape ", x.shape(), " dtype ", x.dtype(),
               ", expected a floating [B, C, H, W] batch");
  for (const auto& r : rects)
    STRATA_CHECK(r.image >= 0 && r.image < x.size(0) && 0 <= r.r0 && r.r0 <= r.r1 && r.r1 <= x.size(2) && 0 <= r.c0 &&
                     r.c0 <= r.c1 && r.c1 <= x.size(3),
                 "random_erase", "got rectangle image ", r.image, " rows [", r.r0, ", ", r.r1, ") cols [", r.c0, ", ",
                 r.c1, "), expected one inside shape ", x.shape());
  Tensor y = x.contiguous().clone();
  if (y.device().is_cuda()) detail::cuda_random_erase_hook(y, rects, key);
  else
    dispatch_float(x.dtype(), "random_erase", [&]<class T>(type_tag<T>) {
      cpu::random_erase_kernel<T>(y.data_ptr<T>(), y.size(0), y.size(1), y.size(2), y.size(3), rects.data(),
                                  int64_t(rects.size()), key);
    });
  return y;
}

// ---------------------------------------------------------------- the affine parts

/// How an AffineAug resamples: output size (0: the input's), mode for images, padding.
struct ResampleOptions {
  int64_t size_h = 0, size_w = 0;
  SampleMode mode = SampleMode::bilinear;
  PadMode pad_mode = PadMode::reflection;
  bool align_corners = true;
};
struct FlipOptions { double p = 0.5; ResampleOptions resample = {}; };
struct DihedralOptions { double p = 0.5; ResampleOptions resample = {}; };
struct RotateOptions { double max_deg = 10, p = 0.5; ResampleOptions resample = {}; };
struct ZoomOptions { double min_zoom = 1, max_zoom = 1.1, p = 0.5; ResampleOptions resample = {}; };
struct WarpOptions { double magnitude = 0.2, p = 0.5; ResampleOptions resample = {}; };
/// fastai's RandomResizedCropGPU as an affine part: a crop of min_scale..1 of the area with aspect
/// ratio in [min_ratio, max_ratio] (integer pixels), stretched over the output; on validation data
/// the centre crop of the largest allowed aspect ratio.
struct RandomResizedCropGPUOptions {
  double min_scale = 0.08, min_ratio = 0.75, max_ratio = 4.0 / 3.0;
  ResampleOptions resample = {};
};

/// The CIFAR / DAWNBench crop (torchvision's RandomCrop(size, padding), fastai's CropPad per item)
/// as an affine part: the image padded by `padding` pixels on every side, then the original size
/// cropped at a random integer offset, i.e. a shift by (dx, dy) in [-padding, padding]^2 pixels.
/// Being pixel-aligned it resamples to an exact copy of the padded crop, and merges with Flip into
/// one resampling. What the padding reads is the resampling's pad_mode (RandomCropPad's own:
/// reflection (PyTorch's "reflect" with align_corners; "symmetric" without), zeros, or border).
struct RandomCropPadOptions {
  int64_t padding = 4;
  PadMode pad_mode = PadMode::reflection;
};

/// One part of an AffineAug; each draws one matrix per image.
using AffinePart = std::variant<FlipOptions, DihedralOptions, RotateOptions, ZoomOptions, WarpOptions,
                                RandomResizedCropGPUOptions, RandomCropPadOptions>;

namespace detail {

inline Mat3 draw_part(const FlipOptions& o, TfmRng& rng, int64_t, int64_t) {
  return rng.bernoulli(o.p) ? affine_mat(-1, 0, 0, 0, 1, 0) : mat3_identity();
}
inline Mat3 draw_part(const DihedralOptions& o, TfmRng& rng, int64_t, int64_t) {
  const bool on = rng.bernoulli(o.p);
  const int64_t k = rng.randint(0, 8), i = on ? k : 0;
  constexpr double xs[] = {1, -1, 1, -1, -1, 1, 1, -1}, ys[] = {1, 1, -1, 1, -1, -1, 1, -1};
  constexpr double m0[] = {1, 1, 1, 0, 1, 0, 0, 0}, m1[] = {0, 0, 0, 1, 0, 1, 1, 1};
  return affine_mat(xs[i] * m0[i], xs[i] * m1[i], 0, ys[i] * m1[i], ys[i] * m0[i], 0);
}
inline Mat3 draw_part(const RotateOptions& o, TfmRng& rng, int64_t, int64_t) {
  const bool on = rng.bernoulli(o.p);
  const double deg = rng.uniform(-o.max_deg, o.max_deg), t = on ? deg * 3.141592653589793 / 180 : 0.0;
  return affine_mat(std::cos(t), std::sin(t), 0, -std::sin(t), std::cos(t), 0);
}
inline Mat3 draw_part(const ZoomOptions& o, TfmRng& rng, int64_t, int64_t) {
  const bool on = rng.bernoulli(o.p);
  const double z = rng.uniform(o.min_zoom, o.max_zoom), s = 1 / (on ? z : 1.0);
  const double cx = rng.uniform(), cy = rng.uniform();
  return affine_mat(s, 0, (1 - s) * (2 * cx - 1), 0, s, (1 - s) * (2 * cy - 1));
}
/// The homography H with H(from[i]) = to[i] for 4 point pairs (8x8 solve, partial pivoting).
inline Mat3 homography(const std::array<std::array<double, 2>, 4>& from, const std::array<std::array<double, 2>, 4>& to) {
  double a[8][9] = {};
  for (int i = 0; i < 4; ++i) {
    const double X = from[size_t(i)][0], Y = from[size_t(i)][1], x = to[size_t(i)][0], y = to[size_t(i)][1];
    const double r0[9] = {X, Y, 1, 0, 0, 0, -x * X, -x * Y, x}, r1[9] = {0, 0, 0, X, Y, 1, -y * X, -y * Y, y};
    std::copy_n(r0, 9, a[2 * i]);
    std::copy_n(r1, 9, a[2 * i + 1]);
  }
  for (int c = 0; c < 8; ++c) {
    int piv = c;
    for (int r = c + 1; r < 8; ++r)
      if (std::fabs(a[r][c]) > std::fabs(a[piv][c])) piv = r;
    STRATA_CHECK(std::fabs(a[piv][c]) > 1e-12, "Warp", "got corner points with no perspective map between them, ",
                 "expected magnitude < 1");
    std::swap(a[c], a[piv]);
    for (int r = 0; r < 8; ++r)
      if (r != c) {
        const double f = a[r][c] / a[c][c];
        for (int k = c; k < 9; ++k) a[r][k] -= f * a[c][k];
      }
  }
  Mat3 h{};
  for (int i = 0; i < 8; ++i) h[size_t(i)] = a[i][8] / a[i][i];
  h[8] = 1;
  return h;
}
inline Mat3 draw_part(const WarpOptions& o, TfmRng& rng, int64_t, int64_t) {
  const bool on_x = rng.bernoulli(o.p), on_y = rng.bernoulli(o.p);
  const double mx = rng.uniform(-o.magnitude, o.magnitude), my = rng.uniform(-o.magnitude, o.magnitude);
  const double x = on_x ? mx : 0.0, y = on_y ? my : 0.0;
  if (x == 0 && y == 0) return mat3_identity();
  return homography({{{-1 - y, -1 - x}, {-1 + y, 1 + x}, {1 + y, -1 + x}, {1 - y, 1 - x}}},
                    {{{-1, -1}, {-1, 1}, {1, -1}, {1, 1}}});
}

/// The crop rows [y0, y0 + h) x cols [x0, x0 + w) of an H x W image stretched over the output
/// (align_corners: the output's corner pixels are the crop's corner pixels).
inline Mat3 crop_mat(int64_t H, int64_t W, int64_t y0, int64_t x0, int64_t h, int64_t w) {
  auto axis = [](int64_t n, int64_t lo, int64_t len) {  // x_in = a u + c along one axis
    if (n <= 1) return std::pair{1.0, 0.0};
    return std::pair{double(len - 1) / double(n - 1), double(2 * lo + len - 1) / double(n - 1) - 1};
  };
  const auto [ax, cx] = axis(W, x0, w);
  const auto [ay, cy] = axis(H, y0, h);
  return affine_mat(ax, 0, cx, 0, ay, cy);
}
/// The validation crop: centred, of the largest aspect ratio allowed.
inline Mat3 center_crop_mat(const RandomResizedCropGPUOptions& o, int64_t H, int64_t W) {
  int64_t h = H, w = W;
  if (double(W) / double(H) < o.min_ratio) h = int64_t(double(W) / o.min_ratio);
  else if (double(W) / double(H) > o.max_ratio) w = int64_t(double(H) * o.max_ratio);
  return crop_mat(H, W, (H - h) / 2, (W - w) / 2, h, w);
}
/// fastai's RandomResizedCropGPU.before_call: 10 tries at a crop that fits, else the largest allowed, centred.
inline Mat3 draw_part(const RandomResizedCropGPUOptions& o, TfmRng& rng, int64_t H, int64_t W) {
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double area = rng.uniform(o.min_scale, 1.0) * double(W * H);
    const double ratio = std::exp(rng.uniform(std::log(o.min_ratio), std::log(o.max_ratio)));
    const auto nw = int64_t(std::round(std::sqrt(area * ratio))), nh = int64_t(std::round(std::sqrt(area / ratio)));
    if (nw <= W && nh <= H && nw > 0 && nh > 0)
      return crop_mat(H, W, rng.randint(0, H - nh + 1), rng.randint(0, W - nw + 1), nh, nw);
  }
  int64_t h = H, w = W;
  if (double(W) / double(H) < o.min_ratio) h = int64_t(double(W) / o.min_ratio);
  else if (double(W) / double(H) > o.max_ratio) w = int64_t(double(H) * o.max_ratio);
  return crop_mat(H, W, (H - h) / 2, (W - w) / 2, h, w);  // fastai: the fallback is centred
}

/// RandomCropPad's shift: top = randint(0, 2 p + 1), then left = randint(0, 2 p + 1) in the padded
/// image (torchvision's order), i.e. output pixel (i, j) reads input pixel (i + top - p, j + left - p);
/// one pixel is 2 / (size - 1) in normalized coordinates with align_corners, 2 / size without.
inline Mat3 draw_part(const RandomCropPadOptions& o, TfmRng& rng, int64_t H, int64_t W, bool align) {
  const int64_t top = rng.randint(0, 2 * o.padding + 1), left = rng.randint(0, 2 * o.padding + 1);
  auto step = [&](int64_t n) { return align ? (n > 1 ? 2.0 / double(n - 1) : 0.0) : 2.0 / double(n); };
  return affine_mat(1, 0, double(left - o.padding) * step(W), 0, 1, double(top - o.padding) * step(H));
}

/// Pixel coordinate <-> normalized coordinate (see the top of this file).
inline double pixel_to_norm(double p, int64_t size, bool align) {
  if (align) return size > 1 ? 2 * (p - 0.5) / double(size - 1) - 1 : 0.0;
  return 2 * p / double(size) - 1;
}
inline double norm_to_pixel(double c, int64_t size, bool align) {
  if (align) return size > 1 ? (c + 1) / 2 * double(size - 1) + 0.5 : 0.5;
  return (c + 1) / 2 * double(size);
}

}  // namespace detail

/// Flip, Dihedral, Rotate, Zoom and Warp drawn per image and applied in one resampling.
struct AffineAug {
  std::string name = "AffineAug";
  int order = 30;
  Split split = Split::train;
  std::vector<AffinePart> parts;
  ResampleOptions resample;
  // this call's state, set by before_call
  std::vector<Mat3> mats;  // per image, output -> input
  int64_t in_h = 0, in_w = 0;

  AffineAug(std::vector<AffinePart> parts_ = {}, ResampleOptions r = {})
      : split(r.size_h > 0 || r.size_w > 0 ? Split::both : Split::train), parts(std::move(parts_)), resample(r) {
    STRATA_CHECK((r.size_h > 0) == (r.size_w > 0) && r.size_h >= 0, "AffineAug", "got size ", r.size_h, "x",
                 r.size_w, ", expected both > 0 or both 0 (keep the input's size)");
  }

  /// Draws the matrices of the tuple's B images (identity on validation data).
  void before_call(const Tuple& t, TfmContext& ctx) {
    int64_t B = -1;
    for (const Item& it : t) {
      const Tensor& d = data_of(it);
      if (kind_of(it) == ItemKind::image && B < 0) B = d.dim() == 4 ? d.size(0) : 1, in_h = d.size(-2), in_w = d.size(-1);
    }
    for (const Item& it : t) {
      const Tensor& d = data_of(it);
      if (kind_of(it) == ItemKind::mask && B < 0) B = d.dim() == 3 ? d.size(0) : 1, in_h = d.size(-2), in_w = d.size(-1);
    }
    STRATA_CHECK(B >= 0, name, "got a tuple without Image or Mask, expected one to fix the geometry");
    mats.assign(size_t(B), mat3_identity());
    if (!ctx.train) {  // validation: only a crop part does something (its centre crop)
      for (const AffinePart& part : parts)
        if (const auto* crop = std::get_if<RandomResizedCropGPUOptions>(&part))
          for (Mat3& m : mats) m = mat3_mul(m, detail::center_crop_mat(*crop, in_h, in_w));
      return;
    }
    std::vector<Mat3> warp(size_t(B), mat3_identity());
    for (const AffinePart& part : parts)
      for (int64_t b = 0; b < B; ++b) {
        const Mat3 m = std::visit(
            [&](const auto& o) {
              if constexpr (std::is_same_v<std::decay_t<decltype(o)>, RandomCropPadOptions>)
                return detail::draw_part(o, ctx.rng, in_h, in_w, resample.align_corners);
              else return detail::draw_part(o, ctx.rng, in_h, in_w);
            },
            part);
        Mat3& dst = std::holds_alternative<WarpOptions>(part) ? warp[size_t(b)] : mats[size_t(b)];
        dst = mat3_mul(dst, m);
      }
    for (int64_t b = 0; b < B; ++b) mats[size_t(b)] = mat3_mul(warp[size_t(b)], mats[size_t(b)]);
  }

  Image encodes(const Image& x) const { return Image{sample(x.data, resample.mode)}; }
  Mask encodes(const Mask& x) const {
    const Tensor& d = x.data;
    STRATA_CHECK(d.dim() == 2 || d.dim() == 3, name, "got a Mask of shape ", d.shape(), ", expected [B, H, W] or [H, W]");
    return Mask{sample(d.unsqueeze(-3), SampleMode::nearest).squeeze(-3)};
  }
  Points encodes(const Points& x) const { return Points{map_points(x.data, 2, "Points", "[B, N, 2] or [N, 2]")}; }
  BBoxes encodes(const BBoxes& x) const {
    // each box's four corners through the map, then the box around them
    const Tensor& d = x.data;
    STRATA_CHECK((d.dim() == 2 || d.dim() == 3) && d.size(-1) == 4, name, "got BBoxes of shape ", d.shape(), ", expected [B, N, 4] or [N, 4]");
    const std::vector<double> v = th_values(d);
    std::vector<double> c(v.size() * 2);
    for (size_t i = 0; i < v.size() / 4; ++i) {
      const double* q = &v[4 * i];
      const double cc[8] = {q[0], q[1], q[2], q[1], q[0], q[3], q[2], q[3]};
      std::copy_n(cc, 8, &c[8 * i]);
    }
    const Shape cs = d.dim() == 3 ? Shape{d.size(0), 4 * d.size(1), 2} : Shape{4 * d.size(0), 2};
    const std::vector<double> m = th_values(map_points(from_vector(c, cs), 2, "BBoxes", "[B, N, 4] or [N, 4]"));
    std::vector<double> out(v.size());
    for (size_t i = 0; i < v.size() / 4; ++i) {
      double x0 = 1e300, y0 = 1e300, x1 = -1e300, y1 = -1e300;
      for (int k = 0; k < 4; ++k) {
        x0 = std::min(x0, m[8 * i + 2 * k]), x1 = std::max(x1, m[8 * i + 2 * k]);
        y0 = std::min(y0, m[8 * i + 2 * k + 1]), y1 = std::max(y1, m[8 * i + 2 * k + 1]);
      }
      const double W = double(out_w()), H = double(out_h());
      out[4 * i] = std::clamp(x0, 0.0, W), out[4 * i + 1] = std::clamp(y0, 0.0, H);
      out[4 * i + 2] = std::clamp(x1, 0.0, W), out[4 * i + 3] = std::clamp(y1, 0.0, H);
    }
    return BBoxes{strata::to(from_vector(out, d.shape(), {.dtype = d.dtype()}), d.device())};
  }

  int64_t out_h() const { return resample.size_h ? resample.size_h : in_h; }
  int64_t out_w() const { return resample.size_w ? resample.size_w : in_w; }

 private:
  /// x [B, C, H, W] or [C, H, W] through this call's matrices.
  Tensor sample(const Tensor& x, SampleMode mode) const {
    STRATA_CHECK(!mats.empty(), name, "got no matrices, expected before_call to run first (use it through a Pipeline)");
    const int64_t B = x.dim() == 4 ? x.size(0) : 1;
    STRATA_CHECK(B == int64_t(mats.size()), name, "got ", B, " images in an item of shape ", x.shape(), ", expected ",
                 mats.size(), " like the tuple's first Image");
    bool identity = resample.size_h == 0 || (resample.size_h == x.size(-2) && resample.size_w == x.size(-1));
    for (const Mat3& m : mats) identity = identity && m == mat3_identity();
    if (identity) return x;
    return grid_sample(x, mats, {.height = out_h(), .width = out_w(), .mode = mode, .pad_mode = resample.pad_mode,
                                 .align_corners = resample.align_corners});
  }
  /// Points [..., N, 2] in input pixels -> output pixels, by the inverse matrix of their image.
  Tensor map_points(const Tensor& p, int64_t last, const char* what, const char* expect) const {
    STRATA_CHECK((p.dim() == 2 || p.dim() == 3) && p.size(-1) == last, name, "got ", what, " of shape ", p.shape(),
                 ", expected ", expect);
    STRATA_CHECK(!mats.empty(), name, "got no matrices, expected before_call to run first (use it through a Pipeline)");
    const int64_t B = p.dim() == 3 ? p.size(0) : 1, N = p.size(-2);
    STRATA_CHECK(B == int64_t(mats.size()), name, "got ", what, " for ", B, " images, expected ", mats.size());
    std::vector<double> v = th_values(p);
    const bool al = resample.align_corners;
    for (int64_t b = 0; b < B; ++b) {
      const Mat3 inv = mat3_inverse(mats[size_t(b)]);
      for (int64_t n = 0; n < N; ++n) {
        double* q = &v[size_t(2 * (b * N + n))];
        const double u = detail::pixel_to_norm(q[0], in_w, al), w = detail::pixel_to_norm(q[1], in_h, al);
        const double z = inv[6] * u + inv[7] * w + inv[8];
        q[0] = detail::norm_to_pixel((inv[0] * u + inv[1] * w + inv[2]) / z, out_w(), al);
        q[1] = detail::norm_to_pixel((inv[3] * u + inv[4] * w + inv[5]) / z, out_h(), al);
      }
    }
    return strata::to(from_vector(v, p.shape(), {.dtype = p.is_floating_point() ? p.dtype() : DType::f32}), p.device());
  }
  /// All elements as double, row-major (on the host: points and boxes are mapped there).
  static std::vector<double> th_values(const Tensor& t) {
    const Tensor c = strata::to(t, kCPU).to(DType::f64).contiguous();
    const double* p = c.data_ptr<double>();
    return std::vector<double>(p, p + c.numel());
  }
};

/// Horizontal flips (fastai's Flip: an affine flip, resampled).
struct Flip : AffineAug {
  explicit Flip(FlipOptions o = {}) : AffineAug({o}, o.resample) { name = "Flip"; }
  explicit Flip(double p) : Flip(FlipOptions{.p = p}) {}  // fastai's spelling: Flip(0.5)
};
/// The 8 symmetries of the square (flips and quarter turns).
struct Dihedral : AffineAug {
  explicit Dihedral(DihedralOptions o = {}) : AffineAug({o}, o.resample) { name = "Dihedral"; }
  explicit Dihedral(double p) : Dihedral(DihedralOptions{.p = p}) {}
};
/// Rotation by up to max_deg degrees either way.
struct Rotate : AffineAug {
  explicit Rotate(RotateOptions o = {}) : AffineAug({o}, o.resample) { name = "Rotate"; }
  explicit Rotate(double max_deg, double p = 0.5) : Rotate(RotateOptions{.max_deg = max_deg, .p = p}) {}
};
/// Zoom in by min_zoom..max_zoom about a random centre.
struct Zoom : AffineAug {
  explicit Zoom(ZoomOptions o = {}) : AffineAug({o}, o.resample) { name = "Zoom"; }
  Zoom(double min_zoom, double max_zoom, double p = 0.5)
      : Zoom(ZoomOptions{.min_zoom = min_zoom, .max_zoom = max_zoom, .p = p}) {}
};
/// fastai's perspective warp of the four corners by up to magnitude.
struct Warp : AffineAug {
  explicit Warp(WarpOptions o = {}) : AffineAug({o}, o.resample) { name = "Warp"; }
  explicit Warp(double magnitude, double p = 0.5) : Warp(WarpOptions{.magnitude = magnitude, .p = p}) {}
};
/// A random crop with padding (the CIFAR recipe), per image; nearest sampling, which is exact here and
/// works on any dtype (u8 batches before IntToFloat too): RandomCropPad({.padding = 4}).
struct RandomCropPad : AffineAug {
  explicit RandomCropPad(RandomCropPadOptions o = {})
      : AffineAug({o}, {.mode = SampleMode::nearest, .pad_mode = o.pad_mode}) {
    name = "RandomCropPad";
    STRATA_CHECK(o.padding >= 0, name, "got padding ", o.padding, ", expected padding >= 0");
  }
  explicit RandomCropPad(int64_t padding, PadMode pad_mode = PadMode::reflection)
      : RandomCropPad(RandomCropPadOptions{.padding = padding, .pad_mode = pad_mode}) {}
};
/// A random crop of min_scale..1 of the area, resized to resample's size (required).
struct RandomResizedCropGPU : AffineAug {
  explicit RandomResizedCropGPU(RandomResizedCropGPUOptions o = {}) : AffineAug({o}, o.resample) {
    name = "RandomResizedCropGPU";
    STRATA_CHECK(o.resample.size_h > 0 && 0 < o.min_scale && o.min_scale <= 1 && 0 < o.min_ratio &&
                     o.min_ratio <= o.max_ratio,
                 name, "got size ", o.resample.size_h, "x", o.resample.size_w, ", min_scale ", o.min_scale,
                 ", ratios [", o.min_ratio, ", ", o.max_ratio, "], expected an output size, 0 < min_scale <= 1 and ",
                 "0 < min_ratio <= max_ratio");
  }
};

// ---------------------------------------------------------------- lighting

struct BrightnessOptions { double max_lighting = 0.2, p = 0.75; };
struct ContrastOptions { double max_lighting = 0.2, p = 0.75; };

/// Brightness and contrast on logits, one pass (fastai's LightingTfm, merged as setup_aug_tfms does).
/// Either part may be off (max_lighting = 0).
struct Lighting {
  std::string name = "Lighting";
  int order = 40;
  Split split = Split::train;
  BrightnessOptions brightness;
  ContrastOptions contrast;
  std::vector<double> add, mul;  // this call's logit(brightness) and contrast, per image

  explicit Lighting(BrightnessOptions b = {.max_lighting = 0, .p = 0}, ContrastOptions c = {.max_lighting = 0, .p = 0})
      : brightness(b), contrast(c) {}

  void before_call(const Tuple& t, TfmContext& ctx) {
    int64_t B = 0;
    for (const Item& it : t)
      if (kind_of(it) == ItemKind::image) {
        B = data_of(it).dim() == 4 ? data_of(it).size(0) : 1;
        break;
      }
    add.assign(size_t(B), 0.0), mul.assign(size_t(B), 1.0);
    for (int64_t b = 0; b < B; ++b) {
      if (brightness.max_lighting > 0) {
        const bool on = ctx.rng.bernoulli(brightness.p);
        const double m = brightness.max_lighting, v = ctx.rng.uniform(0.5 * (1 - m), 0.5 * (1 + m));
        add[size_t(b)] = on ? std::log(v / (1 - v)) : 0.0;
      }
      if (contrast.max_lighting > 0) {
        const bool on = ctx.rng.bernoulli(contrast.p);
        const double l = std::log(1 - contrast.max_lighting), v = std::exp(ctx.rng.uniform(l, -l));
        mul[size_t(b)] = on ? v : 1.0;
      }
    }
  }
  Image encodes(const Image& x) const {
    STRATA_CHECK(int64_t(add.size()) == (x.data.dim() == 4 ? x.data.size(0) : 1), name, "got an Image of shape ",
                 x.data.shape(), ", expected ", add.size(), " images like the tuple's first (before_call first)");
    return Image{x.data.dim() == 4 ? lighting(x.data, add, mul) : lighting(x.data.unsqueeze(0), add, mul).squeeze(0)};
  }
};
/// Random brightness only.
struct Brightness : Lighting {
  explicit Brightness(BrightnessOptions o = {}) : Lighting(o, {.max_lighting = 0, .p = 0}) { name = "Brightness"; }
  explicit Brightness(double max_lighting, double p = 0.75) : Brightness(BrightnessOptions{max_lighting, p}) {}
};
/// Random contrast only.
struct Contrast : Lighting {
  explicit Contrast(ContrastOptions o = {}) : Lighting({.max_lighting = 0, .p = 0}, o) { name = "Contrast"; }
  explicit Contrast(double max_lighting, double p = 0.75) : Contrast(ContrastOptions{max_lighting, p}) {}
};

// ---------------------------------------------------------------- random erasing

struct RandomErasingOptions { double p = 0.5, sl = 0.0, sh = 0.3, min_aspect = 0.3; int64_t max_count = 1; };

/// fastai's RandomErasing: rectangles of N(0, 1) noise, after Normalize (order 100), per image.
struct RandomErasing {
  std::string name = "RandomErasing";
  int order = 100;
  Split split = Split::train;
  RandomErasingOptions o;
  std::vector<cpu::EraseRect> rects;  // this call's
  std::array<uint32_t, 2> key{};

  explicit RandomErasing(RandomErasingOptions opts = {}) : o(opts) {
    STRATA_CHECK(o.max_count >= 1 && o.min_aspect > 0 && 0 <= o.sl && o.sl <= o.sh, "RandomErasing", "got max_count ",
                 o.max_count, ", min_aspect ", o.min_aspect, ", sl ", o.sl, ", sh ", o.sh,
                 ", expected max_count >= 1, min_aspect > 0, 0 <= sl <= sh");
  }
  /// fastai's spelling: RandomErasing(0.5, 0., 0.3, 0.3, 1).
  explicit RandomErasing(double p, double sl = 0.0, double sh = 0.3, double min_aspect = 0.3, int64_t max_count = 1)
      : RandomErasing(RandomErasingOptions{p, sl, sh, min_aspect, max_count}) {}
  void before_call(const Tuple& t, TfmContext& ctx) {
    rects.clear();
    key = {uint32_t(ctx.rng.randint(0, int64_t(1) << 32)), uint32_t(ctx.rng.randint(0, int64_t(1) << 32))};
    for (const Item& it : t)
      if (kind_of(it) == ItemKind::image) {
        const Tensor& d = data_of(it);
        const int64_t B = d.dim() == 4 ? d.size(0) : 1, H = d.size(-2), W = d.size(-1);
        const double lr = std::log(o.min_aspect);
        auto slice = [&](double area, int64_t size) {  // fastai's _slice: [loc, loc + bound)
          const auto bound = int64_t(std::round(std::sqrt(area)));
          const int64_t loc = ctx.rng.randint(0, std::max<int64_t>(size - bound, 0) + 1);
          return std::pair{loc, std::min(loc + bound, size)};
        };
        for (int64_t b = 0; b < B; ++b) {
          if (!ctx.rng.bernoulli(o.p)) continue;
          const int64_t count = ctx.rng.randint(1, o.max_count + 1);
          const double area = double(H * W) / double(count);
          for (int64_t k = 0; k < count; ++k) {
            const double r_area = ctx.rng.uniform(o.sl, o.sh) * area, aspect = std::exp(ctx.rng.uniform(lr, -lr));
            const auto [r0, r1] = slice(r_area * aspect, H);
            const auto [c0, c1] = slice(r_area / aspect, W);
            rects.push_back({.image = b, .r0 = r0, .r1 = r1, .c0 = c0, .c1 = c1});
          }
        }
        return;
      }
  }
  Image encodes(const Image& x) const {
    if (rects.empty()) return x;
    return Image{x.data.dim() == 4 ? random_erase(x.data, rects, key)
                                   : random_erase(x.data.unsqueeze(0), rects, key).squeeze(0)};
  }
};

// ---------------------------------------------------------------- aug_transforms

/// fastai's aug_transforms arguments and defaults.
struct AugOptions {
  double mult = 1.0;
  bool do_flip = true, flip_vert = false;
  double max_rotate = 10, min_zoom = 1, max_zoom = 1.1, max_lighting = 0.2, max_warp = 0.2;
  double p_affine = 0.75, p_lighting = 0.75;
  int64_t size_h = 0, size_w = 0;  // output size (0: keep)
  double min_scale = 1.0;          // < 1: a RandomResizedCropGPU part (aspect ratio 1, as fastai's; needs a size)
  SampleMode mode = SampleMode::bilinear;
  PadMode pad_mode = PadMode::reflection;
  bool align_corners = true;
  std::vector<std::shared_ptr<Transform>> xtra_tfms = {};  // appended to the result
};

/// The standard batch augmentations: one AffineAug (flip or dihedral, warp, rotate, zoom, and the
/// random resized crop when min_scale < 1; one resampling) and one Lighting (brightness then contrast), as fastai's setup_aug_tfms merges them.
inline std::vector<std::shared_ptr<Transform>> aug_transforms(AugOptions o = {}) {
  const double max_rotate = o.max_rotate * o.mult, max_lighting = o.max_lighting * o.mult,
               max_warp = o.max_warp * o.mult;
  std::vector<AffinePart> parts;
  if (o.do_flip) {
    if (o.flip_vert) parts.emplace_back(DihedralOptions{.p = 0.5});
    else parts.emplace_back(FlipOptions{.p = 0.5});
  }
  if (max_warp > 0) parts.emplace_back(WarpOptions{.magnitude = max_warp, .p = o.p_affine});
  if (max_rotate > 0) parts.emplace_back(RotateOptions{.max_deg = max_rotate, .p = o.p_affine});
  if (o.min_zoom < 1 || o.max_zoom > 1)
    parts.emplace_back(ZoomOptions{.min_zoom = o.min_zoom, .max_zoom = o.max_zoom, .p = o.p_affine});
  STRATA_CHECK(o.min_scale == 1 || (o.min_scale > 0 && o.min_scale < 1 && o.size_h > 0), "aug_transforms",
               "got min_scale ", o.min_scale, " with size ", o.size_h, "x", o.size_w,
               ", expected min_scale in (0, 1] and an output size when min_scale < 1");
  if (o.min_scale < 1) parts.emplace_back(RandomResizedCropGPUOptions{.min_scale = o.min_scale, .min_ratio = 1, .max_ratio = 1});
  std::vector<std::shared_ptr<Transform>> out;
  const ResampleOptions r{.size_h = o.size_h, .size_w = o.size_w, .mode = o.mode, .pad_mode = o.pad_mode,
                          .align_corners = o.align_corners};
  if (!parts.empty() || o.size_h > 0) out.push_back(make_transform(AffineAug(std::move(parts), r)));
  if (max_lighting > 0) {
    out.push_back(make_transform(Lighting({.max_lighting = max_lighting, .p = o.p_lighting},
                                          {.max_lighting = max_lighting, .p = o.p_lighting})));
  }
  out.insert(out.end(), o.xtra_tfms.begin(), o.xtra_tfms.end());
  return out;
}

}  // namespace strata
