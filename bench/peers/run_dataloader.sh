#!/usr/bin/env bash
# DataLoader throughput peer benchmark (issue 5): strata's DataBlock loader (bench/peers/dataloader.cpp)
# against PyTorch's DataLoader with torchvision transforms (bench/peers/dataloader.py), on the same
# folder of 2,000 generated 160x160 JPEGs (10 classes, ImageNet layout), RandomResizedCrop(128) and
# horizontal flips, float output, bs 64, 2 workers, one shuffled epoch after a warm-up batch.
# A second PyTorch row runs torchvision's tensor path (torchvision.io.read_image, antialias=False), the
# same arithmetic as strata's; the first is the usual PIL path, whose resize antialiases (more work).
# Runs them alternately, RUNS times each (3), and prints the medians of each, images/s (wall clock)
# and CPU ms per image (user + sys of every thread and worker process over the timed epoch), with the
# ratios strata / pytorch for images/s (> 1: strata faster) and pytorch / strata for CPU per image
# (> 1: strata cheaper). On a busy machine the CPU time per image is the steadier of the two.
#   Usage: bash bench/peers/run_dataloader.sh [RUNS]
# The folder is generated once (Debian's python3-pil + numpy, about 1-2 minutes) and cached in
# $STRATA_BENCH_JPEGS (default /tmp/strata-bench-jpegs); delete it to regenerate.
# These are shared 2-core machines: run it when the machine is quiet and read the ratio.
# Measured 2026-11-21 on the shared 2-core dev box (AMD EPYC, AVX2), never quiet (torch 1.13.1, torchvision 0.14.1):
#                          strata img/s  pytorch (PIL)  pytorch (tensor)  CPU ms/img strata / PIL / tensor
#   load ~4.5, median of 3     1843       576 (3.20x)     584 (3.15x)       0.361 / 1.361 / 1.124
#   load ~5,   median of 5     1493       506 (2.95x)     593 (2.52x)       0.447 / 1.313 / 1.080
#   quiet (load ~1), median of 3  5095   1692 (3.01x)    1774 (2.87x)      0.380 / 1.131 / 1.050
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=${1:-3}
data=${STRATA_BENCH_JPEGS:-/tmp/strata-bench-jpegs}
py=/usr/bin/python3

if [[ ! -d "$data" ]]; then
  echo "run_dataloader.sh: generating 2000 JPEGs in $data (once)"
  "$py" "$root/bench/peers/dataloader.py" make "$data" 2000
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
g++ -std=c++20 -O2 -march=native -I"$root/include" -I"$root" "$root/bench/peers/dataloader.cpp" -o "$work/dataloader" \
  -pthread -lz

for ((i = 1; i <= runs; ++i)); do
  "$work/dataloader" "$data" 2 | tee -a "$work/strata.txt"
  OMP_NUM_THREADS=1 "$py" "$root/bench/peers/dataloader.py" run "$data" | tee -a "$work/torch.txt"
  OMP_NUM_THREADS=1 "$py" "$root/bench/peers/dataloader.py" run "$data" tensor | tee -a "$work/torch_tensor.txt"
done

median() {  # median of column $2 of file $1
  awk -v c="$2" '{ print $c }' "$1" | sort -g |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo
echo "DataLoader throughput, 2000 JPEGs 160x160 -> RandomResizedCrop(128) + flip, bs 64, 2 workers, median of $runs"
printf "%-16s %10s %10s %8s %16s %8s\n" "" "strata" "pytorch" "ratio" "pytorch tensor" "ratio"
row() {  # $1 label, $2 column, $3 printf format of a value, $4 1: ratio strata/pytorch, 0: pytorch/strata
  awk -v s="$(median "$work/strata.txt" "$2")" -v t="$(median "$work/torch.txt" "$2")" \
      -v u="$(median "$work/torch_tensor.txt" "$2")" -v label="$1" -v f="$3" -v up="$4" \
    'BEGIN { printf "%-16s " f " " f " %8.2f %16s %8.2f\n", label, s, t, up ? s / t : t / s, sprintf(f, u), up ? s / u : u / s }'
}
row "images/s" 2 "%10.1f" 1
row "CPU ms / image" 4 "%10.3f" 0
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
