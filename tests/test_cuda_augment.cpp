// Batch augmentation on cuda tensors (backend/cuda/augment.hpp, kernels/cuda/augment.cuh; the
// emulator under g++) against the same ops on the cpu, on the same values and matrices:
// grid_sample in every mode, pad mode and align_corners, f32/f64/f16/bf16 (and integer dtypes for
// nearest), lighting, random_erase (overlapping rectangles too); RandomCropPad against a plain
// pad-then-crop loop on both devices; aug_transforms + Normalize + RandomErasing on a cuda batch of
// real Fashion-MNIST images; a DataLoader making its batches on cuda with two worker threads.
// Tolerances: pixel-aligned maps (flips, dihedral turns, integer shifts), nearest sampling and the
// erased noise are exact (the same coordinates, the same Philox words; on a GPU the erase noise's
// double log/sqrt/cos may differ in the last bit of a double, which can move a rounded value by one
// ulp of its dtype, so a GPU run allows that there). Bilinear
// sums four products in the cpu's order (a GPU may fuse them into FMAs): f32 2e-6, f64 1e-12, f16
// and bf16 one unit in the last place of [0, 2) values (2^-10, 2^-7). Lighting: the cpu's f32/f64
// kernel uses a vectorized exp and another algebraic form when mul = 1: 2e-6 / 1e-12, f16/bf16
// one ulp. Set STRATA_TEST_VERBOSE=1 to print each comparison's worst |error|.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "strata/backend/cuda/augment.hpp"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/backend/device_allocator.hpp"
#include "strata/data/augment.hpp"
#include "strata/data/dataloader.hpp"
#include "strata/data/fashion_mnist.hpp"
#include "strata/data/normalize.hpp"

namespace test_test_cuda_augment {

namespace sa = strata;
using sa::DType;
using sa::Tensor;

/// All elements of t (any device, dtype, layout) as doubles, row-major.
inline std::vector<double> host(const Tensor& t) {
  const Tensor c = sa::to(t, sa::kCPU).to(DType::f64).contiguous();
  const double* p = c.data_ptr<double>();
  return std::vector<double>(p, p + c.numel());
}

/// got (from cuda) equals want (from the cpu): shape, dtype, cuda device, |got - want| <= tol everywhere.
inline void check_same(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  INFO(what);
  REQUIRE(got.device().is_cuda());
  REQUIRE(want.device().is_cpu());
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == want.dtype());
  const std::vector<double> g = host(got), w = host(want);
  double worst = 0;
  size_t bad = g.size();
  for (size_t i = 0; i < g.size(); ++i) {
    const double e = std::isnan(w[i]) && std::isnan(g[i]) ? 0.0 : std::fabs(g[i] - w[i]);
    if (!(e <= tol) && bad == g.size()) bad = i;
    if (e > worst || std::isnan(e)) worst = e;
  }
  if (std::getenv("STRATA_TEST_VERBOSE")) std::printf("%-70s worst %.3g (tol %.3g)\n", what.c_str(), worst, tol);
  INFO("first mismatch at " << bad << ": got " << (bad < g.size() ? g[bad] : 0) << ", want "
                            << (bad < g.size() ? w[bad] : 0) << "; worst |error| " << worst << ", tol " << tol);
  REQUIRE(bad == g.size());
}

/// Uniform values in [lo, hi) in dtype dt, the same seed giving the same tensor.
inline Tensor uniform(const sa::Shape& shape, DType dt, uint64_t seed, double lo = 0, double hi = 1) {
  sa::TfmRng r(seed, 1, 2, 3);
  std::vector<double> v(size_t(sa::numel(shape)));
  for (double& x : v) x = r.uniform(lo, hi);
  return sa::from_vector(v, shape, {.dtype = DType::f64}).to(dt);
}

