// strata::dist collectives against closed-form answers, for any number of ranks (CTest runs 1, 2, 3).
// Rank r contributes a known function of (r, i), so every rank knows what the result must be.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <strata/dist.hpp>

namespace dist_main {
extern std::string pre_init_error;
extern bool pre_init_is_initialized;
}  // namespace dist_main

namespace collectives_test {
using namespace strata;
using namespace strata::dist;

const std::vector<DType> kDtypes = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8};
const std::vector<int64_t> kSizes = {1, 7, 1001};

/// A fresh 1-d tensor of dtype dt with element i = f(i).
Tensor make(DType dt, int64_t n, const std::function<double(int64_t)>& f) {
  Tensor t = Tensor::empty({n}, dt);
  dispatch_all(dt, "make", [&]<class T>(type_tag<T>) {
    T* p = t.data_ptr<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = cast_value<T>(f(i));
  });
  return t;
}

/// All elements of a contiguous tensor, as double.
std::vector<double> read(const Tensor& t) {
  std::vector<double> out(size_t(t.numel()));
  dispatch_all(t.dtype(), "read", [&]<class T>(type_tag<T>) {
    const T* p = t.data_ptr<T>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = cast_value<double>(p[i]);
  });
  return out;
}

/// Checks every element of t against want(i) exactly; reports the first mismatch.
void check_equal(const Tensor& t, const std::function<double(int64_t)>& want) {
  const std::vector<double> got = read(t);
  int64_t bad = -1;
  for (size_t i = 0; i < got.size() && bad < 0; ++i)
    if (got[i] != want(int64_t(i))) bad = int64_t(i);
  INFO("dtype " << t.dtype() << ", n " << t.numel() << ", first mismatch at " << bad
               << (bad >= 0 ? ": got " + std::to_string(got[size_t(bad)]) + ", want " + std::to_string(want(bad)) : ""));
  CHECK(bad == -1);
}

/// Values kept small for the 16-bit floats and uint8, so every sum is exact in them.
int64_t period(DType dt) { return dt == DType::f16 || dt == DType::bf16 || dt == DType::u8 ? 13 : 1 << 30; }

bool is_int_dtype(DType dt) { return !is_floating(dt); }

}  // namespace collectives_test

using namespace collectives_test;

TEST_CASE("dist: rank, world size and local rank agree with the launcher", "[dist]") {
  auto& pg = group();
  const int P = pg.world_size(), r = pg.rank();
  CHECK(P >= 1);
  CHECK((r >= 0 && r < P));
  CHECK((pg.local_rank() >= 0 && pg.local_rank() < P));
  if (const char* s = std::getenv("OMPI_COMM_WORLD_SIZE")) CHECK(P == std::atoi(s));
  if (const char* s = std::getenv("OMPI_COMM_WORLD_RANK")) CHECK(r == std::atoi(s));
  if (const char* s = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) CHECK(pg.local_rank() == std::atoi(s));
  if (!std::getenv("OMPI_COMM_WORLD_SIZE")) {  // torchrun style (the file rendezvous): RANK, WORLD_SIZE
    if (const char* s = std::getenv("WORLD_SIZE")) CHECK(P == std::atoi(s));
    if (const char* s = std::getenv("RANK")) CHECK(r == std::atoi(s));
    if (const char* s = std::getenv("LOCAL_RANK")) CHECK(pg.local_rank() == std::atoi(s));
  }
  CHECK(pg.timeout_s() == 60);
  CHECK(is_initialized());
  CHECK(&init_process_group() == &pg);  // idempotent
  // every rank sees the same ranks: all_gather of (rank, local rank) is 0..P-1 in order
  Tensor me = make(DType::i32, 2, [&](int64_t i) { return i == 0 ? r : pg.local_rank(); });
  Tensor all = pg.all_gather(me);
  REQUIRE(all.shape() == Shape{P, 2});
  for (int q = 0; q < P; ++q) CHECK(all.data_ptr<int32_t>()[2 * q] == q);
}

