// plot_lines / plot_grid: line plots written as PNG, for Recorder.plot_loss, plot_sched and lr_find.
//
// Looks like a default matplotlib figure: white background, a box of axes, outward ticks with
// "nice" values (1-2-5 steps on a linear axis; powers of ten, then 1-2-5 multiples, on a log axis),
// a light grid, matplotlib's tab10 color cycle, a legend when there are several labeled series
// (placed in the corner that hides the fewest data points, like loc="best"), highlighted red
// markers (lr_find's suggestion), and 5% margins around the data.
//
// Contract: points whose x or y is NaN or infinite (or <= 0 on a log axis) are skipped, and the
// line is broken there as in matplotlib, so a loss that blew up leaves a gap instead of wrecking
// the axis range; the ranges come from the remaining finite data and the markers. A series with an
// empty x is plotted against 0, 1, 2, ... The file is written atomically (see write_png); errors
// name the op and the path.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "strata/core/error.hpp"
#include "strata/io/canvas.hpp"

namespace strata {

/// One curve: y against x (x empty = 0, 1, 2, ...).
struct Series {
  std::string label{};
  std::vector<double> x{}, y{};
};

struct PlotOptions {
  std::string title{}, xlabel{}, ylabel{};
  bool log_x = false, log_y = false;
  int width = 800, height = 500;
  std::vector<std::pair<double, double>> markers{};  // highlighted points, e.g. lr_find's suggestion
  bool grid = true;
};

/// One tick of an axis: its value, its label (empty for minor ticks) and whether it is major.
struct Tick {
  double value = 0;
  std::string label{};
  bool major = true;
};

namespace detail {

inline constexpr double kTickScale = 1.5, kTitleScale = 2;  // text sizes, in stb_easy_font units
inline constexpr Color kInk = {0, 0, 0}, kGridColor = {232, 232, 232}, kMarkerColor = {230, 0, 0};

inline std::string format_double(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

/// Label of linear tick v on an axis with tick spacing `step` whose largest |value| is `maxabs`:
/// fixed point with as many decimals as the step needs; scientific (as many digits as the step
/// needs) for large values, for values all below 1e-3 and for steps below 1e-8.
inline std::string linear_tick_label(double v, double step, double maxabs) {
  if (std::abs(v) < step * 1e-9) v = 0;  // no "-0.0"
  const int step_exp = int(std::floor(std::log10(step) + 1e-9));
  if (maxabs >= 1e5 || maxabs < 1e-3 || step_exp < -8) {
    if (v == 0) return "0";
    const int digits = std::max(0, int(std::floor(std::log10(maxabs) + 1e-9)) - step_exp);
    return format_double(("%." + std::to_string(digits) + "e").c_str(), v);
  }
  return format_double(("%." + std::to_string(std::max(0, -step_exp)) + "f").c_str(), v);
}

/// Ticks k * step (step in 1-2-5 x 10^n) inside [lo, hi], at most about max_ticks of them and at
/// least two (a finer step is taken when a coarse one would leave fewer).
inline std::vector<Tick> linear_ticks(double lo, double hi, int max_ticks) {
  std::vector<Tick> ticks;
  for (int n = std::max(1, max_ticks); ticks.size() < 2 && n <= 4 * std::max(1, max_ticks); ++n) {
    const double raw = (hi - lo) / n;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = 10 * mag;
    for (double m : {1.0, 2.0, 5.0})
      if (m * mag >= raw * (1 - 1e-9)) {
        step = m * mag;
        break;
      }
    const double eps = 1e-9;
    const double k0 = std::ceil(lo / step - eps), k1 = std::floor(hi / step + eps);
    const double maxabs = std::max(std::abs(k0 * step), std::abs(k1 * step));
    ticks.clear();
    for (double k = k0; k <= k1 && ticks.size() < 100; ++k)
      ticks.push_back({k * step, linear_tick_label(k * step, step, maxabs), true});
  }
  return ticks;
}

}  // namespace detail

/// Ticks for an axis showing [lo, hi] (values, not logarithms), at most about max_ticks labeled.
/// Linear: 1-2-5 steps. Log: powers of ten labeled "1e-07" (every k-th one, k in 1-2-3-5 x 10^n,
/// when there are too many; unlabeled minor ticks between), or, when fewer than two powers of ten are
/// in range, 1-2-5 x 10^n (every m x 10^n when those are fewer than three), or linear ticks when
/// even those are fewer than two.
inline std::vector<Tick> axis_ticks(double lo, double hi, bool log, int max_ticks = 8) {
  STRATA_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi && (!log || lo > 0), "axis_ticks", "got range [",
               lo, ", ", hi, "]", log ? " on a log axis" : "", ", expected finite lo < hi", log ? " with lo > 0" : "");
  max_ticks = std::max(2, max_ticks);
  if (!log) return detail::linear_ticks(lo, hi, max_ticks);
  const double llo = std::log10(lo), lhi = std::log10(hi), eps = 1e-9;
  const int d0 = int(std::ceil(llo - eps)), d1 = int(std::floor(lhi + eps));
  auto in_range = [&](double v) { return std::log10(v) >= llo - eps && std::log10(v) <= lhi + eps; };
  std::vector<Tick> ticks;
  if (d1 - d0 + 1 >= 2) {
    // every `stride`-th power of ten labeled (stride 1, 2, 3, 5, 10, 20, 30, 50, ...), the other
    // powers as minor ticks; with every power labeled, minor ticks at 2..9 x 10^d too
    const int need = (d1 - d0 + 1 + max_ticks - 1) / max_ticks;
    int stride = 1;
    for (int mag = 1; stride < need; mag *= 10)
      for (int m : {1, 2, 3, 5})
        if ((stride = m * mag) >= need) break;
    for (int d = int(std::floor(llo)); d <= d1; ++d) {
      const double p = std::pow(10.0, d);
      if (d >= d0 && ((d % stride) + stride) % stride == 0) ticks.push_back({p, detail::format_double("%.0e", p), true});
      else if (d >= d0 && d1 - d0 <= 4 * max_ticks) ticks.push_back({p, "", false});
      if (stride == 1)
        for (int m = 2; m <= 9; ++m)
          if (in_range(m * p)) ticks.push_back({m * p, "", false});
    }
    return ticks;
  }
  // within about a decade: 1, 2 and 5 x 10^d labeled, or every m x 10^d when that gives too few
  for (bool all : {false, true}) {
    ticks.clear();
    int majors = 0;
    for (int d = int(std::floor(llo)); d <= d1 + 1; ++d)
      for (int m = 1; m <= 9; ++m) {
        const double v = m * std::pow(10.0, d);
        if (!in_range(v)) continue;
        const bool major = all || m == 1 || m == 2 || m == 5;
        majors += major;
        ticks.push_back({v, major ? detail::format_double("%.0e", v) : "", major});
      }
    if (majors >= 3 || (all && majors >= 2)) return ticks;
  }
  return detail::linear_ticks(lo, hi, max_ticks);
}

namespace detail {

/// The map from data to pixels of one axis: values -> (log10 if log) -> [lo, hi] -> [p0, p1].
struct AxisMap {
  bool log = false;
  double lo = 0, hi = 1;  // in transformed units (log10 of the value on a log axis)
  double p0 = 0, p1 = 1;  // pixels of lo and hi
  bool usable(double v) const { return std::isfinite(v) && (!log || v > 0); }
  double t(double v) const { return log ? std::log10(v) : v; }
  double operator()(double v) const { return p0 + (t(v) - lo) / (hi - lo) * (p1 - p0); }
  double value(double tv) const { return log ? std::pow(10.0, tv) : tv; }
};

/// Range of the usable values in transformed units, widened when flat, plus 5% margins each side.
inline void fit_range(AxisMap& a, const std::vector<double>& vals) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : vals)
    if (a.usable(v)) lo = std::min(lo, a.t(v)), hi = std::max(hi, a.t(v));
  if (lo > hi) lo = 0, hi = 1;  // no usable data: empty axes over [0, 1] or [1, 10]
  if (hi - lo <= 1e-12 * std::max(std::abs(lo), std::abs(hi))) {
    const double pad = a.log ? 0.1 : lo != 0 ? std::abs(lo) * 0.05 : 0.5;
    lo -= pad, hi += pad;
  }
  const double m = (hi - lo) * 0.05;
  a.lo = lo - m, a.hi = hi + m;
}

