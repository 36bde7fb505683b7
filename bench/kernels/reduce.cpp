// The reductions lab: sums, max and log_softmax through the public op API (strata.hpp), f32, in GB/s.
//
// Timed as a user calls them (output allocation included); bytes = input read once + output written:
//   sum_all        sum of [2048, 2048] (16.8 MB)                    -> scalar
//   sum_dim0       sum over dim 0 of [2048, 2048] (down the columns: the strided "outer" reduction)
//   sum_dim1       sum over dim 1 of [2048, 2048] (along contiguous rows: the "inner" reduction)
//   max_dim1       max over dim 1 with indices (PyTorch's max(x, dim))
//   amax_dim0      amax over dim 0
//   log_softmax    log_softmax over dim 1 of [256, 1000] (a classifier's logits; 1 MB, in cache)
// Arg = threads (1, 2). Read ratios between rows and against the elementwise lab's stream rates: the
// dev machine (AMD EPYC Zen 3, 2 cores) is shared. Every op is checked against a plain double loop on
// small odd shapes before anything is timed.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>

#include <strata/strata.hpp>

namespace {

using namespace strata;

/// Max |got - want| / (1 + |want|) between an f32 tensor and doubles in row-major order.
double max_err(const Tensor& got, const std::vector<double>& want) {
  const Tensor g = got.contiguous();
  if (g.numel() != int64_t(want.size())) return std::numeric_limits<double>::infinity();
  double e = 0;
  for (int64_t i = 0; i < g.numel(); ++i)
    e = std::max(e, std::abs(double(g.data_ptr<float>()[i]) - want[size_t(i)]) / (1 + std::abs(want[size_t(i)])));
  return e;
}

/// Checks every op on [37, 53] against double loops; aborts when one is wrong.
void check() {
  manual_seed(1);
  const int64_t R = 37, C = 53;
  const Tensor x = randn({R, C});
  auto at = [&](int64_t r, int64_t c) { return double(x.data_ptr<float>()[r * C + c]); };
  std::vector<double> all(1, 0.0), d0(size_t(C), 0.0), d1(size_t(R), 0.0), mx1(size_t(R), -1e300),
      am0(size_t(C), -1e300), ls(size_t(R * C));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      all[0] += at(r, c), d0[size_t(c)] += at(r, c), d1[size_t(r)] += at(r, c);
      mx1[size_t(r)] = std::max(mx1[size_t(r)], at(r, c)), am0[size_t(c)] = std::max(am0[size_t(c)], at(r, c));
    }
  for (int64_t r = 0; r < R; ++r) {
    double s = 0;
    for (int64_t c = 0; c < C; ++c) s += std::exp(at(r, c) - mx1[size_t(r)]);
    for (int64_t c = 0; c < C; ++c) ls[size_t(r * C + c)] = at(r, c) - mx1[size_t(r)] - std::log(s);
  }
  struct Case { const char* name; Tensor got; const std::vector<double>& want; };
  const Case cases[] = {{"sum_all", sum(x), all},           {"sum_dim0", sum(x, {0}), d0},
                        {"sum_dim1", sum(x, {1}), d1},       {"max_dim1", max(x, 1), mx1},
                        {"amax_dim0", amax(x, {0}), am0},    {"log_softmax", log_softmax(x, 1), ls}};
  for (const Case& c : cases) {
    const double e = max_err(c.got, c.want);
    std::printf("check %-11s max rel err = %.2e\n", c.name, e);
    if (!(e < 1e-5)) std::abort();
  }
  // max's indices: the position of the row's max
  const Tensor idx = max_with_indices(x, 1).second.contiguous();
  for (int64_t r = 0; r < R; ++r)
    if (at(r, idx.data_ptr<int64_t>()[r]) != mx1[size_t(r)]) std::abort();
}

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
  Tensor m, logits;
  Inputs() {
    manual_seed(0);
    m = randn({2048, 2048}), logits = randn({256, 1000});
  }
};
const Inputs& in() {
  static const Inputs i;
  return i;
}
constexpr double kM = 4.0 * 2048 * 2048, kRow = 4.0 * 2048;

void BM_sum_all(benchmark::State& s) { run(s, [] { return sum(in().m); }, kM); }
void BM_sum_dim0(benchmark::State& s) { run(s, [] { return sum(in().m, {0}); }, kM + kRow); }
void BM_sum_dim1(benchmark::State& s) { run(s, [] { return sum(in().m, {1}); }, kM + kRow); }
void BM_max_dim1(benchmark::State& s) { run(s, [] { return max(in().m, 1); }, kM + 3 * kRow); }  // + int64 indices
void BM_amax_dim0(benchmark::State& s) { run(s, [] { return amax(in().m, {0}); }, kM + kRow); }
void BM_log_softmax(benchmark::State& s) { run(s, [] { return log_softmax(in().logits, 1); }, 2.0 * 4 * 256 * 1000); }

}  // namespace

BENCHMARK(BM_sum_all)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_sum_dim0)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_sum_dim1)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_max_dim1)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_amax_dim0)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_log_softmax)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  check();
  (void)in();  // the inputs, made before anything is timed
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
