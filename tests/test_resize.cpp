// Item-level resize / crop / flip: kernels (kernels/cpu/resize.hpp) against their plain `_ref`
// loops, whole-image and box resampling against PyTorch goldens (tools/make_resize_golden.py), and
// the transforms of data/resize.hpp: fastai geometry, one crop per tuple, determinism, splits.
#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "helpers.hpp"
#include "kernels/cpu/resize.hpp"
#include "nn_golden.hpp"
#include "strata/data/resize.hpp"

namespace test_resize {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

const th::Golden& goldens() {
  static const th::Golden g = th::load_golden("resize_golden.txt");
  return g;
}

// A source buffer of C planes H x W in one of three layouts: planar, interleaved (HWC), or planar
// with padded rows and a gap between planes; returns the strides.
template <class T>
std::vector<T> make_src(std::mt19937& rng, int64_t C, int64_t H, int64_t W, int layout, cpu::ResizeGeom& g) {
  g.C = C, g.H = H, g.W = W;
  if (layout == 0) g.sc = H * W, g.sh = W, g.sw = 1;
  else if (layout == 1) g.sc = 1, g.sh = W * C, g.sw = C;
  else g.sh = W * 2 + 3, g.sw = 2, g.sc = H * g.sh + 5;
  std::vector<T> v(size_t(C * g.sc + H * g.sh + W * g.sw + 8));
  std::uniform_int_distribution<int> d(0, 255);
  for (auto& x : v) x = T(d(rng));
  return v;
}

double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// (row, col) of the largest value of a [1, H, W] image
std::pair<int64_t, int64_t> argmax_hw(const Tensor& img) {
  const std::vector<double> v = th::values(img);
  const int64_t W = img.size(-1);
  const auto at = std::max_element(v.begin(), v.end()) - v.begin();
  return {at / W, at % W};
}

const cpu::PadMode kModes[] = {cpu::PadMode::zeros, cpu::PadMode::border, cpu::PadMode::reflection};

}  // namespace

TEST_CASE("resize kernels: bilinear fast == _ref (u8, f32, f64; up, down, boxes outside, pad modes, strides)",
          "[resize]") {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> sz(1, 37), layout(0, 2);
  std::uniform_real_distribution<double> u(-0.6, 1.2);
  int u8_off = 0, u8_total = 0;
  for (int trial = 0; trial < 60; ++trial) {
    cpu::ResizeGeom g;
    const int64_t C = trial % 3 + 1, H = sz(rng), W = sz(rng), lay = layout(rng);
    g.OH = sz(rng) + 1, g.OW = sz(rng) + 1;
    g.pad = kModes[trial % 3];
    if (trial % 4 == 0) g.y0 = 0, g.x0 = 0, g.h = double(H), g.w = double(W);  // whole image
    else g.y0 = u(rng) * H, g.x0 = u(rng) * W, g.h = (0.1 + u(rng) + 0.6) * H, g.w = (0.1 + u(rng) + 0.6) * W;
    INFO("trial " << trial << " C " << C << " H " << H << " W " << W << " -> " << g.OH << "x" << g.OW << " box "
                  << g.y0 << " " << g.x0 << " " << g.h << " " << g.w << " pad " << int(g.pad) << " layout " << lay);
    const size_t n = size_t(C * g.OH * g.OW);
    {
      cpu::ResizeGeom gg = g;
      const auto src = make_src<float>(rng, C, H, W, int(lay), gg);
      std::vector<float> a(n), b(n);
      cpu::resize_bilinear(src.data(), a.data(), gg);
      cpu::resize_bilinear_ref(src.data(), b.data(), gg);
      th::check_close(as_double(a), as_double(b), 1e-3, 1e-5, "f32");
      std::vector<double> sd(src.begin(), src.end()), da(n), db(n);
      cpu::resize_bilinear(sd.data(), da.data(), gg);
      cpu::resize_bilinear_ref(sd.data(), db.data(), gg);
      th::check_close(da, db, 1e-9, 1e-12, "f64");
      // u8: the same samples rounded; fused multiply-adds may move a .5 tie by one
      std::vector<uint8_t> s8(src.begin(), src.end()), a8(n), b8(n);
      cpu::resize_bilinear(s8.data(), a8.data(), gg);
      cpu::resize_bilinear_ref(s8.data(), b8.data(), gg);
      CHECK(max_diff(as_double(a8), as_double(b8)) <= 1.0);
      for (size_t i = 0; i < n; ++i) {
        u8_off += a8[i] != b8[i];
        CHECK(std::abs(double(a8[i]) - std::floor(double(da[i]) + 0.5)) <= 1.0);
      }
      u8_total += int(n);
    }
  }
  CHECK(u8_off * 1000 < u8_total);  // off-by-one only on rare ties
}

