// The conv2d lab: forward + backward (dx, dw, db) of the flagship's 3x3 and 1x1 layers, f32, batch 128.
//
// Ladder (GFLOP/s of forward + backward, counted as 3 x the forward's nominal 2 B Cout Cin kH kW OH OW
// flops, padding taps included; 1 thread, process CPU time on the shared dev machine: AMD EPYC
// Zen 3, AVX2+FMA, a pure-FMA loop reaches ~101 GFLOP/s per core; layers 16->32 3x3 stride 2 at
// 28x28 / 64->64 3x3 at 7x7 / 128->128 3x3 at 4x4; +-15%, the machine is shared):
//   v0 ref       the 7-loop references (cpu::conv2d_*_ref), sums in double          ~0.4 / ~0.4 / ~0.4
//   v1 per-image im2col, then one cpu::gemm per image for out, dw and dcol, col2im:
//                a 4x4 map is a 16-column GEMM, and col^T is packed with a strided
//                gather for dw                                                       ~30 / ~30 / ~23
//   v2 im2col    shipped ConvAlgo::im2col: images batched so a GEMM has ~1024
//                columns, col buffer capped at 2 MiB (kernels/cpu/conv.hpp); the
//                GEMM's packing of col is now half the time                          ~23 / ~36 / ~48
//   v3 direct    shipped ConvAlgo::direct: NHWC, 6 pixels x 16 channels register
//                tiles fed by pointers, no im2col or packing of the pixels; pixels
//                grouped by valid taps, so padding taps are skipped (which is how a
//                4x4 map beats the FMA peak in nominal flops) (conv_direct.hpp)   ~46-53 / ~88-95 / ~79-102
//   v4 channels-last  shipped direct path on a channels-last x, out, dout, dx (issue 4): no
//                NCHW <-> NHWC transposes (7.4% of the cnn's training profile); measured with
//                2 threads on a machine at load 7-12 (6 helpers): per pass fwd / dx / dw GFLOP/s,
//                NCHW -> channels-last, 32->32 28x28: 19.0/17.1/17.9 -> 19.8/19.3/22.3;
//                64->64 14x14: 21.2/22.2/20.5 -> 28.6/23.2/24.9; 256->256 7x7: 24.8/23.9/14.8 ->
//                28.9/28.7/15.4; 128->128 14x14 and 512->512 4x4 equal (noise +-20%)
//   v5 stems     1-input-channel convs (conv_stem_fwd/_dw): 3 pixels x 32 channels register
//                tiles for channels-last out and a stride along W (the depthwise row loops were
//                scalar there): 1->32 28x28 stride 2, B 64, fwd 0.4-0.7 -> 7-12 (NCHW) and 18-22
//                (channels-last) GFLOP/s; dw ~0.6 -> 18-20 (channels-last)
//   v6 groups    conv_direct_sweep's groups of tiles (pixels that go through every output block before
//                the next group) grow from 8 to up to 32 tiles when the weights exceed L2: 512->512 at
//                3x3 streamed 9.4 MB of weights from L3 per 48 pixels; fwd 17-20% faster there, 256->512
//                at 7x7 ~5%, others equal (2 threads, batch 256, in-process A/B; bench/README.md)
//   v7 AVX-512   first run on AVX-512 (Ice Lake SP, zmm FMA peak ~155 GFLOP/s per core measured): the
//                forward / dx tile stays 14 x 32 (12 x 32, 6 x 64, 28 x 16 lost); dw takes 8 x 32 tiles
//                where 14 rows would round Cin up by > 1/8, 6 x 64 where Cout is a multiple of 64, and
//                256-pixel blocks when its partial exceeds L2: dw 11-24% faster on 16-32 channel inputs,
//                11-19% on all of ResNet-9's layers (1 thread, in-process A/B; bench/README.md)
//   v8 narrow    AVX-512, fashion_resnet's 16-channel layers (batch 256, 2 threads, process CPU time,
//                in-process A/B against v7 at load ~3.4): dx into 16 channels takes 12 x 16 tiles (14 x
//                32 computed 16 padding channels): 16->32 3x3 stride 2 at 28x28 dx 27 -> 29-31, bwd
//                (dx + dw) 31 -> 34 (1.13-1.20x); a 1x1 NCHW forward from <= 32 channels goes to im2col
//                + GEMM (conv2d_choose): 16->32 at 14x14 fwd 11 -> 20 (1.78x), 32->64 at 7x7 1.1-1.2x.
//                conv2d_choose re-measured on AVX-512: direct beats im2col on every other pass of the
//                model's layers (3x3: 1.3-4.5x; 1x1 dw 1.8-2.8x; 64->128 1x1 all passes). The 1->16
//                stem at 28x28 (depthwise loops): fwd 4 rows x 2 vectors with masked tail stores
//                9.7 -> 17.7 (1.85-2.2x), dw's rows in one call with a masked tail load 10.3 -> 16.5
//                (1.6-1.8x)
// PyTorch 1.13 (oneDNN), same layers, 1 thread, process CPU time:                        ~53 / ~68 / ~78
// 2 threads, wall clock, quiet machine: v2 im2col ~38 / ~48 / ~55, v3 direct ~70-85 / ~117-170 /
// ~155-180 (PyTorch ~80 / ~105 / ~140). Read ratios: the machine is shared. The batch is cut into
// chunk groups that the threads take from a counter. bench/peers/run_ops.sh times the op (with
// autograd) against PyTorch in one run. Every version is checked against the reference on a small
// problem before anything is timed.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/conv.hpp"
#include "strata/core/parallel.hpp"

