// Philox4x32-10 on the device: core/random.hpp's philox4x32 (Salmon et al., "Parallel random numbers:
// as easy as 1, 2, 3", SC'11) as a __host__ __device__ function, so a kernel draws the same words as
// the CPU for the same counter and key. The one copy for dropout.cuh and augment.cuh's random erasing.
//
//   const cuda::PhiloxWords r = cuda::philox4x32_10(c0, c1, c2, c3, k0, k1);  // 128-bit counter, 64-bit key
//   const cuda::PhiloxWords s = cuda::philox4x32_10(c, seed);   // counter (c, 0): Generator::block(c)
//   r.w[0..3]: four 32-bit random words
#pragma once

#include <cstdint>

#include "strata/backend/cuda_compat.hpp"

namespace strata::cuda {

/// Four 32-bit random words.
struct PhiloxWords {
  uint32_t w[4];
};

/// Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1): core/random.hpp's philox4x32.
__host__ __device__ inline PhiloxWords philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                                     uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(kMul0) * c0, p1 = uint64_t(kMul1) * c2;
    const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n1 = uint32_t(p1), n2 = uint32_t(p0 >> 32) ^ c3 ^ k1,
                   n3 = uint32_t(p0);
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return PhiloxWords{{c0, c1, c2, c3}};
}

/// Philox4x32-10 of counter (c, 0) under key `seed`: core/random.hpp's Generator::block(c).
__host__ __device__ inline PhiloxWords philox4x32_10(uint64_t c, uint64_t seed) {
  return philox4x32_10(uint32_t(c), uint32_t(c >> 32), 0u, 0u, uint32_t(seed), uint32_t(seed >> 32));
}

}  // namespace strata::cuda
