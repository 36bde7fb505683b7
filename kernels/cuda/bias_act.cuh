// Bias + activation on the device, one kernel each way: the CUDA twin of kernels/cpu/bias_act.hpp
// (same math, same arguments) for x [rows, C] (contiguous) and bias b [C]:
//   forward:  y = act(x + b)
//   backward: dx = dout act'(x + b) (z recomputed, nothing stored), db [C] = sum over rows of dx
//
//   cuda::bias_act_fwd<float>(x, b, y, rows, C, cpu::BiasAct::gelu);          // device pointers
//   cuda::bias_act_bwd<float>(dout, x, b, dx, db, rows, C, cpu::BiasAct::gelu);
//   cuda::bias_act_channels_fwd<float>(x, b, y, B, C, H * W, cpu::BiasAct::relu);  // NCHW: b per channel
//
// bias_act_channels_fwd is the forward for x [outer, C, inner] with b [C] per channel (a conv's
// NCHW output: inner = H*W; channels-last is bias_act_fwd's [rows, C]); b may be null there (the
// activation alone), and y may be x (in place: each element is read, then written, by one thread).
// Element types T: float, double, cuda::f16_t, cuda::bf16_t, computed in compute_type<T> (float;
// double for double), rounded once to T. db is written, not accumulated.
// Forward: grid-stride elementwise over rows*C. Backward: a block of 32 x 8 threads owns 32
// columns; thread (tx, ty) walks rows ty, ty + 8, ... of column 32 blockIdx.x + tx (a warp reads 32
// consecutive elements of a row: coalesced), writes dx and keeps its partial sum of dz; the 8
// partial sums of a column are added in shared memory in a fixed order, so db is deterministic.
// Its sums run in a different order from the CPU's sequential loop (agreement within rounding of
// the accumulation type). With few columns and many rows only ceil(C / 32) blocks run: a split of
// the rows over more blocks (with a second pass for db) is the next rung.
// Activations use the device's erff/expf (erf/exp for double): within a few ulp of the CPU's.
// Idea: cuBLASLt's bias/activation epilogues; PyTorch's bias + activation fusion in nvFuser.
#pragma once

#include <algorithm>
#include <cstdint>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"
#include "kernels/cpu/bias_act.hpp"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/math.cuh"

namespace strata::cuda {

namespace detail {
/// act(z), as cpu::detail::bias_act_value.
template <class A>
__device__ __forceinline__ A bias_act_value(int act, A z) {
  if (act == int(cpu::BiasAct::relu)) return A(0) > z ? A(0) : z;
  if (act == int(cpu::BiasAct::gelu)) return A(0.5) * z * (A(1) + m_erf(z * A(0.70710678118654752440)));
  if (act == int(cpu::BiasAct::silu)) return z / (A(1) + m_exp(-z));
  return z;
}
/// g act'(z), as cpu::detail::bias_act_grad.
template <class A>
__device__ __forceinline__ A bias_act_grad(int act, A g, A z) {
  if (act == int(cpu::BiasAct::relu)) return z > A(0) ? g : A(0);
  if (act == int(cpu::BiasAct::gelu)) {
    const A cdf = A(0.5) * (A(1) + m_erf(z * A(0.70710678118654752440)));
    const A pdf = m_exp(A(-0.5) * z * z) * A(0.39894228040143267794);  // 1 / sqrt(2 pi)
    return g * (cdf + z * pdf);
  }
  if (act == int(cpu::BiasAct::silu)) {
    const A s = A(1) / (A(1) + m_exp(-z));
    return g * s * (A(1) + z * (A(1) - s));
  }
  return g;
}
}  // namespace detail

// ---------------------------------------------------------------- kernels

/// y [outer, C, inner] = act(x + b [C]) over the n = outer*C*inner elements, grid-stride; b null: no
/// bias. inner = 1: x [rows, C].
template <class T>
__global__ void bias_act_fwd_kernel(const T* x, const T* b, T* y, int64_t n, int64_t C, int64_t inner, int act) {
  using A = compute_type<T>;
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const A z = b ? A(A(load(x + i)) + A(load(b + (inner == 1 ? i : i / inner) % C))) : A(load(x + i));
    store(y + i, detail::bias_act_value(act, z));
  }
}

inline constexpr unsigned kBiasActCols = 32, kBiasActRowThreads = 8;

