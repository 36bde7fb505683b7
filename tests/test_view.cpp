// Views share storage, follow PyTorch's shape rules, copy only where PyTorch does (reshape of a
// non-viewable layout), and pass gradients back to the input's shape.
#include <algorithm>
#include <numeric>
#include <random>

#include "helpers.hpp"

namespace test_view {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

TEST_CASE("views share storage and index like the reference", "[view]") {
  Tensor x = arange(24).to(DType::f32).view({2, 3, 4});
  CHECK(x.is_contiguous());
  CHECK(x.view({6, -1}).shape() == Shape{6, 4});
  CHECK(x.view({-1}).storage() == x.storage());

  Tensor p = x.permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(!p.is_contiguous());
  CHECK(p.storage() == x.storage());
  for (int64_t n = 0; n < 24; ++n) {
    auto i = th::unravel(n, p.shape());
    CHECK(th::at(p, i) == th::at(x, {i[1], i[2], i[0]}));
  }
  Tensor t = x.transpose(0, 2);
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(th::at(t, {3, 1, 0}) == th::at(x, {0, 1, 3}));

  Tensor n = x.narrow(2, 1, 2);
  CHECK(n.shape() == Shape{2, 3, 2});
  CHECK(th::at(n, {1, 2, 1}) == th::at(x, {1, 2, 2}));
  Tensor s = x.slice(2, 0, 4, 3);  // indices 0 and 3
  CHECK(s.shape() == Shape{2, 3, 2});
  CHECK(th::at(s, {0, 1, 1}) == th::at(x, {0, 1, 3}));
  CHECK(x.slice(1, -2, 100).shape() == Shape{2, 2, 4});  // python-style clamping
  CHECK(x.slice(1, 2, 1).shape() == Shape{2, 0, 4});
  Tensor sel = x.select(1, -1);
  CHECK(sel.shape() == Shape{2, 4});
  CHECK(th::at(sel, {1, 2}) == th::at(x, {1, 2, 2}));

  Tensor e = th::make({1, 2, 3}, {3, 1}).expand({2, 3, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides() == Strides{0, 1, 0});
  CHECK(th::at(e, {1, 2, 3}) == 3);
  CHECK(th::make({5}, {1}).expand({3, -1}).shape() == Shape{3, 1});

  Tensor u = x.unsqueeze(-1).unsqueeze(0);
  CHECK(u.shape() == Shape{1, 2, 3, 4, 1});
  CHECK(u.squeeze().shape() == Shape{2, 3, 4});
  CHECK(u.squeeze(0).shape() == Shape{2, 3, 4, 1});
  CHECK(u.squeeze(1).shape() == Shape{1, 2, 3, 4, 1});
  CHECK(x.flatten().shape() == Shape{24});
  CHECK(x.flatten(1).shape() == Shape{2, 12});
  CHECK(x.flatten(0, 1).shape() == Shape{6, 4});
  CHECK(scalar_tensor(3).flatten().shape() == Shape{1});
  CHECK(ones({2, 3}).t().shape() == Shape{3, 2});
}

TEST_CASE("view follows PyTorch's stride rule, reshape copies when it must", "[view]") {
  Tensor x = arange(24).view({2, 3, 4});
  Tensor p = x.permute({1, 0, 2});  // [3, 2, 4], last dim still contiguous
  th::check_throws([&] { p.view({3, 8}); }, {"view", "[3, 8]"});  // dims 1, 2 are not adjacent in memory
  CHECK(p.view({3, 2, 2, 2}).storage() == x.storage());
  th::check_throws([&] { p.view({6, 4}); }, {"view", "[3, 2, 4]", "reshape"});
  Tensor r = p.reshape({6, 4});
  CHECK(r.storage() != x.storage());
  for (int64_t n = 0; n < 24; ++n) CHECK(th::values(r)[size_t(n)] == th::values(p)[size_t(n)]);
  CHECK(x.reshape({4, 6}).storage() == x.storage());
  Tensor c = p.contiguous();
  CHECK(c.is_contiguous());
  CHECK(th::values(c) == th::values(p));
  CHECK(x.contiguous().is_same(x));
  Tensor empty = zeros({0, 3});
  CHECK(empty.view({3, 0}).shape() == Shape{3, 0});
  CHECK(empty.reshape({-1, 3}).shape() == Shape{0, 3});
}

TEST_CASE("bad view arguments name the op and the shape", "[view]") {
  Tensor x = zeros({2, 3});
  th::check_throws([&] { x.view({4, 2}); }, {"view", "[4, 2]", "6 elements"});
  th::check_throws([&] { x.view({-1, -1}); }, {"view", "-1"});
  th::check_throws([&] { x.permute({0}); }, {"permute", "[2, 3]"});
  th::check_throws([&] { x.permute({0, 0}); }, {"permute", "twice"});
  th::check_throws([&] { x.transpose(0, 2); }, {"transpose", "dim 2", "2 dims"});
  th::check_throws([&] { x.narrow(1, 2, 2); }, {"narrow", "[2, 3]"});
  th::check_throws([&] { x.select(0, 2); }, {"select", "index 2", "[2, 3]"});
  th::check_throws([&] { x.expand({4, 3, 2}); }, {"expand", "[2, 3]", "[4, 3, 2]"});
  th::check_throws([&] { x.unsqueeze(3); }, {"unsqueeze", "dim 3"});
  th::check_throws([&] { x.flatten(1, 0); }, {"flatten"});
  th::check_throws([&] { x.slice(0, 0, 1, 0); }, {"slice", "step"});
  th::check_throws([&] { x.size(2); }, {"size", "dim 2"});
  Tensor s = scalar_tensor(3);  // a 0-dim tensor has no dim to index
  th::check_throws([&] { s.size(0); }, {"size", "0-dim"});
  th::check_throws([&] { s.stride(0); }, {"stride", "0-dim"});
  th::check_throws([&] { s.narrow(0, 0, 1); }, {"narrow", "0-dim"});
  th::check_throws([&] { s.slice(0, 0, 1); }, {"slice", "0-dim"});
  th::check_throws([&] { s.select(0, 0); }, {"select", "0-dim"});
  th::check_throws([&] { split(s, 1); }, {"split", "0-dim"});
  CHECK(s.transpose(0, -1).dim() == 0);  // as in PyTorch
  CHECK(s.unsqueeze(0).shape() == Shape{1});
}

TEST_CASE("gradcheck through every view", "[view][grad]") {
  using V = std::vector<Tensor>;
  Tensor x = th::random({2, 3, 4}, DType::f64, true);
  th::gradcheck_ok([](const V& v) { return v[0].view({6, 4}) * th::make({1, 2, 3, 4}, {4}, DType::f64); }, {x.contiguous()});
  th::gradcheck_ok([](const V& v) { return v[0].reshape({4, 6}); }, {x});
  th::gradcheck_ok([](const V& v) { return v[0].permute({2, 0, 1}).narrow(0, 1, 2); }, {x});
  th::gradcheck_ok([](const V& v) { return v[0].transpose(0, 1).select(2, 3); }, {x});
  th::gradcheck_ok([](const V& v) { return v[0].slice(2, 1, 4, 2) * 3.0; }, {x});
  Tensor w = th::random({5, 3, 4}, DType::f64);
  th::gradcheck_ok([w](const V& v) { return v[0].expand({5, 3, 4}) * w; }, {th::random({3, 1}, DType::f64)});
  th::gradcheck_ok([](const V& v) { return v[0].unsqueeze(1).squeeze().flatten(); }, {x});
  th::gradcheck_ok([](const V& v) { return v[0].contiguous().clone(); }, {x});
}

namespace {

using Index = std::vector<int64_t>;

/// Random input of `shape` and `dt` (bool gets a mix of true and false), laid out as th::random does.
Tensor view_input(const Shape& shape, DType dt, bool nc) {
  Tensor x = th::random(shape, dt, nc, -100, 100);
  if (dt == DType::b8) copy_(x, gt(th::random(shape), 0.0));  // writes through the strided view
  return x;
}

/// out[i] == x[map(i)] for every i, out.shape() == want; `shares`: out must be a view of x.
template <class Map>
void check_view(const Tensor& out, const Tensor& x, const Shape& want, Map map, const std::string& what,
                bool shares = true) {
  INFO(what << ": input " << x.shape() << " strides " << x.strides() << " " << x.dtype() << ", got " << out.shape());
  REQUIRE(out.shape() == want);
  CHECK(out.dtype() == x.dtype());
  if (shares && x.numel() > 0) CHECK(out.storage() == x.storage());
  for (int64_t n = 0; n < numel(want); ++n) {
    const Index i = th::unravel(n, want);
    if (th::at(out, i) != th::at(x, map(i))) {
      FAIL_CHECK("element " << n << " differs");
      return;
    }
  }
}

/// The row-major linear position of index i in `shape`.
int64_t ravel(const Index& i, const Shape& shape) {
  int64_t n = 0;
  for (size_t d = 0; d < i.size(); ++d) n = n * shape[d] + i[d];
  return n;
}

}  // namespace

TEST_CASE("every view matches a reference loop on random shapes, dtypes and layouts", "[view]") {
  std::mt19937 rng(7);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const std::vector<Shape> shapes = {{},        {5},          {1},       {0},          {3, 4},    {1, 5},
                                     {4, 0},    {2, 1, 3},    {3, 4, 2}, {1, 3, 1, 2}, {2, 0, 3}, {2, 3, 1, 4}};
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i64, DType::b8})
    for (const Shape& shape : shapes)
      for (bool nc : {false, true}) {
        const Tensor x = view_input(shape, dt, nc);
        const Shape xs = x.shape();
        const int nd = x.dim();
        const std::string tag = std::string(dtype_name(dt)) + " " + to_string(shape) + (nc ? " strided" : "");
        auto flat = [&](const Shape& out_shape) {  // row-major order kept: out[i] = x[unravel(ravel(i))]
          return [&xs, out_shape](const Index& i) { return th::unravel(ravel(i, out_shape), xs); };
        };

        // view / reshape with -1: split the dims at k into [prod(left), prod(right)]
        const int k = int(pick(0, nd));
        int64_t left = 1, right = 1;
        for (int d = 0; d < nd; ++d) (d < k ? left : right) *= xs[d];
        const Shape req = right != 0 ? Shape{-1, right} : left != 0 ? Shape{left, -1} : Shape{left, right};
        const Shape want2{left, right};
        check_view(x.reshape(req), x, want2, flat(want2), "reshape " + to_string(req) + " " + tag, x.is_contiguous());
        check_view(x.reshape({-1}), x, {x.numel()}, flat({x.numel()}), "reshape [-1] " + tag, x.is_contiguous());
        if (x.is_contiguous()) check_view(x.view(req), x, want2, flat(want2), "view " + tag);
        try {  // a strided input may or may not be viewable; when it is, the view must be right
          Tensor v = x.view(req);
          check_view(v, x, want2, flat(want2), "view of strided " + tag);
        } catch (const Error& e) {
          CHECK(std::string(e.what()).find("view") != std::string::npos);
        }

        // permute with a random permutation, and its inverse mapping
        std::vector<int64_t> perm(static_cast<size_t>(nd));
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        Shape ps(static_cast<size_t>(nd));
        for (int d = 0; d < nd; ++d) ps[d] = xs[perm[d]];
        check_view(x.permute(perm), x, ps, [&](const Index& i) {
          Index j(static_cast<size_t>(nd));
          for (int d = 0; d < nd; ++d) j[perm[d]] = i[d];
          return j;
        }, "permute " + tag);
        check_view(x.contiguous(), x, xs, [](const Index& i) { return i; }, "contiguous " + tag, x.is_contiguous());
        CHECK(x.contiguous().is_contiguous());
        if (nd <= 2)
          check_view(x.t(), x, Shape(xs.rbegin(), xs.rend()), [](const Index& i) { return Index(i.rbegin(), i.rend()); },
                     "t " + tag);

        // expand: a new leading dim of 2, size-1 dims to 3, the rest kept with -1
        Shape es{2}, ereq{2};
        for (int d = 0; d < nd; ++d) {
          es.push_back(xs[d] == 1 ? 3 : xs[d]);
          ereq.push_back(xs[d] == 1 ? 3 : -1);
        }
        check_view(x.expand(ereq), x, es, [&](const Index& i) {
          Index j(i.begin() + 1, i.end());
          for (int d = 0; d < nd; ++d) if (xs[d] == 1) j[d] = 0;
          return j;
        }, "expand " + to_string(ereq) + " " + tag);

        // squeeze (all, and one dim), unsqueeze (negative dim)
        Shape sq;
        for (int d = 0; d < nd; ++d) if (xs[d] != 1) sq.push_back(xs[d]);
        auto unsq = [&](const Index& i) {  // put the removed size-1 dims back as 0
          Index j;
          size_t s = 0;
          for (int d = 0; d < nd; ++d) j.push_back(xs[d] == 1 ? 0 : i[s++]);
          return j;
        };
        check_view(x.squeeze(), x, sq, unsq, "squeeze " + tag);
        const int u = int(pick(-nd - 1, nd));
        const int uw = u < 0 ? u + nd + 1 : u;
        Shape us = xs;
        us.insert(us.begin() + uw, 1);
        check_view(x.unsqueeze(u), x, us, [&](const Index& i) {
          Index j = i;
          j.erase(j.begin() + uw);
          return j;
        }, "unsqueeze " + std::to_string(u) + " " + tag);

        // flatten a random range
        if (nd == 0) {
          check_view(x.flatten(), x, {1}, [](const Index&) { return Index{}; }, "flatten 0-dim " + tag, false);
          continue;
        }
        const int fa = int(pick(0, nd - 1)), fb = int(pick(fa, nd - 1));
        Shape fs(xs.begin(), xs.begin() + fa);
        fs.push_back(std::accumulate(xs.begin() + fa, xs.begin() + fb + 1, int64_t(1), std::multiplies<>()));
        fs.insert(fs.end(), xs.begin() + fb + 1, xs.end());
        check_view(x.flatten(fa, fb - nd), x, fs, flat(fs), "flatten " + std::to_string(fa) + ".." + std::to_string(fb) + " " + tag,
                   x.is_contiguous());

        // dims that need one: transpose, narrow, slice, select, squeeze(dim)
        const int d = int(pick(0, nd - 1)), d2 = int(pick(0, nd - 1));
        const int64_t size = xs[d];
        Shape ts = xs;
        std::swap(ts[d], ts[d2]);
        check_view(x.transpose(d - nd, d2), x, ts, [&](const Index& i) {
          Index j = i;
          std::swap(j[d], j[d2]);
          return j;
        }, "transpose " + tag);
        Shape sq1 = xs;
        if (size == 1) sq1.erase(sq1.begin() + d);
        check_view(x.squeeze(d), x, sq1, [&](const Index& i) {
          Index j = i;
          if (size == 1) j.insert(j.begin() + d, 0);
          return j;
        }, "squeeze(" + std::to_string(d) + ") " + tag);

        const int64_t start = pick(0, size), len = pick(0, size - start);
        const int64_t nstart = size > 0 && pick(0, 1) ? start - size : start;  // negative start counts from the end
        Shape ns = xs;
        ns[d] = len;
        check_view(x.narrow(d, nstart, len), x, ns, [&](const Index& i) {
          Index j = i;
          j[d] += start;
          return j;
        }, "narrow " + std::to_string(nstart) + " " + std::to_string(len) + " " + tag);

        // slice: Python semantics spelled out as the list of picked indices
        const int64_t s0 = pick(-size - 2, size + 2), s1 = pick(-size - 2, size + 2), step = pick(1, 3);
        auto py = [size](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + size : v, 0, size); };
        std::vector<int64_t> picked;
        for (int64_t v = py(s0); v < py(s1); v += step) picked.push_back(v);
        Shape ss = xs;
        ss[d] = int64_t(picked.size());
        check_view(x.slice(d, s0, s1, step), x, ss, [&](const Index& i) {
          Index j = i;
          j[d] = picked[size_t(i[d])];
          return j;
        }, "slice " + std::to_string(s0) + ":" + std::to_string(s1) + ":" + std::to_string(step) + " " + tag);

