// Tensor ops on cuda tensors (include <strata/backend/cuda.hpp>; the emulator under g++) against the
// same ops on the cpu, on the same values: the elementwise family (binary ops with broadcasting,
// comparisons, where, unary ops and the fused activation backwards, in-place ops, casts between all
// dtypes, fill and the creation functions). Operands are made on the cpu, copied to cuda whole,
// and then viewed the same way on both devices (transposed, sliced with a step, expanded,
// channels-last), so the cuda kernels see the same strides the cpu loop does.
// Exact where both devices do the same IEEE operations (+ - * / max min, comparisons, casts,
// sqrt); within a few ulp (scaled to the dtype) for the libm functions (exp, log, tanh, erf...).
// Gradients: the backward of elementwise chains on cuda equals the cpu's.
#include <catch2/catch.hpp>

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/backend/cuda.hpp"

namespace test_cuda_ops {

using namespace strata;

/// The same tensor on the cpu and on cuda.
struct Both {
  Tensor cpu, gpu;
};

/// How an operand is laid out in memory (the same on both devices).
enum class Layout { contiguous, transposed, strided, expanded, channels_last };

/// Random values in [lo, hi) of `shape` in dtype dt, laid out as `layout` on both devices.
inline Both make_both(const Shape& shape, DType dt, Layout layout, double lo = -2, double hi = 2) {
  auto values = [&](const Shape& s) {
    Tensor r = add(mul(rand(s, {.dtype = DType::f64}), hi - lo), lo);
    return r.to(dt);  // integers: truncated toward zero
  };
  auto pair = [&](const Tensor& base, const std::function<Tensor(const Tensor&)>& view) {
    return Both{view(base), view(to(base, kCUDA))};
  };
  switch (layout) {
    case Layout::contiguous: return pair(values(shape), [](const Tensor& t) { return t; });
    case Layout::transposed: {  // stored with the last two dims swapped
      Shape s = shape;
      if (s.size() < 2) return pair(values(shape), [](const Tensor& t) { return t; });
      std::swap(s[s.size() - 1], s[s.size() - 2]);
      return pair(values(s), [](const Tensor& t) { return transpose(t, -1, -2); });
    }
    case Layout::strided: {  // every other element of a wider last dim, from offset 1
      Shape s = shape;
      if (s.empty()) return pair(values(shape), [](const Tensor& t) { return t; });
      const int64_t n = s.back();
      s.back() = 2 * n + 1;
      return pair(values(s), [n](const Tensor& t) { return slice(t, -1, 1, 1 + 2 * n, 2); });
    }
    case Layout::expanded: {  // the first dim broadcast from size 1
      Shape s = shape;
      if (s.empty()) return pair(values(shape), [](const Tensor& t) { return t; });
      s[0] = 1;
      const Shape full = shape;
      return pair(values(s), [full](const Tensor& t) { return expand(t, full); });
    }
    case Layout::channels_last: {
      REQUIRE(shape.size() == 4);
      return pair(values(shape), [](const Tensor& t) { return contiguous(t, MemoryFormat::channels_last); });
    }
  }
  return {};
}

using th::check_cuda_same;  // values within tol (relative, plus the same absolute), NaN where NaN

/// A few ulp of dtype dt (for results of libm functions).
inline double ulps(DType dt) {
  switch (dt) {
    case DType::f64: return 1e-13;
    case DType::f32: return 4e-6;
    case DType::f16: return 2e-3;
    case DType::bf16: return 1.6e-2;
    default: return 0;
  }
}

const std::vector<DType> kFloat = {DType::f32, DType::f64, DType::f16, DType::bf16};
const std::vector<Layout> kLayouts = {Layout::contiguous, Layout::transposed, Layout::strided, Layout::expanded};

TEST_CASE("cuda binary ops equal the cpu's on every layout and dtype", "[cuda][ops]") {
  using Fn = std::function<Tensor(const Tensor&, const Tensor&)>;
  struct Case { const char* name; Fn f; bool exact; bool ints; };
  const std::vector<Case> cases = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, true, true},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, true, true},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, true, true},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, true, true},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, true, true},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, true, true},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(abs(a), b); }, false, false},
      {"eq", [](const Tensor& a, const Tensor& b) { return eq(a, b); }, true, true},
      {"ne", [](const Tensor& a, const Tensor& b) { return ne(a, b); }, true, true},
      {"lt", [](const Tensor& a, const Tensor& b) { return lt(a, b); }, true, true},
      {"le", [](const Tensor& a, const Tensor& b) { return le(a, b); }, true, true},
      {"gt", [](const Tensor& a, const Tensor& b) { return gt(a, b); }, true, true},
      {"ge", [](const Tensor& a, const Tensor& b) { return ge(a, b); }, true, true},
      {"add scalar", [](const Tensor& a, const Tensor&) { return add(a, 3); }, true, true},
      {"scalar div", [](const Tensor&, const Tensor& b) { return div(1.5, b); }, true, true},
  };
  const Shape shape{3, 4, 5};
  std::vector<DType> dts = kFloat;
  dts.push_back(DType::i32);
  dts.push_back(DType::i64);
  for (const DType dt : dts)
    for (const Layout la : kLayouts)
      for (const Layout lb : {Layout::contiguous, Layout::transposed, Layout::strided}) {
        const Both a = make_both(shape, dt, la), b = make_both(shape, dt, lb);
        for (const Case& c : cases) {
          if (!is_floating(dt) && !c.ints) continue;
          const std::string what = std::string(c.name) + " " + std::string(dtype_name(dt)) + " layouts " +
                                   std::to_string(int(la)) + "," + std::to_string(int(lb));
          check_cuda_same(c.f(a.gpu, b.gpu), c.f(a.cpu, b.cpu), c.exact ? 0 : ulps(dt), what);
        }
      }
}

