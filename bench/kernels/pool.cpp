// The pooling lab: the max pool kernels of kernels/cpu/pool.hpp on the flagship CNN's two pools, f32, in GB/s.
//
// Shapes: the CNN's pools, [256, 32, 28, 28] -> 14x14 and [256, 64, 14, 14] -> 7x7, MaxPool2d(2).
// bytes = x read once + y written once (+ the int64 indices when kept: training).
//   nchw_eval     max_pool2d_fwd_kernel, no indices (inference)
//   nchw_train    max_pool2d_fwd_kernel with indices
//   nchw_train_taps  max_pool2d_2x2_fwd_kernel: the argmax as a one-byte tap (what max_pool2d's autograd keeps)
//   nchw_3x3s2    the generic NCHW path: 3x3 stride 2 pad 1 (ResNet stems), no indices
//   nhwc_eval     max_pool2d_fwd_nhwc_kernel, no indices
//   nhwc_bwd      max_pool2d_bwd_nhwc_kernel (dx = 0, dx[idx] += dy; bytes = dy + idx + dx)
//   nchw_bwd      max_pool2d_bwd_kernel
//   nchw_bwd_taps max_pool2d_2x2_bwd_kernel from the taps (bytes = dy + taps + dx). In-process A/B against
//                 the int64 path (caches flushed, alternating, medians of 21 ratios, load ~2): fwd 1.11-1.12x
//                 and bwd 1.27-1.36x at 32x28x28, fwd 1.05x and bwd 0.97-1.01x at 64x14x14 (1, 2 threads)
// Arg 0 = which of the two pools (0: 32x28x28, 1: 64x14x14), arg 1 = threads (1, 2). Each kernel is
// checked against the `_ref` loop on a small odd shape before anything is timed.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/pool.hpp"

