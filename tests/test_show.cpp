// show_tuples / show_batch (data/show.hpp) and show_results (learn/show_results.hpp): the PNGs are
// read back and checked pixel by pixel against the images, masks, marks and titles they should hold.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "helpers.hpp"
#include "strata/data/datablock.hpp"
#include "strata/data/fashion_mnist.hpp"
#include "strata/data/show.hpp"
#include "strata/io/image.hpp"
#include "strata/learn/callbacks/progress.hpp"
#include "strata/learn/callbacks/recorder.hpp"
#include "strata/learn/callbacks/train_eval.hpp"
#include "strata/learn/show_results.hpp"
#include "strata/nn/flatten.hpp"
#include "strata/nn/linear.hpp"

namespace test_show {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

struct Png {
  int w = 0, h = 0;
  std::vector<uint8_t> px;  // RGB
  Color at(int x, int y) const {
    const uint8_t* p = &px[(size_t(y) * size_t(w) + size_t(x)) * 3];
    return {p[0], p[1], p[2]};
  }
};

Png read_png(const std::string& path) {
  const Tensor img = read_image(path, 3);  // u8 [3, H, W]
  REQUIRE(img.dim() == 3);
  const Tensor hwc = img.permute({1, 2, 0}).contiguous();
  const uint8_t* d = hwc.data_ptr<uint8_t>();
  return {int(img.size(2)), int(img.size(1)), std::vector<uint8_t>(d, d + hwc.numel())};
}

constexpr int kGap = 4, kTitle = 18;  // ShowGrid's layout, as documented
constexpr Color kWhite = {255, 255, 255};

int cell_x(int i, int ncols, int cell) { return kGap + (i % ncols) * (cell + kGap); }
int cell_y(int i, int ncols, int cell) { return kGap + (i / ncols) * (kTitle + cell + kGap) + kTitle; }

// u8 grey image [1, H, W] with pixel (y, x) = (y * 37 + x * 11 + seed) % 256
Tensor grey(int64_t H, int64_t W, int seed = 0) {
  std::vector<double> v;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) v.push_back(double((y * 37 + x * 11 + seed) % 256));
  return th::make(v, {1, H, W}, DType::u8);
}

// how many pixels of the title band of cell i differ from white / are green-ish / red-ish
struct Band {
  int inked = 0, green = 0, red = 0;
};
Band title_band(const Png& p, int i, int ncols, int cell) {
  Band b;
  const int x0 = cell_x(i, ncols, cell), y0 = cell_y(i, ncols, cell) - kTitle;
  for (int y = y0; y < y0 + kTitle; ++y)
    for (int x = x0; x < x0 + cell; ++x) {
      const Color c = p.at(x, y);
      if (c == kWhite) continue;
      ++b.inked;
      if (c.g > c.r + 60 && c.g > c.b + 60) ++b.green;
      if (c.r > c.g + 60 && c.r > c.b + 60) ++b.red;
    }
  return b;
}

double variance(const Png& p) {
  double s = 0, s2 = 0;
  for (uint8_t v : p.px) s += v, s2 += double(v) * v;
  const double n = double(p.px.size());
  return s2 / n - (s / n) * (s / n);
}

}  // namespace