namespace {

using namespace strata::cpu;

struct Problem {
  Conv2dParams p;
  ConvStrides xs;
  std::vector<float> x, w, b, g, out, dx, dw, db;
  explicit Problem(const Conv2dParams& q)
      : p(q), xs{q.Cin * q.H * q.W, q.H * q.W, q.W, 1}, x(size_t(q.B * q.Cin * q.H * q.W)),
        w(size_t(q.Cout * q.Cin / q.groups * q.kH * q.kW)), b(size_t(q.Cout)),
        g(size_t(q.B * q.Cout * q.OH() * q.OW())), out(g.size()), dx(x.size()), dw(w.size()), db(b.size()) {
    std::mt19937 gen(1);
    std::uniform_real_distribution<float> d(-1, 1);
    for (auto* v : {&x, &w, &b, &g})
      for (float& e : *v) e = d(gen);
  }
  double flops() const { return 3.0 * 2.0 * double(p.B * p.Cout * p.Cin / p.groups * p.kH * p.kW * p.OH() * p.OW()); }
};

using Fn = void (*)(Problem&);

void v0_ref(Problem& q) {
  conv2d_fwd_ref<float>(q.p, q.x.data(), q.xs, q.w.data(), q.b.data(), q.out.data());
  conv2d_bwd_data_ref<float>(q.p, q.g.data(), q.w.data(), q.dx.data());
  conv2d_bwd_weight_ref<float>(q.p, q.x.data(), q.xs, q.g.data(), q.dw.data(), q.db.data());
}

// v1: one image at a time: col[K][OH OW] by im2col, then a GEMM each for out, dw (+=) and dcol
void v1_per_image(Problem& q) {
  const Conv2dParams& p = q.p;
  const int64_t K = p.Cin * p.kH * p.kW, ohw = p.OH() * p.OW();
  std::vector<float> col(size_t(K * ohw));
  std::fill(q.dw.begin(), q.dw.end(), 0.f);
  std::fill(q.dx.begin(), q.dx.end(), 0.f);
  for (int64_t n = 0; n < p.B; ++n) {
    float* o = q.out.data() + n * p.Cout * ohw;
    const float* g = q.g.data() + n * p.Cout * ohw;
    detail::conv_im2col<float>(p, q.x.data(), q.xs, n, 1, 0, col.data());
    gemm<float>(p.Cout, ohw, K, 1.f, q.w.data(), K, 1, col.data(), ohw, 1, 0.f, o, ohw, 1);
    for (int64_t c = 0; c < p.Cout; ++c)
      for (int64_t k = 0; k < ohw; ++k) o[c * ohw + k] += q.b[size_t(c)];
    gemm<float>(p.Cout, K, ohw, 1.f, g, ohw, 1, col.data(), 1, ohw, 1.f, q.dw.data(), K, 1);
    gemm<float>(K, ohw, p.Cout, 1.f, q.w.data(), 1, K, g, ohw, 1, 0.f, col.data(), ohw, 1);
    detail::conv_col2im<float>(p, col.data(), n, 1, 0, q.dx.data());
  }
  for (int64_t c = 0; c < p.Cout; ++c) {
    double s = 0;
    for (int64_t n = 0; n < p.B; ++n)
      for (int64_t k = 0; k < ohw; ++k) s += q.g[size_t((n * p.Cout + c) * ohw + k)];
    q.db[size_t(c)] = float(s);
  }
}

/// The shipped path with x, out, dout and dx channels-last (q.x and q.g read as NHWC).
template <ConvAlgo A>
void shipped_channels_last(Problem& q) {
  const Conv2dParams& p = q.p;
  const ConvStrides xs{p.H * p.W * p.Cin, 1, p.W * p.Cin, p.Cin};
  conv2d_fwd_kernel<float>(p, q.x.data(), xs, q.w.data(), q.b.data(), q.out.data(), A, {.channels_last = true});
  conv2d_bwd_kernel<float>(p, q.x.data(), xs, q.w.data(), q.g.data(), q.dx.data(), q.dw.data(), q.db.data(), A, true);
}

template <ConvAlgo A>
void shipped(Problem& q) {
  conv2d_fwd_kernel<float>(q.p, q.x.data(), q.xs, q.w.data(), q.b.data(), q.out.data(), A);
  conv2d_bwd_kernel<float>(q.p, q.x.data(), q.xs, q.w.data(), q.g.data(), q.dx.data(), q.dw.data(), q.db.data(), A);
}

/// The flagship's layers (batch 128): stem, the ResBlocks' 3x3 convs and 1x1 shortcuts.
Conv2dParams layer(int64_t i, int64_t B = 128) {
  struct L { int64_t cin, cout, h, k, s; };
  static const L ls[] = {{1, 16, 28, 3, 1},  {16, 32, 28, 3, 2}, {32, 32, 14, 3, 1},  {16, 32, 14, 1, 1},
                         {32, 64, 14, 3, 2}, {64, 64, 7, 3, 1},  {32, 64, 7, 1, 1},   {64, 128, 7, 3, 2},
                         {128, 128, 4, 3, 1}, {64, 128, 4, 1, 1}};
  const L& l = ls[i];
  return {.B = B, .Cin = l.cin, .H = l.h, .W = l.h, .Cout = l.cout, .kH = l.k, .kW = l.k, .stride = {l.s, l.s},
          .padding = {l.k / 2, l.k / 2}};
}

/// Max |version - reference| over out, dx, dw, db on a small odd problem; aborts when a version is wrong.
void check(const char* name, Fn fn) {
  Conv2dParams p = layer(1, 3);
  p.H = 13, p.W = 11;
  Problem want(p), got(p);
  v0_ref(want);
  fn(got);
  double err = 0;
  for (auto [a, b] : {std::pair{&got.out, &want.out}, {&got.dx, &want.dx}, {&got.dw, &want.dw}, {&got.db, &want.db}})
    for (size_t i = 0; i < a->size(); ++i) err = std::max(err, double(std::abs((*a)[i] - (*b)[i])));
  std::printf("check %-12s max |err| = %.2e\n", name, err);
  if (!(err < 1e-3)) std::abort();
}

void run(benchmark::State& state, Fn fn, int threads, int64_t batch = 128) {
  strata::set_num_threads(threads);
  Problem q(layer(state.range(0), batch));
  for (auto _ : state) {
    fn(q);
    benchmark::DoNotOptimize(q.dw.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(q.flops() * double(state.iterations()), benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
  strata::set_num_threads(strata::detail::default_num_threads());
}

void BM_v0_ref(benchmark::State& s) { run(s, v0_ref, 1, 2); }
void BM_v1_per_image(benchmark::State& s) { run(s, v1_per_image, 1); }
void BM_v2_im2col(benchmark::State& s) { run(s, shipped<ConvAlgo::im2col>, 1); }
void BM_v3_direct(benchmark::State& s) { run(s, shipped<ConvAlgo::direct>, 1); }
void BM_v2_im2col_2threads(benchmark::State& s) { run(s, shipped<ConvAlgo::im2col>, 2); }
void BM_v3_direct_2threads(benchmark::State& s) { run(s, shipped<ConvAlgo::direct>, 2); }
void BM_shipped_auto_2threads(benchmark::State& s) { run(s, shipped<ConvAlgo::automatic>, 2); }
void BM_v4_channels_last_2threads(benchmark::State& s) { run(s, shipped_channels_last<ConvAlgo::automatic>, 2); }

}  // namespace

// layers 1, 5, 8: 16->32 s2 at 28x28, 64->64 at 7x7, 128->128 at 4x4 (DenseRange(0, 9) for all ten)
BENCHMARK(BM_v0_ref)->Arg(1)->Arg(5)->Arg(8)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();
BENCHMARK(BM_v1_per_image)->Arg(1)->Arg(5)->Arg(8)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();
BENCHMARK(BM_v2_im2col)->Arg(1)->Arg(5)->Arg(8)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();
BENCHMARK(BM_v3_direct)->Arg(1)->Arg(5)->Arg(8)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();
BENCHMARK(BM_v2_im2col_2threads)->Arg(1)->Arg(5)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_v3_direct_2threads)->Arg(1)->Arg(5)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_shipped_auto_2threads)->DenseRange(0, 9)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_v4_channels_last_2threads)->DenseRange(0, 9)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  check("v1 per-image", v1_per_image);
  check("v2 im2col", shipped<ConvAlgo::im2col>);
  check("v3 direct", shipped<ConvAlgo::direct>);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
