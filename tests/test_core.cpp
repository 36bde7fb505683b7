// core/: 16-bit floats (exact bits, vs F16C hardware and a nearest-value reference), Philox
// known-answer vectors, random streams, dtype promotion, broadcasting, wrap_dim, the host memory
// pool, parallel_for, error messages; plus the creation ops and item().
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define STRATA_TEST_F16C 1
#endif

#include "helpers.hpp"

namespace test_core {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

uint16_t h_bits(float f) { return f16(f).bits; }
uint16_t b_bits(float f) { return bf16(f).bits; }
uint32_t fbits(float f) { return std::bit_cast<uint32_t>(f); }
float from_fbits(uint32_t b) { return std::bit_cast<float>(b); }
bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0; }

#ifdef STRATA_TEST_F16C
__attribute__((target("f16c"))) uint16_t f16c_from_float(float f) { return uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)); }
__attribute__((target("f16c"))) float f16c_to_float(uint16_t h) { return _cvtsh_ss(h); }
bool have_f16c() { return __builtin_cpu_supports("f16c"); }
#endif

/// Reference float -> f16: the nearest of all finite f16 values (65536 standing for Inf), ties to the
/// even bit pattern; found by binary search in a table of values, no bit tricks.
uint16_t f16_ref(float f) {
  static const std::vector<double> table = [] {
    std::vector<double> t;
    for (uint32_t b = 0; b < 0x7c00u; ++b) {
      const uint32_t e = b >> 10, m = b & 0x3ffu;
      t.push_back(e ? std::ldexp(1.0 + m / 1024.0, int(e) - 15) : std::ldexp(double(m), -24));
    }
    t.push_back(65536.0);  // the next step after 65504: rounds to Inf
    return t;
  }();
  if (std::isnan(f)) return 0x7e00;  // callers only compare NaN-ness here
  const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  const double a = std::abs(double(f));
  if (a >= 65536.0) return sign | 0x7c00u;
  const size_t hi = size_t(std::lower_bound(table.begin(), table.end(), a) - table.begin());
  if (table[hi] == a) return uint16_t(sign | hi);
  const size_t lo = hi - 1;
  const double dlo = a - table[lo], dhi = table[hi] - a;
  const size_t pick = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
  return uint16_t(sign | pick);
}

/// Reference float -> bf16: compare the two neighbours (truncated and next pattern) by value in double.
uint16_t bf16_ref(float f) {
  const uint32_t x = fbits(f);
  if (std::isnan(f)) return uint16_t((x >> 16) | 0x40u);
  auto value = [](uint32_t b16) {  // magnitude of a bf16 pattern; 0x7f80 stands for 2^128 here
    const uint32_t e = (b16 >> 7) & 0xffu, m = b16 & 0x7fu;
    return e ? std::ldexp(1.0 + m / 128.0, int(e) - 127) : std::ldexp(double(m), -133);
  };
  const uint32_t sign = x >> 31 << 15, lo = (x >> 16) & 0x7fffu, hi = lo + 1;
  if ((x & 0xffffu) == 0 || lo == 0x7f80u) return uint16_t(sign | lo);  // exact (or Inf)
  const double a = std::abs(double(f)), dlo = a - value(lo), dhi = value(hi) - a;
  const uint32_t pick = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
  return uint16_t(sign | pick);
}

