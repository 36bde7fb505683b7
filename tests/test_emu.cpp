// The CUDA emulator (backend/emu/) and the runtime wrapper (backend/runtime.hpp, launch.hpp): the
// kernels of tests/emu_kernels.cuh against answers computed with plain host loops. Block reduction
// through shared memory, warp shuffle reductions and scans, votes with partial masks, the
// __syncthreads counting variants, dynamic shared memory (with the opt-in above 48 KiB), 2-D and
// 3-D blocks and grids, atomics across blocks, math intrinsics, device memory/stream/event round
// trips and launch-configuration errors. Emulator-only: a kernel that throws, deadlocks or misuses
// a warp operation gives a strata::Error naming the block and thread, and the emulator still works
// afterwards; the reverse schedule order exposes a race that the forward order hides. The same file compiled by nvcc runs these checks on a GPU (tests/gpu/).
//
// Timing (hidden test, not in the suite): strata_tests "[.emu_bench]".
#include <catch2/catch.hpp>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <vector>

#include "strata/backend/launch.hpp"
#include "strata/backend/runtime.hpp"

#include "emu_kernels.cuh"

namespace emu_test {

namespace cuda = strata::cuda;

/// A device array that frees itself; starts zeroed or as a copy of a host vector.
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n), p_(static_cast<T*>(cuda::malloc(n * sizeof(T)))) {
    cuda::memset(p_, 0, n * sizeof(T));
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    cuda::memcpy(p_, host.data(), n_ * sizeof(T));
  }
  ~DeviceArray() { cuda::free(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return p_; }
  std::vector<T> host() const {
    std::vector<T> h(n_);
    cuda::memcpy(h.data(), p_, n_ * sizeof(T));
    return h;
  }

 private:
  size_t n_;
  T* p_;
};

/// Deterministic small integers in [0, m): a 32-bit LCG, so expected sums are exact in float.
inline std::vector<int> lcg_ints(size_t n, int m, uint32_t seed) {
  std::vector<int> v(n);
  for (auto& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = int((seed >> 8) % uint32_t(m));
  }
  return v;
}

inline std::vector<float> as_floats(const std::vector<int>& v, float scale = 1.0f, float shift = 0.0f) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = float(v[i]) * scale + shift;
  return f;
}

/// Per-block sums of x (blocks of `block` elements, the last one partial) by a plain loop.
inline std::vector<float> block_sums(const std::vector<float>& x, int block, int blocks) {
  std::vector<float> out(size_t(blocks), 0.0f);
  for (size_t i = 0; i < x.size(); ++i) out[i / size_t(block)] += x[i];
  return out;
}

}  // namespace emu_test

TEST_CASE("emu: block reduction through shared memory and __syncthreads", "[emu][gpu]") {
  using namespace emu_test;
  for (int block : {64, 256, 1024}) {
    const int blocks = 37, n = blocks * block - 17;  // the last block is partial
    const auto x = as_floats(lcg_ints(size_t(n), 13, 1), 1.0f, -6.0f);
    DeviceArray<float> d_x(x), d_out{size_t(blocks)};
    cuda::launch(block_sum_shared_kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, d_x.get(),
                 d_out.get(), n);
    CHECK(d_out.host() == block_sums(x, block, blocks));

    DeviceArray<float> d_out2{size_t(blocks)};
    cuda::launch(block_sum_warp_kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, d_x.get(), d_out2.get(), n);
    CHECK(d_out2.host() == block_sums(x, block, blocks));
  }
  // a block of 96 threads: three warps, a partial-sum array that is not a power of two
  const int n = 5 * 96;
  const auto x = as_floats(lcg_ints(size_t(n), 9, 2), 0.5f);
  DeviceArray<float> d_x(x), d_out(5);
  cuda::launch(block_sum_warp_kernel, dim3(5), dim3(96), 0, cuda::Stream{}, d_x.get(), d_out.get(), n);
  CHECK(d_out.host() == block_sums(x, 96, 5));
}

