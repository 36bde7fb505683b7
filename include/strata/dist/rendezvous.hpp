// File rendezvous: ranks started one by one (torchrun style: RANK and WORLD_SIZE set, no mpirun) meet
// in a shared directory and join into one communicator with MPI_Open_port / MPI_Comm_accept / connect.
//
//   STRATA_RENDEZVOUS_DIR=/shared/job42 RANK=0 WORLD_SIZE=2 ./train &
//   STRATA_RENDEZVOUS_DIR=/shared/job42 RANK=1 WORLD_SIZE=2 ./train
//
// init_process_group uses it when RANK/WORLD_SIZE say more than one rank, mpirun did not start the
// process, and STRATA_RENDEZVOUS_DIR names a directory every rank can read (a fresh one per job). How: Open MPI only connects jobs started apart through a
// name server, so rank 0 starts `ompi-server` (it dies with rank 0) and writes its address to
// DIR/ompi-server.uri; every rank points MPI at it (OMPI_MCA_pmix_server_uri) before MPI_Init. Rank 0
// then opens a port and writes it to DIR/port; the others connect, the group growing one rank at a
// time (accept is collective over the ranks already in), and the result is ordered by RANK.
// MPI's accept/connect cannot time out, so a watchdog ends the process with a message naming the
// directory if the group is not complete within timeout_s.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "strata/dist/detail/mpi.hpp"

namespace strata::dist::detail {

/// Waits until `path` exists and holds a line; returns it, or throws after timeout_s.
inline std::string wait_for_line(const std::filesystem::path& path, double timeout_s, const char* what) {
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    std::ifstream f(path);
    std::string line;
    if (f && std::getline(f, line) && !line.empty()) return line;
    STRATA_CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < timeout_s,
                 "init_process_group", "got no ", what, " in ", path.string(), " within ", timeout_s,
                 " s, expected rank 0 to write it (is rank 0 running with the same STRATA_RENDEZVOUS_DIR?)");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

/// Writes `text` to `path` atomically (a reader never sees half of it).
inline void write_atomically(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp);
    f << text << '\n';
    STRATA_CHECK(bool(f), "init_process_group", "got an error writing ", tmp.string(),
                 ", expected a writable rendezvous directory");
  }
  std::filesystem::rename(tmp, path);
}

/// Before MPI_Init: rank 0 starts ompi-server; every rank points MPI at it. Returns the server's pid (rank 0).
inline pid_t rendezvous_prepare(const std::filesystem::path& dir, int rank, double timeout_s) {
  const std::filesystem::path uri = dir / "ompi-server.uri";
  pid_t server = -1;
  if (rank == 0) {
    std::filesystem::create_directories(dir);
    std::filesystem::remove(uri);
    std::filesystem::remove(dir / "port");
    const std::string tmp = uri.string() + ".tmp";
    server = fork();
    STRATA_CHECK(server >= 0, "init_process_group", "got fork() failing, expected to start ompi-server");
    if (server == 0) {  // the child: dies with rank 0
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      execlp("ompi-server", "ompi-server", "--no-daemonize", "-r", tmp.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    try {
      wait_for_line(tmp, timeout_s, "ompi-server address (is Open MPI's ompi-server on PATH?)");
    } catch (...) {
      kill(server, SIGTERM);
      waitpid(server, nullptr, 0);
      throw;
    }
    std::filesystem::rename(tmp, uri);
  } else {
    wait_for_line(uri, timeout_s, "ompi-server address");
  }
  setenv("OMPI_MCA_pmix_server_uri", ("file:" + uri.string()).c_str(), 1);
  return server;
}

/// After MPI_Init: joins the ranks into one communicator ordered by `rank`.
inline MPI_Comm rendezvous_join(const std::filesystem::path& dir, int rank, int world_size, double timeout_s) {
  const char* op = "init_process_group";
  std::atomic<bool> joined{false};
  std::thread watchdog([&] {  // accept/connect block without a timeout: end the process instead of hanging
    const auto t0 = std::chrono::steady_clock::now();
    while (!joined && std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < timeout_s)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!joined) {
      std::fprintf(stderr, "init_process_group: rank %d: the rendezvous in %s did not gather %d ranks within %g s "
                   "(a rank never started, or uses another STRATA_RENDEZVOUS_DIR); exiting\n",
                   rank, dir.string().c_str(), world_size, timeout_s);
      std::_Exit(1);
    }
  });
  MPI_Comm comm = MPI_COMM_NULL;
  std::string port;
  try {
    if (rank == 0) {
      char name[MPI_MAX_PORT_NAME] = {};
      mpi_check(MPI_Open_port(MPI_INFO_NULL, name), op, "MPI_Open_port");
      port = name;
      write_atomically(dir / "port", port);
      mpi_check(MPI_Comm_dup(MPI_COMM_SELF, &comm), op, "MPI_Comm_dup");
    } else {
      port = wait_for_line(dir / "port", timeout_s, "MPI port");
      MPI_Comm inter = MPI_COMM_NULL;
      mpi_check(MPI_Comm_connect(port.c_str(), MPI_INFO_NULL, 0, MPI_COMM_SELF, &inter), op, "MPI_Comm_connect");
      mpi_check(MPI_Intercomm_merge(inter, 1, &comm), op, "MPI_Intercomm_merge");
      MPI_Comm_free(&inter);
    }
    // every member accepts the next rank together, until the group is whole (the order does not matter)
    for (int have = 0; mpi_check(MPI_Comm_size(comm, &have), op, "MPI_Comm_size"), have < world_size;) {
      MPI_Comm inter = MPI_COMM_NULL, grown = MPI_COMM_NULL;
      mpi_check(MPI_Comm_accept(port.c_str(), MPI_INFO_NULL, 0, comm, &inter), op, "MPI_Comm_accept");
      mpi_check(MPI_Intercomm_merge(inter, 0, &grown), op, "MPI_Intercomm_merge");
      MPI_Comm_free(&inter);
      MPI_Comm_free(&comm);
      comm = grown;
    }
    if (rank == 0) MPI_Close_port(port.c_str());
    MPI_Comm ordered = MPI_COMM_NULL;
    mpi_check(MPI_Comm_split(comm, 0, rank, &ordered), op, "MPI_Comm_split");
    MPI_Comm_free(&comm);
    joined = true;
    watchdog.join();
    return ordered;
  } catch (...) {
    joined = true;
    watchdog.join();
    throw;
  }
}

}  // namespace strata::dist::detail
