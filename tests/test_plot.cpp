// io/png, io/canvas, io/plot: PNG round trips read back with stb_image (bytes and tensors in every
// layout, against a reference conversion loop); atomic writes (errors name the path, nothing left
// behind); canvas coverage of rectangles, lines and text; tick values and labels against hand-made
// lists; plots checked by where their colors land (relative row positions on linear and log axes,
// gaps at NaN/Inf, markers, legend, grid panels).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "helpers.hpp"
#include <strata/io/plot.hpp>

#include <strata/io/image.hpp>

namespace test_plot {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
namespace fs = std::filesystem;

namespace {

/// A directory for this test process (the last test case removes it).
fs::path scratch_dir() {
  const fs::path dir = fs::temp_directory_path() / ("strata_test_plot_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

struct Pixels {
  int w = 0, h = 0, c = 0;
  std::vector<uint8_t> px;
  Color at(int x, int y) const {
    const uint8_t* p = &px[(size_t(y) * size_t(w) + size_t(x)) * size_t(c)];
    return {p[0], p[1], p[2]};
  }
};

/// Reads a PNG back with read_image, in the channels it was written with, interleaved.
Pixels read_png(const fs::path& path) {
  const Tensor t = read_image(path.string());
  Pixels im{int(t.size(2)), int(t.size(1)), int(t.size(0)), {}};
  const uint8_t* p = t.data_ptr<uint8_t>();
  const size_t n = size_t(im.w) * size_t(im.h);
  im.px.resize(n * size_t(im.c));
  for (size_t i = 0; i < n; ++i)
    for (size_t c = 0; c < size_t(im.c); ++c) im.px[i * size_t(im.c) + c] = p[c * n + i];
  return im;
}

/// Number of pixels of exactly color c in each row.
std::vector<int> row_counts(const Pixels& im, Color c) {
  std::vector<int> n(size_t(im.h), 0);
  for (int y = 0; y < im.h; ++y)
    for (int x = 0; x < im.w; ++x) n[size_t(y)] += im.at(x, y) == c;
  return n;
}

/// The row holding the most pixels of color c (the row of a horizontal line of that color).
int line_row(const Pixels& im, Color c) {
  const auto n = row_counts(im, c);
  return int(std::max_element(n.begin(), n.end()) - n.begin());
}

/// First and last column of color c in row y (-1, -1 when none).
std::pair<int, int> span(const Pixels& im, Color c, int y) {
  int first = -1, last = -1;
  for (int x = 0; x < im.w; ++x)
    if (im.at(x, y) == c) last = x, first = first < 0 ? x : first;
  return {first, last};
}

Series flat(const std::string& label, double x0, double x1, double y, int n = 11) {
  Series s{label, {}, {}};
  for (int i = 0; i < n; ++i) s.x.push_back(x0 + (x1 - x0) * i / (n - 1)), s.y.push_back(y);
  return s;
}

std::vector<std::string> labels(const std::vector<Tick>& ticks, bool major = true) {
  std::vector<std::string> out;
  for (const Tick& t : ticks)
    if (t.major == major) out.push_back(t.label);
  return out;
}

}  // namespace

TEST_CASE("write_png round trips bytes for 1 to 4 channels", "[plot]") {
  for (int c = 1; c <= 4; ++c) {
    const int w = 7 + c, h = 5;
    std::vector<uint8_t> px(size_t(w * h * c));
    for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t((i * 37 + size_t(c) * 11) % 256);
    const fs::path p = scratch_dir() / ("rt" + std::to_string(c) + ".png");
    write_png(p.string(), px.data(), w, h, c);
    write_png(p.string(), px.data(), w, h, c);  // replacing an existing file works too
    const Pixels im = read_png(p);
    CHECK(im.w == w);
    CHECK(im.h == h);
    CHECK(im.c == c);
    CHECK(im.px == px);
  }
}

TEST_CASE("write_png of a tensor in [H,W], [C,H,W] and [H,W,C] layouts", "[plot]") {
  // reference: pixel (y, x, c) = round(clamp(v, 0, 1) * 255), NaN -> 0, for floats; the value for u8
  auto ref = [](const Tensor& t, bool chw) {
    const int64_t H = chw ? t.size(1) : t.size(0), W = chw ? t.size(2) : t.size(1);
    const int64_t C = t.dim() == 2 ? 1 : chw ? t.size(0) : t.size(2);
    std::vector<uint8_t> out;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < C; ++c) {
          const double v = t.dim() == 2 ? th::at(t, {y, x}) : chw ? th::at(t, {c, y, x}) : th::at(t, {y, x, c});
          if (t.dtype() == DType::u8) out.push_back(uint8_t(v));
          else out.push_back(std::isnan(v) ? 0 : uint8_t(std::lround(std::clamp(v, 0.0, 1.0) * 255)));
        }
    return out;
  };
  struct Case {
    Shape shape;
    DType dt;
    bool noncontig, chw;
  };
  const std::vector<Case> cases = {{{6, 9}, DType::f32, false, false},   {{3, 6, 9}, DType::f32, true, true},
                                   {{4, 5, 7}, DType::f64, false, true},  {{6, 9, 3}, DType::f32, true, false},
                                   {{1, 4, 4}, DType::f64, false, true},  {{5, 8, 2}, DType::f32, false, false},
                                   {{6, 9, 3}, DType::u8, false, false},  {{3, 6, 9}, DType::u8, true, true}};
  for (const Case& k : cases) {
    Tensor t = k.dt == DType::u8 ? th::random(k.shape, DType::f64, k.noncontig, 0, 255.99).to(DType::u8)
                                 : th::random(k.shape, k.dt, k.noncontig, -0.3, 1.3);
    if (k.dt == DType::f32 && k.shape.size() == 2) {  // a NaN and both infinities
      t = t.contiguous();
      t.data_ptr<float>()[0] = NAN, t.data_ptr<float>()[1] = INFINITY, t.data_ptr<float>()[2] = -INFINITY;
    }
    INFO("shape " << k.shape << " " << k.dt << " noncontig " << k.noncontig);
    const fs::path p = scratch_dir() / "tensor.png";
    write_png(p.string(), t);
    const Pixels im = read_png(p);
    CHECK(im.w == (k.chw ? k.shape[2] : k.shape[1]));
    CHECK(im.h == (k.chw ? k.shape[1] : k.shape[0]));
    CHECK(im.px == ref(t, k.chw));
  }
  const std::string p = (scratch_dir() / "bad.png").string();
  th::check_throws([&] { write_png(p, zeros({4, 4}, {.dtype = DType::i32})); }, {"write_png", "int32", p});
  th::check_throws([&] { write_png(p, zeros({1, 3, 4, 4})); }, {"write_png", "[1, 3, 4, 4]", p});
  th::check_throws([&] { write_png(p, zeros({5, 6, 7})); }, {"write_png", "[5, 6, 7]", "channels"});
  th::check_throws([&] { write_png(p, zeros({0, 6})); }, {"write_png", "non-empty"});
  CHECK(!fs::exists(p));
}

TEST_CASE("write_png errors name the path and leave no file behind", "[plot]") {
  const fs::path missing = scratch_dir() / "no_such_dir" / "deeper" / "a.png";
  const uint8_t px[12] = {};
  th::check_throws([&] { write_png(missing.string(), px, 2, 2, 3); }, {"write_png", missing.string()});
  CHECK(!fs::exists(missing.parent_path()));
  th::check_throws([&] { plot_lines(missing.string(), {flat("a", 0, 1, 1)}); }, {"plot_lines", missing.string()});
  CHECK(!fs::exists(missing.parent_path()));

  // the target is a directory: the temporary file is written, the rename fails, the temporary goes
  const fs::path dir = scratch_dir() / "only_a_dir";
  fs::create_directories(dir / "target.png");
  th::check_throws([&] { write_png((dir / "target.png").string(), px, 2, 2, 3); },
                   {"write_png", (dir / "target.png").string(), "rename"});
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    entries += 1;
    CHECK(e.path().filename() == "target.png");
  }
  CHECK(entries == 1);
  CHECK(fs::is_directory(dir / "target.png"));