TEST_CASE("emu: warp shuffle reductions, down and xor", "[emu][gpu]") {
  using namespace emu_test;
  const int blocks = 8, block = 128, n = blocks * block;
  const auto x = as_floats(lcg_ints(size_t(n), 101, 3), 0.25f);
  DeviceArray<float> d_x(x), d_down{size_t(n / 32)}, d_xor{size_t(n)};
  cuda::launch(warp_sum_kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, d_x.get(), d_down.get(),
               d_xor.get());
  const auto warp = block_sums(x, 32, n / 32);
  CHECK(d_down.host() == warp);
  const auto butterfly = d_xor.host();
  for (int i = 0; i < n; ++i) CHECK(butterfly[size_t(i)] == warp[size_t(i / 32)]);
}

TEST_CASE("emu: __shfl_sync, __shfl_up_sync, __shfl_xor_sync with widths, and a warp scan", "[emu][gpu]") {
  using namespace emu_test;
  const int blocks = 3, block = 64, n = blocks * block;
  const auto x = lcg_ints(size_t(n), 1000, 4);
  DeviceArray<int> d_x(x), bcast{size_t(n)}, seg{size_t(n)}, up{size_t(n)}, scan{size_t(n)},
      xor8{size_t(n)}, xor16{size_t(n)};
  cuda::launch(shuffle_kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, d_x.get(), bcast.get(), seg.get(),
               up.get(), scan.get(), xor8.get(), xor16.get());
  const auto h_bcast = bcast.host(), h_seg = seg.host(), h_up = up.host(), h_scan = scan.host(),
             h_xor8 = xor8.host(), h_xor16 = xor16.host();
  for (int i = 0; i < n; ++i) {
    const int lane = i % 32, warp0 = i - lane;
    CHECK(h_bcast[size_t(i)] == x[size_t(warp0 + 3)]);
    CHECK(h_seg[size_t(i)] == x[size_t(warp0 + (lane & ~7) + 1)]);
    CHECK(h_up[size_t(i)] == x[size_t(lane > 0 ? i - 1 : i)]);
    int prefix = 0;
    for (int k = warp0; k <= i; ++k) prefix += x[size_t(k)];
    CHECK(h_scan[size_t(i)] == prefix);
    CHECK(h_xor8[size_t(i)] == x[size_t(warp0 + (lane ^ 8))]);
    CHECK(h_xor16[size_t(i)] == x[size_t(lane >= 16 ? i - 16 : i)]);
  }
}

TEST_CASE("emu: __ballot_sync, __any_sync, __all_sync with partial masks", "[emu][gpu]") {
  using namespace emu_test;
  // block 0 random predicates, block 1 all true, block 2 all false
  const int block = 64, n = 3 * block;
  std::vector<int> pred = lcg_ints(size_t(n), 2, 5);
  for (int i = block; i < 2 * block; ++i) pred[size_t(i)] = 1;
  for (int i = 2 * block; i < n; ++i) pred[size_t(i)] = 0;
  DeviceArray<int> d_pred(pred), any{size_t(n)}, all{size_t(n)};
  DeviceArray<unsigned> ballot{size_t(n)};
  cuda::launch(vote_kernel, dim3(3), dim3(block), 0, cuda::Stream{}, d_pred.get(), ballot.get(), any.get(),
               all.get());
  const auto h_ballot = ballot.host();
  const auto h_any = any.host(), h_all = all.host();
  for (int i = 0; i < n; ++i) {
    const int lane = i % 32, warp0 = i - lane;
    const unsigned group = lane < 20 ? 0x000fffffu : lane % 2 ? 0xaaa00000u : 0x55500000u;
    unsigned expected = 0;
    for (int l = 0; l < 32; ++l)
      if ((group >> l & 1u) && pred[size_t(warp0 + l)]) expected |= 1u << l;
    CHECK(h_ballot[size_t(i)] == expected);
    CHECK(h_any[size_t(i)] == (expected != 0));
    CHECK(h_all[size_t(i)] == (expected == group));
  }
}