TEST_CASE("show_tuples: grid size, pictures enlarged by nearest neighbour and reduced by area", "[show]") {
  th::TempDir dir("strata_show");
  const std::string path = dir / "grid.png";
  std::vector<Tuple> items;
  for (int i = 0; i < 5; ++i) items.push_back({Image{grey(28, 28, i * 50)}});
  show_tuples(path, items, {.cell = 140});  // 28 -> 140: five times
  const Png p = read_png(path);
  REQUIRE(p.w == 3 * (140 + kGap) + kGap);  // ceil(sqrt(5)) = 3 columns, 2 rows
  REQUIRE(p.h == 2 * (kTitle + 140 + kGap) + kGap);
  CHECK(variance(p) > 1000);
  CHECK(dir.entries() == 1);  // no temporary file left behind
  const std::vector<double> src = th::values(data_of(items[4][0]));
  const int x0 = cell_x(4, 3, 140), y0 = cell_y(4, 3, 140);
  int bad = 0;
  for (int y = 0; y < 140; ++y)
    for (int x = 0; x < 140; ++x) {
      const auto v = uint8_t(src[size_t((y / 5) * 28 + x / 5)]);
      if (!(p.at(x0 + x, y0 + y) == Color{v, v, v})) ++bad;
    }
  CHECK(bad == 0);
  CHECK(title_band(p, 4, 3, 140).inked == 0);  // no labels, no title
  CHECK(p.at(p.w - 1, p.h - 1) == kWhite);     // the sixth cell is empty

  SECTION("a floating RGB image, wider than high, is centred and taken from [0, 1]") {
    const Tensor img = th::random({3, 10, 20}, DType::f32, true, -0.2, 1.2);  // non-contiguous, some out of range
    show_tuples(path, {{Image{img}}}, {.cell = 40});                           // 20 -> 40: twice
    const Png q = read_png(path);
    REQUIRE(q.w == 40 + 2 * kGap);
    REQUIRE(q.h == kTitle + 40 + 2 * kGap);
    const int px0 = kGap, py0 = kGap + kTitle + 10;  // 40 x 20 picture in a 40 x 40 cell
    for (int y = 0; y < 20; ++y)
      for (int x = 0; x < 40; ++x) {
        const Color c = q.at(px0 + x, py0 + y);
        const uint8_t* got = &c.r;
        for (int ch = 0; ch < 3; ++ch) {
          const double v = th::at(img, {ch, y / 2, x / 2});
          const long want = std::lround(std::clamp(v, 0.0, 1.0) * 255);
          if (got[ch] != want) ++bad;
        }
      }
    CHECK(bad == 0);
    CHECK(q.at(px0 + 5, py0 - 1) == kWhite);  // above and below the picture: background
    CHECK(q.at(px0 + 5, py0 + 20) == kWhite);
  }
  SECTION("a large image is reduced by averaging the pixels each display pixel covers") {
    const Tensor img = th::random({3, 64, 64}, DType::f64, false, 0, 255).to(DType::u8);
    show_tuples(path, {{Image{img}}}, {.cell = 32});
    const Png q = read_png(path);
    const int px0 = kGap, py0 = kGap + kTitle;
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x)
        for (int ch = 0; ch < 3; ++ch) {
          double s = 0;
          for (int a = 0; a < 2; ++a)
            for (int b = 0; b < 2; ++b) s += th::at(img, {ch, 2 * y + a, 2 * x + b});
          const Color c = q.at(px0 + x, py0 + y);
          if (std::abs((&c.r)[ch] - s / 4) > 0.51) ++bad;
        }
    CHECK(bad == 0);
  }
}

TEST_CASE("show_tuples: a mask changes only the pixels whose code is not 0, in tab10 at alpha 0.5", "[show]") {
  th::TempDir dir("strata_show");
  const Tensor img = grey(8, 8);
  std::vector<double> codes(64, 0.0);
  for (int y = 2; y < 5; ++y)
    for (int x = 1; x < 4; ++x) codes[size_t(y * 8 + x)] = 1;
  for (int y = 5; y < 8; ++y)
    for (int x = 5; x < 8; ++x) codes[size_t(y * 8 + x)] = 3;
  const Tensor mask = th::make(codes, {8, 8}, DType::i64);
  show_tuples(dir / "plain.png", {{Image{img}}}, {.cell = 32});
  show_tuples(dir / "mask.png", {{Image{img}, Mask{mask}}}, {.cell = 32});
  const Png a = read_png(dir / "plain.png"), b = read_png(dir / "mask.png");
  REQUIRE(a.w == b.w);
  REQUIRE(a.h == b.h);
  const Color palette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}};  // matplotlib's tab10: C0, C1, C2
  int changed = 0, bad = 0;
  for (int y = 0; y < a.h; ++y)
    for (int x = 0; x < a.w; ++x) {
      const int ix = x - kGap, iy = y - kGap - kTitle;
      const bool inside = ix >= 0 && ix < 32 && iy >= 0 && iy < 32;
      const int code = inside ? int(codes[size_t((iy / 4) * 8 + ix / 4)]) : 0;
      Color want = a.at(x, y);
      if (code) {
        const Color c = palette[code - 1];
        auto mix = [](uint8_t p, uint8_t q) { return uint8_t(std::lround(p + (q - p) * 0.5)); };
        want = {mix(want.r, c.r), mix(want.g, c.g), mix(want.b, c.b)};
      }
      if (!(b.at(x, y) == want)) ++bad;
      if (!(b.at(x, y) == a.at(x, y))) ++changed;
    }
  CHECK(bad == 0);
  CHECK(changed == (9 + 9) * 16);  // two 3x3 regions of codes, 4x4 display pixels each
}

