// DataBlock (data/datablock.hpp) and its blocks (data/block.hpp): an in-memory Fashion-MNIST-like
// set, splitters, multi-label one-hot, summary(), bad inputs.
#include <catch2/catch.hpp>

#include <fstream>

#include "helpers.hpp"
#include "strata/data/augment.hpp"
#include "strata/data/datablock.hpp"
#include "strata/data/resize.hpp"
#include "strata/data/sources.hpp"
#include "strata/io/image.hpp"

namespace test_datablock {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

// n "images" u8 [n,1,28,28] whose pixels all equal the item's index mod 251, labels i % 10.
struct FakeMnist {
  Tensor images, labels;
  explicit FakeMnist(int64_t n) {
    std::vector<uint8_t> px(size_t(n * 28 * 28));
    std::vector<int64_t> lb(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      std::fill(px.begin() + i * 784, px.begin() + (i + 1) * 784, uint8_t(i % 251));
      lb[size_t(i)] = i % 10;
    }
    images = from_vector(px, {n, 1, 28, 28});
    labels = from_vector(lb, {n});
  }
};

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = i;
  return v;
}

// Adds one to every pixel of train images only (fastai's split_idx = 0), to see which split gets it.
struct TrainOnlyAdd {
  static constexpr const char* name = "TrainOnlyAdd";
  static constexpr Split split = Split::train;
  Image encodes(const Image& x) const { return Image{(x.data.to(DType::f32) + 1.0).to(DType::u8)}; }
};

// An RGB image [3,H,W] whose red channel is bright for "cat" (180..255) and dark for "dog" (0..75);
// the other channels are noise. `seed` varies the noise.
Tensor pet_image(bool cat, int64_t H, int64_t W, uint32_t seed) {
  std::vector<uint8_t> px(size_t(3 * H * W));
  uint32_t r = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < px.size(); ++i) {
    r = r * 1664525u + 1013904223u;
    const auto v = uint8_t(r >> 24);
    px[i] = i < size_t(H * W) ? uint8_t(cat ? 180 + v % 76 : v % 76) : v;
  }
  return from_vector(px, {3, H, W});
}

// An ImageNet-style tree: train/{dog,cat}/ 8 images each (16x16, 20x16 or 16x20), valid/{dog,cat}/ 2
// each (16x16): 20 PNGs.
struct PetTree {
  th::TempDir dir{"strata_datablock"};
  PetTree() {
    uint32_t seed = 1;
    for (const char* split : {"train", "valid"})
      for (const char* cls : {"dog", "cat"}) {
        std::filesystem::create_directories(dir.path / split / cls);
        const int n = std::string(split) == "train" ? 8 : 2;
        for (int i = 0; i < n; ++i, ++seed) {
          const int64_t H = std::string(split) == "valid" ? 16 : 16 + 4 * (i % 2), W = i % 3 == 2 ? 20 : 16;
          write_png((dir.path / split / cls / (std::to_string(i) + ".png")).string(),
                    pet_image(std::string(cls) == "cat", H, W, seed));
        }
      }
  }
  DataBlock<std::filesystem::path> block(bool aug = true) const {
    return {.blocks = {ImageBlock(), CategoryBlock()},
            .get_items = [](const std::filesystem::path& d) { return get_image_files(d); },
            .get_y = parent_label,
            .splitter = GrandparentSplitter("train", "valid"),
            .item_tfms = {make_transform(Resize({.size = 16}))},
            .batch_tfms = aug ? aug_transforms() : std::vector<std::shared_ptr<Transform>>{}};
  }
};

// Mean of the red channel of each image of a [B,3,H,W] float batch.
std::vector<double> red_means(const Tensor& xb) {
  std::vector<double> out;
  for (int64_t k = 0; k < xb.size(0); ++k) {
    const auto v = th::values(xb.select(0, k).select(0, 0));
    double s = 0;
    for (double x : v) s += x;
    out.push_back(s / double(v.size()));
  }
  return out;
}

}  // namespace

