#!/usr/bin/env bash
# Installs what the benchmarks need on a fresh Debian, each only when missing (quiet):
#   python3-torch     PyTorch (CPU), the peer: bench/e2e/train.py, bench/peers/*.py
#   libopenblas-dev   OpenBLAS cblas_sgemm, the GEMM peer (bench only; the library keeps its own GEMM)
#   libbenchmark-dev  Google Benchmark, for bench/kernels/*.cpp
#   cmake, g++, zlib1g-dev, dataset-fashion-mnist  to build and feed them
# Debian's torch calls the system BLAS (libblas.so.3) for its matmuls; with the reference BLAS it is ~30x
# slower, and the pthread OpenBLAS oversubscribes the cores next to torch's OpenMP threads, so the
# OpenMP build of OpenBLAS is selected for libblas.so.3 when this script can (root).
#   Usage: bash bench/setup.sh
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in python3-torch libopenblas-dev libopenblas0-openmp libbenchmark-dev cmake g++ zlib1g-dev; do
  have_pkg "$p" || need+=("$p")
done
if [[ -z "${STRATA_FASHION_MNIST_DIR:-}" && ! -d /usr/share/datasets/fashion-mnist ]]; then
  have_pkg dataset-fashion-mnist || need+=(dataset-fashion-mnist)
fi

sudo_=()
[[ $(id -u) -ne 0 ]] && sudo_=(sudo)
if ((${#need[@]})) && [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
  echo "bench/setup.sh: missing ${need[*]} and not root (no sudo): install them, then rerun" >&2
  exit 1
fi
if ((${#need[@]})); then
  echo "bench/setup.sh: installing ${need[*]}"
  "${sudo_[@]}" apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo_[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

# libblas.so.3 -> OpenMP OpenBLAS for torch (see the top); only when it is not already so.
alt=libblas.so.3-$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
omp=/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)/openblas-openmp/libblas.so.3
if [[ -e "$omp" ]] && ! update-alternatives --query "$alt" 2>/dev/null | grep -q "^Value: $omp$"; then
  "${sudo_[@]}" update-alternatives --set "$alt" "$omp" >/dev/null 2>&1 ||
    echo "bench/setup.sh: could not select $omp for $alt (PyTorch matmuls may be slow or oversubscribed)" >&2
fi
exit 0