TEST_CASE("resize kernels: nearest and dihedral copies fast == _ref", "[resize]") {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> sz(1, 23), layout(0, 2);
  std::uniform_real_distribution<double> u(-0.7, 1.3);
  for (int trial = 0; trial < 40; ++trial) {
    cpu::ResizeGeom g;
    const int64_t C = trial % 2 + 1, H = sz(rng), W = sz(rng);
    g.OH = sz(rng), g.OW = sz(rng), g.pad = kModes[trial % 3];
    g.y0 = u(rng) * H, g.x0 = u(rng) * W, g.h = (0.2 + u(rng) + 0.7) * H, g.w = (0.2 + u(rng) + 0.7) * W;
    INFO("trial " << trial);
    const auto src = make_src<int64_t>(rng, C, H, W, layout(rng), g);
    const size_t n = size_t(C * g.OH * g.OW);
    std::vector<int64_t> a(n), b(n);
    cpu::resize_nearest(src.data(), a.data(), g);
    cpu::resize_nearest_ref(src.data(), b.data(), g);
    CHECK(a == b);
    for (int k = 0; k < 8; ++k) {
      std::vector<int64_t> da(size_t(C * H * W)), db(size_t(C * H * W));
      cpu::dihedral_copy(src.data(), da.data(), C, H, W, g.sc, g.sh, g.sw, k & 4, k & 1, k & 2);
      cpu::dihedral_copy_ref(src.data(), db.data(), C, H, W, g.sc, g.sh, g.sw, k & 4, k & 1, k & 2);
      CHECK(da == db);
    }
  }
  // the reference itself on a 2 x 3 plane: transpose, then flip the output columns
  const std::vector<int> x = {1, 2, 3, 4, 5, 6}, want = {4, 1, 5, 2, 6, 3};
  std::vector<int> y(6);
  cpu::dihedral_copy_ref(x.data(), y.data(), 1, 2, 3, 6, 3, 1, true, true, false);
  CHECK(y == want);
}

