// safetensors: round trips of every dtype (contiguous, non-contiguous, 0-dim, empty) with metadata;
// the bytes strata writes, checked by hand; a file written by tools/make_safetensors_golden.py
// (Python struct + json) read back with its literal values; strict errors for corrupt files; saves
// that fail leave no file and keep an existing one.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <strata/io/safetensors.hpp>

#include "helpers.hpp"

namespace test_safetensors {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
namespace fs = std::filesystem;

namespace {


std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// A file of: 8-byte little-endian length of `header` (or `len` when given), header, data.
void write_st(const std::string& path, const std::string& header, const std::string& data, int64_t len = -1) {
  const uint64_t n = len < 0 ? header.size() : uint64_t(len);
  std::string out(8, '\0');
  for (int k = 0; k < 8; ++k) out[size_t(k)] = char(n >> (8 * k));
  std::ofstream(path, std::ios::binary) << out << header << data;
}

/// Every element's raw bytes, row-major (so bit patterns, NaN payloads and -0 compare exactly).
std::string raw_bytes(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), size_t(c.numel() * c.element_size()));
}

// next to this source file, wherever the test runs from
const std::string kGolden = (fs::path(__FILE__).parent_path() / "golden" / "safetensors_golden.safetensors").string();

}  // namespace

TEST_CASE("safetensors round trip: every dtype, any layout, metadata", "[io][safetensors]") {
  th::TempDir dir;
  std::vector<std::pair<std::string, Tensor>> ts;
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8}) {
    const std::string n(dtype_name(dt));
    Tensor base = dt == DType::b8 ? th::random({3, 4, 5}) > 0.0 : th::random({3, 4, 5}, DType::f64, false, -100, 100).to(dt);
    ts.emplace_back(n, base);
    ts.emplace_back(n + ".perm", base.permute({2, 0, 1}));  // non-contiguous views
    ts.emplace_back(n + ".t", th::random({4, 6}, DType::f64, false, 0, 200).to(dt).t());
    ts.emplace_back(n + ".slice", base.slice(1, 1, 4, 2));
  }
  ts.emplace_back("scalar", scalar_tensor(-0.0));
  ts.emplace_back("empty", zeros({0, 3}, {.dtype = DType::i64}));
  ts.emplace_back("weird \"name\"\n\u00e9/\\", th::random({2}));
  Tensor special = from_vector({NAN, INFINITY, -INFINITY, -0.0, 1e-45, 3.4e38}, {6}, {.dtype = DType::f32});
  ts.emplace_back("special", special);
  REQUIRE_FALSE(ts[1].second.is_contiguous());
  REQUIRE_FALSE(ts[2].second.is_contiguous());
  REQUIRE_FALSE(ts[3].second.is_contiguous());

  const std::map<std::string, std::string> meta = {{"epoch", "3"}, {"quote\"key", "line\nbreak \u00e9 \\"}, {"", ""}};
  const std::string p = dir / "all.safetensors";
  save_safetensors(p, ts, meta);
  CHECK(dir.entries() == 1);  // no temporary left

  SafetensorsFile f = read_safetensors(p);
  CHECK(f.metadata == meta);
  CHECK(load_safetensors_metadata(p) == meta);
  REQUIRE(f.tensors.size() == ts.size());
  for (size_t k = 0; k < ts.size(); ++k) {
    INFO(ts[k].first);
    CHECK(f.tensors[k].first == ts[k].first);  // in save order
    const Tensor& got = f.tensors[k].second;
    CHECK(got.dtype() == ts[k].second.dtype());
    CHECK(got.shape() == ts[k].second.shape());
    CHECK(got.is_contiguous());
    CHECK(raw_bytes(got) == raw_bytes(ts[k].second));
  }
  CHECK(load_safetensors(p).size() == ts.size());
  // saving again over the file replaces it
  save_safetensors(p, {{"only", ones({2})}});
  CHECK(load_safetensors(p).size() == 1);
  CHECK(load_safetensors_metadata(p).empty());
  save_safetensors(p, {});
  CHECK(load_safetensors(p).empty());
}

TEST_CASE("safetensors: the bytes strata writes", "[io][safetensors]") {
  th::TempDir dir;
  const std::string p = dir / "small.safetensors";
  Tensor a = from_vector(std::vector<float>{1.0f, -2.0f}, {2, 1});
  Tensor b = from_vector(std::vector<int32_t>{7}, {});
  save_safetensors(p, {{"a", a}, {"b", b}}, {{"k", "v"}});
  const std::string bytes = read_bytes(p);
  REQUIRE(bytes.size() >= 8);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = n << 8 | uint8_t(bytes[size_t(k)]);
  CHECK(n % 8 == 0);  // padded so that the data starts 8-byte aligned
  REQUIRE(bytes.size() == 8 + n + 12);
  std::string header = bytes.substr(8, n);
  header.erase(header.find_last_not_of(' ') + 1);
  CHECK(header ==
        "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[8,12]}}");
  const unsigned char want[12] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0, 7, 0, 0, 0};  // little endian
  CHECK(std::memcmp(bytes.data() + 8 + n, want, 12) == 0);
}