TEST_CASE("cuda binary ops broadcast like the cpu's", "[cuda][ops]") {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3, 1, 5}, {4, 5}}, {{1}, {2, 3}}, {{}, {2, 3}}, {{6, 1}, {1, 7}}, {{2, 3, 4, 5}, {3, 1, 1}}, {{0, 3}, {3}}};
  for (const auto& [sa, sb] : shapes)
    for (const DType dt : {DType::f32, DType::bf16, DType::i64}) {
      const Both a = make_both(sa, dt, Layout::contiguous), b = make_both(sb, dt, Layout::strided);
      check_cuda_same(add(a.gpu, b.gpu), add(a.cpu, b.cpu), 0, "add broadcast");
      check_cuda_same(mul(b.gpu, a.gpu), mul(b.cpu, a.cpu), 0, "mul broadcast");
      check_cuda_same(gt(a.gpu, b.gpu), gt(a.cpu, b.cpu), 0, "gt broadcast");
    }
  // mixed dtypes promote as on the cpu
  const Both a = make_both({4, 3}, DType::i32, Layout::contiguous), b = make_both({3}, DType::f16, Layout::contiguous);
  check_cuda_same(add(a.gpu, b.gpu), add(a.cpu, b.cpu), 0, "i32 + f16");
  check_cuda_same(div(a.gpu, a.gpu), div(a.cpu, a.cpu), 0, "i32 / i32 -> f32");
}