TEST_CASE("resample_bilinear: whole images and boxes match PyTorch (interpolate, grid_sample)", "[resize]") {
  const th::Golden& gd = goldens();
  for (int k = 0; k < 3; ++k) {
    const std::string p = "whole." + std::to_string(k);
    const Tensor x = gd[p + ".x"], want = gd[p + ".y"];
    const ItemGeom g{.h = double(x.size(1)), .w = double(x.size(2)), .OH = want.size(1), .OW = want.size(2)};
    th::check_close(resample_bilinear(x, g), want, 1e-9, 1e-9, p + " f64");
    th::check_close(resample_bilinear(x.to(DType::f32), g), want, 2e-4, 1e-6, p + " f32");
    // u8 in, u8 out: torch's values rounded (ties may go either way)
    const std::vector<double> got8 = th::values(resample_bilinear(x.to(DType::u8), g)), w = th::values(want);
    for (size_t i = 0; i < w.size(); ++i) CHECK(std::abs(got8[i] - std::round(w[i])) <= 0.5 + 1e-9);
    // non-contiguous input (a transposed copy viewed back)
    const Tensor nc = x.transpose(1, 2).contiguous().transpose(1, 2);
    REQUIRE(!nc.is_contiguous());
    th::check_close(resample_bilinear(nc, g), want, 1e-9, 1e-9, p + " non-contiguous");
  }
  const std::vector<double> geo = th::values(gd["box.geom"]);
  const std::pair<const char*, PadMode> modes[] = {
      {"zeros", PadMode::zeros}, {"border", PadMode::border}, {"reflection", PadMode::reflection}};
  for (const auto& [name, mode] : modes) {
    const ItemGeom g{.y0 = geo[0], .x0 = geo[1], .h = geo[2], .w = geo[3], .OH = int64_t(geo[4]),
                     .OW = int64_t(geo[5]), .pad = mode};
    th::check_close(resample_bilinear(gd["box.x"], g), gd[std::string("box.") + name + ".y"], 1e-9, 1e-9,
                    std::string("box ") + name);
  }
  for (int k = 0; k < 2; ++k) {
    const std::string p = "near." + std::to_string(k);
    const Tensor x = gd[p + ".x"].to(DType::i64), want = gd[p + ".y"];
    const ItemGeom g{.h = double(x.size(1)), .w = double(x.size(2)), .OH = want.size(1), .OW = want.size(2)};
    const Tensor got = resample_nearest(x, g);
    CHECK(got.dtype() == DType::i64);
    th::check_close(got, want, 0, 0, p);
  }
}

TEST_CASE("resample_bilinear / resample_nearest on batches: leading dims are planes", "[resize]") {
  // [B, C, H, W] f32, big enough for the planes to be split over threads
  const Tensor x = th::random({4, 3, 20, 17}, DType::f32, false, 0, 255);
  const ItemGeom g{.y0 = -2, .x0 = 3.5, .h = 19, .w = 11, .OH = 256, .OW = 256, .pad = PadMode::reflection};
  const Tensor y = resample_bilinear(x, g);
  REQUIRE(y.shape() == Shape{4, 3, 256, 256});
  for (int64_t b = 0; b < 4; ++b) th::check_close(y.select(0, b), resample_bilinear(x.select(0, b), g), 0, 0, "item");
  // leading dims that do not collapse into one stride ([C, B] view of a [B, C] batch)
  const Tensor xt = x.permute({1, 0, 2, 3});
  const ItemGeom s{.h = 20, .w = 17, .OH = 7, .OW = 9};
  const Tensor yt = resample_bilinear(xt, s);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t b = 0; b < 4; ++b)
      th::check_close(yt.select(0, c).select(0, b), resample_bilinear(x.select(0, b).select(0, c), s), 0, 0, "plane");
  const Tensor m = th::random({2, 9, 8}, DType::i64, false, 0, 5);
  const Tensor mt = resample_nearest(m, {.h = 9, .w = 8, .OH = 4, .OW = 16});
  th::check_close(mt.select(0, 1), resample_nearest(m.select(0, 1), {.h = 9, .w = 8, .OH = 4, .OW = 16}), 0, 0, "mask");
}

