// Item transforms that change an image's size or orientation (fastai's Resize, RandomResizedCrop,
// CropPad, RandomCrop, FlipItem, DihedralItem). They run per item on the loader's workers, on the
// u8 [C, H, W] Image straight from the decoder and on the Mask, Points and BBoxes of the same tuple,
// with one resampling per item (kernels/cpu/resize.hpp: Image bilinear, Mask nearest).
//
//   Resize({.size = 224})                                    crop: random crop of the largest box with
//   Resize({.size = {128, 160}, .method = ResizeMethod::pad})   the target's aspect (centre on valid);
//                                                            pad: fit inside, pad; squish: stretch
//   RandomResizedCrop({.size = 128, .min_scale = 0.35})      random area/aspect crop, resized
//   CropPad({.size = 64}), RandomCrop({.size = 64})          no scaling: crop (and pad) to size
//   FlipItem({.p = 0.5}), DihedralItem({.p = 1})             train only
//   Resize(224), RandomResizedCrop(128, 0.35), FlipItem(0.5)  fastai's positional spellings
//
// Geometry: every sized transform picks a source box (y0, x0, h, w) in the input's pixels
// (ItemGeom) in before_call, from the first Image or Mask of the tuple, with ctx.rng, so all items
// of a tuple get the same crop; encodes maps each item through it. Points (x, y) and BBoxes
// (x0, y0, x1, y1) are continuous pixel coordinates: the image spans [0, W] x [0, H] and pixel
// (i, j) covers [j, j+1) x [i, i+1); a box maps them by x' = (x - x0) * OW / w, a horizontal flip by
// x' = W - x. BBoxes are clipped to the output image (boxes that end up empty are kept, with zero
// area, so a batch keeps its shape). Points outside the output are kept as they are.
// Orders and splits are fastai's: CropPad, FlipItem, DihedralItem order 0; Resize, RandomCrop,
// RandomResizedCrop order 1; the flips run on training data only.
// Reference: fastai.vision.augment (Resize, RandomResizedCrop, CropPad, RandomCrop, FlipItem,
// DihedralItem).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cpu/resize.hpp"
#include "strata/core/parallel.hpp"
#include "strata/data/transform.hpp"

