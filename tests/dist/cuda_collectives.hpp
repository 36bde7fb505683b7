// Tests of strata::dist's collectives on cuda tensors, included by test_ddp.cpp (strata_dist_tests:
// MPI through pinned host buffers, on the emulated device, under mpirun -np 1, 2, 3) and by
// nccl_tests.cu (strata_dist_nccl_tests: NCCL on a real GPU, one process). Not a test_*.cpp: it is
// no translation unit of its own.
//
// Each collective on cuda tensors (all_reduce sum/avg/max/min and async, broadcast, all_gather; f32 f64
// f16 bf16 i32 i64 u8, odd sizes) must give the cpu tensors' result: bit for bit over MPI (the same
// host arithmetic); with NCCL on more than one rank within a few of the dtype's epsilons (NCCL sums
// f16/bf16 natively and in its own order). test_collectives.cpp checks the cpu results against closed
// forms; closed forms with exact integer values are checked here on the cuda results too.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include <strata/backend/device_allocator.hpp>
#include <strata/dist.hpp>
#include <strata/tensor/tensor.hpp>  // to(x, device)

namespace cuda_collectives_test {
using namespace strata;

/// A fresh cpu tensor of dtype dt (1-d of n elements, or of `shape`) with element i = f(i).
Tensor make(DType dt, int64_t n, const std::function<double(int64_t)>& f, Shape shape = {}) {
  Tensor t = Tensor::empty(shape.empty() ? Shape{n} : shape, dt);
  dispatch_all(dt, "make", [&]<class T>(type_tag<T>) {
    T* p = t.data_ptr<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = cast_value<T>(f(i));
  });
  return t;
}

/// The elements of a contiguous cpu tensor as double.
std::vector<double> read(const Tensor& t) {
  std::vector<double> out(size_t(t.numel()));
  dispatch_all(t.dtype(), "read", [&]<class T>(type_tag<T>) {
    const T* p = t.data_ptr<T>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = cast_value<double>(p[i]);
  });
  return out;
}

/// This rank's device: cuda(local_rank % device_count()), one GPU per process (cuda:0 on the emulator).
Device dev() { return Device::cuda(dist::group().local_rank() % cuda::device_count()); }

/// A cuda tensor's bytes equal a cpu tensor's (same dtype and shape, both contiguous).
bool same_bytes(const Tensor& on_cuda, const Tensor& on_cpu) {
  REQUIRE(on_cuda.device().is_cuda());
  REQUIRE(on_cpu.device().is_cpu());
  if (on_cuda.dtype() != on_cpu.dtype() || on_cuda.shape() != on_cpu.shape()) return false;
  const Tensor back = to(on_cuda, kCPU);
  return std::memcmp(back.raw_data(), on_cpu.raw_data(), size_t(on_cpu.numel()) * on_cpu.element_size()) == 0;
}

/// The result of a reduction on cuda agrees with the cpu's: bit for bit over MPI (or on one rank);
/// with NCCL on several ranks, within 4 * ranks epsilons of the dtype (relative to the cpu value's size).
bool reduced_alike(const Tensor& on_cuda, const Tensor& on_cpu, int ranks) {
#if defined(STRATA_DIST_NCCL)
  if (ranks > 1 && is_floating(on_cpu.dtype())) {
    const std::vector<double> a = read(to(on_cuda, kCPU)), b = read(on_cpu);
    const double eps = on_cpu.dtype() == DType::f16 ? 0x1p-10 : on_cpu.dtype() == DType::bf16 ? 0x1p-7
                       : on_cpu.dtype() == DType::f32 ? 0x1p-23 : 0x1p-52;
    for (size_t i = 0; i < a.size(); ++i) {
      const double x = a[i], y = b[i];
      if (std::abs(x - y) > 4 * ranks * eps * std::max(1.0, std::abs(y))) return false;
    }
    return true;
  }
#endif
  (void)ranks;
  return same_bytes(on_cuda, on_cpu);
}

const std::vector<DType> kDtypes = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8};

/// Values kept small for the 16-bit floats and uint8 so that sums are exact there.
int64_t period(DType dt) { return dt == DType::f16 || dt == DType::bf16 || dt == DType::u8 ? 13 : 1 << 30; }

TEST_CASE("dist cuda: all_reduce on cuda tensors equals the cpu tensors' (every dtype, sum avg max min)",
          "[dist][cuda]") {
  auto& pg = dist::group();
  const int P = pg.world_size(), r = pg.rank();
  for (DType dt : kDtypes) {
    for (int64_t n : {1, 7, 1001}) {
      const int64_t k = period(dt);
      for (dist::ReduceOp op : {dist::ReduceOp::sum, dist::ReduceOp::avg, dist::ReduceOp::max, dist::ReduceOp::min}) {
        if (op == dist::ReduceOp::avg && !is_floating(dt)) continue;
        // 0.1 steps: not exact in f16/bf16/f32, so the widening and rounding must match the cpu's
        auto f = [&](int64_t i) {
          const double base = double(r + 1 + i % k);
          return is_floating(dt) ? base + 0.1 * double((i * 7 + r) % 5) : base + double((i + 3 * r) % 4);
        };
        Tensor c = make(dt, n, f);
        Tensor g = to(c, dev());
        pg.all_reduce(c, op);
        pg.all_reduce(g, op);
        INFO("dtype " << dt << ", n " << n << ", op " << dist::reduce_op_name(op));
        CHECK(g.device() == dev());
        CHECK(reduced_alike(g, c, P));
      }
      // a closed form on the cuda result: sum_r (r + 1 + i % k)
      Tensor g = to(make(dt, n, [&](int64_t i) { return r + 1 + i % k; }), dev());
      pg.all_reduce(g);
      CHECK(same_bytes(g, make(dt, n, [&](int64_t i) { return P * (P + 1) / 2 + double(P) * double(i % k); })));
    }
  }
  Tensor empty = Tensor::empty({0}, DType::f32, dev());  // no elements: a valid collective
  pg.all_reduce(empty);
  CHECK(empty.numel() == 0);
}