TEST_CASE("dist: all_reduce sum, every dtype and odd sizes", "[dist]") {
  auto& pg = group();
  const int P = pg.world_size(), r = pg.rank();
  for (DType dt : kDtypes) {
    for (int64_t n : kSizes) {
      const int64_t k = period(dt);
      Tensor t = make(dt, n, [&](int64_t i) { return r + 1 + i % k; });
      pg.all_reduce(t);  // sum_r (r + 1 + i) = P(P+1)/2 + P i
      check_equal(t, [&](int64_t i) { return P * (P + 1) / 2 + double(P) * double(i % k); });
    }
  }
  // int64 values beyond float and double precision stay exact
  Tensor big = make(DType::i64, 5, [](int64_t) { return 0; });
  for (int64_t i = 0; i < 5; ++i) big.data_ptr<int64_t>()[i] = (int64_t(r + 1) << 53) + i + 1;
  pg.all_reduce(big);
  for (int64_t i = 0; i < 5; ++i)
    CHECK(big.data_ptr<int64_t>()[i] == (int64_t(P) * (P + 1) / 2 << 53) + int64_t(P) * (i + 1));
  // an empty tensor is a valid (no-op) collective
  Tensor empty = Tensor::empty({0}, DType::f32);
  pg.all_reduce(empty);
  CHECK(empty.numel() == 0);
}

TEST_CASE("dist: all_reduce avg, max, min", "[dist]") {
  auto& pg = group();
  const int P = pg.world_size(), r = pg.rank();
  for (DType dt : kDtypes) {
    for (int64_t n : kSizes) {
      const int64_t k = period(dt);
      if (is_floating(dt)) {  // avg = sum / P: (P+1)/2 + i, exact in every float dtype here
        Tensor t = make(dt, n, [&](int64_t i) { return r + 1 + i % k; });
        pg.all_reduce(t, ReduceOp::avg);
        check_equal(t, [&](int64_t i) { return (P + 1) / 2.0 + double(i % k); });
      }
      // odd elements grow with the rank, even ones shrink: max and min come from different ranks
      auto v = [&](int64_t i, int q) { return 10 + double(i % 5) + (i % 2 ? q : -q); };
      Tensor mx = make(dt, n, [&](int64_t i) { return v(i, r); });
      Tensor mn = make(dt, n, [&](int64_t i) { return v(i, r); });
      pg.all_reduce(mx, ReduceOp::max);
      pg.all_reduce(mn, ReduceOp::min);
      check_equal(mx, [&](int64_t i) { return v(i, i % 2 ? P - 1 : 0); });
      check_equal(mn, [&](int64_t i) { return v(i, i % 2 ? 0 : P - 1); });
    }
  }
  // f16 avg of values that are not exact in 16 bits: reduced in float, rounded once
  Tensor h = make(DType::f16, 3, [&](int64_t i) { return 0.1 * double(r + 1) + double(i); });
  pg.all_reduce(h, ReduceOp::avg);
  for (int64_t i = 0; i < 3; ++i) {
    float sum = 0;  // the reference: every rank's f16 value widened, summed in float, divided, rounded
    for (int q = 0; q < P; ++q) sum += float(f16(0.1 * double(q + 1) + double(i)));
    CHECK(float(h.data_ptr<f16>()[i]) == float(f16(sum / float(P))));
  }
}

TEST_CASE("dist: broadcast from rank 0 and from the last rank", "[dist]") {
  auto& pg = group();
  const int P = pg.world_size(), r = pg.rank();
  for (int root : {0, P - 1}) {
    for (DType dt : kDtypes) {
      for (int64_t n : kSizes) {
        const int64_t k = period(dt);
        Tensor t = make(dt, n, [&](int64_t i) { return 3 * (r + 1) + i % k; });
        pg.broadcast(t, root);
        check_equal(t, [&](int64_t i) { return 3 * (root + 1) + double(i % k); });
      }
    }
  }
  Tensor b = make(DType::b8, 5, [&](int64_t i) { return (i + r) % 2; });  // bool travels as bytes
  pg.broadcast(b, P - 1);
  check_equal(b, [&](int64_t i) { return double((i + P - 1) % 2); });
}

