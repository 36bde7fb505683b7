// The batch norm lab: BatchNorm2d as the flagship CNN runs it, through the public op API
// (strata::batch_norm with autograd), f32, in GB/s.
//
// Shapes: the flagship-sized CNN's batch-norm inputs at batch 256, [256, 32, 28, 28] (25.7 MB) and
// [256, 64, 14, 14] (12.8 MB). Cases:
//   train_fwd_bwd  y = batch_norm(x, running stats, weight, bias, training), then y.backward(dy):
//                  batch statistics, the running-stat update, dx, dweight, dbias
//   train_fwd      the training forward alone (statistics + normalize + running stats), no graph
//   eval_fwd       y = batch_norm(x, running stats, ...) in eval mode (one pass, NoGrad)
// Bytes are nominal, the least traffic each case needs: forward reads x and writes y (2 tensors);
// backward reads dy and x and writes dx (3 more). A kernel that reads x twice (statistics, then
// normalize) shows as a lower GB/s. Arg(0) = which shape (0, 1), Arg(1) = threads (1, 2).
// The kernels alone (kernels/cpu/batchnorm.hpp, f32, fused ReLU, training, as the CNN runs them),
// Arg(0) = shape, Arg(1) = layout (0 channels-first, 1 channels-last), Arg(2) = threads:
//   kernel_fwd     batch_norm_fwd_kernel: statistics + y (bytes: x read, y written)
//   kernel_bwd     batch_norm_bwd_kernel: sums + dx, the ReLU mask recomputed from x (bytes: dy, x read,
//                  dx written)
//   kernel_bwd_y   the same reading the mask from y, the older path (bytes: dy, x, y read, dx written; 4
//                  nominal tensors against kernel_bwd's 3, so compare times, not GB/s). In-process A/B
//                  (64-byte-aligned buffers, caches flushed, alternating, medians of 21 ratios, 2 threads,
//                  load ~4): y-read / recomputed time 1.38x (train) 1.27x (eval) at [256, 32, 28, 28],
//                  1.31x / 1.34x at [256, 64, 14, 14], channels-last train 1.22x / 1.18x
// and the machine's memory rate to hold them against, Arg(0) = threads:
//   stream_read    sum of 6.4M floats (25.7 MB, the first shape), SIMD, 4 accumulators
//   stream_copy    memcpy of the same (bytes: read + written)
// The dev machines (AMD EPYC Zen 3, then an AVX-512 Xeon, 2 cores) are shared: read ratios between
// rows and against the stream rows. Forward and backward are checked against plain double loops on a
// small odd shape before anything is timed.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <strata/strata.hpp>

#include "kernels/cpu/batchnorm.hpp"

