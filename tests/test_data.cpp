// data: read_idx on Debian's Fashion-MNIST files and on small hand-made idx files (plain, gzipped,
// every element type, broken ones); TensorDataset and the default collate; DataLoader epochs
// (coverage, drop_last, seeded shuffles, workers giving the serial sequence, early break, worker
// exceptions, one_batch, options changed between epochs); fashion_mnist's loaders and its
// missing-file error; IntToFloat and Normalize against their formulas and round trips.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <strata/data/fashion_mnist.hpp>

#include "helpers.hpp"

namespace test_data {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string kDebianDir = "/usr/share/datasets/fashion-mnist";

/// A fresh temporary directory, removed with everything in it at the end of the test.

using Bytes = std::vector<unsigned char>;

/// idx bytes: 0 0 type ndim, dims big endian, then `data` as given (already big endian).
Bytes idx_bytes(unsigned char type, const std::vector<uint32_t>& dims, const Bytes& data) {
  Bytes b{0, 0, type, uint8_t(dims.size())};
  for (uint32_t d : dims) b.insert(b.end(), {uint8_t(d >> 24), uint8_t(d >> 16), uint8_t(d >> 8), uint8_t(d)});
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

void write_plain(const std::string& path, const Bytes& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
void write_gz(const std::string& path, const Bytes& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, b.data(), unsigned(b.size())) == int(b.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

/// Items i: x = [i, 10 i] (f32), y = i (i64).
std::shared_ptr<TensorDataset> counting_ds(int64_t n) {
  Tensor y = arange(0, double(n), 1, {.dtype = DType::i64});
  Tensor x = stack({y.to(DType::f32), y.to(DType::f32) * 10.0}, 1);
  return std::make_shared<TensorDataset>(std::vector{x}, std::vector{y});
}

/// The yb[0] values of every batch of one epoch.
std::vector<std::vector<int64_t>> epoch_labels(DataLoader& dl) {
  std::vector<std::vector<int64_t>> out;
  for (Batch& b : dl) {
    std::vector<int64_t> ids;
    for (double v : th::values(b.yb[0])) ids.push_back(int64_t(v));
    out.push_back(ids);
  }
  return out;
}

/// A dataset that counts get_batch calls, can throw at one item and sleeps to make workers race.
class ProbeDataset : public Dataset {
 public:
  explicit ProbeDataset(int64_t n, int64_t bad = -1) : n_(n), bad_(bad) {}
  int64_t size() const override { return n_; }
  Batch get(int64_t i) const override {
    check_index(i, "ProbeDataset::get");
    if (i == bad_) throw Error("ProbeDataset: item " + std::to_string(i) + " is broken");
    return {{full({2}, double(i))}, {scalar_tensor(double(i), {.dtype = DType::i64})}};
  }
  Batch get_batch(const std::vector<int64_t>& idxs) const override {
    ++calls;
    return Dataset::get_batch(idxs);  // the default: stack of get()
  }
  mutable std::atomic<int> calls{0};

 private:
  int64_t n_, bad_;
};

}  // namespace

// ---------------------------------------------------------------- read_idx

TEST_CASE("read_idx reads Debian's Fashion-MNIST files", "[data][idx]") {
  REQUIRE(fs::exists(kDebianDir + "/train-images-idx3-ubyte.gz"));  // tools/setup.sh installs dataset-fashion-mnist
  Tensor labels = read_idx(kDebianDir + "/train-labels-idx1-ubyte.gz");
  CHECK(labels.dtype() == DType::u8);
  REQUIRE(labels.shape() == Shape{60000});
  const std::vector<double> first = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9, 5, 5, 7, 9, 1, 0, 6, 4};
  const std::vector<double> lv = th::values(labels);
  CHECK(std::vector<double>(lv.begin(), lv.begin() + 20) == first);
  std::vector<int> counts(10, 0);  // Fashion-MNIST is balanced: 6000 train images per class
  for (double v : lv) counts[size_t(v)]++;
  CHECK(counts == std::vector<int>(10, 6000));

  Tensor images = read_idx(kDebianDir + "/train-images-idx3-ubyte.gz");
  CHECK(images.dtype() == DType::u8);
  REQUIRE(images.shape() == Shape{60000, 28, 28});
  // image 0 (an ankle boot): its pixel sum and row 14, from Python's gzip module
  CHECK(images.select(0, 0).to(DType::i64).sum().item<int64_t>() == 76247);
  const std::vector<double> row14 = {0,   0,   1,   4,   6,   7,   2,   0,   0,   0,   0,   0,   237, 226,
                                     217, 223, 222, 219, 222, 221, 216, 223, 229, 215, 218, 255, 77,  0};
  CHECK(th::values(images.select(0, 0).select(0, 14)) == row14);

  Tensor head = read_idx(kDebianDir + "/train-images-idx3-ubyte.gz", 100);  // only the first 100 inflated
  REQUIRE(head.shape() == Shape{100, 28, 28});
  CHECK(th::values(head) == th::values(images.narrow(0, 0, 100)));
  CHECK(read_idx(kDebianDir + "/t10k-labels-idx1-ubyte.gz").shape() == Shape{10000});
}

TEST_CASE("read_idx: small files of every element type, plain and gzipped", "[data][idx]") {
  th::TempDir dir;
  const Bytes u8_data = {1, 2, 3, 250, 0, 7};
  for (bool gz : {false, true}) {
    const std::string p = dir / (gz ? "a.idx.gz" : "a.idx");
    (gz ? write_gz : write_plain)(p, idx_bytes(0x08, {2, 3}, u8_data));
    Tensor t = read_idx(p);
    CHECK(t.dtype() == DType::u8);
    CHECK(t.shape() == Shape{2, 3});
    CHECK(th::values(t) == std::vector<double>{1, 2, 3, 250, 0, 7});
    CHECK(read_idx(p, 1).shape() == Shape{1, 3});
    CHECK(read_idx(p, 5).shape() == Shape{2, 3});  // more than there is: all of it
  }
  struct Case {
    unsigned char type;
    Bytes data;  // big endian
    DType dtype;
    std::vector<double> want;
  };
  const std::vector<Case> cases = {
      {0x09, {0xFF, 0x7F, 0x80}, DType::i32, {-1, 127, -128}},
      {0x0B, {0xFF, 0xFE, 0x01, 0x00, 0x80, 0x00}, DType::i32, {-2, 256, -32768}},
      {0x0C, {0x00, 0x00, 0x01, 0x02, 0xFF, 0xFF, 0xFF, 0xFD, 0x7F, 0xFF, 0xFF, 0xFF}, DType::i32,
       {258, -3, 2147483647}},
      {0x0D, {0x3F, 0x80, 0x00, 0x00, 0xC0, 0x20, 0x00, 0x00, 0x3E, 0x00, 0x00, 0x00}, DType::f32, {1.0, -2.5, 0.125}},
      {0x0E,
       {0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0xC0, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18, 0, 0, 0, 0, 0, 0, 0, 0},
       DType::f64,
       {1.0, -3.141592653589793, 0.0}},
  };
  for (const Case& c : cases) {
    const std::string p = dir / "t.idx";
    write_plain(p, idx_bytes(c.type, {3}, c.data));
    Tensor t = read_idx(p);
    INFO("type code " << int(c.type));
    CHECK(t.dtype() == c.dtype);
    CHECK(t.shape() == Shape{3});
    CHECK(th::values(t) == c.want);
  }
  write_plain(dir / "s.idx", idx_bytes(0x08, {}, {42}));  // 0 dims: one value
  CHECK(read_idx(dir / "s.idx").shape() == Shape{});
  write_plain(dir / "e.idx", idx_bytes(0x08, {0, 28}, {}));  // no entries
  CHECK(read_idx(dir / "e.idx").shape() == Shape{0, 28});
}

TEST_CASE("read_idx errors name the file and what is wrong", "[data][idx]") {
  th::TempDir dir;
  th::check_throws([&] { read_idx(dir / "nope.gz"); }, {"read_idx", "nope.gz", "no such file"});
  th::check_throws([&] { read_idx(dir.path.string()); }, {"read_idx", "not a regular file"});
  write_plain(dir / "magic", {'P', 'K', 3, 4, 0, 0, 0, 1, 9});  // a zip file
  th::check_throws([&] { read_idx(dir / "magic"); }, {"read_idx", "bad magic", "magic"});
  write_plain(dir / "junk.gz", {0x1f, 0x8b, 0x08, 0x03, 0, 0, 0, 1, 9});  // a gzip header, then nonsense
  th::check_throws([&] { read_idx(dir / "junk.gz"); }, {"read_idx", "junk.gz", "zlib"});
  write_plain(dir / "short", {0, 0});
  th::check_throws([&] { read_idx(dir / "short"); }, {"read_idx", "truncated", "short"});
  write_plain(dir / "type", idx_bytes(0x0A, {1}, {0}));
  th::check_throws([&] { read_idx(dir / "type"); }, {"read_idx", "0x0a", "type"});
  Bytes dims_cut = idx_bytes(0x08, {2, 3}, {});
  dims_cut.resize(9);
  write_plain(dir / "dims", dims_cut);
  th::check_throws([&] { read_idx(dir / "dims"); }, {"read_idx", "truncated", "2 dims"});
  write_plain(dir / "trunc", idx_bytes(0x08, {2, 3}, {1, 2, 3, 4, 5}));
  th::check_throws([&] { read_idx(dir / "trunc"); }, {"read_idx", "truncated", "6 bytes", "only 5", "trunc"});
  write_plain(dir / "extra", idx_bytes(0x08, {2, 3}, {1, 2, 3, 4, 5, 6, 7, 8}));
  th::check_throws([&] { read_idx(dir / "extra"); }, {"read_idx", "2 extra bytes", "size mismatch", "extra"});
  CHECK(read_idx(dir / "extra", 1).shape() == Shape{1, 3});  // a partial read does not look past its items

  // a gzip stream cut in the middle
  Bytes big = idx_bytes(0x08, {100, 100}, Bytes(10000, 0));
  for (size_t i = 16; i < big.size(); ++i) big[i] = uint8_t((i * 2654435761u) >> 13);  // barely compressible
  write_gz(dir / "cut.gz", big);
  const auto gz_size = fs::file_size(dir / "cut.gz");
  fs::resize_file(dir / "cut.gz", gz_size / 2);
  th::check_throws([&] { read_idx(dir / "cut.gz"); }, {"read_idx", "truncated", "cut.gz"});
}

// ---------------------------------------------------------------- datasets

TEST_CASE("TensorDataset items and batches; the default collate stacks items", "[data][dataset]") {
  auto ds = counting_ds(10);
  CHECK(ds->size() == 10);
  Batch item = ds->get(3);
  CHECK(th::values(item.xb[0]) == std::vector<double>{3, 30});
  CHECK(item.yb[0].shape() == Shape{});
  CHECK(th::values(item.yb[0]) == std::vector<double>{3});
  Batch b = ds->get_batch({7, 2, 2});
  CHECK(b.xb[0].shape() == Shape{3, 2});
  CHECK(th::values(b.xb[0]) == std::vector<double>{7, 70, 2, 20, 2, 20});
  CHECK(th::values(b.yb[0]) == std::vector<double>{7, 2, 2});
  // the base class's get_batch (stack of get) gives the same batch
  Batch c = ds->Dataset::get_batch({7, 2, 2});
  CHECK(th::values(c.xb[0]) == th::values(b.xb[0]));
  CHECK(th::values(c.yb[0]) == th::values(b.yb[0]));
  CHECK(c.yb[0].dtype() == DType::i64);

  th::check_throws([&] { ds->get(10); }, {"TensorDataset::get", "10", "[0, 10)"});
  th::check_throws([&] { ds->get_batch({1, 12}); }, {"index_select", "12"});
  th::check_throws([&] { TensorDataset({zeros({3, 2})}, {zeros({4})}); }, {"TensorDataset", "4 items", "expected 3"});
  th::check_throws([&] { TensorDataset({scalar_tensor(1.0)}, {}); }, {"TensorDataset", "leading item dim"});
  th::check_throws([&] { collate({Batch{{zeros({2})}, {}}, Batch{{zeros({3})}, {}}}); },
                   {"collate", "[3]", "item 1", "equal shapes"});
}

// ---------------------------------------------------------------- DataLoader

TEST_CASE("DataLoader: every item once per epoch, sizes, drop_last", "[data][dataloader]") {
  auto ds = counting_ds(10);
  DataLoader dl(ds, {.bs = 4});
  CHECK(dl.size() == 3);
  CHECK(dl.n() == 10);
  CHECK(dl.bs() == 4);
  auto epoch = epoch_labels(dl);
  CHECK(epoch == std::vector<std::vector<int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}});
  for (Batch& b : dl) {  // inputs stay with their targets
    REQUIRE(b.xb[0].shape() == Shape{b.yb[0].size(0), 2});
    for (int64_t k = 0; k < b.yb[0].size(0); ++k) CHECK(th::at(b.xb[0], {k, 1}) == 10 * th::at(b.yb[0], {k}));
  }
  DataLoader dropped(ds, {.bs = 4, .drop_last = true});
  CHECK(dropped.size() == 2);
  CHECK(epoch_labels(dropped) == std::vector<std::vector<int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}});
  DataLoader exact(ds, {.bs = 5, .drop_last = true});
  CHECK(exact.size() == 2);
  DataLoader tiny(ds, {.bs = 11, .drop_last = true});
  CHECK(tiny.size() == 0);
  CHECK(epoch_labels(tiny).empty());

  DataLoader shuffled(ds, {.bs = 3, .shuffle = true, .seed = 7});
  for (int e = 0; e < 3; ++e) {
    std::multiset<int64_t> seen;
    auto batches = epoch_labels(shuffled);
    CHECK(batches.size() == 4);
    for (auto& b : batches) seen.insert(b.begin(), b.end());
    CHECK(seen == std::multiset<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  }
  DataLoader empty;
  CHECK(empty.size() == 0);
  CHECK(epoch_labels(empty).empty());
  th::check_throws([&] { empty.one_batch(); }, {"one_batch", "0 batches"});
  th::check_throws([&] { empty.dataset(); }, {"DataLoader::dataset", "empty loader"});
  th::check_throws([&] { DataLoader(ds, {.bs = 0}); }, {"DataLoader", "bs=0", "bs >= 1"});
  th::check_throws([&] { DataLoader(ds, {.prefetch = 0}); }, {"DataLoader", "prefetch=0"});
  th::check_throws([&] { DataLoader(ds, {.num_workers = -1}); }, {"DataLoader", "num_workers=-1"});
  th::check_throws([&] { DataLoader(nullptr, {}); }, {"DataLoader", "null dataset"});
}