TEST_CASE("show_tuples: points, boxes and titles from the targets", "[show]") {
  th::TempDir dir("strata_show");
  const std::string path = dir / "x.png";
  const Tensor black = zeros({1, 20, 20}, {.dtype = DType::u8});
  const int px0 = kGap, py0 = kGap + kTitle;  // cell 100: 5 display pixels per image pixel

  SECTION("points are red dots, boxes tab10 outlines, in the image's pixel coordinates") {
    show_tuples(path, {{Image{black}, Points{th::make({5, 5}, {1, 2})}, BBoxes{th::make({2, 2, 10, 10}, {1, 4})}}},
                {.cell = 100});
    const Png p = read_png(path);
    CHECK(p.at(px0 + 25, py0 + 25) == Color{255, 0, 0});      // the dot at (5, 5)
    CHECK(p.at(px0 + 75, py0 + 75) == Color{0, 0, 0});        // far from every mark
    CHECK(p.at(px0 + 30, py0 + 10) == Color{31, 119, 180});   // top edge of the box, y = 2 -> 10
    CHECK(p.at(px0 + 49, py0 + 30) == Color{31, 119, 180});   // right edge, x = 10 -> 50
    CHECK(p.at(px0 + 30, py0 + 30) == Color{0, 0, 0});        // inside the box
  }
  SECTION("labels come from the vocab, are drawn in the title band, and in title_colors") {
    auto band = [&](const std::vector<Tuple>& items, ShowOptions o) {
      o.cell = 100;
      show_tuples(path, items, o);
      const Png p = read_png(path);
      std::vector<uint8_t> out;
      for (int y = kGap; y < kGap + kTitle; ++y)
        for (int x = kGap; x < kGap + 100; ++x) {
          const Color c = p.at(x, y);
          out.insert(out.end(), {c.r, c.g, c.b});
        }
      return out;
    };
    const Tuple cat{Image{black}, Category{scalar_tensor(int64_t(2))}};
    const std::vector<std::vector<std::string>> vocabs{{}, {"a", "b", "zebra"}};
    const auto by_vocab = band({cat}, {.vocabs = vocabs});
    CHECK(by_vocab == band({{Image{black}}}, {.titles = {"zebra"}}));
    CHECK(by_vocab != band({{Image{black}}}, {.titles = {"a"}}));
    CHECK(by_vocab != std::vector<uint8_t>(by_vocab.size(), 255));
    CHECK(band({cat}, {}) == band({{Image{black}}}, {.titles = {"2"}}));  // no vocab: the index
    const Tuple multi{Image{black}, MultiCategory{th::make({1, 0, 1}, {3})}};
    CHECK(band({multi}, {.vocabs = {{}, {"x", "y", "z"}}}) == band({{Image{black}}}, {.titles = {"x;z"}}));
    const Tuple reg{Image{black}, Regression{th::make({0.5, 2}, {2})}};
    CHECK(band({reg}, {}) == band({{Image{black}}}, {.titles = {"0.5, 2"}}));
    show_tuples(path, {cat}, {.cell = 100, .vocabs = vocabs, .title_colors = {{0, 128, 0}}});
    const Band g = title_band(read_png(path), 0, 1, 100);
    CHECK(g.green > 10);
    CHECK(g.red == 0);
    // a title too long for the cell is drawn smaller, then cut: it stays inside its cell
    show_tuples(path, {{Image{black}}, {Image{black}}},
                {.cell = 40, .titles = {std::string(60, 'W'), ""}});
    const Png p = read_png(path);
    CHECK(title_band(p, 0, 2, 40).inked > 20);
    CHECK(title_band(p, 1, 2, 40).inked == 0);
  }
}

