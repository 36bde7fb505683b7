// conv2d: the fast kernels (im2col + GEMM with batched images, 1x1 without im2col, the NHWC direct
// path, depthwise loops; each forced on every case it applies to) against the 7-loop references
// for forward, dx, dw and db, over strides, padding, dilation, groups, odd and non-square sizes,
// batch 1, many tiny maps, input views (permuted, sliced, channels-last) and 1, 2 and 3 threads; a
// PyTorch golden case; f64 gradcheck of x, w, b; f16/bf16; which gradients are computed; errors.
#include <catch2/catch.hpp>

#include <bit>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>

#include "helpers.hpp"
#include "strata/tensor/conv.hpp"

namespace test_conv {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

struct Case {
  int64_t B, Cin, H, W, Cout, kH, kW;
  std::array<int64_t, 2> stride, padding, dilation;
  int64_t groups;
  int layout;  // x: 0 contiguous, 1 permuted strided view (th::random), 2 sliced along W, 3 channels-last
  bool bias;
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << "x [" << c.B << ", " << c.Cin << ", " << c.H << ", " << c.W << "] w [" << c.Cout << ", "
            << c.Cin / c.groups << ", " << c.kH << ", " << c.kW << "] stride (" << c.stride[0] << ", " << c.stride[1]
            << ") pad (" << c.padding[0] << ", " << c.padding[1] << ") dil (" << c.dilation[0] << ", " << c.dilation[1]
            << ") groups " << c.groups << " layout " << c.layout << (c.bias ? " bias" : "");
}

Tensor make_x(const Case& c, DType dt) {
  switch (c.layout) {
    case 1: return th::random({c.B, c.Cin, c.H, c.W}, dt, true);
    case 2: return th::random({c.B, c.Cin, c.H, c.W + 3}, dt).slice(3, 1, c.W + 1);
    case 3: return th::random({c.B, c.H, c.W, c.Cin}, dt).permute({0, 3, 1, 2});
    default: return th::random({c.B, c.Cin, c.H, c.W}, dt);
  }
}

/// v [B][C][HW] -> [B][HW][C] and back.
std::vector<double> to_nhwc(const std::vector<double>& v, int64_t B, int64_t C, int64_t HW) {
  std::vector<double> r(v.size());
  for (int64_t n = 0; n < B; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < HW; ++k) r[size_t((n * HW + k) * C + c)] = v[size_t((n * C + c) * HW + k)];
  return r;
}
std::vector<double> from_nhwc(const std::vector<double>& v, int64_t B, int64_t C, int64_t HW) {
  std::vector<double> r(v.size());
  for (int64_t n = 0; n < B; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < HW; ++k) r[size_t((n * C + c) * HW + k)] = v[size_t((n * HW + k) * C + c)];
  return r;
}

std::vector<double> vals(const std::vector<double>& v) { return v; }
template <class T>
std::vector<double> vals(const std::vector<T>& v) { return std::vector<double>(v.begin(), v.end()); }

/// conv2d and conv2d_bwd against the reference loops, in dtype T, under 1, 2 and 3 threads.
template <class T>
void check_case(const Case& c) {
  const DType dt = dtype_v<T>;
  const Tensor x = make_x(c, dt), w = th::random({c.Cout, c.Cin / c.groups, c.kH, c.kW}, dt);
  const Tensor b = c.bias ? th::random({c.Cout}, dt) : Tensor();
  const cpu::Conv2dParams p{.B = c.B, .Cin = c.Cin, .H = c.H, .W = c.W, .Cout = c.Cout, .kH = c.kH, .kW = c.kW,
                            .stride = c.stride, .padding = c.padding, .dilation = c.dilation, .groups = c.groups};
  const Shape out_shape{c.B, c.Cout, p.OH(), p.OW()};
  const Tensor g = th::random(out_shape, dt);
  // references, on a contiguous copy of x
  const Tensor xc = contiguous(x);
  const cpu::ConvStrides xcs{xc.stride(0), xc.stride(1), xc.stride(2), xc.stride(3)};
  std::vector<T> out_ref(size_t(numel(out_shape))), dx_ref(size_t(x.numel())), dw_ref(size_t(w.numel())),
      db_ref(size_t(c.Cout));
  cpu::conv2d_fwd_ref<T>(p, xc.data_ptr<T>(), xcs, w.data_ptr<T>(), c.bias ? b.data_ptr<T>() : nullptr, out_ref.data());
  cpu::conv2d_bwd_data_ref<T>(p, g.data_ptr<T>(), w.data_ptr<T>(), dx_ref.data());
  cpu::conv2d_bwd_weight_ref<T>(p, xc.data_ptr<T>(), xcs, g.data_ptr<T>(), dw_ref.data(), db_ref.data());
  // tolerances grow with the number of terms summed
  const double eps = dt == DType::f64 ? 1e-13 : 2e-7;
  const double n_fwd = double(c.Cin / c.groups * c.kH * c.kW), n_w = double(c.B * p.OH() * p.OW());
  const double n_x = double(c.Cout / c.groups * c.kH * c.kW);
  const int saved = num_threads();
  const cpu::ConvStrides xs{x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
  const T* bp = c.bias ? b.data_ptr<T>() : nullptr;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::ostringstream os;
    os << c << " " << dt << " threads " << threads;
    // the op (automatic path)
    const Tensor out = conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups);
    REQUIRE(out.shape() == out_shape);
    th::check_close(th::values(out), vals(out_ref), eps * 8 * n_fwd, 1e-5, "out " + os.str());
    const std::vector<Tensor> grads = conv2d_bwd(g, x, w, p, {});
    th::check_close(th::values(grads[0]), vals(dx_ref), eps * 8 * n_x, 1e-5, "dx " + os.str());
    th::check_close(th::values(grads[1]), vals(dw_ref), eps * 8 * n_w, 1e-5, "dw " + os.str());
    th::check_close(th::values(grads[2]), vals(db_ref), eps * 8 * n_w, 1e-5, "db " + os.str());
    // every path that applies, through the kernels (x keeps its strides)
    for (cpu::ConvAlgo algo : {cpu::ConvAlgo::im2col, cpu::ConvAlgo::direct, cpu::ConvAlgo::depthwise}) {
      if (cpu::conv2d_choose(p, 0, algo) != algo) continue;
      const std::string what = os.str() + " algo " + std::to_string(int(algo));
      std::vector<T> o(out_ref.size()), dx(dx_ref.size()), dw(dw_ref.size());
      cpu::conv2d_fwd_kernel<T>(p, x.data_ptr<T>(), xs, w.data_ptr<T>(), bp, o.data(), algo);
      th::check_close(vals(o), vals(out_ref), eps * 8 * n_fwd, 1e-5, "out " + what);
      cpu::conv2d_bwd_kernel<T>(p, x.data_ptr<T>(), xs, w.data_ptr<T>(), g.data_ptr<T>(), dx.data(), nullptr, nullptr, algo);
      th::check_close(vals(dx), vals(dx_ref), eps * 8 * n_x, 1e-5, "dx alone " + what);
      cpu::conv2d_bwd_kernel<T>(p, x.data_ptr<T>(), xs, w.data_ptr<T>(), g.data_ptr<T>(), nullptr, dw.data(), nullptr, algo);
      th::check_close(vals(dw), vals(dw_ref), eps * 8 * n_w, 1e-5, "dw alone " + what);
      // the ReLU epilogue, NCHW and channels-last out; channels-last dout and dx
      std::vector<double> relu_ref = vals(out_ref);
      for (double& v : relu_ref) v = std::max(v, 0.0);
      cpu::conv2d_fwd_kernel<T>(p, x.data_ptr<T>(), xs, w.data_ptr<T>(), bp, o.data(), algo, {.relu = true});
      th::check_close(vals(o), relu_ref, eps * 8 * n_fwd, 1e-5, "relu out " + what);
      cpu::conv2d_fwd_kernel<T>(p, x.data_ptr<T>(), xs, w.data_ptr<T>(), bp, o.data(), algo,
                                {.channels_last = true, .relu = true});
      th::check_close(from_nhwc(vals(o), c.B, c.Cout, p.OH() * p.OW()), relu_ref, eps * 8 * n_fwd, 1e-5,
                      "channels-last relu out " + what);
      const std::vector<double> gl = to_nhwc(th::values(g), c.B, c.Cout, p.OH() * p.OW());
      const std::vector<T> gh(gl.begin(), gl.end());
      std::vector<T> db(db_ref.size());
      cpu::conv2d_bwd_kernel<T>(p, x.data_ptr<T>(), xs, w.data_ptr<T>(), gh.data(), dx.data(), dw.data(), db.data(), algo,
                                true);
      th::check_close(from_nhwc(vals(dx), c.B, c.Cin, c.H * c.W), vals(dx_ref), eps * 8 * n_x, 1e-5,
                      "channels-last dx " + what);
      th::check_close(vals(dw), vals(dw_ref), eps * 8 * n_w, 1e-5, "channels-last dw " + what);
      th::check_close(vals(db), vals(db_ref), eps * 8 * n_w, 1e-5, "channels-last db " + what);
    }
    if (conv2d_channels_last(x)) {  // the op keeps the layout: channels-last out, dx
      CHECK(conv2d_channels_last(out));
      const std::vector<Tensor> gl = conv2d_bwd(g, x, w, p, {}, true);
      CHECK(conv2d_channels_last(gl[0]));
      th::check_close(th::values(gl[0]), vals(dx_ref), eps * 8 * n_x, 1e-5, "channels-last op dx " + os.str());
      th::check_close(th::values(gl[1]), vals(dw_ref), eps * 8 * n_w, 1e-5, "channels-last op dw " + os.str());
    } else {
      CHECK(out.is_contiguous());
    }
  }
  set_num_threads(saved);
}

}  // namespace