/// The usable points of s in pixels, split into runs at skipped points (NaN, Inf, <= 0 on log).
inline std::vector<std::vector<Point>> series_runs(const Series& s, const AxisMap& ax, const AxisMap& ay) {
  std::vector<std::vector<Point>> runs(1);
  for (size_t i = 0; i < s.y.size(); ++i) {
    const double x = s.x.empty() ? double(i) : s.x[i], y = s.y[i];
    if (ax.usable(x) && ay.usable(y)) runs.back().push_back({ax(x), ay(y)});
    else if (!runs.back().empty()) runs.emplace_back();
  }
  if (runs.back().empty()) runs.pop_back();
  return runs;
}

inline void check_series(const std::vector<Series>& series, const char* op, const std::string& path) {
  for (size_t i = 0; i < series.size(); ++i)
    STRATA_CHECK(series[i].x.empty() || series[i].x.size() == series[i].y.size(), op, "got series ", i, " ('",
                 series[i].label, "') with ", series[i].x.size(), " x and ", series[i].y.size(), " y values",
                 path.empty() ? "" : " for '" + path + "'", ", expected as many x as y (or no x)");
}

inline void check_size(const PlotOptions& o, const char* op, const std::string& path) {
  STRATA_CHECK(o.width >= 100 && o.height >= 80 && o.width <= 16384 && o.height <= 16384, op, "got size ", o.width,
               "x", o.height, " for '", path, "', expected a width in 100..16384 and a height in 80..16384");
}

