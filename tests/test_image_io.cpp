// io/image and data/sources: PNG/BMP round trips exact and JPEG within a stated mean abs error, for
// 1/3/4 channels and forced conversions (against stb's documented formulas); fuzz-style failures
// (PNG, JPEG, BMP cut at many lengths including mid-header, garbage, empty file, directory, missing
// file) each a strata::Error naming the file; verify_images; CIFAR-10 records, sizes and labels;
// idx magic; get_files ordering / extensions / folders; labellers; read_csv quoting, CRLF, ragged rows.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "helpers.hpp"
#include <strata/data/idx.hpp>
#include <strata/data/sources.hpp>
#include <strata/io/image.hpp>

namespace test_image_io {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
namespace fs = std::filesystem;

namespace {

/// u8 [C, H, W] with pixel values from f(c, y, x).
template <class F>
Tensor make_image(int64_t C, int64_t H, int64_t W, F f) {
  Tensor t = Tensor::empty({C, H, W}, DType::u8);
  uint8_t* p = t.data_ptr<uint8_t>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) p[(c * H + y) * W + x] = uint8_t(f(c, y, x));
  return t;
}

/// Random noise image (a fixed seed per call site).
Tensor noise_image(int64_t C, int64_t H, int64_t W, unsigned seed) {
  std::mt19937 rng(seed);
  return make_image(C, H, W, [&](int64_t, int64_t, int64_t) { return rng() & 255; });
}

/// A smooth picture (what JPEG is made for): gradients plus a soft disc, different per channel.
Tensor smooth_image(int64_t C, int64_t H, int64_t W) {
  return make_image(C, H, W, [&](int64_t c, int64_t y, int64_t x) {
    const double r = std::hypot(double(x - W / 2), double(y - H / 2));
    return std::clamp(40.0 + 3.0 * double(x) + 2.0 * double(y) * double(c + 1) / 2.0 + 60.0 * std::exp(-r * r / 200.0),
                      0.0, 255.0);
  });
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void put_bytes(const std::string& path, const std::vector<uint8_t>& b, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(n));
}

double mean_abs_diff(const Tensor& a, const Tensor& b) {
  const auto va = th::values(a), vb = th::values(b);
  REQUIRE(va.size() == vb.size());
  double s = 0;
  for (size_t i = 0; i < va.size(); ++i) s += std::abs(va[i] - vb[i]);
  return s / double(va.size());
}

}  // namespace

TEST_CASE("read_image: PNG and BMP round trips are exact for 1, 2, 3, 4 channels", "[image_io]") {
  th::TempDir dir("strata_image_io");
  for (int64_t C : {1, 2, 3, 4}) {
    const Tensor img = noise_image(C, 7, 13, unsigned(C));
    const std::string png = dir / ("n" + std::to_string(C) + ".png");
    write_image(png, img);
    const Tensor back = read_image(png);
    REQUIRE(back.dtype() == DType::u8);
    REQUIRE(back.shape() == Shape{C, 7, 13});
    CHECK(th::values(back) == th::values(img));
    if (C == 2) continue;  // BMP has no gray+alpha
    const std::string bmp = dir / ("n" + std::to_string(C) + ".BMP");
    write_image(bmp, img);
    const Tensor back_bmp = read_image(bmp, int(C == 1 ? 3 : C));  // stb writes gray BMPs as RGB
    const Tensor want = C == 1 ? cat({img, img, img}, 0) : img;
    CHECK(th::values(back_bmp) == th::values(want));
  }
  // a non-contiguous u8 view and a float image in [0, 1] write the same pixels
  const Tensor img = noise_image(3, 5, 6, 9);
  write_image(dir / "f.png", div(to(img, DType::f32), 255.0));
  CHECK(th::values(read_image(dir / "f.png")) == th::values(img));
}