namespace strata {

using PadMode = cpu::PadMode;

/// How Resize fits an image to a size of another aspect (fastai's ResizeMethod).
enum class ResizeMethod { crop, pad, squish };

/// A target (h, w); one number means a square.
struct ImageSize {
  int64_t h = 0, w = 0;
  ImageSize() = default;
  ImageSize(int64_t s) : h(s), w(s) {}
  ImageSize(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  bool operator==(const ImageSize&) const = default;
};

/// Where an item transform takes an item: the source box (y0, x0, h, w) in the input's pixels,
/// resampled to OH x OW; samples outside the input follow `pad`.
struct ItemGeom {
  double y0 = 0, x0 = 0, h = 0, w = 0;
  int64_t OH = 0, OW = 0;
  PadMode pad = PadMode::zeros;
};

namespace detail {

/// A tensor [..., H, W] as C planes with one plane stride (contiguous copy when the leading dims
/// do not collapse).
struct Planes {
  Tensor t;
  Shape lead;
  int64_t C = 1, H = 0, W = 0, sc = 0, sh = 0, sw = 0;
};

inline Planes as_planes(const Tensor& x, const char* op, const char* what) {
  STRATA_CHECK(x.defined() && x.dim() >= 2, op, "got ", what, " ",
               x.defined() ? "of shape " + to_string(x.shape()) : std::string("undefined"),
               ", expected a tensor [..., H, W]");
  Planes p;
  const int d = x.dim();
  p.lead = Shape(x.shape().begin(), x.shape().end() - 2);
  for (int64_t s : p.lead) p.C *= s;
  // the leading dims collapse into one plane stride when each non-1 dim steps over the next non-1 one
  std::vector<int> big;
  for (int i = 0; i < d - 2; ++i)
    if (x.size(i) != 1) big.push_back(i);
  bool ok = true;
  for (size_t k = 0; k + 1 < big.size(); ++k)
    ok = ok && x.stride(big[k]) == x.stride(big[k + 1]) * x.size(big[k + 1]);
  p.t = ok ? x : x.contiguous();
  p.H = x.size(d - 2), p.W = x.size(d - 1);
  p.sh = p.t.stride(d - 2), p.sw = p.t.stride(d - 1);
  p.sc = big.empty() ? 0 : p.t.stride(big.back());
  return p;
}

inline Shape out_shape(const Shape& lead, int64_t OH, int64_t OW) {
  Shape s = lead;
  s.push_back(OH);
  s.push_back(OW);
  return s;
}

inline cpu::ResizeGeom kernel_geom(const Planes& p, const ItemGeom& g) {
  return {.C = p.C, .H = p.H, .W = p.W, .sc = p.sc, .sh = p.sh, .sw = p.sw, .y0 = g.y0, .x0 = g.x0, .h = g.h,
          .w = g.w, .OH = g.OH, .OW = g.OW, .pad = g.pad};
}

inline void check_geom(const ItemGeom& g, const char* op) {
  STRATA_CHECK(g.OH > 0 && g.OW > 0 && g.h > 0 && g.w > 0, op, "got a box of ", g.h, " x ", g.w,
               " resampled to ", g.OH, " x ", g.OW, ", expected positive sizes");
}

}  // namespace detail

/// x [..., H, W] (u8 or floating) -> [..., OH, OW]: bilinear samples of the box g.
inline Tensor resample_bilinear(const Tensor& x, const ItemGeom& g) {
  detail::check_geom(g, "resample_bilinear");
  const detail::Planes p = detail::as_planes(x, "resample_bilinear", "an image");
  STRATA_CHECK(p.H > 0 && p.W > 0, "resample_bilinear", "got an image of shape ", x.shape(),
               ", expected H, W > 0");
  const DType dt = x.dtype();
  if (dt != DType::u8 && dt != DType::f32 && dt != DType::f64) {
    STRATA_CHECK(is_floating(dt), "resample_bilinear", "got dtype ", dt,
                 ", expected uint8 or a floating dtype");
    return resample_bilinear(x.to(DType::f32), g).to(dt);
  }
  Tensor out = Tensor::empty(detail::out_shape(p.lead, g.OH, g.OW), dt);
  const cpu::ResizeGeom kg = detail::kernel_geom(p, g);
  auto run = [&]<class T>(type_tag<T>) {
    const T* s = p.t.data_ptr<T>();
    T* d = out.data_ptr<T>();
    // planes split over threads for a whole batch; an item (or a loader worker) runs inline
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / (g.OH * g.OW));
    parallel_for(0, p.C, grain, [&](int64_t lo, int64_t hi) {
      cpu::ResizeGeom part = kg;
      part.C = hi - lo;
      cpu::resize_bilinear(s + lo * kg.sc, d + lo * g.OH * g.OW, part);
    });
  };
  if (dt == DType::u8) run(type_tag<uint8_t>{});
  else if (dt == DType::f32) run(type_tag<float>{});
  else run(type_tag<double>{});
  return out;
}

/// x [..., H, W] (any dtype, e.g. an i64 mask) -> [..., OH, OW]: nearest samples of the box g.
inline Tensor resample_nearest(const Tensor& x, const ItemGeom& g) {
  detail::check_geom(g, "resample_nearest");
  const detail::Planes p = detail::as_planes(x, "resample_nearest", "a mask");
  STRATA_CHECK(p.H > 0 && p.W > 0, "resample_nearest", "got a mask of shape ", x.shape(), ", expected H, W > 0");
  Tensor out = Tensor::empty(detail::out_shape(p.lead, g.OH, g.OW), x.dtype());
  const cpu::ResizeGeom kg = detail::kernel_geom(p, g);
  dispatch_all(x.dtype(), "resample_nearest", [&]<class T>(type_tag<T>) {
    cpu::resize_nearest(p.t.data_ptr<T>(), out.data_ptr<T>(), kg);
  });
  return out;
}

/// x [..., H, W] -> fastai's dihedral k in [0, 8): flip W if k in {1,3,4,7}, flip H if k in
/// {2,4,5,7}, then transpose H and W if k in {3,5,6,7}.
inline Tensor dihedral(const Tensor& x, int k) {
  STRATA_CHECK(k >= 0 && k < 8, "dihedral", "got k = ", k, ", expected 0 <= k < 8");
  if (k == 0) return x;
  const detail::Planes p = detail::as_planes(x, "dihedral", "an image");
  const bool fh = k == 1 || k == 3 || k == 4 || k == 7, fv = k == 2 || k == 4 || k == 5 || k == 7;
  const bool tr = k == 3 || k == 5 || k == 6 || k == 7;
  // transpose after the flips = the flips swapped after the transpose (the kernel's order)
  const bool kfh = tr ? fv : fh, kfv = tr ? fh : fv;
  Tensor out = Tensor::empty(detail::out_shape(p.lead, tr ? p.W : p.H, tr ? p.H : p.W), x.dtype());
  dispatch_all(x.dtype(), "dihedral", [&]<class T>(type_tag<T>) {
    cpu::dihedral_copy(p.t.data_ptr<T>(), out.data_ptr<T>(), p.C, p.H, p.W, p.sc, p.sh, p.sw, tr, kfh, kfv);
  });
  return out;
}

/// x [..., H, W] with its last dim reversed (a horizontal flip).
inline Tensor flip_lr(const Tensor& x) { return dihedral(x, 1); }

namespace detail {

/// Applies f(x, y) -> (x', y') to every coordinate pair of a [..., 2k] coordinate tensor (k = 1:
/// points, k = 2: boxes), in double, keeping the dtype (floating).
template <class F>
Tensor map_coords(const Tensor& pts, int64_t last, const char* op, const char* what, F&& f) {
  STRATA_CHECK(pts.defined() && pts.dim() >= 1 && pts.size(-1) == last, op, "got ", what, " ",
               pts.defined() ? "of shape " + to_string(pts.shape()) : std::string("undefined"),
               ", expected a tensor [..., ", last, "]");
  STRATA_CHECK(is_floating(pts.dtype()), op, "got ", what, " of dtype ", pts.dtype(), ", expected a floating dtype");
  Tensor out = pts.to(DType::f64).contiguous().clone();
  double* d = out.data_ptr<double>();
  for (int64_t i = 0; i + 1 < out.numel(); i += 2) f(d[i], d[i + 1]);
  return out.to(pts.dtype());
}

}  // namespace detail

/// Points [..., 2] (x, y) -> their place in the output of the box g.
inline Tensor map_points(const Tensor& pts, const ItemGeom& g) {
  const double sx = double(g.OW) / g.w, sy = double(g.OH) / g.h;
  return detail::map_coords(pts, 2, "map_points", "points", [&](double& x, double& y) {
    x = (x - g.x0) * sx, y = (y - g.y0) * sy;
  });
}

/// BBoxes [..., 4] (x0, y0, x1, y1) -> their place in the output of the box g, clipped to it.
inline Tensor map_bboxes(const Tensor& b, const ItemGeom& g) {
  const double sx = double(g.OW) / g.w, sy = double(g.OH) / g.h;
  return detail::map_coords(b, 4, "map_bboxes", "boxes", [&](double& x, double& y) {
    x = std::clamp((x - g.x0) * sx, 0.0, double(g.OW)), y = std::clamp((y - g.y0) * sy, 0.0, double(g.OH));
  });
}

/// Coordinates [..., 2k] of an H x W image under fastai's dihedral k (see dihedral()); boxes
/// (k = 2 pairs) are re-ordered so that x0 <= x1 and y0 <= y1.
inline Tensor dihedral_coords(const Tensor& pts, int64_t H, int64_t W, int k, bool boxes) {
  STRATA_CHECK(k >= 0 && k < 8, "dihedral_coords", "got k = ", k, ", expected 0 <= k < 8");
  const bool fh = k == 1 || k == 3 || k == 4 || k == 7, fv = k == 2 || k == 4 || k == 5 || k == 7;
  const bool tr = k == 3 || k == 5 || k == 6 || k == 7;
  Tensor out = detail::map_coords(pts, boxes ? 4 : 2, "dihedral_coords", boxes ? "boxes" : "points",
                                  [&](double& x, double& y) {
                                    if (fh) x = double(W) - x;
                                    if (fv) y = double(H) - y;
                                    if (tr) std::swap(x, y);
                                  });
  if (!boxes) return out;
  Tensor o = out.to(DType::f64).contiguous();
  double* d = o.data_ptr<double>();
  for (int64_t i = 0; i + 3 < o.numel(); i += 4) {
    if (d[i] > d[i + 2]) std::swap(d[i], d[i + 2]);
    if (d[i + 1] > d[i + 3]) std::swap(d[i + 1], d[i + 3]);
  }
  return o.to(pts.dtype());
}

namespace detail {

/// (H, W) of the first Image or Mask of a tuple (what the sized transforms measure).
inline std::pair<int64_t, int64_t> tuple_hw(const Tuple& t, const char* op) {
  for (const Item& it : t) {
    const ItemKind k = kind_of(it);
    if (k != ItemKind::image && k != ItemKind::mask) continue;
    const Tensor& x = data_of(it);
    STRATA_CHECK(x.dim() >= 2, op, "got a", k == ItemKind::image ? "n Image" : " Mask", " of shape ", x.shape(),
                 ", expected [..., H, W]");
    return {x.size(-2), x.size(-1)};
  }
  fail(op, "got a tuple of ", t.size(), " items with no Image or Mask, expected one to take the size from");
}

inline void check_size(const ImageSize& s, const char* op) {
  STRATA_CHECK(s.h > 0 && s.w > 0, op, "got size {", s.h, ", ", s.w, "}, expected positive sizes");
}

/// fastai's Python floor division (the centre of a negative difference rounds down).
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/// encodes for every geometric item type, through the box `geom` chosen in before_call.
struct BoxTransform {
  ItemGeom geom;
  bool identity = false;  // the box is the whole input at its own size: items pass unchanged
  Image encodes(const Image& x) const { return identity ? x : Image{resample_bilinear(x.data, geom)}; }
  Mask encodes(const Mask& x) const { return identity ? x : Mask{resample_nearest(x.data, geom)}; }
  Points encodes(const Points& x) const { return identity ? x : Points{map_points(x.data, geom)}; }
  BBoxes encodes(const BBoxes& x) const { return identity ? x : BBoxes{map_bboxes(x.data, geom)}; }