TEST_CASE("conv2d fast kernels against the reference loops", "[conv]") {
  const std::vector<Case> cases = {
      // B Cin H W Cout kH kW stride padding dilation groups layout bias
      {2, 3, 7, 9, 4, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},     // plain 3x3, odd sizes
      {3, 4, 8, 8, 6, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, 1, true},     // stride 2, permuted strided x
      {2, 4, 9, 7, 4, 3, 2, {1, 2}, {2, 0}, {2, 1}, 2, 1, false},    // groups, dilation, non-square everything
      {2, 6, 6, 5, 9, 1, 1, {1, 1}, {0, 0}, {1, 1}, 3, 0, true},     // 1x1 on a small map (im2col is a copy)
      {2, 8, 32, 33, 5, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1, 0, true},   // 1x1 without im2col
      {2, 8, 32, 33, 6, 1, 1, {1, 1}, {0, 0}, {1, 1}, 2, 2, false},  // 1x1, sliced x: back to im2col
      {3, 4, 9, 9, 8, 1, 1, {2, 2}, {0, 0}, {1, 1}, 1, 3, true},     // strided 1x1 (a ResNet shortcut), channels-last
      {2, 5, 10, 11, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 5, 1, true},   // depthwise
      {3, 4, 11, 10, 4, 3, 5, {2, 3}, {2, 1}, {2, 1}, 4, 3, false},  // depthwise, strided, dilated, channels-last
      {2, 3, 6, 6, 6, 3, 3, {1, 1}, {1, 1}, {1, 1}, 3, 0, true},     // groups == Cin, two outputs each
      {1, 8, 40, 40, 16, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},  // batch 1, one large GEMM (splits itself)
      {37, 8, 4, 4, 12, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},   // many tiny maps: images batched into a GEMM
      {13, 6, 2, 2, 7, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 2, true},    // 2x2 maps, odd batch and channels
      {4, 64, 12, 12, 8, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, false}, // a col buffer at its cap
      {2, 3, 5, 4, 2, 5, 6, {1, 1}, {0, 1}, {1, 1}, 1, 0, true},     // kernel as large as the padded input: 1x1 out
      {2, 2, 9, 9, 3, 2, 2, {3, 3}, {0, 0}, {1, 1}, 1, 0, true},     // stride > kernel: pixels no tap reads
      {2, 3, 5, 5, 4, 3, 3, {1, 1}, {3, 4}, {1, 1}, 1, 1, true},     // padding > kernel: all-padding rows
      {1, 1, 28, 28, 8, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},   // a 1-channel stem
      // the NHWC direct path (one group, >= 8 channels each side): tile edges, odd channel counts
      {3, 8, 9, 7, 16, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},
      {5, 13, 6, 6, 9, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, 1, true},
      {4, 17, 7, 8, 33, 3, 2, {2, 1}, {0, 2}, {1, 2}, 1, 3, false},
      {2, 9, 11, 10, 20, 5, 3, {3, 2}, {2, 1}, {1, 1}, 1, 2, true},
      {7, 24, 2, 2, 40, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},
      {6, 10, 5, 5, 12, 1, 1, {2, 2}, {0, 0}, {1, 1}, 1, 0, true},
      {3, 12, 9, 9, 8, 2, 2, {3, 3}, {0, 0}, {1, 1}, 1, 1, false},
      {2, 8, 4, 5, 8, 3, 3, {1, 1}, {3, 2}, {2, 2}, 1, 0, true},
      // a 14x14 map (tiles of 6 inside a row) with a partial channel block (24 = 16 + 8); 1x1 output
      // maps (NCHW is NHWC there) with one and three output channels
      {2, 16, 14, 14, 24, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},
      {8, 9, 1, 1, 1, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1, 0, true},
      {7, 8, 3, 3, 3, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1, 1, false},
      // weights beyond L2 (553 KB in f32): groups of more than 8 tiles (99 pixels: 17 tiles)
      {11, 96, 3, 3, 160, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},
      // channels-last x on the direct path: all in place (Cin a multiple of MR, Cout of NR), x's
      // last image copied (Cin not a multiple of MR), stride 2; a channels-last 1-channel stem
      {3, 12, 6, 7, 32, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 3, true},
      {5, 16, 5, 5, 16, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, 3, true},
      {2, 1, 12, 11, 8, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, 3, true},
      // dw's tiles (conv_dw_mr; AVX-512: 8 channels for 32, 14 for 28 and 70, 6 x 64 for outputs
      // in 64s) on a channels-last x read in place, and through the copy with slack (70, 13)
      {3, 32, 5, 6, 32, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 3, false},
      {3, 28, 5, 6, 40, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 3, true},
      {2, 70, 4, 5, 24, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, false},
      {3, 13, 5, 6, 64, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},
      {2, 12, 6, 5, 128, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, 3, false},
      // stems (1 input channel) on their register tiles: partial vectors of channels, blocks of 32,
      // channels-last dout for dw; a 5x5 stem (dw through the depthwise loops)
      {3, 1, 9, 10, 21, 3, 3, {1, 2}, {1, 1}, {1, 1}, 1, 3, true},
      {2, 1, 8, 8, 40, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, 0, true},
      {2, 1, 9, 9, 16, 5, 5, {2, 2}, {2, 2}, {1, 1}, 1, 3, false},
  };
  for (const Case& c : cases) {
    check_case<float>(c);
    check_case<double>(c);
  }
}

