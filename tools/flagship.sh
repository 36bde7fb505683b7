#!/usr/bin/env bash
# tools/flagship.sh: set up, build and run the flagship (examples/01_fashion_mnist.cpp) on Debian's
# Fashion-MNIST: 5 epochs of fit_one_cycle, then one DAWNBench-style line. Plots go to runs/fashion_mnist/.
# Extra arguments go to the example, e.g.  bash tools/flagship.sh --lr-find   or   --epochs 3
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_EXAMPLES=ON > /dev/null
cmake --build build -j"$(nproc)" --target example_01_fashion_mnist
mkdir -p runs/fashion_mnist
./build/examples/example_01_fashion_mnist --out runs/fashion_mnist "$@"
