// The autograd engine: accumulation across uses and calls, NoGrad, detach, hooks, retain_grad,
// explicit output gradients, mixed dtypes, deep graphs, and its error messages.
#include "helpers.hpp"

namespace test_autograd {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

TEST_CASE("gradients accumulate over uses, paths and calls", "[autograd]") {
  Tensor x = th::make({1, 2, 3}, {3}).requires_grad_();
  Tensor y = x * x + x * 3.0;  // dy/dx = 2x + 3, x used three times
  y.sum().backward();
  CHECK(th::values(x.grad()) == std::vector<double>{5, 7, 9});
  (x * 2.0).sum().backward();  // a second backward adds
  CHECK(th::values(x.grad()) == std::vector<double>{7, 9, 11});
  x.grad().zero_();
  Tensor a = x.exp(), b = a * a;  // diamond: b = e^{2x}, db/dx = 2 e^{2x}
  (a + b).sum().backward();
  auto xv = th::values(x), g = th::values(x.grad());
  for (size_t i = 0; i < 3; ++i) CHECK(g[i] == Approx(std::exp(xv[i]) + 2 * std::exp(2 * xv[i])).epsilon(1e-5));
  CHECK(x.is_leaf());
  CHECK(!y.is_leaf());
  CHECK(y.grad_fn()->name == "add_backward");
}

TEST_CASE("backward of a non-scalar needs a gradient of its shape", "[autograd]") {
  Tensor x = th::make({1, 2}, {2}).requires_grad_();
  Tensor y = x * 3.0;
  th::check_throws([&] { y.backward(); }, {"backward", "[2]", "explicit gradient"});
  th::check_throws([&] { y.backward(ones({3})); }, {"backward", "[3]", "[2]"});
  y.backward(th::make({1, 10}, {2}));
  CHECK(th::values(x.grad()) == std::vector<double>{3, 30});
  th::check_throws([&] { ones({1}).backward(); }, {"backward", "does not require grad"});
  th::check_throws([&] { arange(3).requires_grad_(); }, {"requires_grad_", "int64"});
}

TEST_CASE("NoGrad, detach and requires_grad decide what is recorded", "[autograd]") {
  Tensor w = ones({2}).requires_grad_();
  {
    NoGrad guard;
    Tensor y = w * 2.0;
    CHECK(!y.requires_grad());
    CHECK(!is_grad_enabled());
    {
      EnableGrad on;
      CHECK((w * 2.0).requires_grad());
    }
  }
  CHECK(is_grad_enabled());
  Tensor d = w.detach();
  CHECK(!d.requires_grad());
  CHECK(d.storage() == w.storage());
  Tensor c = ones({2});
  Tensor y = (w * c + d).sum();
  y.backward();
  CHECK(th::values(w.grad()) == std::vector<double>{1, 1});
  CHECK(!c.grad().defined());
}

TEST_CASE("hooks see and may replace gradients; retain_grad keeps non-leaf ones", "[autograd]") {
  Tensor x = th::make({1, 2}, {2}).requires_grad_();
  std::vector<double> seen;
  Tensor h = x * 2.0;
  h.retain_grad();
  h.register_hook([&](const Tensor& g) {
    seen = th::values(g);
    return g * 10.0;  // replaces the gradient flowing on
  });
  x.register_hook([](const Tensor& g) { return g + 1.0; });
  (h * 3.0).sum().backward();
  CHECK(seen == std::vector<double>{3, 3});
  CHECK(th::values(h.grad()) == std::vector<double>{30, 30});  // retained after the hook, as PyTorch
  CHECK(th::values(x.grad()) == std::vector<double>{61, 61});  // 3 * 10 * 2 + 1
}

TEST_CASE("gradients of a leaf keep its dtype; mixed-dtype graphs work", "[autograd]") {
  Tensor x = th::make({1, 2, 3}, {3}, DType::f64).requires_grad_();
  Tensor y = (x.to(DType::f32) * ones({3})).sum();
  CHECK(y.dtype() == DType::f32);
  y.backward();
  CHECK(x.grad().dtype() == DType::f64);
  CHECK(th::values(x.grad()) == std::vector<double>{1, 1, 1});
  Tensor h = th::make({1, 2}, {2}, DType::bf16).requires_grad_();
  (h * h).sum().backward();
  CHECK(h.grad().dtype() == DType::bf16);
  CHECK(th::values(h.grad()) == std::vector<double>{2, 4});
}

TEST_CASE("a saved tensor changed in place makes backward throw instead of lying", "[autograd]") {
  Tensor x = th::make({1, 2}, {2}).requires_grad_();
  Tensor y = x.exp();  // saves y
  {
    NoGrad guard;
    y.mul_(2.0);
  }
  th::check_throws([&] { y.sum().backward(); }, {"changed in place", "exp_backward", "[2]"});
  Tensor idx = from_vector(std::vector<int64_t>{0, 1});
  Tensor z = index_select(x, 0, idx);  // saves idx
  idx.fill_(1);
  th::check_throws([&] { z.sum().backward(); }, {"changed in place", "index_select_backward"});
  Tensor m = th::make({1, 5, 7, 2}, {2, 2}).requires_grad_();
  auto [vals, where_max] = max_with_indices(m, 1);  // saves the indices
  {
    NoGrad guard;
    where_max.mul_(0.0);
  }
  th::check_throws([&] { vals.sum().backward(); }, {"changed in place", "max_backward"});
  Tensor w = x * 3.0;  // add/mul by a scalar: nothing of x is saved for x's own gradient
  w.sum().backward();
  CHECK(th::values(x.grad()) == std::vector<double>{3, 3});
}

TEST_CASE("a leaf hook runs once on the summed gradient", "[autograd]") {
  Tensor x = th::make({1}, {1}).requires_grad_();
  int calls = 0;
  x.register_hook([&](const Tensor& g) {
    ++calls;
    return clamp(g, -1, 1);
  });
  (x * 2.0 + x * 3.0).sum().backward();  // two uses, total gradient 5, clamped once to 1
  CHECK(calls == 1);
  CHECK(th::values(x.grad()) == std::vector<double>{1});
}

TEST_CASE("a leaf's gradient goes in as soon as the last node feeding it has run", "[autograd]") {
  // PyTorch's AccumulateGrad timing (data-parallel training all-reduces the last layer's gradient
  // while backward still runs): w's hook, right after mul's backward, before exp's backward (h's hook)
  Tensor x = th::make({0.5, -1}, {2}, DType::f64).requires_grad_();
  Tensor w = th::make({2, 3}, {2}, DType::f64).requires_grad_();
  std::vector<std::string> order;
  bool h_done_when_w = true;
  Tensor h = x.exp();
  h.register_hook([&](const Tensor& g) { order.push_back("h"); return g; });
  w.register_hook([&](const Tensor& g) {
    order.push_back("w");
    h_done_when_w = !x.grad().defined();  // x's gradient is not in yet
    return g;
  });
  x.register_hook([&](const Tensor& g) { order.push_back("x"); return g; });
  (h * w).sum().backward();
  CHECK(order == std::vector<std::string>{"w", "h", "x"});
  CHECK(h_done_when_w);
  th::check_close(w.grad(), x.detach().exp(), 1e-15, 0, "dw");
  th::check_close(x.grad(), x.detach().exp() * w.detach(), 1e-15, 0, "dx");
  // a leaf used at two depths still gets one hook call, on the sum, after its deeper use
  Tensor a = th::make({0.25}, {1}, DType::f64).requires_grad_();
  int calls = 0;
  double seen = 0;
  a.register_hook([&](const Tensor& g) { ++calls, seen = g.item<double>(); return g; });
  ((a * 2.0) + (a * 3.0).exp()).sum().backward();
  CHECK(calls == 1);
  CHECK(seen == Approx(2 + 3 * std::exp(0.75)).epsilon(1e-14));
}

TEST_CASE("a deep chain does not overflow the stack", "[autograd]") {
  Tensor x = ones({1}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = y * 1.0001;
  y.sum().backward();
  CHECK(th::values(x.grad())[0] == Approx(std::pow(1.0001, 20000)).epsilon(1e-3));
}

TEST_CASE("gradcheck itself catches a wrong gradient", "[autograd][grad]") {
  // an op with a deliberately wrong backward must fail gradcheck (a checker that cannot fail is a defect)
  auto bad_square = [](const Tensor& x) {
    Tensor out = detach(x) * detach(x);
    Tensor xd = detach(x);
    return record("bad_square_backward", out, {x}, [xd](const Tensor& dout) { return std::vector{dout * xd}; });
  };
  Tensor x = th::make({0.5, -1.5, 2}, {3}, DType::f64).requires_grad_();
  auto r = gradcheck([&](const std::vector<Tensor>& v) { return bad_square(v[0]); }, {x});
  CHECK(!r.ok);
  CHECK(r.message.find("analytic") != std::string::npos);
  auto ok = gradcheck([](const std::vector<Tensor>& v) { return v[0] * v[0]; }, {x});
  CHECK(ok.ok);
}

}  // namespace test_autograd