TEST_CASE("DataBlock: an ImageNet-style folder with Resize and aug_transforms", "[datablock]") {
  const PetTree tree;
  const auto dblock = tree.block();
  DataLoaders dls = dblock.dataloaders(tree.dir.path, {.bs = 6, .seed = 5});
  CHECK(dls.vocab == std::vector<std::string>{"cat", "dog"});  // sorted, not in folder-walk order
  CHECK(dls.c == 2);
  CHECK(dls.train.n() == 16);
  CHECK(dls.valid.n() == 4);
  REQUIRE(dls.block != nullptr);
  CHECK(dls.block->vocabs[1] == dls.vocab);
  CHECK(dls.block->after_batch.repr() == "Pipeline: IntToFloat -> AffineAug -> Lighting");
  // train: shapes, labels match the folders (the red channel says which), through the augmentations
  int64_t n = 0;
  for (Batch& b : dls.train) {
    CHECK(b.xb[0].shape() == Shape{b.yb[0].size(0), 3, 16, 16});
    CHECK(b.xb[0].dtype() == DType::f32);
    const auto red = red_means(b.xb[0]);
    for (int64_t k = 0; k < b.yb[0].size(0); ++k, ++n) CHECK((red[size_t(k)] > 0.5) == (th::at(b.yb[0], {k}) == 0.0));
  }
  CHECK(n == 16);
  // valid: no train-only transform ran (no random crop, flip, warp, lighting): decode_batch gives
  // the files back exactly, in folder order (valid/cat/0, valid/cat/1, valid/dog/0, valid/dog/1)
  const Batch v = dls.valid.one_batch();
  CHECK(th::values(v.yb[0]) == std::vector<double>{0, 0, 1, 1});
  const Tuple dec = dls.block->decode_batch(v);
  REQUIRE(kind_of(dec[0]) == ItemKind::image);
  REQUIRE(data_of(dec[0]).dtype() == DType::u8);
  const std::vector<std::string> files{"valid/cat/0.png", "valid/cat/1.png", "valid/dog/0.png", "valid/dog/1.png"};
  for (int64_t k = 0; k < 4; ++k)
    CHECK(th::values(data_of(dec[0]).select(0, k)) == th::values(read_image(tree.dir / files[size_t(k)])));
  CHECK(th::values(data_of(dec[1])) == std::vector<double>{0, 0, 1, 1});

  std::ostringstream os;
  dblock.summary(tree.dir.path, os, 4);
  const std::string s = os.str();
  INFO(s);
  for (const std::string& part :
       {"Collecting items from " + tree.dir.path.string(), std::string("Found 20 items"), std::string("2 datasets of sizes 16, 4"),
        "getter gives path '" + (tree.dir.path / "train/cat/0.png").string() + "'", std::string("getter gives string 'cat'"),
        std::string("type transform gives Category [] int64 = 0 (cat)"), std::string("applying Resize gives (Image [3, 16, 16] uint8"),
        std::string("Pipeline: IntToFloat -> AffineAug -> Lighting"), std::string("applying Lighting gives (Image [4, 3, 16, 16] float32"),
        std::string("Final batch: xb [4, 3, 16, 16] float32, yb [4] int64")})
    CHECK(s.find(part) != std::string::npos);
}

TEST_CASE("DataBlock: a folder loader gives the same batches for a seed with 0 and 2 workers", "[datablock]") {
  const PetTree tree;
  const auto dblock = tree.block();
  auto epoch = [&](int workers, uint64_t seed) {
    DataLoaders dls = dblock.dataloaders(tree.dir.path, {.bs = 4, .num_workers = workers, .seed = seed});
    std::vector<double> all;
    for (Batch& b : dls.train) {
      const auto x = th::values(b.xb[0]), y = th::values(b.yb[0]);
      all.insert(all.end(), x.begin(), x.end());
      all.insert(all.end(), y.begin(), y.end());
    }
    return all;
  };
  const std::vector<double> a = epoch(0, 9);
  CHECK(a.size() == 16 * (3 * 16 * 16 + 1));
  CHECK(epoch(2, 9) == a);
  CHECK(epoch(0, 10) != a);
}