/// One unit in the last place of values in [1, 2): the f16/bf16 tolerance.
inline double ulp(DType dt) { return dt == DType::f16 ? 0x1p-10 : dt == DType::bf16 ? 0x1p-7 : 0.0; }
inline double bilinear_tol(DType dt) {
  return dt == DType::f64 ? 1e-12 : dt == DType::f32 ? 2e-6 : ulp(dt);
}
inline const char* name_of(sa::PadMode p) {
  return p == sa::PadMode::zeros ? "zeros" : p == sa::PadMode::border ? "border" : "reflection";
}

const std::vector<DType> kFloat = {DType::f32, DType::f64, DType::f16, DType::bf16};

/// A random matrix around the identity (rotation, zoom, shift), optionally with a perspective row.
inline sa::Mat3 random_mat(sa::TfmRng& r, bool perspective) {
  const double t = r.uniform(-0.8, 0.8), s = r.uniform(0.6, 1.5);
  sa::Mat3 m = sa::affine_mat(s * std::cos(t), s * std::sin(t) + r.uniform(-0.2, 0.2), r.uniform(-0.7, 0.7),
                              -s * std::sin(t), s * std::cos(t), r.uniform(-0.7, 0.7));
  if (perspective) m[6] = r.uniform(-0.3, 0.3), m[7] = r.uniform(-0.3, 0.3);
  return m;
}

// ---------------------------------------------------------------- grid sample

TEST_CASE("cuda grid_sample equals the cpu's: every mode, pad mode, align_corners and dtype", "[cuda][augment]") {
  const int64_t B = 3, C = 2, H = 7, W = 9;
  sa::TfmRng r(7);
  const std::vector<sa::Mat3> smooth = {random_mat(r, false), random_mat(r, true), random_mat(r, false)};
  // pixel-aligned: identity, a horizontal flip, a quarter turn (square images only: see below)
  const std::vector<sa::Mat3> aligned = {sa::mat3_identity(), sa::affine_mat(-1, 0, 0, 0, 1, 0),
                                         sa::affine_mat(1, 0, 0, 0, -1, 0)};
  for (const DType dt : kFloat)
    for (const sa::PadMode pad : {sa::PadMode::zeros, sa::PadMode::border, sa::PadMode::reflection})
      for (const bool align : {true, false})
        for (const sa::SampleMode mode : {sa::SampleMode::bilinear, sa::SampleMode::nearest})
          for (const auto& [oh, ow] : {std::pair<int64_t, int64_t>{0, 0}, {5, 11}}) {
            const Tensor x = uniform({B, C, H, W}, dt, 11, -1, 1);
            const Tensor xg = sa::to(x, sa::kCUDA);
            const sa::GridSampleOptions o{.height = oh, .width = ow, .mode = mode, .pad_mode = pad,
                                          .align_corners = align};
            const std::string what = std::string(sa::dtype_name(dt)) + " " + name_of(pad) +
                                     (align ? " align" : " no-align") +
                                     (mode == sa::SampleMode::nearest ? " nearest" : " bilinear") +
                                     (oh ? " resized" : "");
            const double tol = mode == sa::SampleMode::nearest ? 0.0 : bilinear_tol(dt);
            check_same(sa::grid_sample(xg, smooth, o), sa::grid_sample(x, smooth, o), tol, what + " smooth");
            // pixel-aligned maps at the input's size are exact copies on both devices
            if (oh == 0) {
              const Tensor got = sa::grid_sample(xg, aligned, o);
              check_same(got, sa::grid_sample(x, aligned, o), 0.0, what + " aligned");
              const std::vector<double> g = host(got), v = host(x);
              for (int64_t b = 0; b < B; ++b)
                for (int64_t c = 0; c < C; ++c)
                  for (int64_t i = 0; i < H; ++i)
                    for (int64_t j = 0; j < W; ++j) {
                      const int64_t si = b == 2 ? H - 1 - i : i, sj = b == 1 ? W - 1 - j : j;
                      REQUIRE(g[size_t(((b * C + c) * H + i) * W + j)] == v[size_t(((b * C + c) * H + si) * W + sj)]);
                    }
            }
          }
}

