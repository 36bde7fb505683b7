// Batch augmentation (kernels/cpu/augment.hpp, data/augment.hpp) and the typed IntToFloat /
// Normalize (data/normalize.hpp): grid sampling against PyTorch golden values
// (tools/make_augment_golden.py) and the fast kernels against their `_ref` loops; lighting against
// its closed form; erasing; round trips; pass-through of other types; seeded determinism; one
// geometry for Image, Mask and Points; aug_transforms defaults; validation leaves data alone.
#include <catch2/catch.hpp>

#include <cmath>
#include <algorithm>
#include <set>

#include "golden/augment_grid.hpp"
#include "helpers.hpp"
#include "strata/data/augment.hpp"
#include "strata/data/normalize.hpp"

namespace test_augment {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

/// wave(shape, a, b): element i = sin(a i + b) * 2 + 0.001 i (as the golden script).
Tensor wave(const Shape& shape, double a, double b, DType dt = DType::f64) {
  std::vector<double> v(size_t(numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(a * double(i) + b) * 2 + 0.001 * double(i);
  return th::make(v, shape, dt);
}

/// A random matrix near the identity: rotation, zoom, shift, and optionally a perspective row.
Mat3 random_mat(TfmRng& r, bool perspective) {
  const double t = r.uniform(-0.8, 0.8), s = r.uniform(0.6, 1.5);
  Mat3 m = affine_mat(s * std::cos(t), s * std::sin(t) + r.uniform(-0.2, 0.2), r.uniform(-0.7, 0.7),
                      -s * std::sin(t), s * std::cos(t), r.uniform(-0.7, 0.7));
  if (perspective) m[6] = r.uniform(-0.3, 0.3), m[7] = r.uniform(-0.3, 0.3);
  return m;
}

/// Runs one transform struct on a tuple through a Pipeline with the given stream.
template <class T>
Tuple run(T tfm, const Tuple& t, TfmRng rng = TfmRng(1, 0, 0), bool train = true) {
  Pipeline pipe({make_transform(std::move(tfm))});
  TfmContext ctx{.train = train, .rng = rng};
  return pipe(t, ctx);
}

/// A batch: Image [B, C, H, W] f32 in [0, 1], Mask [B, H, W] i64, Category [B].
Tuple batch(int64_t B, int64_t C, int64_t H, int64_t W) {
  return {Image{th::random({B, C, H, W}, DType::f32, false, 0.0, 1.0)},
          Mask{randint(0, 5, {B, H, W}, {.dtype = DType::i64})},
          Category{arange(0, double(B), 1, {.dtype = DType::i64})}};
}

}  // namespace

// ---------------------------------------------------------------- grid sample

TEST_CASE("grid_sample: PyTorch affine_grid + grid_sample golden values, every pad mode", "[augment]") {
  const Tensor x = wave({2, 2, 5, 6}, 0.7, 0.3);
  const double c = std::cos(0.4), s = std::sin(0.4);
  const std::vector<Mat3> mats{affine_mat(1.3 * c, 1.3 * s, 0.2, -1.3 * s, 1.3 * c, -0.1),
                               affine_mat(0.9, 0.35, -0.6, 0.1, 1.1, 0.45)};
  int checked = 0;
  for (const auto& [key, want] : golden::augment_grid) {
    if (key == "fastai_warp") continue;
    const SampleMode mode = key.rfind("bilinear", 0) == 0 ? SampleMode::bilinear : SampleMode::nearest;
    const PadMode pad = key.find("_zeros") != std::string::npos    ? PadMode::zeros
                        : key.find("_border") != std::string::npos ? PadMode::border
                                                                   : PadMode::reflection;
    const bool align = key.find("align1") != std::string::npos;
    const GridSampleOptions o{.height = 4, .width = 5, .mode = mode, .pad_mode = pad, .align_corners = align};
    th::check_close(th::values(grid_sample(x, mats, o)), want, 1e-9, 1e-9, key + " (kernel)");
    // the reference loop too
    std::vector<double> ref(want.size()), m;
    for (const Mat3& a : mats) m.insert(m.end(), a.begin(), a.end());
    const Tensor xc = x.contiguous();
    cpu::grid_sample_ref<double>(xc.data_ptr<double>(), ref.data(), m.data(),
                                 {.B = 2, .C = 2, .H = 5, .W = 6, .OH = 4, .OW = 5, .mode = mode, .pad = pad,
                                  .align_corners = align});
    th::check_close(ref, want, 1e-9, 1e-9, key + " (ref)");
    // f32 within float rounding
    th::check_close(th::values(grid_sample(x.to(DType::f32), mats, o)), want, 2e-5, 1e-5, key + " (f32)");
    ++checked;
  }
  CHECK(checked == 11);
}

TEST_CASE("Warp: fastai's perspective map (find_coeffs(orig, targ)) sampled like PyTorch", "[augment]") {
  // the golden script's (x_t, y_t) per image; the Warp part's homography from the same corners
  const Tensor x = wave({2, 2, 5, 6}, 0.7, 0.3);
  std::vector<Mat3> mats;
  for (const auto& [xt, yt] : {std::pair{0.15, -0.1}, std::pair{-0.2, 0.05}})
    mats.push_back(detail::homography({{{-1 - yt, -1 - xt}, {-1 + yt, 1 + xt}, {1 + yt, -1 + xt}, {1 - yt, 1 - xt}}},
                                      {{{-1, -1}, {-1, 1}, {1, -1}, {1, 1}}}));
  th::check_close(th::values(grid_sample(x, mats, {.pad_mode = PadMode::reflection})),
                  golden::augment_grid.at("fastai_warp"), 1e-9, 1e-9, "fastai warp");
}

TEST_CASE("grid_sample: fast kernel matches the reference loop (random shapes, perspective, dtypes)", "[augment]") {
  TfmRng r(5);
  for (int trial = 0; trial < 24; ++trial) {
    const int64_t B = r.randint(1, 4), C = r.randint(1, 4), H = r.randint(1, 9), W = r.randint(1, 9);
    const int64_t OH = r.randint(1, 9), OW = r.randint(1, 9);
    const auto mode = trial % 3 == 2 ? SampleMode::nearest : SampleMode::bilinear;
    const auto pad = PadMode(trial % 3);
    const bool align = trial % 4 != 3;
    std::vector<double> m;
    for (int64_t b = 0; b < B; ++b) {
      const Mat3 a = random_mat(r, trial % 2 == 1);
      m.insert(m.end(), a.begin(), a.end());
    }
    const cpu::GridSampleGeom g{.B = B, .C = C, .H = H, .W = W, .OH = OH, .OW = OW, .mode = mode, .pad = pad,
                                .align_corners = align};
    INFO("trial " << trial << " B C H W " << B << " " << C << " " << H << " " << W << " -> " << OH << "x" << OW);
    const Tensor x = th::random({B, C, H, W}, DType::f32);
    std::vector<float> got(size_t(B * C * OH * OW)), want(got.size());
    cpu::grid_sample_kernel<float>(x.data_ptr<float>(), got.data(), m.data(), g);
    cpu::grid_sample_ref<float>(x.data_ptr<float>(), want.data(), m.data(), g);
    th::check_close(std::vector<double>(got.begin(), got.end()), std::vector<double>(want.begin(), want.end()),
                    1e-5, 1e-5, "f32");
    if (mode == SampleMode::nearest) {  // i64 masks: exact copies of class codes
      const Tensor xi = randint(0, 100, {B, C, H, W}, {.dtype = DType::i64});
      std::vector<int64_t> gi(got.size()), wi(got.size());
      cpu::grid_sample_kernel<int64_t>(xi.data_ptr<int64_t>(), gi.data(), m.data(), g);
      cpu::grid_sample_ref<int64_t>(xi.data_ptr<int64_t>(), wi.data(), m.data(), g);
      CHECK(gi == wi);
    }
  }
}

TEST_CASE("grid_sample: identity returns the input, flips reverse exactly, errors name the op", "[augment]") {
  const Tensor x = th::random({2, 3, 5, 7}, DType::f32);
  for (PadMode pad : {PadMode::zeros, PadMode::border, PadMode::reflection}) {
    CHECK(th::values(grid_sample(x, {mat3_identity()}, {.pad_mode = pad})) == th::values(x));
    CHECK(th::values(grid_sample(x, {mat3_identity()}, {.mode = SampleMode::nearest, .pad_mode = pad})) ==
          th::values(x));
  }
  // x -> -x: column j reads column W - 1 - j
  const Tensor f = grid_sample(x, {affine_mat(-1, 0, 0, 0, 1, 0)});
  bool same = true;
  for (int64_t j = 0; j < 7; ++j) same = same && th::values(f.select(3, j)) == th::values(x.select(3, 6 - j));
  CHECK(same);
  th::check_throws([&] { grid_sample(x.to(DType::u8), {mat3_identity()}); }, {"grid_sample", "uint8", "IntToFloat"});
  th::check_throws([&] { grid_sample(x, {mat3_identity(), mat3_identity(), mat3_identity()}); },
                   {"grid_sample", "3 matrices for 2 images"});
}

// ---------------------------------------------------------------- lighting and erasing

TEST_CASE("lighting: closed form sigmoid(c (logit(x) + logit(b))), fast kernel, neutral images untouched", "[augment]") {
  const Tensor x = th::random({3, 2, 5, 7}, DType::f32, false, 0.0, 1.0);
  const std::vector<double> b{0.6, 0.5, 0.35}, c{1.0, 1.0, 1.4};
  std::vector<double> add(3), mul = c;
  for (size_t i = 0; i < 3; ++i) add[i] = std::log(b[i] / (1 - b[i]));
  const std::vector<double> xv = th::values(x), got = th::values(lighting(x, add, mul));
  std::vector<double> want(xv.size());
  const size_t N = xv.size() / 3;
  for (size_t i = 0; i < xv.size(); ++i) {
    const size_t k = i / N;
    const double p = std::clamp(xv[i], 1e-7, 1 - 1e-7);
    want[i] = k == 1 ? xv[i] : 1 / (1 + std::exp(-c[k] * (std::log(p / (1 - p)) + add[k])));
  }
  th::check_close(got, want, 2e-6, 1e-5, "lighting");
  // image 1 (b = 0.5, c = 1) is an exact copy
  CHECK(std::vector<double>(got.begin() + long(N), got.begin() + long(2 * N)) ==
        std::vector<double>(xv.begin() + long(N), xv.begin() + long(2 * N)));
  // the reference loop, in f64
  const Tensor x64 = x.to(DType::f64);
  std::vector<double> ref(xv.size());
  cpu::lighting_ref<double>(x64.data_ptr<double>(), ref.data(), 3, int64_t(N), add.data(), mul.data());
  th::check_close(ref, want, 1e-12, 1e-12, "lighting_ref");
  th::check_close(th::values(lighting(x64, add, mul)), want, 1e-12, 1e-10, "lighting f64");
}

TEST_CASE("random_erase: rectangles get N(0, 1) noise, the rest is untouched, fast == ref", "[augment]") {
  const Tensor x = th::random({2, 3, 20, 30}, DType::f32, false, 5.0, 6.0);  // far from N(0, 1)
  const std::vector<cpu::EraseRect> rects{{.image = 0, .r0 = 2, .r1 = 18, .c0 = 3, .c1 = 29},
                                          {.image = 1, .r0 = 0, .r1 = 1, .c0 = 7, .c1 = 9}};
  const std::array<uint32_t, 2> key{11, 22};
  const Tensor y = random_erase(x, rects, key);
  const std::vector<double> xv = th::values(x), yv = th::values(y);
  Tensor r = x.clone();
  cpu::random_erase_ref<float>(r.data_ptr<float>(), 2, 3, 20, 30, rects.data(), 2, key);
  CHECK(th::values(r) == yv);
  double s = 0, s2 = 0, n = 0;
  bool outside_same = true;
  for (size_t i = 0; i < xv.size(); ++i) {
    const auto idx = th::unravel(int64_t(i), {2, 3, 20, 30});
    bool in = false;
    for (const auto& q : rects)
      in = in || (idx[0] == q.image && idx[2] >= q.r0 && idx[2] < q.r1 && idx[3] >= q.c0 && idx[3] < q.c1);
    if (!in) outside_same = outside_same && xv[i] == yv[i];
    else if (idx[0] == 0) s += yv[i], s2 += yv[i] * yv[i], n += 1;
  }
  CHECK(outside_same);
  CHECK(n == 3 * 16 * 26);
  CHECK(std::abs(s / n) < 0.08);
  CHECK(std::abs(s2 / n - 1) < 0.1);
  CHECK(th::values(random_erase(x, rects, {11, 23})) != yv);  // another key, other noise
  // overlapping rectangles of one image: the later one wins, as in the reference, whatever the threads
  const std::vector<cpu::EraseRect> overlap{{.image = 0, .r0 = 2, .r1 = 12, .c0 = 3, .c1 = 20},
                                            {.image = 0, .r0 = 6, .r1 = 18, .c0 = 10, .c1 = 29}};
  Tensor ro = x.clone();
  cpu::random_erase_ref<float>(ro.data_ptr<float>(), 2, 3, 20, 30, overlap.data(), 2, key);
  CHECK(th::values(random_erase(x, overlap, key)) == th::values(ro));
}

// ---------------------------------------------------------------- typed IntToFloat / Normalize

TEST_CASE("IntToFloat and Normalize as typed transforms: round trips, orders, pass-through", "[augment]") {
  const Tensor u8 = randint(0, 256, {2, 3, 4, 5}, {.dtype = DType::u8});
  const Normalize norm = Normalize::from_stats(imagenet_stats);
  Pipeline pipe({make_transform(norm), make_transform(IntToFloat{})});
  CHECK(pipe.repr() == "Pipeline: IntToFloat -> Normalize");
  const Tuple in{Image{u8}, Mask{zeros({2, 4, 5}, {.dtype = DType::i64})}, Category{scalar_tensor(3.0, {.dtype = DType::i64})}};
  TfmContext ctx;
  const Tuple out = pipe(in, ctx);
  // (x / 255 - mean) / std, channel 2
  const double got = th::at(data_of(out[0]), {1, 2, 3, 4}), px = th::at(u8, {1, 2, 3, 4});
  CHECK(got == Approx((px / 255 - 0.406) / 0.225).epsilon(1e-5));
  CHECK(data_of(out[1]).is_same(data_of(in[1])));
  CHECK(data_of(out[2]).is_same(data_of(in[2])));
  const Tuple back = pipe.decode(out);
  CHECK(data_of(back[0]).dtype() == DType::u8);
  CHECK(th::values(data_of(back[0])) == th::values(u8));  // u8 exact
  // Normalize alone: decodes(encodes(x)) == x
  const Image f{th::random({2, 3, 4, 5}, DType::f32, false, 0, 1)};
  th::check_close(norm.decodes(norm.encodes(f)).data, f.data, 1e-6, 1e-6, "Normalize round trip");
  // setups learns per-channel statistics
  Normalize learned;
  learned.setups({Tuple{f}});
  const Tensor z = learned.encodes(f).data;
  for (int64_t ch = 0; ch < 3; ++ch) {
    const std::vector<double> v = th::values(z.select(1, ch));
    double s = 0, s2 = 0;
    for (double e : v) s += e, s2 += e * e;
    CHECK(std::abs(s / double(v.size())) < 1e-5);
    CHECK(s2 / double(v.size()) == Approx(1).epsilon(1e-4));
  }
}

// ---------------------------------------------------------------- transforms

TEST_CASE("Flip(p = 1) twice gives the input back; every transform passes a Category through", "[augment]") {
  const Tuple t = batch(3, 2, 6, 8);
  const Tuple once = run(Flip({.p = 1}), t), twice = run(Flip({.p = 1}), once);
  CHECK(th::values(data_of(twice[0])) == th::values(data_of(t[0])));
  CHECK(th::values(data_of(twice[1])) == th::values(data_of(t[1])));
  CHECK(th::values(data_of(once[0])) != th::values(data_of(t[0])));
  CHECK(th::values(data_of(once[1]).select(2, 0)) == th::values(data_of(t[1]).select(2, 7)));
  const Tensor cat = data_of(t[2]);
  auto passes = [&](const auto& tfm) {
    INFO(tfm.name);
    const Tuple out = run(tfm, t);
    CHECK(kinds_of(out) == kinds_of(t));
    CHECK(data_of(out[2]).is_same(cat));
  };
  passes(Flip({.p = 1}));
  passes(Dihedral({.p = 1}));
  passes(Rotate({.max_deg = 30, .p = 1}));
  passes(Zoom({.max_zoom = 1.5, .p = 1}));
  passes(Warp({.magnitude = 0.3, .p = 1}));
  passes(Brightness({.p = 1}));
  passes(Contrast({.p = 1}));
  passes(RandomErasing({.p = 1}));
  passes(IntToFloat{});
  passes(Normalize::from_stats({0.5}, {0.5}));
  for (const auto& tf : aug_transforms()) {
    Pipeline p({tf});
    TfmContext ctx{.train = true, .rng = TfmRng(3, 0, 0)};
    CHECK(data_of(p(t, ctx)[2]).is_same(cat));
  }
}

TEST_CASE("Seeded: the same stream gives the same batch, another batch index another one", "[augment]") {
  const Tuple t = batch(4, 3, 8, 8);
  Pipeline pipe(aug_transforms({.max_zoom = 1.3}));
  pipe.add(make_transform(RandomErasing({.p = 0.5})));
  auto go = [&](uint64_t b) {
    TfmContext ctx{.train = true, .rng = TfmRng(42, 1, b)};
    return th::values(data_of(pipe(t, ctx)[0]));
  };
  const std::vector<double> a = go(0);
  CHECK(a == go(0));
  CHECK(a != go(1));
  CHECK(a != th::values(data_of(t[0])));
}

TEST_CASE("Image, Mask and Points of one batch get the same geometry", "[augment]") {
  // channel 0 = class code as a float, Mask = the same codes; nearest for both must agree exactly
  const int64_t B = 4, H = 9, W = 11;
  const Tensor codes = randint(0, 7, {B, H, W}, {.dtype = DType::i64});
  const Tuple t{Image{codes.to(DType::f32).unsqueeze(1)}, Mask{codes}};
  const ResampleOptions near{.mode = SampleMode::nearest};
  AffineAug aug({FlipOptions{.p = 0.5}, RotateOptions{.max_deg = 40, .p = 1}, ZoomOptions{.max_zoom = 1.5, .p = 1},
                 WarpOptions{.magnitude = 0.3, .p = 1}},
                near);
  const Tuple out = run(aug, t, TfmRng(9, 0, 2));
  CHECK(th::values(data_of(out[0]).squeeze(1)) == th::values(data_of(out[1])));
  CHECK(th::values(data_of(out[1])) != th::values(codes));

  // Points follow the content: images hold their own pixel coordinates (x ramp, y ramp), which
  // bilinear sampling of an affine map keeps exact; the output image read at a mapped point must
  // give the point's input position. Pixel i spans [i, i + 1), so its centre is i + 0.5.
  Tensor ramp = empty({B, 2, H, W});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) ramp.data_ptr<float>()[((b * 2) * H + i) * W + j] = float(j) + 0.5f,
                                      ramp.data_ptr<float>()[((b * 2 + 1) * H + i) * W + j] = float(i) + 0.5f;
  std::vector<double> pts;
  for (int64_t b = 0; b < B; ++b) pts.insert(pts.end(), {5.5, 4.5, 4.0 + 0.3 * double(b), 5.2, 6.7, 3.9});
  AffineAug affine({FlipOptions{}, RotateOptions{.max_deg = 20, .p = 1}, ZoomOptions{.min_zoom = 1.1, .max_zoom = 1.3, .p = 1}},
                   {.size_h = 7, .size_w = 13});
  const Tuple mapped = run(affine, {Image{ramp}, Points{from_vector(pts, {B, 3, 2})}}, TfmRng(4, 0, 0));
  const Tensor img = data_of(mapped[0]), p = data_of(mapped[1]);
  REQUIRE(img.shape() == Shape{B, 2, 7, 13});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < 3; ++n) {
      // bilinear read of the output at the mapped point (pixel centres at i + 0.5)
      const double px = th::at(p, {b, n, 0}) - 0.5, py = th::at(p, {b, n, 1}) - 0.5;
      REQUIRE(px >= 0);
      REQUIRE(py >= 0);
      REQUIRE(px <= 12);
      REQUIRE(py <= 6);
      const auto j = std::min<int64_t>(int64_t(px), 11), i = std::min<int64_t>(int64_t(py), 5);
      const double fx = px - double(j), fy = py - double(i);
      for (int64_t ch = 0; ch < 2; ++ch) {
        auto v = [&](int64_t r, int64_t q) { return th::at(img, {b, ch, r, q}); };
        const double got = v(i, j) * (1 - fx) * (1 - fy) + v(i, j + 1) * fx * (1 - fy) + v(i + 1, j) * (1 - fx) * fy +
                           v(i + 1, j + 1) * fx * fy;
        CHECK(got == Approx(pts[size_t(2 * (b * 3 + n) + ch)]).margin(1e-4));
      }
    }
}

