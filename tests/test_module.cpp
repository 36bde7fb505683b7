// nn::Module: names from visit, state_dict round trip, train/eval, hooks, errors.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "strata/nn/module.hpp"

namespace test_module {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {
struct Affine : nn::Module {
  Tensor weight, bias, running;  // running: a buffer
  explicit Affine(int64_t n, bool with_bias = true) {
    weight = make_param(randn({n}));
    if (with_bias) bias = make_param(zeros({n}));
    running = zeros({n});
  }
  Tensor forward(const Tensor& x) override { return bias.defined() ? x * weight + bias : x * weight; }
  void visit(nn::Visitor& v) override {
    v.param("weight", weight);
    v.param("bias", bias);
    v.buffer("running", running);
  }
  std::string type_name() const override { return "Affine"; }
};
struct Block : nn::Module {
  std::shared_ptr<Affine> a = std::make_shared<Affine>(3), b = std::make_shared<Affine>(3, false);
  Tensor forward(const Tensor& x) override { return (*b)((*a)(x)); }
  void visit(nn::Visitor& v) override {
    v.child("a", a);
    v.child("b", b);
  }
  std::string type_name() const override { return "Block"; }
};
std::vector<std::string> keys(const nn::NamedTensors& t) {
  std::vector<std::string> k;
  for (auto& [n, x] : t) k.push_back(n);
  return k;
}
}  // namespace

TEST_CASE("module: dotted names in PyTorch's order, undefined tensors skipped") {
  nn::Sequential net(Block(), Affine(3));
  CHECK(keys(net.named_parameters()) == std::vector<std::string>{"0.a.weight", "0.a.bias", "0.b.weight", "1.weight", "1.bias"});
  CHECK(keys(net.state_dict()) ==
        std::vector<std::string>{"0.a.weight", "0.a.bias", "0.a.running", "0.b.weight", "0.b.running", "1.weight",
                                 "1.bias", "1.running"});
  CHECK(net.parameters().size() == 5);
  CHECK(net.num_parameters() == 15);
  CHECK(net.named_modules().size() == 5);  // seq, block, a, b, affine
  for (auto& p : net.parameters()) CHECK(p.requires_grad());
  CHECK(net.repr() ==
        "Sequential(\n  (0): Block(\n    (a): Affine()\n    (b): Affine()\n  )\n  (1): Affine()\n)");
}

TEST_CASE("module: train/eval reach every descendant") {
  nn::Sequential net(Block(), Affine(3));
  net.eval();
  for (auto& [n, m] : net.named_modules()) CHECK_FALSE(m->training);
  net.train();
  for (auto& [n, m] : net.named_modules()) CHECK(m->training);
}

TEST_CASE("module: state_dict round trip gives the same outputs; bad dicts are refused") {
  manual_seed(1);
  nn::Sequential a(Block(), Affine(3)), b(Block(), Affine(3));
  const Tensor x = randn({2, 3});
  CHECK_FALSE(th::values(a(x)) == th::values(b(x)));
  b.load_state_dict(a.state_dict());
  CHECK(th::values(a(x)) == th::values(b(x)));
  // a copy, not a shared tensor: changing a afterwards leaves b alone
  { NoGrad ng; a.parameters()[0].add_(1.0); }
  CHECK_FALSE(th::values(a(x)) == th::values(b(x)));

  nn::NamedTensors sd = a.state_dict();
  sd.pop_back();
  th::check_throws([&] { b.load_state_dict(sd); }, {"load_state_dict", "missing: 1.running"});
  b.load_state_dict(sd, /*strict=*/false);
  sd = a.state_dict();
  sd.emplace_back("extra", zeros({1}));
  th::check_throws([&] { b.load_state_dict(sd); }, {"unexpected: extra"});
  sd = a.state_dict();
  sd[0].second = zeros({4});
  th::check_throws([&] { b.load_state_dict(sd); }, {"0.a.weight", "[4]", "[3]"});
  // a refused dict changes nothing, even the entries that matched
  nn::Sequential c(Block(), Affine(3));
  const auto c_before = th::values(c(x));
  sd = a.state_dict();
  sd.back().second = zeros({5});  // the last entry is bad; the earlier ones would fit
  th::check_throws([&] { c.load_state_dict(sd); }, {"1.running"});
  sd = a.state_dict();
  sd.emplace_back("extra", zeros({1}));
  th::check_throws([&] { c.load_state_dict(sd); }, {"unexpected"});
  CHECK(th::values(c(x)) == c_before);
}

TEST_CASE("module: forward hooks see input and output, may replace them, and can be removed") {
  Affine m(2);
  int calls = 0;
  auto h = m.register_forward_hook([&](nn::Module& mod, const Tensor& in, Tensor& out) {
    ++calls;
    CHECK(&mod == &m);
    CHECK(in.shape() == Shape{2});
    out = out * 0.0;
  });
  auto ph = m.register_forward_pre_hook([&](nn::Module&, Tensor& in) { in = in + 1.0; });
  const Tensor y = m(ones({2}));
  CHECK(calls == 1);
  CHECK(th::values(y) == std::vector<double>{0, 0});
  h.remove();
  ph.remove();
  h.remove();  // twice is harmless
  const Tensor y2 = m(ones({2}));
  CHECK(calls == 1);
  CHECK(th::values(y2) == th::values(m.weight));
}

TEST_CASE("module: to(dtype) converts params and buffers and keeps them trainable; zero_grad clears") {
  nn::Sequential net(Affine(3));
  net(ones({3})).sum().backward();
  CHECK(net.parameters()[0].grad().defined());
  net.zero_grad();
  CHECK_FALSE(net.parameters()[0].grad().defined());
  net.to(DType::f64);
  for (auto& [n, t] : net.state_dict()) CHECK(t.dtype() == DType::f64);
  for (auto& p : net.parameters()) CHECK(p.requires_grad());
  nn::Lambda twice([](const Tensor& x) { return x * 2.0; }, "Twice");
  CHECK(th::values(twice(ones({2}))) == std::vector<double>{2, 2});
  CHECK(twice.repr() == "Twice()");
  th::check_throws([&] { nn::Module().forward(ones({1})); }, {"Module", "forward_batch"});
}

}  // namespace test_module
