// show_tuples / show_batch: decoded samples drawn as a labelled PNG grid (fastai's show_batch).
//
//   show_batch(dls, "batch.png");                          // one training batch, 9 samples
//   show_batch(dls, "valid.png", {.max_n = 16, .cell = 128}, /*train=*/false);
//   show_tuples("items.png", {Tuple{Image{img}, Category{label}}}, {.vocabs = {{}, {"cat", "dog"}}});
//
// The grid: ncols columns (0: ceil(sqrt(n))), as many rows as needed. Every cell is a title band
// ShowGrid::kTitle pixels high over a `cell` x `cell` picture, with ShowGrid::kGap pixels around
// cells; so the PNG is ncols * (cell + kGap) + kGap wide and nrows * (kTitle + cell + kGap) + kGap
// high, white where nothing is drawn.
//
// What a sample (one Tuple, items without batch dim) shows:
//   Image   u8 [C, H, W] (C = 1 or 3) or [H, W]; floating images are taken as [0, 1] (clamped),
//           other integers as 0..255. Fitted into the cell keeping its aspect ratio, centred:
//           enlarged by nearest neighbour (small 28x28 images stay crisp), reduced by area averaging.
//   Mask    [H, W] integer codes, drawn over the picture in tab10(code - 1) at alpha 0.5; code 0 is
//           transparent. A mask of another size than the image is stretched onto the same rectangle.
//   Points  [N, 2] (x, y) in the image's pixel coordinates (pixel i spans [i, i + 1)): red dots.
//   BBoxes  [N, 4] (x0, y0, x1, y1) in the same coordinates: rectangle outlines, tab10(i) by box.
//   Category -> its vocab label (the index when there is no vocab); MultiCategory -> the labels of
//   its entries > 0.5 joined by ';'; Regression -> its values. These form the cell's title (several
//   joined by " | "), unless ShowOptions::titles gives one; a title too wide for the cell is drawn
//   smaller, then cut with "..".
// Every sample needs an Image (it fixes the picture's coordinates). ShowOptions::vocabs[k] is the
// vocab of the tuple's item k (DataBlockInfo::vocabs, one per block).
//
// show_batch takes one batch of dls.train (or dls.valid) with one_batch(). Loaders from a DataBlock
// (dls.block set) are decoded by the block (decode_batch: the batch transforms undone, e.g. back to
// u8 pixels) and labelled with its vocabs. Plain loaders (fashion_mnist(), TensorDataset) show xb[0]
// as the Image and each target as a Category (integer [B], labelled with dls.vocab), a Mask (integer
// [B, H, W]) or a Regression (floating). A floating image batch with values clearly outside [0, 1]
// (a normalized one: below -0.05 or above 1.05) is min-max scaled over the whole batch for display.
// The PNG is written atomically (Canvas::save).
// Reference: fastai.data.core.TfmdDL.show_batch, fastai.torch_core.show_image(s).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "strata/data/datablock.hpp"
#include "strata/data/dataloader.hpp"
#include "strata/data/items.hpp"
#include "strata/io/canvas.hpp"
#include "strata/tensor/tensor.hpp"

namespace strata {

struct ShowOptions {
  int max_n = 9;                                      // samples shown (at most)
  int ncols = 0;                                      // 0: ceil(sqrt(n))
  int cell = 160;                                     // picture size in pixels (square)
  std::vector<std::vector<std::string>> vocabs = {};  // vocabs[k]: labels of tuple item k
  std::vector<std::string> titles = {};               // titles[i] replaces sample i's title
  std::vector<Color> title_colors = {};               // title_colors[i]: its color (default black)
};

/// Where things lie in the grid of n samples.
struct ShowGrid {
  static constexpr int kGap = 4, kTitle = 18;
  int n = 0, ncols = 1, nrows = 1, cell = 160;

