#!/usr/bin/env bash
# The file rendezvous (include/strata/dist/rendezvous.hpp): starts N ranks of the dist test executable
# without mpirun, torchrun style (RANK, WORLD_SIZE, STRATA_RENDEZVOUS_DIR), and passes when all pass.
#   tests/dist/rendezvous.sh <strata_dist_tests> [N=2]
# Exit 77 (CTest: skipped) when Open MPI's ompi-server is not installed.
set -u
exe=$1
n=${2:-2}
command -v ompi-server > /dev/null || { echo "rendezvous: ompi-server not found, skipped"; exit 77; }
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$dir"' EXIT  # a CTest timeout leaves no rank behind
for ((r = 0; r < n; ++r)); do
  STRATA_RENDEZVOUS_DIR=$dir RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r "$exe" > "$dir/rank$r.log" 2>&1 &
  pids+=($!)
done
status=0
for ((r = 0; r < n; ++r)); do
  wait "${pids[$r]}" || { status=1; echo "rendezvous: rank $r failed:"; cat "$dir/rank$r.log"; }
done
((status == 0)) && { echo "rendezvous: $n ranks passed"; tail -n 2 "$dir/rank0.log"; }
exit $status