 protected:
  void set_box(double y0, double x0, double h, double w, int64_t OH, int64_t OW, PadMode pad, int64_t H,
               int64_t W) {
    geom = {.y0 = y0, .x0 = x0, .h = h, .w = w, .OH = OH, .OW = OW, .pad = pad};
    identity = y0 == 0 && x0 == 0 && h == double(H) && w == double(W) && OH == H && OW == W;
  }
};

}  // namespace detail

/// Options of Resize.
struct ResizeOptions {
  ImageSize size;
  ResizeMethod method = ResizeMethod::crop;
  PadMode pad_mode = PadMode::reflection;
};

/// fastai's Resize: to `size` by cropping (random box of the target aspect on train, centred on
/// valid), padding (fit inside; random placement on train, centred on valid) or squishing.
struct Resize : detail::BoxTransform {
  static constexpr const char* name = "Resize";
  static constexpr Split split = Split::both;
  int order = 1;
  ResizeOptions opts;

  Resize(ResizeOptions o = {}) : opts(o) { detail::check_size(opts.size, "Resize"); }
  /// fastai's spelling: Resize(224), Resize({128, 160}, ResizeMethod::squish).
  Resize(ImageSize size, ResizeMethod method = ResizeMethod::crop, PadMode pad_mode = PadMode::reflection)
      : Resize(ResizeOptions{.size = size, .method = method, .pad_mode = pad_mode}) {}

