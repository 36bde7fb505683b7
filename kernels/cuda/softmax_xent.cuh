// Softmax cross entropy on the device, one kernel each way: the CUDA twin of
// kernels/cpu/softmax_xent.hpp (same math, same argument order), for logits x [B, C] (contiguous)
// and class indices y [B] (int64, each in [0, C)), with label smoothing eps:
//   lse_b  = m_b + log sum_c exp(x_bc - m_b),  m_b = max_c x_bc
//   l_b    = lse_b - (1 - eps) x_{b,y_b} - eps / C sum_c x_bc
//   dx_bc  = dl_b (exp(x_bc - lse_b) - (1 - eps) [c == y_b] - eps / C)
//
//   cuda::softmax_xent_fwd(x, y, loss, lse, B, C, eps);        // x, y, loss, lse: device pointers
//   cuda::softmax_xent_bwd(dloss, x, y, lse, dx, B, C, eps);
//
// Element types T: float, double, cuda::f16_t, cuda::bf16_t (16-bit x is loaded as float). The
// accumulation type A = compute_type<T> (float, or double for double x) is also lse's type, as on
// the CPU (which keeps lse in float32 / float64). No ignore_index and no class weights: the CPU
// kernel has neither (nn/loss.hpp checks the targets before calling it). A target outside [0, C)
// is not read: its loss is NaN.
//
// Forward: one block per row. Each thread walks the row with stride blockDim.x, keeping its own max,
// then its own sum of exp(x - m) and of x; the block combines them with warp shuffles (xor
// butterfly) and one shared slot per warp, every thread summing the warp slots in the same order
// (so all threads hold the same value, and a run gives the same bits every time). The row is read
// twice (max, then sums). The backward is elementwise: a grid-stride loop over the B*C elements,
// the arithmetic and rounding of the CPU's fast kernel (dx rounded to T, then the target's
// -(1 - eps) dl subtracted and rounded again), so f32 agrees with it to the rounding of exp.
// Sums are in a different order from the CPU's sequential loop: results agree within a few ulp of
// the accumulation type, not bit for bit.
// Idea: llm.c's fused_classifier kernel; PyTorch's cross_entropy_loss (log_softmax + nll fused).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/math.cuh"

namespace strata::cuda {

// ---------------------------------------------------------------- kernels

/// Row blockIdx.x: lse[b] and loss[b] from x [B, C] and y [B].
/// on = 1 - eps, off = eps / C, in the accumulation type A.
template <class T, class A>
__global__ void softmax_xent_fwd_kernel(const T* x, const int64_t* y, T* loss, A* lse, int64_t C, A on, A off) {
  __shared__ A s_red[32];
  const int64_t b = blockIdx.x;
  const T* row = x + b * C;
  A r_max = -A(INFINITY);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) r_max = MaxFn{}(r_max, A(load(row + c)));
  const A m = block_reduce(r_max, MaxFn{}, s_red);  // m_b
  A r_s = 0, r_sum_x = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const A v = A(load(row + c));
    r_s += m_exp(v - m);
    r_sum_x += v;
  }
  const A s = block_reduce(r_s, SumFn{}, s_red);
  const A sum_x = block_reduce(r_sum_x, SumFn{}, s_red);
  if (threadIdx.x == 0) {
    const A l = m + m_log(s);                                             // lse_b
    const int64_t t = y[b];
    lse[b] = l;
    store(loss + b, t >= 0 && t < C ? A(l - on * A(load(row + t)) - off * sum_x) : A(NAN));  // l_b
  }
}

/// dx [B, C] from dloss [B], x [B, C], y [B] and lse [B]; grid-stride over the n = B*C elements.
template <class T, class A>
__global__ void softmax_xent_bwd_kernel(const T* dloss, const T* x, const int64_t* y, const A* lse, T* dx, int64_t n,
                                        int64_t C, A on, A off) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t b = i / C, c = i - b * C;
    const A d = A(load(dloss + b));
    T r = from_compute<T>(A(d * (m_exp(A(load(x + i)) - lse[b]) - off)));  // softmax - eps/C
    if (c == y[b]) r = from_compute<T>(A(A(load(&r)) - d * on));                      // - (1 - eps) at y_b
    dx[i] = r;
  }
}

// ---------------------------------------------------------------- launchers

inline constexpr unsigned kXentMaxBlock = 256;
inline constexpr unsigned kXentBwdBlock = 256;
inline constexpr int64_t kXentBwdMaxBlocks = 132 * 32;

namespace detail {
inline void check_xent(const void* x, const void* y, const void* out, const void* lse, int64_t B, int64_t C,
                       double eps, const char* op) {
  STRATA_CHECK(B >= 0 && C >= 1, op, "got B = ", B, ", C = ", C, ", expected B >= 0 and C >= 1");
  STRATA_CHECK(B < (int64_t(1) << 31), op, "got B = ", B, " rows, expected fewer than 2^31");
  STRATA_CHECK(eps >= 0 && eps <= 1, op, "got label smoothing eps = ", eps, ", expected a value in [0, 1]");
  STRATA_CHECK(B == 0 || (x && y && out && lse), op, "got a null pointer, expected device memory for x, y, ",
               "the output and lse");
}
}  // namespace detail

/// loss [B] (T) and lse [B] (compute_type<T>) from logits x [B, C] and targets y [B]; device pointers.
template <class T>
void softmax_xent_fwd(const T* x, const int64_t* y, T* loss, compute_type<T>* lse, int64_t B, int64_t C, double eps,
                      Stream stream = {}) {
  using A = compute_type<T>;
  static_assert(is_floating_storage<T>, "softmax_xent_fwd: T is float, double, f16_t or bf16_t");
  detail::check_xent(x, y, loss, lse, B, C, eps, "softmax_xent_fwd");
  if (B == 0) return;
  const unsigned threads = unsigned(std::clamp<int64_t>((C + 31) / 32 * 32, 32, kXentMaxBlock));
  launch(softmax_xent_fwd_kernel<T, A>, dim3(unsigned(B)), dim3(threads), 0, stream, x, y, loss, lse, C,
         A(1 - eps), A(eps / double(C)));
}

/// dx [B, C] from dloss [B], logits x [B, C], targets y [B] and the forward's lse [B]; device pointers.
template <class T>
void softmax_xent_bwd(const T* dloss, const T* x, const int64_t* y, const compute_type<T>* lse, T* dx, int64_t B,
                      int64_t C, double eps, Stream stream = {}) {
  using A = compute_type<T>;
  static_assert(is_floating_storage<T>, "softmax_xent_bwd: T is float, double, f16_t or bf16_t");
  detail::check_xent(x, y, dx, lse, B, C, eps, "softmax_xent_bwd");
  STRATA_CHECK(B == 0 || dloss, "softmax_xent_bwd", "got a null dloss, expected device memory of [", B, "]");
  const int64_t n = B * C;
  if (n == 0) return;
  const int64_t blocks = std::min<int64_t>((n + kXentBwdBlock - 1) / kXentBwdBlock, kXentBwdMaxBlocks);
  launch(softmax_xent_bwd_kernel<T, A>, dim3(unsigned(blocks)), dim3(kXentBwdBlock), 0, stream, dloss, x, y, lse, dx,
         n, C, A(1 - eps), A(eps / double(C)));
}

}  // namespace strata::cuda
