// Math functions for kernels computing in float or double: the float libm function for float, the
// double one for double (the device's libm on a GPU, the host's under the emulator), so a kernel
// templated on its compute type A calls one name. The one copy for every kernel family
// (elementwise, softmax, softmax_xent, bias_act, batchnorm, optim_update, augment).
//
//   const A e = cuda::m_exp(v);             // expf for float, exp for double
//   const A r = A(1) / cuda::m_sqrt(var + eps);
//   cuda::m_pow(a, b);                      // integers: pow in double, as std::pow(int, int)
//
// __host__ __device__, so the same calls work in host-side reference code of the cuda headers.
#pragma once

#include <cmath>
#include <type_traits>

#include "strata/backend/cuda_compat.hpp"

namespace strata::cuda {

#define STRATA_CUDA_MATH1(name, f32, f64)            \
  template <class T>                                  \
  __host__ __device__ inline T name(T x) {            \
    if constexpr (sizeof(T) == 4) return ::f32(x);    \
    else return ::f64(x);                             \
  }
STRATA_CUDA_MATH1(m_exp, expf, exp)
STRATA_CUDA_MATH1(m_log, logf, log)
STRATA_CUDA_MATH1(m_log1p, log1pf, log1p)
STRATA_CUDA_MATH1(m_sqrt, sqrtf, sqrt)  // correctly rounded, as the CPU's sqrt
STRATA_CUDA_MATH1(m_sin, sinf, sin)
STRATA_CUDA_MATH1(m_cos, cosf, cos)
STRATA_CUDA_MATH1(m_tanh, tanhf, tanh)
STRATA_CUDA_MATH1(m_erf, erff, erf)
STRATA_CUDA_MATH1(m_fabs, fabsf, fabs)
#undef STRATA_CUDA_MATH1

/// a^b: powf for float, pow for double; integers through pow in double (as std::pow(int, int)).
template <class T>
__host__ __device__ inline T m_pow(T a, T b) {
  if constexpr (!std::is_floating_point_v<T>) return T(::pow(double(a), double(b)));
  else if constexpr (sizeof(T) == 4) return ::powf(a, b);
  else return ::pow(a, b);
}

}  // namespace strata::cuda