TEST_CASE("DataLoader: seeded shuffles repeat, differ across epochs and seeds", "[data][dataloader]") {
  auto ds = counting_ds(1000);
  DataLoader a(ds, {.bs = 100, .shuffle = true, .seed = 42}), b(ds, {.bs = 100, .shuffle = true, .seed = 42});
  DataLoader other(ds, {.bs = 100, .shuffle = true, .seed = 43});
  std::vector<std::vector<std::vector<int64_t>>> ea, eb;
  for (int e = 0; e < 3; ++e) {
    ea.push_back(epoch_labels(a));
    eb.push_back(epoch_labels(b));
  }
  CHECK(ea == eb);
  CHECK(ea[0] != ea[1]);
  CHECK(ea[1] != ea[2]);
  CHECK(epoch_labels(other) != ea[0]);
  CHECK(a.epoch() == 3);
  // a shuffle moves most items: fewer than 5% stay in place (a fixed permutation would fail)
  int fixed = 0;
  for (int64_t k = 0; k < 1000; ++k) fixed += ea[0][size_t(k / 100)][size_t(k % 100)] == k;
  CHECK(fixed < 50);
  // set_epoch replays an epoch
  a.set_epoch(1);
  CHECK(epoch_labels(a) == ea[1]);

  // seed 0 draws from the default generator the first time it shuffles: manual_seed makes it repeat
  manual_seed(5);
  DataLoader g1(ds, {.bs = 100, .shuffle = true});
  auto g1e = epoch_labels(g1);
  manual_seed(5);
  DataLoader g2(ds, {.bs = 100, .shuffle = true});
  CHECK(epoch_labels(g2) == g1e);
}