TEST_CASE("DataBlock: a corrupt image file is named by the loader, or skipped with skip_bad_items", "[datablock]") {
  const PetTree tree;
  {
    std::ofstream f(tree.dir / "train/cat/zz_bad.png", std::ios::binary);
    f << "\x89PNG\r\n\x1a\n garbage, not a PNG";
  }
  auto dblock = tree.block(false);
  th::check_throws(
      [&] {
        DataLoaders dls = dblock.dataloaders(tree.dir.path, {.bs = 4, .seed = 1});
        for (Batch& b : dls.train) (void)b;
      },
      {"DataBlock: train item", "ImageBlock", "zz_bad.png"});
  dblock.skip_bad_items = true;
  DataLoaders dls = dblock.dataloaders(tree.dir.path, {.bs = 4, .seed = 1});
  CHECK(dls.train.n() == 16);
  int64_t n = 0;
  for (Batch& b : dls.train) n += b.yb[0].size(0);
  CHECK(n == 16);
}

TEST_CASE("DataBlock: ImageBlock + MaskBlock from PNG files, Resize keeps them aligned", "[datablock]") {
  th::TempDir dir("strata_datablock_seg");
  std::vector<std::filesystem::path> images;
  for (int i = 0; i < 4; ++i) {
    const std::string stem = std::to_string(i);
    std::vector<uint8_t> m(12 * 12);
    for (size_t p = 0; p < m.size(); ++p) m[p] = uint8_t((p % 12 + size_t(i)) % 3);  // codes 0..2 by column
    const Tensor mask = from_vector(m, {1, 12, 12});
    write_png(dir / (stem + "_mask.png"), mask);
    write_png(dir / (stem + ".png"), pet_image(i % 2 == 0, 12, 12, uint32_t(i)));
    images.push_back(dir.path / (stem + ".png"));
  }
  DataBlock<std::filesystem::path> dblock{
      .blocks = {ImageBlock(), MaskBlock({.codes = {"bg", "road", "car"}})},
      .get_y = [](const std::filesystem::path& p) -> Raw {
        return p.parent_path() / (p.stem().string() + "_mask.png");
      },
      .splitter = IndexSplitter({3}),
      .item_tfms = {make_transform(Resize({.size = 12}))}};
  DataLoaders dls = dblock.dataloaders(images, {.bs = 4, .shuffle_train = false});
  CHECK(dls.block->kinds == std::vector<ItemKind>{ItemKind::image, ItemKind::mask});
  CHECK(dls.block->vocabs[1] == std::vector<std::string>{"bg", "road", "car"});
  const Batch b = dls.valid.one_batch();
  REQUIRE(b.yb[0].shape() == Shape{1, 12, 12});
  CHECK(b.yb[0].dtype() == DType::i64);
  for (int64_t x = 0; x < 12; ++x) CHECK(th::at(b.yb[0], {0, 5, x}) == double((x + 3) % 3));
  const Batch t = dls.train.one_batch();
  CHECK(t.xb[0].shape() == Shape{3, 3, 12, 12});
  CHECK(t.yb[0].shape() == Shape{3, 12, 12});
}