TEST_CASE("read_image: JPEG round trips within a small mean abs error", "[image_io]") {
  th::TempDir dir("strata_image_io");
  // Measured: quality 95 gives MAE 0.19 (gray) / 0.49 (RGB), quality 20 1.9 / 3.7 on this smooth image;
  // we require < 1 at quality 95 and a larger error at quality 20 (the quality knob is honoured).
  for (int64_t C : {1, 3}) {
    const Tensor img = smooth_image(C, 32, 48);
    const std::string hi = dir / ("s" + std::to_string(C) + ".jpg"), lo = dir / ("s" + std::to_string(C) + "lo.jpeg");
    write_jpeg(hi, img, 95);
    write_jpeg(lo, img, 20);
    const Tensor back = read_image(hi, int(C));  // stb_image_write stores gray as YCbCr: read it as 1 channel
    REQUIRE(back.shape() == Shape{C, 32, 48});
    const double mae = mean_abs_diff(back, img), mae_lo = mean_abs_diff(read_image(lo, int(C)), img);
    INFO("C=" << C << " mae q95 " << mae << " q20 " << mae_lo);
    CHECK(mae < 1.0);
    CHECK(mae_lo > mae);
  }
  write_image(dir / "x.JPG", smooth_image(3, 8, 8));  // write_image picks JPEG by extension, any case
  const auto b = file_bytes(dir / "x.JPG");
  REQUIRE(b.size() > 2);
  CHECK((b[0] == 0xFF && b[1] == 0xD8));
}

TEST_CASE("read_image: forced channels follow stb's conversions", "[image_io]") {
  th::TempDir dir("strata_image_io");
  const Tensor rgb = noise_image(3, 4, 5, 3), gray = noise_image(1, 4, 5, 4), rgba = noise_image(4, 4, 5, 5);
  write_image(dir / "rgb.png", rgb);
  write_image(dir / "gray.png", gray);
  write_image(dir / "rgba.png", rgba);
  // RGB -> gray: stb's y = (77 r + 150 g + 29 b) >> 8
  const Tensor g = read_image(dir / "rgb.png", 1);
  REQUIRE(g.shape() == Shape{1, 4, 5});
  const auto vr = th::values(rgb), vg = th::values(g);
  for (size_t i = 0; i < 20; ++i)
    CHECK(vg[i] == double((int(vr[i]) * 77 + int(vr[20 + i]) * 150 + int(vr[40 + i]) * 29) >> 8));
  // gray -> RGB replicates; RGB -> RGBA adds alpha 255; RGBA -> RGB drops alpha
  CHECK(th::values(read_image(dir / "gray.png", 3)) == th::values(cat({gray, gray, gray}, 0)));
  const Tensor a = read_image(dir / "rgb.png", 4);
  CHECK(th::values(slice(a, 0, 0, 3)) == vr);
  CHECK(th::values(slice(a, 0, 3, 4)) == std::vector<double>(20, 255.0));
  CHECK(th::values(read_image(dir / "rgba.png", 3)) == th::values(slice(rgba, 0, 0, 3)));
  th::check_throws([&] { read_image(dir / "rgb.png", 5); }, {"read_image", "rgb.png", "channels=5"});
}