  int width() const { return ncols * (cell + kGap) + kGap; }
  int height() const { return nrows * (kTitle + cell + kGap) + kGap; }
  /// Left edge of sample i's cell, top of its title band, top of its picture.
  int x0(int i) const { return kGap + (i % ncols) * (cell + kGap); }
  int title_y0(int i) const { return kGap + (i / ncols) * (kTitle + cell + kGap); }
  int image_y0(int i) const { return title_y0(i) + kTitle; }
};

/// The grid of n samples under o (checks o).
inline ShowGrid show_grid(int64_t n, const ShowOptions& o, const char* op = "show_tuples") {
  STRATA_CHECK(n >= 1, op, "got no samples to show, expected at least one");
  STRATA_CHECK(o.cell >= 16 && o.cell <= 4096, op, "got cell = ", o.cell, ", expected a cell size in [16, 4096]");
  STRATA_CHECK(o.ncols >= 0, op, "got ncols = ", o.ncols, ", expected 0 (auto) or a column count");
  ShowGrid g;
  g.n = int(n);
  g.cell = o.cell;
  g.ncols = o.ncols > 0 ? std::min(o.ncols, g.n) : int(std::ceil(std::sqrt(double(n)) - 1e-9));
  g.nrows = (g.n + g.ncols - 1) / g.ncols;
  return g;
}

/// A batched tuple (every item with the same leading batch dim B) as its first min(B, max_n)
/// samples (max_n < 0: all).
inline std::vector<Tuple> batch_to_samples(const Tuple& batch, int64_t max_n = -1) {
  STRATA_CHECK(!batch.empty(), "batch_to_samples", "got an empty tuple, expected batched items");
  const int64_t B = data_of(batch[0]).defined() && data_of(batch[0]).dim() >= 1 ? data_of(batch[0]).size(0) : -1;
  for (size_t k = 0; k < batch.size(); ++k) {
    const Tensor& t = data_of(batch[k]);
    STRATA_CHECK(t.defined() && t.dim() >= 1 && t.size(0) == B, "batch_to_samples", "got ",
                 kind_name(kind_of(batch[k])), " item ", k, " of shape ",
                 t.defined() ? to_string(t.shape()) : std::string("(undefined)"), ", expected a leading batch dim of ",
                 B, " like item 0");
  }
  const int64_t n = max_n < 0 ? B : std::min(B, max_n);
  std::vector<Tuple> out(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i)
    for (const Item& it : batch) out[size_t(i)].push_back(make_item(kind_of(it), data_of(it).select(0, i)));
  return out;
}

namespace detail {

/// Row-major 8-bit RGB pixels.
struct RgbImage {
  int h = 0, w = 0;
  std::vector<uint8_t> px;  // [h, w, 3]
};

/// The values of t (any dtype) as doubles, in row-major order.
inline std::vector<double> show_values(const Tensor& t) {
  const Tensor c = t.detach().to(DType::f64).contiguous();
  const double* p = c.data_ptr<double>();
  return std::vector<double>(p, p + c.numel());
}

/// An Image item's tensor as RGB bytes: u8 as is, floating from [0, 1], other integers clamped to 0..255.
inline RgbImage image_to_rgb(const Tensor& img, const char* op) {
  STRATA_CHECK(img.defined(), op, "got an undefined Image, expected a [C, H, W] tensor");
  const bool chw = img.dim() == 3 && (img.size(0) == 1 || img.size(0) == 3);
  STRATA_CHECK((chw || img.dim() == 2) && img.numel() > 0, op, "got an Image of shape ", img.shape(),
               ", expected [C, H, W] with C = 1 or 3, or [H, W] (one sample, no batch dim)");
  const int64_t C = chw ? img.size(0) : 1, H = img.size(-2), W = img.size(-1);
  const std::vector<double> v = show_values(img);
  const bool fl = img.is_floating_point();
  RgbImage out{.h = int(H), .w = int(W), .px = std::vector<uint8_t>(size_t(H * W * 3))};
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t p = 0; p < H * W; ++p) {
      const double x = v[size_t((C == 1 ? 0 : c) * H * W + p)];
      const double b = fl ? std::clamp(x, 0.0, 1.0) * 255.0 : std::clamp(x, 0.0, 255.0);
      out.px[size_t(p * 3 + c)] = uint8_t(std::isnan(b) ? 0 : std::lround(b));
    }
  return out;
}

/// Source taps of each of n_out destination pixels along an axis of n_in pixels: one nearest
/// pixel when enlarging, the covered pixels weighted by coverage when reducing.
struct Taps {
  std::vector<int> first, count;
  std::vector<double> weight;  // count[i] weights from offset[i]
  std::vector<int> offset;
};
inline Taps resample_taps(int n_in, int n_out) {
  Taps t;
  const double ratio = double(n_in) / n_out;
  for (int i = 0; i < n_out; ++i) {
    t.offset.push_back(int(t.weight.size()));
    if (n_out >= n_in) {  // nearest: the source pixel under this pixel's center
      t.first.push_back(std::min(n_in - 1, int(std::floor((i + 0.5) * ratio))));
      t.count.push_back(1);
      t.weight.push_back(1.0);
      continue;
    }
    const double lo = i * ratio, hi = (i + 1) * ratio;  // the source span of this pixel
    const int s0 = int(std::floor(lo)), s1 = std::min(n_in, int(std::ceil(hi)));
    t.first.push_back(s0);
    t.count.push_back(s1 - s0);
    for (int s = s0; s < s1; ++s) t.weight.push_back((std::min<double>(hi, s + 1) - std::max<double>(lo, s)) / ratio);
  }
  return t;
}

/// src resized to w x h (separable: nearest or area per axis).
inline RgbImage resize_rgb(const RgbImage& src, int w, int h) {
  const Taps tx = resample_taps(src.w, w), ty = resample_taps(src.h, h);
  RgbImage out{.h = h, .w = w, .px = std::vector<uint8_t>(size_t(w) * size_t(h) * 3)};
  for (int j = 0; j < h; ++j)
    for (int i = 0; i < w; ++i) {
      double acc[3] = {0, 0, 0};
      for (int a = 0; a < ty.count[size_t(j)]; ++a) {
        const int sy = ty.first[size_t(j)] + a;
        const double wy = ty.weight[size_t(ty.offset[size_t(j)] + a)];
        for (int b = 0; b < tx.count[size_t(i)]; ++b) {
          const int sx = tx.first[size_t(i)] + b;
          const double wgt = wy * tx.weight[size_t(tx.offset[size_t(i)] + b)];
          const uint8_t* p = &src.px[(size_t(sy) * size_t(src.w) + size_t(sx)) * 3];
          for (int c = 0; c < 3; ++c) acc[c] += wgt * p[c];
        }
      }
      for (int c = 0; c < 3; ++c)
        out.px[(size_t(j) * size_t(w) + size_t(i)) * 3 + size_t(c)] =
            uint8_t(std::clamp(std::lround(acc[c]), 0L, 255L));
    }
  return out;
}

/// Makes a string drawable by stb_easy_font (printable ASCII; others become '?').
inline std::string ascii_only(const std::string& s) {
  std::string out = s;
  for (char& ch : out)
    if (static_cast<unsigned char>(ch) < 32 || static_cast<unsigned char>(ch) > 126) ch = '?';
  return out;
}

inline std::string show_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

/// The label of a target item ("" for items that are not labels).
inline std::string item_label(const Item& it, const std::vector<std::string>* vocab, const char* op) {
  const Tensor& t = data_of(it);
  auto name = [&](int64_t i) {
    return vocab && i >= 0 && i < int64_t(vocab->size()) ? (*vocab)[size_t(i)] : std::to_string(i);
  };
  switch (kind_of(it)) {
    case ItemKind::category: {
      STRATA_CHECK(t.defined() && t.numel() == 1, op, "got a Category of shape ",
                   t.defined() ? to_string(t.shape()) : std::string("(undefined)"),
                   ", expected one index (one sample, no batch dim)");
      return name(std::llround(show_values(t)[0]));
    }
    case ItemKind::multi_category: {
      STRATA_CHECK(t.defined() && t.dim() == 1, op, "got a MultiCategory of shape ",
                   t.defined() ? to_string(t.shape()) : std::string("(undefined)"), ", expected [C] (one sample)");
      std::string s;
      const std::vector<double> v = show_values(t);
      for (size_t i = 0; i < v.size(); ++i)
        if (v[i] > 0.5) s += (s.empty() ? "" : ";") + name(int64_t(i));
      return s;
    }
    case ItemKind::regression: {
      std::string s;
      for (double v : show_values(t)) s += (s.empty() ? "" : ", ") + show_number(v);
      return s;
    }
    default: return "";
  }
}

/// A floating image batch [B, C, H, W] for display: min-max scaled over the batch to [0, 1] when
/// its values are clearly outside [0, 1] (a normalized batch), else as is.
inline Tensor display_range(const Tensor& x) {
  if (!x.is_floating_point() || x.numel() == 0) return x;
  const Tensor d = x.detach().to(DType::f32);
  const double lo = amin(d).item<float>(), hi = amax(d).item<float>();
  if (lo >= -0.05 && hi <= 1.05) return x;
  return hi > lo ? (d - lo) / (hi - lo) : zeros_like(d);
}

/// Draws sample `s` into cell i of g.
inline void draw_sample(Canvas& cv, const ShowGrid& g, int i, const Tuple& s, const std::string& title, Color tc,
                        const char* op) {
  const Image* img = nullptr;
  for (const Item& it : s)
    if (auto p = std::get_if<Image>(&it)) {
      img = p;
      break;
    }
  if (!img) {
    std::string kinds;
    for (const Item& it : s) kinds += (kinds.empty() ? "" : ", ") + std::string(kind_name(kind_of(it)));
    fail(op, "got sample ", i, " with items (", kinds, "), expected an Image in every sample");
  }
  const RgbImage rgb = image_to_rgb(img->data, op);
  // the picture: fitted into the cell, aspect kept, centred
  const double sc = double(g.cell) / std::max(rgb.w, rgb.h);
  const int dw = std::max(1, int(std::lround(rgb.w * sc))), dh = std::max(1, int(std::lround(rgb.h * sc)));
  const int px0 = g.x0(i) + (g.cell - dw) / 2, py0 = g.image_y0(i) + (g.cell - dh) / 2;
  const RgbImage shown = resize_rgb(rgb, dw, dh);
  for (int y = 0; y < dh; ++y)
    for (int x = 0; x < dw; ++x) {
      const uint8_t* p = &shown.px[(size_t(y) * size_t(dw) + size_t(x)) * 3];
      cv.blend(px0 + x, py0 + y, {p[0], p[1], p[2]}, 1.0);
    }
  // image coordinates -> canvas
  const double kx = double(dw) / rgb.w, ky = double(dh) / rgb.h;
  cv.clip(px0, py0, px0 + dw, py0 + dh);
  for (const Item& it : s) {
    const Tensor& t = data_of(it);
    if (const Mask* m = std::get_if<Mask>(&it)) {
      STRATA_CHECK(t.defined() && t.dim() == 2 && t.numel() > 0, op, "got a Mask of shape ",
                   t.defined() ? to_string(t.shape()) : std::string("(undefined)"), ", expected [H, W] (one sample)");
      const int mh = int(t.size(0)), mw = int(t.size(1));
      const std::vector<double> codes = show_values(m->data);
      for (int y = 0; y < dh; ++y)
        for (int x = 0; x < dw; ++x) {
          const int my = std::min(mh - 1, int((y + 0.5) * mh / dh)), mx = std::min(mw - 1, int((x + 0.5) * mw / dw));
          const auto code = std::llround(codes[size_t(my) * size_t(mw) + size_t(mx)]);
          if (code != 0) cv.blend(px0 + x, py0 + y, tab10(int(code - 1)), 0.5);
        }
    } else if (std::holds_alternative<BBoxes>(it)) {
      STRATA_CHECK(t.defined() && ((t.dim() == 2 && t.size(1) == 4) || t.numel() == 0), op, "got BBoxes of shape ",
                   t.defined() ? to_string(t.shape()) : std::string("(undefined)"), ", expected [N, 4] (one sample)");
      const std::vector<double> v = show_values(t);
      for (size_t b = 0; b + 3 < v.size(); b += 4) {
        const double x0 = px0 + v[b] * kx, y0 = py0 + v[b + 1] * ky, x1 = px0 + v[b + 2] * kx, y1 = py0 + v[b + 3] * ky;
        const Point corners[5] = {{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}, {x0, y0}};
        cv.polyline(corners, tab10(int(b / 4)), 2);
      }
    } else if (std::holds_alternative<Points>(it)) {
      STRATA_CHECK(t.defined() && ((t.dim() == 2 && t.size(1) == 2) || t.numel() == 0), op, "got Points of shape ",
                   t.defined() ? to_string(t.shape()) : std::string("(undefined)"), ", expected [N, 2] (one sample)");
      const std::vector<double> v = show_values(t);
      const double r = std::clamp(g.cell / 40.0, 3.0, 6.0);
      for (size_t p = 0; p + 1 < v.size(); p += 2)
        cv.circle(px0 + v[p] * kx, py0 + v[p + 1] * ky, r, {255, 0, 0}, 1, {255, 255, 255});
    }
  }
  cv.no_clip();
  // the title: centred in its band, smaller when too wide, cut when still too wide
  std::string text = ascii_only(title);
  if (text.empty()) return;
  const double room = g.cell - 4;
  double scale = std::min(1.5, room / std::max(1.0, Canvas::text_width(text, 1)));
  if (scale < 1) {
    scale = 1;
    while (text.size() > 1 && Canvas::text_width(text + "..", 1) > room) text.pop_back();
    text += "..";
  }
  cv.text(g.x0(i) + g.cell / 2.0, g.title_y0(i) + ShowGrid::kTitle / 2.0, text, tc,
          {.scale = scale, .h = Align::center, .v = Align::center});
}

}  // namespace detail