TEST_CASE("DataLoader: workers give exactly the serial sequence, transforms included", "[data][dataloader]") {
  auto ds = counting_ds(103);
  std::atomic<int> on_worker{0}, on_caller{0};
  auto tfms = std::vector<BatchTransform>{
      [](Batch& b) { b.xb[0] = b.xb[0] + 1.0; },
      [](Batch& b) { b.xb[0] = b.xb[0] * 2.0; },  // order matters: (x + 1) * 2
      [&](Batch& b) {
        (detail::in_parallel_region ? on_worker : on_caller)++;
        CHECK_FALSE(is_grad_enabled());
        b.yb.push_back(b.yb[0] * 3);
      }};
  DataLoader serial(ds, {.bs = 8, .shuffle = true, .num_workers = 0, .seed = 9, .after_batch = tfms});
  std::vector<std::vector<std::vector<double>>> want;
  for (int e = 0; e < 2; ++e)
    for (Batch& b : serial) want.push_back({th::values(b.xb[0]), th::values(b.yb[0]), th::values(b.yb[1])});
  CHECK(on_caller.load() == 2 * 13);
  CHECK(on_worker.load() == 0);
  REQUIRE(want.size() == 26);
  CHECK(want[0][0][1] == 2 * (10 * want[0][1][0] + 1));
  CHECK(want[0][2][0] == 3 * want[0][1][0]);

  for (int workers : {1, 2, 3})
    for (int prefetch : {1, 2, 4}) {
      INFO("workers " << workers << " prefetch " << prefetch);
      DataLoader dl(ds, {.bs = 8, .shuffle = true, .num_workers = workers, .prefetch = prefetch, .seed = 9,
                         .after_batch = tfms});
      std::vector<std::vector<std::vector<double>>> got;
      for (int e = 0; e < 2; ++e)
        for (Batch& b : dl) got.push_back({th::values(b.xb[0]), th::values(b.yb[0]), th::values(b.yb[1])});
      CHECK(got == want);
    }
  CHECK(on_worker.load() == 9 * 26);
}