namespace {

using namespace strata;
using cpu::Pool2dGeom;
using cpu::PoolWindow;

struct Pool {
  int64_t planes, C, H, W, OH, OW;
  std::vector<PoolWindow> rows, cols;
  Pool2dGeom geom(bool channels_last) const {
    return {.planes = channels_last ? planes / C : planes, .H = H, .W = W, .OH = OH, .OW = OW,
            .rows = rows.data(), .cols = cols.data()};
  }
};

Pool make_pool(int64_t B, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  Pool q{.planes = B * C, .C = C, .H = H, .W = W, .OH = cpu::pool_output_size(H, k, s, p, 1, ceil_mode),
         .OW = cpu::pool_output_size(W, k, s, p, 1, ceil_mode), .rows = {}, .cols = {}};
  q.rows = cpu::pool_windows(H, q.OH, k, s, p, 1, false);
  q.cols = cpu::pool_windows(W, q.OW, k, s, p, 1, false);
  return q;
}

std::vector<float> random_floats(int64_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

/// Checks the fast kernels against the `_ref` loops on odd shapes (2x2, 3x3 s2 p1 ceil); aborts on a mismatch.
void check() {
  for (auto [k, s, p, ceil] : {std::tuple{2, 2, 0, false}, std::tuple{3, 2, 1, true}, std::tuple{2, 2, 0, true}}) {
    const Pool q = make_pool(3, 5, 13, 37, k, s, p, ceil);
    const Pool2dGeom g = q.geom(false);
    const std::vector<float> x = random_floats(q.planes * q.H * q.W, 7);
    const size_t n_out = size_t(q.planes * q.OH * q.OW);
    std::vector<float> y(n_out), y_ref(n_out), y2(n_out);
    std::vector<int64_t> idx(n_out), idx_ref(n_out);
    cpu::max_pool2d_ref(x.data(), y_ref.data(), idx_ref.data(), g);
    cpu::max_pool2d_fwd_kernel(x.data(), y.data(), idx.data(), g);
    cpu::max_pool2d_fwd_kernel(x.data(), y2.data(), static_cast<int64_t*>(nullptr), g);
    if (y != y_ref || idx != idx_ref || y2 != y_ref) {
      std::fprintf(stderr, "bench_pool: max_pool2d_fwd_kernel disagrees with max_pool2d_ref (k %d)\n", k);
      std::abort();
    }
    if (!cpu::is_pool_2x2(g)) continue;
    std::vector<uint8_t> taps(n_out);
    std::vector<float> dx(x.size()), dx_ref(x.size());
    cpu::max_pool2d_2x2_fwd_kernel(x.data(), y2.data(), taps.data(), g);
    cpu::max_pool2d_2x2_bwd_kernel(y_ref.data(), taps.data(), dx.data(), g);
    cpu::max_pool2d_bwd_ref(y_ref.data(), idx_ref.data(), dx_ref.data(), q.planes, q.H * q.W, q.OH * q.OW);
    if (y2 != y_ref || dx != dx_ref) {
      std::fprintf(stderr, "bench_pool: the 2x2 taps kernels disagree with the reference\n");
      std::abort();
    }
  }
}

const Pool& pool_of(int64_t which) {
  static const Pool pools[2] = {make_pool(256, 32, 28, 28, 2, 2, 0, false), make_pool(256, 64, 14, 14, 2, 2, 0, false)};
  return pools[which];
}

void set_bytes(benchmark::State& st, double bytes) {
  st.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_nchw(benchmark::State& st, bool with_idx) {
  const Pool& q = pool_of(st.range(0));
  set_num_threads(int(st.range(1)));
  const Pool2dGeom g = q.geom(false);
  const std::vector<float> x = random_floats(q.planes * q.H * q.W, 1);
  std::vector<float> y(size_t(q.planes * q.OH * q.OW));
  std::vector<int64_t> idx(with_idx ? y.size() : 0);
  for (auto _ : st) cpu::max_pool2d_fwd_kernel(x.data(), y.data(), with_idx ? idx.data() : nullptr, g);
  set_bytes(st, 4.0 * double(x.size() + y.size()) + 8.0 * double(idx.size()));
}

void BM_nchw_eval(benchmark::State& st) { BM_nchw(st, false); }
void BM_nchw_train(benchmark::State& st) { BM_nchw(st, true); }

void BM_nchw_train_taps(benchmark::State& st) {
  const Pool& q = pool_of(st.range(0));
  set_num_threads(int(st.range(1)));
  const Pool2dGeom g = q.geom(false);
  const std::vector<float> x = random_floats(q.planes * q.H * q.W, 1);
  std::vector<float> y(size_t(q.planes * q.OH * q.OW));
  std::vector<uint8_t> taps(y.size());
  for (auto _ : st) cpu::max_pool2d_2x2_fwd_kernel(x.data(), y.data(), taps.data(), g);
  set_bytes(st, 4.0 * double(x.size() + y.size()) + double(taps.size()));
}

void BM_nchw_3x3s2(benchmark::State& st) {
  const Pool& p = pool_of(st.range(0));
  const Pool q = make_pool(p.planes / p.C, p.C, p.H, p.W, 3, 2, 1, false);
  set_num_threads(int(st.range(1)));
  const Pool2dGeom g = q.geom(false);
  const std::vector<float> x = random_floats(q.planes * q.H * q.W, 1);
  std::vector<float> y(size_t(q.planes * q.OH * q.OW));
  for (auto _ : st) cpu::max_pool2d_fwd_kernel(x.data(), y.data(), static_cast<int64_t*>(nullptr), g);
  set_bytes(st, 4.0 * double(x.size() + y.size()));
}

void BM_nhwc_eval(benchmark::State& st) {
  const Pool& q = pool_of(st.range(0));
  set_num_threads(int(st.range(1)));
  const Pool2dGeom g = q.geom(true);
  const std::vector<float> x = random_floats(q.planes * q.H * q.W, 1);
  std::vector<float> y(size_t(q.planes * q.OH * q.OW));
  for (auto _ : st) cpu::max_pool2d_fwd_nhwc_kernel(x.data(), y.data(), static_cast<int64_t*>(nullptr), q.C, g);
  set_bytes(st, 4.0 * double(x.size() + y.size()));
}

void BM_bwd(benchmark::State& st, bool channels_last) {
  const Pool& q = pool_of(st.range(0));
  set_num_threads(int(st.range(1)));
  const Pool2dGeom g = q.geom(channels_last);
  const std::vector<float> x = random_floats(q.planes * q.H * q.W, 1);
  std::vector<float> y(size_t(q.planes * q.OH * q.OW)), dx(x.size());
  std::vector<int64_t> idx(y.size());
  if (channels_last) cpu::max_pool2d_fwd_nhwc_kernel(x.data(), y.data(), idx.data(), q.C, g);
  else cpu::max_pool2d_fwd_kernel(x.data(), y.data(), idx.data(), g);
  const int64_t in_plane = q.H * q.W, out_plane = q.OH * q.OW;
  for (auto _ : st) {
    if (channels_last)
      cpu::max_pool2d_bwd_nhwc_kernel(y.data(), idx.data(), dx.data(), q.planes / q.C, q.C, in_plane, out_plane);
    else cpu::max_pool2d_bwd_kernel(y.data(), idx.data(), dx.data(), q.planes, in_plane, out_plane);
  }
  set_bytes(st, 4.0 * double(y.size() + dx.size()) + 8.0 * double(idx.size()));
}

void BM_nchw_bwd(benchmark::State& st) { BM_bwd(st, false); }
void BM_nhwc_bwd(benchmark::State& st) { BM_bwd(st, true); }

void BM_nchw_bwd_taps(benchmark::State& st) {
  const Pool& q = pool_of(st.range(0));
  set_num_threads(int(st.range(1)));
  const Pool2dGeom g = q.geom(false);
  const std::vector<float> x = random_floats(q.planes * q.H * q.W, 1);
  std::vector<float> y(size_t(q.planes * q.OH * q.OW)), dx(x.size());
  std::vector<uint8_t> taps(y.size());
  cpu::max_pool2d_2x2_fwd_kernel(x.data(), y.data(), taps.data(), g);
  for (auto _ : st) cpu::max_pool2d_2x2_bwd_kernel(y.data(), taps.data(), dx.data(), g);
  set_bytes(st, 4.0 * double(y.size() + dx.size()) + double(taps.size()));
}

void args(benchmark::internal::Benchmark* b) {
  for (int which : {0, 1})
    for (int threads : {1, 2}) b->Args({which, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_nchw_eval)->Apply(args);
BENCHMARK(BM_nchw_train)->Apply(args);
BENCHMARK(BM_nchw_train_taps)->Apply(args);
BENCHMARK(BM_nchw_3x3s2)->Apply(args);
BENCHMARK(BM_nhwc_eval)->Apply(args);
BENCHMARK(BM_nchw_bwd)->Apply(args);
BENCHMARK(BM_nchw_bwd_taps)->Apply(args);
BENCHMARK(BM_nhwc_bwd)->Apply(args);

}  // namespace

int main(int argc, char** argv) {
  check();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