TEST_CASE("dist: all_gather stacks the ranks in order", "[dist]") {
  auto& pg = group();
  const int P = pg.world_size(), r = pg.rank();
  for (DType dt : kDtypes) {
    for (int64_t n : kSizes) {
      const int64_t k = period(dt);
      Tensor t = make(dt, n, [&](int64_t i) { return 2 * r + i % k; });
      Tensor all = pg.all_gather(t);
      REQUIRE(all.shape() == Shape{P, n});
      CHECK(all.dtype() == dt);
      check_equal(all, [&](int64_t j) { return 2 * double(j / n) + double(j % n % k); });
    }
  }
  // a 2-d tensor keeps its shape under the new leading dim
  Tensor m = Tensor::empty({2, 3}, DType::f32);
  for (int i = 0; i < 6; ++i) m.data_ptr<float>()[i] = float(100 * r + i);
  Tensor all = pg.all_gather(m);
  REQUIRE(all.shape() == Shape{P, 2, 3});
  check_equal(all, [&](int64_t j) { return 100 * double(j / 6) + double(j % 6); });
}

TEST_CASE("dist: barrier waits for the slowest rank", "[dist]") {
  auto& pg = group();
  pg.barrier();  // start the clocks together: a rank arriving late would otherwise wait less
  const int64_t before = pg.collectives_started();
  const auto t0 = std::chrono::steady_clock::now();
  if (pg.rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  pg.barrier();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(s >= 0.25);  // every rank, rank 0 included, left the barrier after rank 0's sleep
  CHECK(pg.collectives_started() == before + 1);
}

TEST_CASE("dist: all_reduce_async with two in flight", "[dist]") {
  auto& pg = group();
  const int P = pg.world_size(), r = pg.rank();
  Tensor a = make(DType::f32, 1001, [&](int64_t i) { return r + 1 + i; });
  Tensor b = make(DType::bf16, 7, [&](int64_t i) { return r + 1 + i; });
  Work wa = pg.all_reduce_async(a);
  Work wb = pg.all_reduce_async(b, ReduceOp::max);
  b = Tensor();  // the Work keeps the storage alive; only our handle goes
  wb.wait();     // waited in the other order than started
  wa.wait();
  CHECK(wa.done());
  CHECK(wb.done());
  wa.wait();  // idempotent
  check_equal(a, [&](int64_t i) { return P * (P + 1) / 2 + double(P) * double(i); });
  // a Work polled with done() until it finishes, while this rank does other work
  Tensor c = make(DType::f64, 7, [&](int64_t i) { return r * i; });
  Work wc = pg.all_reduce_async(c, ReduceOp::avg);
  const auto t0 = std::chrono::steady_clock::now();
  while (!wc.done() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30)) std::this_thread::yield();
  wc.wait();
  check_equal(c, [&](int64_t i) { return double(P * (P - 1) / 2 * i) / P; });
  CHECK(Work().done());
  Work().wait();  // a default Work is done
}

TEST_CASE("dist: an async all_reduce progresses while the caller makes no MPI call", "[dist]") {
  auto& pg = group();
  const int P = pg.world_size(), r = pg.rank();
  // 4 MB: past the eager limit and several rounds of the algorithm, so without a thread driving MPI's
  // progress it would sit unfinished until the next MPI call
  Tensor a = make(DType::f32, 1 << 20, [&](int64_t i) { return r + 1 + i % 1000; });
  Work w = pg.all_reduce_async(a);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // "compute": no MPI call from this thread
  CHECK(w.done());  // the first test after the sleep finds it finished
  w.wait();
  check_equal(a, [&](int64_t i) { return P * (P + 1) / 2 + double(P) * double(i % 1000); });
}