TEST_CASE("conv2d gradients repeat bit for bit with several threads", "[conv]") {
  // chunks of images go to whichever thread is free; dw partials are per group, summed in order
  const int saved = num_threads();
  set_num_threads(2);
  const Tensor x = th::random({24, 16, 8, 8}), w = th::random({16, 16, 3, 3}), g = th::random({24, 16, 8, 8});
  const cpu::Conv2dParams p = conv2d_params(x, w, Tensor(), {1, 1}, {1, 1}, {1, 1}, 1);
  for (cpu::ConvAlgo algo : {cpu::ConvAlgo::direct, cpu::ConvAlgo::im2col}) {
    std::vector<float> first(size_t(w.numel())), again(first.size());
    cpu::conv2d_bwd_kernel<float>(p, x.data_ptr<float>(), {1024, 64, 8, 1}, w.data_ptr<float>(), g.data_ptr<float>(),
                                  nullptr, first.data(), nullptr, algo);
    for (int rep = 0; rep < 5; ++rep) {
      cpu::conv2d_bwd_kernel<float>(p, x.data_ptr<float>(), {1024, 64, 8, 1}, w.data_ptr<float>(), g.data_ptr<float>(),
                                    nullptr, again.data(), nullptr, algo);
      CHECK(again == first);
    }
  }
  set_num_threads(saved);
}

