// The elementwise lab: memory-bound ops through the public op API (strata.hpp), f32, in GB/s.
//
// Each op is timed as a user calls it (output allocation from the caching pool included) on the
// flagship CNN's activation size, [256, 32, 28, 28] = 6.4 M floats (25.7 MB a tensor, beyond the
// caches, so GB/s is DRAM bandwidth): bytes = every tensor read + every tensor written, once.
//   add          out = a + b                         3 x 4 B / element
//   mul_scalar   out = a * 2                         2 x 4 B
//   relu         out = max(a, 0)                     2 x 4 B
//   relu_bwd     dx = dout * [y > 0] (fused kernel)  3 x 4 B
//   exp          out = exp(a)                        2 x 4 B
//   add_bcast    out = a + bias[1, 32, 1, 1]         2 x 4 B (the bias stays in cache)
//   add_transp   out = a + b^T, [2048, 2048]         3 x 4 B (b read with stride 2048)
// Arg = threads (1, 2). A pure stream on the dev machine (AMD EPYC Zen 3, 2 cores, shared) moves
// ~15-25 GB/s; read ratios between rows, the machine is shared. Every op is checked against a
// plain loop on a small odd shape before anything is timed.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include <strata/strata.hpp>

namespace {

using namespace strata;

const Shape kAct{256, 32, 28, 28};

/// Max |got - want| / (1 + |want|) over all elements (f32, the same shape).
double max_err(const Tensor& got, const Tensor& want) {
  const Tensor g = got.contiguous(), w = want.contiguous();
  double e = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    const double wi = w.data_ptr<float>()[i];
    e = std::max(e, std::abs(g.data_ptr<float>()[i] - wi) / (1 + std::abs(wi)));
  }
  return e;
}

/// Checks every op on [3, 5, 7, 9] (odd sizes: vector tails) against a plain loop; aborts when one is wrong.
void check() {
  manual_seed(1);
  const Tensor a = randn({3, 5, 7, 9}), b = randn({3, 5, 7, 9}), bias = randn({1, 5, 1, 1}), sq = randn({45, 45});
  const Tensor sqb = randn({45, 45});
  auto loop = [&](const Tensor& shape_of, std::function<float(int64_t)> f) {
    Tensor w = empty(shape_of.shape());
    for (int64_t i = 0; i < shape_of.numel(); ++i) w.data_ptr<float>()[i] = f(i);
    return w;
  };
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  const float* pbias = bias.data_ptr<float>();
  const Tensor y = relu(a);
  struct Case { const char* name; Tensor got, want; };
  const Case cases[] = {
      {"add", add(a, b), loop(a, [&](int64_t i) { return pa[i] + pb[i]; })},
      {"mul_scalar", mul(a, 2.0), loop(a, [&](int64_t i) { return pa[i] * 2.f; })},
      {"relu", y, loop(a, [&](int64_t i) { return pa[i] > 0 ? pa[i] : 0.f; })},
      {"relu_bwd", unary_bwd<ops::ReluBwd>("relu_backward", b, y), loop(a, [&](int64_t i) { return pa[i] > 0 ? pb[i] : 0.f; })},
      {"exp", exp(a), loop(a, [&](int64_t i) { return std::exp(pa[i]); })},
      {"add_bcast", add(a, bias), loop(a, [&](int64_t i) { return pa[i] + pbias[(i / 63) % 5]; })},
      {"add_transp", add(sq, sqb.t()),
       loop(sq, [&](int64_t i) { return sq.data_ptr<float>()[i] + sqb.data_ptr<float>()[(i % 45) * 45 + i / 45]; })},
  };
  for (const Case& c : cases) {
    const double e = max_err(c.got, c.want);
    std::printf("check %-10s max rel err = %.2e\n", c.name, e);
    if (!(e < 1e-5)) std::abort();
  }
}

/// Times fn (one op call) at Arg(0) threads; bytes = tensors touched x 4 B x elements.
void run(benchmark::State& state, const std::function<Tensor()>& fn, double bytes) {
  set_num_threads(int(state.range(0)));
  for (auto _ : state) {
    Tensor out = fn();
    benchmark::DoNotOptimize(out.data_ptr<float>());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(bytes * double(state.iterations())));
  set_num_threads(strata::detail::default_num_threads());
}

struct Inputs {
  Tensor a, b, bias, sq, sqb, y;
  Inputs() {
    manual_seed(0);
    a = randn(kAct), b = randn(kAct), bias = randn({1, 32, 1, 1}), sq = randn({2048, 2048}), sqb = randn({2048, 2048});
    y = relu(a);
  }
};
const Inputs& in() {
  static const Inputs i;
  return i;
}
double act_bytes(int tensors) { return double(tensors) * 4.0 * double(in().a.numel()); }

void BM_add(benchmark::State& s) { run(s, [] { return add(in().a, in().b); }, act_bytes(3)); }
void BM_mul_scalar(benchmark::State& s) { run(s, [] { return mul(in().a, 2.0); }, act_bytes(2)); }
void BM_relu(benchmark::State& s) { run(s, [] { return relu(in().a); }, act_bytes(2)); }
void BM_relu_bwd(benchmark::State& s) {
  run(s, [] { return unary_bwd<ops::ReluBwd>("relu_backward", in().b, in().y); }, act_bytes(3));
}
void BM_exp(benchmark::State& s) { run(s, [] { return exp(in().a); }, act_bytes(2)); }
void BM_add_bcast(benchmark::State& s) { run(s, [] { return add(in().a, in().bias); }, act_bytes(2)); }
void BM_add_transp(benchmark::State& s) {
  run(s, [] { return add(in().sq, in().sqb.t()); }, 3.0 * 4.0 * 2048.0 * 2048.0);
}

}  // namespace

BENCHMARK(BM_add)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_mul_scalar)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_relu)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_relu_bwd)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_exp)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_add_bcast)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_add_transp)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  check();
  (void)in();  // the inputs, made before anything is timed
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
