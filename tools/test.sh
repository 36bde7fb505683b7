#!/usr/bin/env bash
# tools/test.sh: the one command. Installs what is missing, configures into build/ (Release),
# builds everything with all cores and runs the whole CTest suite. STRATA_CUDA=ON: where nvcc is
# (/usr/local/cuda) the nvcc variant (strata_gpu_tests, sm_80/sm_90) is compiled and linked too and
# its tests run only on a GPU (skipped otherwise); without a CUDA toolkit CMake says so in one line.
# Extra arguments go to the cmake configure step, e.g.  bash tools/test.sh -DSTRATA_BUILD_BENCH=ON
set -euo pipefail

start=$EPOCHREALTIME
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash tools/setup.sh

cmake -S . -B build \
  -DCMAKE_BUILD_TYPE=Release \
  -DSTRATA_BUILD_TESTS=ON \
  -DSTRATA_BUILD_EXAMPLES=ON \
  -DSTRATA_BUILD_BENCH=OFF \
  -DSTRATA_CUDA=ON \
  "$@"
cmake --build build -j"$(nproc)"

status=0
(cd build && ctest --output-on-failure -j"$(nproc)") || status=$?

elapsed=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
echo "tools/test.sh: $([[ $status == 0 ]] && echo passed || echo FAILED), total wall time ${elapsed} s"
exit "$status"