  void before_call(const Tuple& t, TfmContext& ctx) {
    const auto [H, W] = detail::tuple_hw(t, "Resize");
    const int64_t sh = opts.size.h, sw = opts.size.w;
    if (opts.method == ResizeMethod::squish) {
      set_box(0, 0, double(H), double(W), sh, sw, opts.pad_mode, H, W);
      return;
    }
    double py = 0.5, px = 0.5;
    if (ctx.train) px = ctx.rng.uniform(), py = ctx.rng.uniform();  // fastai: np.random.random(2) as (w, h)
    // the box of the target's aspect: the largest inside (crop) or the smallest around (pad)
    const double rw = double(W) / double(sw), rh = double(H) / double(sh);
    const bool by_w = opts.method == ResizeMethod::crop ? rw < rh : rw > rh;
    const double m = by_w ? rw : rh;
    const int64_t cw = int64_t(m * double(sw)), ch = int64_t(m * double(sh));
    const int64_t x0 = int64_t(px * double(W - cw)), y0 = int64_t(py * double(H - ch));
    set_box(double(y0), double(x0), double(ch), double(cw), sh, sw, opts.pad_mode, H, W);
  }
};

/// Options of RandomResizedCrop (fastai's defaults).
struct RandomResizedCropOptions {
  ImageSize size;
  double min_scale = 0.08, max_scale = 1.0;
  std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0};
  double val_xtra = 0.14;
};

