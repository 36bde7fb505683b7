#!/usr/bin/env bash
# tools/setup.sh: install what a fresh Debian 12 machine lacks to build, test and benchmark strata.
# Idempotent and silent when everything is already installed. Runs apt-get directly as root,
# through sudo otherwise.
set -euo pipefail

packages=(
  cmake g++ make               # build
  catch2                       # tests (Debian's Catch2 v2: <catch2/catch.hpp>, CMake package Catch2)
  libbenchmark-dev             # bench/ (Google Benchmark)
  libstb-dev                   # stb_image / stb_image_write
  zlib1g-dev                   # compressed dataset and checkpoint io
  dataset-fashion-mnist        # the flagship example's data (/usr/share/datasets/fashion-mnist/*.gz)
  python3-torch                # PyTorch peer benchmarks and golden files (/usr/bin/python3)
  python3-torchvision          # tools/convert_torchvision.py (the resnet18 test fixture), DataLoader peer bench
  openmpi-bin libopenmpi-dev   # strata::dist (MPI process group) and tests/dist under mpirun
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

if ((EUID == 0)); then sudo=(); else sudo=(sudo); fi
echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