TEST_CASE("emu: __syncthreads_count, __syncthreads_and, __syncthreads_or", "[emu][gpu]") {
  using namespace emu_test;
  const int block = 160, n = 3 * block;
  std::vector<int> pred = lcg_ints(size_t(n), 2, 6);
  for (int i = block; i < 2 * block; ++i) pred[size_t(i)] = 7;  // nonzero, not 1
  for (int i = 2 * block; i < n; ++i) pred[size_t(i)] = 0;
  DeviceArray<int> d_pred(pred), count(3), all(3), any(3);
  cuda::launch(sync_count_kernel, dim3(3), dim3(block), 0, cuda::Stream{}, d_pred.get(), count.get(), all.get(),
               any.get());
  int ones = 0;
  for (int i = 0; i < block; ++i) ones += pred[size_t(i)] != 0;
  CHECK(count.host() == std::vector<int>{ones, block, 0});
  CHECK(all.host() == std::vector<int>{ones == block, 1, 0});
  CHECK(any.host() == std::vector<int>{ones > 0, 1, 0});
}

TEST_CASE("emu: dynamic shared memory, and the opt-in above 48 KiB", "[emu][gpu]") {
  using namespace emu_test;
  const int blocks = 5, block = 128, n = blocks * block;
  const auto x = as_floats(lcg_ints(size_t(n), 1000, 7));
  DeviceArray<float> d_x(x), out{size_t(n)};
  DeviceArray<int> who{size_t(n)};
  cuda::launch(rotate_dynamic_kernel, dim3(blocks), dim3(block), size_t(block) * 8, cuda::Stream{}, d_x.get(),
               out.get(), who.get());
  const auto h_out = out.host();
  const auto h_who = who.host();
  for (int i = 0; i < n; ++i) {
    const int b = i / block, t = i % block;
    CHECK(h_out[size_t(i)] == x[size_t(b * block + (t + 1) % block)]);
    CHECK(h_who[size_t(i)] == (t + 1) % block);
  }

  // 64 KiB: refused until the kernel opts in, then every byte is usable
  const int floats = 16384;
  DeviceArray<float> sums(3);
  REQUIRE_THROWS_WITH(cuda::launch(fill_dynamic_kernel, dim3(3), dim3(256), floats * sizeof(float), cuda::Stream{},
                                   floats, sums.get()),
                      Catch::Contains("launch: got 65536 bytes of dynamic shared memory, expected at most 49152"));
  cuda::set_max_dynamic_shared(fill_dynamic_kernel, floats * sizeof(float));
  cuda::launch(fill_dynamic_kernel, dim3(3), dim3(256), floats * sizeof(float), cuda::Stream{}, floats, sums.get());
  float expected = 0.0f;
  for (int k = 0; k < floats; ++k) expected += float(k % 64);
  CHECK(sums.host() == std::vector<float>(3, expected));
}

TEST_CASE("emu: 2-D and 3-D blocks and grids write every index once", "[emu][gpu]") {
  using namespace emu_test;
  struct Case {
    dim3 size, block;
  };
  for (const Case& c : {Case{dim3(37, 21), dim3(16, 8)}, Case{dim3(19, 9, 7), dim3(8, 4, 2)},
                        Case{dim3(5, 3, 70), dim3(1, 1, 64)}, Case{dim3(300, 2, 2), dim3(1024)}}) {
    const dim3 grid((c.size.x + c.block.x - 1) / c.block.x, (c.size.y + c.block.y - 1) / c.block.y,
                    (c.size.z + c.block.z - 1) / c.block.z);
    const size_t cells = size_t(c.size.x) * c.size.y * c.size.z;
    DeviceArray<int> hits(cells);
    DeviceArray<unsigned> who(cells);
    cuda::launch(index3d_kernel, grid, c.block, 0, cuda::Stream{}, hits.get(), who.get(), c.size);
    const auto h_hits = hits.host();
    const auto h_who = who.host();
    size_t wrong = 0;
    for (unsigned z = 0; z < c.size.z; ++z)
      for (unsigned y = 0; y < c.size.y; ++y)
        for (unsigned x = 0; x < c.size.x; ++x) {
          const size_t cell = (size_t(z) * c.size.y + y) * c.size.x + x;
          const unsigned bx = x / c.block.x, by = y / c.block.y, bz = z / c.block.z;
          const unsigned tx = x % c.block.x, ty = y % c.block.y, tz = z % c.block.z;
          const unsigned b = (bz * grid.y + by) * grid.x + bx;
          const unsigned t = (tz * c.block.y + ty) * c.block.x + tx;
          wrong += h_hits[cell] != 1 || h_who[cell] != b * 1024 + t;
        }
    CHECK(wrong == 0);
  }
}