TEST_CASE("cuda unary ops equal the cpu's", "[cuda][ops]") {
  using Fn = std::function<Tensor(const Tensor&)>;
  struct Case { const char* name; Fn f; bool exact; bool ints; };
  const std::vector<Case> cases = {
      {"neg", [](const Tensor& x) { return neg(x); }, true, true},
      {"abs", [](const Tensor& x) { return abs(x); }, true, true},
      {"relu", [](const Tensor& x) { return relu(x); }, true, true},
      {"sign", [](const Tensor& x) { return sign(x); }, true, true},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 1.25); }, true, true},
      {"sqrt", [](const Tensor& x) { return sqrt(abs(x)); }, true, false},
      {"rsqrt", [](const Tensor& x) { return rsqrt(abs(x)); }, true, false},
      {"exp", [](const Tensor& x) { return exp(x); }, false, true},
      {"log", [](const Tensor& x) { return log(abs(x)); }, false, false},
      {"log1p", [](const Tensor& x) { return log1p(abs(x)); }, false, false},
      {"sin", [](const Tensor& x) { return sin(x); }, false, false},
      {"cos", [](const Tensor& x) { return cos(x); }, false, false},
      {"tanh", [](const Tensor& x) { return tanh(x); }, false, false},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, false, false},
      {"silu", [](const Tensor& x) { return silu(x); }, false, false},
      {"gelu", [](const Tensor& x) { return gelu(x); }, false, false},
      {"softplus", [](const Tensor& x) { return softplus(mul(x, 12.0)); }, false, false},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.1); }, true, false},
  };
  std::vector<DType> dts = kFloat;
  dts.push_back(DType::i32);
  for (const DType dt : dts)
    for (const Layout l : {Layout::contiguous, Layout::transposed, Layout::strided, Layout::expanded}) {
      const Both x = make_both({5, 7, 3}, dt, l, -3, 3);
      for (const Case& c : cases) {
        if (!is_floating(dt) && !c.ints) continue;
        const std::string what = std::string(c.name) + " " + std::string(dtype_name(dt)) + " layout " + std::to_string(int(l));
        // exp of an integer tensor is float32 on both devices
        const double tol = c.exact ? 0 : ulps(is_floating(dt) ? dt : DType::f32) * 4;
        check_cuda_same(c.f(x.gpu), c.f(x.cpu), tol, what);
      }
    }
}

TEST_CASE("cuda special values: NaN, infinities and signed zeros as on the cpu", "[cuda][ops]") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const Tensor h = th::make({nan, inf, -inf, 0.0, -0.0, 1.0, -1.0, 1e-40, 70000.0, -3.0}, {10});
  const Tensor o = th::make({1.0, nan, 2.0, -0.0, 0.0, 1.0, nan, -1e-40, 1.0, -3.0}, {10});
  for (const DType dt : kFloat) {
    const Tensor a = h.to(dt), b = o.to(dt);
    const Tensor ag = to(a, kCUDA), bg = to(b, kCUDA);
    for (const auto& [name, f] : std::vector<std::pair<const char*, std::function<Tensor(const Tensor&, const Tensor&)>>>{
             {"maximum", [](const Tensor& x, const Tensor& y) { return maximum(x, y); }},
             {"minimum", [](const Tensor& x, const Tensor& y) { return minimum(x, y); }},
             {"add", [](const Tensor& x, const Tensor& y) { return add(x, y); }},
             {"div", [](const Tensor& x, const Tensor& y) { return div(x, y); }},
             {"eq", [](const Tensor& x, const Tensor& y) { return eq(x, y); }},
             {"lt", [](const Tensor& x, const Tensor&) { return lt(x, 0.0); }},
             {"relu", [](const Tensor& x, const Tensor&) { return relu(x); }},
             {"neg", [](const Tensor& x, const Tensor&) { return neg(x); }},
             {"abs", [](const Tensor& x, const Tensor&) { return abs(x); }},
             {"clamp", [](const Tensor& x, const Tensor&) { return clamp(x, -0.5, 0.5); }},
             {"to bool", [](const Tensor& x, const Tensor&) { return x.to(DType::b8); }},
         }) {
      const Tensor got = to(f(ag, bg), kCPU), want = f(a, b);
      INFO(name << " " << dtype_name(dt));
      REQUIRE(got.dtype() == want.dtype());
      const auto gv = th::values(got), wv = th::values(want);
      for (size_t i = 0; i < gv.size(); ++i) {
        INFO("element " << i << " got " << gv[i] << " want " << wv[i]);
        if (std::isnan(wv[i])) CHECK(std::isnan(gv[i]));
        else CHECK((gv[i] == wv[i] && std::signbit(gv[i]) == std::signbit(wv[i])));
      }
    }
  }
}

