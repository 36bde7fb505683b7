// init_process_group / group / destroy_process_group: the process-wide default ProcessGroup.
//
//   auto& pg = strata::dist::init_process_group();   // MPI_Init_thread (unless MPI is already up)
//   ... pg.all_reduce(t) ...                           // or strata::dist::group() anywhere
//   strata::dist::destroy_process_group();             // MPI_Finalize (also run at exit)
//
// init is idempotent (a second call returns the same group and ignores its options). MPI can be
// initialised once per process, so a group cannot be made again after destroy. When MPI was started
// by the caller (MPI_Initialized), the caller also finalizes it. A broken group (a collective timed
// out) is not finalized: MPI_Finalize would wait for the lost rank forever. Instead, at exit, a process
// whose group broke calls MPI_Abort(1), so that mpirun ends the job and its exit status says it
// failed (with --mca orte_enable_recovery 1, mpirun would otherwise return 0).
//
// Ranks started without mpirun (torchrun style: RANK, WORLD_SIZE, LOCAL_RANK) meet through the file
// rendezvous of rendezvous.hpp when STRATA_RENDEZVOUS_DIR names a shared directory.
#pragma once

#include <cstdlib>
#include <memory>
#include <mutex>

#include "strata/dist/process_group.hpp"
#include "strata/dist/rendezvous.hpp"

namespace strata::dist {

namespace detail {
struct Global {
  std::mutex mutex;
  std::unique_ptr<ProcessGroup> group;
  bool owns_mpi = false;     // we called MPI_Init_thread, so we finalize
  bool destroyed = false;
  bool atexit_set = false;
  bool broke = false;        // the group was broken when destroyed
  pid_t name_server = -1;    // rank 0 of a file rendezvous: the ompi-server it started
};
inline Global& global() {
  static Global g;
  return g;
}
}  // namespace detail

void destroy_process_group();

/// Starts MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED) and makes the default group; idempotent.
/// Collective: every rank of the job must call it.
inline ProcessGroup& init_process_group(const InitOptions& o = {}) {
  const char* op = "init_process_group";
  auto& g = detail::global();
  std::lock_guard lock(g.mutex);
  if (g.group) return *g.group;
  STRATA_CHECK(!g.destroyed, op, "got a call after destroy_process_group, expected at most one group per "
               "process (MPI cannot be initialised twice)");
  STRATA_CHECK(o.timeout_s > 0, op, "got timeout_s=", o.timeout_s, ", expected > 0");
  int up = 0, down = 0;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  STRATA_CHECK(!down, op, "got MPI already finalized, expected MPI usable");
  // ranks started one by one (RANK/WORLD_SIZE, not by mpirun) meet through a shared directory
  const LaunchEnv env = read_launch_env();
  const char* dir = std::getenv("STRATA_RENDEZVOUS_DIR");
  const bool rendezvous = !up && env.source == "torchrun" && env.world_size > 1 && dir && *dir;
  if (rendezvous) {
    STRATA_CHECK(env.rank >= 0 && env.rank < env.world_size, op, "got RANK=", env.rank, " with WORLD_SIZE=",
                 env.world_size, ", expected 0 <= RANK < WORLD_SIZE for the rendezvous in ", dir);
    g.name_server = detail::rendezvous_prepare(dir, env.rank, o.timeout_s);
  }
  if (!up) {
    int provided = 0;
    detail::mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), op, "MPI_Init_thread");
    g.owns_mpi = true;
  }
  // errors on the world communicator come back as codes too (the group's own are set in its constructor)
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);  // the rendezvous' communicators inherit it
  MPI_Comm world = MPI_COMM_WORLD;
  if (rendezvous) world = detail::rendezvous_join(dir, env.rank, env.world_size, o.timeout_s);
  g.group = std::make_unique<ProcessGroup>(world, o);  // works on its own duplicates of `world`
  if (world != MPI_COMM_WORLD) MPI_Comm_free(&world);
  if (!g.atexit_set) {
    std::atexit([] {
      destroy_process_group();
      auto& g = detail::global();
      if (g.broke && g.owns_mpi) MPI_Abort(MPI_COMM_WORLD, 1);
    });
    g.atexit_set = true;
  }
  return *g.group;
}

/// True between init_process_group and destroy_process_group.
inline bool is_initialized() {
  auto& g = detail::global();
  std::lock_guard lock(g.mutex);
  return g.group != nullptr;
}

/// The default group; throws when init_process_group has not run.
inline ProcessGroup& group() {
  auto& g = detail::global();
  std::lock_guard lock(g.mutex);
  STRATA_CHECK(g.group != nullptr, "group", "got no process group (not initialized), expected a call to "
               "strata::dist::init_process_group() first");
  return *g.group;
}

/// Ends the default group and finalizes MPI if init started it (skipped when the group is broken).
/// Never throws; does nothing when there is no group.
inline void destroy_process_group() {
  auto& g = detail::global();
  std::lock_guard lock(g.mutex);
  if (!g.group) return;
  const bool clean = g.group->shutdown();
  g.broke = !clean;
  if (clean) g.group.reset();
  else g.group.release();  // a broken group's MPI state is left as is: nothing may touch it now
  g.destroyed = true;
  int down = 0;
  MPI_Finalized(&down);
  if (clean && g.owns_mpi && !down) MPI_Finalize();
  if (g.name_server > 0) {  // the rendezvous' ompi-server is not needed any more
    kill(g.name_server, SIGTERM);
    waitpid(g.name_server, nullptr, 0);
    g.name_server = -1;
  }
}

}  // namespace strata::dist