TEST_CASE("FlipItem and DihedralItem: Image, Mask, Points, BBoxes move together; flip twice is identity",
          "[resize]") {
  // one bright pixel at (row 2, col 5) of a 1 x 6 x 9 image; a point at its centre
  Tensor img = zeros({1, 6, 9}, {.dtype = DType::u8});
  img.data_ptr<uint8_t>()[2 * 9 + 5] = 200;
  const Tensor mask = img.to(DType::i64);
  const Tensor pts = th::make({5.5, 2.5}, {1, 2}), box = th::make({1, 2, 4, 6}, {1, 4});
  const Tensor label = scalar_tensor(3, {.dtype = DType::i64});
  const Tuple in{Image{img}, Mask{mask}, Points{pts}, BBoxes{box}, Category{label}};

  Pipeline flip({make_transform(FlipItem({.p = 1.0}))});
  TfmContext ctx{.train = true, .rng = TfmRng(1, 0, 0, 0)};
  const Tuple once = flip(in, ctx);
  CHECK(argmax_hw(data_of(once[0])) == std::pair<int64_t, int64_t>{2, 3});  // col 5 -> 9 - 1 - 5
  th::check_close(data_of(once[1]).to(DType::f64), data_of(once[0]).to(DType::f64), 0, 0, "mask follows image");
  th::check_close(data_of(once[2]), th::make({3.5, 2.5}, {1, 2}), 0, 0, "point x -> W - x");
  th::check_close(data_of(once[3]), th::make({5, 2, 8, 6}, {1, 4}), 0, 0, "box x0, x1 -> W - x1, W - x0");
  CHECK(data_of(once[4]).is_same(data_of(in[4])));  // Category passes through untouched
  const Tuple twice = flip(once, ctx);
  for (int i = 0; i < 4; ++i) th::check_close(data_of(twice[i]), data_of(in[i]), 0, 0, "flip twice");
  TfmContext valid{.train = false};
  CHECK(data_of(flip(in, valid)[0]).is_same(img));  // train only

  // every dihedral k: the bright pixel lands where the point goes
  for (int k = 0; k < 8; ++k) {
    DihedralItem d;
    d.k = k, d.H = 6, d.W = 9;
    const Tensor im = d.encodes(Image{img}).data;
    const Tensor p = d.encodes(Points{pts}).data;
    const std::vector<double> pv = th::values(p);
    INFO("k = " << k);
    CHECK(argmax_hw(im) == std::pair<int64_t, int64_t>{int64_t(std::floor(pv[1])), int64_t(std::floor(pv[0]))});
    CHECK(im.size(1) * im.size(2) == 54);
    th::check_close(d.encodes(Mask{mask}).data.to(DType::f64), im.to(DType::f64), 0, 0, "mask");
  }
  DihedralItem d3;
  d3.k = 3;  // flip W then transpose: (r, c) -> (W-1-c, r)
  const Tensor x = th::make({1, 2, 3, 4, 5, 6}, {1, 2, 3});
  th::check_close(d3.encodes(Image{x}).data, th::make({3, 6, 2, 5, 1, 4}, {1, 3, 2}), 0, 0, "dihedral 3");
}

TEST_CASE("Resize: fastai crop / pad / squish geometry, centred on valid, random on train", "[resize]") {
  const Tensor img = th::random({3, 40, 60}, DType::f32, false, 0, 255);
  const Tuple in{Image{img}};
  TfmContext valid{.train = false};

  Resize crop({.size = 32});
  crop.before_call(in, valid);
  // the largest 1:1 box: 40 x 40 at x0 = int(0.5 * (60 - 40))
  CHECK(crop.geom.y0 == 0);
  CHECK(crop.geom.x0 == 10);
  CHECK(crop.geom.h == 40);
  CHECK(crop.geom.w == 40);
  const Tensor got = crop.encodes(Image{img}).data;
  const Tensor slice = img.narrow(2, 10, 40);  // the same box as a whole image
  th::check_close(got, resample_bilinear(slice, {.h = 40, .w = 40, .OH = 32, .OW = 32}), 1e-4, 1e-6, "crop");

  Resize pad({.size = {32, 32}, .method = ResizeMethod::pad, .pad_mode = PadMode::zeros});
  pad.before_call(in, valid);  // the smallest 1:1 box around: 60 x 60 at y0 = int(0.5 * -20)
  CHECK(pad.geom.y0 == -10);
  CHECK(pad.geom.x0 == 0);
  CHECK(pad.geom.h == 60);
  const Tensor padded = pad.encodes(Image{img}).data;
  CHECK(padded.shape() == Shape{3, 32, 32});
  CHECK(th::values(padded.narrow(1, 0, 5)) == std::vector<double>(3 * 5 * 32, 0.0));  // rows above the image

  Resize squish({.size = {20, 30}, .method = ResizeMethod::squish});
  TfmContext train{.train = true, .rng = TfmRng(3, 0, 0, 0)};
  squish.before_call(in, train);
  CHECK(squish.geom.h == 40);
  CHECK(squish.geom.w == 60);
  CHECK(squish.encodes(Image{img}).data.shape() == Shape{3, 20, 30});

  // train: a random box of the target aspect, inside the image, the same for the same stream
  Resize rc({.size = {16, 32}});
  double lo = 1e9, hi = -1e9;
  for (uint32_t item = 0; item < 50; ++item) {
    TfmContext a{.train = true, .rng = TfmRng(9, 1, 2, item)}, b{.train = true, .rng = TfmRng(9, 1, 2, item)};
    Resize ra = rc, rb = rc;
    ra.before_call(in, a);
    rb.before_call(in, b);
    CHECK(ra.geom.x0 == rb.geom.x0);
    CHECK(ra.geom.y0 == rb.geom.y0);
    CHECK(ra.geom.w == 60);  // 60 / 32 < 40 / 16: the full width, 30 rows
    CHECK(ra.geom.h == 30);
    CHECK(ra.geom.y0 >= 0);
    CHECK(ra.geom.y0 <= 10);
    lo = std::min(lo, ra.geom.y0), hi = std::max(hi, ra.geom.y0);
  }
  CHECK(lo <= 1);
  CHECK(hi >= 9);

  // an image already at the size passes through as is
  Resize same({.size = {40, 60}});
  same.before_call(in, train);
  CHECK(same.encodes(Image{img}).data.is_same(img));
}

