// Catch2 (v2) main of strata_dist_tests: starts the process group before the tests and ends it after.
// Every rank runs every test; collectives in a test must be called by all ranks in the same order.
//
//   mpirun --allow-run-as-root --oversubscribe -np 3 ./strata_dist_tests
//   mpirun ... -np 2 ./strata_dist_tests --kill-test          (rank 1 SIGKILLs itself between collectives)
//   mpirun ... -np 3 ./strata_dist_tests --kill-test inside   (rank 1 dies with an all-reduce in flight)
//   mpirun ... -np 2 ./strata_dist_tests --kill-test hang     (rank 1 stays alive but stops calling)
// The others must name rank 1 within the timeout ("was lost" / "is alive but did not reach it");
// mpirun needs --mca orte_abort_on_non_zero_status 0, or it kills them all when rank 1 dies.
// Built with STRATA_CUDA (nccl_tests.cu), it exits with 77 (CTest: skipped) on a machine without a GPU.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include <strata/dist.hpp>

namespace dist_main {
// What group() said before init (checked by a test: "not initialized" must be an Error).
std::string pre_init_error;
bool pre_init_is_initialized = true;

// Rank 1 kills itself after a few all-reduces (`inside`: just after starting one, so the others see it
// arrive; `hang`: it sleeps instead, alive); the others must fail within timeout + slack with an Error
// that names rank 1 as lost (or, for `hang`, as alive). Each survivor prints "KILL-TEST OK" when so;
// the exit status is non-zero.
int kill_test(const std::string& mode) {
  constexpr double kTimeout = 3, kSlack = 2;
  auto& pg = strata::dist::init_process_group({.timeout_s = kTimeout});
  if (pg.world_size() < 2) {
    std::printf("KILL-TEST FAILED: needs 2 or more ranks, got %d\n", pg.world_size());
    return 2;
  }
  strata::Tensor t = strata::Tensor::empty({1000}, strata::DType::f32);
  for (int step = 0; step < 1000; ++step) {
    if (pg.rank() == 1 && step == 3) {
      if (mode == "hang") {  // alive (the watcher keeps beating) but late: ended by rank 0's MPI_Abort
        std::this_thread::sleep_for(std::chrono::duration<double>(kTimeout + 2 * kSlack));
      } else {
        if (mode == "inside") pg.all_reduce_async(t);
        std::fflush(stdout);
        std::raise(SIGKILL);
      }
    }
    const auto t0 = std::chrono::steady_clock::now();
    try {
      pg.all_reduce(t);
    } catch (const strata::Error& e) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const bool named = std::strstr(e.what(), mode == "hang" ? "rank 1 is alive" : "rank 1 was lost") != nullptr;
      const bool in_time = s <= kTimeout + kSlack;
      std::printf("%s (rank %d, step %d): caught after %.2f s (timeout %.0f s): %s\n",
                  named && in_time && step >= 3 ? "KILL-TEST OK" : "KILL-TEST FAILED", pg.rank(), step, s, kTimeout,
                  e.what());
      std::fflush(stdout);
      return 1;  // at exit: the group is broken, so MPI_Abort (mpirun's status says the job failed)
    }
  }
  std::printf("KILL-TEST FAILED (rank %d): no error after 1000 all-reduces\n", pg.rank());
  return 2;
}
}  // namespace dist_main

int main(int argc, char** argv) {
#if defined(STRATA_CUDA)
  if (strata::cuda::device_count() == 0) {  // the nvcc build (strata_dist_nccl_tests) on a machine without a GPU
    std::printf("%s: no CUDA device, skipped\n", argv[0]);
    return 77;
  }
#endif
  if (argc > 1 && std::strcmp(argv[1], "--kill-test") == 0)
    return dist_main::kill_test(argc > 2 ? argv[2] : "");
  try {
    strata::dist::group();
  } catch (const strata::Error& e) {
    dist_main::pre_init_error = e.what();
  }
  dist_main::pre_init_is_initialized = strata::dist::is_initialized();
  Catch::Session session;
  if (int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  // 60 s: long enough for 3 ranks on 2 busy cores, short enough that a rank left behind by a failed
  // REQUIRE ends the run with a named error instead of a long hang.
  strata::dist::init_process_group({.timeout_s = 60});
  const int rc = session.run();
  strata::dist::destroy_process_group();
  return rc;
}
