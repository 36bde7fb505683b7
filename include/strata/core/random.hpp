// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC'11), the generator cuRAND and PyTorch's CUDA backend use.
//
// A Generator is a 64-bit seed plus a 64-bit offset. Random op number k of a tensor fill gets the
// four 32-bit words philox(key = seed, counter = (offset + k/4, 0)) [k%4]; after the fill the offset
// moves past the counters used. Element k therefore depends only on (seed, offset, k), never on how
// many threads filled the tensor or in which order.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <mutex>

namespace strata {

/// Philox4x32 with 10 rounds: 128-bit counter, 64-bit key -> four 32-bit random words.
inline std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(kMul0) * ctr[0];
    const uint64_t p1 = uint64_t(kMul1) * ctr[2];
    ctr = {uint32_t(p1 >> 32) ^ ctr[1] ^ key[0], uint32_t(p1), uint32_t(p0 >> 32) ^ ctr[3] ^ key[1],
           uint32_t(p0)};
    key[0] += kWeyl0;
    key[1] += kWeyl1;
  }
  return ctr;
}

/// Uniform float in [0, 1) from 24 random bits.
inline float uint_to_unit_float(uint32_t x) { return float(x >> 8) * 0x1p-24f; }
/// Uniform double in [0, 1) from 53 random bits.
inline double uints_to_unit_double(uint32_t hi, uint32_t lo) {
  return double((uint64_t(hi) << 21) ^ (lo >> 11)) * 0x1p-53;
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed5eedULL) : seed_(seed) {}

  void manual_seed(uint64_t seed) {
    std::lock_guard g(mutex_);
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const { return seed_; }

  /// Reserves `n` counters (4 words each) and returns the first; thread-safe.
  uint64_t reserve(uint64_t n) {
    std::lock_guard g(mutex_);
    const uint64_t first = offset_;
    offset_ += n;
    return first;
  }

  /// The four words of counter `c`.
  std::array<uint32_t, 4> block(uint64_t c) const {
    return philox4x32({uint32_t(c), uint32_t(c >> 32), 0u, 0u},
                      {uint32_t(seed_), uint32_t(seed_ >> 32)});
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
  std::mutex mutex_;
};

/// The process-wide default generator that rand/randn/randint/dropout use.
inline Generator& default_generator() {
  static Generator g;
  return g;
}

/// Seeds the default generator (like torch.manual_seed).
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace strata