TEST_CASE("RandomResizedCrop: area and aspect in range, same stream same crop, valid centre crop", "[resize]") {
  const Tensor img = zeros({3, 100, 120}, {.dtype = DType::u8});
  const Tuple in{Image{img}};
  const RandomResizedCrop rrc({.size = 64, .min_scale = 0.35});
  double amin = 1, amax = 0;
  for (uint32_t item = 0; item < 300; ++item) {
    RandomResizedCrop t = rrc;
    TfmContext ctx{.train = true, .rng = TfmRng(4, 2, 7, item)};
    t.before_call(in, ctx);
    const ItemGeom& g = t.geom;
    const double area = g.h * g.w / (100.0 * 120.0), ratio = g.w / g.h;
    amin = std::min(amin, area), amax = std::max(amax, area);
    INFO("item " << item << " box " << g.y0 << " " << g.x0 << " " << g.h << " " << g.w);
    CHECK(area >= 0.35 * 0.97);  // rounding of nw, nh
    CHECK(area <= 1.0);
    CHECK(ratio >= 0.75 * 0.97);
    CHECK(ratio <= 4.0 / 3.0 * 1.03);
    CHECK(g.y0 >= 0);
    CHECK(g.x0 >= 0);
    CHECK(g.y0 + g.h <= 100);
    CHECK(g.x0 + g.w <= 120);
    CHECK((g.OH == 64 && g.OW == 64));
    RandomResizedCrop again = rrc, other = rrc;
    TfmContext same{.train = true, .rng = TfmRng(4, 2, 7, item)};
    TfmContext next{.train = true, .rng = TfmRng(4, 2, 7, item + 1000)};
    again.before_call(in, same);
    other.before_call(in, next);
    CHECK(again.geom.x0 == g.x0);
    CHECK(again.geom.w == g.w);
    CHECK((other.geom.x0 != g.x0 || other.geom.y0 != g.y0 || other.geom.w != g.w));
  }
  CHECK(amin < 0.45);
  CHECK(amax > 0.8);

  // valid: squish to 64 + 16 (ceil(64 * 0.14 / 8) * 8), centre crop 64: one box in source pixels
  RandomResizedCrop v = rrc;
  TfmContext valid{.train = false};
  v.before_call(in, valid);
  CHECK(v.geom.y0 == Approx(8 * 100.0 / 80));
  CHECK(v.geom.x0 == Approx(8 * 120.0 / 80));
  CHECK(v.geom.h == Approx(64 * 100.0 / 80));
  CHECK(v.geom.w == Approx(64 * 120.0 / 80));

  // fallback (no try fits a 1:3 image with min_scale 1): the centred box of the widest allowed ratio
  RandomResizedCrop fb({.size = 8, .min_scale = 1.0});
  TfmContext c{.train = true, .rng = TfmRng(1, 0, 0, 0)};
  fb.before_call(Tuple{Image{zeros({1, 30, 10})}}, c);
  CHECK(fb.geom.w == 10);
  CHECK(fb.geom.h == 13);  // int(10 / (3/4))
  CHECK(fb.geom.y0 == 8);  // (30 - 13) // 2
}

