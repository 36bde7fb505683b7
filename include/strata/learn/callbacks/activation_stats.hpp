// ActivationStats (fastai/callback/hook.py): per-layer statistics of the
// activations during training, and the "colorful dimension" plot of their histograms. Built on
// HookCallback<ActivationStat> (hook_callback.hpp); its plots read only what it copied, so the
// callback may outlive its Learner and model.
//
//   auto stats = std::make_shared<ActivationStats>(/*with_hist=*/true);
//   learn.fit(1, 1e-3, {}, {stats});
//   stats->plot_layer_stats("stats0.png", 0);   // mean / std / % near zero of layer 0 per batch
//   stats->color_dim("cd.png", -2);             // layer -2's histograms, one column per batch
//   stats->plot_layers("layers.png");           // one colorful-dimension panel per hooked layer
//
// ActivationStats (order -20, before TrainEvalCallback counts the batch) records, per training batch
// and per hooked layer, of the layer's output o (as fastai, in float; we accumulate in double):
//   mean = sum(o) / n,  std = sqrt(sum((o - mean)^2) / (n - 1))  (torch.std, unbiased),
//   near_zero = #{o <= 0.05} / n  (compared in o's dtype, as torch: 0.05f counts for f32),
//   hist (with_hist) = torch.histc(o, 40, 0, 10): bin = floor((o - 0) * 40 / 10), o == 10 in the last
//   bin, values outside [0, 10] ignored (NaN too; torch 1.13 puts NaN in bin 0). The bin is computed
//   in double (torch: in float), so a value within float rounding of a bin edge may land one bin apart.
// stats[batch][layer] holds them (fastai's stats); a new fit starts a new list at its first training
// batch (fastai clears it at every before_fit, so learn.get_preds() wiped it; here it does not).
// hist(idx) is log(1 + counts) as [40, n_batches] (fastai's hist); color_dim draws it bin 0 at the
// bottom, one column per batch, through matplotlib's viridis colour map scaled from the image's min
// to its max (imshow's default), stretched (nearest neighbour) to width x height pixels (imshow
// would keep square cells; stretching keeps a fit of a few batches readable). viridis is
// interpolated from 9 of matplotlib's samples.
// Layer indices may be negative (from the end), as in fastai's color_dim(-2).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "strata/io/canvas.hpp"
#include "strata/io/plot.hpp"
#include "strata/learn/callbacks/hook_callback.hpp"
#include "strata/learn/learner.hpp"

