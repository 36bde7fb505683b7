// Joining ops: cat / stack against a reference loop (strided inputs, mixed dtypes, empty tensors,
// PyTorch's skip of [0]), split / chunk / unbind as views, float64 gradchecks, and error messages.
#include "helpers.hpp"

namespace test_join {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
using th::random;

namespace {

/// Reference cat: walk the output, find the input that owns each position along d.
std::vector<double> ref_cat(const std::vector<Tensor>& ts, int d, const Shape& out_shape) {
  std::vector<double> out;
  for (int64_t n = 0; n < numel(out_shape); ++n) {
    auto p = th::unravel(n, out_shape);
    int64_t pos = p[size_t(d)];
    for (const Tensor& t : ts) {
      if (t.dim() == 1 && t.shape()[0] == 0) continue;  // skipped like PyTorch
      if (pos < t.shape()[d]) {
        p[size_t(d)] = pos;
        out.push_back(th::at(t, p));
        break;
      }
      pos -= t.shape()[d];
    }
  }
  return out;
}

}  // namespace

TEST_CASE("cat matches the reference on strided inputs of several dtypes", "[join]") {
  struct Case { std::vector<Shape> shapes; int64_t dim; };
  const std::vector<Case> cases = {
      {{{3}, {5}, {1}}, 0},
      {{{2, 3}, {2, 4}}, 1},
      {{{2, 3}, {4, 3}, {1, 3}}, 0},
      {{{2, 3, 4}, {2, 1, 4}, {2, 5, 4}}, -2},
      {{{2, 3, 4}, {2, 3, 2}}, -1},
      {{{2, 0, 4}, {2, 3, 4}}, 1},     // an input with nothing along dim
      {{{0, 3}, {0, 5}}, 1},           // empty in another dim
      {{{2, 3}, {0}, {1, 3}}, 0},      // [0] is skipped whatever the rank
      {{{300, 70}, {200, 70}}, 0},     // big enough for the threaded copy
  };
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i64})
    for (const Case& c : cases)
      for (bool nc : {false, true}) {
        std::vector<Tensor> ts;
        for (const Shape& s : c.shapes) ts.push_back(random(s, DType::f64, nc, -50, 50).to(dt));
        Tensor out = cat(ts, c.dim);
        CHECK(out.dtype() == dt);
        CHECK(out.is_contiguous());
        const int d = wrap_dim(c.dim, ts[0].dim(), "test");
        Shape want = ts[0].shape();
        want[d] = 0;
        for (const Tensor& t : ts) want[d] += (t.dim() == 1 && t.shape()[0] == 0) ? 0 : t.shape()[d];
        REQUIRE(out.shape() == want);
        th::check_close(th::values(out), ref_cat(ts, d, want), 0, 0,
                        "cat " + std::string(dtype_name(dt)) + " " + to_string(c.shapes[0]));
      }
}

TEST_CASE("cat promotes dtypes and skips [0] inputs like PyTorch", "[join]") {
  Tensor a = th::make({1, 2}, {1, 2}, DType::f32), b = th::make({3, 4}, {1, 2}, DType::f64);
  Tensor i = th::make({5, 6}, {1, 2}, DType::i64), h = th::make({7, 8}, {1, 2}, DType::bf16);
  CHECK(cat({a, b}).dtype() == DType::f64);
  CHECK(cat({i, a}).dtype() == DType::f32);
  CHECK(cat({h, i}).dtype() == DType::bf16);
  CHECK(cat({h, th::make({1, 1}, {1, 2}, DType::f16)}).dtype() == DType::f32);
  CHECK(th::values(cat({i, a, h}, 0)) == std::vector<double>{5, 6, 1, 2, 7, 8});
  CHECK(th::values(cat({i, a}, 1)) == std::vector<double>{5, 6, 1, 2});
  // [0] may join tensors of any rank, and still takes part in dtype promotion
  Tensor e = empty({0}, {.dtype = DType::f64});
  Tensor c = cat({e, a, e});
  CHECK(c.shape() == Shape{1, 2});
  CHECK(c.dtype() == DType::f64);
  CHECK(cat({e, e}).shape() == Shape{0});
  CHECK(cat({a}).storage() != a.storage());  // always a new tensor
  // a bool input
  CHECK(th::values(cat({th::make({1, 0}, {2}, DType::b8), th::make({7}, {1}, DType::i64)})) ==
        std::vector<double>{1, 0, 7});
}

