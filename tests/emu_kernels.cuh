// Kernels that exercise the CUDA execution model, for tests/test_emu.cpp. Ordinary CUDA: g++ runs
// them through the emulator, nvcc compiles them for the GPU (tests/gpu/), and the same checks run.
// Each kernel says what it writes; the tests compute the expected values with plain host loops.
#pragma once

#include "strata/backend/cuda_compat.hpp"

namespace emu_test {

// --- reductions -------------------------------------------------------------------------------

/// out[b] = sum of x[b * blockDim.x + t] for t < blockDim.x and index < n: the classic tree in
/// shared memory, one __syncthreads per level (blockDim.x a power of two <= 1024).
static __global__ void block_sum_shared_kernel(const float* x, float* out, int n) {
  __shared__ float s[1024];
  const unsigned t = threadIdx.x;
  const unsigned i = blockIdx.x * blockDim.x + t;
  s[t] = i < unsigned(n) ? x[i] : 0.0f;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (t < stride) s[t] += s[t + stride];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

/// The sum of v over the 32 lanes, in lane 0 (shuffle down).
__device__ inline float warp_sum_down(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

/// The sum of v over the 32 lanes, in every lane (butterfly).
__device__ inline float warp_sum_xor(float v) {
  for (int mask = 16; mask > 0; mask /= 2) v += __shfl_xor_sync(0xffffffffu, v, mask);
  return v;
}

/// Per warp w (global): down[w] = the warp's sum of x (lane 0's shuffle-down result);
/// every thread i: butterfly[i] = its warp's sum (xor result). blockDim.x a multiple of 32.
static __global__ void warp_sum_kernel(const float* x, float* down, float* butterfly) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  const float v = x[i];
  const float d = warp_sum_down(v);
  if (threadIdx.x % 32 == 0) down[i / 32] = d;
  butterfly[i] = warp_sum_xor(v);
}

/// out[b] = the block's sum as production kernels do it: shuffles within each warp, the warps'
/// partial sums through shared memory, then one warp reduces those.
static __global__ void block_sum_warp_kernel(const float* x, float* out, int n) {
  __shared__ float partial[32];
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = warp_sum_down(i < unsigned(n) ? x[i] : 0.0f);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = warp_sum_down(lane < (blockDim.x + 31) / 32 ? partial[lane] : 0.0f);
    if (lane == 0) out[blockIdx.x] = v;
  }
}

// --- shuffles and votes -----------------------------------------------------------------------

/// For every thread i (blockDim.x a multiple of 32), from x (ints):
///   bcast[i] = x of lane 3 of its warp           (__shfl_sync)
///   seg[i]   = x of lane 1 of its 8-lane segment (__shfl_sync, width 8)
///   up[i]    = x[i - 1], or x[i] in lane 0       (__shfl_up_sync)
///   scan[i]  = inclusive prefix sum of x over its warp (Hillis-Steele with __shfl_up_sync)
///   xor8[i]  = x of lane ^ 8                      (__shfl_xor_sync, width 16: stays in its half)
///   xor16[i] = x of lane - 16 in lanes 16..31; its own x in lanes 0..15, whose partner lane ^ 16
///              lies in a later 16-lane segment    (__shfl_xor_sync 16, width 16)
static __global__ void shuffle_kernel(const int* x, int* bcast, int* seg, int* up, int* scan, int* xor8,
                                      int* xor16) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned lane = threadIdx.x % 32;
  const int v = x[i];
  bcast[i] = __shfl_sync(0xffffffffu, v, 3);
  seg[i] = __shfl_sync(0xffffffffu, v, 1, 8);
  up[i] = __shfl_up_sync(0xffffffffu, v, 1);
  int s = v;
  for (unsigned d = 1; d < 32; d *= 2) {
    const int other = __shfl_up_sync(0xffffffffu, s, d);
    if (lane >= d) s += other;
  }
  scan[i] = s;
  xor8[i] = __shfl_xor_sync(0xffffffffu, v, 8, 16);
  xor16[i] = __shfl_xor_sync(0xffffffffu, v, 16, 16);
}

/// Votes by groups of lanes with partial masks, all at the same time (blockDim.x a multiple of
/// 32). Lanes 0..19 vote together (mask 0x000fffff); lanes 20..31 split into the odd ones
/// (0xaaa00000) and the even ones (0x55500000). For every thread i with predicate pred[i]:
/// ballot[i] = bits of its group's lanes whose pred != 0, any[i], all[i] over its group.
static __global__ void vote_kernel(const int* pred, unsigned* ballot, int* any, int* all) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned lane = threadIdx.x % 32;
  const int p = pred[i];
  if (lane < 20) {
    ballot[i] = __ballot_sync(0x000fffffu, p);
    any[i] = __any_sync(0x000fffffu, p);
    all[i] = __all_sync(0x000fffffu, p);
  } else if (lane % 2 == 1) {
    ballot[i] = __ballot_sync(0xaaa00000u, p);
    any[i] = __any_sync(0xaaa00000u, p);
    all[i] = __all_sync(0xaaa00000u, p);
  } else {
    __syncwarp(0x55500000u);
    ballot[i] = __ballot_sync(0x55500000u, p);
    any[i] = __any_sync(0x55500000u, p);
    all[i] = __all_sync(0x55500000u, p);
  }
}

