// Fused optimizer updates on the device, over a whole list of parameters in one launch: the CUDA
// twin of kernels/cpu/optim_update.hpp (same arithmetic, same argument structs cpu::AdamArgs and
// cpu::SgdArgs), through kernels/cuda/multi_tensor.cuh's chunked multi-tensor apply.
//
//   std::vector<cuda::TensorPtrs<float, 4>> adam = {{{p, g, m, v}, n}, ...};   // device pointers
//   cuda::adam_update<float>(adam, cpu::AdamArgs{.lr = 1e-3, .wd = 1e-2, .decay = cpu::DecayMode::decoupled,
//                                                .debias1 = 1 - pow(0.9, t), .debias2 = 1 - pow(0.99, t)});
//   std::vector<cuda::TensorPtrs<float, 3>> sgd = {{{p, g, m}, n}, ...};
//   cuda::sgd_momentum_update<float>(sgd, cpu::SgdArgs{.lr = 0.1, .mom = 0.9});
//
// Element i of each tensor (p parameter, g gradient, m grad_avg / momentum, v sqr_avg), read once
// and written once:
//   adam: l2 decay g <- g + wd p (written back); decoupled decay p <- p (1 - lr wd);
//         m <- mom m + (1 - mom) g;  v <- sqr_mom v + (1 - sqr_mom) g^2;
//         p <- p - lr / debias1 * m / (sqrt(v) / sqrt(debias2) + eps)
//   sgd:  decay as above;  m <- mom m + g;  p <- p - lr m
// Element types T: float, double, cuda::f16_t, cuda::bf16_t (all K pointers of a launch the same
// type). The arithmetic is in compute_type<T> (float; double for double) with the scalars rounded
// to it first, in the CPU kernel's order, so f32 and f64 agree with kernels/cpu/optim_update.hpp
// bit for bit under the emulator (on a GPU, nvcc's fused multiply-adds differ by rounding). 16-bit
// parameters and states are loaded as float and stored rounded to nearest even (mixed precision
// keeps f32 master weights, so that path is for completeness).
// Idea: PyTorch's _fused_adamw / apex's multi_tensor_adam.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "strata/backend/cuda_compat.hpp"
#include "strata/core/error.hpp"
#include "kernels/cpu/optim_update.hpp"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/math.cuh"
#include "kernels/cuda/multi_tensor.cuh"

namespace strata::cuda {

/// One Adam step's scalars in the compute type C, as adam_update's lanes use them.
template <class C>
struct AdamScalars {
  C wd, keep, mom, one_minus_mom, sqr_mom, one_minus_sqr_mom, inv_sqrt_debias2, eps, step;
  int decay;  // cpu::DecayMode as int
};
/// One SGD step's scalars in the compute type C.
template <class C>
struct SgdScalars {
  C wd, keep, mom, lr;
  int decay;
};

// ---------------------------------------------------------------- kernels (ops of multi_tensor_kernel)

/// Adam on elements [lo, hi) of ptrs = {p, g, m, v}.
template <class T>
struct AdamOp {
  using C = compute_type<T>;
  AdamScalars<C> a;
  __device__ void operator()(T* const (&ptrs)[4], int64_t lo, int64_t hi) const {
    T* g_p = ptrs[0];
    T* g_g = ptrs[1];
    T* g_m = ptrs[2];
    T* g_v = ptrs[3];
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      C p = load(g_p + i), g = load(g_g + i), m = load(g_m + i), v = load(g_v + i);
      if (a.decay == int(cpu::DecayMode::l2)) g = g + a.wd * p;
      if (a.decay == int(cpu::DecayMode::decoupled)) p = p * a.keep;
      m = a.mom * m + a.one_minus_mom * g;
      v = a.sqr_mom * v + a.one_minus_sqr_mom * (g * g);
      const C denom = m_sqrt(v) * a.inv_sqrt_debias2 + a.eps;
      p = p + a.step * (m / denom);
      store(g_p + i, p), store(g_m + i, m), store(g_v + i, v);
      if (a.decay == int(cpu::DecayMode::l2)) store(g_g + i, g);
    }
  }
};

/// SGD with momentum on elements [lo, hi) of ptrs = {p, g, m}.
template <class T>
struct SgdMomentumOp {
  using C = compute_type<T>;
  SgdScalars<C> a;
  __device__ void operator()(T* const (&ptrs)[3], int64_t lo, int64_t hi) const {
    T* g_p = ptrs[0];
    T* g_g = ptrs[1];
    T* g_m = ptrs[2];
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      C p = load(g_p + i), g = load(g_g + i), m = load(g_m + i);
      if (a.decay == int(cpu::DecayMode::l2)) g = g + a.wd * p;
      if (a.decay == int(cpu::DecayMode::decoupled)) p = p * a.keep;
      m = a.mom * m + g;
      p = p - a.lr * m;
      store(g_p + i, p), store(g_m + i, m);
      if (a.decay == int(cpu::DecayMode::l2)) store(g_g + i, g);
    }
  }
};

// ---------------------------------------------------------------- launchers

/// One Adam/AdamW step (cpu::adam_update's arithmetic) of every tensor {p, g, m, v} of `tensors`.
template <class T>
void adam_update(std::span<const TensorPtrs<T, 4>> tensors, const cpu::AdamArgs& a,
                 int64_t chunk = kMultiTensorChunk, Stream stream = {}) {
  using C = compute_type<T>;
  static_assert(is_floating_storage<T>, "adam_update: T is float, double, f16_t or bf16_t");
  STRATA_CHECK(a.debias1 > 0 && a.debias2 > 0, "adam_update", "got debias1 = ", a.debias1, ", debias2 = ",
               a.debias2, ", expected 1 - beta^t > 0 (step t >= 1)");
  const AdamScalars<C> s{C(a.wd), C(1 - a.lr * a.wd), C(a.mom), C(1 - a.mom), C(a.sqr_mom), C(1 - a.sqr_mom),
                         C(1 / std::sqrt(a.debias2)), C(a.eps), C(-a.lr / a.debias1), int(a.decay)};
  multi_tensor_apply<T, 4>("adam_update", tensors, AdamOp<T>{s}, chunk, stream);
}

/// One SGD-with-momentum step (cpu::sgd_momentum_update's arithmetic) of every tensor {p, g, m}.
template <class T>
void sgd_momentum_update(std::span<const TensorPtrs<T, 3>> tensors, const cpu::SgdArgs& a,
                         int64_t chunk = kMultiTensorChunk, Stream stream = {}) {
  using C = compute_type<T>;
  static_assert(is_floating_storage<T>, "sgd_momentum_update: T is float, double, f16_t or bf16_t");
  const SgdScalars<C> s{C(a.wd), C(1 - a.lr * a.wd), C(a.mom), C(a.lr), int(a.decay)};
  multi_tensor_apply<T, 3>("sgd_momentum_update", tensors, SgdMomentumOp<T>{s}, chunk, stream);
}

}  // namespace strata::cuda