namespace {

using namespace strata;

double max_err(const Tensor& got, const std::vector<double>& want) {
  const Tensor g = got.contiguous();
  double e = 0;
  for (int64_t i = 0; i < g.numel(); ++i)
    e = std::max(e, std::abs(double(g.data_ptr<float>()[i]) - want[size_t(i)]) / (1 + std::abs(want[size_t(i)])));
  return e;
}

/// Training forward and backward on [3, 5, 4, 3] against double loops; aborts when wrong.
void check() {
  manual_seed(1);
  const int64_t B = 3, C = 5, S = 4 * 3;
  Tensor x = randn({B, C, 4, 3}).requires_grad_(), w = randn({C}).requires_grad_(), b = randn({C}).requires_grad_();
  Tensor rm = zeros({C}), rv = ones({C});
  const Tensor dy = randn({B, C, 4, 3});
  Tensor y = batch_norm(x, rm, rv, w, b, true);
  y.backward(dy);
  const float *px = x.data_ptr<float>(), *pw = w.data_ptr<float>(), *pb = b.data_ptr<float>(), *pd = dy.data_ptr<float>();
  std::vector<double> want_y(size_t(B * C * S)), want_dx(want_y.size());
  std::vector<double> want_dw(static_cast<size_t>(C)), want_db(static_cast<size_t>(C));
  const double N = double(B * S), eps = 1e-5;
  for (int64_t c = 0; c < C; ++c) {
    auto at = [&](const float* p, int64_t n, int64_t s) { return double(p[(n * C + c) * S + s]); };
    double mean = 0, var = 0, sdy = 0, sdyx = 0;
    for (int64_t n = 0; n < B; ++n)
      for (int64_t s = 0; s < S; ++s) mean += at(px, n, s) / N;
    for (int64_t n = 0; n < B; ++n)
      for (int64_t s = 0; s < S; ++s) var += (at(px, n, s) - mean) * (at(px, n, s) - mean) / N;
    const double invstd = 1 / std::sqrt(var + eps);
    for (int64_t n = 0; n < B; ++n)
      for (int64_t s = 0; s < S; ++s) {
        const double xhat = (at(px, n, s) - mean) * invstd;
        want_y[size_t((n * C + c) * S + s)] = xhat * pw[c] + pb[c];
        sdy += at(pd, n, s), sdyx += at(pd, n, s) * xhat;
      }
    want_db[size_t(c)] = sdy, want_dw[size_t(c)] = sdyx;
    for (int64_t n = 0; n < B; ++n)
      for (int64_t s = 0; s < S; ++s) {
        const double xhat = (at(px, n, s) - mean) * invstd;
        want_dx[size_t((n * C + c) * S + s)] = pw[c] * invstd / N * (N * at(pd, n, s) - sdy - xhat * sdyx);
      }
  }
  const double e[] = {max_err(y, want_y), max_err(x.grad(), want_dx), max_err(w.grad(), want_dw),
                      max_err(b.grad(), want_db)};
  std::printf("check batch_norm train: max rel err y %.2e dx %.2e dweight %.2e dbias %.2e\n", e[0], e[1], e[2], e[3]);
  for (double v : e)
    if (!(v < 1e-4)) std::abort();
}

const Shape kShapes[] = {{256, 32, 28, 28}, {256, 64, 14, 14}};

struct Problem {
  Tensor x, w, b, rm, rv, dy;
  explicit Problem(const Shape& s) {
    manual_seed(0);
    const int64_t C = s[1];
    x = randn(s), w = rand({C}), b = randn({C}), rm = zeros({C}), rv = ones({C}), dy = randn(s);
  }
  double bytes(int tensors) const { return double(tensors) * 4.0 * double(x.numel()); }
};

template <class F>
void run(benchmark::State& state, F&& step, int tensors) {
  Problem p(kShapes[state.range(0)]);
  set_num_threads(int(state.range(1)));
  for (auto _ : state) {
    step(p);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(p.bytes(tensors) * double(state.iterations())));
  set_num_threads(strata::detail::default_num_threads());
}

void BM_train_fwd_bwd(benchmark::State& s) {
  run(s, [](Problem& p) {
    Tensor x = p.x.detach().requires_grad_(), w = p.w.detach().requires_grad_(), b = p.b.detach().requires_grad_();
    Tensor y = batch_norm(x, p.rm, p.rv, w, b, true);
    y.backward(p.dy);
    benchmark::DoNotOptimize(x.grad().data_ptr<float>());
  }, 5);
}
void BM_train_fwd(benchmark::State& s) {
  run(s, [](Problem& p) {
    NoGrad ng;
    Tensor y = batch_norm(p.x, p.rm, p.rv, p.w, p.b, true);
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }, 2);
}
void BM_eval_fwd(benchmark::State& s) {
  run(s, [](Problem& p) {
    NoGrad ng;
    Tensor y = batch_norm(p.x, p.rm, p.rv, p.w, p.b, false);
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }, 2);
}

/// The kernels on one of kShapes, f32 with the fused ReLU, training.
struct KernelProblem {
  int64_t B, C, S;
  std::vector<float> x, y, dy, dx, w, b, mean, var, invstd, dw, db;
  cpu::BatchNormDims d;
  KernelProblem(const Shape& s, bool channels_last) : B(s[0]), C(s[1]), S(s[2] * s[3]) {
    const size_t n = size_t(B * C * S), c = size_t(C);
    x.resize(n), y.resize(n), dy.resize(n), dx.resize(n), w.assign(c, 1.5f), b.assign(c, 0.1f);
    mean.resize(c), var.resize(c), invstd.resize(c), dw.resize(c), db.resize(c);
    for (size_t i = 0; i < n; ++i) x[i] = float(i % 251) * 0.01f - 1, dy[i] = float(i % 127) * 0.02f - 1;
    d = {.B = B, .C = C, .S = S, .channels_last = channels_last, .relu = true};
  }
  void fwd() {
    cpu::batch_norm_fwd_kernel<float, float>(x.data(), y.data(), w.data(), b.data(), mean.data(), var.data(),
                                             invstd.data(), d, 1e-5, true);
  }
  void bwd(bool read_y = false) {
    cpu::batch_norm_bwd_kernel<float, float>(dy.data(), x.data(), read_y ? y.data() : nullptr, w.data(), b.data(),
                                             mean.data(), invstd.data(), dx.data(), dw.data(), db.data(), d, true);
  }
};

void BM_kernel_fwd(benchmark::State& state) {
  KernelProblem p(kShapes[state.range(0)], state.range(1) != 0);
  set_num_threads(int(state.range(2)));
  for (auto _ : state) {
    p.fwd();
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(2 * 4 * p.x.size() * size_t(state.iterations())));
  set_num_threads(strata::detail::default_num_threads());
}
void kernel_bwd(benchmark::State& state, bool read_y) {
  KernelProblem p(kShapes[state.range(0)], state.range(1) != 0);
  set_num_threads(int(state.range(2)));
  p.fwd();
  for (auto _ : state) {
    p.bwd(read_y);
    benchmark::DoNotOptimize(p.dx.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t((read_y ? 4 : 3) * 4 * p.x.size() * size_t(state.iterations())));
  set_num_threads(strata::detail::default_num_threads());
}
void BM_kernel_bwd(benchmark::State& state) { kernel_bwd(state, false); }
void BM_kernel_bwd_y(benchmark::State& state) { kernel_bwd(state, true); }

constexpr int64_t kStreamFloats = 256 * 32 * 28 * 28;

/// Sum of a[lo, hi), in Vec<T> lanes with 4 accumulators where there is a Vec<T>.
template <class T>
T stream_sum(const T* a, int64_t lo, int64_t hi) {
  T s = 0;
  int64_t i = lo;
  if constexpr (cpu::has_vec<T>) {
    using V = cpu::Vec<T>;
    V s0(T(0)), s1(T(0)), s2(T(0)), s3(T(0));
    for (; i + 4 * V::size <= hi; i += 4 * V::size) {
      s0 = s0 + V::load(a + i), s1 = s1 + V::load(a + i + V::size);
      s2 = s2 + V::load(a + i + 2 * V::size), s3 = s3 + V::load(a + i + 3 * V::size);
    }
    s = reduce_add((s0 + s1) + (s2 + s3));  // a friend of Vec (found by ADL)
  }
  for (; i < hi; ++i) s += a[i];
  return s;
}

void BM_stream_read(benchmark::State& state) {
  std::vector<float> a(static_cast<size_t>(kStreamFloats), 1.0f);
  set_num_threads(int(state.range(0)));
  for (auto _ : state) {
    std::vector<float> part(size_t(kStreamFloats >> 16) + 1, 0.0f);  // one per chunk (chunks are >= 2^16 long)
    parallel_for(0, kStreamFloats, 1 << 16, [&](int64_t lo, int64_t hi) {
      const float s = stream_sum(a.data(), lo, hi);
      part[size_t(lo >> 16)] = s;
    });
    benchmark::DoNotOptimize(part.data());
  }
  state.SetBytesProcessed(int64_t(4 * kStreamFloats * state.iterations()));
  set_num_threads(strata::detail::default_num_threads());
}
void BM_stream_copy(benchmark::State& state) {
  std::vector<float> a(static_cast<size_t>(kStreamFloats), 1.0f), b(a.size());
  set_num_threads(int(state.range(0)));
  for (auto _ : state) {
    parallel_for(0, kStreamFloats, 1 << 16, [&](int64_t lo, int64_t hi) {
      std::memcpy(b.data() + lo, a.data() + lo, size_t(hi - lo) * sizeof(float));
    });
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(2 * 4 * kStreamFloats * state.iterations()));
  set_num_threads(strata::detail::default_num_threads());
}

}  // namespace

BENCHMARK(BM_stream_read)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_stream_copy)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kernel_fwd)->ArgsProduct({{0, 1}, {0, 1}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kernel_bwd)->ArgsProduct({{0, 1}, {0, 1}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_kernel_bwd_y)->ArgsProduct({{0, 1}, {0, 1}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_train_fwd_bwd)->ArgsProduct({{0, 1}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_train_fwd)->ArgsProduct({{0, 1}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_eval_fwd)->ArgsProduct({{0, 1}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  check();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