TEST_CASE("safetensors: a file written by Python (struct + json) loads with its values", "[io][safetensors]") {
  REQUIRE(fs::exists(kGolden));  // made by /usr/bin/python3 tools/make_safetensors_golden.py; run from the repo root
  SafetensorsFile f = read_safetensors(kGolden);
  CHECK(f.metadata == std::map<std::string, std::string>{
                          {"format", "pt"}, {"source", "make_safetensors_golden.py"}, {"note", "caf\u00e9 \"quoted\""}});
  std::vector<std::string> names;
  for (auto& [name, t] : f.tensors) names.push_back(name);
  // data order, although the header lists the keys sorted
  CHECK(names == std::vector<std::string>{"weight.f32", "f64", "f16", "bf16", "i32", "i64", "u8", "mask", "scalar", "empty"});
  auto get = [&](const std::string& name) {
    for (auto& [n, t] : f.tensors)
      if (n == name) return t;
    FAIL("no tensor " << name);
    return Tensor();
  };
  struct Want {
    std::string name;
    DType dtype;
    Shape shape;
    std::vector<double> values;
  };
  const std::vector<Want> wants = {
      {"weight.f32", DType::f32, {2, 3}, {0.5, -1.25, 3.0, double(0.001f), -0.0, 65504.0}},
      {"f64", DType::f64, {3}, {1.0 / 3.0, -2.5e300, 3.141592653589793}},
      {"f16", DType::f16, {4}, {1.0, -2.0, 0.5, 65504.0}},
      {"bf16", DType::bf16, {2, 2}, {1.0, -3.5, 0.15625, 256.0}},
      {"i32", DType::i32, {2}, {-7, 2147483647}},
      {"i64", DType::i64, {2, 1}, {-4611686018427387904.0, 123456789012}},
      {"u8", DType::u8, {5}, {0, 1, 127, 200, 255}},
      {"mask", DType::b8, {3}, {1, 0, 1}},
      {"scalar", DType::f32, {}, {42}},
      {"empty", DType::f32, {0, 4}, {}},
  };
  for (const Want& w : wants) {
    INFO(w.name);
    Tensor t = get(w.name);
    CHECK(t.dtype() == w.dtype);
    CHECK(t.shape() == w.shape);
    CHECK(th::values(t) == w.values);
  }
  CHECK(get("i64").data_ptr<int64_t>()[0] == -(int64_t(1) << 62));  // exact, not through double
  CHECK(get("i64").data_ptr<int64_t>()[1] == 123456789012);
  CHECK(std::signbit(th::values(get("weight.f32"))[4]));
}