TEST_CASE("read_image: truncated, garbage, empty, directory, missing -> Error naming the file", "[image_io]") {
  th::TempDir dir("strata_image_io");
  write_image(dir / "ok.png", noise_image(3, 16, 16, 1));
  write_jpeg(dir / "ok.jpg", smooth_image(3, 16, 16));
  write_image(dir / "ok.bmp", noise_image(3, 16, 16, 2));
  int cases = 0;
  for (const char* name : {"ok.png", "ok.jpg", "ok.bmp"}) {
    const std::vector<uint8_t> b = file_bytes(dir / name);
    REQUIRE(b.size() > 200);
    // cuts inside the signature, inside the header, in the pixel data, one byte short
    for (size_t n : {size_t(1), size_t(2), size_t(5), size_t(13), size_t(30), size_t(60), b.size() / 2,
                     b.size() - 10, b.size() - 1}) {
      const std::string cut = dir / ("cut_" + std::to_string(n) + "_" + name);
      put_bytes(cut, b, n);
      INFO(name << " cut at " << n << " of " << b.size());
      if (n == b.size() - 1)  // stb alone would decode these: strata's end checks catch them
        th::check_throws([&] { read_image(cut); }, {"read_image", cut, "truncated"});
      else
        th::check_throws([&] { read_image(cut); }, {"read_image", cut});
      ++cases;
    }
  }
  CHECK(cases == 27);
  std::mt19937 rng(123);
  std::vector<uint8_t> garbage(4096);
  for (auto& v : garbage) v = uint8_t(rng());
  put_bytes(dir / "garbage.jpg", garbage, garbage.size());
  th::check_throws([&] { read_image(dir / "garbage.jpg"); }, {"read_image", "garbage.jpg", "cannot decode"});
  // garbage behind a valid JPEG / PNG signature
  garbage[0] = 0xFF, garbage[1] = 0xD8;
  put_bytes(dir / "sig.jpg", garbage, garbage.size());
  th::check_throws([&] { read_image(dir / "sig.jpg"); }, {"read_image", "sig.jpg"});
  const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::copy(png_sig, png_sig + 8, garbage.begin());
  put_bytes(dir / "sig.png", garbage, garbage.size());
  th::check_throws([&] { read_image(dir / "sig.png"); }, {"read_image", "sig.png", "stb_image"});
  put_bytes(dir / "empty.png", garbage, 0);
  th::check_throws([&] { read_image(dir / "empty.png"); }, {"read_image", "empty.png", "empty"});
  fs::create_directories(dir.path / "adir.png");
  th::check_throws([&] { read_image(dir / "adir.png"); }, {"read_image", "adir.png", "directory"});
  th::check_throws([&] { read_image(dir / "missing.png"); }, {"read_image", "missing.png", "no such file"});
  th::check_throws([&] { decode_image({}, "bytes-from-zip"); }, {"read_image", "bytes-from-zip"});
  // a JPEG with an EXIF-like APP1 segment holding an EOI marker still needs its own EOI
  std::vector<uint8_t> j = file_bytes(dir / "ok.jpg");
  const std::vector<uint8_t> app1 = {0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0x00, 0x00};
  j.insert(j.begin() + 2, app1.begin(), app1.end());
  put_bytes(dir / "app1.jpg", j, j.size());
  CHECK(th::values(read_image(dir / "app1.jpg")) == th::values(read_image(dir / "ok.jpg")));
  put_bytes(dir / "app1_cut.jpg", j, j.size() / 2);
  th::check_throws([&] { read_image(dir / "app1_cut.jpg"); }, {"read_image", "app1_cut.jpg", "truncated JPEG"});
}