TEST_CASE("cuda where, in-place ops, fill and casts", "[cuda][ops]") {
  SECTION("where broadcasts its three operands") {
    const Both c = make_both({4, 1, 6}, DType::f32, Layout::contiguous);
    const Tensor cc = gt(c.cpu, 0.0), cg = gt(c.gpu, 0.0);
    for (const DType dt : {DType::f32, DType::f16, DType::i64}) {
      const Both a = make_both({5, 6}, dt, Layout::transposed), b = make_both({4, 5, 1}, dt, Layout::contiguous);
      check_cuda_same(where(cg, a.gpu, b.gpu), where(cc, a.cpu, b.cpu), 0, "where");
      check_cuda_same(where(cg, a.gpu, 2.5), where(cc, a.cpu, 2.5), 0, "where scalar");
    }
  }
  SECTION("in-place add_ sub_ mul_ div_ on a strided view write only the view") {
    const Both base = make_both({6, 8}, DType::f32, Layout::contiguous);
    Tensor vc = slice(base.cpu, 1, 1, 8, 3), vg = slice(base.gpu, 1, 1, 8, 3);
    const Both o = make_both({3}, DType::f32, Layout::contiguous);
    add_(vc, o.cpu, 2.0), add_(vg, o.gpu, 2.0);
    mul_(vc, o.cpu), mul_(vg, o.gpu);
    sub_(vc, o.cpu), sub_(vg, o.gpu);
    div_(vc, o.cpu), div_(vg, o.gpu);
    check_cuda_same(base.gpu, base.cpu, 0, "in place through a view");
  }
  SECTION("fill_, zeros, full, arange, linspace and the random creators give the cpu's values") {
    for (const DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8}) {
      check_cuda_same(full({3, 4}, 2.75, {.dtype = dt, .device = kCUDA}), full({3, 4}, 2.75, {.dtype = dt}), 0, "full");
      check_cuda_same(zeros({5}, {.dtype = dt, .device = kCUDA}), zeros({5}, {.dtype = dt}), 0, "zeros");
    }
    check_cuda_same(arange(0, 10, 0.5, {.device = kCUDA}), arange(0, 10, 0.5, {}), 0, "arange");
    check_cuda_same(linspace(-1, 1, 7, {.dtype = DType::f64, .device = kCUDA}), linspace(-1, 1, 7, {.dtype = DType::f64}), 0, "linspace");
    Generator g1(7), g2(7);
    check_cuda_same(randn({9, 4}, {.device = kCUDA}, g1), randn({9, 4}, {}, g2), 0, "randn, same seed");
    check_cuda_same(rand({33}, {.dtype = DType::bf16, .device = kCUDA}, g1), rand({33}, {.dtype = DType::bf16}, g2), 0, "rand");
    check_cuda_same(randint(-5, 9, {20}, {.dtype = DType::i32, .device = kCUDA}, g1), randint(-5, 9, {20}, {.dtype = DType::i32}, g2), 0, "randint");
    check_cuda_same(from_vector({1.0, 2.0, 3.5}, {3}, {.dtype = DType::f16, .device = kCUDA}),
                    from_vector({1.0, 2.0, 3.5}, {3}, {.dtype = DType::f16}), 0, "from_vector");
    Tensor t = empty({4, 6}, {.device = kCUDA});
    Tensor tv = slice(t, 0, 0, 4, 2);
    fill_(t, 1.0), fill_(tv, -3.0);
    Tensor want = ones({4, 6}), wv = slice(want, 0, 0, 4, 2);
    fill_(wv, -3.0);  // rows 0 and 2
    check_cuda_same(t, want, 0, "fill_ of a strided view");
  }
  SECTION("casts between every pair of dtypes, from strided sources") {
    const std::vector<DType> all = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::b8};
    for (const DType from : all) {
      const Both x = make_both({4, 5}, from, Layout::transposed, from == DType::u8 ? 0 : -300, 300);
      for (const DType dt : all) {
        if (from != DType::u8 && from != DType::b8 && dt == DType::u8) continue;  // negative -> u8 is UB in C++
        check_cuda_same(x.gpu.to(dt), x.cpu.to(dt), 0,
                        std::string("cast ") + std::string(dtype_name(from)) + " -> " + std::string(dtype_name(dt)));
      }
    }
    // contiguous(x) and clone of a channels-last view, and to(channels_last)
    const Both y = make_both({2, 3, 4, 5}, DType::f32, Layout::transposed);
    check_cuda_same(contiguous(y.gpu), contiguous(y.cpu), 0, "contiguous");
    const Tensor cl = contiguous(y.gpu, MemoryFormat::channels_last);
    CHECK(cl.is_contiguous(MemoryFormat::channels_last));
    check_cuda_same(cl, contiguous(y.cpu, MemoryFormat::channels_last), 0, "channels_last");
    // an elementwise op keeps a channels-last input's layout on cuda too
    CHECK(relu(cl).strides() == cl.strides());
  }
}