TEST_CASE("emu: atomics across blocks", "[emu][gpu]") {
  using namespace emu_test;
  const int blocks = 64, block = 256, n = blocks * block;
  AtomicTotals init{};
  init.max = INT_MIN;
  init.min = INT_MAX;
  DeviceArray<AtomicTotals> t(std::vector<AtomicTotals>{init});
  cuda::launch(atomics_kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, t.get());
  const AtomicTotals got = t.host()[0];
  int s = 0, mx = INT_MIN, mn = INT_MAX;
  for (int i = 0; i < n; ++i) {
    s += i % 5;
    const int key = (i * 7919) % 10007 - 5000;
    mx = key > mx ? key : mx;
    mn = key < mn ? key : mn;
  }
  CHECK(got.f == float(n));
  CHECK(got.d == 0.5 * (double(n) * (n - 1) / 2));
  CHECK(got.s == s);
  CHECK(got.u == unsigned(n));
  CHECK(got.ull == (unsigned long long)(n) * (n - 1) / 2);
  CHECK(got.max == mx);
  CHECK(got.min == mn);
  CHECK(got.cas == n);
  for (unsigned word : got.bits) CHECK(word == 0xffffffffu);
  CHECK((got.last >= 0 && got.last < n));
}

TEST_CASE("emu: math intrinsics", "[emu][gpu]") {
  using namespace emu_test;
  DeviceArray<float> out(14);
  cuda::launch(math_kernel, dim3(1), dim3(1), 0, cuda::Stream{}, out.get());
  const auto v = out.host();
  CHECK(v[0] == Approx(2.718281828).epsilon(1e-5));
  CHECK(v[1] == Approx(1.0).epsilon(1e-5));
  CHECK(v[2] == Approx(0.5).epsilon(1e-6));
  CHECK(v[3] == 0.25f);
  CHECK(v[4] == 2.0f);
  CHECK(v[5] == 0.0999755859375f);  // f16 0x2e66, the nearest binary16 to 0.1
  CHECK(v[6] == 0.10009765625f);    // bf16 0x3dcd
  CHECK(v[7] == 8.0f);
  CHECK(v[8] == 4.0f);
  CHECK(v[9] == 31.0f);
  CHECK(v[10] == 1.0f);
  CHECK(v[11] == float(0x3f800000u));
  CHECK(v[12] == Approx(std::sin(0.5)).epsilon(1e-5));
  CHECK(v[13] == Approx(1024.0).epsilon(1e-5));
}

TEST_CASE("emu: runtime malloc, memcpy, memset, streams and events", "[emu][gpu]") {
  using namespace emu_test;
  const size_t n = 1000;
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = float(i) * 0.5f;
  auto* a = static_cast<float*>(cuda::malloc(n * sizeof(float)));
  auto* b = static_cast<float*>(cuda::malloc(n * sizeof(float)));
  REQUIRE(a != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(a) % 256 == 0);
  cuda::Stream s = cuda::stream_create();
  cuda::Event e0 = cuda::event_create(), e1 = cuda::event_create();
  cuda::event_record(e0, s);
  cuda::memcpy(a, host.data(), n * sizeof(float));             // host -> device
  cuda::memcpy_async(b, a, n * sizeof(float), s);              // device -> device
  cuda::memset_async(b + 10, 0, 5 * sizeof(float), s);         // zero five floats
  auto* pinned = static_cast<float*>(cuda::malloc_host(n * sizeof(float)));
  cuda::memcpy_async(pinned, b, n * sizeof(float), s);         // device -> pinned host
  cuda::event_record(e1, s);
  cuda::stream_synchronize(s);
  cuda::event_synchronize(e1);
  CHECK(cuda::event_query(e1));
  CHECK(cuda::event_elapsed_ms(e0, e1) >= 0.0f);
  for (size_t i = 0; i < n; ++i) CHECK(pinned[i] == (i >= 10 && i < 15 ? 0.0f : float(i) * 0.5f));
  cuda::memset(a, 0xff, n * sizeof(float));
  std::vector<uint32_t> bits(n);
  cuda::memcpy(bits.data(), a, n * sizeof(float));
  CHECK(bits == std::vector<uint32_t>(n, 0xffffffffu));
  cuda::free_host(pinned);
  cuda::free(a);
  cuda::free(b);
  cuda::event_destroy(e0);
  cuda::event_destroy(e1);
  cuda::stream_destroy(s);
  cuda::device_synchronize();
  CHECK(cuda::malloc(0) == nullptr);
  CHECK(cuda::device_count() >= 1);
  REQUIRE_THROWS_WITH(cuda::memcpy(nullptr, host.data(), 4),
                      Catch::Contains("cuda::memcpy: got a null destination for 4 bytes"));
  REQUIRE_THROWS_WITH(cuda::set_device(cuda::device_count()), Catch::Contains("cuda::set_device: got device"));
}