TEST_CASE("conv2d direct path: narrow tiles (16 channels), 1x1 forwards by GEMM, short depthwise rows", "[conv]") {
  // outputs of one vector (AVX-512: <= 16 f32 or 8 f64 channels: a forward's Cout, dx's Cin) take the
  // NARROW_MR x 1 vector tiles: stride 2, 1x1, partial tiles (pixel counts not a multiple of the
  // tile), channels-last x/out/dout/dx in place or through a scratch, 16 -> 32 as fashion_resnet's
  // first ResBlock; AVX2 and scalar builds run the same cases on their usual tiles
  const std::vector<Case> cases = {
      // B Cin H W Cout kH kW stride padding dilation groups layout bias
      {3, 16, 9, 11, 32, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, 0, false},  // dx narrow, stride 2, odd map
      {2, 16, 7, 5, 32, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1, 0, true},    // 1x1 shortcut: forward by GEMM
      {2, 32, 5, 6, 64, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1, 3, false},   // 1x1, channels-last: direct
      {3, 12, 6, 5, 16, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 3, true},    // fwd and dx narrow, channels-last
      {2, 9, 5, 7, 8, 3, 3, {2, 1}, {1, 0}, {1, 1}, 1, 0, true},      // narrow in f64 too (8 lanes)
      {5, 16, 4, 4, 16, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 3, false},   // 16 channels: one vector, 4x4 maps
      // depthwise rows of at most 2 vectors (AVX-512: 4 rows at a time, masked stores; the first
      // case's 1-channel stem at 28x28 too): 2 vectors (f32) dilated, 1 vector (f32) / 2 (f64)
      // with 3 rows left over
      {2, 3, 19, 21, 6, 3, 3, {1, 1}, {2, 2}, {2, 2}, 3, 0, true},
      {3, 2, 7, 9, 2, 3, 3, {1, 1}, {1, 1}, {1, 1}, 2, 1, false},
      {2, 4, 6, 7, 4, 2, 5, {1, 1}, {1, 2}, {1, 1}, 4, 0, false},  // dw's rows with a 2x5 kernel (run-time taps)
  };
  for (const Case& c : cases) {
    check_case<float>(c);
    check_case<double>(c);
  }
  // the choice: a narrow 1x1 forward on NCHW goes to im2col + GEMM on AVX-512 only; its backward,
  // a channels-last forward and a 64-channel 1x1 stay direct
  const cpu::Conv2dParams one{.B = 8, .Cin = 16, .H = 14, .W = 14, .Cout = 32};
  const cpu::Conv2dParams wide_in{.B = 8, .Cin = 64, .H = 4, .W = 4, .Cout = 128};
  const bool avx512 = cpu::detail::ConvBlocking<float>::wide;
  CHECK(cpu::conv2d_choose(one, 1e9, cpu::ConvAlgo::automatic, cpu::ConvPass::fwd) ==
        (avx512 ? cpu::ConvAlgo::im2col : cpu::ConvAlgo::direct));
  CHECK(cpu::conv2d_choose(one, 1e9, cpu::ConvAlgo::automatic, cpu::ConvPass::any) == cpu::ConvAlgo::direct);
  CHECK(cpu::conv2d_choose(wide_in, 1e9, cpu::ConvAlgo::automatic, cpu::ConvPass::fwd) == cpu::ConvAlgo::direct);
}