TEST_CASE("cuda grid_sample: nearest on integer masks keeps their codes; one matrix for all; [C, H, W]",
          "[cuda][augment]") {
  sa::TfmRng r(3);
  const std::vector<sa::Mat3> mats = {random_mat(r, true), random_mat(r, false)};
  for (const DType dt : {DType::i64, DType::i32, DType::u8}) {
    const Tensor m = sa::randint(0, 7, {2, 1, 6, 8}, {.dtype = dt});
    const sa::GridSampleOptions o{.mode = sa::SampleMode::nearest, .pad_mode = sa::PadMode::reflection};
    check_same(sa::grid_sample(sa::to(m, sa::kCUDA), mats, o), sa::grid_sample(m, mats, o), 0.0,
               "mask " + std::string(sa::dtype_name(dt)));
  }
  const Tensor x = uniform({3, 5, 4}, DType::f32, 5);  // one image, one matrix
  check_same(sa::grid_sample(sa::to(x, sa::kCUDA), {mats[0]}), sa::grid_sample(x, {mats[0]}), 2e-6, "[C, H, W]");
  // a strided cuda input is made contiguous first, as on the cpu
  const Tensor xt = uniform({2, 3, 6, 5}, DType::f32, 6).transpose(2, 3);
  check_same(sa::grid_sample(sa::to(xt, sa::kCUDA).transpose(2, 3).transpose(2, 3), mats),
             sa::grid_sample(xt, mats), 2e-6, "strided");
  // bilinear on an integer dtype is refused on cuda too, naming the op
  CHECK_THROWS_WITH(sa::grid_sample(sa::to(sa::randint(0, 3, {1, 1, 4, 4}, {.dtype = DType::i64}), sa::kCUDA), mats),
                    Catch::Contains("grid_sample"));
}

// ---------------------------------------------------------------- lighting and erasing

TEST_CASE("cuda lighting equals the cpu's: neutral images copied, mul = 1, general", "[cuda][augment]") {
  const std::vector<double> add = {0.0, 0.4, -0.3, 0.0, 0.25}, mul = {1.0, 1.0, 1.3, 0.8, 0.7};
  for (const DType dt : kFloat) {
    Tensor x = uniform({5, 3, 7, 6}, dt, 9);
    // the clamp at eps and 1 - eps: exact 0 and 1 pixels
    x = sa::to(x, sa::kCPU);
    const Tensor xg = sa::to(x, sa::kCUDA);
    const double tol = dt == DType::f64 ? 1e-12 : dt == DType::f32 ? 2e-6 : ulp(dt) / 2;
    const Tensor want = sa::lighting(x, add, mul), got = sa::lighting(xg, add, mul);
    check_same(got, want, tol, "lighting " + std::string(sa::dtype_name(dt)));
    const std::vector<double> g = host(got), v = host(x);
    for (size_t i = 0; i < g.size() / 5; ++i) REQUIRE(g[i] == v[i]);  // image 0: add 0, mul 1: a copy
  }
  const Tensor edges = sa::from_vector(std::vector<double>{0, 1, 0.5, 1e-9, 1 - 1e-9, 0.25}, {2, 3});
  check_same(sa::lighting(sa::to(edges, sa::kCUDA), {0.3, -0.2}, {1.5, 1.0}), sa::lighting(edges, {0.3, -0.2}, {1.5, 1.0}),
             2e-6, "lighting at 0 and 1");
}