TEST_CASE("dist: bad arguments are Errors naming the op; the group stays usable", "[dist]") {
  auto& pg = group();
  const int P = pg.world_size();
  Tensor m = Tensor::empty({3, 4}, DType::f32);
  Tensor mt = m.as_strided_({4, 3}, {1, 4}, 0);  // a transpose: not contiguous
  CHECK_THROWS_WITH(pg.all_reduce(mt), Catch::Contains("all_reduce") && Catch::Contains("non-contiguous"));
  CHECK_THROWS_WITH(pg.all_reduce_async(mt), Catch::Contains("all_reduce"));
  CHECK_THROWS_WITH(pg.broadcast(mt), Catch::Contains("broadcast") && Catch::Contains("contiguous"));
  CHECK_THROWS_WITH(pg.all_gather(mt), Catch::Contains("all_gather") && Catch::Contains("contiguous"));
  Tensor v = Tensor::empty({4}, DType::f32);
  CHECK_THROWS_WITH(pg.broadcast(v, P), Catch::Contains("broadcast") && Catch::Contains("root"));
  CHECK_THROWS_WITH(pg.broadcast(v, -1), Catch::Contains("broadcast") && Catch::Contains("root"));
  Tensor iv = make(DType::i32, 4, [](int64_t) { return 1; });
  CHECK_THROWS_WITH(pg.all_reduce(iv, ReduceOp::avg), Catch::Contains("all_reduce") && Catch::Contains("avg"));
  Tensor bv = make(DType::b8, 4, [](int64_t) { return 1; });
  CHECK_THROWS_WITH(pg.all_reduce(bv), Catch::Contains("all_reduce") && Catch::Contains("bool"));
  Tensor undefined;
  CHECK_THROWS_WITH(pg.all_reduce(undefined), Catch::Contains("all_reduce") && Catch::Contains("undefined"));
  // none of these started a collective: the group is healthy and the ranks still in step
  CHECK_FALSE(pg.broken());
  pg.all_reduce(iv);
  check_equal(iv, [&](int64_t) { return double(P); });
}

TEST_CASE("dist: group() before init is an Error", "[dist]") {
  CHECK_FALSE(dist_main::pre_init_is_initialized);
  CHECK_THAT(dist_main::pre_init_error, Catch::Contains("group") && Catch::Contains("not initialized"));
}

TEST_CASE("dist: the launcher's RANK/WORLD_SIZE must agree with MPI", "[dist]") {
  CHECK_NOTHROW(check_launch_env({.rank = 1, .world_size = 3, .local_rank = 1, .source = "torchrun"}, 1, 3));
  CHECK_NOTHROW(check_launch_env(LaunchEnv{}, 0, 1));  // nothing set: MPI decides
  CHECK_THROWS_WITH(check_launch_env({.rank = 1, .world_size = 2, .source = "torchrun"}, 0, 1),
                    Catch::Contains("init_process_group") && Catch::Contains("WORLD_SIZE=2") && Catch::Contains("mpirun"));
  CHECK_THROWS_WITH(check_launch_env({.rank = 2, .world_size = 3, .source = "torchrun"}, 1, 3),
                    Catch::Contains("RANK=2") && Catch::Contains("rank 1"));
  CHECK_THROWS_WITH(check_launch_env({.local_rank = 4, .source = ""}, 0, 3), Catch::Contains("LOCAL_RANK=4"));
  // variables are read as whole numbers; junk is an Error naming the variable
  ::setenv("STRATA_DIST_TEST_VAR", "12", 1);
  CHECK(strata::dist::detail::env_int("STRATA_DIST_TEST_VAR") == 12);
  ::setenv("STRATA_DIST_TEST_VAR", "1x", 1);
  CHECK_THROWS_WITH(strata::dist::detail::env_int("STRATA_DIST_TEST_VAR"), Catch::Contains("STRATA_DIST_TEST_VAR"));
  ::unsetenv("STRATA_DIST_TEST_VAR");
  CHECK(strata::dist::detail::env_int("STRATA_DIST_TEST_VAR") == -1);
}