TEST_CASE("cuda gradients of elementwise chains equal the cpu's", "[cuda][ops][autograd]") {
  for (const DType dt : {DType::f32, DType::f64}) {
    const Both a = make_both({4, 6}, dt, Layout::transposed), b = make_both({4, 6}, dt, Layout::strided);
    auto f = [](const Tensor& x, const Tensor& y) {
      Tensor z = add(mul(sigmoid(x), tanh(y)), div(gelu(x), add(exp(y), 1.0)));
      z = sub(relu(z), mul(silu(y), clamp(x, -0.5, 0.5)));
      return maximum(z, minimum(x, y));
    };
    std::vector<Tensor> grads[2];
    for (int dev = 0; dev < 2; ++dev) {
      Tensor x = (dev ? a.gpu : a.cpu).detach(), y = (dev ? b.gpu : b.cpu).detach();
      x.requires_grad_(), y.requires_grad_();
      Tensor out = f(x, y);
      Tensor g = dev ? to(th::make(std::vector<double>(24, 0.5), {4, 6}, dt), kCUDA) : th::make(std::vector<double>(24, 0.5), {4, 6}, dt);
      out.backward(g);
      REQUIRE(x.grad().defined());
      REQUIRE(x.grad().device() == (dev ? Device::cuda(0) : kCPU));
      grads[dev] = {x.grad(), y.grad()};
    }
    check_cuda_same(grads[1][0], grads[0][0], ulps(dt) * 8, "dx");
    check_cuda_same(grads[1][1], grads[0][1], ulps(dt) * 8, "dy");
  }
}

TEST_CASE("cuda fused softmax cross entropy equals the cpu's, forward and backward", "[cuda][ops][loss]") {
  for (const DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16})
    for (const double eps : {0.0, 0.1})
      for (const auto& [B, C] : std::vector<std::pair<int64_t, int64_t>>{{7, 10}, {3, 1}, {2, 1000}, {0, 5}}) {
        const Both x = make_both({B, C}, dt, Layout::transposed, -4, 4);
        const Tensor y = randint(0, C, {B});
        // the cpu's fused kernel is f32/f64: 16-bit logits go in widened (exactly) to f32
        Tensor xc = x.cpu.detach().to(dt == DType::f64 ? DType::f64 : DType::f32), xg = x.gpu.detach();
        xc.requires_grad_(), xg.requires_grad_();
        const Tensor lc = nn::cross_entropy(xc, y, eps, "none"), lg = nn::cross_entropy(xg, to(y, kCUDA), eps, "none");
        const std::string what = std::string("cross_entropy ") + std::string(dtype_name(dt)) + " B " + std::to_string(B) +
                                 " C " + std::to_string(C) + " eps " + std::to_string(eps);
        REQUIRE(lg.dtype() == dt);
        const double tol = dt == DType::f64 ? 1e-12 : dt == DType::f32 ? 1e-5 : 2 * th::tol(dt);
        check_cuda_same(lg.to(xc.dtype()), lc, tol, what);
        const Tensor gc = th::make(std::vector<double>(size_t(B), 0.75), {B}, xc.dtype());
        lc.backward(gc);
        lg.backward(to(gc.to(dt), kCUDA));
        check_cuda_same(xg.grad().to(xc.dtype()), xc.grad(), tol, what + " dx");
      }
  // a target out of range is an Error naming the op, also on cuda (checked on the host)
  const Tensor xg = zeros({2, 3}, {.device = kCUDA});
  th::check_throws([&] { (void)nn::cross_entropy(xg, to(th::make({0, 3}, {2}, DType::i64), kCUDA), 0.0, "none"); },
                   {"cross_entropy", "got target 3"});
}