TEST_CASE("read_image: PGM/PPM decode exactly; a global vertical flip does not leak in; threads", "[image_io]") {
  th::TempDir dir("strata_image_io");
  std::vector<uint8_t> pgm = {'P', '5', '\n', '3', ' ', '2', '\n', '2', '5', '5', '\n', 1, 2, 3, 4, 5, 6};
  put_bytes(dir / "a.pgm", pgm, pgm.size());
  const Tensor g = read_image(dir / "a.pgm");
  REQUIRE(g.shape() == Shape{1, 2, 3});
  CHECK(th::values(g) == std::vector<double>{1, 2, 3, 4, 5, 6});
  std::vector<uint8_t> ppm = {'P', '6', ' ', '2', ' ', '1', ' ', '2', '5', '5', '\n', 10, 20, 30, 40, 50, 60};
  put_bytes(dir / "b.ppm", ppm, ppm.size());
  CHECK(th::values(read_image(dir / "b.ppm")) == std::vector<double>{10, 40, 20, 50, 30, 60});
  for (size_t n : {size_t(2), size_t(4), size_t(11), size_t(16)}) {  // stb alone leaves cut pixels unset
    put_bytes(dir / "cut.ppm", ppm, n);
    th::check_throws([&] { read_image(dir / "cut.ppm"); }, {"read_image", "cut.ppm"});
  }

  stbi_set_flip_vertically_on_load(1);  // a user's global setting elsewhere in the program
  const Tensor g2 = read_image(dir / "a.pgm");
  stbi_set_flip_vertically_on_load(0);
  CHECK(th::values(g2) == std::vector<double>{1, 2, 3, 4, 5, 6});

  // good and bad files decoded at once: each error names its own file, each image is its own
  std::vector<uint8_t> garbage_png = file_bytes(dir / "a.pgm");
  garbage_png.resize(100, 0x5A);
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::copy(sig, sig + 8, garbage_png.begin());
  std::vector<std::string> files;
  for (int i = 0; i < 16; ++i) {
    files.push_back(dir / ("t" + std::to_string(i) + ".png"));
    write_image(files.back(), make_image(1, 3, 3, [&](int64_t, int64_t, int64_t) { return i; }));
    if (i % 3 == 0) put_bytes(files.back(), i % 2 ? pgm : garbage_png, i % 2 ? 5 : 100);
  }
  std::vector<std::string> got(files.size());
  parallel_for(0, int64_t(files.size()), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      try {
        got[size_t(i)] = "ok " + std::to_string(int(th::values(read_image(files[size_t(i)]))[8]));
      } catch (const Error& e) {
        got[size_t(i)] = e.what();
      }
    }
  });
  for (size_t i = 0; i < files.size(); ++i) {
    INFO(i << ": " << got[i]);
    if (i % 3 == 0) CHECK(got[i].find(files[i] + (i % 2 ? "': truncated or corrupt PNM header" : "': cannot decode")) != std::string::npos);
    else CHECK(got[i] == "ok " + std::to_string(i));
  }
}

TEST_CASE("verify_images finds the files that do not decode, in order", "[image_io]") {
  th::TempDir dir("strata_image_io");
  std::vector<std::string> files;
  for (int i = 0; i < 6; ++i) {
    files.push_back(dir / ("im" + std::to_string(i) + (i % 2 ? ".jpg" : ".png")));
    write_image(files.back(), noise_image(3, 8, 8, unsigned(i)));
  }
  const auto b = file_bytes(files[1]);
  put_bytes(files[1], b, b.size() - 20);  // truncated JPEG
  put_bytes(files[4], b, 0);              // empty
  files.push_back(dir / "nope.png");      // missing
  CHECK(verify_images(files) == std::vector<std::string>{files[1], files[4], files[6]});
  CHECK(verify_images(std::vector<std::string>{}).empty());
  const std::vector<fs::path> paths(files.begin(), files.end());  // get_image_files' result type
  CHECK(verify_images(paths) == std::vector<fs::path>{paths[1], paths[4], paths[6]});
}