TEST_CASE("DataBlock<int64_t>: in-memory tensors through get_x / get_y", "[datablock]") {
  const FakeMnist d(100);
  DataBlock<int64_t> dblock{.blocks = {ImageBlock({.channels = 1}), CategoryBlock()},
                            .get_x = [&](const int64_t& i) -> Raw { return d.images.select(0, i); },
                            .get_y = [&](const int64_t& i) -> Raw { return d.labels.select(0, i).item<int64_t>(); },
                            .splitter = RandomSplitter(0.2, 42)};
  DataLoaders dls = dblock.dataloaders(iota(100), {.bs = 16, .seed = 3});
  CHECK(dls.train.n() == 80);
  CHECK(dls.valid.n() == 20);
  CHECK(dls.c == 10);
  CHECK(dls.vocab == std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"});
  REQUIRE(dls.block != nullptr);
  CHECK(dls.block->kinds == std::vector<ItemKind>{ItemKind::image, ItemKind::category});
  CHECK(dls.block->n_inp == 1);
  // every valid batch: pixel value (the item index) and label agree with the source tensors
  int64_t seen = 0;
  for (Batch& b : dls.valid) {
    REQUIRE(b.xb.size() == 1);
    REQUIRE(b.yb.size() == 1);
    CHECK(b.xb[0].dtype() == DType::f32);  // ImageBlock's default IntToFloat
    CHECK(b.xb[0].shape() == Shape{b.yb[0].size(0), 1, 28, 28});
    CHECK(b.yb[0].dtype() == DType::i64);
    for (int64_t k = 0; k < b.yb[0].size(0); ++k) {
      const auto idx = int64_t(std::lround(th::at(b.xb[0], {k, 0, 5, 7}) * 255.0));  // pixel = index (< 251)
      CHECK(th::at(b.yb[0], {k}) == double(idx % 10));
      ++seen;
    }
  }
  CHECK(seen == 20);
  // decode_batch gives the u8 images back, equal to the source rows
  const Batch b = dls.train.one_batch();
  const Tuple t = dls.block->decode_batch(b);
  REQUIRE(kind_of(t[0]) == ItemKind::image);
  CHECK(data_of(t[0]).dtype() == DType::u8);
  const auto idx0 = int64_t(th::at(data_of(t[0]), {0, 0, 0, 0}));
  CHECK(th::values(data_of(t[0]).select(0, 0)) == th::values(d.images.select(0, idx0)));
}

TEST_CASE("DataBlock: CategoryBlock vocab sorted (numbers as numbers), given vocab takes indices", "[datablock]") {
  const std::vector<std::string> labels{"dog", "cat", "zebra", "cat", "ant", "dog"};
  DataBlock<int64_t> by_name{.blocks = {RegressionBlock(), CategoryBlock()},
                             .getters = {[](const int64_t& i) -> Raw { return double(i); },
                                         [&](const int64_t& i) -> Raw { return labels[size_t(i)]; }},
                             .splitter = IndexSplitter({})};
  DataLoaders dls = by_name.dataloaders(iota(6), {.bs = 6, .shuffle_train = false});
  CHECK(dls.vocab == std::vector<std::string>{"ant", "cat", "dog", "zebra"});
  CHECK(th::values(dls.train.one_batch().yb[0]) == std::vector<double>{2, 1, 3, 1, 0, 2});

  const std::vector<int64_t> nums{10, 2, 33, 2};
  DataBlock<int64_t> by_int{.blocks = {RegressionBlock(), CategoryBlock()},
                            .getters = {[](const int64_t& i) -> Raw { return double(i); },
                                        [&](const int64_t& i) -> Raw { return nums[size_t(i)]; }},
                            .splitter = IndexSplitter({})};
  dls = by_int.dataloaders(iota(4), {.bs = 4, .shuffle_train = false});
  CHECK(dls.vocab == std::vector<std::string>{"2", "10", "33"});  // numeric order, not "10" < "2"
  CHECK(th::values(dls.train.one_batch().yb[0]) == std::vector<double>{1, 0, 2, 0});

  by_int.blocks[1] = CategoryBlock({.vocab = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n",
                                              "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "A", "B",
                                              "C", "D", "E", "F", "G", "H"}});
  dls = by_int.dataloaders(iota(4), {.bs = 4, .shuffle_train = false});
  CHECK(dls.c == 34);
  CHECK(th::values(dls.train.one_batch().yb[0]) == std::vector<double>{10, 2, 33, 2});  // already indices
}