TEST_CASE("copy_ and Module::to move values across devices", "[cuda][ops]") {
  Tensor dst = zeros({2, 3}, {.device = kCUDA});
  const Tensor src = th::make({1, 2, 3, 4, 5, 6}, {3, 2});
  copy_(dst, transpose(src, 0, 1));
  check_cuda_same(dst, transpose(src, 0, 1).contiguous(), 0, "copy_ cpu -> cuda");
  Tensor back = zeros({3}, {.dtype = DType::f64});
  copy_(back, select(dst, 0, 1));
  th::check_close(back, th::make({2, 4, 6}, {3}, DType::f64), 0, 0, "copy_ cuda -> cpu with a cast");
  nn::Linear lin(3, 2);
  const Tensor w = lin.weight.detach().clone();
  lin.to(kCUDA);
  CHECK(lin.weight.device().is_cuda());
  CHECK(lin.weight.requires_grad());
  check_cuda_same(lin.weight, w, 0, "Module::to(cuda)");
}

TEST_CASE("fused optimizer steps on cuda equal the cpu's", "[cuda][ops][optim]") {
  for (const DType dt : {DType::f32, DType::f64})
    for (int which = 0; which < 4; ++which) {  // sgd+momentum, adam (l2), adamw, plain sgd (unfused tensor ops)
      std::vector<Tensor> ps[2];
      std::unique_ptr<Optimizer> opts[2];
      const Both w = make_both({37, 5}, dt, Layout::contiguous), b = make_both({70001}, dt, Layout::contiguous);
      for (int dev = 0; dev < 2; ++dev) {
        ps[dev] = {(dev ? w.gpu : w.cpu).clone().detach(), (dev ? b.gpu : b.cpu).clone().detach()};
        for (Tensor& p : ps[dev]) p.requires_grad_();
        opts[dev] = which == 0   ? sgd(ps[dev], 0.1, 0.9, 1e-2)
                    : which == 1 ? adam(ps[dev], 1e-2, 0.9, 0.99, 1e-5, 1e-2, false)
                    : which == 2 ? adamw(ps[dev], 1e-2, 0.9, 0.99, 1e-5, 1e-2)
                                 : sgd(ps[dev], 0.1);
      }
      for (int step = 0; step < 3; ++step)
        for (int dev = 0; dev < 2; ++dev) {
          for (size_t k = 0; k < ps[dev].size(); ++k) {  // the same gradients on both devices
            Generator gen(uint64_t(100 * step + k));
            const Tensor g = randn(ps[dev][k].shape(), {.dtype = dt}, gen);
            ps[dev][k].set_grad(dev ? to(g, kCUDA) : g);
          }
          opts[dev]->step();
        }
      for (size_t k = 0; k < 2; ++k)  // same arithmetic in the same order: equal bit for bit under the emulator
        check_cuda_same(ps[1][k].detach(), ps[0][k].detach(), dt == DType::f64 ? 1e-14 : 1e-6,
                        "optimizer " + std::to_string(which) + " param " + std::to_string(k));
    }
}