/// Per block b: count[b] = threads with pred != 0 (__syncthreads_count), all[b], any[b].
static __global__ void sync_count_kernel(const int* pred, int* count, int* all, int* any) {
  const int p = pred[blockIdx.x * blockDim.x + threadIdx.x];
  const int c = __syncthreads_count(p);
  const int a = __syncthreads_and(p);
  const int o = __syncthreads_or(p);
  if (threadIdx.x == 0) {
    count[blockIdx.x] = c;
    all[blockIdx.x] = a;
    any[blockIdx.x] = o;
  }
}

// --- shared memory ----------------------------------------------------------------------------

/// Each block rotates its blockDim.x values of x by one into out through dynamic shared memory laid
/// out as [blockDim.x floats][blockDim.x ints]; the ints hold each thread's index, read back the
/// same way: out[i] = x of thread (t + 1) % blockDim.x of the block, who[i] = (t + 1) % blockDim.x.
/// (Thread t reads what thread t + 1 wrote: without the barrier, or with one that released a
/// thread early, it would read a stale value.) shared_bytes = blockDim.x * 8.
static __global__ void rotate_dynamic_kernel(const float* x, float* out, int* who) {
  STRATA_DYNAMIC_SHARED(float, s_values);
  int* s_index = reinterpret_cast<int*>(s_values + blockDim.x);
  const unsigned t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  s_values[t] = x[i];
  s_index[t] = int(t);
  __syncthreads();
  out[i] = s_values[(t + 1) % blockDim.x];
  who[i] = s_index[(t + 1) % blockDim.x];
}

/// Fills `floats` floats of dynamic shared memory (thread t writes t, t + blockDim.x, ...), then
/// thread 0 writes their sum to out[blockIdx.x]: uses every byte of a large dynamic allocation.
static __global__ void fill_dynamic_kernel(int floats, float* out) {
  STRATA_DYNAMIC_SHARED(float, s);
  for (int k = int(threadIdx.x); k < floats; k += int(blockDim.x)) s[k] = float(k % 64);
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int k = 0; k < floats; ++k) total += s[k];
    out[blockIdx.x] = total;
  }
}

// --- indexing ---------------------------------------------------------------------------------

/// For a 3-D array of `size` (x fastest) covered by the grid: the thread at (x, y, z) adds 1 to
/// hits[cell] and writes who[cell] = linear block index * 1024 + linear thread index.
static __global__ void index3d_kernel(int* hits, unsigned* who, dim3 size) {
  const unsigned x = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned y = blockIdx.y * blockDim.y + threadIdx.y;
  const unsigned z = blockIdx.z * blockDim.z + threadIdx.z;
  if (x >= size.x || y >= size.y || z >= size.z) return;
  const unsigned cell = (z * size.y + y) * size.x + x;
  atomicAdd(&hits[cell], 1);
  const unsigned block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const unsigned thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  who[cell] = block * 1024 + thread;
}

// --- atomics ----------------------------------------------------------------------------------

/// Every thread i (of n = gridDim.x * blockDim.x) adds to totals shared by all blocks:
///   *f += 1.0f; *d += 0.5 * i; *s += i % 5; *u += 2 and -= 1 (net +1); *ull += i;
///   *max = max of key(i); *min = min of key(i), key(i) = (i * 7919) % 10007 - 5000;
///   *cas += 1 through an atomicCAS loop; bits[i / 32 % 4] |= 1 << (i % 32); *last = some i.
struct AtomicTotals {
  float f;
  double d;
  int s;
  unsigned u;
  unsigned long long ull;
  int max, min, cas, last;
  unsigned bits[4];
};

static __global__ void atomics_kernel(AtomicTotals* t) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(&t->f, 1.0f);
  atomicAdd(&t->d, 0.5 * i);
  atomicAdd(&t->s, i % 5);
  atomicAdd(&t->u, 2u);
  atomicSub(&t->u, 1u);
  atomicAdd(&t->ull, (unsigned long long)i);
  const int key = (i * 7919) % 10007 - 5000;
  atomicMax(&t->max, key);
  atomicMin(&t->min, key);
  int old = t->cas, assumed;
  do {
    assumed = old;
    old = atomicCAS(&t->cas, assumed, assumed + 1);
  } while (old != assumed);
  atomicOr(&t->bits[i / 32 % 4], 1u << (i % 32));
  atomicExch(&t->last, i);
}

// --- math -------------------------------------------------------------------------------------

/// out[k] for k < 14: __expf(1), __logf(e), rsqrtf(4), __fdividef(1, 4), fmaxf(-1, 2),
/// __half2float(__float2half(0.1f)), __bfloat162float(__float2bfloat16(0.1f)), __popc(0xf0f0),
/// __ffs(8), __clz(1), __saturatef(1.5f), __float_as_uint(1.0f) (as float), __sinf(0.5f),
/// __powf(2, 10). One thread.
static __global__ void math_kernel(float* out) {
  out[0] = __expf(1.0f);
  out[1] = __logf(2.718281828f);
  out[2] = rsqrtf(4.0f);
  out[3] = __fdividef(1.0f, 4.0f);
  out[4] = fmaxf(-1.0f, 2.0f);
  out[5] = __half2float(__float2half(0.1f));
  out[6] = __bfloat162float(__float2bfloat16(0.1f));
  out[7] = float(__popc(0xf0f0u));
  out[8] = float(__ffs(8));
  out[9] = float(__clz(1));
  out[10] = __saturatef(1.5f);
  out[11] = float(__float_as_uint(1.0f));
  out[12] = __sinf(0.5f);
  out[13] = __powf(2.0f, 10.0f);
}

}  // namespace emu_test