TEST_CASE("cuda random_erase equals the cpu's bit for bit, overlapping rectangles in order", "[cuda][augment]") {
  const std::array<uint32_t, 2> key = {0x1234u, 0xabcdu};
  const std::vector<sa::cpu::EraseRect> grouped = {{.image = 0, .r0 = 1, .r1 = 5, .c0 = 2, .c1 = 7},
                                                   {.image = 0, .r0 = 3, .r1 = 8, .c0 = 0, .c1 = 4},
                                                   {.image = 2, .r0 = 0, .r1 = 9, .c0 = 0, .c1 = 10},
                                                   {.image = 3, .r0 = 4, .r1 = 4, .c0 = 1, .c1 = 3}};
  const std::vector<sa::cpu::EraseRect> mixed = {{.image = 1, .r0 = 2, .r1 = 6, .c0 = 1, .c1 = 6},
                                                 {.image = 0, .r0 = 0, .r1 = 3, .c0 = 0, .c1 = 3},
                                                 {.image = 1, .r0 = 4, .r1 = 9, .c0 = 4, .c1 = 9},
                                                 {.image = 1, .r0 = 0, .r1 = 5, .c0 = 0, .c1 = 2}};
  for (const DType dt : kFloat)
    for (const auto* rects : {&grouped, &mixed}) {
      const Tensor x = uniform({4, 3, 9, 10}, dt, 13);
      // exact under the emulator; a GPU's double log/sqrt/cos may move a value by an ulp of the dtype
      const double tol = sa::cuda::kEmulated ? 0.0 : dt == DType::f64 ? 1e-12 : dt == DType::f32 ? 4e-6 : 4 * ulp(dt);
      const Tensor want = sa::random_erase(x, *rects, key);
      check_same(sa::random_erase(sa::to(x, sa::kCUDA), *rects, key), want, tol,
                 "random_erase " + std::string(sa::dtype_name(dt)) + (rects == &grouped ? " grouped" : " mixed"));
      REQUIRE(host(want) != host(x));  // something was erased
    }
}

// ---------------------------------------------------------------- random crop with padding

/// Pixel (r, c) of plane p (H x W) read through the padding (zeros; border: the edge pixel;
/// reflection: mirrored about the edge pixels' centres with align_corners, about their outer edges without).
inline double padded(const std::vector<double>& p, int64_t H, int64_t W, int64_t r, int64_t c, sa::PadMode pad,
                     bool align) {
  auto fold = [&](int64_t i, int64_t n) {
    if (pad == sa::PadMode::border) return std::clamp<int64_t>(i, 0, n - 1);
    if (n == 1) return int64_t(0);
    while (i < 0 || i >= n) {
      if (align) i = i < 0 ? -i : 2 * (n - 1) - i;      // "reflect": ... 2 1 | 0 1 2 ... n-1 | n-2 ...
      else i = i < 0 ? -i - 1 : 2 * n - 1 - i;           // "symmetric": ... 1 0 | 0 1 ... n-1 | n-1 ...
    }
    return i;
  };
  if (pad == sa::PadMode::zeros && (r < 0 || r >= H || c < 0 || c >= W)) return 0.0;
  return p[size_t(fold(r, H) * W + fold(c, W))];
}

/// The reference: per image, draw (flip if asked, then) top and left as RandomCropPad does, pad
/// the image by `padding`, crop H x W at (top, left), flipped.
inline std::vector<double> crop_pad_ref(const Tensor& x, int64_t padding, sa::PadMode pad, bool align, bool flip,
                                        sa::TfmRng rng) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const std::vector<double> v = host(x);
  std::vector<bool> flipped(size_t(B), false);
  if (flip)
    for (int64_t b = 0; b < B; ++b) flipped[size_t(b)] = rng.bernoulli(0.5);
  std::vector<double> out(v.size());
  for (int64_t b = 0; b < B; ++b) {
    const int64_t top = rng.randint(0, 2 * padding + 1), left = rng.randint(0, 2 * padding + 1);
    const int64_t dy = top - padding, dx = left - padding;
    for (int64_t c = 0; c < C; ++c) {
      const std::vector<double> plane(v.begin() + (b * C + c) * H * W, v.begin() + (b * C + c + 1) * H * W);
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
          // the flip acts on the crop's output coordinate, mirrored in the input: x_in = -(u + shift)
          const int64_t col = flipped[size_t(b)] ? W - 1 - (j + dx) : j + dx;
          out[size_t(((b * C + c) * H + i) * W + j)] = padded(plane, H, W, i + dy, col, pad, align);
        }
    }
  }
  return out;
}