/// Restores the thread count when a test ends, even on failure.
struct ThreadsGuard {
  int saved = num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// 16-bit floats

TEST_CASE("f16: exact bit patterns", "[core]") {
  CHECK(h_bits(1.0f) == 0x3c00);
  CHECK(h_bits(-2.0f) == 0xc000);
  CHECK(h_bits(0.5f) == 0x3800);
  CHECK(h_bits(65504.0f) == 0x7bff);                 // largest finite
  CHECK(h_bits(65519.0f) == 0x7bff);                 // below the midpoint to 65536
  CHECK(h_bits(65520.0f) == 0x7c00);                 // the midpoint ties to even: Inf
  CHECK(h_bits(-65520.0f) == 0xfc00);
  CHECK(h_bits(1e10f) == 0x7c00);
  CHECK(h_bits(std::ldexp(1.0f, -14)) == 0x0400);    // smallest normal
  CHECK(h_bits(std::ldexp(1.0f, -24)) == 0x0001);    // smallest subnormal
  CHECK(h_bits(std::ldexp(1.0f, -25)) == 0x0000);    // half of it: ties to even 0
  CHECK(h_bits(-std::ldexp(1.0f, -25)) == 0x8000);
  CHECK(h_bits(std::ldexp(1.0f, -25) * 1.0000001f) == 0x0001);  // just above the tie
  CHECK(h_bits(3 * std::ldexp(1.0f, -25)) == 0x0002);           // 1.5 units: ties to even 2
  CHECK(h_bits(5 * std::ldexp(1.0f, -25)) == 0x0002);           // 2.5 units: ties to even 2
  CHECK(h_bits(std::ldexp(1023.5f, -24)) == 0x0400);            // largest subnormal + half: carries to normal
  CHECK(h_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);        // normal tie -> even (down)
  CHECK(h_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);    // normal tie -> even (up)
  CHECK(h_bits(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3c01);  // above the tie
  CHECK(h_bits(2047.0f / 1024.0f * 1.0f + std::ldexp(1.0f, -11)) == 0x4000);      // carry into exponent
  CHECK(h_bits(INFINITY) == 0x7c00);
  CHECK(h_bits(-INFINITY) == 0xfc00);
  CHECK(h_bits(-0.0f) == 0x8000);
  CHECK(h_bits(0.0f) == 0x0000);
  // NaN stays a quiet NaN with its sign (even a signalling one whose payload sits in the low bits)
  for (uint32_t nan : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fbfffffu}) {
    const uint16_t h = h_bits(from_fbits(nan));
    INFO("float bits " << std::hex << nan << " -> " << h);
    CHECK(f16_is_nan(h));
    CHECK((h & 0x0200u) != 0);
    CHECK((h >> 15) == (nan >> 31));
  }
  // to float
  CHECK(float(f16::from_bits(0x3c00)) == 1.0f);
  CHECK(float(f16::from_bits(0x7bff)) == 65504.0f);
  CHECK(float(f16::from_bits(0x0001)) == std::ldexp(1.0f, -24));
  CHECK(float(f16::from_bits(0x03ff)) == std::ldexp(1023.0f, -24));
  CHECK(fbits(float(f16::from_bits(0x8000))) == 0x80000000u);
  CHECK(float(f16::from_bits(0xfc00)) == -INFINITY);
  CHECK(std::isnan(float(f16::from_bits(0x7e00))));
  CHECK(std::signbit(float(f16::from_bits(0xfe00))));
}

TEST_CASE("bf16: exact bit patterns", "[core]") {
  CHECK(b_bits(1.0f) == 0x3f80);
  CHECK(b_bits(-2.0f) == 0xc000);
  CHECK(b_bits(from_fbits(0x3f808000u)) == 0x3f80);  // tie -> even (down)
  CHECK(b_bits(from_fbits(0x3f818000u)) == 0x3f82);  // tie -> even (up)
  CHECK(b_bits(from_fbits(0x3f808001u)) == 0x3f81);  // above the tie
  CHECK(b_bits(from_fbits(0x3f807fffu)) == 0x3f80);  // below the tie
  CHECK(b_bits(from_fbits(0x7f7fffffu)) == 0x7f80);  // FLT_MAX rounds to Inf
  CHECK(b_bits(from_fbits(0x7f7f7fffu)) == 0x7f7f);  // largest finite stays finite
  CHECK(b_bits(from_fbits(0x00008000u)) == 0x0000);  // subnormal tie -> even 0
  CHECK(b_bits(from_fbits(0x00018000u)) == 0x0002);
  CHECK(b_bits(INFINITY) == 0x7f80);
  CHECK(b_bits(-INFINITY) == 0xff80);
  CHECK(b_bits(-0.0f) == 0x8000);
  for (uint32_t nan : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    const uint16_t b = b_bits(from_fbits(nan));
    INFO("float bits " << std::hex << nan << " -> " << b);
    CHECK(bf16_is_nan(b));
    CHECK((b & 0x0040u) != 0);
    CHECK((b >> 15) == (nan >> 31));
  }
  CHECK(float(bf16::from_bits(0x3f80)) == 1.0f);
  CHECK(fbits(float(bf16::from_bits(0x8000))) == 0x80000000u);
  CHECK(float(bf16::from_bits(0xff80)) == -INFINITY);
}

TEST_CASE("f16/bf16: every 16-bit pattern round-trips through float", "[core]") {
  int bad_h = 0, bad_b = 0, bad_hw = 0;
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const uint16_t h = uint16_t(b);
    const float fh = float(f16::from_bits(h)), fb = float(bf16::from_bits(h));
    const uint16_t h2 = h_bits(fh), b2 = b_bits(fb);
    if (f16_is_nan(h) ? !(f16_is_nan(h2) && (h2 >> 15) == (h >> 15)) : h2 != h) ++bad_h;
    if (bf16_is_nan(h) ? !(bf16_is_nan(b2) && (b2 >> 15) == (h >> 15)) : b2 != h) ++bad_b;
    if (fbits(fb) != uint32_t(h) << 16) ++bad_b;  // bf16 -> float is exactly the top half
#ifdef STRATA_TEST_F16C
    if (have_f16c()) {  // f16 -> float agrees with vcvtph2ps bit for bit (NaNs: NaN-ness and sign)
      const float hw = f16c_to_float(h);
      if (std::isnan(hw) ? !(std::isnan(fh) && std::signbit(fh) == std::signbit(hw)) : fbits(hw) != fbits(fh)) ++bad_hw;
    }
#endif
  }
  CHECK(bad_h == 0);
  CHECK(bad_b == 0);
  CHECK(bad_hw == 0);
}