TEST_CASE("DataLoader: leaving an epoch early stops and joins the workers", "[data][dataloader]") {
  auto ds = std::make_shared<ProbeDataset>(200);
  DataLoader dl(ds, {.bs = 4, .num_workers = 3, .prefetch = 2});
  for (int round = 0; round < 20; ++round) {
    int seen = 0;
    for (Batch& b : dl) {
      CHECK(b.xb[0].shape() == Shape{4, 2});
      if (++seen == 2) break;
    }
  }
  // every worker has stopped: no batch is made after the loops ended
  const int calls = ds->calls.load();
  CHECK(calls <= 20 * (2 + 3 * 2 + 3));  // at most the prefetch window past the break, per round
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(ds->calls.load() == calls);
  // and a full epoch afterwards still sees everything
  int64_t items = 0;
  for (Batch& b : dl) items += b.yb[0].size(0);
  CHECK(items == 200);
}

TEST_CASE("DataLoader: an exception while making a batch reaches the consumer", "[data][dataloader]") {
  auto ds = std::make_shared<ProbeDataset>(100, 37);  // item 37 is in batch 3 of bs 10
  for (int workers : {0, 1, 3}) {
    INFO("workers " << workers);
    DataLoader dl(ds, {.bs = 10, .num_workers = workers});
    int delivered = 0;
    th::check_throws(
        [&] {
          for (Batch& b : dl) {
            CHECK(th::values(b.yb[0])[0] == 10 * delivered);
            ++delivered;
          }
        },
        {"ProbeDataset", "item 37 is broken"});
    CHECK(delivered == 3);
  }
  // a transform that throws does the same
  DataLoader dl(std::make_shared<ProbeDataset>(30), {.bs = 10, .num_workers = 2, .after_batch = {[](Batch& b) {
                                                       STRATA_CHECK(th::values(b.yb[0])[0] < 15, "my_tfm", "got ",
                                                                    th::values(b.yb[0])[0], ", expected < 15");
                                                     }}});
  th::check_throws([&] { for (Batch& b : dl) (void)b; }, {"my_tfm", "got 20"});
}

