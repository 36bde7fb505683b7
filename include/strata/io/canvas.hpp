// Canvas: a small RGB raster to draw plots on: anti-aliased lines and polylines, filled rectangles,
// filled circles (markers) and text, then save() as PNG.
//
// Coordinates are in pixels, x to the right and y down; pixel (i, j) covers [i, i+1) x [j, j+1), so
// its center is (i + 0.5, j + 0.5) and a rectangle from integer corners is drawn crisp. Shapes are
// anti-aliased by coverage: a pixel is blended with the shape's color in proportion to how much of
// it the shape covers (lines and circles by distance from the pixel center, rectangles by area).
// A polyline is rasterized into a coverage buffer first (max over its segments) and blended once, so
// its joints are not drawn twice. An optional clip rectangle limits all drawing.
//
// Text uses stb_easy_font (Sean Barrett, public domain; Debian's libstb-dev): a 7-unit-high bitmap
// font made of axis-aligned quads, which we fill at any scale (scale 2 gives 14 px capitals), left
// to right or rotated a quarter turn to read bottom to top (axis labels).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/error.hpp"
#include "strata/io/png.hpp"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace strata {

struct Color {
  uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(Color, Color) = default;
};

/// matplotlib's default color cycle ("tab10"); i wraps around.
inline Color tab10(int i) {
  static constexpr Color colors[10] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                       {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127},
                                       {188, 189, 34}, {23, 190, 207}};
  return colors[((i % 10) + 10) % 10];
}

/// A colour map from evenly spaced stops: t in [0, 1] (clamped; NaN reads as 0) falls between
/// stops[k] and stops[k + 1] for k = floor(t * (n - 1)) and is mixed linearly, each channel rounded.
inline Color colormap(std::span<const Color> stops, double t) {
  STRATA_CHECK(!stops.empty(), "colormap", "got no stops, expected at least one colour");
  if (stops.size() == 1) return stops[0];
  const int last = int(stops.size()) - 1;
  const double u = std::clamp(std::isnan(t) ? 0.0 : t, 0.0, 1.0) * last;
  const int k = std::min(last - 1, int(u));
  const double f = u - k;
  auto mix = [f](uint8_t a, uint8_t b) { return uint8_t(std::lround(a + (b - a) * f)); };
  const Color a = stops[size_t(k)], b = stops[size_t(k + 1)];
  return {mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b)};
}

