// The direct conv's bf16 pairs tiles (STRATA_CONV_BF16_PAIRS, kernels/cpu/conv_direct.hpp: autocast's
// forward and dx on channel pairs, dw on pixel pairs, vdpbf16ps), run with the instruction emulated
// (emulated_dpbf16.hpp): conv2d's kernels with round_bf16 on the direct path against the references on
// bf16-rounded copies, forward (bias, ReLU, NCHW and channels-last out), dx, dw (with dx and alone)
// and db; odd channel counts (a zero pads the last pair), one-vector outputs (the narrow tile),
// strides, dilation, a strided view and a channels-last x.
// Called from gemm_bf16_emulated.cpp's main.
#include "emulated_dpbf16.hpp"  // first: the emulated vdpbf16ps

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cpu/conv.hpp"

#if !STRATA_CONV_BF16_PAIRS
#error "the pairs tile is off in this build"
#endif

using namespace strata;

namespace {

struct ConvCase {
  int64_t B, Cin, H, W, Cout, k, stride, pad, dil;
  int layout;  // 0 NCHW, 1 channels-last x, 2 a strided view (every other column of a wider x)
  bool bias;
};

float rounded(float v) { return float(bf16(v)); }

int compare(const char* what, const ConvCase& c, bool out_cl, const std::vector<float>& got,
            const std::vector<float>& want, int64_t terms) {
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    // the products are exact in float; only the float sums round (<= terms ulps of the partial sums)
    const double tol = 2e-6 * double(terms + 1) + 1e-5 * std::fabs(double(want[i]));
    if (!(std::fabs(double(got[i]) - double(want[i])) <= tol) && ++bad <= 3)
      std::printf("FAIL conv pairs %s B=%ld Cin=%ld %ldx%ld Cout=%ld k=%ld s=%ld p=%ld d=%ld layout=%d out_cl=%d: [%zu] = "
                  "%.9g, want %.9g\n", what, long(c.B), long(c.Cin), long(c.H), long(c.W), long(c.Cout), long(c.k),
                  long(c.stride), long(c.pad), long(c.dil), c.layout, int(out_cl), i, got[i], want[i]);
  }
  return bad;
}

