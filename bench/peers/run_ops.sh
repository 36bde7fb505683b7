#!/usr/bin/env bash
# Runs the ops peer benchmark: strata (bench/peers/ops.cpp) and PyTorch (bench/peers/ops.py, Debian's
# python3-torch) one after the other with the same thread count, then prints medians and the ratio
# strata/pytorch (< 1: strata faster). Usage: bash bench/peers/run_ops.sh [threads]
# Note: Debian's torch uses the system BLAS (BLAS_INFO=generic); with only the reference libblas3
# its matmul is ~30x slower than with OpenBLAS, so for a fair matmul row install the OpenMP build of
# OpenBLAS, which shares torch's OpenMP threads (the pthread build oversubscribes the cores):
#   apt-get install libopenblas0-openmp && update-alternatives --set libblas.so.3-x86_64-linux-gnu \
#     /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
# These are shared 2-core machines: run it twice and read ratios, not absolute times.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
threads=${1:-$(nproc)}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
g++ -std=c++20 -O2 -march=native -I"$root/include" -I"$root" "$root/bench/peers/ops.cpp" -o "$work/ops" -pthread
STRATA_NUM_THREADS=$threads "$work/ops" > "$work/strata.txt"
OMP_NUM_THREADS=$threads /usr/bin/python3 "$root/bench/peers/ops.py" "$threads" > "$work/torch.txt"
echo "threads=$threads  (median ms; ratio = strata / pytorch)"
join "$work/strata.txt" "$work/torch.txt" | awk '{ printf "%-24s %10.3f %10.3f %8.2f\n", $1, $2, $3, $2 / $3 }'