TEST_CASE("DataLoader: one_batch, new_with, options changed between epochs", "[data][dataloader]") {
  auto ds = counting_ds(20);
  DataLoader dl(ds, {.bs = 6, .shuffle = true, .seed = 3});
  Batch first = dl.one_batch();
  CHECK(dl.epoch() == 0);
  CHECK(th::values(first.yb[0]) == th::values(dl.one_batch().yb[0]));
  auto e0 = epoch_labels(dl);
  std::vector<double> e0_first(e0[0].begin(), e0[0].end());
  CHECK(th::values(first.yb[0]) == e0_first);  // the first batch of the epoch that followed

  dl.options().bs = 10;
  dl.options().shuffle = false;
  CHECK(dl.size() == 2);
  CHECK(epoch_labels(dl) == std::vector<std::vector<int64_t>>{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
                                                              {10, 11, 12, 13, 14, 15, 16, 17, 18, 19}});
  DataLoader big = dl.new_with({.bs = 20});
  CHECK(big.size() == 1);
  CHECK(dl.bs() == 10);
  CHECK(&big.dataset() == &dl.dataset());
  th::check_throws([&] { DataLoader(ds, {.bs = 30, .drop_last = true}).one_batch(); }, {"one_batch", "0 batches"});

  auto dls = DataLoaders::from_dsets(ds, counting_ds(5), {.bs = 4, .seed = 1});
  CHECK(dls.train.options().shuffle);
  CHECK_FALSE(dls.valid.options().shuffle);
  CHECK(dls.valid.size() == 2);
}