TEST_CASE("get_files: sorted, extensions case-insensitive, folders, recurse, hidden skipped", "[sources]") {
  th::TempDir dir("strata_sources");
  const fs::path r = dir.path;
  for (const char* f : {"train/dog/b.JPG", "train/dog/a.png", "train/cat/z.jpeg", "train/cat/sub/y.png",
                        "valid/cat/c.jpg", "valid/notes.txt", "top.png", ".hidden/h.png", "train/.d.png", "x.tif"}) {
    fs::create_directories((r / f).parent_path());
    std::ofstream(r / f) << "x";
  }
  auto rel = [&](const std::vector<fs::path>& ps) {
    std::vector<std::string> out;
    for (const auto& p : ps) out.push_back(fs::relative(p, r).generic_string());
    return out;
  };
  using V = std::vector<std::string>;
  CHECK(rel(get_image_files(r)) == V{"top.png", "train/cat/sub/y.png", "train/cat/z.jpeg", "train/dog/a.png",
                                     "train/dog/b.JPG", "valid/cat/c.jpg"});
  CHECK(rel(get_files(r, {".JPG", "txt"})) == V{"train/dog/b.JPG", "valid/cat/c.jpg", "valid/notes.txt"});
  CHECK(rel(get_files(r, {}, false)) == V{"top.png", "x.tif"});
  CHECK(rel(get_image_files(r, true, {"valid"})) == V{"valid/cat/c.jpg"});
  CHECK(rel(get_files(r, {".png"}, true, {"valid", "train"})) == V{"train/cat/sub/y.png", "train/dog/a.png"});
  CHECK(rel(get_files(r / "train", {}, false, {"cat"})) == V{"train/cat/z.jpeg"});
  th::check_throws([&] { get_files(r, {}, true, {"val"}); }, {"get_files", "'val'", "train, valid"});
  th::check_throws([&] { get_files(r / "nope"); }, {"get_files", "nope", "no such directory"});
  th::check_throws([&] { get_files(r / "top.png"); }, {"get_files", "top.png", "not a directory"});
  // a symlink loop is visited once
  fs::create_directory_symlink(r / "train", r / "train" / "cat" / "loop");
  CHECK(get_image_files(r / "train").size() == 4);
  const fs::path p = r / "train" / "dog" / "a.png";
  CHECK(parent_label(p) == "dog");
  CHECK(grandparent_name(p) == "train");
}

TEST_CASE("read_cifar10: record layout, directories, bad size, bad label", "[sources]") {
  th::TempDir dir("strata_cifar");
  // record r: label (r * 3) % 10, pixel k of channel c = (r + 7 c + k) % 256
  auto records = [](int64_t n, int64_t first) {
    std::vector<uint8_t> b;
    for (int64_t r = first; r < first + n; ++r) {
      b.push_back(uint8_t(r * 3 % 10));
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t k = 0; k < 1024; ++k) b.push_back(uint8_t((r + 7 * c + k) % 256));
    }
    return b;
  };
  const fs::path bin = dir.path / "cifar-10-batches-bin";
  fs::create_directories(bin);
  for (int i = 1; i <= 5; ++i) {
    const auto b = records(2, 2 * (i - 1));
    put_bytes((bin / ("data_batch_" + std::to_string(i) + ".bin")).string(), b, b.size());
  }
  const auto tb = records(3, 100);
  put_bytes((bin / "test_batch.bin").string(), tb, tb.size());
  const CifarData train = cifar10_train(dir.path);  // finds cifar-10-batches-bin/ inside
  REQUIRE(train.images.shape() == Shape{10, 3, 32, 32});
  REQUIRE(train.labels.shape() == Shape{10});
  CHECK(train.labels.dtype() == DType::i64);
  const auto px = th::values(train.images), lab = th::values(train.labels);
  for (int64_t r = 0; r < 10; ++r) {
    CHECK(lab[size_t(r)] == double(r * 3 % 10));
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y : {0, 5, 31})
        for (int64_t x : {0, 17, 31}) CHECK(px[size_t(((r * 3 + c) * 32 + y) * 32 + x)] == double((r + 7 * c + y * 32 + x) % 256));
  }
  const CifarData test = cifar10_test(bin, 2);
  REQUIRE(test.images.shape() == Shape{2, 3, 32, 32});
  CHECK(th::values(test.labels) == std::vector<double>{0, 3});
  CHECK(th::values(read_cifar10((bin / "test_batch.bin").string()).labels) == std::vector<double>{0, 3, 6});
  CHECK(cifar10_classes().size() == 10);
  CHECK(cifar10_classes()[3] == "cat");

  const std::string short_file = dir / "short.bin";
  put_bytes(short_file, tb, 3073 * 2 + 100);
  th::check_throws([&] { read_cifar10(short_file); }, {"read_cifar10", "short.bin", "6246 bytes", "multiple of 3073"});
  auto bad = tb;
  bad[3073 * 2] = 10;  // the third record's label
  const std::string bad_file = dir / "bad.bin";
  put_bytes(bad_file, bad, bad.size());
  th::check_throws([&] { read_cifar10(bad_file); }, {"read_cifar10", "bad.bin", "record 2", "label 10", "0..9"});
  th::check_throws([&] { read_cifar10(dir / "none.bin"); }, {"read_cifar10", "none.bin", "no such file"});
  th::check_throws([&] { read_cifar10(bin.string()); }, {"read_cifar10", "directory", "cifar10_train"});
  fs::remove(bin / "data_batch_4.bin");
  th::check_throws([&] { cifar10_train(bin); }, {"cifar10_train", "data_batch_4.bin"});
}