TEST_CASE("item transforms: Image, Mask and Points of one tuple get the same crop", "[resize]") {
  // an 8 x 8 bright block (mask 1) at rows 20..27, cols 36..43 of a 64 x 80 image; a point at its centre
  Tensor img = zeros({3, 64, 80}, {.dtype = DType::u8});
  Tensor mask = zeros({64, 80}, {.dtype = DType::i64});
  img.narrow(1, 20, 8).narrow(2, 36, 8).fill_(250);
  mask.narrow(0, 20, 8).narrow(1, 36, 8).fill_(1);
  const Tensor label = scalar_tensor(2, {.dtype = DType::i64});
  const Tuple in{Image{img}, Mask{mask}, Points{th::make({40, 24}, {1, 2})}, Category{label}};
  Pipeline pipe({make_transform(RandomResizedCrop({.size = 32, .min_scale = 0.3})), make_transform(FlipItem())});
  int seen = 0;
  for (uint32_t item = 0; item < 40; ++item) {
    TfmContext ctx{.train = true, .rng = TfmRng(77, 0, 0, item)};
    const Tuple out = pipe(in, ctx);
    REQUIRE(kinds_of(out) == kinds_of(in));
    const Tensor oi = data_of(out[0]), om = data_of(out[1]);
    CHECK(oi.shape() == Shape{3, 32, 32});
    CHECK(om.shape() == Shape{32, 32});
    CHECK(om.dtype() == DType::i64);
    CHECK(data_of(out[3]).is_same(data_of(in[3])));
    const std::vector<double> p = th::values(data_of(out[2]));
    if (p[0] < 0 || p[1] < 0 || p[0] >= 32 || p[1] >= 32) continue;
    ++seen;
    const int64_t r = int64_t(p[1]), c = int64_t(p[0]);
    INFO("item " << item << " point " << p[0] << ", " << p[1]);
    CHECK(th::at(om, {r, c}) == 1);
    CHECK(th::at(oi, {1, r, c}) > 200);
    // the mask marks where the image is bright (nearest and bilinear sample the same points)
    const std::vector<double> mv = th::values(om), iv = th::values(oi.select(0, 0));
    for (size_t i = 0; i < mv.size(); ++i) {
      if (mv[i] == 1) CHECK(iv[i] > 60);  // a corner of the block: at least 1/2 x 1/2 of 250
      if (iv[i] > 240) CHECK(mv[i] == 1);
    }
  }
  CHECK(seen > 10);
}