TEST_CASE("RandomSplitter: proportions, disjoint cover, same seed same split", "[datablock]") {
  const std::vector<int64_t> items = iota(1000);
  const Splits a = RandomSplitter(0.2, 42)(items), b = RandomSplitter(0.2, 42)(items), c = RandomSplitter(0.2, 7)(items);
  CHECK(a.valid.size() == 200);
  CHECK(a.train.size() == 800);
  CHECK(a.valid == b.valid);
  CHECK(a.train == b.train);
  CHECK(a.valid != c.valid);
  std::vector<int64_t> all = a.train;
  all.insert(all.end(), a.valid.begin(), a.valid.end());
  std::sort(all.begin(), all.end());
  CHECK(all == items);
  // the validation items are spread over the range, not a block: about 20% of each half
  const auto low = std::count_if(a.valid.begin(), a.valid.end(), [](int64_t i) { return i < 500; });
  CHECK(low > 70);
  CHECK(low < 130);
  CHECK(RandomSplitter(0.0)(items).valid.empty());
  th::check_throws([] { (void)RandomSplitter(1.5); }, {"RandomSplitter", "1.5"});
}

TEST_CASE("FuncSplitter, IndexSplitter, GrandparentSplitter", "[datablock]") {
  const Splits f = FuncSplitter([](int64_t i) { return i % 3 == 0; })(iota(7));
  CHECK(f.valid == std::vector<int64_t>{0, 3, 6});
  CHECK(f.train == std::vector<int64_t>{1, 2, 4, 5});
  const Splits x = IndexSplitter({4, 1})(iota(5));
  CHECK(x.valid == std::vector<int64_t>{1, 4});
  CHECK(x.train == std::vector<int64_t>{0, 2, 3});
  th::check_throws([] { (void)IndexSplitter({5})(iota(5)); }, {"IndexSplitter", "5", "[0, 5)"});
  using P = std::filesystem::path;
  const std::vector<P> ps{"/d/train/cat/1.png", "/d/valid/dog/2.png", "/d/test/cat/3.png", "/d/train/dog/4.png"};
  const Splits g = GrandparentSplitter()(ps);
  CHECK(g.train == std::vector<int64_t>{0, 3});
  CHECK(g.valid == std::vector<int64_t>{1});
}

TEST_CASE("MultiCategoryBlock: label lists to one-hot over the sorted union", "[datablock]") {
  const std::vector<std::vector<std::string>> tags{{"sun", "sea"}, {"sea"}, {}, {"tree", "sun"}};
  DataBlock<int64_t> dblock{.blocks = {RegressionBlock(), MultiCategoryBlock()},
                            .getters = {[](const int64_t& i) -> Raw { return double(i); },
                                        [&](const int64_t& i) -> Raw { return tags[size_t(i)]; }},
                            .splitter = IndexSplitter({})};
  DataLoaders dls = dblock.dataloaders(iota(4), {.bs = 4, .shuffle_train = false});
  CHECK(dls.vocab == std::vector<std::string>{"sea", "sun", "tree"});
  CHECK(dls.c == 3);
  const Tensor y = dls.train.one_batch().yb[0];
  CHECK(y.dtype() == DType::f32);
  CHECK(th::values(y) == std::vector<double>{1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1});
  // encoded targets with a given vocab are taken as they are
  TransformBlock enc = MultiCategoryBlock({.vocab = {"a", "b"}});
  CHECK(th::values(data_of(enc(Raw(std::vector<double>{0, 1}))) ) == std::vector<double>{0, 1});
  th::check_throws([&] { (void)enc(Raw(std::vector<double>{0, 1, 1})); }, {"MultiCategoryBlock", "expected 2 values"});
}