TEST_CASE("Parameters: drawn per image with fastai's ranges and probabilities", "[augment]") {
  const Tuple t{Image{zeros({400, 1, 2, 2})}};
  TfmContext ctx{.train = true, .rng = TfmRng(8, 0, 0)};
  AffineAug flip({FlipOptions{.p = 0.5}});
  flip.before_call(t, ctx);
  int flipped = 0;
  for (const Mat3& m : flip.mats) flipped += m[0] == -1;
  CHECK(flipped > 160);
  CHECK(flipped < 240);
  AffineAug rot({RotateOptions{.max_deg = 10, .p = 0.75}});
  rot.before_call(t, ctx);
  int turned = 0;
  for (const Mat3& m : rot.mats) {
    CHECK(std::abs(std::atan2(m[1], m[0])) <= 10 * 3.141592653589793 / 180 + 1e-12);
    turned += m[1] != 0;
  }
  CHECK(turned > 260);
  CHECK(turned < 340);
  Lighting l({.max_lighting = 0.2, .p = 0.75}, {.max_lighting = 0.2, .p = 0.75});
  l.before_call(t, ctx);
  int neutral = 0;
  for (size_t b = 0; b < 400; ++b) {
    const double bright = 1 / (1 + std::exp(-l.add[b]));
    CHECK(bright >= 0.4 - 1e-12);
    CHECK(bright <= 0.6 + 1e-12);
    CHECK(l.mul[b] >= 0.8 - 1e-12);
    CHECK(l.mul[b] <= 1 / 0.8 + 1e-12);
    neutral += l.add[b] == 0;
  }
  CHECK(neutral > 60);
  CHECK(neutral < 140);
  // the warp: the drawn corners (-1 - dy, -1 - dx) ... land on the image's corners
  const Mat3 h = detail::homography({{{-1.1, -0.8}, {-0.9, 1.2}, {1.1, -0.8}, {0.9, 1.2}}}, {{{-1, -1}, {-1, 1}, {1, -1}, {1, 1}}});
  const double from[4][2] = {{-1.1, -0.8}, {-0.9, 1.2}, {1.1, -0.8}, {0.9, 1.2}}, to[4][2] = {{-1, -1}, {-1, 1}, {1, -1}, {1, 1}};
  for (int k = 0; k < 4; ++k) {
    const double w = h[6] * from[k][0] + h[7] * from[k][1] + h[8];
    CHECK((h[0] * from[k][0] + h[1] * from[k][1] + h[2]) / w == Approx(to[k][0]).margin(1e-12));
    CHECK((h[3] * from[k][0] + h[4] * from[k][1] + h[5]) / w == Approx(to[k][1]).margin(1e-12));
  }
}