/// matplotlib's "viridis" at t in [0, 1] (its colours at t = k/8, linearly interpolated).
inline Color viridis(double t) {
  static constexpr Color stops[9] = {{68, 1, 84},    {71, 45, 123},  {59, 82, 139},  {44, 114, 142}, {33, 145, 140},
                                     {39, 173, 129}, {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  return colormap(stops, t);
}

/// matplotlib's "inferno" at t in [0, 1] (its colours at t = k/8, linearly interpolated).
inline Color inferno(double t) {
  static constexpr Color stops[9] = {{0, 0, 4},     {31, 12, 72},   {85, 15, 109},  {136, 34, 106}, {186, 54, 85},
                                     {227, 89, 51}, {249, 140, 10}, {249, 201, 50}, {252, 255, 164}};
  return colormap(stops, t);
}

/// matplotlib's "Blues" (ColorBrewer's 9 steps, linearly interpolated) at t in [0, 1].
inline Color blues(double t) {
  static constexpr Color stops[9] = {{247, 251, 255}, {222, 235, 247}, {198, 219, 239}, {158, 202, 225}, {107, 174, 214},
                                     {66, 146, 198},  {33, 113, 181},  {8, 81, 156},    {8, 48, 107}};
  return colormap(stops, t);
}

struct Point {
  double x = 0, y = 0;
};

enum class Align { start, center, end };

/// How text is placed: (x, y) is the anchor; `h` and `v` say which part of the text box sits there
/// (start = left/top). The box is the capitals' height; descenders hang below it.
struct TextStyle {
  double scale = 2;
  Align h = Align::start, v = Align::start;
  bool vertical = false;  // rotated a quarter turn counter-clockwise, reading bottom to top
};

class Canvas {
 public:
  static constexpr double kCapHeight = 7;  // stb_easy_font units

  Canvas(int width, int height, Color background = {255, 255, 255}) : w_(width), h_(height) {
    STRATA_CHECK(width > 0 && height > 0 && int64_t(width) * height < (int64_t(1) << 28), "Canvas", "got size ",
                 width, "x", height, ", expected width and height > 0 and fewer than 2^28 pixels");
    px_.resize(size_t(w_) * size_t(h_) * 3);
    for (size_t i = 0; i < px_.size(); i += 3) px_[i] = background.r, px_[i + 1] = background.g, px_[i + 2] = background.b;
    no_clip();
  }

  int width() const { return w_; }
  int height() const { return h_; }
  /// RGB bytes, row-major [height, width, 3], top row first.
  const std::vector<uint8_t>& pixels() const { return px_; }
  Color at(int x, int y) const {
    STRATA_CHECK(x >= 0 && x < w_ && y >= 0 && y < h_, "Canvas::at", "got pixel (", x, ", ", y,
                 "), expected one inside ", w_, "x", h_);
    const uint8_t* p = &px_[(size_t(y) * size_t(w_) + size_t(x)) * 3];
    return {p[0], p[1], p[2]};
  }

  /// Limits later drawing to the pixels inside [x0, x1) x [y0, y1) (intersected with the canvas).
  void clip(int x0, int y0, int x1, int y1) {
    cx0_ = std::max(0, x0), cy0_ = std::max(0, y0), cx1_ = std::min(w_, x1), cy1_ = std::min(h_, y1);
  }
  void no_clip() { cx0_ = 0, cy0_ = 0, cx1_ = w_, cy1_ = h_; }

  /// Mixes color c into pixel (x, y) with weight alpha in [0, 1]; pixels outside the clip are left.
  void blend(int x, int y, Color c, double alpha) {
    if (x < cx0_ || x >= cx1_ || y < cy0_ || y >= cy1_ || !(alpha > 0)) return;
    const double a = std::min(alpha, 1.0);
    uint8_t* p = &px_[(size_t(y) * size_t(w_) + size_t(x)) * 3];
    const uint8_t src[3] = {c.r, c.g, c.b};
    for (int k = 0; k < 3; ++k) p[k] = uint8_t(std::lround(p[k] + (src[k] - p[k]) * a));
  }

  /// Fills [x0, x1) x [y0, y1); pixels on fractional edges get their covered fraction.
  void fill_rect(double x0, double y0, double x1, double y1, Color c, double alpha = 1) {
    begin_coverage();
    add_rect(x0, y0, x1, y1);
    end_coverage(c, alpha);
  }

  /// A straight line of the given width with round caps.
  void line(double x0, double y0, double x1, double y1, Color c, double width = 1) {
    const Point pts[2] = {{x0, y0}, {x1, y1}};
    polyline(pts, c, width);
  }

  /// Connected line segments through pts (one point draws a dot of the line's width).
  void polyline(std::span<const Point> pts, Color c, double width = 1) {
    if (pts.empty()) return;
    begin_coverage();
    if (pts.size() == 1) add_segment(pts[0], pts[0], width / 2);
    for (size_t i = 1; i < pts.size(); ++i) add_segment(pts[i - 1], pts[i], width / 2);
    end_coverage(c, 1);
  }

  /// A filled disc, with an optional outline `edge` pixels wide in `edge_color`.
  void circle(double cx, double cy, double r, Color fill, double edge = 0, Color edge_color = {}) {
    begin_coverage();
    add_segment({cx, cy}, {cx, cy}, r);
    end_coverage(edge > 0 ? edge_color : fill, 1);
    if (edge > 0 && r > edge) {
      begin_coverage();
      add_segment({cx, cy}, {cx, cy}, r - edge);
      end_coverage(fill, 1);
    }
  }

  /// Width of s in pixels at `scale` (the widest line if s has several).
  static double text_width(std::string_view s, double scale = 2) {
    if (s.empty()) return 0;
    std::string buf(s);
    return (stb_easy_font_width(buf.data()) - 1) * scale;  // the font counts one unit of trailing space
  }
  static double text_height(double scale = 2) { return kCapHeight * scale; }

  /// Draws s (ASCII) anchored at (x, y) as `style` says.
  void text(double x, double y, std::string_view s, Color c, const TextStyle& style = {}) {
    if (s.empty()) return;
    const double sc = style.scale, tw = text_width(s, sc), th = text_height(sc);
    auto shift = [](Align a, double len) { return a == Align::start ? 0.0 : a == Align::center ? -len / 2 : -len; };
    // origin of the text in its own frame (u along the text, v down), then mapped onto the canvas
    const double du = shift(style.h, tw), dv = shift(style.v, th);
    std::string buf(s);
    std::vector<char> vbuf(buf.size() * 1024 + 64);
    const int quads = stb_easy_font_print(0, 0, buf.data(), nullptr, vbuf.data(), int(vbuf.size()));
    begin_coverage();
    for (int q = 0; q < quads; ++q) {
      // each quad is 4 vertices of {float x, y, z; uint8 rgba[4]}; take the two opposite corners
      const float* v0 = reinterpret_cast<const float*>(vbuf.data() + size_t(q) * 64);
      const float* v2 = reinterpret_cast<const float*>(vbuf.data() + size_t(q) * 64 + 32);
      const double u0 = du + v0[0] * sc, u1 = du + v2[0] * sc, w0 = dv + v0[1] * sc, w1 = dv + v2[1] * sc;
      if (!style.vertical) add_rect(x + u0, y + w0, x + u1, y + w1);
      else add_rect(x + w0, y - u1, x + w1, y - u0);  // (u, v) -> (v, -u): a quarter turn counter-clockwise
    }
    end_coverage(c, 1);
  }

  /// Writes the canvas as an RGB PNG (atomically; see write_png); errors start with `op`.
  void save(const std::string& path, const char* op = "Canvas::save") const {
    detail::write_png_as(op, path, px_.data(), w_, h_, 3);
  }

 private:
  // Coverage buffer: shapes add into cov_ inside the dirty box [bx0, bx1) x [by0, by1), then
  // end_coverage blends the color once per pixel and clears what it used.
  void begin_coverage() {
    if (cov_.empty()) cov_.assign(size_t(w_) * size_t(h_), 0.0f);
    bx0_ = w_, by0_ = h_, bx1_ = 0, by1_ = 0;
  }
  bool box(double x0, double y0, double x1, double y1, int& ix0, int& iy0, int& ix1, int& iy1) {
    if (!(x0 < x1) || !(y0 < y1)) return false;  // also refuses NaN
    ix0 = int(std::max<double>(cx0_, std::floor(x0))), iy0 = int(std::max<double>(cy0_, std::floor(y0)));
    ix1 = int(std::min<double>(cx1_, std::ceil(x1))), iy1 = int(std::min<double>(cy1_, std::ceil(y1)));
    if (ix0 >= ix1 || iy0 >= iy1) return false;
    bx0_ = std::min(bx0_, ix0), by0_ = std::min(by0_, iy0), bx1_ = std::max(bx1_, ix1), by1_ = std::max(by1_, iy1);
    return true;
  }
  // Area coverage, summed (adjacent rectangles of a glyph then join without a seam).
  void add_rect(double x0, double y0, double x1, double y1) {
    int ix0, iy0, ix1, iy1;
    if (!box(x0, y0, x1, y1, ix0, iy0, ix1, iy1)) return;
    for (int j = iy0; j < iy1; ++j) {
      const double fy = std::min<double>(y1, j + 1) - std::max<double>(y0, j);
      for (int i = ix0; i < ix1; ++i) {
        const double fx = std::min<double>(x1, i + 1) - std::max<double>(x0, i);
        float& c = cov_[size_t(j) * size_t(w_) + size_t(i)];
        c = std::min(1.0f, c + float(fx * fy));
      }
    }
  }
  // Distance coverage of a thick segment a-b with half width hw and round caps, max-combined.
  void add_segment(Point a, Point b, double hw) {
    const double pad = hw + 1;
    int ix0, iy0, ix1, iy1;
    if (!box(std::min(a.x, b.x) - pad, std::min(a.y, b.y) - pad, std::max(a.x, b.x) + pad,
             std::max(a.y, b.y) + pad, ix0, iy0, ix1, iy1))
      return;
    const double dx = b.x - a.x, dy = b.y - a.y, len2 = dx * dx + dy * dy;
    for (int j = iy0; j < iy1; ++j)
      for (int i = ix0; i < ix1; ++i) {
        const double px = i + 0.5 - a.x, py = j + 0.5 - a.y;
        const double t = len2 > 0 ? std::clamp((px * dx + py * dy) / len2, 0.0, 1.0) : 0.0;
        const double d = std::hypot(px - t * dx, py - t * dy);
        // a line thinner than a pixel is drawn one pixel wide and fainter
        const double cov = std::clamp(std::max(hw, 0.5) + 0.5 - d, 0.0, 1.0) * std::min(1.0, hw * 2);
        float& c = cov_[size_t(j) * size_t(w_) + size_t(i)];
        c = std::max(c, float(cov));
      }
  }
  void end_coverage(Color c, double alpha) {
    for (int j = by0_; j < by1_; ++j)
      for (int i = bx0_; i < bx1_; ++i) {
        float& v = cov_[size_t(j) * size_t(w_) + size_t(i)];
        blend(i, j, c, v * alpha);
        v = 0;
      }
  }

  int w_, h_;
  std::vector<uint8_t> px_;
  std::vector<float> cov_;
  int cx0_ = 0, cy0_ = 0, cx1_ = 0, cy1_ = 0;  // clip
  int bx0_ = 0, by0_ = 0, bx1_ = 0, by1_ = 0;  // dirty box of the coverage buffer
};

}  // namespace strata