TEST_CASE("show_batch: plain loaders show xb[0] as images and yb[0] as vocab labels", "[show]") {
  th::TempDir dir("strata_show");
  const std::string path = dir / "batch.png";
  const Tensor x = th::random({6, 1, 8, 8}, DType::f32, false, 0, 1);
  const Tensor y = th::make({1, 0, 1, 1, 0, 0}, {6}, DType::i64);
  auto ds = std::make_shared<TensorDataset>(std::vector<Tensor>{x}, std::vector<Tensor>{y});
  DataLoaders dls{.train = DataLoader(ds, {.bs = 6}), .valid = DataLoader(ds, {.bs = 3}), .c = 2,
                  .vocab = {"zero", "one"}};
  show_batch(dls, path, {.max_n = 4, .cell = 32});
  const Png p = read_png(path);
  REQUIRE(p.w == 2 * (32 + kGap) + kGap);
  REQUIRE(p.h == 2 * (kTitle + 32 + kGap) + kGap);
  int bad = 0;
  for (int yy = 0; yy < 32; ++yy)
    for (int xx = 0; xx < 32; ++xx) {
      const auto v = uint8_t(std::lround(th::at(x, {3, 0, yy / 4, xx / 4}) * 255));
      if (!(p.at(cell_x(3, 2, 32) + xx, cell_y(3, 2, 32) + yy) == Color{v, v, v})) ++bad;
    }
  CHECK(bad == 0);
  // the titles are the labels: the same PNG as show_tuples with those titles
  std::vector<Tuple> items;
  for (int i = 0; i < 4; ++i) items.push_back({Image{x.select(0, i)}});
  show_tuples(dir / "want.png", items, {.cell = 32, .titles = {"one", "zero", "one", "one"}});
  CHECK(read_png(dir / "want.png").px == p.px);

  SECTION("valid: the first batch of dls.valid, at most its size") {
    show_batch(dls, path, {.cell = 32}, /*train=*/false);
    const Png q = read_png(path);
    CHECK(q.w == 2 * (32 + kGap) + kGap);  // 3 samples: 2 columns, 2 rows
    CHECK(q.h == 2 * (kTitle + 32 + kGap) + kGap);
  }
  SECTION("a normalized batch is min-max scaled over the batch") {
    const Tensor xn = (x - 0.5) / 0.25;
    xn.select(0, 0).select(0, 0).select(0, 0).fill_(-3.0);  // batch min
    xn.select(0, 1).select(0, 0).select(0, 0).fill_(5.0);   // batch max
    auto dn = std::make_shared<TensorDataset>(std::vector<Tensor>{xn}, std::vector<Tensor>{y});
    show_batch(DataLoaders{.train = DataLoader(dn, {.bs = 6})}, path, {.max_n = 2, .cell = 16});
    const Png q = read_png(path);
    CHECK(q.at(cell_x(0, 2, 16), cell_y(0, 2, 16)) == Color{0, 0, 0});
    CHECK(q.at(cell_x(1, 2, 16), cell_y(1, 2, 16)) == Color{255, 255, 255});
    const double v = (th::at(xn, {0, 0, 7, 7}) + 3) / 8;  // another pixel, scaled by the batch range
    const auto want = uint8_t(std::lround(v * 255));
    CHECK(q.at(cell_x(0, 2, 16) + 15, cell_y(0, 2, 16) + 15) == Color{want, want, want});
  }
}

