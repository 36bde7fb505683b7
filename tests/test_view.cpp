// Views share storage, follow PyTorch's shape rules, copy only where PyTorch does (reshape of a
// non-viewable layout), and pass gradients back to the input's shape.
#include "helpers.hpp"

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