        if (size > 0) {
          const int64_t idx = pick(-size, size - 1);
          Shape sel = xs;
          sel.erase(sel.begin() + d);
          check_view(x.select(d, idx), x, sel, [&](const Index& i) {
            Index j = i;
            j.insert(j.begin() + d, idx < 0 ? idx + size : idx);
            return j;
          }, "select " + std::to_string(idx) + " " + tag);
        }
      }
}

TEST_CASE("gradcheck of views on random non-contiguous inputs", "[view][grad]") {
  using V = std::vector<Tensor>;
  std::mt19937 rng(11);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (const Shape& shape : std::vector<Shape>{{3, 4}, {2, 1, 3}, {2, 3, 2}, {1, 4, 1, 2}}) {
    const Tensor x = th::random(shape, DType::f64, true);
    REQUIRE(!x.is_contiguous());
    INFO("shape " << shape);
    const int nd = x.dim();
    const int d = int(pick(0, nd - 1)), d2 = int(pick(0, nd - 1));
    const int64_t size = shape[d];
    std::vector<int64_t> perm(static_cast<size_t>(nd));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    Shape ereq{2};
    for (int64_t s : shape) ereq.push_back(s == 1 ? 3 : -1);
    const int64_t start = pick(0, size - 1), len = pick(1, size - start), step = pick(1, 3), idx = pick(-size, size - 1);
    th::gradcheck_ok([](const V& v) { return v[0].reshape({-1}); }, {x});
    th::gradcheck_ok([](const V& v) { return v[0].reshape({2, -1}); }, {x});
    th::gradcheck_ok([perm](const V& v) { return v[0].permute(perm); }, {x});
    th::gradcheck_ok([d, d2](const V& v) { return v[0].transpose(d, d2); }, {x});
    th::gradcheck_ok([d, start, len](const V& v) { return v[0].narrow(d, start, len); }, {x});
    th::gradcheck_ok([d, start, size, step](const V& v) { return v[0].slice(d, start - size, 100, step); }, {x});
    th::gradcheck_ok([d, idx](const V& v) { return v[0].select(d, idx); }, {x});
    th::gradcheck_ok([ereq](const V& v) { return v[0].expand(ereq); }, {x});
    th::gradcheck_ok([](const V& v) { return v[0].squeeze().unsqueeze(-1); }, {x});
    th::gradcheck_ok([d](const V& v) { return v[0].flatten(d); }, {x});
    th::gradcheck_ok([](const V& v) { return v[0].contiguous(); }, {x});
    // a chain of views on a view: the gradient lands in the right elements of the strided leaf
    th::gradcheck_ok([perm, d](const V& v) { return v[0].permute(perm).flatten(0, -1).slice(0, 1, 100, 2) * 2.0; }, {x});
  }
  th::gradcheck_ok([](const V& v) { return v[0].t(); }, {th::random({3, 4}, DType::f64, true)});
}