TEST_CASE("conv2d direct path: NCHW <-> NHWC transposes with tails, strides, bf16 rounding, bias", "[conv]") {
  // conv_to_nhwc / conv_from_nhwc bit for bit against plain loops: channels and pixels that are not
  // multiples of the vector blocks (AVX2 8 x 8, scalar tails; AVX-512 16 x 16, masked partial
  // blocks), full blocks only, rows padded (a run per row), a W stride (the scalar loop), NHWC rows
  // ld > C, rounding to bf16 (NaN and ties included), a bias on the way back
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-4, 4);
  for (const auto& [nb, C, H, W] : std::vector<std::array<int64_t, 4>>{
           {2, 32, 4, 8}, {2, 37, 5, 7}, {1, 16, 3, 16}, {3, 9, 2, 3}, {1, 64, 14, 14}, {2, 17, 1, 33}}) {
    for (int mode = 0; mode < 4; ++mode) {  // 0 contiguous, 1 rows padded, 2 W stride 2, 3 rounded
      const int64_t ws = mode == 1 ? W + 3 : W, s3 = mode == 2 ? 2 : 1, ld = C + (mode == 1 ? 5 : 0);
      const std::array<int64_t, 4> xs{C * H * ws * s3 + 7, H * ws * s3, ws * s3, s3};
      std::vector<float> x(size_t(nb * xs[0])), bias(static_cast<size_t>(C));
      for (float& v : x) v = u(gen);
      for (float& v : bias) v = u(gen);
      x[3] = std::numeric_limits<float>::quiet_NaN(), x[4] = std::bit_cast<float>(0x3f808000u);  // a tie
      const bool round = mode == 3;
      std::vector<float> xh(size_t(nb * H * W * ld), -1.f), want(xh.size(), -1.f);
      for (int64_t n = 0; n < nb; ++n)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t h = 0; h < H; ++h)
            for (int64_t w = 0; w < W; ++w) {
              const float v = x[size_t(n * xs[0] + c * xs[1] + h * xs[2] + w * xs[3])];
              want[size_t(((n * H + h) * W + w) * ld + c)] = round ? cpu::round_to_bf16(v) : v;
            }
      INFO("nb " << nb << " C " << C << " H " << H << " W " << W << " mode " << mode);
      cpu::detail::conv_to_nhwc<float>(x.data(), xs, nb, C, H, W, xh.data(), ld, round);
      CHECK(std::memcmp(xh.data(), want.data(), xh.size() * sizeof(float)) == 0);
      for (const float* b : {static_cast<const float*>(nullptr), static_cast<const float*>(bias.data())}) {
        std::vector<float> out(size_t(nb * C * H * W)), wout(out.size());
        for (int64_t n = 0; n < nb; ++n)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t k = 0; k < H * W; ++k)
              wout[size_t((n * C + c) * H * W + k)] = want[size_t((n * H * W + k) * ld + c)] + (b ? b[c] : 0.f);
        cpu::detail::conv_from_nhwc<float>(want.data(), ld, nb, C, H * W, b, out.data());
        CHECK(std::memcmp(out.data(), wout.data(), out.size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("conv2d matches PyTorch on a grouped, strided, dilated case", "[conv]") {
  // torch.nn.functional.conv2d(x, w, b, stride=(2,1), padding=(1,2), dilation=(1,2), groups=2) in float64,
  // x = (arange(240).reshape(2,4,5,6) % 7 - 3) / 4, w = (arange(72).reshape(6,2,3,2) % 5 - 2) / 3,
  // b = [0.5, -1, 0.25, 0, 1, -0.5], backward with dout = arange(288).reshape(y.shape) % 4 - 1 (torch 1.13).
  // Each row: sum, sum of squares, sum of v[i] * i, sum of v[i] * (i % 7) of out, dx, dw, db.
  const std::vector<std::vector<double>> want = {{10.3333333333, 282.652777778, 1900.66666667, 50.3333333333},
                                                 {-9.33333333333, 195.555555556, -1357.33333333, -4},
                                                 {-10.5, 267.75, -220.5, -61.25},
                                                 {144, 3456, 360, 360}};
  // v[i] = (i % m - c) / d for i < n, as a tensor of `shape`
  auto pattern = [](int64_t n, int64_t m, double c, double d, Shape shape, DType dt) {
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = (double(i % m) - c) / d;
    return th::make(v, std::move(shape), dt);
  };
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor x = pattern(240, 7, 3, 4, {2, 4, 5, 6}, dt).requires_grad_();
    Tensor w = pattern(72, 5, 2, 3, {6, 2, 3, 2}, dt).requires_grad_();
    Tensor b = th::make({0.5, -1, 0.25, 0, 1, -0.5}, {6}, dt).requires_grad_();
    const Tensor y = conv2d(x, w, b, {2, 1}, {1, 2}, {1, 2}, 2);
    REQUIRE(y.shape() == Shape{2, 6, 3, 8});
    y.backward(pattern(288, 4, 1, 1, {2, 6, 3, 8}, dt));
    const std::vector<Tensor> got = {y, x.grad(), w.grad(), b.grad()};
    for (size_t k = 0; k < got.size(); ++k) {
      const std::vector<double> v = th::values(got[k]);
      double s = 0, s2 = 0, si = 0, s7 = 0;
      for (size_t i = 0; i < v.size(); ++i) s += v[i], s2 += v[i] * v[i], si += v[i] * double(i), s7 += v[i] * double(i % 7);
      th::check_close({s, s2, si, s7}, want[k], 1e-4, 1e-5, "checksums of tensor " + std::to_string(k));
    }
  }
}

TEST_CASE("conv2d gradcheck in float64", "[conv][grad]") {
  using V = const std::vector<Tensor>&;
  th::gradcheck_ok([](V v) { return conv2d(v[0], v[1], v[2], {1, 1}, {1, 1}); },
                   {th::random({2, 2, 5, 6}), th::random({3, 2, 3, 3}), th::random({3})});
  th::gradcheck_ok([](V v) { return conv2d(v[0], v[1], v[2], {2, 1}, {1, 2}, {2, 1}, 2); },
                   {th::random({2, 4, 7, 6}, DType::f64, true), th::random({4, 2, 3, 2}), th::random({4})});
  th::gradcheck_ok([](V v) { return conv2d(v[0], v[1], v[2], {2, 2}, {1, 1}, {1, 1}, 3); },  // depthwise
                   {th::random({2, 3, 6, 6}, DType::f64, true), th::random({3, 1, 3, 3}), th::random({3})});
  th::gradcheck_ok([](V v) { return conv2d(v[0], v[1], Tensor(), {1, 1}, {0, 0}); },  // 1x1, no bias
                   {th::random({2, 3, 4, 4}), th::random({2, 3, 1, 1})});
  th::gradcheck_ok([](V v) { return conv2d(v[0], v[1], v[2], {1, 1}, {1, 1}); },  // several images per GEMM
                   {th::random({9, 2, 2, 3}), th::random({3, 2, 3, 3}), th::random({3})});
}

TEST_CASE("conv2d computes only the gradients that are needed", "[conv][grad]") {
  const Tensor x = th::random({2, 3, 5, 5}), w = th::random({4, 3, 3, 3}), b = th::random({4});
  Tensor xr = x.detach().requires_grad_();
  conv2d(xr, w, b, {1, 1}, {1, 1}).sum().backward();
  CHECK(xr.grad().defined());
  CHECK(!w.grad().defined());
  Tensor wr = w.detach().requires_grad_(), br = b.detach().requires_grad_();
  conv2d(x, wr, br).sum().backward();
  CHECK(wr.grad().shape() == w.shape());
  CHECK(br.grad().shape() == b.shape());
  const Tensor g = ones({2, 4, 3, 3});
  const cpu::Conv2dParams p = conv2d_params(x, w, b, {1, 1}, {0, 0}, {1, 1}, 1);
  const std::vector<Tensor> only_b = conv2d_bwd(g, Tensor(), Tensor(), p, {.x = false, .w = false, .b = true});
  CHECK(!only_b[0].defined());
  CHECK(!only_b[1].defined());
  th::check_close(only_b[2], full({4}, 18.0), 1e-6);  // 2 images x 9 output pixels
  // no grad mode: nothing recorded
  NoGrad ng;
  CHECK(!conv2d(xr, wr, br).requires_grad());
}

TEST_CASE("conv2d in float16, bfloat16 and on an empty batch", "[conv]") {
  for (DType dt : {DType::f16, DType::bf16}) {
    const Tensor x = th::random({2, 3, 6, 5}, dt), w = th::random({4, 3, 3, 3}, dt), b = th::random({4}, dt);
    const Tensor y = conv2d(x, w, b, {1, 1}, {1, 1});
    REQUIRE(y.dtype() == dt);
    const Tensor want = conv2d(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32), {1, 1}, {1, 1});
    th::check_close(y.to(DType::f32), want, 0.1, th::tol(dt) * 2, "fwd");
    const cpu::Conv2dParams p = conv2d_params(x, w, b, {1, 1}, {1, 1}, {1, 1}, 1);
    const Tensor g = th::random(y.shape(), dt);
    const std::vector<Tensor> gh = conv2d_bwd(g, x, w, p, {});
    const std::vector<Tensor> gf = conv2d_bwd(g.to(DType::f32), x.to(DType::f32), w.to(DType::f32), p, {});
    for (int k = 0; k < 3; ++k) {
      REQUIRE(gh[size_t(k)].dtype() == dt);
      th::check_close(gh[size_t(k)].to(DType::f32), gf[size_t(k)], 0.3, th::tol(dt) * 2, "grad " + std::to_string(k));
    }
  }
  Tensor x = zeros({0, 3, 5, 5}).requires_grad_(), w = th::random({2, 3, 3, 3}).requires_grad_();
  Tensor b = th::random({2}).requires_grad_();
  const Tensor y = conv2d(x, w, b);
  CHECK(y.shape() == Shape{0, 2, 3, 3});
  y.sum().backward();
  th::check_close(w.grad(), zeros({2, 3, 3, 3}), 0);
  th::check_close(b.grad(), zeros({2}), 0);
}

TEST_CASE("conv2d errors name the op, what it got and what it expected", "[conv]") {
  const Tensor x = th::random({1, 4, 5, 5}), w = th::random({2, 4, 3, 3});
  th::check_throws([&] { conv2d(th::random({4, 5, 5}), w); }, {"conv2d", "[4, 5, 5]", "expected 4 dims"});
  th::check_throws([&] { conv2d(x, th::random({2, 4, 3})); }, {"conv2d", "[2, 4, 3]", "expected 4 dims"});
  th::check_throws([&] { conv2d(x, th::random({2, 3, 3, 3})); },
                   {"conv2d", "[1, 4, 5, 5]", "[2, 3, 3, 3]", "x.size(1) == w.size(1) * groups"});
  th::check_throws([&] { conv2d(x, th::random({3, 2, 3, 3}), Tensor(), {1, 1}, {0, 0}, {1, 1}, 2); },
                   {"conv2d", "groups = 2", "expected groups to divide both"});
  th::check_throws([&] { conv2d(x, th::random({2, 4, 6, 3})); }, {"conv2d", "[1, 4, 5, 5]", "6x3", "output size >= 1"});
  th::check_throws([&] { conv2d(x, th::random({2, 4, 3, 3}), Tensor(), {1, 1}, {0, 0}, {3, 1}); },
                   {"conv2d", "dilation (3, 1)", "output size >= 1"});
  th::check_throws([&] { conv2d(x, w.to(DType::f64)); }, {"conv2d", "float32", "float64", "expected one dtype"});
  th::check_throws([&] { conv2d(x.to(DType::i64), w.to(DType::i64)); }, {"conv2d", "int64", "floating"});
  th::check_throws([&] { conv2d(x, w, th::random({3})); }, {"conv2d", "b of shape [3]", "expected [2]"});
  th::check_throws([&] { conv2d(x, w, Tensor(), {0, 1}); }, {"conv2d", "stride (0, 1)", ">= 1"});
  th::check_throws([&] { conv2d(x, w, Tensor(), {1, 1}, {-1, 0}); }, {"conv2d", "padding (-1, 0)", ">= 0"});
  th::check_throws([&] { conv2d(x, w, Tensor(), {1, 1}, {0, 0}, {1, 0}); }, {"conv2d", "dilation (1, 0)", ">= 1"});
  th::check_throws([&] { conv2d(x, w, Tensor(), {1, 1}, {0, 0}, {1, 1}, 0); }, {"conv2d", "groups = 0"});
  const cpu::Conv2dParams p = conv2d_params(x, w, Tensor(), {1, 1}, {0, 0}, {1, 1}, 1);
  th::check_throws([&] { conv2d_bwd(th::random({1, 2, 3, 4}), x, w, p, {}); },
                   {"conv2d_backward", "[1, 2, 3, 4]", "[1, 2, 3, 3]"});
}

TEST_CASE("conv2d_relu fuses the ReLU into the store; with autograd it is relu(conv2d)", "[conv]") {
  using V = const std::vector<Tensor>&;
  const Tensor w = th::random({32, 16, 3, 3}), b = th::random({32});
  for (const Tensor& x : {th::random({3, 16, 6, 5}), th::random({3, 6, 5, 16}).permute({0, 3, 1, 2})}) {
    Tensor y;
    {
      NoGrad ng;
      y = conv2d_relu(x, w, b, {1, 1}, {1, 1});
    }
    const Tensor want = relu(conv2d(x, w, b, {1, 1}, {1, 1}));
    th::check_close(y, want, 1e-6, 1e-6, "conv2d_relu");
    CHECK(conv2d_channels_last(y) == conv2d_channels_last(x));
  }
  const Tensor xd = th::random({2, 3, 5, 5}), wd = th::random({3, 1, 3, 3}), bd = th::random({3});
  NoGrad ng;
  th::check_close(conv2d_relu(xd, wd, bd, {2, 2}, {1, 1}, {1, 1}, 3),  // depthwise, strided
                  relu(conv2d(xd, wd, bd, {2, 2}, {1, 1}, {1, 1}, 3)), 1e-6);
  EnableGrad eg;
  th::gradcheck_ok([](V v) { return conv2d_relu(v[0], v[1], v[2], {1, 1}, {1, 1}); },
                   {th::random({2, 2, 4, 5}), th::random({3, 2, 3, 3}), th::random({3})});
}

TEST_CASE("conv2d under Autocast(bf16) multiplies bf16-rounded operands into float32", "[conv]") {
  auto round = [](const Tensor& t) { return t.detach().to(DType::bf16).to(DType::f32); };
  for (bool cl : {false, true}) {
    const Tensor x0 = cl ? th::random({4, 7, 6, 16}).permute({0, 3, 1, 2}) : th::random({4, 16, 7, 6});
    Tensor x = x0.detach().requires_grad_(), w = th::random({24, 16, 3, 3}).requires_grad_();
    Tensor b = th::random({24}).requires_grad_();
    const Tensor g = th::random({4, 24, 7, 6});
    Tensor y;
    {
      Autocast ac(DType::bf16);
      y = conv2d(x, w, b, {1, 1}, {1, 1});
    }
    REQUIRE(y.dtype() == DType::f32);
    CHECK(conv2d_channels_last(y) == cl);
    y.backward(g);
    // the same in float32 on the rounded operands (dout rounded too); db sums dout as it is
    Tensor xr = round(x0).requires_grad_(), wr = round(w).requires_grad_();
    const Tensor want = conv2d(xr, wr, b.detach(), {1, 1}, {1, 1});
    want.backward(round(g));
    th::check_close(y, want, 1e-5, 1e-5, "autocast out");
    th::check_close(x.grad(), xr.grad(), 1e-5, 1e-5, "autocast dx");
    th::check_close(w.grad(), wr.grad(), 1e-4, 1e-5, "autocast dw");
    th::check_close(b.grad(), g.sum({0, 2, 3}), 1e-4, 1e-5, "autocast db");
    CHECK(x.grad().dtype() == DType::f32);
    // the rounding is visible: without autocast the result differs
    const double diff = th::values((conv2d(x0, w.detach(), b.detach(), {1, 1}, {1, 1}) - want).abs().max())[0];
    CHECK(diff > 1e-4);
  }
  // outside the guard (and for float64) nothing changes
  const Tensor x = th::random({2, 8, 5, 5}, DType::f64), w = th::random({8, 8, 3, 3}, DType::f64);
  Autocast ac(DType::bf16);
  const Tensor y = conv2d(x, w);
  Autocast off(DType::bf16, false);
  th::check_close(y, conv2d(x, w), 0);
}

TEST_CASE("round_to_bf16 keeps float(bf16(v)) bit for bit, 16, 8 and 1 lanes at a time", "[conv][amp]") {
  std::vector<float> v = {0.f, -0.f, 1.f, -1.5f, 3.4e38f, -3.4e38f, 1e-40f, -1e-45f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), std::bit_cast<float>(0x7f800001u),   // signalling NaN
                          std::bit_cast<float>(0xffc12345u), std::bit_cast<float>(0x3f808000u),         // tie, even: down
                          std::bit_cast<float>(0x3f818000u), std::bit_cast<float>(0x7f7fffffu)};        // tie, odd: up; max
  for (uint32_t k = 0; k < 4000; ++k) v.push_back(std::bit_cast<float>(k * 1073741u + (k & 1 ? 0x8000u : 0x7fffu)));
  std::vector<float> got(v.size() + 1);
  cpu::round_to_bf16(v.data(), got.data() + 1, int64_t(v.size()));  // an unaligned destination
  for (size_t i = 0; i < v.size(); ++i) {
    const uint32_t want = std::bit_cast<uint32_t>(float(bf16(v[i])));
    INFO("i " << i << " bits " << std::hex << std::bit_cast<uint32_t>(v[i]));
    REQUIRE(std::bit_cast<uint32_t>(got[i + 1]) == want);
  }
}