TEST_CASE("RandomCropPad: the padded crop of a plain loop, exactly, on the cpu and on cuda", "[cuda][augment]") {
  const sa::TfmRng rng(21, 3, 4);
  for (const sa::PadMode pad : {sa::PadMode::reflection, sa::PadMode::zeros, sa::PadMode::border})
    for (const bool align : {true, false})
      for (const bool flip : {false, true})
        for (const DType dt : {DType::f32, DType::u8, DType::bf16}) {
          INFO(name_of(pad) << (align ? " align" : " no-align") << (flip ? " + Flip" : "") << " "
                            << sa::dtype_name(dt));
          const Tensor x = dt == DType::u8 ? sa::randint(0, 256, {6, 3, 8, 7}, {.dtype = DType::u8})
                                           : uniform({6, 3, 8, 7}, dt, 17, -1, 1);
          // alone (nearest: any dtype), or merged with Flip into one bilinear resampling (floats)
          if (flip && dt == DType::u8) continue;
          std::vector<sa::AffinePart> parts;
          if (flip) parts.emplace_back(sa::FlipOptions{.p = 0.5});
          parts.emplace_back(sa::RandomCropPadOptions{.padding = 3, .pad_mode = pad});
          const sa::ResampleOptions ro{.mode = flip ? sa::SampleMode::bilinear : sa::SampleMode::nearest,
                                       .pad_mode = pad, .align_corners = align};
          sa::Pipeline pipe({sa::make_transform(sa::AffineAug(parts, ro))});
          const std::vector<double> want = crop_pad_ref(x, 3, pad, align, flip, rng);
          for (const sa::Device d : {sa::kCPU, sa::kCUDA}) {
            sa::TfmContext ctx{.train = true, .rng = rng};
            const sa::Tuple out = pipe(sa::Tuple{sa::Image{sa::to(x, d)}}, ctx);
            const Tensor y = sa::data_of(out[0]);
            REQUIRE(y.device() == d);
            REQUIRE(y.dtype() == dt);
            REQUIRE(host(y) == want);
          }
        }
  // the named transform: reflection, 4 pixels, nearest; validation data untouched; bad padding named
  const Tensor x = uniform({4, 1, 28, 28}, DType::f32, 2);
  sa::Pipeline pipe({sa::make_transform(sa::RandomCropPad({.padding = 4}))});
  sa::TfmContext ctx{.train = true, .rng = rng};
  REQUIRE(host(sa::data_of(pipe(sa::Tuple{sa::Image{sa::to(x, sa::kCUDA)}}, ctx)[0])) ==
          crop_pad_ref(x, 4, sa::PadMode::reflection, true, false, rng));
  sa::TfmContext valid{.train = false, .rng = rng};
  REQUIRE(host(sa::data_of(pipe(sa::Tuple{sa::Image{x}}, valid)[0])) == host(x));
  CHECK_THROWS_WITH(sa::RandomCropPad({.padding = -1}), Catch::Contains("RandomCropPad"));
}

// ---------------------------------------------------------------- pipelines and loaders

/// Fashion-MNIST's first n train images, u8 [n, 1, 28, 28], and labels (skips the test without the data).
inline std::pair<Tensor, Tensor> fmnist(int64_t n) {
  const sa::DataLoaders dls = sa::fashion_mnist({.bs = n, .num_workers = 0, .n_train = n, .n_valid = 1});
  const auto& ds = dls.train.dataset();
  const sa::Batch b = ds.get_batch([&] {
    std::vector<int64_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) idx[size_t(i)] = i;
    return idx;
  }(), {});
  return {b.xb[0], b.yb[0]};
}

/// The batch pipeline of the tests: IntToFloat, aug_transforms (flip, warp, rotate, zoom, lighting),
/// a padded crop, Normalize, RandomErasing.
inline sa::Pipeline batch_pipeline() {
  std::vector<std::shared_ptr<sa::Transform>> t = sa::aug_transforms({.max_zoom = 1.2});
  t.push_back(sa::make_transform(sa::IntToFloat{}));
  t.push_back(sa::make_transform(sa::RandomCropPad({.padding = 2, .pad_mode = sa::PadMode::zeros})));
  t.push_back(sa::make_transform(sa::Normalize::from_stats({sa::kFashionMnistMean}, {sa::kFashionMnistStd})));
  t.push_back(sa::make_transform(sa::RandomErasing(0.5)));
  return sa::Pipeline(t);
}