TEST_CASE("aug_transforms: fastai's defaults; validation data is left alone", "[augment]") {
  const auto tfms = aug_transforms();
  REQUIRE(tfms.size() == 2);
  CHECK(tfms[0]->name == "AffineAug");
  CHECK(tfms[0]->order == 30);
  CHECK(tfms[0]->split == Split::train);
  CHECK(tfms[1]->name == "Lighting");
  CHECK(tfms[1]->order == 40);
  CHECK(tfms[1]->split == Split::train);
  const AffineAug& a = std::dynamic_pointer_cast<TypedTransform<AffineAug>>(tfms[0])->impl();
  REQUIRE(a.parts.size() == 4);
  CHECK(std::get<FlipOptions>(a.parts[0]).p == 0.5);
  CHECK(std::get<WarpOptions>(a.parts[1]).magnitude == 0.2);
  CHECK(std::get<WarpOptions>(a.parts[1]).p == 0.75);
  CHECK(std::get<RotateOptions>(a.parts[2]).max_deg == 10);
  CHECK(std::get<RotateOptions>(a.parts[2]).p == 0.75);
  CHECK(std::get<ZoomOptions>(a.parts[3]).min_zoom == 1);
  CHECK(std::get<ZoomOptions>(a.parts[3]).max_zoom == 1.1);
  CHECK(a.resample.pad_mode == PadMode::reflection);
  CHECK(a.resample.mode == SampleMode::bilinear);
  CHECK(a.resample.align_corners);
  const Lighting& l = std::dynamic_pointer_cast<TypedTransform<Lighting>>(tfms[1])->impl();
  CHECK(l.brightness.max_lighting == 0.2);
  CHECK(l.contrast.p == 0.75);
  CHECK(std::holds_alternative<DihedralOptions>(
      std::dynamic_pointer_cast<TypedTransform<AffineAug>>(aug_transforms({.flip_vert = true})[0])->impl().parts[0]));
  CHECK(aug_transforms({.max_lighting = 0}).size() == 1);
  // fastai's positional spellings
  CHECK(std::get<FlipOptions>(Flip(0.3).parts[0]).p == 0.3);
  CHECK(std::get<DihedralOptions>(Dihedral(0.4).parts[0]).p == 0.4);
  CHECK(std::get<RotateOptions>(Rotate(20).parts[0]).max_deg == 20);
  CHECK(std::get<RotateOptions>(Rotate(20).parts[0]).p == 0.5);
  CHECK(std::get<ZoomOptions>(Zoom(0.9, 1.2, 0.6).parts[0]).min_zoom == 0.9);
  CHECK(std::get<ZoomOptions>(Zoom(0.9, 1.2, 0.6).parts[0]).p == 0.6);
  CHECK(std::get<WarpOptions>(Warp(0.3).parts[0]).magnitude == 0.3);
  CHECK(Brightness(0.4).brightness.max_lighting == 0.4);
  CHECK(Brightness(0.4).contrast.max_lighting == 0);
  CHECK(Contrast(0.3, 0.5).contrast.p == 0.5);
  CHECK(RandomErasing(0.2, 0.1, 0.2, 0.5, 3).o.max_count == 3);
  const auto x3 = aug_transforms({.xtra_tfms = {make_transform(RandomErasing())}});
  REQUIRE(x3.size() == 3);
  CHECK(x3[2]->name == "RandomErasing");
  CHECK(x3[2]->order == 100);

  const Tuple t = batch(3, 3, 6, 6);
  Pipeline pipe(aug_transforms());
  pipe.add(make_transform(RandomErasing({.p = 1})));
  TfmContext valid{.train = false, .rng = TfmRng(1, 0, 0)};
  const Tuple v = pipe(t, valid);
  for (size_t k = 0; k < t.size(); ++k) CHECK(data_of(v[k]).is_same(data_of(t[k])));
  // with an output size the affine part resizes validation data too, with the identity matrix
  Pipeline sized(aug_transforms({.size_h = 4, .size_w = 5}));
  CHECK(sized.transforms()[0]->split == Split::both);
  const Tuple r = sized(t, valid);
  CHECK(data_of(r[0]).shape() == Shape{3, 3, 4, 5});
  CHECK(data_of(r[1]).shape() == Shape{3, 4, 5});
  th::check_close(data_of(r[0]), grid_sample(data_of(t[0]), {mat3_identity()}, {.height = 4, .width = 5}), 0, 0,
                  "valid resize");
  th::check_throws([&] { run(Flip({.p = 1}), Tuple{Category{data_of(t[2])}}); }, {"Flip", "without Image or Mask"});
}