TEST_CASE("conv kernels with bf16 operands (round_bf16) equal the kernels on rounded copies, every path", "[conv][amp]") {
  // each case on every path that applies: the flagged kernels (rounding x and dout in their
  // transposes and copies, or on their own rounded copies) against the plain kernels on copies
  // rounded beforehand, bit for bit (but the pairs tiles' passes); db from dout unrounded
  auto round = [](const Tensor& t) { return t.detach().to(DType::bf16).to(DType::f32); };
  const std::vector<Case> cases = {
      {3, 16, 9, 7, 24, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},   // direct, NCHW (8 x 8 transposes)
      {3, 12, 6, 7, 32, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 3, true},   // direct, channels-last x (copied, slack)
      {5, 13, 6, 6, 9, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, 1, false},   // direct, strided view of x
      {2, 32, 5, 6, 64, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 3, true},   // direct, channels-last read in place otherwise
      {2, 3, 7, 9, 4, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, 0, true},     // im2col
      {2, 8, 32, 33, 6, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1, 2, true},   // sliced x: a dense rounded copy
      {2, 5, 10, 11, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 5, 1, true},   // depthwise
      {2, 1, 12, 11, 8, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, 3, true},   // channels-last stem
      {3, 1, 9, 10, 21, 3, 3, {1, 2}, {1, 1}, {1, 1}, 1, 0, true},   // strided stem
  };
  for (const Case& c : cases) {
    const Tensor x = make_x(c, DType::f32), w = th::random({c.Cout, c.Cin / c.groups, c.kH, c.kW});
    const Tensor b = c.bias ? th::random({c.Cout}) : Tensor();
    cpu::Conv2dParams p{.B = c.B, .Cin = c.Cin, .H = c.H, .W = c.W, .Cout = c.Cout, .kH = c.kH, .kW = c.kW,
                        .stride = c.stride, .padding = c.padding, .dilation = c.dilation, .groups = c.groups};
    const int64_t ohw = p.OH() * p.OW();
    const Tensor g = th::random({c.B, c.Cout, p.OH(), p.OW()});
    const Tensor gl = contiguous(g.permute({0, 2, 3, 1}));
    // the rounded copies: x dense in its own layout when it is dense, else contiguous NCHW (as the kernels' copies)
    const bool cl = c.layout == 3;
    const Tensor xr = cl ? round(contiguous(x.permute({0, 2, 3, 1}))).permute({0, 3, 1, 2}) : round(contiguous(x));
    const Tensor wr = round(w), gr = round(g), glr = round(gl);
    const cpu::ConvStrides xs{x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
    const cpu::ConvStrides xrs{xr.stride(0), xr.stride(1), xr.stride(2), xr.stride(3)};
    const float* bp = c.bias ? b.data_ptr<float>() : nullptr;
    const size_t no = size_t(c.B * c.Cout * ohw), nx = size_t(x.numel()), nw = size_t(w.numel());
    for (cpu::ConvAlgo algo : {cpu::ConvAlgo::im2col, cpu::ConvAlgo::direct, cpu::ConvAlgo::depthwise}) {
      if (cpu::conv2d_choose(p, 0, algo) != algo) continue;
      std::ostringstream os;
      os << c << " algo " << int(algo);
      INFO(os.str());
      for (bool out_cl : {false, true}) {
        INFO("channels-last out, dout, dx: " << out_cl);
        std::vector<float> o(no), o_want(no), dx(nx), dx_want(nx), dw(nw), dw_want(nw), db(size_t(c.Cout)),
            db_want(size_t(c.Cout));
        const float* gp = (out_cl ? gl : g).data_ptr<float>();
        const float* grp = (out_cl ? glr : gr).data_ptr<float>();
        p.round_bf16 = true;
        cpu::conv2d_fwd_kernel<float>(p, x.data_ptr<float>(), xs, w.data_ptr<float>(), bp, o.data(), algo,
                                      {.channels_last = out_cl, .relu = out_cl});
        cpu::conv2d_bwd_kernel<float>(p, x.data_ptr<float>(), xs, w.data_ptr<float>(), gp, dx.data(), dw.data(),
                                      db.data(), algo, out_cl);
        p.round_bf16 = false;
        cpu::conv2d_fwd_kernel<float>(p, xr.data_ptr<float>(), xrs, wr.data_ptr<float>(), bp, o_want.data(), algo,
                                      {.channels_last = out_cl, .relu = out_cl});
        cpu::conv2d_bwd_kernel<float>(p, xr.data_ptr<float>(), xrs, wr.data_ptr<float>(), grp, dx_want.data(),
                                      dw_want.data(), nullptr, algo, out_cl);
        cpu::conv2d_bwd_kernel<float>(p, xr.data_ptr<float>(), xrs, wr.data_ptr<float>(), gp, nullptr, nullptr,
                                      db_want.data(), algo, out_cl);
        if (STRATA_CONV_BF16_PAIRS && algo == cpu::ConvAlgo::direct) {
          // AVX512-BF16 builds: the forward and dx multiply bf16 channel pairs (vdpbf16ps): the same
          // products, summed in another order (tests/bf16_emulation/ checks that path against the references)
          auto near = [](const std::vector<float>& a, const std::vector<float>& b) {
            for (size_t i = 0; i < a.size(); ++i)
              if (!(std::fabs(a[i] - b[i]) <= 1e-4f * (1.f + std::fabs(b[i])))) return false;
            return true;
          };
          CHECK(near(o, o_want));
          CHECK(near(dx, dx_want));
          CHECK(near(dw, dw_want));
        } else {
          CHECK(o == o_want);
          CHECK(dx == dx_want);
          CHECK(dw == dw_want);
        }
        CHECK(db == db_want);
        // the rounding is visible: unrounded operands give other values
        std::vector<float> o_plain(no);
        cpu::conv2d_fwd_kernel<float>(p, x.data_ptr<float>(), xs, w.data_ptr<float>(), bp, o_plain.data(), algo,
                                      {.channels_last = out_cl, .relu = out_cl});
        CHECK(o_plain != o);
      }
    }
  }
}

}  // namespace test_conv
