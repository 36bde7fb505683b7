// LaunchEnv: the rank, world size and local rank a launcher put in the environment.
//
//   mpirun (Open MPI)  OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK
//   torchrun style     RANK, WORLD_SIZE, LOCAL_RANK
//
// read_launch_env() takes Open MPI's variables first; a field no variable gives is -1. The process
// group checks what it finds against MPI's own view (a RANK that disagrees with MPI is an error) and
// takes the local rank from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) when no variable says it.
// No MPI here: this header reads strings only, so it can be tested without a launcher.
#pragma once

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <string>

#include "strata/core/error.hpp"

namespace strata::dist {

/// What the launcher said; -1 = not given.
struct LaunchEnv {
  int rank = -1;
  int world_size = -1;
  int local_rank = -1;
  std::string source;  // "mpirun", "torchrun" or "" (nothing set)
};

namespace detail {
/// The value of `name` as an int >= 0, -1 when unset; a malformed value is an Error.
inline int env_int(const char* name) {
  const char* s = std::getenv(name);
  if (!s || !*s) return -1;
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  STRATA_CHECK(errno == 0 && end && *end == '\0' && v >= 0 && v <= INT_MAX, "init_process_group", "got ", name,
               "=\"", s, "\", expected a whole number >= 0");
  return int(v);
}
}  // namespace detail

/// Reads the launcher's variables (Open MPI's first, then torchrun's).
inline LaunchEnv read_launch_env() {
  LaunchEnv e;
  if (detail::env_int("OMPI_COMM_WORLD_SIZE") >= 0) {
    e.source = "mpirun";
    e.rank = detail::env_int("OMPI_COMM_WORLD_RANK");
    e.world_size = detail::env_int("OMPI_COMM_WORLD_SIZE");
    e.local_rank = detail::env_int("OMPI_COMM_WORLD_LOCAL_RANK");
  }
  // torchrun-style variables fill what mpirun left unset (and are checked against MPI later)
  const int r = detail::env_int("RANK"), w = detail::env_int("WORLD_SIZE"), l = detail::env_int("LOCAL_RANK");
  if (e.source.empty() && (r >= 0 || w >= 0)) e.source = "torchrun";
  if (e.rank < 0) e.rank = r;
  if (e.world_size < 0) e.world_size = w;
  if (e.local_rank < 0) e.local_rank = l;
  return e;
}

/// Throws a clear Error when the launcher's view disagrees with MPI's (rank, size).
inline void check_launch_env(const LaunchEnv& e, int mpi_rank, int mpi_size) {
  const char* hint =
      " (ranks started one by one with RANK/WORLD_SIZE each see an MPI world of 1: start them with "
      "`mpirun -np N`, or set STRATA_RENDEZVOUS_DIR to a directory they share)";
  STRATA_CHECK(e.world_size < 0 || e.world_size == mpi_size, "init_process_group", "got WORLD_SIZE=", e.world_size,
               " from the launcher (", e.source, "), expected MPI's world size ", mpi_size, hint);
  STRATA_CHECK(e.rank < 0 || e.rank == mpi_rank, "init_process_group", "got RANK=", e.rank, " from the launcher (",
               e.source, "), expected MPI's rank ", mpi_rank, hint);
  STRATA_CHECK(e.local_rank < 0 || e.local_rank < mpi_size, "init_process_group", "got LOCAL_RANK=", e.local_rank,
               ", expected a local rank below the world size ", mpi_size);
}

}  // namespace strata::dist
