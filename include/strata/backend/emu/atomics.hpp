// CUDA atomics for the emulator: real atomics (std::atomic_ref, relaxed order, as CUDA's are),
// because blocks run concurrently on several OS threads. Each returns the old value.
//
//   atomicAdd   float double int unsigned unsigned-long-long
//   atomicSub   int unsigned
//   atomicExch  int unsigned unsigned-long-long float
//   atomicMax / atomicMin   int unsigned long-long unsigned-long-long
//   atomicCAS   int unsigned unsigned-long-long unsigned-short   (stores val if *p == compare)
//   atomicAnd / atomicOr / atomicXor   int unsigned unsigned-long-long
//   __threadfence() __threadfence_block() __threadfence_system()
#pragma once

#include <atomic>

namespace strata::emu::detail {
template <class T>
T atomic_add(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed);
}
template <class T>
T atomic_sub(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_sub(v, std::memory_order_relaxed);
}
template <class T>
T atomic_exch(T* p, T v) {
  return std::atomic_ref<T>(*p).exchange(v, std::memory_order_relaxed);
}
template <class T>
T atomic_cas(T* p, T compare, T v) {
  std::atomic_ref<T>(*p).compare_exchange_strong(compare, v, std::memory_order_relaxed);
  return compare;  // the old value either way
}
template <class T, class Better>
T atomic_update_if(T* p, T v, Better better) {
  std::atomic_ref<T> a(*p);
  T old = a.load(std::memory_order_relaxed);
  while (better(v, old) && !a.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
  }
  return old;
}
template <class T>
T atomic_max(T* p, T v) {
  return atomic_update_if(p, v, [](T a, T b) { return a > b; });
}
template <class T>
T atomic_min(T* p, T v) {
  return atomic_update_if(p, v, [](T a, T b) { return a < b; });
}
}  // namespace strata::emu::detail

#define STRATA_EMU_ATOMIC(name, impl, T) \
  inline T name(T* address, T val) { return ::strata::emu::detail::impl(address, val); }

STRATA_EMU_ATOMIC(atomicAdd, atomic_add, float)
STRATA_EMU_ATOMIC(atomicAdd, atomic_add, double)
STRATA_EMU_ATOMIC(atomicAdd, atomic_add, int)
STRATA_EMU_ATOMIC(atomicAdd, atomic_add, unsigned int)
STRATA_EMU_ATOMIC(atomicAdd, atomic_add, unsigned long long)
STRATA_EMU_ATOMIC(atomicSub, atomic_sub, int)
STRATA_EMU_ATOMIC(atomicSub, atomic_sub, unsigned int)
STRATA_EMU_ATOMIC(atomicExch, atomic_exch, int)
STRATA_EMU_ATOMIC(atomicExch, atomic_exch, unsigned int)
STRATA_EMU_ATOMIC(atomicExch, atomic_exch, unsigned long long)
STRATA_EMU_ATOMIC(atomicExch, atomic_exch, float)
STRATA_EMU_ATOMIC(atomicMax, atomic_max, int)
STRATA_EMU_ATOMIC(atomicMax, atomic_max, unsigned int)
STRATA_EMU_ATOMIC(atomicMax, atomic_max, long long)
STRATA_EMU_ATOMIC(atomicMax, atomic_max, unsigned long long)
STRATA_EMU_ATOMIC(atomicMin, atomic_min, int)
STRATA_EMU_ATOMIC(atomicMin, atomic_min, unsigned int)
STRATA_EMU_ATOMIC(atomicMin, atomic_min, long long)
STRATA_EMU_ATOMIC(atomicMin, atomic_min, unsigned long long)
#undef STRATA_EMU_ATOMIC

#define STRATA_EMU_ATOMIC_BITS(name, method, T)                                   \
  inline T name(T* address, T val) {                                             \
    return std::atomic_ref<T>(*address).method(val, std::memory_order_relaxed); \
  }
STRATA_EMU_ATOMIC_BITS(atomicAnd, fetch_and, int)
STRATA_EMU_ATOMIC_BITS(atomicAnd, fetch_and, unsigned int)
STRATA_EMU_ATOMIC_BITS(atomicAnd, fetch_and, unsigned long long)
STRATA_EMU_ATOMIC_BITS(atomicOr, fetch_or, int)
STRATA_EMU_ATOMIC_BITS(atomicOr, fetch_or, unsigned int)
STRATA_EMU_ATOMIC_BITS(atomicOr, fetch_or, unsigned long long)
STRATA_EMU_ATOMIC_BITS(atomicXor, fetch_xor, int)
STRATA_EMU_ATOMIC_BITS(atomicXor, fetch_xor, unsigned int)
STRATA_EMU_ATOMIC_BITS(atomicXor, fetch_xor, unsigned long long)
#undef STRATA_EMU_ATOMIC_BITS

inline int atomicCAS(int* address, int compare, int val) {
  return strata::emu::detail::atomic_cas(address, compare, val);
}
inline unsigned int atomicCAS(unsigned int* address, unsigned int compare, unsigned int val) {
  return strata::emu::detail::atomic_cas(address, compare, val);
}
inline unsigned long long atomicCAS(unsigned long long* address, unsigned long long compare,
                                    unsigned long long val) {
  return strata::emu::detail::atomic_cas(address, compare, val);
}
inline unsigned short atomicCAS(unsigned short* address, unsigned short compare, unsigned short val) {
  return strata::emu::detail::atomic_cas(address, compare, val);
}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_signal_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