TEST_CASE("f16/bf16: float conversion matches F16C and a reference on millions of floats", "[core]") {
  std::mt19937 rng(12345);
  std::vector<float> xs;
  xs.reserve(3'500'000);
  for (int i = 0; i < 1'000'000; ++i) xs.push_back(from_fbits(uint32_t(rng())));  // any pattern, NaNs too
  for (int i = 0; i < 1'500'000; ++i) {  // |x| in [2^-28, 2^18): subnormal, normal and overflow f16 ranges
    const uint32_t exp = 127 - 28 + rng() % 46, mant = rng() & 0x7fffffu, sign = rng() & 1u;
    xs.push_back(from_fbits(sign << 31 | exp << 23 | mant));
  }
  for (int i = 0; i < 1'000'000; ++i) {  // at and next to the rounding midpoints of both formats
    const uint32_t base = uint32_t(rng()) & 0xffffe000u, d = rng() % 3 - 1;
    xs.push_back(from_fbits((base | 0x1000u) + d));  // f16 normal midpoints (and their neighbours)
  }
  for (int i = 0; i < 200'000; ++i) xs.push_back(from_fbits(((uint32_t(rng()) & 0xffff0000u) | 0x8000u) + rng() % 3 - 1));
  int bad_hw = 0, bad_ref = 0, bad_b = 0;
  float first_bad = 0;
#ifdef STRATA_TEST_F16C
  const bool hw = have_f16c();
#else
  const bool hw = false;
#endif
  for (float x : xs) {
    const uint16_t h = h_bits(x);
#ifdef STRATA_TEST_F16C
    if (hw && f16c_from_float(x) != h) {  // exact, NaN payloads included
      if (!bad_hw) first_bad = x;
      ++bad_hw;
    }
#endif
    const uint16_t r = f16_ref(x);
    if (std::isnan(x) ? !(f16_is_nan(h) && (h >> 15) == (fbits(x) >> 31)) : r != h) ++bad_ref;
    if (b_bits(x) != bf16_ref(x)) ++bad_b;
  }
  INFO("first F16C mismatch at float bits " << std::hex << fbits(first_bad) << " (F16C available: " << hw << ")");
  CHECK(bad_hw == 0);
  CHECK(bad_ref == 0);
  CHECK(bad_b == 0);
}

// ---------------------------------------------------------------------------------------------
// random numbers

TEST_CASE("philox4x32-10: Random123 known-answer vectors", "[core]") {
  using A4 = std::array<uint32_t, 4>;
  CHECK(philox4x32({0, 0, 0, 0}, {0, 0}) == A4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        A4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        A4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
  // a Generator's counter c is (lo, hi, 0, 0) under the key (seed lo, seed hi)
  Generator g(0x0000000100000002ULL);
  CHECK(g.block(0x0000000300000004ULL) == philox4x32({4, 3, 0, 0}, {2, 1}));
  CHECK(g.reserve(10) == 0);
  CHECK(g.reserve(5) == 10);
  g.manual_seed(7);
  CHECK(g.seed() == 7);
  CHECK(g.reserve(1) == 0);
}

TEST_CASE("rand/randn/randint: same stream for any thread count, reproducible after manual_seed", "[core]") {
  ThreadsGuard guard;
  const Shape big{3, 100003};  // far more than one 4096-counter grain
  auto draw = [&] {
    manual_seed(2024);
    return std::vector<Tensor>{rand(big), randn(big, {.dtype = DType::f64}), rand(big, {.dtype = DType::bf16}),
                               randint(-5, 1000, big), randn(big)};
  };
  set_num_threads(1);
  const auto one = draw();
  set_num_threads(2);
  const auto two = draw();
  set_num_threads(3);
  const auto three = draw();
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("tensor " << i);
    CHECK(th::values(one[i]) == th::values(two[i]));
    CHECK(th::values(one[i]) == th::values(three[i]));
  }
  // successive draws differ; a local generator with the same seed repeats the default one
  CHECK(th::values(one[0]) != th::values(rand(big)));
  Generator g(2024);
  CHECK(th::values(rand(big, {}, g)) == th::values(one[0]));
}

TEST_CASE("rand/randn/randint: ranges and moments", "[core]") {
  manual_seed(1);
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    INFO(dt);
    const auto v = th::values(rand({1 << 20}, {.dtype = dt}));
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    CHECK(*lo >= 0.0);
    CHECK(*hi < 1.0);
    CHECK(*hi > 0.99);
    double mean = 0;
    for (double x : v) mean += x;
    mean /= double(v.size());
    CHECK(std::abs(mean - 0.5) < 0.005);
  }
  for (DType dt : {DType::f32, DType::f64}) {
    INFO(dt);
    const auto v = th::values(randn({1'000'000}, {.dtype = dt}));
    double mean = 0, sq = 0;
    for (double x : v) mean += x;
    mean /= double(v.size());
    for (double x : v) sq += (x - mean) * (x - mean);
    const double sd = std::sqrt(sq / double(v.size() - 1));
    CHECK(std::abs(mean) < 0.005);  // standard error 0.001
    CHECK(std::abs(sd - 1.0) < 0.005);
    CHECK(std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); }));
  }
  for (DType dt : {DType::i64, DType::i32, DType::f32}) {
    INFO(dt);
    Tensor r = randint(-3, 5, {10000}, {.dtype = dt});
    CHECK(r.dtype() == dt);
    const auto v = th::values(r);
    std::vector<int> hits(8, 0);
    for (double x : v) {
      REQUIRE(x == std::floor(x));
      REQUIRE(x >= -3);
      REQUIRE(x < 5);
      ++hits[size_t(x + 3)];
    }
    for (int h : hits) CHECK(h > 1000);  // each of the 8 values ~1250 times
  }
  const auto u8 = th::values(randint(0, 256, {5000}, {.dtype = DType::u8}));
  CHECK(*std::max_element(u8.begin(), u8.end()) == 255);
  CHECK(rand({0, 3}).numel() == 0);
  th::check_throws([] { randint(5, 5, {3}); }, {"randint", "low=5", "high=5"});
  th::check_throws([] { rand({3}, {.dtype = DType::i32}); }, {"rand", "int32"});
  th::check_throws([] { randn({-2, 3}); }, {"[-2, 3]"});
}