/// The title show_tuples gives sample s: its labels (Category, MultiCategory, Regression) joined by " | ".
inline std::string sample_title(const Tuple& s, const std::vector<std::vector<std::string>>& vocabs = {}) {
  std::string title;
  for (size_t k = 0; k < s.size(); ++k) {
    const std::vector<std::string>* vocab = k < vocabs.size() && !vocabs[k].empty() ? &vocabs[k] : nullptr;
    const std::string l = detail::item_label(s[k], vocab, "show_tuples");
    if (!l.empty()) title += (title.empty() ? "" : " | ") + l;
  }
  return title;
}

/// Draws the first o.max_n samples (items without batch dim) as a labelled grid into the PNG at path.
inline void show_tuples(const std::string& path, const std::vector<Tuple>& items, ShowOptions o = {}) {
  STRATA_CHECK(!items.empty(), "show_tuples", "got no samples, expected at least one Tuple to show");
  STRATA_CHECK(o.max_n >= 1, "show_tuples", "got max_n = ", o.max_n, ", expected at least 1");
  const ShowGrid g = show_grid(std::min<int64_t>(int64_t(items.size()), o.max_n), o, "show_tuples");
  Canvas cv(g.width(), g.height());
  for (int i = 0; i < g.n; ++i) {
    const Tuple& s = items[size_t(i)];
    const std::string title = size_t(i) < o.titles.size() ? o.titles[size_t(i)] : sample_title(s, o.vocabs);
    const Color tc = size_t(i) < o.title_colors.size() ? o.title_colors[size_t(i)] : Color{0, 0, 0};
    detail::draw_sample(cv, g, i, s, title, tc, "show_tuples");
  }
  cv.save(path, "show_tuples");
}