inline double max_label_width(const std::vector<Tick>& ticks) {
  double w = 0;
  for (const Tick& t : ticks) w = std::max(w, Canvas::text_width(t.label, kTickScale));
  return w;
}

}  // namespace detail

/// Draws one plot into the rectangle [x, x + w) x [y, y + h) of cv.
inline void draw_plot(Canvas& cv, int x, int y, int w, int h, const std::vector<Series>& series,
                      const PlotOptions& o = {}) {
  using namespace detail;
  check_series(series, "draw_plot", "");
  const double fs = Canvas::text_height(kTickScale), pad = fs * 0.6, tick_len = 5;
  cv.clip(x, y, x + w, y + h);
  cv.fill_rect(x, y, x + w, y + h, {255, 255, 255});

  // ranges from the usable data and the markers
  AxisMap ax{.log = o.log_x}, ay{.log = o.log_y};
  std::vector<double> xs, ys;
  for (const Series& s : series)
    for (size_t i = 0; i < s.y.size(); ++i) {
      const double sx = s.x.empty() ? double(i) : s.x[i];
      if (ax.usable(sx) && ay.usable(s.y[i])) xs.push_back(sx), ys.push_back(s.y[i]);
    }
  for (auto [mx, my] : o.markers)
    if (ax.usable(mx) && ay.usable(my)) xs.push_back(mx), ys.push_back(my);
  fit_range(ax, xs);
  fit_range(ay, ys);

  // layout: vertical first (fixed by font sizes), then y ticks, whose labels set the left margin
  const int top = y + int(std::ceil(o.title.empty() ? pad * 2 : Canvas::text_height(kTitleScale) + pad * 2.5));
  const int bottom = y + h - int(std::ceil(tick_len + pad + fs + pad + (o.xlabel.empty() ? 0 : fs + pad)));
  ay.p0 = bottom, ay.p1 = top;
  const auto yticks = axis_ticks(ay.value(ay.lo), ay.value(ay.hi), ay.log, std::clamp((bottom - top) / 40, 3, 10));
  const int left = x + int(std::ceil(pad + (o.ylabel.empty() ? 0 : fs + pad) + max_label_width(yticks) + pad / 2 + tick_len));
  std::vector<Tick> xticks;
  int right = x + w - int(pad * 2);
  for (int n = std::clamp((right - left) / 65, 3, 12);; --n) {
    xticks = axis_ticks(ax.value(ax.lo), ax.value(ax.hi), ax.log, n);
    right = x + w - int(std::ceil(std::max(pad * 2, Canvas::text_width(xticks.empty() ? "" : xticks.back().label, kTickScale) / 2 + pad / 2)));
    int majors = 0;
    for (const Tick& t : xticks) majors += t.major;
    const double room = double(right - left) / std::max(1, majors);
    if (n <= 2 || max_label_width(xticks) + fs < room) break;
  }
  ax.p0 = left, ax.p1 = right;
  STRATA_CHECK(right - left >= 20 && bottom - top >= 20, "plot_lines", "got a ", w, "x", h,
               " plot, expected one large enough for its axes, labels and title");

  // grid, then the series clipped to the axes, then markers
  if (o.grid) {
    for (const Tick& t : xticks)
      if (t.major) cv.fill_rect(std::round(ax(t.value)) - 0.5, top, std::round(ax(t.value)) + 0.5, bottom, kGridColor);
    for (const Tick& t : yticks)
      if (t.major) cv.fill_rect(left, std::round(ay(t.value)) - 0.5, right, std::round(ay(t.value)) + 0.5, kGridColor);
  }
  cv.clip(left, top, right, bottom);
  std::vector<std::vector<std::vector<Point>>> runs;
  for (size_t i = 0; i < series.size(); ++i) {
    runs.push_back(series_runs(series[i], ax, ay));
    for (const auto& run : runs.back())
      if (run.size() == 1) cv.circle(run[0].x, run[0].y, 2.5, tab10(int(i)));  // a lone point: a dot
      else cv.polyline(run, tab10(int(i)), 2);
  }
  for (auto [mx, my] : o.markers)
    if (ax.usable(mx) && ay.usable(my)) cv.circle(ax(mx), ay(my), 5, kMarkerColor, 1, {150, 0, 0});
  cv.clip(x, y, x + w, y + h);

  // the box, ticks and labels
  cv.fill_rect(left - 1, top - 1, right + 1, top, kInk);
  cv.fill_rect(left - 1, bottom, right + 1, bottom + 1, kInk);
  cv.fill_rect(left - 1, top, left, bottom, kInk);
  cv.fill_rect(right, top, right + 1, bottom, kInk);
  for (const Tick& t : xticks) {
    const double px = std::round(ax(t.value)), len = t.major ? tick_len : tick_len * 0.6;
    cv.fill_rect(px - 0.5, bottom + 1, px + 0.5, bottom + 1 + len, kInk);
    cv.text(px, bottom + 1 + tick_len + pad / 2, t.label, kInk, {.scale = kTickScale, .h = Align::center});
  }
  for (const Tick& t : yticks) {
    const double py = std::round(ay(t.value)), len = t.major ? tick_len : tick_len * 0.6;
    cv.fill_rect(left - 1 - len, py - 0.5, left - 1, py + 0.5, kInk);
    cv.text(left - 1 - tick_len - pad / 2, py, t.label, kInk,
            {.scale = kTickScale, .h = Align::end, .v = Align::center});
  }
  if (!o.title.empty())
    cv.text((left + right) / 2.0, top - pad * 1.5, o.title, kInk,
            {.scale = kTitleScale, .h = Align::center, .v = Align::end});
  if (!o.xlabel.empty())
    cv.text((left + right) / 2.0, y + h - pad, o.xlabel, kInk, {.scale = kTickScale, .h = Align::center, .v = Align::end});
  if (!o.ylabel.empty())
    cv.text(x + pad, (top + bottom) / 2.0, o.ylabel, kInk,
            {.scale = kTickScale, .h = Align::center, .v = Align::start, .vertical = true});

  // legend in the corner that hides the fewest data points (upper right first, as loc="best")
  std::vector<size_t> entries;
  for (size_t i = 0; i < series.size(); ++i)
    if (!series[i].label.empty()) entries.push_back(i);
  if (series.size() >= 2 && !entries.empty()) {
    const double handle = 30, row = fs * 1.9, inset = pad;
    double lw = 0;
    for (size_t i : entries) lw = std::max(lw, Canvas::text_width(series[i].label, kTickScale));
    lw += handle + pad * 3, lw = std::min(lw, double(right - left) - 2 * inset);
    const double lh = row * double(entries.size()) + pad * 0.8;
    const double corners[4][2] = {{right - inset - lw, top + inset}, {left + inset, top + inset},
                                  {left + inset, bottom - inset - lh}, {right - inset - lw, bottom - inset - lh}};
    int best = 0;
    size_t best_hits = std::numeric_limits<size_t>::max();
    for (int c = 0; c < 4; ++c) {
      size_t hits = 0;
      auto inside = [&](Point p) {
        return p.x >= corners[c][0] && p.x <= corners[c][0] + lw && p.y >= corners[c][1] && p.y <= corners[c][1] + lh;
      };
      for (const auto& sr : runs)
        for (const auto& run : sr)
          for (size_t k = 0; k < run.size(); ++k) {
            hits += inside(run[k]);
            if (k == 0) continue;  // sample long segments every ~4 px as well
            const int steps = int(std::min(200.0, std::hypot(run[k].x - run[k - 1].x, run[k].y - run[k - 1].y) / 4));
            for (int s = 1; s < steps; ++s) {
              const double f = double(s) / steps;
              hits += inside({run[k - 1].x + f * (run[k].x - run[k - 1].x), run[k - 1].y + f * (run[k].y - run[k - 1].y)});
            }
          }
      if (hits < best_hits) best = c, best_hits = hits;
    }
    const double lx = std::round(corners[best][0]), ly = std::round(corners[best][1]);
    cv.fill_rect(lx, ly, lx + lw, ly + lh, {204, 204, 204});
    cv.fill_rect(lx + 1, ly + 1, lx + lw - 1, ly + lh - 1, {255, 255, 255}, 0.85);
    cv.clip(int(lx), int(ly), int(lx + lw), int(ly + lh));
    for (size_t e = 0; e < entries.size(); ++e) {
      const double cy = ly + pad * 0.4 + row * (double(e) + 0.5);
      cv.line(lx + pad, cy, lx + pad + handle, cy, tab10(int(entries[e])), 2);
      cv.text(lx + pad * 2 + handle, cy, series[entries[e]].label, kInk, {.scale = kTickScale, .v = Align::center});
    }
  }
  cv.no_clip();
}