// ---------------------------------------------------------------------------------------------
// dtype, shape, errors

TEST_CASE("dtype: names, sizes, promotion table", "[core]") {
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8};
  const char* names[] = {"float32", "float64", "float16", "bfloat16", "int32", "int64", "uint8", "bool"};
  const int64_t sizes[] = {4, 8, 2, 2, 4, 8, 1, 1};
  // torch.promote_types(a, b) for the same dtype order (PyTorch 1.13)
  const DType table[8][8] = {
      {DType::f32, DType::f64, DType::f32, DType::f32, DType::f32, DType::f32, DType::f32, DType::f32},
      {DType::f64, DType::f64, DType::f64, DType::f64, DType::f64, DType::f64, DType::f64, DType::f64},
      {DType::f32, DType::f64, DType::f16, DType::f32, DType::f16, DType::f16, DType::f16, DType::f16},
      {DType::f32, DType::f64, DType::f32, DType::bf16, DType::bf16, DType::bf16, DType::bf16, DType::bf16},
      {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::i32, DType::i32},
      {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i64, DType::i64, DType::i64, DType::i64},
      {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::u8},
      {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8},
  };
  for (int i = 0; i < 8; ++i) {
    CHECK(dtype_name(all[i]) == names[i]);
    CHECK(itemsize(all[i]) == sizes[i]);
    CHECK(is_floating(all[i]) == (i < 4));
    CHECK(is_integral(all[i]) == (i >= 4 && i < 7));
    std::ostringstream os;
    os << all[i];
    CHECK(os.str() == names[i]);
    for (int j = 0; j < 8; ++j) {
      INFO(all[i] << " with " << all[j]);
      CHECK(promote_types(all[i], all[j]) == table[i][j]);
    }
  }
  CHECK(cast_value<bool>(0.5) == true);
  CHECK(cast_value<int32_t>(-2.7) == -2);
  CHECK(cast_value<uint8_t>(3.9f) == 3);
  CHECK(cast_value<float>(f16(1.5f)) == 1.5f);
  CHECK(cast_value<bf16>(int64_t(3)).bits == 0x4040);
  CHECK(cast_value<f16>(true).bits == 0x3c00);
  th::check_throws([] { dispatch_float(DType::i64, "softmax", [](auto) {}); },
                   {"softmax: got dtype int64, expected a floating dtype"});
  th::check_throws([] { dispatch_numeric(DType::b8, "sum", [](auto) {}); }, {"sum: got dtype bool"});
}

TEST_CASE("shape: broadcast_shapes, wrap_dim, contiguous_strides", "[core]") {
  CHECK(broadcast_shapes({8, 1, 6}, {7, 1}) == Shape{8, 7, 6});
  CHECK(broadcast_shapes({}, {3}) == Shape{3});
  CHECK(broadcast_shapes({}, {}) == Shape{});
  CHECK(broadcast_shapes({0}, {1}) == Shape{0});
  CHECK(broadcast_shapes({2, 1, 0}, {3, 1}) == Shape{2, 3, 0});
  CHECK(broadcast_shapes({5, 4}, {1}) == Shape{5, 4});
  th::check_throws([] { broadcast_shapes({2, 3}, {4}); },
                   {"broadcast: got shapes [2, 3] and [4], expected shapes that broadcast"});
  th::check_throws([] { broadcast_shapes({2, 0}, {3}, "add"); }, {"add: ", "[2, 0]", "[3]"});
  CHECK(wrap_dim(-1, 3, "x") == 2);
  CHECK(wrap_dim(-3, 3, "x") == 0);
  CHECK(wrap_dim(2, 3, "x") == 2);
  CHECK(wrap_dim(0, 0, "x") == 0);
  CHECK(wrap_dim(-1, 0, "x") == 0);
  th::check_throws([] { wrap_dim(3, 3, "sum"); }, {"sum: got dim 3 for a tensor with 3 dims, expected a dim in [-3, 2]"});
  th::check_throws([] { wrap_dim(-4, 3, "sum"); }, {"sum: got dim -4"});
  th::check_throws([] { wrap_dim(1, 0, "squeeze"); }, {"squeeze: got dim 1 for a tensor with 0 dims"});
  CHECK(contiguous_strides({2, 3, 4}) == Strides{12, 4, 1});
  CHECK(numel(Shape{}) == 1);
  CHECK(numel(Shape{3, 0}) == 0);
  CHECK(to_string(Shape{2, 3}) == "[2, 3]");
  CHECK(to_string(Shape{}) == "[]");
}