TEST_CASE("dist cuda: all_reduce_async, several in flight, on cuda tensors", "[dist][cuda]") {
  auto& pg = dist::group();
  const int P = pg.world_size(), r = pg.rank();
  Tensor a = to(make(DType::f32, 1 << 18, [&](int64_t i) { return r + 1 + i % 1000; }), dev());
  Tensor b = to(make(DType::bf16, 7, [&](int64_t i) { return r + 1 + i; }), dev());
  Tensor c = make(DType::f64, 7, [&](int64_t i) { return double(r * i) / 3; });
  Tensor cg = to(c, dev());
  dist::Work wa = pg.all_reduce_async(a);
  dist::Work wb = pg.all_reduce_async(b, dist::ReduceOp::max);
  dist::Work wc = pg.all_reduce_async(cg, dist::ReduceOp::avg);
  wb.wait();  // in another order than started
  wc.wait();
  wa.wait();
  CHECK(same_bytes(a, make(DType::f32, 1 << 18, [&](int64_t i) { return P * (P + 1) / 2 + double(P) * double(i % 1000); })));
  CHECK(same_bytes(b, make(DType::bf16, 7, [&](int64_t i) { return P + i; })));
  pg.all_reduce(c, dist::ReduceOp::avg);
  CHECK(reduced_alike(cg, c, P));
  // the same sizes again: the pinned buffers come from the cache, and the answers are still right
  Tensor a2 = to(make(DType::f32, 1 << 18, [&](int64_t i) { return 2 * (r + 1) + i % 1000; }), dev());
  pg.all_reduce_async(a2).wait();
  CHECK(same_bytes(a2, make(DType::f32, 1 << 18, [&](int64_t i) { return P * (P + 1) + double(P) * double(i % 1000); })));
}

TEST_CASE("dist cuda: broadcast and all_gather on cuda tensors equal the cpu tensors'", "[dist][cuda]") {
  auto& pg = dist::group();
  const int P = pg.world_size(), r = pg.rank();
  for (DType dt : kDtypes) {
    for (int64_t n : {1, 7, 1001}) {
      const int64_t k = period(dt);
      for (int root : {0, P - 1}) {
        Tensor c = make(dt, n, [&](int64_t i) { return 3 * (r + 1) + i % k; });
        Tensor g = to(c, dev());
        pg.broadcast(c, root);
        pg.broadcast(g, root);
        INFO("broadcast dtype " << dt << ", n " << n << ", root " << root);
        CHECK(same_bytes(g, c));
        CHECK(same_bytes(g, make(dt, n, [&](int64_t i) { return 3 * (root + 1) + i % k; })));
      }
      Tensor c = make(dt, n, [&](int64_t i) { return 2 * r + i % k; });
      Tensor all_c = pg.all_gather(c);
      Tensor all_g = pg.all_gather(to(c, dev()));
      INFO("all_gather dtype " << dt << ", n " << n);
      CHECK(all_g.device() == dev());
      CHECK(all_g.shape() == Shape{P, n});
      CHECK(same_bytes(all_g, all_c));
    }
  }
  Tensor b = to(make(DType::b8, 5, [&](int64_t i) { return (i + r) % 2; }), dev());  // bool as bytes
  pg.broadcast(b, P - 1);
  CHECK(same_bytes(b, make(DType::b8, 5, [&](int64_t i) { return double((i + P - 1) % 2); })));
  Tensor m = to(make(DType::f32, 6, [&](int64_t i) { return 100 * r + i; }, {2, 3}), dev());
  Tensor all = pg.all_gather(m);
  REQUIRE(all.shape() == Shape{P, 2, 3});
  CHECK(same_bytes(all, make(DType::f32, 6 * P, [](int64_t j) { return 100 * (j / 6) + j % 6; }, {P, 2, 3})));
}

TEST_CASE("dist cuda: a non-contiguous cuda tensor is an Error naming the op; the group stays usable",
          "[dist][cuda]") {
  auto& pg = dist::group();
  Tensor m = Tensor::empty({3, 4}, DType::f32, dev());
  Tensor mt = m.as_strided_({4, 3}, {1, 4}, 0);  // a transpose: not contiguous
  CHECK_THROWS_WITH(pg.all_reduce(mt), Catch::Contains("all_reduce") && Catch::Contains("non-contiguous"));
  CHECK_THROWS_WITH(pg.broadcast(mt), Catch::Contains("broadcast") && Catch::Contains("contiguous"));
  CHECK_FALSE(pg.broken());
  pg.barrier();
}

}  // namespace cuda_collectives_test