TEST_CASE("DataBlock: train-only item tfms skip valid; same seed same batches with 0 and 2 workers", "[datablock]") {
  const FakeMnist d(40);
  DataBlock<int64_t> dblock{.blocks = {ImageBlock({.channels = 1}), CategoryBlock()},
                            .get_x = [&](const int64_t& i) -> Raw { return d.images.select(0, i); },
                            .get_y = [&](const int64_t& i) -> Raw { return d.labels.select(0, i).item<int64_t>(); },
                            .splitter = IndexSplitter({0, 1, 2, 3}),
                            .item_tfms = {make_transform(TrainOnlyAdd{})}};
  DataLoaders dls = dblock.dataloaders(iota(40), {.bs = 8, .num_workers = 0, .seed = 11});
  const Batch v = dls.valid.one_batch();
  CHECK(th::at(v.xb[0], {2, 0, 0, 0}) * 255.0 == Approx(2.0));  // valid item 2: no +1
  auto epoch = [](DataLoader& dl) {
    std::vector<double> all;
    for (Batch& b : dl) {
      const auto x = th::values(b.xb[0].select(1, 0).select(1, 0).select(1, 0));  // pixel (0,0) per item
      all.insert(all.end(), x.begin(), x.end());
    }
    return all;
  };
  const std::vector<double> e0 = epoch(dls.train);
  for (double p : e0) CHECK(std::lround(p * 255.0) >= 5);  // train items 4..39 plus one
  DataLoaders dls2 = dblock.dataloaders(iota(40), {.bs = 8, .num_workers = 2, .seed = 11});
  CHECK(epoch(dls2.train) == e0);
}

/// Adds a random 0..99 to every pixel: shows which random numbers an item drew.
struct RandomAdd {
  static constexpr const char* name = "RandomAdd";
  int64_t add = 0;
  void before_call(const Tuple&, TfmContext& ctx) { add = ctx.rng.randint(0, 100); }
  Image encodes(const Image& x) const { return Image{(x.data.to(DType::f32) + double(add)).to(DType::u8)}; }
};

TEST_CASE("DataBlock: sharded loaders draw each item's random numbers as one loader on the global batch", "[datablock]") {
  // rank r's item k of batch b is item k * W + r of global batch b: the same pixels, the same draws, so
  // the ranks augment differently and together equal one process (distributed training)
  std::vector<std::vector<double>> pixels(3);  // [one loader, rank 0, rank 1]: pixel (0, 0) of each item
  for (int run = 0; run < 3; ++run) {
    DataBlock<int64_t> dblock{.blocks = {ImageBlock({.channels = 1}), CategoryBlock()},
                              .getters = {[](const int64_t&) -> Raw { return Tensor(zeros({1, 2, 2}, {.dtype = DType::u8})); },
                                          [](const int64_t& i) -> Raw { return std::to_string(i % 3); }},
                              .splitter = IndexSplitter({}),
                              .item_tfms = {make_transform(RandomAdd{})}};
    DataLoaders dls = dblock.dataloaders(iota(16), {.bs = run == 0 ? 8 : 4, .seed = 7, .shuffle_train = false});
    if (run > 0) dls.train.options().shard = {.rank = run - 1, .world = 2};
    for (Batch& b : dls.train) {
      const auto x = th::values(b.xb[0].select(1, 0).select(1, 0).select(1, 0));
      pixels[size_t(run)].insert(pixels[size_t(run)].end(), x.begin(), x.end());
    }
  }
  REQUIRE(pixels[0].size() == 16);
  REQUIRE(pixels[1].size() == 8);
  REQUIRE(pixels[2].size() == 8);
  for (size_t i = 0; i < 8; ++i) {  // rank r's i-th item is the one loader's item 2 i + r
    CHECK(pixels[1][i] == pixels[0][2 * i]);
    CHECK(pixels[2][i] == pixels[0][2 * i + 1]);
  }
  CHECK(pixels[1] != pixels[2]);  // the two ranks did not draw alike
}