TEST_CASE("emu: bad launch configurations throw strata::Error", "[emu][gpu]") {
  using namespace emu_test;
  DeviceArray<float> x(4096), out(4);
  auto bad = [&](dim3 grid, dim3 block, size_t shared) {
    cuda::launch(block_sum_warp_kernel, grid, block, shared, cuda::Stream{}, x.get(), out.get(), 4096);
  };
  REQUIRE_THROWS_AS(bad(dim3(1), dim3(2048), 0), strata::Error);
  REQUIRE_THROWS_WITH(bad(dim3(1), dim3(2048), 0),
                      "launch: got block (2048, 1, 1) = 2048 threads, expected at most 1024 threads per block");
  REQUIRE_THROWS_WITH(bad(dim3(1), dim3(32, 33), 0), Catch::Contains("= 1056 threads, expected at most 1024"));
  REQUIRE_THROWS_WITH(bad(dim3(1), dim3(1, 1, 65), 0), Catch::Contains("expected block.x and block.y <= 1024 and block.z <= 64"));
  REQUIRE_THROWS_WITH(bad(dim3(0), dim3(32), 0), Catch::Contains("expected every dimension >= 1"));
  REQUIRE_THROWS_WITH(bad(dim3(1, 65536), dim3(32), 0), Catch::Contains("grid.y, grid.z <= 65535"));
  REQUIRE_THROWS_WITH(bad(dim3(1), dim3(32), 48 * 1024 + 1),
                      Catch::Contains("got 49153 bytes of dynamic shared memory, expected at most 49152"));
  REQUIRE_THROWS_WITH(cuda::set_max_dynamic_shared(block_sum_warp_kernel, 300 * 1024),
                      Catch::Contains("set_max_dynamic_shared: got 307200 bytes, expected at most 232448"));
}

#if defined(STRATA_CUDA_EMULATE)
namespace emu_test {

/// Thread `thread` of block `block` throws between two barriers.
static __global__ void throwing_kernel(unsigned block, unsigned thread, int* done) {
  __syncthreads();
  if (blockIdx.x == block && threadIdx.x == thread) throw strata::Error("kernel_op: got a bad value, expected a good one");
  __syncthreads();
  atomicAdd(done, 1);
}

/// Lanes 0..15 wait at __syncwarp for lanes 16..31, which wait at __syncthreads for them.
static __global__ void deadlock_kernel() {
  if (threadIdx.x < 16) __syncwarp();
  else __syncthreads();
}

/// Lane 5 shuffles with a mask that leaves it out.
static __global__ void bad_mask_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(threadIdx.x == 5 ? 0x1u : 0xffffffffu, int(threadIdx.x), 0);
}

/// Even lanes call __ballot_sync, odd lanes __any_sync, both with the full mask.
static __global__ void mixed_vote_kernel(int* out) {
  out[threadIdx.x] = threadIdx.x % 2 ? __any_sync(0xffffffffu, 1) : int(__ballot_sync(0xffffffffu, 1));
}

/// Launches another kernel from device code (dynamic parallelism), which the emulator refuses.
static __global__ void nested_launch_kernel(float* out) {
  strata::cuda::launch(math_kernel, dim3(1), dim3(1), 0, strata::cuda::Stream{}, out);
}