TEST_CASE("stack matches unsqueeze + reference", "[join]") {
  for (DType dt : {DType::f32, DType::f16, DType::i64})
    for (int64_t dim : {0, 1, 2, -1}) {
      std::vector<Tensor> ts;
      for (int k = 0; k < 3; ++k) ts.push_back(random({2, 3}, DType::f64, k == 1, -9, 9).to(dt));
      Tensor out = stack(ts, dim);
      const int d = wrap_dim(dim, 3, "test");
      Shape want{2, 3};
      want.insert(want.begin() + d, 3);
      REQUIRE(out.shape() == want);
      for (int64_t n = 0; n < out.numel(); ++n) {
        auto p = th::unravel(n, want);
        const int64_t k = p[size_t(d)];
        p.erase(p.begin() + d);
        CHECK(th::at(out, th::unravel(n, want)) == th::at(ts[size_t(k)], p));
      }
    }
  CHECK(stack({scalar_tensor(1), scalar_tensor(2)}).shape() == Shape{2});  // scalars stack into 1-D
  CHECK(stack({empty({0, 3}), empty({0, 3})}, 1).shape() == Shape{0, 2, 3});
  CHECK(stack({empty({0}), empty({0})}).shape() == Shape{2, 0});  // unsqueezed: no longer skipped
}

TEST_CASE("split, chunk and unbind return views with PyTorch's sizes", "[join]") {
  Tensor x = random({5, 4}, DType::f32, true);
  auto sizes_of = [](const std::vector<Tensor>& ts, int d) {
    std::vector<int64_t> s;
    for (const Tensor& t : ts) s.push_back(t.shape()[d]);
    return s;
  };
  CHECK(sizes_of(split(x, 2), 0) == std::vector<int64_t>{2, 2, 1});
  CHECK(sizes_of(split(x, 5), 0) == std::vector<int64_t>{5});
  CHECK(sizes_of(split(x, 7), 0) == std::vector<int64_t>{5});
  CHECK(sizes_of(split(x, 3, 1), 1) == std::vector<int64_t>{3, 1});
  CHECK(sizes_of(split(x, {1, 0, 4}), 0) == std::vector<int64_t>{1, 0, 4});
  CHECK(sizes_of(split(x, {3, 1}, -1), 1) == std::vector<int64_t>{3, 1});
  CHECK(sizes_of(chunk(x, 3), 0) == std::vector<int64_t>{2, 2, 1});
  CHECK(sizes_of(chunk(x, 2, 1), 1) == std::vector<int64_t>{2, 2});
  CHECK(sizes_of(chunk(x, 4), 0) == std::vector<int64_t>{2, 2, 1});  // ceil(5/4) = 2: only 3 chunks
  CHECK(sizes_of(chunk(x, 9), 0) == std::vector<int64_t>{1, 1, 1, 1, 1});
  CHECK(sizes_of(chunk(empty({0, 2}), 3), 0) == std::vector<int64_t>{0, 0, 0});
  CHECK(sizes_of(split(empty({0, 2}), 2), 0) == std::vector<int64_t>{0});
  CHECK(sizes_of(split(empty({0, 2}), 0), 0) == std::vector<int64_t>{0});

  // views: same storage, values from the right rows, and cat undoes split
  auto parts = split(x, {2, 3}, 0);
  CHECK(parts[1].storage() == x.storage());
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) CHECK(th::at(parts[1], {i, j}) == th::at(x, {i + 2, j}));
  th::check_close(cat(split(x, 2, 1), 1), x, 0, 0, "cat(split)");
  th::check_close(cat(chunk(x, 3, 0), 0), x, 0, 0, "cat(chunk)");
  auto rows = unbind(x, 1);
  REQUIRE(rows.size() == 4);
  CHECK(rows[2].shape() == Shape{5});
  CHECK(rows[2].storage() == x.storage());
  th::check_close(stack(rows, 1), x, 0, 0, "stack(unbind)");
}