TEST_CASE("errors: STRATA_CHECK message format", "[core]") {
  try {
    STRATA_CHECK(1 + 1 == 3, "myop", "got shape ", Shape{2, 3}, " and dtype ", DType::f16, ", expected ", 4, " dims");
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "myop: got shape [2, 3] and dtype float16, expected 4 dims");
  }
  STRATA_CHECK(true, "myop", "never evaluated");
  std::ostringstream os;
  os << kCPU << ' ' << Device{DeviceType::cuda, 1};
  CHECK(os.str() == "cpu cuda:1");
}

// ---------------------------------------------------------------------------------------------
// memory pool

TEST_CASE("HostPool: size classes, alignment, reuse, stats", "[core]") {
  for (size_t n = 1; n < 70000; n += (n < 2048 ? 1 : 97)) {
    const size_t r = HostPool::round_size(n);
    INFO("n = " << n << " rounded " << r);
    REQUIRE(r >= n);
    REQUIRE(r % kAlignment == 0);
    REQUIRE((n <= 256 ? r - n < 64 : (r - n) * 4 < n));  // < 25% slack above 256 B
    REQUIRE(HostPool::round_size(r) == r);               // classes are fixed points
  }
  CHECK(HostPool::round_size(1) == 64);
  CHECK(HostPool::round_size(256) == 256);
  CHECK(HostPool::round_size(257) == 320);
  CHECK(HostPool::round_size(1000) == 1024);
  CHECK(HostPool::round_size(1025) == 1280);
  CHECK(HostPool::round_size(4096) == 4096);

  HostPool pool;
  void* a = pool.allocate(100);
  void* b = pool.allocate(1000);
  void* z = pool.allocate(0);
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  CHECK(reinterpret_cast<uintptr_t>(b) % 64 == 0);
  CHECK(reinterpret_cast<uintptr_t>(z) % 64 == 0);
  std::memset(b, 0xab, 1000);
  CHECK(pool.stats().in_use == 128 + 1024 + 64);
  CHECK(pool.stats().peak == 128 + 1024 + 64);
  pool.release(a, 100);
  CHECK(pool.stats().in_use == 1024 + 64);
  CHECK(pool.stats().cached == 128);
  void* a2 = pool.allocate(120);  // same size class: the cached block comes back
  CHECK(a2 == a);
  CHECK(pool.stats().cached == 0);
  void* c = pool.allocate(200);  // another class: fresh memory
  CHECK(c != a);
  CHECK(pool.stats().peak == 128 + 1024 + 64 + 256);
  pool.release(c, 200);
  pool.release(b, 1000);
  pool.reset_peak();
  CHECK(pool.stats().peak == pool.stats().in_use);
  CHECK(pool.stats().in_use == 128 + 64);
  pool.release(a2, 120);
  pool.release(z, 0);
  CHECK(pool.stats().in_use == 0);
  CHECK(pool.stats().cached == 128 + 256 + 1024 + 64);
  pool.empty_cache();
  CHECK(pool.stats().cached == 0);

  // the global pool behind tensors
  const MemoryStats before = memory_stats();
  {
    Tensor t = Tensor::empty({1000}, DType::f32);  // 4000 B -> the 4096 B class
    CHECK(memory_stats().in_use == before.in_use + 4096);
    CHECK(memory_stats().peak >= before.in_use + 4096);
    CHECK(reinterpret_cast<uintptr_t>(t.raw_data()) % 64 == 0);
  }
  CHECK(memory_stats().in_use == before.in_use);
  CHECK(memory_stats().cached >= 4096);
}

// ---------------------------------------------------------------------------------------------
// parallel_for