// ---------------------------------------------------------------- fashion_mnist

TEST_CASE("fashion_mnist: a missing directory names the path tried and how to get the files", "[data][fashion_mnist]") {
  th::check_throws([] { fashion_mnist({.path = "/nonexistent/fmnist"}); },
                   {"fashion_mnist", "/nonexistent/fmnist/train-images-idx3-ubyte.gz", "apt install dataset-fashion-mnist",
                    "STRATA_FASHION_MNIST_DIR", ".path"});
  const char* old = std::getenv("STRATA_FASHION_MNIST_DIR");
  const std::string saved = old ? old : "";
  ::setenv("STRATA_FASHION_MNIST_DIR", "/nonexistent/from_env", 1);
  CHECK(fashion_mnist_dir() == "/nonexistent/from_env");
  th::check_throws([] { fashion_mnist({.n_train = 10}); }, {"/nonexistent/from_env/train-images-idx3-ubyte.gz"});
  CHECK(fashion_mnist_dir("/explicit") == "/explicit");  // .path wins over the environment
  CHECK(fashion_mnist({.path = kDebianDir, .n_train = 8, .n_valid = 8}).train.n() == 8);
  if (old) ::setenv("STRATA_FASHION_MNIST_DIR", saved.c_str(), 1);
  else ::unsetenv("STRATA_FASHION_MNIST_DIR");
  CHECK(fashion_mnist_dir() == (old ? saved : kDebianDir));
  th::check_throws([] { fashion_mnist({.n_train = 70000}); }, {"fashion_mnist", "n_train=70000", "60000"});
}

TEST_CASE("fashion_mnist: loaders, normalized float batches, labels, vocab", "[data][fashion_mnist]") {
  DataLoaders dls = fashion_mnist({.bs = 64, .num_workers = 2, .n_train = 320, .n_valid = 100});
  CHECK(dls.c == 10);
  REQUIRE(dls.vocab.size() == 10);
  CHECK(dls.vocab[0] == "T-shirt/top");
  CHECK(dls.vocab[9] == "Ankle boot");
  CHECK(dls.train.n() == 320);
  CHECK(dls.train.size() == 5);
  CHECK(dls.train.options().shuffle);
  CHECK(dls.valid.n() == 100);
  CHECK(dls.valid.size() == 2);  // 64 + 36: valid keeps every image

  Tensor raw = read_idx(kDebianDir + "/t10k-images-idx3-ubyte.gz", 2);
  int batches = 0;
  for (Batch& b : dls.valid) {
    if (batches++ == 0) {
      REQUIRE(b.xb[0].shape() == Shape{64, 1, 28, 28});
      CHECK(b.xb[0].dtype() == DType::f32);
      CHECK(b.yb[0].dtype() == DType::i64);
      std::vector<double> y = th::values(b.yb[0]);
      CHECK(std::vector<double>(y.begin(), y.begin() + 10) == std::vector<double>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7});
      std::vector<double> want;
      for (double v : th::values(raw.narrow(0, 0, 2))) want.push_back((v / 255.0 - 0.2860) / 0.3530);
      th::check_close(th::values(b.xb[0].narrow(0, 0, 2)), want, 1e-5, 1e-5, "normalized pixels");
    } else {
      CHECK(b.xb[0].shape() == Shape{36, 1, 28, 28});
    }
  }
  CHECK(batches == 2);
  // normalized train batches have about zero mean and unit std
  Batch tb = dls.train.one_batch();
  CHECK(std::abs(tb.xb[0].mean().item<double>()) < 0.2);
  CHECK(std::abs(tb.xb[0].std().item<double>() - 1.0) < 0.2);
  DataLoaders raw01 = fashion_mnist({.bs = 32, .num_workers = 0, .n_train = 32, .n_valid = 32, .normalize = false});
  Tensor x = raw01.valid.one_batch().xb[0];
  CHECK(x.min().item<double>() >= 0.0);
  CHECK(x.max().item<double>() <= 1.0);
  CHECK(raw01.train.size() == 1);
  CHECK(fashion_mnist({.bs = 64, .n_train = 40, .n_valid = 8}).train.size() == 1);  // smaller than bs: kept
}