TEST_CASE("read_idx: a wrong magic number names the file", "[sources]") {
  th::TempDir dir("strata_idx");
  const std::vector<uint8_t> b = {0x12, 0x34, 0x08, 0x01, 0, 0, 0, 2, 7, 9};
  put_bytes(dir / "bad-idx1-ubyte", b, b.size());
  th::check_throws([&] { read_idx(dir / "bad-idx1-ubyte"); }, {"read_idx", "bad-idx1-ubyte", "magic", "expected 0 0"});
  auto ok = b;
  ok[0] = ok[1] = 0;
  put_bytes(dir / "ok-idx1-ubyte", ok, ok.size());
  CHECK(th::values(read_idx(dir / "ok-idx1-ubyte")) == std::vector<double>{7, 9});
  ok[2] = 0x07;
  put_bytes(dir / "type-idx1-ubyte", ok, ok.size());
  th::check_throws([&] { read_idx(dir / "type-idx1-ubyte"); }, {"read_idx", "type-idx1-ubyte", "0x07"});
}

TEST_CASE("read_csv: quotes, doubled quotes, CRLF, embedded newlines, ragged rows", "[sources]") {
  th::TempDir dir("strata_csv");
  const std::string path = dir / "t.csv";
  std::ofstream(path, std::ios::binary) << "\xEF\xBB\xBFname,label,note\r\n"
                                        << "a.jpg,cat,\"big, fluffy\"\r\n"
                                        << "b.jpg,dog,\"say \"\"hi\"\"\"\r\n"
                                        << "\r\n"
                                        << "\"c\nd.jpg\",,\n"
                                        << "e.jpg,bird,";
  const CsvTable t = read_csv(path);
  CHECK(t.header == std::vector<std::string>{"name", "label", "note"});
  REQUIRE(t.rows.size() == 4);
  CHECK(t.rows[0] == std::vector<std::string>{"a.jpg", "cat", "big, fluffy"});
  CHECK(t.rows[1] == std::vector<std::string>{"b.jpg", "dog", "say \"hi\""});
  CHECK(t.rows[2] == std::vector<std::string>{"c\nd.jpg", "", ""});
  CHECK(t.rows[3] == std::vector<std::string>{"e.jpg", "bird", ""});
  CHECK(t.col("label") == 1);
  th::check_throws([&] { t.col("labels"); }, {"CsvTable::col", "'labels'", "name, label, note"});

  const CsvTable semi = parse_csv("1;2\n3;4\n", "mem", {.delimiter = ';', .header = false});
  CHECK(semi.header.empty());
  CHECK(semi.rows == std::vector<std::vector<std::string>>{{"1", "2"}, {"3", "4"}});
  // the ragged row starts on line 5 (the quoted field on line 3 spans two lines)
  th::check_throws([&] { parse_csv("a,b\n1,2\n\"x\ny\",3\n4,5,6\n", "r.csv"); }, {"read_csv", "r.csv:5", "3 fields", "expected 2"});
  th::check_throws([&] { parse_csv("a,b\n\"open,2\n", "q.csv"); }, {"read_csv", "q.csv:2", "never closed"});
  th::check_throws([&] { parse_csv("a,b\n\"x\"y,2\n", "s.csv"); }, {"read_csv", "s.csv:2", "after a closing quote"});
  th::check_throws([&] { read_csv(dir / "none.csv"); }, {"read_csv", "none.csv", "no such file"});
}

}  // namespace test_image_io