TEST_CASE("DataBlock::summary prints each step", "[datablock]") {
  const FakeMnist d(12);
  DataBlock<int64_t> dblock{.blocks = {ImageBlock({.channels = 1}), CategoryBlock()},
                            .get_x = [&](const int64_t& i) -> Raw { return d.images.select(0, i); },
                            .get_y = [&](const int64_t& i) -> Raw { return d.labels.select(0, i).item<int64_t>(); },
                            .splitter = IndexSplitter({10, 11}),
                            .item_tfms = {make_transform(TrainOnlyAdd{})}};
  std::ostringstream os;
  dblock.summary(iota(12), os, 3);
  const std::string s = os.str();
  INFO(s);
  for (const char* part : {"Found 12 items", "2 datasets of sizes 10, 2", "CategoryBlock vocab (10): 0, 1, 2",
                           "getter gives Tensor [1, 28, 28] uint8", "type transform gives Image [1, 28, 28] uint8",
                           "getter gives int64 0", "type transform gives Category [] int64 = 0 (0)",
                           "Final sample: (Image [1, 28, 28] uint8, Category [] int64 = 0 (0))",
                           "Pipeline: TrainOnlyAdd", "applying TrainOnlyAdd gives (Image [1, 28, 28] uint8",
                           "Adding the next 2 samples",
                           "Collating items in a batch: (Image [3, 1, 28, 28] uint8, Category [3] int64)",
                           "Pipeline: IntToFloat", "applying IntToFloat gives (Image [3, 1, 28, 28] float32",
                           "Final batch: xb [3, 1, 28, 28] float32, yb [3] int64"})
    CHECK(s.find(part) != std::string::npos);

  // a failing step is named
  DataBlock<int64_t> bad = dblock;
  bad.get_x = [](const int64_t&) -> Raw { return 1.5; };
  std::ostringstream os2;
  th::check_throws([&] { bad.summary(iota(12), os2, 3); }, {"DataBlock::summary", "step", "ImageBlock", "double"});
  CHECK(os2.str().find("Failed at step") != std::string::npos);
}

TEST_CASE("DataBlock: bad inputs give errors naming the block, label or type", "[datablock]") {
  const std::vector<std::string> labels{"a", "b", "a", "zzz"};
  DataBlock<int64_t> dblock{.blocks = {RegressionBlock(), CategoryBlock()},
                            .getters = {[](const int64_t& i) -> Raw { return double(i); },
                                        [&](const int64_t& i) -> Raw { return labels[size_t(i)]; }},
                            .splitter = IndexSplitter({3})};
  th::check_throws([&] { (void)dblock.dataloaders(iota(4)); }, {"CategoryBlock", "'zzz'", "not in the vocab", "valid item 0"});
  // a raw of the wrong type names the block and the type
  th::check_throws([] { (void)ImageBlock()(Raw(int64_t(3))); }, {"ImageBlock", "int64"});
  th::check_throws([] { (void)CategoryBlock()(Raw(2.5)); }, {"CategoryBlock", "double"});
  th::check_throws([] { (void)RegressionBlock()(Raw(std::string("x"))); }, {"RegressionBlock", "string"});
  th::check_throws([] { (void)PointBlock()(Raw(std::vector<double>{1, 2, 3})); }, {"PointBlock", "3 coordinates"});
  th::check_throws([] { (void)ImageBlock()(Raw(zeros({1, 4, 4}, {.dtype = DType::u8}))); }, {"ImageBlock", "1 channels", "expected 3"});
  th::check_throws([] { (void)MaskBlock({.codes = {"bg", "fg"}})(Raw(full({2, 2}, 2.0, {.dtype = DType::i64}))); },
                   {"MaskBlock", "codes in [2, 2]", "[0, 2)"});
  // getters must match the blocks
  DataBlock<int64_t> two = dblock;
  two.getters.pop_back();
  th::check_throws([&] { (void)two.dataloaders(iota(4)); }, {"DataBlock", "1 getters for 2 blocks"});
}

}  // namespace test_datablock