TEST_CASE("join ops pass gradcheck", "[join]") {
  th::gradcheck_ok([](const std::vector<Tensor>& v) { return cat(v, 1); },
                   {random({2, 3}), random({2, 1}, DType::f32, true), random({2, 4}, DType::f32, true)});
  th::gradcheck_ok([](const std::vector<Tensor>& v) { return cat({v[0], v[1], v[0]}, 0); },  // reused input
                   {random({2, 3}, DType::f32, true), random({1, 3})});
  th::gradcheck_ok([](const std::vector<Tensor>& v) { return cat({v[0], v[1]}, 0); },  // a skipped [0]
                   {random({0}), random({2, 3})});
  th::gradcheck_ok([](const std::vector<Tensor>& v) { return stack(v, 1); },
                   {random({2, 3}, DType::f32, true), random({2, 3}), random({2, 3})});
  th::gradcheck_ok([](const std::vector<Tensor>& v) {  // a weighted sum of the parts
    auto p = split(v[0], {1, 3, 2}, 1);
    return sum(p[0]) + 2.0 * sum(mul(p[1], p[1])) - 3.0 * sum(p[2]);
  }, {random({3, 6}, DType::f32, true)});
  th::gradcheck_ok([](const std::vector<Tensor>& v) {
    auto p = split(v[0], 2, 0);  // parts [2, 3], [2, 3], [1, 3]
    return add(mul(p[0], 3.0), p[1]) + sum(p[2]);
  }, {random({5, 3})});
  th::gradcheck_ok([](const std::vector<Tensor>& v) {
    auto p = chunk(v[0], 2, 1);
    auto u = unbind(v[0], 0);
    return mul(p[0], p[1]) + sum(u[1]);
  }, {random({3, 4}, DType::f32, true)});
}

TEST_CASE("cat backward gives each input its own dtype and shape", "[join]") {
  Tensor a = random({2, 3}, DType::f32).requires_grad_(), b = random({2, 2}, DType::f64).requires_grad_();
  Tensor c = random({2, 1}, DType::f64);  // needs no gradient
  Tensor y = cat({a, c, b}, 1);
  CHECK(y.dtype() == DType::f64);
  Tensor w = random({2, 6}, DType::f64);
  sum(mul(y, w)).backward();
  REQUIRE(a.grad().defined());
  CHECK(a.grad().dtype() == DType::f32);
  CHECK(b.grad().dtype() == DType::f64);
  th::check_close(a.grad(), w.narrow(1, 0, 3), 1e-6, 1e-6, "da");
  th::check_close(b.grad(), w.narrow(1, 4, 2), 0, 0, "db");
  CHECK(!c.grad().defined());
  {
    NoGrad ng;
    CHECK(!cat({a, b.to(DType::f32).narrow(1, 0, 1)}, 1).requires_grad());
  }
}

TEST_CASE("join ops reject bad inputs with messages naming the op and shapes", "[join]") {
  th::check_throws([] { cat({ones({2, 3}), ones({2, 4})}); }, {"cat: got shapes [2, 3] and [2, 4]", "dim 0"});
  th::check_throws([] { cat({ones({2, 3}), ones({2, 3, 1})}, 1); }, {"cat", "[2, 3]", "[2, 3, 1]", "number of dims"});
  th::check_throws([] { cat({}); }, {"cat", "empty list"});
  th::check_throws([] { cat({scalar_tensor(1), scalar_tensor(2)}); }, {"cat", "0-dim"});
  th::check_throws([] { cat({ones({2, 3}), ones({2, 3})}, 2); }, {"cat", "dim 2"});
  th::check_throws([] { stack({ones({2, 3}), ones({3, 2})}); }, {"stack", "[2, 3]", "[3, 2]"});
  th::check_throws([] { stack({}); }, {"stack", "empty list"});
  th::check_throws([] { stack({ones({2})}, 3); }, {"stack", "dim 3"});
  th::check_throws([] { split(ones({5, 2}), {2, 2}); }, {"split", "[2, 2]", "[5, 2]", "add up to 5"});
  th::check_throws([] { split(ones({5, 2}), {6, -1}); }, {"split", ">= 0"});
  th::check_throws([] { split(ones({5, 2}), 0); }, {"split", "split_size=0", "[5, 2]"});
  th::check_throws([] { split(scalar_tensor(1), 1); }, {"split", "0-dim"});
  th::check_throws([] { chunk(ones({5, 2}), 0); }, {"chunk", "chunks=0"});
  th::check_throws([] { unbind(ones({5, 2}), 2); }, {"unbind", "dim 2"});
}

}  // namespace test_join