/// fastai's RandomResizedCrop: on train a box of random area fraction in [min_scale, max_scale]
/// and aspect in `ratio` (10 tries, then the centred largest box within the ratio), resized to
/// `size`; on valid the whole image squished to size + xtra (xtra = ceil(max(size) * val_xtra / 8)
/// * 8), then centre-cropped to size, in one resampling.
struct RandomResizedCrop : detail::BoxTransform {
  static constexpr const char* name = "RandomResizedCrop";
  static constexpr Split split = Split::both;
  int order = 1;
  RandomResizedCropOptions opts;

  RandomResizedCrop(RandomResizedCropOptions o = {}) : opts(o) {
    detail::check_size(opts.size, "RandomResizedCrop");
    STRATA_CHECK(0 < opts.min_scale && opts.min_scale <= opts.max_scale && opts.max_scale <= 1.0,
                 "RandomResizedCrop", "got min_scale = ", opts.min_scale, ", max_scale = ", opts.max_scale,
                 ", expected 0 < min_scale <= max_scale <= 1");
    STRATA_CHECK(0 < opts.ratio.first && opts.ratio.first <= opts.ratio.second, "RandomResizedCrop",
                 "got ratio = {", opts.ratio.first, ", ", opts.ratio.second, "}, expected 0 < lo <= hi");
  }
  /// fastai's spelling: RandomResizedCrop(128, 0.35).
  RandomResizedCrop(ImageSize size, double min_scale = 0.08)
      : RandomResizedCrop(RandomResizedCropOptions{.size = size, .min_scale = min_scale}) {}

  void before_call(const Tuple& t, TfmContext& ctx) {
    const auto [H, W] = detail::tuple_hw(t, "RandomResizedCrop");
    const int64_t sh = opts.size.h, sw = opts.size.w;
    const PadMode pad = PadMode::border;  // every box lies inside the image
    if (!ctx.train) {
      const int64_t xtra = int64_t(std::ceil(double(std::max(sh, sw)) * opts.val_xtra / 8.0)) * 8;
      const int64_t fh = sh + xtra, fw = sw + xtra;  // the squished size, then a centre crop
      const double ky = double(H) / double(fh), kx = double(W) / double(fw);
      set_box(double((fh - sh) / 2) * ky, double((fw - sw) / 2) * kx, double(sh) * ky, double(sw) * kx, sh, sw,
              pad, H, W);
      return;
    }
    const double lr0 = std::log(opts.ratio.first), lr1 = std::log(opts.ratio.second);
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double area = ctx.rng.uniform(opts.min_scale, opts.max_scale) * double(W) * double(H);
      const double ratio = std::exp(ctx.rng.uniform(lr0, lr1));
      const int64_t nw = std::llround(std::sqrt(area * ratio)), nh = std::llround(std::sqrt(area / ratio));
      if (nw <= W && nh <= H && nw > 0 && nh > 0) {
        const int64_t x0 = ctx.rng.randint(0, W - nw + 1), y0 = ctx.rng.randint(0, H - nh + 1);
        set_box(double(y0), double(x0), double(nh), double(nw), sh, sw, pad, H, W);
        return;
      }
    }
    int64_t cw = W, ch = H;  // fallback: the centred largest box within the ratio
    const double aspect = double(W) / double(H);
    if (aspect < opts.ratio.first) ch = std::max<int64_t>(1, int64_t(double(W) / opts.ratio.first));
    else if (aspect > opts.ratio.second) cw = std::max<int64_t>(1, int64_t(double(H) * opts.ratio.second));
    set_box(double((H - ch) / 2), double((W - cw) / 2), double(ch), double(cw), sh, sw, pad, H, W);
  }
};

/// Options of CropPad and RandomCrop.
struct CropPadOptions {
  ImageSize size;
  PadMode pad_mode = PadMode::zeros;
};

/// fastai's CropPad: the centred size box, padded where the image is smaller (no scaling).
struct CropPad : detail::BoxTransform {
  static constexpr const char* name = "CropPad";
  static constexpr Split split = Split::both;
  int order = 0;
  CropPadOptions opts;

  CropPad(CropPadOptions o = {}) : opts(o) { detail::check_size(opts.size, "CropPad"); }
  CropPad(ImageSize size, PadMode pad_mode = PadMode::zeros) : CropPad(CropPadOptions{size, pad_mode}) {}

  void before_call(const Tuple& t, TfmContext&) {
    const auto [H, W] = detail::tuple_hw(t, "CropPad");
    const int64_t sh = opts.size.h, sw = opts.size.w;
    set_box(double(detail::floor_div(H - sh, 2)), double(detail::floor_div(W - sw, 2)), double(sh), double(sw), sh,
            sw, opts.pad_mode, H, W);
  }
};