namespace detail {

/// A loader's batch as a typed batch tuple for display, and the vocabs of its items: decoded by the
/// DataBlock when dls.block is set, else xb[0] as Image and each target as a Regression (floating),
/// a Mask (integer [B, H, W]) or a Category (other integer targets).
/// Floating images are brought into [0, 1] (display_range).
inline std::pair<Tuple, std::vector<std::vector<std::string>>> decoded_batch(const DataLoaders& dls, const Batch& b,
                                                                              const char* op) {
  Tuple t;
  std::vector<std::vector<std::string>> vocabs;
  if (dls.block) {
    t = dls.block->decode_batch(b);
    vocabs = dls.block->vocabs;
  }
  if (t.empty()) {
    STRATA_CHECK(!b.xb.empty() && b.xb[0].defined() && (b.xb[0].dim() == 4 || b.xb[0].dim() == 3) &&
                     (b.xb[0].dim() == 3 || b.xb[0].size(1) == 1 || b.xb[0].size(1) == 3),
                 op, "got ",
                 b.xb.empty() ? std::string("a batch without inputs")
                              : "xb[0] of shape " + (b.xb[0].defined() ? to_string(b.xb[0].shape()) : std::string("?")),
                 ", expected an image batch [B, C, H, W] with C = 1 or 3 (or [B, H, W]) to show");
    t.push_back(Image{b.xb[0]});
    vocabs.push_back({});
    for (const Tensor& y : b.yb) {
      t.push_back(y.is_floating_point() ? Item(Regression{y}) : y.dim() == 3 ? Item(Mask{y}) : Item(Category{y}));
      vocabs.push_back(dls.vocab);
    }
  }
  bool has_image = false;
  for (Item& it : t)
    if (auto* img = std::get_if<Image>(&it)) {
      img->data = display_range(img->data);
      has_image = true;
    }
  STRATA_CHECK(has_image, op, "got a batch whose decoded items hold no Image, expected one to draw");
  return {std::move(t), std::move(vocabs)};
}

/// The first batch of dls.train or dls.valid (a copy of the loader: dls is not touched), on the host
/// (loaders that make their batches on cuda, after learn.to(kCUDA), hand back device tensors).
inline Batch first_batch(const DataLoaders& dls, bool train, const char* op) {
  DataLoader dl = train ? dls.train : dls.valid;
  STRATA_CHECK(dl.size() > 0, op, "got an empty ", train ? "train" : "valid", " loader (", dl.n(),
               " items), expected at least one batch");
  Batch b = dl.one_batch();
  for (Tensor& t : b.xb) t = to(t, kCPU);
  for (Tensor& t : b.yb) t = to(t, kCPU);
  return b;
}

}  // namespace detail

/// One batch of dls.train (or dls.valid) decoded and drawn as a labelled grid into the PNG at path.
inline void show_batch(const DataLoaders& dls, const std::string& path, ShowOptions o = {}, bool train = true) {
  STRATA_CHECK(o.max_n >= 1, "show_batch", "got max_n = ", o.max_n, ", expected at least 1");
  const Batch b = detail::first_batch(dls, train, "show_batch");
  auto [t, vocabs] = detail::decoded_batch(dls, b, "show_batch");
  if (o.vocabs.empty()) o.vocabs = std::move(vocabs);
  show_tuples(path, batch_to_samples(t, o.max_n), o);
}

}  // namespace strata