/// y[i] = a * x[i] + y[i]: an elementwise kernel with no barrier, for the timing.
static __global__ void saxpy_kernel(int n, float a, const float* x, float* y) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = a * x[i] + y[i];
}

/// A deliberate race, no __syncthreads between the write and the read: out[i] = what thread t - 1 of
/// the block wrote (b * 1000 + t - 1), or -1 in thread 0. Right by luck when thread t - 1 runs first.
static __global__ void racy_shift_kernel(float* out) {
  __shared__ float s[256];
  const unsigned t = threadIdx.x;
  s[t] = float(blockIdx.x * 1000 + t);
  out[blockIdx.x * blockDim.x + t] = t > 0 ? s[t - 1] : -1.0f;
}

/// Sets the emulator's schedule order for a scope, then restores the previous one.
struct ScheduleOrderScope {
  explicit ScheduleOrderScope(strata::emu::ScheduleOrder order) : previous(strata::emu::detail::schedule_order()) {
    strata::emu::set_schedule_order(order);
  }
  ~ScheduleOrderScope() { strata::emu::set_schedule_order(previous); }
  ScheduleOrderScope(const ScheduleOrderScope&) = delete;
  ScheduleOrderScope& operator=(const ScheduleOrderScope&) = delete;
  strata::emu::ScheduleOrder previous;
};

}  // namespace emu_test

TEST_CASE("emu: reverse schedule order gives the same results and exposes a race forward order hides", "[emu]") {
  using namespace emu_test;
  const int blocks = 6, block = 256, n = blocks * block;
  auto racy_mismatches = [&] {
    DeviceArray<float> out{size_t(n)};
    cuda::launch(racy_shift_kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, out.get());
    const auto h = out.host();
    int wrong = 0;
    for (int i = 0; i < n; ++i) wrong += h[size_t(i)] != (i % block ? float(i / block * 1000 + i % block - 1) : -1.0f);
    return wrong;
  };
  {
    ScheduleOrderScope forward(strata::emu::ScheduleOrder::forward);
    CHECK(racy_mismatches() == 0);  // thread t - 1 always ran before thread t
  }
  ScheduleOrderScope reverse(strata::emu::ScheduleOrder::reverse);
  CHECK(racy_mismatches() > 0);

  // correct kernels do not care
  const auto x = as_floats(lcg_ints(size_t(n), 13, 10), 1.0f, -6.0f);
  DeviceArray<float> d_x(x), sums{size_t(blocks)}, sums2{size_t(blocks)}, out{size_t(n)};
  DeviceArray<int> who{size_t(n)};
  cuda::launch(block_sum_shared_kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, d_x.get(), sums.get(), n);
  cuda::launch(block_sum_warp_kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, d_x.get(), sums2.get(), n);
  CHECK(sums.host() == block_sums(x, block, blocks));
  CHECK(sums2.host() == block_sums(x, block, blocks));
  cuda::launch(rotate_dynamic_kernel, dim3(blocks), dim3(block), size_t(block) * 8, cuda::Stream{}, d_x.get(),
               out.get(), who.get());
  const auto h_out = out.host();
  for (int i = 0; i < n; ++i) CHECK(h_out[size_t(i)] == x[size_t(i / block * block + (i % block + 1) % block)]);
  const auto xi = lcg_ints(size_t(n), 1000, 11);
  DeviceArray<int> d_xi(xi), bcast{size_t(n)}, seg{size_t(n)}, up{size_t(n)}, scan{size_t(n)}, xor8{size_t(n)},
      xor16{size_t(n)};
  cuda::launch(shuffle_kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, d_xi.get(), bcast.get(), seg.get(),
               up.get(), scan.get(), xor8.get(), xor16.get());
  const auto h_scan = scan.host();
  for (int i = 0, prefix = 0; i < n; ++i) {
    prefix = (i % 32 ? prefix : 0) + xi[size_t(i)];
    CHECK(h_scan[size_t(i)] == prefix);
  }
}