  th::check_throws([&] { write_png("x.png", px, 0, 2, 3); }, {"write_png", "0x2", "x.png"});
  th::check_throws([&] { write_png("x.png", px, 2, 2, 5); }, {"write_png", "5 channels", "x.png"});
  th::check_throws([&] { write_png("x.png", nullptr, 2, 2, 3); }, {"write_png", "null", "x.png"});
}

TEST_CASE("Canvas fills rectangles by coverage, draws lines and text inside their boxes", "[plot]") {
  Canvas cv(40, 30);
  const Color red{255, 0, 0}, white{255, 255, 255}, black{0, 0, 0};
  cv.fill_rect(2, 3, 5, 6, red);  // crisp: exactly pixels x 2..4, y 3..5
  for (int y = 0; y < 10; ++y)
    for (int x = 0; x < 10; ++x) CHECK(cv.at(x, y) == (x >= 2 && x < 5 && y >= 3 && y < 6 ? red : white));
  cv.fill_rect(10.5, 0, 12, 1, black);  // half of pixel 10, all of pixel 11
  CHECK(cv.at(10, 0) == Color{128, 128, 128});
  CHECK(cv.at(11, 0) == black);
  CHECK(cv.at(12, 0) == white);
  cv.line(20, 10.5, 30, 10.5, black, 1);  // a 1-px line on the centers of row 10
  for (int x = 21; x < 30; ++x) CHECK((cv.at(x, 10) == black && cv.at(x, 9) == white && cv.at(x, 11) == white));
  cv.clip(0, 20, 40, 30);
  cv.fill_rect(0, 0, 40, 30, black, 0.5);  // only rows 20.. change
  CHECK(cv.at(0, 19) == white);
  CHECK(cv.at(0, 20) == Color{128, 128, 128});
  cv.no_clip();

  // text stays inside [x, x + text_width] x [y, y + cap height + descender], horizontal or vertical
  for (bool vertical : {false, true}) {
    Canvas t(120, 120);
    const std::string s = "Ag1e-07";
    const double sc = 2, w = Canvas::text_width(s, sc), h = Canvas::text_height(sc) + 2 * sc;
    t.text(10, 100, s, black, {.scale = sc, .vertical = vertical});
    int ink = 0, outside = 0;
    for (int y = 0; y < 120; ++y)
      for (int x = 0; x < 120; ++x) {
        if (t.at(x, y) == white) continue;
        ink += 1;
        const double u = vertical ? 100 - (y + 0.5) : x + 0.5 - 10, v = vertical ? x + 0.5 - 10 : y + 0.5 - 100;
        outside += !(u >= 0 && u <= w && v >= 0 && v <= h);
      }
    INFO("vertical " << vertical);
    CHECK(ink > 40);
    CHECK(outside == 0);
    CHECK(w == Approx(2 * (7 * 6 - 1)));  // 7 glyphs of 6 units, less the trailing space
  }
}

TEST_CASE("axis_ticks: 1-2-5 steps, powers of ten on a log axis", "[plot]") {
  using V = std::vector<std::string>;
  CHECK(labels(axis_ticks(0, 1, false, 8)) == V{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"});
  CHECK(labels(axis_ticks(-0.3, 2.7, false, 6)) == V{"0.0", "0.5", "1.0", "1.5", "2.0", "2.5"});
  CHECK(labels(axis_ticks(-0.07, 0.13, false, 4)) == V{"-0.05", "0.00", "0.05", "0.10"});
  CHECK(labels(axis_ticks(-12, 405, false, 6)) == V{"0", "100", "200", "300", "400"});
  CHECK(labels(axis_ticks(0, 1.5e6, false, 4)) == V{"0", "5.0e+05", "1.0e+06", "1.5e+06"});
  CHECK(labels(axis_ticks(1e-5, 3e-5, false, 3)) == V{"1e-05", "2e-05", "3e-05"});
  CHECK(labels(axis_ticks(1.00009, 1.00016, false, 4)) == V{"1.00010", "1.00012", "1.00014", "1.00016"});
  CHECK(labels(axis_ticks(0.101, 0.1412, false, 2)) == V{"0.12", "0.14"});  // never < 2 ticks
  for (const Tick& t : axis_ticks(0, 1, false, 8)) CHECK(t.value == Approx(std::stod(t.label)).margin(1e-12));

  const auto lr = axis_ticks(1e-7, 10, true, 10);
  CHECK(labels(lr) == V{"1e-07", "1e-06", "1e-05", "1e-04", "1e-03", "1e-02", "1e-01", "1e+00", "1e+01"});
  CHECK(labels(lr, false).size() == 8 * 8);  // minor ticks 2..9 x 10^d between
  for (const Tick& t : lr) CHECK((t.value >= 1e-7 * (1 - 1e-9) && t.value <= 10 * (1 + 1e-9)));
  CHECK(labels(axis_ticks(1e-7, 10, true, 4)) == V{"1e-06", "1e-03", "1e+00"});        // every 3rd power
  CHECK(labels(axis_ticks(0.5e-30, 2e30, true, 5)) == V{"1e-20", "1e+00", "1e+20"});  // every 20th
  CHECK(labels(axis_ticks(1.5e-3, 6e-2, true, 8)) == V{"2e-03", "5e-03", "1e-02", "2e-02", "5e-02"});
  CHECK(labels(axis_ticks(2e-3, 6.5e-3, true, 8)) == V{"2e-03", "3e-03", "4e-03", "5e-03", "6e-03"});
  // within a factor 1.2 no multiple of a power of ten is enough: linear ticks
  const auto narrow = axis_ticks(0.0031, 0.0035, true, 4);
  CHECK(labels(narrow) == V{"0.0031", "0.0032", "0.0033", "0.0034", "0.0035"});

  th::check_throws([] { axis_ticks(1, 0, false); }, {"axis_ticks", "[1, 0]", "lo < hi"});
  th::check_throws([] { axis_ticks(0, 1, true); }, {"axis_ticks", "log", "lo > 0"});
  th::check_throws([] { axis_ticks(0, NAN, false); }, {"axis_ticks", "finite"});
}

TEST_CASE("plot_lines puts each curve where its values say, on linear and log axes", "[plot]") {
  const fs::path p = scratch_dir() / "lines.png";
  auto rows = [&](std::vector<double> ys, bool log_y) {
    std::vector<Series> s;
    for (size_t i = 0; i < ys.size(); ++i) s.push_back(flat("s" + std::to_string(i), 0, 10, ys[i]));
    plot_lines(p.string(), s, {.log_y = log_y, .width = 640, .height = 480});
    const Pixels im = read_png(p);
    REQUIRE((im.w == 640 && im.h == 480 && im.c == 3));
    std::vector<int> r;
    for (size_t i = 0; i < ys.size(); ++i) r.push_back(line_row(im, tab10(int(i))));
    return r;
  };
  const auto lin = rows({1, 2, 3}, false);
  CHECK(lin[0] > lin[1]);
  CHECK(lin[1] > lin[2]);
  CHECK(std::abs(lin[1] - (lin[0] + lin[2]) / 2.0) <= 1);
  CHECK(lin[0] - lin[2] > 300);  // the data fill most of the height
  const auto logr = rows({1, 10, 100}, true);
  CHECK(std::abs(logr[1] - (logr[0] + logr[2]) / 2.0) <= 1);
  const auto lin2 = rows({1, 10, 100}, false);
  CHECK(double(lin2[0] - lin2[1]) / (lin2[0] - lin2[2]) == Approx(9.0 / 99).margin(0.01));

  // x: a curve over half the x range is half as long, from the same start; a marker lands on the data
  plot_lines(p.string(), {flat("full", 0, 10, 1), flat("half", 0, 5, 2)},
             {.width = 640, .height = 480, .markers = {{5, 1}}});
  const Pixels im = read_png(p);
  const int r0 = line_row(im, tab10(0)), r1 = line_row(im, tab10(1));
  const auto [a0, a1] = span(im, tab10(0), r0);
  const auto [b0, b1] = span(im, tab10(1), r1);
  CHECK(std::abs(a0 - b0) <= 1);
  CHECK(std::abs((b1 - b0) - (a1 - a0) / 2.0) <= 2);
  CHECK(im.at((a0 + a1) / 2, r0) == detail::kMarkerColor);
  // a legend: each labeled color also appears as a short handle away from its curve
  for (int k = 0; k < 2; ++k) {
    const auto n = row_counts(im, tab10(k));
    const int curve = line_row(im, tab10(k));
    int handle_rows = 0;
    for (int y = 0; y < im.h; ++y) handle_rows += std::abs(y - curve) > 3 && n[size_t(y)] >= 20;
    CHECK(handle_rows >= 1);
  }
  plot_lines(p.string(), {flat("", 0, 10, 1), flat("", 0, 5, 2)}, {.width = 640, .height = 480});
  const Pixels nolegend = read_png(p);
  const auto n = row_counts(nolegend, tab10(1));
  const int curve = line_row(nolegend, tab10(1));
  for (int y = 0; y < nolegend.h; ++y)
    if (std::abs(y - curve) > 3) CHECK(n[size_t(y)] < 20);
}

TEST_CASE("plot_lines skips NaN and Inf, breaking the line, without changing the ranges", "[plot]") {
  const fs::path p = scratch_dir() / "nan.png";
  Series a = flat("a", 0, 20, 1, 21), b = flat("b", 0, 20, 2, 21);
  plot_lines(p.string(), {a, b});
  const Pixels clean = read_png(p);
  a.y[10] = NAN, a.y[15] = INFINITY, b.y[20] = -INFINITY, b.x[3] = NAN;
  a.y.push_back(1e300), a.x.push_back(NAN);  // a huge value at a NaN x is skipped too
  plot_lines(p.string(), {a, b});
  const Pixels gappy = read_png(p);
  const int ra = line_row(clean, tab10(0)), rb = line_row(clean, tab10(1));
  CHECK(line_row(gappy, tab10(0)) == ra);
  CHECK(line_row(gappy, tab10(1)) == rb);
  const auto [c0, c1] = span(clean, tab10(0), ra);
  auto col = [&](double x) { return int(std::lround(c0 + (c1 - c0) * x / 20)); };
  auto has = [&](const Pixels& im, double x, int row) { return im.at(col(x), row) == tab10(0); };
  for (double x : {9.5, 10.0, 10.5, 14.5, 15.0, 15.5}) {
    CHECK(has(clean, x, ra));
    CHECK(!has(gappy, x, ra));
  }
  for (double x : {2.0, 8.5, 11.5, 13.5, 16.5, 19.0}) CHECK(has(gappy, x, ra));

  // nothing usable at all still writes empty axes
  plot_lines(p.string(), {{"nan", {}, {NAN, INFINITY}}}, {.title = "empty", .log_x = true});
  CHECK(read_png(p).w == 800);
}

TEST_CASE("plot_lines on a log axis: exponential data is a straight line, values <= 0 skipped", "[plot]") {
  const fs::path p = scratch_dir() / "log.png";
  Series s{"exp", {}, {}};
  for (int i = 0; i <= 60; ++i) s.x.push_back(i), s.y.push_back(std::pow(10.0, i / 10.0 - 3));
  s.x.insert(s.x.begin(), {-2, -1}), s.y.insert(s.y.begin(), {0.0, -5.0});
  // mean row of the curve's color in each column, then the largest distance from the chord
  auto deviation = [&](bool log_y) {
    plot_lines(p.string(), {s}, {.log_y = log_y});
    const Pixels im = read_png(p);
    std::map<int, double> mid;
    for (int x = 0; x < im.w; ++x) {
      double sum = 0;
      int n = 0;
      for (int y = 0; y < im.h; ++y)
        if (im.at(x, y) == tab10(0)) sum += y, n += 1;
      if (n) mid[x] = sum / n;
    }
    REQUIRE(mid.size() > 400);
    const auto first = std::next(mid.begin(), 20), last = std::prev(mid.end(), 20);
    double worst = 0;
    for (auto it = first; it != last; ++it) {
      const double f = double(it->first - first->first) / (last->first - first->first);
      worst = std::max(worst, std::abs(it->second - (first->second + f * (last->second - first->second))));
    }
    return worst;
  };
  CHECK(deviation(true) < 1.5);
  CHECK(deviation(false) > 50);
}

TEST_CASE("plot_grid places panels side by side; plot errors name the path", "[plot]") {
  const fs::path p = scratch_dir() / "grid.png";
  const PlotOptions o{.title = "lr", .width = 300, .height = 200};
  plot_grid(p.string(), {{{flat("lr", 0, 1, 1)}, o}, {{flat("mom", 0, 1, 1)}, o}, {{flat("x", 0, 1, 1)}, o}}, 2);
  const Pixels im = read_png(p);
  CHECK((im.w == 600 && im.h == 400));
  auto count = [&](int x0, int y0) {
    int n = 0;
    for (int y = y0; y < y0 + 200; ++y)
      for (int x = x0; x < x0 + 300; ++x) n += im.at(x, y) == tab10(0);
    return n;
  };
  CHECK(count(0, 0) > 200);
  CHECK(count(300, 0) > 200);
  CHECK(count(0, 200) > 200);
  CHECK(count(300, 200) == 0);

  const std::string q = (scratch_dir() / "bad_plot.png").string();
  th::check_throws([&] { plot_lines(q, {{"loss", {1, 2}, {1, 2, 3}}}); }, {"plot_lines", "'loss'", "2 x and 3 y", q});
  th::check_throws([&] { plot_lines(q, {}, {.width = 10}); }, {"plot_lines", "10x500", q});
  th::check_throws([&] { plot_grid(q, {}, 2); }, {"plot_grid", "0 panels", q});
  th::check_throws([&] { plot_grid(q, {{{}, o}}, 0); }, {"plot_grid", "cols = 0", q});
  CHECK(!fs::exists(q));
  fs::remove_all(scratch_dir());
}

}  // namespace test_plot