TEST_CASE("parallel_for: covers the range exactly once, any (n, grain, threads)", "[core]") {
  ThreadsGuard guard;
  for (int threads : {1, 2, 3, 5}) {
    set_num_threads(threads);
    REQUIRE(num_threads() == threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 100, 1000, 4097}) {
      for (int64_t grain : {0, 1, 2, 3, 16, 1000, 5000}) {
        const int64_t begin = 5;
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> calls{0}, bad_chunks{0};  // no Catch macros on worker threads
        parallel_for(begin, begin + n, grain, [&](int64_t lo, int64_t hi) {
          ++calls;
          if (!(begin <= lo && lo < hi && hi <= begin + n)) ++bad_chunks;
          for (int64_t i = std::max(lo, begin); i < std::min(hi, begin + n); ++i) ++hits[size_t(i - begin)];
        });
        INFO("threads " << threads << " n " << n << " grain " << grain);
        CHECK(bad_chunks.load() == 0);
        CHECK(std::all_of(hits.begin(), hits.end(), [](const std::atomic<int>& h) { return h == 1; }));
        CHECK(calls.load() <= threads);
        if (n > 0 && n <= std::max<int64_t>(grain, 1)) CHECK(calls.load() == 1);  // small ranges run inline
      }
    }
  }
  // nested calls run inline on the worker, as one chunk
  set_num_threads(2);
  std::atomic<int> inner_calls{0}, outer_calls{0}, inner_whole{0};
  parallel_for(0, 100, 1, [&](int64_t, int64_t) {
    ++outer_calls;
    parallel_for(0, 1000, 1, [&](int64_t lo, int64_t hi) {
      if (lo == 0 && hi == 1000) ++inner_whole;
      ++inner_calls;
    });
  });
  CHECK(outer_calls.load() == 2);
  CHECK(inner_calls.load() == 2);
  CHECK(inner_whole.load() == 2);
}

TEST_CASE("parallel_for: exceptions reach the caller; the pool keeps working", "[core]") {
  ThreadsGuard guard;
  set_num_threads(4);
  for (int64_t bad : {0, 999}) {  // thrown on the calling thread / on a worker
    try {
      parallel_for(0, 1000, 1, [&](int64_t lo, int64_t hi) {
        if (lo <= bad && bad < hi) detail::fail("kernel", "got bad element ", bad);
      });
      FAIL("no throw");
    } catch (const Error& e) {
      CHECK(std::string(e.what()) == "kernel: got bad element " + std::to_string(bad));
    }
  }
  std::atomic<int64_t> sum{0};
  parallel_for(0, 1000, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) sum += i;
  });
  CHECK(sum.load() == 999 * 1000 / 2);
}

// ---------------------------------------------------------------------------------------------
// creation ops and item

TEST_CASE("creation: zeros ones full *_like", "[core]") {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8}) {
    INFO(dt);
    Tensor z = zeros({2, 3}, {.dtype = dt}), o = ones({4}, {.dtype = dt}), f = full({3, 1}, 2.0, {.dtype = dt});
    CHECK(z.dtype() == dt);
    CHECK(z.shape() == Shape{2, 3});
    CHECK(z.is_contiguous());
    CHECK(th::values(z) == std::vector<double>(6, 0.0));
    CHECK(th::values(o) == std::vector<double>(4, 1.0));
    CHECK(th::values(f) == std::vector<double>(3, dt == DType::b8 ? 1.0 : 2.0));
    Tensor x = th::random({3, 4}, is_floating(dt) ? dt : DType::f32, true).to(dt);
    for (const Tensor& l : {zeros_like(x), ones_like(x), full_like(x, 1.0), empty_like(x)}) {
      CHECK(l.dtype() == dt);
      CHECK(l.shape() == x.shape());
      CHECK(l.is_contiguous());
    }
    CHECK(th::values(ones_like(x)) == std::vector<double>(12, 1.0));
  }
  CHECK(th::values(full({2}, -2.7, {.dtype = DType::i32})) == std::vector<double>{-2, -2});
  CHECK(th::values(full({2}, 0.1, {.dtype = DType::bf16})) == std::vector<double>(2, double(float(bf16(0.1f)))));
  Tensor g = zeros({2}, {.dtype = DType::f64, .requires_grad = true});
  CHECK(g.requires_grad());
  CHECK(g.is_leaf());
  CHECK_FALSE(zeros({2}).requires_grad());
  CHECK(zeros({}).dim() == 0);
  CHECK(zeros({}).numel() == 1);
  CHECK(zeros({4, 0}).numel() == 0);
  th::check_throws([] { zeros({-1, 2}); }, {"got shape [-1, 2], expected sizes >= 0"});
  th::check_throws([] { ones({3, -4}); }, {"[3, -4]"});
  th::check_throws([] { zeros({2}, {.dtype = DType::i64, .requires_grad = true}); },
                   {"requires_grad_: got dtype int64, expected a floating dtype"});
}