namespace {

// u8 pixels to floats in [-2, 2] and back: the batch transform a DataBlockInfo decodes
struct Spread {
  Image encodes(const Image& x) const { return Image{(x.data.to(DType::f32) / 255.0 - 0.5) * 4.0}; }
  Image decodes(const Image& x) const { return Image{((x.data / 4.0 + 0.5) * 255.0 + 0.5).to(DType::u8)}; }
};

}  // namespace

TEST_CASE("show_batch: loaders of a DataBlock are decoded by it and labelled with its vocabs", "[show]") {
  th::TempDir dir("strata_show");
  const Tensor u = (th::random({4, 3, 6, 6}, DType::f64, false, 50, 100) + 0.5).to(DType::u8);  // pixels 50..100
  const Tensor y = th::make({1, 0, 0, 1}, {4}, DType::i64);
  auto info = std::make_shared<DataBlockInfo>();
  info->kinds = {ItemKind::image, ItemKind::category};
  info->vocabs = {{}, {"cat", "dog"}};
  info->after_batch = Pipeline({make_transform(Spread{})});
  TfmContext ctx;
  const Tensor x = data_of(info->after_batch(Tuple{Image{u}}, ctx)[0]);  // what the loader yields
  auto ds = std::make_shared<TensorDataset>(std::vector<Tensor>{x}, std::vector<Tensor>{y});
  DataLoaders dls{.train = DataLoader(ds, {.bs = 4}), .c = 2, .vocab = {"wrong", "labels"}, .block = info};
  show_batch(dls, dir / "got.png", {.cell = 24});
  std::vector<Tuple> want;
  for (int i = 0; i < 4; ++i) want.push_back({Image{u.select(0, i)}});
  show_tuples(dir / "want.png", want, {.cell = 24, .titles = {"dog", "cat", "cat", "dog"}});
  CHECK(read_png(dir / "got.png").px == read_png(dir / "want.png").px);  // not min-max scaled: decoded
}

TEST_CASE("show_batch and show_results over a DataBlock: u8 pixels back, labels from its vocab", "[show]") {
  th::TempDir dir("strata_show");
  std::vector<Tensor> imgs;
  for (int i = 0; i < 8; ++i) imgs.push_back(grey(8, 8, i * 20));
  DataBlock<int64_t> dblock{.blocks = {ImageBlock({.channels = 1}), CategoryBlock()},
                            .get_x = [&](const int64_t& i) -> Raw { return imgs[size_t(i)]; },
                            .get_y = [](const int64_t& i) -> Raw { return std::string(i % 2 ? "odd" : "even"); },
                            .splitter = IndexSplitter({4, 5, 6, 7})};
  DataLoaders dls = dblock.dataloaders(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}, {.bs = 4, .seed = 1});
  REQUIRE(dls.block != nullptr);
  show_batch(dls, dir / "got.png", {.cell = 24}, /*train=*/false);
  std::vector<Tuple> want;
  for (int i = 4; i < 8; ++i) want.push_back({Image{imgs[size_t(i)]}});
  show_tuples(dir / "want.png", want, {.cell = 24, .titles = {"even", "odd", "even", "odd"}});
  CHECK(read_png(dir / "got.png").px == read_png(dir / "want.png").px);

  // a model that always says "odd" (class 1): right on odd items, wrong on even ones
  auto lin = std::make_shared<nn::Linear>(64, 2);
  {
    NoGrad ng;
    lin->weight.zero_();
    lin->bias.zero_();
    lin->bias.select(0, 1).fill_(1.0);
  }
  Learner learn(dls, std::make_shared<nn::Sequential>(nn::Flatten(), lin), nn::CrossEntropyLossFlat());
  show_results(learn, dir / "got.png", {.cell = 24});
  const Color g{0, 128, 0}, r{255, 0, 0};
  show_tuples(dir / "want.png", want,
              {.cell = 24, .titles = {"odd / even", "odd / odd", "odd / even", "odd / odd"}, .title_colors = {r, g, r, g}});
  CHECK(read_png(dir / "got.png").px == read_png(dir / "want.png").px);
}