namespace strata {

/// One layer's activations on one batch (fastai's {'mean', 'std', 'near_zero', 'hist'}).
struct ActivationStat {
  double mean = ::std::numeric_limits<double>::quiet_NaN();
  double std = ::std::numeric_limits<double>::quiet_NaN();  // fastai's name ('std'): ::std below
  double near_zero = ::std::numeric_limits<double>::quiet_NaN();
  Tensor hist = {};  // f32 [bins] counts, when asked for
};

/// mean, unbiased std, fraction <= 0.05 and (with_hist) torch.histc(out, bins, lo, hi) of every
/// element of out (any shape, floating), as ActivationStats records them.
inline ActivationStat activation_stat(const Tensor& out, bool with_hist = false, int64_t bins = 40, double lo = 0,
                                      double hi = 10) {
  STRATA_CHECK(out.defined(), "activation_stat", "got an undefined tensor, expected a floating tensor");
  STRATA_CHECK(out.is_floating_point(), "activation_stat", "got dtype ", out.dtype(), ", expected a floating tensor");
  STRATA_CHECK(bins >= 1 && lo < hi, "activation_stat", "got bins = ", bins, " over [", lo, ", ", hi,
               "], expected bins >= 1 and lo < hi");
  NoGrad ng;
  const Tensor o = (out.dtype() == DType::f64 ? out : out.to(DType::f32)).contiguous();
  ActivationStat s;
  if (with_hist) s.hist = zeros({bins}, {.dtype = DType::f32});
  const int64_t n = o.numel();
  if (n == 0) return s;
  dispatch_float(o.dtype(), "activation_stat", [&]<class V>(type_tag<V>) {
    if constexpr (std::is_same_v<V, float> || std::is_same_v<V, double>) {
      const V* p = o.data_ptr<V>();
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += double(p[i]);
      const double mean = sum / double(n);
      double ss = 0;
      int64_t near = 0;
      float* h = with_hist ? s.hist.data_ptr<float>() : nullptr;
      for (int64_t i = 0; i < n; ++i) {
        const double v = double(p[i]);
        ss += (v - mean) * (v - mean);
        near += p[i] <= V(0.05);  // in the element type, as torch's o <= 0.05
        if (h && v >= lo && v <= hi)  // NaN fails both
          h[std::min<int64_t>(bins - 1, int64_t((v - lo) * double(bins) / (hi - lo)))] += 1;
      }
      s.mean = mean;
      s.std = n > 1 ? std::sqrt(ss / double(n - 1)) : std::numeric_limits<double>::quiet_NaN();
      s.near_zero = double(near) / double(n);
    }
  });
  return s;
}

/// One layer's statistics over the recorded batches (fastai's layer_stats: means, stds, near_zero).
struct LayerStats {
  std::vector<double> mean, std, near_zero;
};

struct ColorDimOptions {
  int width = 800, height = 400;  // pixels of the image (fastai's figsize (10, 5))
};

struct PlotLayersOptions {
  int cols = 2;                   // panels per row
  int width = 480, height = 260;  // one panel: a 24 px title band, then the image (4 px margins)
};

/// Draws img [rows, cols] (row 0 at the bottom, as imshow origin='lower') into [x, x + w) x [y, y + h)
/// of cv, nearest neighbour, through viridis scaled from img's min to its max.
inline void draw_color_dim(Canvas& cv, int x, int y, int w, int h, const Tensor& img) {
  STRATA_CHECK(img.defined() && img.dim() == 2 && img.size(0) > 0 && img.size(1) > 0 && w > 0 && h > 0,
               "draw_color_dim", "got ", img.defined() ? "an image of shape " + to_string(img.shape()) : std::string("no image"),
               " into ", w, "x", h, " pixels, expected a non-empty [rows, cols] image and a positive size");
  const Tensor a = img.to(DType::f64).contiguous();
  const double* p = a.data_ptr<double>();
  const int64_t rows = a.size(0), cols = a.size(1);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int64_t i = 0; i < rows * cols; ++i)
    if (std::isfinite(p[i])) lo = std::min(lo, p[i]), hi = std::max(hi, p[i]);
  const double span = hi > lo ? hi - lo : 1;
  for (int j = 0; j < h; ++j) {
    const int64_t r = rows - 1 - int64_t(j) * rows / h;  // top pixel row shows the last bin
    for (int i = 0; i < w; ++i) {
      const int64_t col = int64_t(i) * cols / w;
      cv.blend(x + i, y + j, viridis((p[r * cols + col] - lo) / span), 1);
    }
  }
}

/// Per-layer activation statistics of every training batch, and their plots (fastai's ActivationStats).
class ActivationStats : public HookCallback<ActivationStat> {
 public:
  bool with_hist;
  /// stats[batch][layer], one entry per recorded training batch.
  std::vector<std::vector<ActivationStat>> stats;

  explicit ActivationStats(bool with_hist_ = false, int64_t every = 0) : ActivationStats(with_hist_, HookCallbackOptions{.every = every}) {}
  ActivationStats(bool with_hist_, HookCallbackOptions o) : HookCallback(std::move(o)), with_hist(with_hist_) {
    order = -20;
  }
  std::string name() const override { return "ActivationStats"; }

  ActivationStat hook(nn::Module&, const Tensor&, const Tensor& out) override { return activation_stat(out, with_hist); }

  void before_fit() override {
    HookCallback::before_fit();
    new_fit_ = true;
  }
  void after_batch() override {
    if (recording()) {
      if (std::exchange(new_fit_, false)) stats.clear();
      std::vector<ActivationStat> row;
      for (auto& s : hooks.stored()) row.push_back(s ? *s : ActivationStat{});
      stats.push_back(std::move(row));
    }
    HookCallback::after_batch();
  }

  /// The number of hooked layers in the recorded stats.
  int64_t n_layers() const { return stats.empty() ? int64_t(module_names.size()) : int64_t(stats.front().size()); }

  /// means, stds and near_zero fractions of layer idx over the recorded batches.
  LayerStats layer_stats(int64_t idx) const {
    const size_t l = layer(idx, "layer_stats");
    LayerStats out;
    for (const auto& row : stats) {
      out.mean.push_back(row[l].mean);
      out.std.push_back(row[l].std);
      out.near_zero.push_back(row[l].near_zero);
    }
    return out;
  }