TEST_CASE("creation: arange linspace", "[core]") {
  Tensor a = arange(5);
  CHECK(a.dtype() == DType::i64);
  CHECK(th::values(a) == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(th::values(arange(1, 2.5, 0.5, {.dtype = DType::f32})) == std::vector<double>{1, 1.5, 2});
  CHECK(th::values(arange(5, 0, -1.5, {.dtype = DType::f64})) == std::vector<double>{5, 3.5, 2, 0.5});
  CHECK(arange(0, 1, 0.1, {.dtype = DType::f64}).numel() == 10);  // torch.arange(0, 1, 0.1) has 10
  CHECK(arange(-3, 4).numel() == 7);
  CHECK(arange(3, 3).numel() == 0);
  CHECK(arange(4, {.dtype = DType::bf16}).dtype() == DType::bf16);
  CHECK(arange(0, 1, 0.25).dtype() == DType::f32);  // torch.arange(0, 1, 0.25): float, not truncated
  CHECK(th::values(arange(0, 1, 0.25)) == std::vector<double>{0, 0.25, 0.5, 0.75});
  CHECK(arange(0.5, 3).dtype() == DType::f32);
  CHECK(arange(1, 4, 2).dtype() == DType::i64);
  th::check_throws([] { arange(0, 5, -1); }, {"arange: got start=0 end=5 step=-1", "expected a step"});
  th::check_throws([] { arange(5, 0, 1); }, {"arange", "start=5 end=0 step=1"});
  th::check_throws([] { arange(0, 5, 0); }, {"arange", "step=0"});

  Tensor l = linspace(0, 1, 5);
  CHECK(l.dtype() == DType::f32);
  CHECK(th::values(l) == std::vector<double>{0, 0.25, 0.5, 0.75, 1});
  const auto v = th::values(linspace(-1, 1, 7, {.dtype = DType::f64}));
  REQUIRE(v.size() == 7);
  for (size_t i = 0; i < 7; ++i) CHECK(std::abs(v[i] - (-1.0 + double(i) / 3.0)) < 1e-15);
  CHECK(v.front() == -1.0);
  CHECK(v.back() == 1.0);
  CHECK(th::values(linspace(0.1, 0.7, 13, {.dtype = DType::f64})).back() == 0.7);  // last is exactly end
  CHECK(th::values(linspace(2, 3, 1)) == std::vector<double>{2});
  CHECK(linspace(0, 1, 0).numel() == 0);
  CHECK(th::values(linspace(0, 10, 3, {.dtype = DType::i32})) == std::vector<double>{0, 5, 10});
  th::check_throws([] { linspace(0, 1, -1); }, {"linspace: got steps=-1, expected >= 0"});
}

TEST_CASE("creation: from_vector scalar_tensor item", "[core]") {
  Tensor f = from_vector(std::vector<float>{1.5f, -2.f, 3.f});
  CHECK(f.dtype() == DType::f32);
  CHECK(f.shape() == Shape{3});
  CHECK(th::values(f) == std::vector<double>{1.5, -2, 3});
  Tensor i = from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(i.dtype() == DType::i64);
  CHECK(i.shape() == Shape{2, 3});
  CHECK(th::at(i, {1, 2}) == 6);
  Tensor d = from_vector({0.5, 1.0, 1.5, 2.0}, {2, 2}, {.dtype = DType::f64, .requires_grad = true});
  CHECK(d.dtype() == DType::f64);
  CHECK(d.requires_grad());
  CHECK(from_vector({1.0, 2.0}).dtype() == DType::f32);
  CHECK(th::values(from_vector({1.0, 0.0, 2.0}, {-1}, {.dtype = DType::b8})) == std::vector<double>{1, 0, 1});
  CHECK(from_vector({4.0}).dim() == 1);  // torch.tensor([4.]) is 1-d
  CHECK(from_vector({4.0}, {1}).dim() == 1);
  CHECK(from_vector(std::vector<double>{}).shape() == Shape{0});
  th::check_throws([] { from_vector({1.0, 2.0, 3.0, 4.0, 5.0}, {2, 3}); },
                   {"from_vector: got 5 values for shape [2, 3], expected 6"});

  Tensor s = scalar_tensor(2.5, {.dtype = DType::f64});
  CHECK(s.dim() == 0);
  CHECK(s.item<double>() == 2.5);
  CHECK(s.item<int64_t>() == 2);
  CHECK(from_vector(std::vector<int64_t>{7}, {1, 1}).item<int64_t>() == 7);
  CHECK(from_vector({-3.0}, {}, {.dtype = DType::bf16}).item<float>() == -3.0f);
  CHECK(from_vector({0.0, 1.0}, {-1}, {.dtype = DType::b8}).select(0, 1).item<bool>());
  CHECK(arange(10).slice(0, 3, 10, 3).select(0, 2).item<int64_t>() == 9);  // through a strided view
  th::check_throws([] { zeros({2}).item<float>(); }, {"item: got a tensor of shape [2], expected exactly one element"});
  th::check_throws([] { zeros({0}).item<float>(); }, {"item", "[0]"});
}

TEST_CASE("creation: every dtype, empty shapes, bad dtypes and ranges for the random ops", "[core]") {
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8};
  for (DType dt : all) {
    INFO(dt);
    for (const Shape& s : {Shape{}, Shape{0}, Shape{3, 0, 2}, Shape{2, 5}}) {
      INFO(s);
      for (const Tensor& t : {empty(s, {.dtype = dt}), zeros(s, {.dtype = dt}), ones(s, {.dtype = dt}), full(s, 2.7, {.dtype = dt})}) {
        CHECK(t.dtype() == dt);
        CHECK(t.shape() == s);
        CHECK(t.numel() == numel(s));
        CHECK(t.is_contiguous());
        CHECK(t.strides() == contiguous_strides(s));
        CHECK_FALSE(t.requires_grad());
      }
      const double v = dispatch_all(dt, "test", [&]<class T>(type_tag<T>) { return cast_value<double>(cast_value<T>(2.7)); });
      CHECK(th::values(full(s, 2.7, {.dtype = dt})) == std::vector<double>(size_t(numel(s)), v));
      CHECK(th::values(zeros(s, {.dtype = dt})) == std::vector<double>(size_t(numel(s)), 0.0));
      CHECK(th::values(ones(s, {.dtype = dt})) == std::vector<double>(size_t(numel(s)), 1.0));
    }
    if (is_floating(dt)) CHECK(empty({2}, {.dtype = dt, .requires_grad = true}).requires_grad());
    else th::check_throws([&] { empty({2}, {.dtype = dt, .requires_grad = true}); }, {"requires_grad_", std::string(dtype_name(dt))});
  }
  // 0-size shapes give empty tensors of the asked dtype
  for (const Shape& s : {Shape{0}, Shape{3, 0}, Shape{0, 2, 4}}) {
    INFO(s);
    for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      for (const Tensor& t : {rand(s, {.dtype = dt}), randn(s, {.dtype = dt})}) {
        CHECK(t.shape() == s);
        CHECK(t.dtype() == dt);
        CHECK(t.numel() == 0);
      }
    }
    for (DType dt : {DType::i64, DType::i32, DType::u8, DType::f32}) {
      Tensor r = randint(0, 10, s, {.dtype = dt});
      CHECK(r.shape() == s);
      CHECK(r.dtype() == dt);
    }
  }
  // rand/randn have no integer or bool form; the message names the op and the dtype
  for (DType dt : {DType::i32, DType::i64, DType::u8, DType::b8}) {
    const std::string name(dtype_name(dt));
    th::check_throws([&] { rand({3}, {.dtype = dt}); }, {"rand", name, "floating"});
    th::check_throws([&] { randn({2, 2}, {.dtype = dt}); }, {"randn", name, "floating"});
    th::check_throws([&] { rand({0}, {.dtype = dt}); }, {"rand", name});  // even with nothing to fill
  }
  th::check_throws([] { randint(0, 2, {3}, {.dtype = DType::b8}); }, {"randint", "bool"});
  th::check_throws([] { randint(5, 2, {3}); }, {"randint", "low=5", "high=2"});
  th::check_throws([] { randint(-1, -3, {0}); }, {"randint", "low=-1", "high=-3"});
  // a range the dtype cannot hold is an error, not values wrapped around (torch.randint checks too)
  th::check_throws([] { randint(0, 1000, {8}, {.dtype = DType::u8}); }, {"randint", "high=1000", "uint8"});
  th::check_throws([] { randint(-1, 10, {8}, {.dtype = DType::u8}); }, {"randint", "low=-1", "uint8"});
  th::check_throws([] { randint(0, int64_t(1) << 40, {8}, {.dtype = DType::i32}); }, {"randint", "int32"});
  const auto edge = th::values(randint(-2147483648LL, 2147483648LL, {1000}, {.dtype = DType::i32}));  // the full int32 range
  CHECK(*std::min_element(edge.begin(), edge.end()) >= -2147483648.0);
  CHECK(*std::max_element(edge.begin(), edge.end()) <= 2147483647.0);
}