namespace {

// logit 0 = 0, logit 1 = mean(x) - 0.5: predicts class 1 for bright images
nn::ModulePtr bright_classifier(int64_t pixels) {
  auto lin = std::make_shared<nn::Linear>(pixels, 2);
  NoGrad ng;
  lin->weight.zero_();
  lin->weight.select(0, 1).fill_(1.0 / double(pixels));
  lin->bias.zero_();
  lin->bias.select(0, 1).fill_(-0.5);
  return std::make_shared<nn::Sequential>(nn::Flatten(), lin);
}

// per-pixel segmentation: class 1 where the pixel is above 0.5
struct BrightPixels : nn::Module {
  Tensor forward(const Tensor& x) override { return cat({zeros_like(x), x - 0.5}, 1); }  // [B, 2, H, W]
};

}  // namespace

TEST_CASE("show_results: pred / actual titles, green when right, red when wrong", "[show]") {
  th::TempDir dir("strata_show");
  const std::vector<double> bright{0.1, 0.9, 0.2, 0.8, 0.3, 0.7};
  const std::vector<double> label{0, 1, 1, 1, 0, 0};  // predictions: 0 1 0 1 0 1
  std::vector<double> px;
  for (double b : bright) px.insert(px.end(), 16, b);
  const Tensor x = th::make(px, {6, 1, 4, 4}), y = th::make(label, {6}, DType::i64);
  auto ds = std::make_shared<TensorDataset>(std::vector<Tensor>{x}, std::vector<Tensor>{y});
  DataLoaders dls{.train = DataLoader(ds, {.bs = 6}), .valid = DataLoader(ds, {.bs = 6}), .c = 2,
                  .vocab = {"dark", "bright"}};
  Learner learn(dls, bright_classifier(16), nn::CrossEntropyLossFlat());
  const std::string path = dir / "results.png";
  show_results(learn, path, {.cell = 32});
  const Png p = read_png(path);
  REQUIRE(p.w == 3 * (32 + kGap) + kGap);
  REQUIRE(p.h == 2 * (kTitle + 32 + kGap) + kGap);
  const bool right[] = {true, true, false, true, true, false};
  for (int i = 0; i < 6; ++i) {
    const Band b = title_band(p, i, 3, 32);
    INFO("sample " << i);
    CHECK(b.inked > 10);
    CHECK((right[i] ? b.green : b.red) > 10);
    CHECK((right[i] ? b.red : b.green) == 0);
  }
  // the whole picture: the images with these titles in these colours
  std::vector<Tuple> items;
  for (int i = 0; i < 6; ++i) items.push_back({Image{x.select(0, i)}});
  const Color g{0, 128, 0}, r{255, 0, 0};
  show_tuples(dir / "want.png", items,
              {.cell = 32,
               .titles = {"dark / dark", "bright / bright", "dark / bright", "bright / bright", "dark / dark",
                          "bright / dark"},
               .title_colors = {g, g, r, g, g, r}});
  CHECK(read_png(dir / "want.png").px == p.px);

  SECTION("max_n limits the samples; the model is left in eval mode, without grad") {
    learn.model->train();
    show_results(learn, path, {.max_n = 2, .cell = 32});
    CHECK(read_png(path).w == 2 * (32 + kGap) + kGap);
    CHECK_FALSE(learn.model->training);
  }
  SECTION("mask targets: input with the actual mask beside input with the predicted mask") {
    std::vector<double> m(6 * 16, 0.0), img(6 * 16, 0.2);
    for (int i = 0; i < 6 * 16; i += 3) img[size_t(i)] = 0.9;  // predicted code 1 on every third pixel
    for (int i = 0; i < 6 * 16; i += 2) m[size_t(i)] = 1;      // actual code 1 on every other pixel
    const Tensor xi = th::make(img, {6, 1, 4, 4}), ym = th::make(m, {6, 4, 4}, DType::i64);
    auto seg = std::make_shared<TensorDataset>(std::vector<Tensor>{xi}, std::vector<Tensor>{ym});
    Learner sl(DataLoaders{.train = DataLoader(seg, {.bs = 2}), .valid = DataLoader(seg, {.bs = 2})},
               std::make_shared<BrightPixels>(), nn::CrossEntropyLossFlat());
    show_results(sl, path, {.cell = 32});
    std::vector<Tuple> want;
    for (int i = 0; i < 2; ++i) {
      want.push_back({Image{xi.select(0, i)}, Mask{ym.select(0, i)}});
      want.push_back({Image{xi.select(0, i)}, Mask{gt(xi.select(0, i).select(0, 0), 0.5).to(DType::i64)}});
    }
    show_tuples(dir / "want.png", want, {.ncols = 2, .cell = 32, .titles = {"actual", "pred", "actual", "pred"}});
    CHECK(read_png(dir / "want.png").px == read_png(path).px);
  }
}

