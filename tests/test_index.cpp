// Indexing ops: index_select, gather, scatter_add, index_add, one_hot, masked_fill against reference
// loops (strided data and strided index tensors, int32/int64 indices, empty tensors, several
// dtypes), the kernels' own reference loops, float64 gradchecks, and errors naming op and values.
#include "helpers.hpp"

namespace test_index {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
using th::random;

namespace {

/// Random indices in [0, hi) of `shape`; noncontig gives a permuted, strided view like th::random.
Tensor rand_index(const Shape& shape, int64_t hi, bool noncontig = false, DType dt = DType::i64) {
  if (!noncontig || shape.empty()) return randint(0, hi, shape).to(dt);
  Shape big(shape.rbegin(), shape.rend());
  big.back() *= 2;
  Tensor b = randint(0, hi, big).to(dt);
  std::vector<int64_t> perm(shape.size());
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = int64_t(perm.size() - 1 - i);
  return permute(slice(b, -1, 0, big.back(), 2), perm);
}

Tensor idx(const std::vector<int64_t>& v, Shape shape = {-1}) { return from_vector(v, std::move(shape)); }

std::string name(const char* op, DType dt, const Shape& s, int d) {
  return std::string(op) + " " + std::string(dtype_name(dt)) + " " + to_string(s) + " dim " + std::to_string(d);
}

const std::vector<DType> kData = {DType::f32, DType::f64, DType::bf16, DType::i64};

/// v rounded to dtype dt (the kernels add in float/double and round each partial sum once).
double round_to(DType dt, double v) {
  return dispatch_all(dt, "round_to", [&]<class T>(type_tag<T>) { return cast_value<double>(cast_value<T>(v)); });
}

}  // namespace

TEST_CASE("index_select matches the reference", "[index]") {
  const std::vector<Shape> shapes = {{7}, {4, 5}, {3, 4, 5}, {2, 0, 3}, {6, 1}, {300, 130}};
  for (DType dt : kData)
    for (const Shape& s : shapes)
      for (int d = 0; d < s.dim(); ++d)
        for (bool nc : {false, true}) {
          if (s[d] == 0) continue;
          Tensor x = random(s, DType::f64, nc, -50, 50).to(dt);
          for (int64_t n : {0, 1, 6}) {
            Tensor index = rand_index({n}, s[d], nc, nc ? DType::i32 : DType::i64);
            Tensor out = index_select(x, d, index);
            Shape want = s;
            want[d] = n;
            REQUIRE(out.shape() == want);
            CHECK(out.dtype() == dt);
            std::vector<double> ref;
            for (int64_t k = 0; k < out.numel(); ++k) {
              auto p = th::unravel(k, want);
              p[size_t(d)] = int64_t(th::at(index, {p[size_t(d)]}));
              ref.push_back(th::at(x, p));
            }
            th::check_close(th::values(out), ref, 0, 0, name("index_select", dt, s, d));
          }
        }
  // 0-dim index keeps the dim (size 1); 0-dim input stays 0-dim; negative dims; bool data
  Tensor x = th::make({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(th::values(index_select(x, 1, idx({2}, {}))) == std::vector<double>{3, 6});
  CHECK(index_select(x, -1, idx({2}, {})).shape() == Shape{2, 1});
  CHECK(index_select(scalar_tensor(4), 0, idx({0})).shape() == Shape{});
  CHECK(th::values(index_select(x.to(DType::b8), 0, idx({1, 1}))) == std::vector<double>{1, 1, 1, 1, 1, 1});
}

TEST_CASE("gather matches the reference", "[index]") {
  struct Case { Shape x, index; };
  const std::vector<Case> cases = {
      {{7}, {5}}, {{4, 5}, {4, 3}}, {{4, 5}, {2, 8}}, {{3, 4, 5}, {2, 4, 3}}, {{3, 4, 5}, {3, 0, 5}},
      {{2, 3}, {2, 1}}, {{3000, 10}, {3000, 1}},  // the last: many rows, split across threads
  };
  for (DType dt : kData)
    for (const Case& c : cases)
      for (int d = 0; d < c.x.dim(); ++d)
        for (bool nc : {false, true}) {
          Shape is = c.index;
          bool fits = true;
          for (int k = 0; k < is.dim(); ++k) fits = fits && (k == d || is[k] <= c.x[k]);
          if (!fits) continue;
          Tensor x = random(c.x, DType::f64, nc, -50, 50).to(dt);
          Tensor index = rand_index(is, c.x[d], nc, nc ? DType::i32 : DType::i64);
          Tensor out = gather(x, d, index);
          REQUIRE(out.shape() == is);
          std::vector<double> ref;
          for (int64_t k = 0; k < out.numel(); ++k) {
            auto p = th::unravel(k, is);
            const auto at_index = p;
            p[size_t(d)] = int64_t(th::at(index, at_index));
            ref.push_back(th::at(x, p));
          }
          th::check_close(th::values(out), ref, 0, 0, name("gather", dt, c.x, d));
        }
  CHECK(gather(scalar_tensor(3), 0, idx({0}, {})).shape() == Shape{});
  // the classic use: pick each row's target logit
  Tensor logits = th::make({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(th::values(gather(logits, 1, idx({2, 0}, {2, 1}))) == std::vector<double>{3, 4});
}

TEST_CASE("scatter_add and index_add match the reference, duplicates accumulate", "[index]") {
  struct Case { Shape x, index, src; };
  const std::vector<Case> cases = {
      {{7}, {12}, {12}}, {{4, 5}, {4, 3}, {4, 3}}, {{4, 5}, {3, 9}, {4, 9}}, {{3, 4, 5}, {2, 4, 3}, {2, 6, 3}},
      {{3, 4, 5}, {3, 0, 5}, {3, 1, 5}}, {{2000, 8}, {2000, 3}, {2000, 3}},
  };
  for (DType dt : kData)
    for (const Case& c : cases)
      for (int d = 0; d < c.x.dim(); ++d)
        for (bool nc : {false, true}) {
          bool fits = true;
          for (int k = 0; k < c.x.dim(); ++k)
            fits = fits && (k == d || c.index[k] <= c.x[k]) && c.index[k] <= c.src[k];
          if (!fits) continue;
          Tensor x = random(c.x, DType::f64, nc, -50, 50).to(dt);
          Tensor src = random(c.src, DType::f64, nc, -50, 50).to(dt);
          Tensor index = rand_index(c.index, c.x[d], nc, nc ? DType::i32 : DType::i64);
          Tensor out = scatter_add(x, d, index, src);
          REQUIRE(out.shape() == c.x);
          // reference in double, each partial sum rounded to dt in the kernel's order (increasing
          // position along dim for each output element), so the comparison is exact
          const std::vector<double> before = th::values(x);
          std::vector<double> ref = before;
          for (int64_t k = 0; k < index.numel(); ++k) {
            auto p = th::unravel(k, c.index);
            auto q = p;
            q[size_t(d)] = int64_t(th::at(index, p));
            int64_t off = 0;
            for (int j = 0; j < c.x.dim(); ++j) off = off * c.x[j] + q[size_t(j)];
            ref[size_t(off)] = round_to(dt, ref[size_t(off)] + th::at(src, p));
          }
          th::check_close(th::values(out), ref, 0, 0, name("scatter_add", dt, c.x, d));
          th::check_close(th::values(x), before, 0, 0, "scatter_add leaves x alone");
        }
  for (DType dt : kData)
    for (const Shape& s : std::vector<Shape>{{6}, {4, 5}, {3, 4, 2}, {300, 40}})
      for (int d = 0; d < s.dim(); ++d)
        for (bool nc : {false, true}) {
          Tensor x = random(s, DType::f64, nc, -50, 50).to(dt);
          for (int64_t n : {0, 1, 7}) {
            Shape ss = s;
            ss[d] = n;
            Tensor src = random(ss, DType::f64, nc, -50, 50).to(dt);
            Tensor index = rand_index({n}, s[d], nc, nc ? DType::i32 : DType::i64);
            Tensor out = index_add(x, d, index, src);
            std::vector<double> ref = th::values(x);
            for (int64_t k = 0; k < src.numel(); ++k) {
              auto p = th::unravel(k, ss);
              auto q = p;
              q[size_t(d)] = int64_t(th::at(index, {p[size_t(d)]}));
              int64_t off = 0;
              for (int j = 0; j < s.dim(); ++j) off = off * s[j] + q[size_t(j)];
              ref[size_t(off)] = round_to(dt, ref[size_t(off)] + th::at(src, p));
            }
            th::check_close(th::values(out), ref, 0, 0, name("index_add", dt, s, d));
          }
        }
  // exact duplicate handling
  Tensor z = zeros({4});
  CHECK(th::values(scatter_add(z, 0, idx({1, 1, 3, 1}), th::make({1, 2, 3, 4}, {4}))) ==
        std::vector<double>{0, 7, 0, 3});
  CHECK(th::values(index_add(z.view({4, 1}), 0, idx({2, 2}), th::make({5, 6}, {2, 1}))) ==
        std::vector<double>{0, 0, 11, 0});
}

TEST_CASE("gather and scatter_add kernels agree with their reference loops", "[index]") {
  Tensor x = random({5, 6, 7}, DType::f64);
  for (int d : {0, 1, 2}) {
    Tensor index = rand_index({4, 6, 7}, x.shape()[d], d == 1);
    Tensor out = gather(x, d, index);
    Tensor ref = zeros(index.shape(), {.dtype = DType::f64});
    cpu::IndexRefArgs a{3, d, index.shape().data(), ref.strides().data(), x.strides().data(),
                        index.strides().data(), x.shape()[d]};
    CHECK(!cpu::gather_ref<double, int64_t>(a, ref.data_ptr<double>(), x.data_ptr<double>(),
                                            index.data_ptr<int64_t>()).found);
    th::check_close(out, ref, 0, 0, "gather_ref");

    Tensor src = random({4, 6, 7}, DType::f64);
    Tensor sa = scatter_add(x, d, index, src);
    Tensor sref = x.clone();
    cpu::IndexRefArgs b{3, d, index.shape().data(), src.strides().data(), sref.strides().data(),
                        index.strides().data(), x.shape()[d]};
    CHECK(!cpu::scatter_add_ref<double, int64_t>(b, sref.data_ptr<double>(), src.data_ptr<double>(),
                                                 index.data_ptr<int64_t>()).found);
    th::check_close(sa, sref, 1e-12, 1e-12, "scatter_add_ref");
  }
  Tensor bad = idx({0, 9, 1});
  Tensor o = zeros({3}, {.dtype = DType::f64}), xs = zeros({4}, {.dtype = DType::f64});
  const int64_t shape[1] = {3}, one[1] = {1};
  cpu::IndexRefArgs a{1, 0, shape, one, one, one, 4};
  auto r = cpu::gather_ref<double, int64_t>(a, o.data_ptr<double>(), xs.data_ptr<double>(), bad.data_ptr<int64_t>());
  CHECK(r.found);
  CHECK(r.value == 9);
}

TEST_CASE("one_hot", "[index]") {
  Tensor l = idx({1, 0, 3, 1, 2, 0}, {2, 3});
  Tensor oh = one_hot(l);
  CHECK(oh.shape() == Shape{2, 3, 4});
  CHECK(oh.dtype() == DType::i64);
  for (int64_t k = 0; k < oh.numel(); ++k) {
    auto p = th::unravel(k, oh.shape());
    CHECK(th::at(oh, p) == double(th::at(l, {p[0], p[1]}) == double(p[2])));
  }
  CHECK(one_hot(l, 6).shape() == Shape{2, 3, 6});
  CHECK(th::values(one_hot(idx({2, 0}).to(DType::i32), 3)) == std::vector<double>{0, 0, 1, 1, 0, 0});
  Tensor t = l.t();  // strided labels
  CHECK(th::values(one_hot(t, 4)) == th::values(one_hot(t.contiguous(), 4)));
  CHECK(one_hot(empty({0}, {.dtype = DType::i64}), 5).shape() == Shape{0, 5});
  CHECK(one_hot(idx({2}, {}), 3).shape() == Shape{3});
  th::check_throws([&] { one_hot(l, 3); }, {"one_hot", "[0, 3]", "num_classes=3"});
  th::check_throws([] { one_hot(idx({1, -1})); }, {"one_hot", "-1"});
  th::check_throws([] { one_hot(empty({0}, {.dtype = DType::i64})); }, {"one_hot", "[0]", "num_classes=-1"});
  th::check_throws([] { one_hot(ones({3})); }, {"one_hot", "float32", "int64"});
}

TEST_CASE("masked_fill", "[index]") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i64})
    for (bool nc : {false, true}) {
      Tensor x = random({3, 4}, DType::f64, nc, -9, 9).to(dt);
      Tensor mask = gt(random({4}, DType::f32, nc), 0.0);  // broadcast over rows
      Tensor out = masked_fill(x, mask, 7.0);
      CHECK(out.dtype() == dt);
      REQUIRE(out.shape() == Shape{3, 4});
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j)
          CHECK(th::at(out, {i, j}) == (th::at(mask, {j}) ? 7.0 : th::at(x, {i, j})));
    }
  CHECK(masked_fill(ones({3}), th::make({1, 0}, {2, 1}, DType::b8), 0.0).shape() == Shape{2, 3});
  CHECK(masked_fill(ones({0, 3}), ones({3}, {.dtype = DType::b8}), 0.0).shape() == Shape{0, 3});
  th::check_throws([] { masked_fill(ones({3}), ones({3}), 0.0); }, {"masked_fill", "float32", "bool"});
  th::check_throws([] { masked_fill(ones({3}), ones({2}, {.dtype = DType::b8}), 0.0); },
                   {"masked_fill", "[3]", "[2]"});
}

TEST_CASE("indexing ops pass gradcheck", "[index]") {
  const Tensor dup = idx({2, 0, 2, 1, 2});
  th::gradcheck_ok([&](const std::vector<Tensor>& v) { return index_select(v[0], 1, dup); },
                   {random({2, 3, 2}, DType::f32, true)});
  th::gradcheck_ok([&](const std::vector<Tensor>& v) { return index_select(v[0], 0, dup.to(DType::i32)); },
                   {random({3, 2})});
  const Tensor gi = rand_index({3, 4}, 3, true);  // [3, 4] of values < 3: duplicates along dim 1
  th::gradcheck_ok([&](const std::vector<Tensor>& v) { return gather(v[0], 1, gi); },
                   {random({3, 3}, DType::f32, true)});
  const Tensor gi0 = rand_index({2, 2}, 4);
  th::gradcheck_ok([&](const std::vector<Tensor>& v) { return gather(v[0], 0, gi0); }, {random({4, 3})});
  const Tensor si = rand_index({2, 3}, 4);
  th::gradcheck_ok([&](const std::vector<Tensor>& v) { return scatter_add(v[0], 1, si, v[1]); },
                   {random({3, 4}, DType::f32, true), random({2, 5}, DType::f32, true)});  // src larger than index
  th::gradcheck_ok([&](const std::vector<Tensor>& v) { return scatter_add(v[0], 0, si, v[1]); },
                   {random({4, 3}), random({2, 3})});
  th::gradcheck_ok([&](const std::vector<Tensor>& v) { return index_add(v[0], 1, dup, v[1]); },
                   {random({2, 3}, DType::f32, true), random({2, 5})});
  const Tensor mask = th::make({1, 0, 0, 1}, {4}, DType::b8);
  th::gradcheck_ok([&](const std::vector<Tensor>& v) { return masked_fill(v[0], mask, -1.0); },
                   {random({3, 4}, DType::f32, true)});
  const Tensor mask2 = th::make({1, 0, 0, 1, 0, 1, 1, 0}, {2, 4}, DType::b8);
  th::gradcheck_ok([&](const std::vector<Tensor>& v) { return masked_fill(v[0], mask2, 2.0); },  // x broadcast
                   {random({1, 4})});
  // bf16 data: the gradient arrives in the input's dtype
  Tensor w = random({4, 3}, DType::bf16).requires_grad_();
  sum(index_select(w, 0, dup.narrow(0, 0, 3))).backward();
  CHECK(w.grad().dtype() == DType::bf16);
  CHECK(th::values(w.grad()) == std::vector<double>{1, 1, 1, 0, 0, 0, 2, 2, 2, 0, 0, 0});
}

TEST_CASE("indexing ops reject bad inputs with messages naming the op and values", "[index]") {
  Tensor x = ones({3, 4});
  th::check_throws([&] { index_select(x, 1, idx({0, 4})); }, {"index_select", "index 4", "size 4", "[3, 4]"});
  th::check_throws([&] { index_select(x, 0, idx({-1})); }, {"index_select", "index -1", "size 3"});
  th::check_throws([&] { index_select(x, 0, idx({0, 1}, {1, 2})); }, {"index_select", "[1, 2]", "1-D"});
  th::check_throws([&] { index_select(x, 0, ones({2})); }, {"index_select", "float32", "int64"});
  th::check_throws([&] { index_select(x, 2, idx({0})); }, {"index_select", "dim 2"});
  th::check_throws([&] { gather(x, 1, idx({0, 7, 1, 2}, {2, 2})); }, {"gather", "index 7", "size 4", "[3, 4]"});
  th::check_throws([&] { gather(x, 0, idx({0, 1}, {2})); }, {"gather", "[3, 4]", "[2]", "number of dims"});
  th::check_throws([&] { gather(x, 0, idx({0, 1, 0, 1, 0}, {1, 5})); }, {"gather", "[3, 4]", "[1, 5]", "index.size(1)"});
  th::check_throws([&] { scatter_add(x, 1, idx({5}, {1, 1}), ones({1, 1})); }, {"scatter_add", "index 5", "size 4"});
  th::check_throws([&] { scatter_add(x, 1, idx({0, 1}, {1, 2}), ones({1, 1})); }, {"scatter_add", "[1, 2]", "[1, 1]"});
  th::check_throws([&] { scatter_add(x, 1, idx({0}, {1, 1}), ones({1, 1}, {.dtype = DType::f64})); },
                   {"scatter_add", "float64", "float32"});
  th::check_throws([&] { scatter_add(x.to(DType::b8), 1, idx({0}, {1, 1}), ones({1, 1}, {.dtype = DType::b8})); },
                   {"scatter_add", "bool"});
  th::check_throws([&] { index_add(x, 0, idx({0, 3}), ones({2, 4})); }, {"index_add", "index 3", "size 3"});
  th::check_throws([&] { index_add(x, 0, idx({0, 1}), ones({2, 3})); }, {"index_add", "[2, 3]", "[2, 4]"});
}

TEST_CASE("large gathers and scatters split across threads match the reference", "[index]") {
  // enough positions (> cpu::kIndexGrain) that the kernels run in several chunks
  Tensor x = random({40000, 4}, DType::f32, true);
  Tensor gi = rand_index({40000, 2}, 4, true);
  Tensor g = gather(x, 1, gi);
  std::vector<double> ref;
  for (int64_t i = 0; i < 40000; ++i)
    for (int64_t j = 0; j < 2; ++j) ref.push_back(th::at(x, {i, int64_t(th::at(gi, {i, j}))}));
  th::check_close(th::values(g), ref, 0, 0, "large gather");

  // scatter with many duplicates per row: threads own whole rows, so no lost updates
  Tensor src = random({40000, 6}, DType::f64);
  Tensor si = rand_index({40000, 6}, 3);
  Tensor s = scatter_add(zeros({40000, 3}, {.dtype = DType::f64}), 1, si, src);
  std::vector<double> sref(40000 * 3, 0.0);
  for (int64_t i = 0; i < 40000; ++i)
    for (int64_t j = 0; j < 6; ++j) sref[size_t(i * 3 + int64_t(th::at(si, {i, j})))] += th::at(src, {i, j});
  th::check_close(th::values(s), sref, 1e-12, 1e-12, "large scatter_add");

  // embedding-like: few columns, many indices; index_add is the embedding backward
  Tensor table = random({50, 64});
  Tensor ids = rand_index({3000}, 50);
  Tensor e = index_select(table, 0, ids);
  Tensor back = index_add(zeros({50, 64}), 0, ids, e);
  std::vector<double> eref, bref(50 * 64, 0.0);
  for (int64_t k = 0; k < 3000; ++k)
    for (int64_t c = 0; c < 64; ++c) {
      const int64_t r = int64_t(th::at(ids, {k}));
      eref.push_back(th::at(table, {r, c}));
      bref[size_t(r * 64 + c)] = double(float(bref[size_t(r * 64 + c)] + th::at(table, {r, c})));
    }
  th::check_close(th::values(e), eref, 0, 0, "large index_select");
  th::check_close(th::values(back), bref, 0, 0, "large index_add");
}

}  // namespace test_index