TEST_CASE("contiguous(channels_last) lays out [B, C, H, W] as [B, H, W, C], same values", "[view][layout]") {
  const auto cl = MemoryFormat::channels_last;
  for (bool noncontig : {false, true}) {
    Tensor x = th::random({2, 3, 4, 5}, DType::f32, noncontig);
    Tensor y = x.contiguous(cl);
    CHECK(y.strides() == Strides{60, 1, 15, 3});
    CHECK(y.is_contiguous(cl));
    CHECK(is_contiguous(y, cl));
    CHECK(!y.is_contiguous());
    CHECK(y.contiguous(cl).is_same(y));  // already channels-last: no copy
    th::check_close(y, x, 0, 0, "channels_last copy");
    Tensor z = y.contiguous(MemoryFormat::contiguous);
    CHECK(z.is_contiguous());
    th::check_close(z, x, 0, 0, "back to contiguous");
    // the [B, H, W, C] permutation of a channels-last tensor is a plain contiguous tensor
    CHECK(y.permute({0, 2, 3, 1}).is_contiguous());
  }
  // size-1 dims do not matter, as in PyTorch: [B, 1, H, W] and [B, C, 1, 1] are both layouts at once
  CHECK(zeros({2, 1, 3, 3}).is_contiguous(MemoryFormat::channels_last));
  CHECK(zeros({2, 5, 1, 1}).is_contiguous(MemoryFormat::channels_last));
  CHECK(!zeros({2, 5, 3, 1}).is_contiguous(MemoryFormat::channels_last));
  CHECK(!zeros({2, 5, 3}).is_contiguous(MemoryFormat::channels_last));
  CHECK(zeros({0, 5, 3, 3}).contiguous(MemoryFormat::channels_last).numel() == 0);
  // ...but contiguous(channels_last) gives the size-1 dims channels-last strides (a view, no copy),
  // so a 1-channel image batch reaches the convs as channels-last (conv2d_channels_last reads strides)
  {
    Tensor g = th::random({2, 1, 3, 4}, DType::f64, false).requires_grad_();
    Tensor v = g.contiguous(MemoryFormat::channels_last);
    CHECK(v.strides() == Strides{12, 1, 4, 1});
    CHECK(v.data_ptr<double>() == g.data_ptr<double>());
    CHECK(v.is_contiguous());
    CHECK(conv2d_channels_last(v));
    CHECK(!conv2d_channels_last(g));
    CHECK(v.contiguous(MemoryFormat::channels_last).is_same(v));
    th::check_close(v, g, 0, 0, "restrided view");
    th::gradcheck_ok([](const std::vector<Tensor>& in) { return mul(in[0].contiguous(MemoryFormat::channels_last), in[0]); },
                     {g});
    Tensor hw1 = zeros({2, 5, 1, 1}).contiguous(MemoryFormat::channels_last);
    CHECK(hw1.strides() == Strides{5, 1, 5, 5});
  }
  Tensor e = Tensor::empty({2, 3, 4, 5}, DType::f64, kCPU, MemoryFormat::channels_last);
  CHECK(e.strides() == Strides{60, 1, 15, 3});
  th::check_throws([] { zeros({2, 3, 4}).contiguous(MemoryFormat::channels_last); },
                   {"contiguous", "[2, 3, 4]", "4 dims"});
  th::check_throws([] { Tensor::empty({2, 3}, DType::f32, kCPU, MemoryFormat::channels_last); },
                   {"empty", "4 dims"});
  th::gradcheck_ok([](const std::vector<Tensor>& in) { return mul(in[0].contiguous(MemoryFormat::channels_last), in[0]); },
                   {th::random({2, 3, 2, 3}, DType::f64, true)});
}

}  // namespace test_view