  /// log(1 + histogram counts) of layer idx: f32 [40, n_batches] (fastai's hist).
  Tensor hist(int64_t idx) const {
    const size_t l = layer(idx, "hist");
    STRATA_CHECK(with_hist, "ActivationStats::hist", "got ActivationStats(with_hist = false), expected with_hist = true");
    int64_t bins = 0;
    for (const auto& row : stats)
      if (row[l].hist.defined()) bins = row[l].hist.numel();
    STRATA_CHECK(bins > 0, "ActivationStats::hist", "got no histogram for layer ", idx, ", expected a fit that ran it");
    const int64_t nb = int64_t(stats.size());
    Tensor out = zeros({bins, nb}, {.dtype = DType::f32});
    float* o = out.data_ptr<float>();
    for (int64_t b = 0; b < nb; ++b) {
      const Tensor& h = stats[size_t(b)][l].hist;
      if (!h.defined()) continue;  // the layer did not run in that batch: zeros
      const Tensor hc = h.contiguous();
      const float* hp = hc.data_ptr<float>();
      for (int64_t k = 0; k < bins; ++k) o[k * nb + b] = float(std::log1p(double(hp[k])));
    }
    return out;
  }

  /// Writes the colorful dimension of layer idx: o.width x o.height pixels, bin 0 at the bottom.
  void color_dim(const std::string& path, int64_t idx, ColorDimOptions o = {}) const {
    STRATA_CHECK(o.width >= 1 && o.height >= 1, "color_dim", "got size ", o.width, "x", o.height, ", expected >= 1");
    const Tensor h = hist(idx);
    Canvas cv(o.width, o.height);
    draw_color_dim(cv, 0, 0, o.width, o.height, h);
    cv.save(path, "color_dim");
  }

  /// Writes mean, std and % near zero (as a fraction, as fastai) of layer idx per batch: 1200 x 300.
  void plot_layer_stats(const std::string& path, int64_t idx) const {
    const LayerStats s = layer_stats(idx);
    std::vector<std::pair<std::vector<Series>, PlotOptions>> panels;
    const char* titles[3] = {"mean", "std", "% near zero"};
    const std::vector<double>* ys[3] = {&s.mean, &s.std, &s.near_zero};
    for (int k = 0; k < 3; ++k)
      panels.push_back({{Series{.y = *ys[k]}}, PlotOptions{.title = titles[k], .width = 400, .height = 300}});
    plot_grid(path, panels, 3);
  }

  /// Writes one colorful-dimension panel per hooked layer, titled "<name> <Type>", o.cols per row:
  /// (o.cols x o.width) x (rows x o.height) pixels (fewer columns when there are fewer layers).
  void plot_layers(const std::string& path, PlotLayersOptions o = {}) const {
    const int64_t n = n_layers();
    STRATA_CHECK(n > 0 && o.cols >= 1 && o.width >= 16 && o.height >= 40, "plot_layers", "got ", n,
                 " hooked layers, cols = ", o.cols, ", panels of ", o.width, "x", o.height,
                 ", expected layers, cols >= 1 and panels of at least 16x40");
    const int cols = int(std::min<int64_t>(o.cols, n)), rows = int((n + cols - 1) / cols);
    constexpr int kBand = 24, kMargin = 4;
    Canvas cv(cols * o.width, rows * o.height);
    for (int64_t l = 0; l < n; ++l) {
      const int x = int(l % cols) * o.width, y = int(l / cols) * o.height;
      // names and types copied at before_fit: the model may be gone by now
      std::string title = size_t(l) < module_names.size() ? module_names[size_t(l)] : std::to_string(l);
      if (size_t(l) < module_types.size()) title += (title.empty() ? "" : " ") + module_types[size_t(l)];
      cv.text(x + o.width / 2.0, y + kBand / 2.0, title, {0, 0, 0}, {.scale = 1.5, .h = Align::center, .v = Align::center});
      draw_color_dim(cv, x + kMargin, y + kBand, o.width - 2 * kMargin, o.height - kBand - kMargin, hist(l));
    }
    cv.save(path, "plot_layers");
  }

 private:
  bool new_fit_ = false;

  size_t layer(int64_t idx, const char* op) const {
    const int64_t n = n_layers();
    STRATA_CHECK(!stats.empty(), op, "got no recorded batches, expected a fit with training batches first");
    STRATA_CHECK(idx >= -n && idx < n, op, "got layer index ", idx, ", expected one in [", -n, ", ", n, ")");
    return size_t(idx < 0 ? idx + n : idx);
  }
};

}  // namespace strata