TEST_CASE("emu: kernel errors become strata::Error naming block and thread", "[emu]") {
  using namespace emu_test;
  DeviceArray<int> done(1), out(64);
  REQUIRE_THROWS_WITH(
      cuda::launch(throwing_kernel, dim3(8), dim3(64), 0, cuda::Stream{}, 5u, 17u, done.get()),
      "launch: kernel threw in block (5, 0, 0), thread (17, 0, 0): kernel_op: got a bad value, expected a good one");
  REQUIRE_THROWS_WITH(cuda::launch(deadlock_kernel, dim3(1), dim3(32), 0, cuda::Stream{}),
                      Catch::Contains("got a deadlock in block (0, 0, 0): 16 threads wait at __syncthreads and 16 at "
                                      "a warp operation"));
  REQUIRE_THROWS_WITH(cuda::launch(bad_mask_kernel, dim3(1), dim3(32), 0, cuda::Stream{}, out.get()),
                      "launch: kernel threw in block (0, 0, 0), thread (5, 0, 0): __shfl_sync: got mask 0x1 in lane 5 "
                      "of warp 0, expected a mask that includes the calling lane");
  REQUIRE_THROWS_WITH(cuda::launch(mixed_vote_kernel, dim3(1), dim3(32), 0, cuda::Stream{}, out.get()),
                      Catch::Contains("lanes of warp 0 that disagree"));
  DeviceArray<float> math_out(14);
  REQUIRE_THROWS_WITH(cuda::launch(nested_launch_kernel, dim3(1), dim3(1), 0, cuda::Stream{}, math_out.get()),
                      "launch: kernel threw in block (0, 0, 0), thread (0, 0, 0): launch: got a launch from inside a "
                      "kernel (block (0, 0, 0), thread (0, 0, 0)), expected launches from host code only (dynamic "
                      "parallelism is not emulated)");

  // the workers' fibers, stacks and barriers are sound after abandoned blocks
  const int n = 64 * 256;
  const auto x = as_floats(lcg_ints(size_t(n), 13, 8));
  DeviceArray<float> d_x(x), sums(64);
  cuda::launch(block_sum_warp_kernel, dim3(64), dim3(256), 0, cuda::Stream{}, d_x.get(), sums.get(), n);
  CHECK(sums.host() == block_sums(x, 256, 64));
}

TEST_CASE("emu: launch timing, 4096 blocks of 256 threads", "[.emu_bench]") {
  using namespace emu_test;
  const int blocks = 4096, block = 256, n = blocks * block;
  const auto x = as_floats(lcg_ints(size_t(n), 13, 9));
  DeviceArray<float> d_x(x), sums{size_t(blocks)};
  for (auto* kernel : {&block_sum_warp_kernel, &block_sum_shared_kernel}) {
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      const std::clock_t c0 = std::clock();
      cuda::launch(kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, d_x.get(), sums.get(), n);
      const double cpu_ms = double(std::clock() - c0) * 1000.0 / CLOCKS_PER_SEC;
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::printf("emu: %s, %d blocks x %d threads: %.1f ms wall, %.1f ms cpu (%.1f ns cpu per thread)\n",
                  kernel == &block_sum_warp_kernel ? "block_sum_warp_kernel (5+5 shuffles, 1 barrier)"
                                                   : "block_sum_shared_kernel (9 barriers)",
                  blocks, block, ms, cpu_ms, cpu_ms * 1e6 / n);
    }
    CHECK(sums.host() == block_sums(x, block, blocks));
  }
  DeviceArray<float> y{size_t(n)};
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    cuda::launch(saxpy_kernel, dim3(blocks), dim3(block), 0, cuda::Stream{}, n, 2.0f, d_x.get(), y.get());
    const double cpu_ms = double(std::clock() - c0) * 1000.0 / CLOCKS_PER_SEC;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("emu: saxpy_kernel (no barrier), %d blocks x %d threads: %.1f ms wall, %.1f ms cpu (%.1f ns cpu per "
                "thread)\n", blocks, block, ms, cpu_ms, cpu_ms * 1e6 / n);
  }
  const auto h_y = y.host();
  for (int i = 0; i < n; ++i) REQUIRE(h_y[size_t(i)] == 6.0f * x[size_t(i)]);
}

#endif