/// dx [rows, C] and db [C] for columns [32 blockIdx.x, +32); block (32, 8).
template <class T>
__global__ void bias_act_bwd_kernel(const T* dout, const T* x, const T* b, T* dx, T* db, int64_t rows, int64_t C,
                                    int act) {
  using A = compute_type<T>;
  __shared__ A s_sum[kBiasActRowThreads][kBiasActCols + 1];  // +1: no bank conflicts on the column walk
  const int64_t c = int64_t(blockIdx.x) * kBiasActCols + threadIdx.x;
  A r_sum = 0;
  if (c < C && rows > 0) {
    const A bias = load(b + c);
    for (int64_t r = threadIdx.y; r < rows; r += kBiasActRowThreads) {
      const int64_t i = r * C + c;
      const A dz = detail::bias_act_grad(act, A(load(dout + i)), A(A(load(x + i)) + bias));
      store(dx + i, dz);
      r_sum += dz;
    }
  }
  s_sum[threadIdx.y][threadIdx.x] = r_sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    A sum = s_sum[0][threadIdx.x];
    for (unsigned k = 1; k < kBiasActRowThreads; ++k) sum += s_sum[k][threadIdx.x];
    store(db + c, sum);
  }
}

// ---------------------------------------------------------------- launchers

inline constexpr unsigned kBiasActBlock = 256;
inline constexpr int64_t kBiasActMaxBlocks = 132 * 32;

namespace detail {
inline void check_bias_act(const void* x, const void* b, const void* out, int64_t rows, int64_t C, cpu::BiasAct act,
                           const char* op) {
  STRATA_CHECK(rows >= 0 && C >= 1, op, "got rows = ", rows, ", C = ", C, ", expected rows >= 0 and C >= 1");
  STRATA_CHECK(int(act) >= 0 && int(act) <= 3, op, "got activation ", int(act),
               ", expected BiasAct none, relu, gelu or silu");
  STRATA_CHECK(rows == 0 || (x && b && out), op, "got a null pointer, expected device memory for x, b and the output");
}
}  // namespace detail

/// y [rows, C] = act(x [rows, C] + b [C]); device pointers.
template <class T>
void bias_act_fwd(const T* x, const T* b, T* y, int64_t rows, int64_t C, cpu::BiasAct act, Stream stream = {}) {
  static_assert(is_floating_storage<T>, "bias_act_fwd: T is float, double, f16_t or bf16_t");
  detail::check_bias_act(x, b, y, rows, C, act, "bias_act_fwd");
  const int64_t n = rows * C;
  if (n == 0) return;
  const int64_t blocks = std::min<int64_t>((n + kBiasActBlock - 1) / kBiasActBlock, kBiasActMaxBlocks);
  launch(bias_act_fwd_kernel<T>, dim3(unsigned(blocks)), dim3(kBiasActBlock), 0, stream, x, b, y, n, C, int64_t(1),
         int(act));
}

/// y [outer, C, inner] = act(x [outer, C, inner] + b [C]), b per channel (null: no bias); y may be x.
template <class T>
void bias_act_channels_fwd(const T* x, const T* b, T* y, int64_t outer, int64_t C, int64_t inner, cpu::BiasAct act,
                           Stream stream = {}) {
  static_assert(is_floating_storage<T>, "bias_act_channels_fwd: T is float, double, f16_t or bf16_t");
  STRATA_CHECK(outer >= 0 && C >= 1 && inner >= 1, "bias_act_channels_fwd", "got outer = ", outer, ", C = ", C,
               ", inner = ", inner, ", expected outer >= 0, C >= 1 and inner >= 1");
  detail::check_bias_act(x, b ? static_cast<const void*>(b) : x, y, outer, C, act, "bias_act_channels_fwd");
  const int64_t n = outer * C * inner;
  if (n == 0) return;
  const int64_t blocks = std::min<int64_t>((n + kBiasActBlock - 1) / kBiasActBlock, kBiasActMaxBlocks);
  launch(bias_act_fwd_kernel<T>, dim3(unsigned(blocks)), dim3(kBiasActBlock), 0, stream, x, b, y, n, C, inner,
         int(act));
}

/// dx [rows, C] = dout act'(x + b), db [C] = sum over rows of dx (written); device pointers.
template <class T>
void bias_act_bwd(const T* dout, const T* x, const T* b, T* dx, T* db, int64_t rows, int64_t C, cpu::BiasAct act,
                  Stream stream = {}) {
  static_assert(is_floating_storage<T>, "bias_act_bwd: T is float, double, f16_t or bf16_t");
  detail::check_bias_act(x, b, dx, rows, C, act, "bias_act_bwd");
  STRATA_CHECK(db != nullptr && (rows == 0 || dout != nullptr), "bias_act_bwd",
               "got a null dout or db, expected device memory");
  const int64_t blocks = (C + kBiasActCols - 1) / kBiasActCols;  // rows == 0 still writes db = 0
  launch(bias_act_bwd_kernel<T>, dim3(unsigned(blocks)), dim3(kBiasActCols, kBiasActRowThreads), 0, stream, dout, x,
         b, dx, db, rows, C, int(act));
}

}  // namespace strata::cuda