/// Writes a line plot of `series` to the PNG file `path`.
inline void plot_lines(const std::string& path, const std::vector<Series>& series, const PlotOptions& o = {}) {
  detail::check_series(series, "plot_lines", path);
  detail::check_size(o, "plot_lines", path);
  Canvas cv(o.width, o.height);
  draw_plot(cv, 0, 0, o.width, o.height, series, o);
  cv.save(path, "plot_lines");
}

/// Writes several plots side by side, `cols` per row, each in a cell as large as the largest
/// panel's width x height (fastai's plot_sched: lr and mom next to each other).
inline void plot_grid(const std::string& path, const std::vector<std::pair<std::vector<Series>, PlotOptions>>& panels,
                      int cols) {
  STRATA_CHECK(!panels.empty() && cols >= 1, "plot_grid", "got ", panels.size(), " panels and cols = ", cols,
               " for '", path, "', expected at least one panel and cols >= 1");
  int cw = 0, ch = 0;
  for (const auto& p : panels) {
    detail::check_series(p.first, "plot_grid", path);
    detail::check_size(p.second, "plot_grid", path);
  }
  for (const auto& p : panels) cw = std::max(cw, p.second.width), ch = std::max(ch, p.second.height);
  cols = std::min(cols, int(panels.size()));
  const int rows = (int(panels.size()) + cols - 1) / cols;
  Canvas cv(cw * cols, ch * rows);
  for (size_t i = 0; i < panels.size(); ++i)
    draw_plot(cv, int(i % size_t(cols)) * cw, int(i / size_t(cols)) * ch, cw, ch, panels[i].first, panels[i].second);
  cv.save(path, "plot_grid");
}

}  // namespace strata