TEST_CASE("CropPad, RandomCrop, BBoxes clipping, errors", "[resize]") {
  const Tensor x = th::make({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {1, 3, 5});
  TfmContext valid{.train = false};
  CropPad cp({.size = {3, 3}});
  cp.before_call({Image{x}}, valid);
  th::check_close(cp.encodes(Image{x}).data, x.narrow(2, 1, 3), 0, 0, "centre crop");
  CropPad grow({.size = {5, 5}});
  grow.before_call({Image{x}}, valid);  // rows -1 and 3 are zeros: (3 - 5) // 2 = -1
  const Tensor want = th::make({0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 0, 0, 0, 0},
                               {1, 5, 5});
  th::check_close(grow.encodes(Image{x}).data, want, 0, 0, "pad");
  CropPad refl({.size = {5, 7}, .pad_mode = PadMode::reflection});
  refl.before_call({Image{x}}, valid);
  const std::vector<double> r = th::values(refl.encodes(Image{x}).data);
  CHECK(r[0] == 1);   // (-1, -1) reflects to (0, 0)
  CHECK(r[8] == 1);   // (0, 0)
  CHECK(r[13] == 5);  // (0, 5) reflects to (0, 4)

  RandomCrop rc({.size = 3});
  std::set<double> firsts;
  for (uint32_t i = 0; i < 40; ++i) {
    RandomCrop t = rc;
    TfmContext ctx{.train = true, .rng = TfmRng(2, 0, 0, i)};
    t.before_call({Image{x}}, ctx);
    CHECK(t.geom.y0 == 0);
    firsts.insert(t.geom.x0);
  }
  CHECK(firsts == std::set<double>{0, 1, 2});

  // boxes through a crop: clipped to the output
  CropPad small({.size = {3, 3}});
  small.before_call({Image{x}}, valid);  // x0 = 1
  const Tensor b = small.encodes(BBoxes{th::make({0, 0, 2, 2, 3.5, 1, 9, 2}, {2, 4})}).data;
  th::check_close(b, th::make({0, 0, 1, 2, 2.5, 1, 3, 2}, {2, 4}), 1e-12, 0, "bboxes");

  // fastai's positional spellings
  CHECK(Resize(32).opts.size == ImageSize{32, 32});
  CHECK(Resize({24, 40}, ResizeMethod::squish).opts.method == ResizeMethod::squish);
  CHECK(RandomResizedCrop(16, 0.5).opts.min_scale == 0.5);
  CHECK(FlipItem(0.25).opts.p == 0.25);
  CHECK(CropPad(8, PadMode::border).opts.pad_mode == PadMode::border);

  // types no transform here knows pass through every one of them, on train and valid
  Pipeline all({make_transform(Resize(8)), make_transform(RandomResizedCrop(8)), make_transform(CropPad(6)),
                make_transform(RandomCrop(4)), make_transform(FlipItem(1.0)), make_transform(DihedralItem(1.0))});
  const Tuple t{Image{x}, Regression{th::make({1.5}, {1})}, MultiCategory{th::make({0, 1}, {2})}};
  for (bool train : {true, false}) {
    TfmContext ctx{.train = train, .rng = TfmRng(5, 0, 0, 1)};
    const Tuple o = all(t, ctx);
    CHECK(data_of(o[1]).is_same(data_of(t[1])));
    CHECK(data_of(o[2]).is_same(data_of(t[2])));
    CHECK(data_of(o[0]).shape() == Shape{1, 4, 4});
  }

  th::check_throws([] { Resize({.size = 0}); }, {"Resize", "size {0, 0}", "positive"});
  th::check_throws([] { RandomResizedCrop({.size = 8, .min_scale = 0}); }, {"RandomResizedCrop", "min_scale = 0"});
  th::check_throws([&] { Resize({.size = 4}).before_call({Category{scalar_tensor(1.0)}}, valid); },
                   {"Resize", "no Image or Mask"});
  th::check_throws([] { resample_bilinear(zeros({5}), {.h = 1, .w = 1, .OH = 2, .OW = 2}); },
                   {"resample_bilinear", "[5]", "[..., H, W]"});
  th::check_throws([] { resample_bilinear(zeros({2, 2}, {.dtype = DType::i64}), {.h = 1, .w = 1, .OH = 2, .OW = 2}); },
                   {"resample_bilinear", "int64", "uint8 or a floating dtype"});
  th::check_throws([] { resample_bilinear(zeros({2, 2}), {.h = 1, .w = 1, .OH = 0, .OW = 2}); },
                   {"resample_bilinear", "0 x 2", "positive"});
}

}  // namespace test_resize