TEST_CASE("Dihedral(p = 1) draws all 8 symmetries, each a permutation of the pixels", "[augment]") {
  const Tensor x = th::random({64, 1, 5, 5}, DType::f32);
  AffineAug d({DihedralOptions{.p = 1}}, {.mode = SampleMode::nearest});
  const Tuple out = run(d, {Image{x}}, TfmRng(2, 0, 0));
  std::set<std::vector<double>> kinds;
  for (int64_t b = 0; b < 64; ++b) {
    std::vector<double> in = th::values(x.select(0, b)), o = th::values(data_of(out[0]).select(0, b));
    kinds.insert(o);
    std::sort(in.begin(), in.end());
    std::sort(o.begin(), o.end());
    CHECK(in == o);
  }
  // with one image repeated, the 8 symmetries give 8 distinct results
  const Tensor one = x.select(0, 0).unsqueeze(0).expand({64, 1, 5, 5}).contiguous();
  const Tuple same = run(d, {Image{one}}, TfmRng(2, 0, 0));
  std::set<std::vector<double>> seen;
  for (int64_t b = 0; b < 64; ++b) seen.insert(th::values(data_of(same[0]).select(0, b)));
  CHECK(seen.size() == 8);
}

TEST_CASE("RandomResizedCropGPU: an integer crop of allowed area stretched over the output", "[augment]") {
  // an x ramp and a y ramp (pixel centres) show which input pixels the output corners read
  const int64_t B = 16, H = 12, W = 20;
  Tensor ramp = empty({B, 2, H, W});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) ramp.data_ptr<float>()[((b * 2) * H + i) * W + j] = float(j) + 0.5f,
                                      ramp.data_ptr<float>()[((b * 2 + 1) * H + i) * W + j] = float(i) + 0.5f;
  const RandomResizedCropGPU crop({.min_scale = 0.35, .min_ratio = 0.75, .max_ratio = 4.0 / 3.0,
                                   .resample = {.size_h = 6, .size_w = 7}});
  const Tensor y = data_of(run(crop, {Image{ramp}}, TfmRng(3, 0, 1))[0]);
  REQUIRE(y.shape() == Shape{B, 2, 6, 7});
  for (int64_t b = 0; b < B; ++b) {
    const double x0 = th::at(y, {b, 0, 0, 0}) - 0.5, x1 = th::at(y, {b, 0, 0, 6}) + 0.5;
    const double y0 = th::at(y, {b, 1, 0, 0}) - 0.5, y1 = th::at(y, {b, 1, 5, 0}) + 0.5;
    INFO("image " << b << " crop x [" << x0 << ", " << x1 << ") y [" << y0 << ", " << y1 << ")");
    CHECK(std::abs(x0 - std::round(x0)) < 1e-4);  // integer pixel boxes
    CHECK(std::abs(y1 - std::round(y1)) < 1e-4);
    CHECK(x0 >= -1e-4);
    CHECK(y0 >= -1e-4);
    CHECK(x1 <= W + 1e-4);
    CHECK(y1 <= H + 1e-4);
    const double area = (x1 - x0) * (y1 - y0) / double(H * W), ratio = (x1 - x0) / (y1 - y0);
    CHECK(area >= 0.35 * 0.8);  // rounding of the sides
    CHECK(ratio >= 0.75 * 0.8);
    CHECK(ratio <= 4.0 / 3.0 / 0.8);
  }
  // validation: the centre crop of the largest allowed ratio (here 4/3: 16 x 12 of 20 x 12)
  TfmContext valid{.train = false};
  Pipeline p({make_transform(crop)});
  const Tensor v = data_of(p(Tuple{Image{ramp}}, valid)[0]);
  CHECK(th::at(v, {0, 0, 0, 0}) == Approx(2.5));
  CHECK(th::at(v, {0, 0, 0, 6}) == Approx(17.5));
  CHECK(th::at(v, {0, 1, 5, 0}) == Approx(11.5));
  CHECK(aug_transforms({.size_h = 8, .size_w = 8, .min_scale = 0.5}).size() == 2);
  th::check_throws([] { aug_transforms({.min_scale = 0.5}); }, {"aug_transforms", "min_scale 0.5", "output size"});
}