int check(const ConvCase& c, std::mt19937& g) {
  std::uniform_real_distribution<float> d(-1, 1);
  cpu::Conv2dParams p{.B = c.B, .Cin = c.Cin, .H = c.H, .W = c.W, .Cout = c.Cout, .kH = c.k, .kW = c.k,
                      .stride = {c.stride, c.stride}, .padding = {c.pad, c.pad}, .dilation = {c.dil, c.dil}};
  const int64_t OH = p.OH(), OW = p.OW(), ohw = OH * OW, HW = c.H * c.W, taps = c.k * c.k;
  // x: the values xv[n][ch][h][w] stored in the case's layout
  std::vector<float> xv(size_t(c.B * c.Cin * HW)), w(size_t(c.Cout * c.Cin * taps)), b(size_t(c.Cout));
  std::vector<float> gv(size_t(c.B * c.Cout * ohw));
  for (float& v : xv) v = d(g);
  for (float& v : w) v = d(g);
  for (float& v : b) v = d(g);
  for (float& v : gv) v = d(g);
  const int64_t wide = c.layout == 2 ? 2 * c.W : c.W;
  std::vector<float> xstore(size_t(c.B * c.Cin * c.H * wide));
  cpu::ConvStrides xs = c.layout == 1 ? cpu::ConvStrides{HW * c.Cin, 1, c.W * c.Cin, c.Cin}
                                      : cpu::ConvStrides{c.Cin * c.H * wide, c.H * wide, wide, c.layout == 2 ? 2 : 1};
  for (int64_t n = 0; n < c.B; ++n)
    for (int64_t ch = 0; ch < c.Cin; ++ch)
      for (int64_t q = 0; q < HW; ++q)
        xstore[size_t(n * xs[0] + ch * xs[1] + q / c.W * xs[2] + q % c.W * xs[3])] = xv[size_t((n * c.Cin + ch) * HW + q)];
  // the references' operands, rounded to bf16; dense NCHW
  std::vector<float> xr = xv, wr = w, gr = gv;
  for (float& v : xr) v = rounded(v);
  for (float& v : wr) v = rounded(v);
  for (float& v : gr) v = rounded(v);
  const cpu::ConvStrides xrs{c.Cin * HW, HW, c.W, 1};
  int bad = 0;
  for (bool out_cl : {false, true}) {
    const bool relu = out_cl;
    std::vector<float> o(gv.size()), want(gv.size());
    p.round_bf16 = true;
    const long before = dpbf16_calls.load();
    cpu::conv2d_fwd_kernel<float>(p, xstore.data(), xs, w.data(), c.bias ? b.data() : nullptr, o.data(),
                                  cpu::ConvAlgo::direct, {.channels_last = out_cl, .relu = relu});
    const long fwd_calls = dpbf16_calls.load() - before;
    p.round_bf16 = false;
    cpu::conv2d_fwd_ref<float>(p, xr.data(), xrs, wr.data(), c.bias ? b.data() : nullptr, want.data());
    std::vector<float> ref(want.size());  // want in the kernel's out layout, ReLU applied
    for (int64_t n = 0; n < c.B; ++n)
      for (int64_t o2 = 0; o2 < c.Cout; ++o2)
        for (int64_t s = 0; s < ohw; ++s) {
          const float v = want[size_t((n * c.Cout + o2) * ohw + s)];
          ref[size_t(out_cl ? (n * ohw + s) * c.Cout + o2 : (n * c.Cout + o2) * ohw + s)] = relu && v < 0 ? 0.f : v;
        }
    bad += compare("fwd", c, out_cl, o, ref, c.Cin * taps);
    if (fwd_calls == 0 && ++bad) std::printf("FAIL conv pairs fwd: no vdpbf16ps ran\n");
    // backward: dout in the same layout as out; dx in x's layout when out_cl (channels-last dx), else NCHW
    std::vector<float> gin(gv.size());
    for (int64_t n = 0; n < c.B; ++n)
      for (int64_t o2 = 0; o2 < c.Cout; ++o2)
        for (int64_t s = 0; s < ohw; ++s)
          gin[size_t(out_cl ? (n * ohw + s) * c.Cout + o2 : (n * c.Cout + o2) * ohw + s)] = gv[size_t((n * c.Cout + o2) * ohw + s)];
    std::vector<float> dx(xv.size()), dw(w.size()), db(b.size()), dx_want(xv.size()), dw_want(w.size());
    p.round_bf16 = true;
    const long before_bwd = dpbf16_calls.load();
    cpu::conv2d_bwd_kernel<float>(p, xstore.data(), xs, w.data(), gin.data(), dx.data(), dw.data(), db.data(),
                                  cpu::ConvAlgo::direct, out_cl);
    const long bwd_calls = dpbf16_calls.load() - before_bwd;
    p.round_bf16 = false;
    cpu::conv2d_bwd_data_ref<float>(p, gr.data(), wr.data(), dx_want.data());
    cpu::conv2d_bwd_weight_ref<float>(p, xr.data(), xrs, gr.data(), dw_want.data(), nullptr);
    std::vector<float> dx_ref(dx.size()), db_ref(b.size(), 0.f);
    for (int64_t n = 0; n < c.B; ++n)
      for (int64_t ch = 0; ch < c.Cin; ++ch)
        for (int64_t q = 0; q < HW; ++q)
          dx_ref[size_t(out_cl ? (n * HW + q) * c.Cin + ch : (n * c.Cin + ch) * HW + q)] = dx_want[size_t((n * c.Cin + ch) * HW + q)];
    for (int64_t o2 = 0; o2 < c.Cout; ++o2) {
      double s = 0;  // db sums dout unrounded
      for (int64_t n = 0; n < c.B; ++n)
        for (int64_t q = 0; q < ohw; ++q) s += gv[size_t((n * c.Cout + o2) * ohw + q)];
      db_ref[size_t(o2)] = float(s);
    }
    bad += compare("dx", c, out_cl, dx, dx_ref, c.Cout * taps);
    bad += compare("dw", c, out_cl, dw, dw_want, c.B * ohw);
    bad += compare("db", c, out_cl, db, db_ref, c.B * ohw);
    if (bwd_calls == 0 && ++bad) std::printf("FAIL conv pairs dx: no vdpbf16ps ran\n");
    // dw alone (a first layer's backward) runs on the pixel pairs too
    std::vector<float> dw2(w.size());
    p.round_bf16 = true;
    const long before_dw = dpbf16_calls.load();
    cpu::conv2d_bwd_kernel<float>(p, xstore.data(), xs, w.data(), gin.data(), nullptr, dw2.data(), nullptr,
                                  cpu::ConvAlgo::direct, out_cl);
    if (dpbf16_calls.load() == before_dw && ++bad) std::printf("FAIL conv pairs dw: no vdpbf16ps ran\n");
    bad += compare("dw alone", c, out_cl, dw2, dw_want, c.B * ohw);
  }
  return bad;
}

}  // namespace

/// Runs the cases at 1 and 2 threads; returns the number of wrong values (and missing paths).
int check_conv_pairs() {
  const ConvCase cases[] = {
      // B  Cin  H   W  Cout k  s  p  d  layout bias
      {3, 16, 9, 7, 32, 3, 1, 1, 1, 0, true},    // the 14 x 32 tile, dx into 16 channels: the narrow tile
      {2, 3, 8, 9, 16, 3, 1, 1, 1, 0, false},    // odd Cin: the last pair padded; one-vector out (narrow)
      {2, 33, 6, 6, 48, 3, 2, 1, 1, 1, true},    // channels-last x, odd Cin, Cout padded to 64, stride 2
      {2, 32, 7, 7, 64, 3, 1, 1, 1, 1, true},    // channels-last x read as is (even), out written in place
      {3, 8, 11, 10, 9, 3, 1, 2, 2, 2, false},   // strided view of x, dilation 2, odd Cout (dx's pairs padded)
      {2, 20, 5, 6, 40, 1, 1, 0, 1, 0, true},    // 1x1
      {4, 17, 13, 12, 33, 5, 2, 2, 1, 0, true},  // 5x5, stride 2, odd both
  };
  std::mt19937 g(5);
  int bad = 0, n = 0;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const ConvCase& c : cases) bad += check(c, g), ++n;
  }
  std::printf("conv2d direct, bf16 pairs tile (AVX512-BF16 path, emulated vdpbf16ps): %d cases, %d wrong values\n",
              n, bad);
  return bad;
}