TEST_CASE("safetensors: corrupt files give errors naming the file and the problem", "[io][safetensors]") {
  th::TempDir dir;
  const std::string p = dir / "bad.safetensors";
  const std::string f32x1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  auto load = [&] { load_safetensors(p); };

  th::check_throws([&] { load_safetensors(dir / "missing.safetensors"); }, {"load_safetensors", "missing.safetensors", "no such file"});
  std::ofstream(p, std::ios::binary) << "abc";
  th::check_throws(load, {"load_safetensors", "truncated", "bad.safetensors", "3 bytes"});
  write_st(p, f32x1, "\1\2\3\4", 1000);
  th::check_throws(load, {"load_safetensors", "header length of 1000", "bad.safetensors"});
  write_st(p, f32x1, "\1\2");  // the data cut short
  th::check_throws(load, {"load_safetensors", "data_offsets [0, 4]", "begin <= end <= 2"});
  write_st(p, "{\"a\": {\"dtype\": \"F32\", ", "");
  th::check_throws(load, {"load_safetensors", "bad JSON", "bad.safetensors", "at byte"});
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}}", "abcd");
  th::check_throws(load, {"bad JSON", "after the JSON object"});
  write_st(p, "[1, 2]", "");
  th::check_throws(load, {"load_safetensors", "does not start with '{'"});
  write_st(p, "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", "x");
  th::check_throws(load, {"load_safetensors", "\"F8_E4M3\"", "expected one of F32"});
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "abcd");
  th::check_throws(load, {"load_safetensors", "(4 bytes)", "shape [2]", "expected 8 bytes"});
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "abcd");
  th::check_throws(load, {"load_safetensors", "data_offsets [4, 0]"});
  write_st(p,
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
           "abcdef");
  th::check_throws(load, {"load_safetensors", "overlapping", "\"b\""});
  write_st(p,
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
           "abcdefghijkl");
  th::check_throws(load, {"load_safetensors", "hole", "[4, 8)"});
  write_st(p, f32x1, "abcdefgh");
  th::check_throws(load, {"load_safetensors", "4 bytes after the last tensor"});
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "abcd");
  th::check_throws(load, {"load_safetensors", "without data_offsets"});
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", "abcd");
  th::check_throws(load, {"load_safetensors", "unknown field \"extra\""});
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "abcd");
  th::check_throws(load, {"load_safetensors", "shape = -1", "non-negative integer"});
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", "abcd");
  th::check_throws(load, {"load_safetensors", "= 4.0"});
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{}}", "abcd");
  th::check_throws(load, {"load_safetensors", "duplicate key \"a\""});
  write_st(p, "{\"__metadata__\":{\"k\":1}}", "");
  th::check_throws(load, {"load_safetensors", "__metadata__[\"k\"]", "string values"});
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[281474976710656,281474976710656],\"data_offsets\":[0,4]}}", "abcd");
  th::check_throws(load, {"load_safetensors", "below 2^48"});
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", "abcd");
  th::check_throws(load, {"load_safetensors", "expected 18446744073709551615 bytes"});  // saturated, no overflow
  write_st(p, "{\"a\":\"\\ud800\"}", "");
  th::check_throws(load, {"load_safetensors", "surrogate"});

  // legal variations: spaces around the JSON, padding, \u escapes, empty tensors anywhere, bool bytes
  write_st(p,
           " {\"b\" : {\"shape\":[0],\"dtype\":\"U8\",\"data_offsets\":[3,3]} ,\n"
           "\"\\u0061\\ud83d\\ude00\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]},"
           "\"c\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[2,3]}}   ",
           std::string("\0\x05\x09", 3));
  th::check_throws(load, {"does not start with '{'"});  // the spec wants '{' first
  write_st(p,
           "{\"b\" : {\"shape\":[0],\"dtype\":\"U8\",\"data_offsets\":[3,3]} ,\n"
           "\"\\u0061\\ud83d\\ude00\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]},"
           "\"c\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[2,3]}}   ",
           std::string("\0\x05\x09", 3));
  auto ts = load_safetensors(p);
  REQUIRE(ts.size() == 3);  // in data order, not header order
  CHECK(ts[0].first == "a\xF0\x9F\x98\x80");  // U+1F600 from a surrogate pair, as UTF-8
  CHECK(th::values(ts[0].second) == std::vector<double>{0, 1});
  CHECK(static_cast<const unsigned char*>(ts[0].second.raw_data())[1] == 1);  // 5 became a canonical true
  CHECK(ts[1].first == "c");
  CHECK(th::values(ts[1].second) == std::vector<double>{9});
  CHECK(ts[2].first == "b");
  CHECK(ts[2].second.shape() == Shape{0});
}

TEST_CASE("safetensors: a failed save leaves no file and keeps the old one", "[io][safetensors]") {
  th::TempDir dir;
  // the target is a directory: the rename fails after the data was written; the temporary goes away
  fs::create_directories(dir / "target.safetensors");
  th::check_throws([&] { save_safetensors(dir / "target.safetensors", {{"a", ones({3})}}); },
                   {"save_safetensors", "target.safetensors", "nothing was changed"});
  CHECK(dir.entries() == 1);
  // a missing directory
  th::check_throws([&] { save_safetensors(dir / "no/such/dir/x.safetensors", {{"a", ones({3})}}); },
                   {"save_safetensors", "no/such/dir/x.safetensors", "No such file"});
  // bad arguments leave an existing file as it was
  const std::string p = dir / "keep.safetensors";
  save_safetensors(p, {{"a", ones({3})}});
  const std::string before = read_bytes(p);
  th::check_throws([&] { save_safetensors(p, {{"a", ones({1})}, {"a", ones({2})}}); }, {"save_safetensors", "\"a\" twice"});
  th::check_throws([&] { save_safetensors(p, {{"x", Tensor()}}); }, {"save_safetensors", "undefined tensor \"x\""});
  th::check_throws([&] { save_safetensors(p, {{"__metadata__", ones({1})}}); }, {"save_safetensors", "reserved"});
  CHECK(read_bytes(p) == before);
  CHECK(dir.entries() == 2);
  if (::geteuid() != 0) {  // root writes anywhere: only an unprivileged user can test a read-only directory
    fs::permissions(dir.path, fs::perms::owner_read | fs::perms::owner_exec);
    th::check_throws([&] { save_safetensors(p, {{"a", zeros({3})}}); }, {"save_safetensors", "Permission denied"});
    fs::permissions(dir.path, fs::perms::owner_all);
    CHECK(read_bytes(p) == before);
  }
}

}  // namespace test_safetensors