TEST_CASE("show: errors name the op, what it got and what it expected", "[show]") {
  th::TempDir dir("strata_show");
  const std::string path = dir / "x.png";
  const Tensor img = zeros({1, 4, 4}, {.dtype = DType::u8});
  th::check_throws([&] { show_tuples(path, {}); }, {"show_tuples", "no samples"});
  th::check_throws([&] { show_tuples(path, {{Category{scalar_tensor(int64_t(1))}}}); },
                   {"show_tuples", "items (Category)", "expected an Image"});
  th::check_throws([&] { show_tuples(path, {{Image{zeros({2, 4, 4})}}}); }, {"show_tuples", "[2, 4, 4]", "C = 1 or 3"});
  th::check_throws([&] { show_tuples(path, {{Image{zeros({5, 1, 4, 4})}}}); }, {"show_tuples", "no batch dim"});
  th::check_throws([&] { show_tuples(path, {{Image{img}}}, {.max_n = 0}); }, {"show_tuples", "max_n = 0"});
  th::check_throws([&] { show_tuples(path, {{Image{img}}}, {.cell = 4}); }, {"show_tuples", "cell = 4"});
  th::check_throws([&] { show_tuples(dir / "no/such/dir/x.png", {{Image{img}}}); }, {"show_tuples", "no/such/dir"});
  th::check_throws([&] { show_batch(th::blob_dls(8, 8, 4), path); },
                   {"show_batch", "xb[0] of shape [4, 2]", "image batch"});
  th::check_throws([&] { show_batch(DataLoaders{}, path, {}, /*train=*/false); }, {"show_batch", "empty valid loader"});
  auto no_y = std::make_shared<TensorDataset>(std::vector<Tensor>{zeros({4, 1, 4, 4})}, std::vector<Tensor>{});
  Learner learn(DataLoaders{.train = DataLoader(no_y, {.bs = 2}), .valid = DataLoader(no_y, {.bs = 2})},
                bright_classifier(16), nn::CrossEntropyLossFlat());
  th::check_throws([&] { show_results(learn, path); }, {"show_results", "without targets"});
  CHECK(dir.entries() == 0);  // nothing half-written
}

TEST_CASE("show_batch: Fashion-MNIST (when installed)", "[show]") {
  if (!std::filesystem::exists(fashion_mnist_dir() + "/t10k-images-idx3-ubyte.gz")) return;
  th::TempDir dir("strata_show");
  DataLoaders dls = fashion_mnist({.bs = 16, .num_workers = 0, .n_train = 32, .n_valid = 16});
  show_batch(dls, dir / "fm.png");
  const Png p = read_png(dir / "fm.png");
  CHECK(p.w == 3 * (160 + kGap) + kGap);
  CHECK(p.h == 3 * (kTitle + 160 + kGap) + kGap);
  CHECK(variance(p) > 1000);
  for (int i = 0; i < 9; ++i) CHECK(title_band(p, i, 3, 160).inked > 20);
}

}  // namespace test_show