TEST_CASE("Optimizer::step on cuda: one multi-tensor launch per run of parameters sharing scalars", "[cuda][ops][optim]") {
  // group 0: 20 params (5 without weight decay), group 1: 10 params at another lr -> 3 runs
  for (int which = 0; which < 2; ++which) {  // adamw, sgd + momentum
    ParamGroups groups[2];
    std::unique_ptr<Optimizer> opts[2];
    for (int dev = 0; dev < 2; ++dev) {
      groups[dev].resize(2);
      for (int k = 0; k < 30; ++k) {
        Generator gen(uint64_t(7 + k));
        Tensor p = randn({int64_t(1 + 37 * k)}, {}, gen);
        if (dev) p = to(p, kCUDA);
        p.requires_grad_();
        groups[dev][k < 20 ? 0 : 1].push_back(p);
      }
      opts[dev] = which == 0 ? adamw(groups[dev], 1e-2, 0.9, 0.99, 1e-5, 1e-2) : sgd(groups[dev], 0.1, 0.9, 1e-2);
      opts[dev]->set_hyper("lr", std::vector<double>{1e-2, 3e-3});
      for (int k = 0; k < 5; ++k) opts[dev]->state_of(opts[dev]->param_groups[0].params[size_t(k)]).do_wd = false;
    }
    for (int step = 0; step < 3; ++step)
      for (int dev = 0; dev < 2; ++dev) {
        int k = 0;
        for (ParamGroup& g : opts[dev]->param_groups)
          for (Tensor& p : g.params) {
            Generator gen(uint64_t(1000 * step + k++));
            const Tensor gr = randn(p.shape(), {}, gen);
            p.set_grad(dev ? to(gr, kCUDA) : gr);
          }
        const uint64_t before = cuda::launch_count();
        opts[dev]->step();
        if (dev && step > 0) CHECK(cuda::launch_count() - before == 3);  // step 0 also zero-fills the state
      }
    for (size_t g = 0; g < 2; ++g)
      for (size_t k = 0; k < opts[0]->param_groups[g].params.size(); ++k)
        check_cuda_same(opts[1]->param_groups[g].params[k].detach(), opts[0]->param_groups[g].params[k].detach(), 1e-6,
                        "optimizer " + std::to_string(which) + " group " + std::to_string(g) + " param " + std::to_string(k));
  }
}

TEST_CASE("Optimizer::step on cuda: a step that throws part way still updates the parameters before, as on the cpu",
          "[cuda][ops][optim]") {
  // group 1 lacks "eps": adam_step throws there, after group 0's parameter has been stepped (and its
  // step count advanced): its queued multi-tensor update must still run, or p and its state disagree
  Tensor ps[2][2];
  std::unique_ptr<Optimizer> opts[2];
  for (int dev = 0; dev < 2; ++dev) {
    for (int k = 0; k < 2; ++k) {
      Generator gen(uint64_t(60 + k));
      Tensor t = randn({int64_t(40 + k)}, {}, gen);
      Generator ggen(uint64_t(70 + k));
      Tensor gr = randn({int64_t(40 + k)}, {}, ggen);
      ps[dev][k] = (dev ? to(t, kCUDA) : t).requires_grad_();
      ps[dev][k].set_grad(dev ? to(gr, kCUDA) : gr);
    }
    opts[dev] = adamw(ParamGroups{{ps[dev][0]}, {ps[dev][1]}}, 1e-2, 0.9, 0.99, 1e-5, 1e-2);
    opts[dev]->param_groups[1].hypers.erase("eps");
    CHECK_THROWS_WITH(opts[dev]->step(), Catch::Contains("adam_step"));
  }
  Generator gen(60);
  CHECK(th::values(ps[0][0].detach()) != th::values(randn({40}, {}, gen)));  // the cpu did step it
  check_cuda_same(ps[1][0].detach(), ps[0][0].detach(), 1e-6, "the parameter stepped before the error");
}

TEST_CASE("dropout on cuda draws the cpu's mask for the same seed", "[cuda][ops]") {
  const Both x = make_both({6, 50}, DType::f32, Layout::transposed);
  manual_seed(21);
  const Tensor yc = dropout(x.cpu, 0.3, true);
  manual_seed(21);
  const Tensor yg = dropout(x.gpu, 0.3, true);
  check_cuda_same(yg, yc, 0, "dropout");
  CHECK(dropout(x.gpu, 0.3, false).is_same(x.gpu));
}

TEST_CASE("cuda elementwise errors name the op", "[cuda][ops]") {
  const Tensor c = ones({3}), g = ones({3}, {.device = kCUDA});
  th::check_throws([&] { (void)add(c, g); }, {"add", "cpu", "cuda", "expected the same device"});
  th::check_throws([&] { (void)where(gt(g, 0.0), c, c); }, {"where", "expected one device"});
  th::check_throws([&] { (void)add(ones({3}, {.dtype = DType::b8, .device = kCUDA}), ones({3}, {.dtype = DType::b8, .device = kCUDA})); },
                   {"add", "bool"});
  Tensor e = expand(ones({1}, {.device = kCUDA}), {4});
  th::check_throws([&] { fill_(e, 1.0); }, {"fill_", "stride 0"});
}

}  // namespace test_cuda_ops