TEST_CASE("aug_transforms + crop + Normalize + RandomErasing on a cuda batch of Fashion-MNIST equal the cpu's",
          "[cuda][augment]") {
  const auto [images, labels] = fmnist(64);
  const sa::Pipeline pipe = batch_pipeline();
  for (uint64_t batch = 0; batch < 3; ++batch) {
    sa::TfmContext c1{.train = true, .rng = sa::TfmRng(5, 0, batch)}, c2 = c1;
    const sa::Tuple want = pipe(sa::Tuple{sa::Image{images}, sa::Category{labels}}, c1);
    const sa::Tuple got =
        pipe(sa::Tuple{sa::Image{sa::to(images, sa::kCUDA)}, sa::Category{sa::to(labels, sa::kCUDA)}}, c2);
    // normalized values span about [-0.8, 2.1]; bilinear and lighting in f32
    check_same(sa::data_of(got[0]), sa::data_of(want[0]), 1e-5, "pipeline batch " + std::to_string(batch));
    check_same(sa::data_of(got[1]), sa::data_of(want[1]), 0.0, "labels");
  }
  // a Mask (nearest), Points and BBoxes follow the same matrices on cuda (points and boxes mapped on
  // the host, returned on the device)
  const Tensor pts = uniform({4, 3, 2}, DType::f32, 8, 0, 28), boxes = uniform({4, 2, 4}, DType::f32, 4, 0, 28);
  const Tensor mask = sa::randint(0, 4, {4, 28, 28}, {.dtype = DType::i64});
  sa::Pipeline geo({sa::make_transform(sa::Rotate(30, 1.0)), sa::make_transform(sa::Zoom(1.0, 1.5, 1.0))});
  sa::TfmContext c1{.train = true, .rng = sa::TfmRng(9)}, c2 = c1;
  const Tensor img = images.narrow(0, 0, 4).to(DType::f32);
  const sa::Tuple want = geo(sa::Tuple{sa::Image{img}, sa::Mask{mask}, sa::Points{pts}, sa::BBoxes{boxes}}, c1);
  const sa::Tuple got = geo(sa::Tuple{sa::Image{sa::to(img, sa::kCUDA)}, sa::Mask{sa::to(mask, sa::kCUDA)},
                                      sa::Points{sa::to(pts, sa::kCUDA)}, sa::BBoxes{sa::to(boxes, sa::kCUDA)}},
                            c2);
  check_same(sa::data_of(got[0]), sa::data_of(want[0]), 2e-4, "rotated and zoomed u8-valued images");
  check_same(sa::data_of(got[1]), sa::data_of(want[1]), 0.0, "mask");
  check_same(sa::data_of(got[2]), sa::data_of(want[2]), 0.0, "points");
  check_same(sa::data_of(got[3]), sa::data_of(want[3]), 0.0, "boxes");
  REQUIRE(host(sa::data_of(got[1])) != host(mask));  // the geometry did something
}

TEST_CASE("IntToFloat and Normalize encode and decode cuda batches as on the cpu", "[cuda][augment]") {
  const auto [images, labels] = fmnist(16);
  const sa::IntToFloat itf;
  const sa::Normalize norm = sa::Normalize::from_stats(sa::imagenet_stats);
  const Tensor x3 = images.expand({16, 3, 28, 28}).contiguous(), xg = sa::to(x3, sa::kCUDA);
  const Tensor f = itf.encode(x3), fg = itf.encode(xg);
  check_same(fg, f, 0.0, "IntToFloat");
  check_same(norm.encode(fg), norm.encode(f), 0.0, "Normalize");
  check_same(norm.encode(fg.select(0, 3)), norm.encode(f.select(0, 3)), 0.0, "Normalize one [C, H, W] image");
  check_same(norm.decode(norm.encode(fg)), norm.decode(norm.encode(f)), 0.0, "Normalize::decode");
  check_same(itf.decode(fg), x3, 0.0, "IntToFloat::decode: the u8 pixels back");
}