// ---------------------------------------------------------------- Normalize / IntToFloat

TEST_CASE("Normalize and IntToFloat: formulas, round trips, errors", "[data][normalize]") {
  Normalize norm = Normalize::from_stats({0.5, -1.0, 2.0}, {0.25, 2.0, 4.0});
  CHECK(norm.mean.shape() == Shape{1, 3, 1, 1});
  for (bool noncontig : {false, true}) {
    Tensor x = th::random({2, 3, 4, 5}, DType::f32, noncontig);
    Tensor y = norm.encode(x);
    REQUIRE(y.shape() == x.shape());
    std::vector<double> want;
    const double m[] = {0.5, -1.0, 2.0}, s[] = {0.25, 2.0, 4.0};
    for (int64_t n = 0; n < x.numel(); ++n) {
      const auto idx = th::unravel(n, x.shape());
      want.push_back((th::at(x, idx) - m[idx[1]]) / s[idx[1]]);
    }
    th::check_close(th::values(y), want, 1e-5, 1e-5, "encode");
    th::check_close(norm.decode(y), x, 1e-5, 1e-5, "decode(encode(x))");
  }
  Tensor img = th::random({3, 2, 2}, DType::f64);  // one [C, H, W] image
  CHECK(norm.encode(img).shape() == Shape{3, 2, 2});
  CHECK(norm.encode(img).dtype() == DType::f64);
  th::check_close(norm.decode(norm.encode(img)), img, 1e-12, 1e-12, "single image");
  th::check_close(th::values(norm.encode(img).select(0, 2)), th::values((img.select(0, 2) - 2.0) / 4.0), 1e-12, 1e-12);

  th::check_throws([&] { norm.encode(zeros({2, 4, 3, 3})); }, {"Normalize::encode", "4 channels", "expected 3"});
  th::check_throws([&] { norm.encode(zeros({2, 3, 3, 3}, {.dtype = DType::u8})); }, {"Normalize::encode", "IntToFloat"});
  th::check_throws([] { Normalize::from_stats({0.1, 0.2}, {1.0}); }, {"Normalize", "2 means and 1 stds"});
  th::check_throws([] { Normalize::from_stats({0.1}, {0.0}); }, {"Normalize", "std 0"});

  Tensor pix = from_vector(std::vector<uint8_t>{0, 1, 128, 254, 255, 17}, {1, 1, 2, 3});
  IntToFloat itf;
  Tensor f = itf.encode(pix);
  CHECK(f.dtype() == DType::f32);
  th::check_close(th::values(f), {0.0, 1 / 255.0, 128 / 255.0, 254 / 255.0, 1.0, 17 / 255.0}, 1e-7, 0);
  CHECK(th::values(itf.decode(f)) == th::values(pix));
  CHECK(itf.decode(f).dtype() == DType::u8);

  Batch b{{pix.clone()}, {zeros({1})}};
  itf.as_transform()(b);
  Normalize::from_stats({0.5}, {0.5}).as_transform()(b);  // C = 1 applies to every channel
  th::check_close(th::values(b.xb[0]), {-1.0, 2 / 255.0 - 1, 256 / 255.0 - 1, 508 / 255.0 - 1, 1.0, 34 / 255.0 - 1},
                  1e-6, 0, "IntToFloat then Normalize");
}

}  // namespace test_data