TEST_CASE("creation: f16/bf16 item()", "[core]") {
  for (double v : {1.5, -2.75, 0.1, 65504.0, 3.0e-5}) {
    INFO(v);
    const Tensor h = scalar_tensor(v, {.dtype = DType::f16}), b = scalar_tensor(v, {.dtype = DType::bf16});
    CHECK(h.item<float>() == float(f16(float(v))));
    CHECK(b.item<float>() == float(bf16(float(v))));
    CHECK(h.item<double>() == double(float(f16(float(v)))));
    CHECK(b.item<double>() == double(float(bf16(float(v)))));
    CHECK(std::bit_cast<uint16_t>(h.item<f16>()) == std::bit_cast<uint16_t>(f16(float(v))));
    CHECK(std::bit_cast<uint16_t>(b.item<bf16>()) == std::bit_cast<uint16_t>(bf16(float(v))));
    CHECK(h.item<int64_t>() == int64_t(float(f16(float(v)))));  // truncates toward zero, like C++
    CHECK(b.item<bool>());
  }
  CHECK(scalar_tensor(0.0, {.dtype = DType::bf16}).item<bool>() == false);
  CHECK(scalar_tensor(-0.0, {.dtype = DType::f16}).item<bool>() == false);
  CHECK(std::isinf(scalar_tensor(1e6, {.dtype = DType::f16}).item<float>()));  // overflows f16, not bf16
  CHECK(scalar_tensor(1e6, {.dtype = DType::bf16}).item<float>() == float(bf16(1e6f)));
  Tensor v = arange(12, {.dtype = DType::bf16}).view({3, 4}).t().slice(0, 1, 4, 2);  // strided f16/bf16 views
  CHECK(v.select(0, 1).select(0, 2).item<float>() == 11.0f);
  CHECK(arange(6, {.dtype = DType::f16}).view({2, 3}).t().select(0, 2).select(0, 1).item<double>() == 5.0);
  th::check_throws([] { ones({2}, {.dtype = DType::f16}).item<float>(); }, {"item", "[2]"});
}

}  // namespace test_core