/// fastai's RandomCrop: a size box at a random place on train (the image at a random place in it
/// when smaller, zeros around), centred on valid (no scaling).
struct RandomCrop : detail::BoxTransform {
  static constexpr const char* name = "RandomCrop";
  static constexpr Split split = Split::both;
  int order = 1;
  CropPadOptions opts;

  RandomCrop(CropPadOptions o = {}) : opts(o) { detail::check_size(opts.size, "RandomCrop"); }
  RandomCrop(ImageSize size) : RandomCrop(CropPadOptions{.size = size}) {}

  void before_call(const Tuple& t, TfmContext& ctx) {
    const auto [H, W] = detail::tuple_hw(t, "RandomCrop");
    const int64_t sh = opts.size.h, sw = opts.size.w, dh = H - sh, dw = W - sw;
    int64_t y0 = detail::floor_div(dh, 2), x0 = detail::floor_div(dw, 2);
    if (ctx.train) {  // fastai: randint(0, d) or, when the image is smaller, randint(d, -1)
      x0 = dw < 0 ? ctx.rng.randint(dw, 0) : ctx.rng.randint(0, dw + 1);
      y0 = dh < 0 ? ctx.rng.randint(dh, 0) : ctx.rng.randint(0, dh + 1);
    }
    set_box(double(y0), double(x0), double(sh), double(sw), sh, sw, opts.pad_mode, H, W);
  }
};

/// Options of FlipItem and DihedralItem.
struct FlipItemOptions {
  double p = 0.5;
};

/// fastai's FlipItem: a horizontal flip with probability p, on training data.
struct FlipItem {
  static constexpr const char* name = "FlipItem";
  static constexpr Split split = Split::train;
  int order = 0;
  FlipItemOptions opts;
  bool flip = false;
  int64_t H = 0, W = 0;  // the tuple's image size (for Points and BBoxes)

  FlipItem(FlipItemOptions o = {}) : opts(o) {}
  FlipItem(double p) : opts{.p = p} {}

  void before_call(const Tuple& t, TfmContext& ctx) {
    flip = ctx.rng.bernoulli(opts.p);
    bool has_coords = false;
    for (const Item& it : t) has_coords |= kind_of(it) == ItemKind::points || kind_of(it) == ItemKind::bboxes;
    if (flip && has_coords) std::tie(H, W) = detail::tuple_hw(t, "FlipItem");
  }
  Image encodes(const Image& x) const { return flip ? Image{flip_lr(x.data)} : x; }
  Mask encodes(const Mask& x) const { return flip ? Mask{flip_lr(x.data)} : x; }
  Points encodes(const Points& x) const { return flip ? Points{dihedral_coords(x.data, H, W, 1, false)} : x; }
  BBoxes encodes(const BBoxes& x) const { return flip ? BBoxes{dihedral_coords(x.data, H, W, 1, true)} : x; }
};

/// fastai's DihedralItem: with probability p, one of the 8 dihedral images (k uniform in [0, 8)),
/// on training data.
struct DihedralItem {
  static constexpr const char* name = "DihedralItem";
  static constexpr Split split = Split::train;
  int order = 0;
  FlipItemOptions opts;
  int k = 0;
  int64_t H = 0, W = 0;

  DihedralItem(FlipItemOptions o = {.p = 1.0}) : opts(o) {}
  DihedralItem(double p) : opts{.p = p} {}

  void before_call(const Tuple& t, TfmContext& ctx) {
    k = ctx.rng.bernoulli(opts.p) ? int(ctx.rng.randint(0, 8)) : 0;
    bool has_coords = false;
    for (const Item& it : t) has_coords |= kind_of(it) == ItemKind::points || kind_of(it) == ItemKind::bboxes;
    if (k && has_coords) std::tie(H, W) = detail::tuple_hw(t, "DihedralItem");
  }
  Image encodes(const Image& x) const { return Image{dihedral(x.data, k)}; }
  Mask encodes(const Mask& x) const { return Mask{dihedral(x.data, k)}; }
  Points encodes(const Points& x) const { return k ? Points{dihedral_coords(x.data, H, W, k, false)} : x; }
  BBoxes encodes(const BBoxes& x) const { return k ? BBoxes{dihedral_coords(x.data, H, W, k, true)} : x; }
};

}  // namespace strata