TEST_CASE("One item (no batch dim): Flip(p = 1) mirrors Image, Mask, Points and BBoxes", "[augment]") {
  const int64_t W = 6;
  const Tensor img = th::random({2, 3, W}, DType::f32), mask = randint(0, 4, {3, W}, {.dtype = DType::i64});
  const Tuple out = run(Flip({.p = 1}), {Image{img}, Mask{mask}, Points{th::make({0.5, 1.0, 4.25, 2.5}, {2, 2})},
                                         BBoxes{th::make({1, 0, 3, 2}, {1, 4})}});
  REQUIRE(data_of(out[0]).shape() == img.shape());
  REQUIRE(data_of(out[1]).shape() == mask.shape());
  for (int64_t j = 0; j < W; ++j) {
    CHECK(th::values(data_of(out[0]).select(2, j)) == th::values(img.select(2, W - 1 - j)));
    CHECK(th::values(data_of(out[1]).select(1, j)) == th::values(mask.select(1, W - 1 - j)));
  }
  // x -> W - x (pixel i spans [i, i + 1)), y unchanged; a box keeps its extent
  th::check_close(th::values(data_of(out[2])), {5.5, 1.0, 1.75, 2.5}, 1e-6, 0, "points");
  th::check_close(th::values(data_of(out[3])), {3, 0, 5, 2}, 1e-6, 0, "bboxes");
}

}  // namespace test_augment