/// The pipeline as a loader's after_batch (as DataBlock's after_batch_transform does).
inline sa::BatchTransform as_batch_transform(std::shared_ptr<const sa::Pipeline> pipe) {
  return [pipe](sa::Batch& b, const sa::BatchContext& ctx) {
    sa::TfmContext tc{.train = true, .rng = sa::TfmRng(ctx.seed, ctx.epoch, uint64_t(ctx.batch))};
    const sa::Tuple t = (*pipe)(sa::Tuple{sa::Image{b.xb[0]}, sa::Category{b.yb[0]}}, tc);
    b.xb[0] = sa::data_of(t[0]);
    b.yb[0] = sa::data_of(t[1]);
  };
}

TEST_CASE("DataLoader with .device = kCUDA and 2 workers makes the cpu loader's batches on cuda",
          "[cuda][augment][data]") {
  sa::DataLoaders dls = sa::fashion_mnist({.bs = 48, .num_workers = 2, .seed = 3, .n_train = 240, .n_valid = 100,
                                           .normalize = false, .drop_last = false});
  const auto pipe = std::make_shared<const sa::Pipeline>(batch_pipeline());
  dls.train.options().after_batch = {as_batch_transform(pipe)};
  sa::DataLoaders gpu = dls;
  gpu.to(sa::kCUDA);
  REQUIRE(gpu.device() == sa::kCUDA);
  REQUIRE(gpu.valid.options().device == sa::kCUDA);
  REQUIRE(dls.device() == sa::kCPU);
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<sa::Batch> want, got;
    for (sa::Batch& b : dls.train) want.push_back(b);
    for (sa::Batch& b : gpu.train) got.push_back(b);
    REQUIRE(got.size() == 5);
    REQUIRE(got.size() == want.size());
    for (size_t k = 0; k < got.size(); ++k) {
      check_same(got[k].xb[0], want[k].xb[0], 1e-5, "epoch " + std::to_string(epoch) + " batch " + std::to_string(k));
      check_same(got[k].yb[0], want[k].yb[0], 0.0, "labels");
    }
  }
  // the valid loader: IntToFloat only (fashion_mnist's), on cuda, exact
  std::vector<Tensor> vw, vg;
  for (sa::Batch& b : dls.valid) vw.push_back(b.xb[0]);
  for (sa::Batch& b : gpu.valid) vg.push_back(b.xb[0]);
  REQUIRE(vg.size() == 3);
  for (size_t k = 0; k < vg.size(); ++k) check_same(vg[k], vw[k], 0.0, "valid batch " + std::to_string(k));
  // back on the cpu
  gpu.to(sa::kCPU);
  REQUIRE(gpu.train.one_batch().xb[0].device().is_cpu());
}

TEST_CASE("emulated launches from several threads at once give each thread its own result", "[cuda][augment]") {
  // DataLoader workers launch kernels concurrently: the emulator keeps per-thread block state
  sa::TfmRng r(1);
  const std::vector<sa::Mat3> mats = {random_mat(r, true), random_mat(r, false), random_mat(r, true)};
  std::vector<Tensor> xs, want(4), got(4);
  for (int t = 0; t < 4; ++t) xs.push_back(uniform({3, 2, 30, 30}, DType::f32, uint64_t(100 + t)));
  for (int t = 0; t < 4; ++t) want[size_t(t)] = sa::grid_sample(xs[size_t(t)], mats, {.pad_mode = sa::PadMode::border});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep)
        got[size_t(t)] = sa::grid_sample(sa::to(xs[size_t(t)], sa::kCUDA), mats, {.pad_mode = sa::PadMode::border});
    });
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < 4; ++t) check_same(got[size_t(t)], want[size_t(t)], 2e-6, "thread " + std::to_string(t));
}

}  // namespace test_test_cuda_augment
