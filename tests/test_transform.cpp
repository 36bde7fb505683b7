// Typed transforms and Pipeline (data/transform.hpp): dispatch by item type, pass-through, decode
// order, per-call random parameters, split, setups; TfmRng streams.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "strata/data/transform.hpp"

namespace test_transform {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

// Adds 1 to Images (decodes subtracts it); knows nothing of Category.
struct AddOne {
  static constexpr const char* name = "AddOne";
  int order = 5;
  Image encodes(const Image& x) const { return Image{x.data + 1.0}; }
  Image decodes(const Image& x) const { return Image{x.data - 1.0}; }
};
// Doubles Images and Categories (decodes halves them); order 1 runs before AddOne.
struct Twice {
  static constexpr const char* name = "Twice";
  static constexpr int order = 1;
  Image encodes(const Image& x) const { return Image{x.data * 2.0}; }
  Image decodes(const Image& x) const { return Image{x.data / 2.0}; }
  Category encodes(const Category& x) const { return Category{x.data * 2}; }
  Category decodes(const Category& x) const { return Category{(x.data.to(DType::f64) / 2.0).to(DType::i64)}; }
};
// Draws one offset per tuple and adds it to every Image of the tuple; train only.
struct RandOffset {
  static constexpr Split split = Split::train;
  double off = 0;
  void before_call(const Tuple&, TfmContext& ctx) { off = ctx.rng.uniform(); }
  Image encodes(const Image& x) const { return Image{x.data + off}; }
};
// setups learns the max Category seen; encodes turns a Category into a Regression by dividing by it.
struct ScaleByMax {
  int order = 2;
  double max = 0;
  void setups(const std::vector<Tuple>& items) {
    for (const Tuple& t : items)
      for (const Item& it : t)
        if (kind_of(it) == ItemKind::category) max = std::max(max, data_of(it).item<double>());
  }
  Regression encodes(const Category& x) const { return Regression{x.data.to(DType::f32) / max}; }
};

double first(const Item& it) { return th::values(data_of(it))[0]; }

}  // namespace

TEST_CASE("Pipeline: types dispatch, pass through, run by order and decode in reverse", "[transform]") {
  Pipeline pipe({make_transform(AddOne{}), make_transform(Twice{})});
  CHECK(pipe.repr() == "Pipeline: Twice -> AddOne");
  TfmContext ctx;
  const Tuple in{Image{full({1, 2, 2}, 3.0)}, Category{scalar_tensor(int64_t(4))}, Mask{full({2, 2}, 7.0)}};
  const Tuple out = pipe(in, ctx);
  CHECK(first(out[0]) == 7.0);  // (3 * 2) + 1: Twice first
  CHECK(first(out[1]) == 8.0);  // AddOne does not know Category
  CHECK(first(out[2]) == 7.0);  // nobody knows Mask
  CHECK(kinds_of(out) == kinds_of(in));
  const Tuple back = pipe.decode(out);
  CHECK(first(back[0]) == 3.0);
  CHECK(first(back[1]) == 4.0);
}

TEST_CASE("Pipeline: random parameters drawn once per tuple, from the context's stream, train only", "[transform]") {
  auto tf = make_transform(RandOffset{});
  Pipeline pipe({tf});
  const Tuple in{Image{zeros({3})}, Image{zeros({2})}};
  TfmContext a{.train = true, .rng = TfmRng(7, 1, 2, 3)}, b{.train = true, .rng = TfmRng(7, 1, 2, 3)};
  const Tuple ra = pipe(in, a), rb = pipe(in, b);
  CHECK(first(ra[0]) == first(ra[1]));  // one draw for the whole tuple
  CHECK(first(ra[0]) == first(rb[0]));  // same stream, same draw
  CHECK(first(ra[0]) > 0.0);
  CHECK(tf->impl().off == 0.0);  // the shared transform was not written
  TfmContext other{.train = true, .rng = TfmRng(7, 1, 2, 4)};
  CHECK(first(pipe(in, other)[0]) != first(ra[0]));
  TfmContext valid{.train = false};
  CHECK(first(pipe(in, valid)[0]) == 0.0);  // split = train: skipped on validation data
}

TEST_CASE("Pipeline::setup: each transform learns from what the previous ones produced", "[transform]") {
  auto scale = make_transform(ScaleByMax{});
  Pipeline pipe({make_transform(Twice{}), scale});
  std::vector<Tuple> items;
  for (int64_t c : {1, 5, 3}) items.push_back({Category{scalar_tensor(c)}});
  pipe.setup(items);
  CHECK(scale->impl().max == 10.0);  // Twice ran before ScaleByMax's setups
  TfmContext ctx;
  const Tuple out = pipe({Category{scalar_tensor(int64_t(5))}}, ctx);
  REQUIRE(kind_of(out[0]) == ItemKind::regression);
  CHECK(first(out[0]) == Approx(1.0));
}

TEST_CASE("TfmRng: uniform in range, randint bounds, normal and beta moments", "[transform]") {
  TfmRng r(42, 0, 0, 0);
  double s = 0, s2 = 0, lo = 1, hi = 0, bsum = 0;
  int64_t imin = 100, imax = -100;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform();
    lo = std::min(lo, u), hi = std::max(hi, u);
    const double z = r.normal();
    s += z, s2 += z * z;
    const int64_t k = r.randint(-3, 4);
    imin = std::min(imin, k), imax = std::max(imax, k);
    bsum += r.beta(0.4, 0.4);
  }
  CHECK(lo >= 0.0);
  CHECK(hi < 1.0);
  CHECK(imin == -3);
  CHECK(imax == 3);
  CHECK(std::abs(s / n) < 0.03);
  CHECK(std::abs(s2 / n - 1.0) < 0.05);
  CHECK(std::abs(bsum / n - 0.5) < 0.02);  // Beta(a, a) has mean 1/2
  th::check_throws([&] { r.randint(2, 2); }, {"TfmRng::randint", "[2, 2)"});
}

TEST_CASE("to_batch / to_tuple round trip with kinds", "[transform]") {
  const Tuple t{Image{zeros({1, 2, 2})}, Points{zeros({3, 2})}, Category{scalar_tensor(int64_t(1))}};
  const Batch b = to_batch(t, 2);
  CHECK(b.xb.size() == 2);
  CHECK(b.yb.size() == 1);
  const Tuple back = to_tuple(b, kinds_of(t));
  CHECK(kinds_of(back) == kinds_of(t));
  th::check_throws([&] { to_tuple(b, {ItemKind::image}); }, {"to_tuple", "at most 1"});
  th::check_throws([&] { to_batch(t, 4); }, {"to_batch", "n_inp = 4"});
}

}  // namespace test_transform
