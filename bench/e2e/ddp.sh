#!/usr/bin/env bash
# Data-parallel throughput on one machine: the flagship (examples/mpi/train_distributed.cpp, example
# 01's ResNet and recipe, global batch 128) as 1 process x 2 threads against 2 processes x 1 thread.
#
#   bash bench/e2e/ddp.sh [--rounds N] [--n-train N] [--bin PATH] [--bucket-mb X] [--sync-bn]
#
#   --rounds N    rounds (default 3); each round runs both settings, the order flipped every other round;
#                 the table gives medians over the rounds
#   --n-train N   training images per run (default 12800: 1 short epoch; validation on 1000)
#   --bin PATH    a built example_train_distributed (default: compiled here with mpicxx -O2 -march=native
#                 into build-bench/train_distributed)
#   --bucket-mb X gradient bucket size (default: the example's, 1 MB)
#   --sync-bn     also 2 processes x 1 thread with synchronized BatchNorm (to_distributed({.sync_bn = true}):
#                 2 blocking all-reduces per BatchNorm layer in forward and 2 in backward, not counted in
#                 the wait share, which covers only the gradient buckets)
# Both settings run under mpirun with --bind-to none (Open MPI binds 1-2 ranks to one core each by
# default, which would put both threads of the 1-process run on one core). Prints one markdown table:
#   | setting | images/s | all-reduce wait (% of step time) |
# images/s counts all ranks' training images over the training phase (validation excluded); the wait
# share is the time blocked in Work::wait() (what the overlap with backward did not hide) over the time
# of the training steps. The machine is shared and noisy: compare numbers from one run.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
rounds=3 n_train=12800 bin= bucket=() sync_bn=0
while (($#)); do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --n-train) n_train=${2:?--n-train needs a number}; shift 2 ;;
    --bin) bin=${2:?--bin needs a path}; shift 2 ;;
    --bucket-mb) bucket=(--bucket-mb "${2:?--bucket-mb needs a number}"); shift 2 ;;
    --sync-bn) sync_bn=1; shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "bench/e2e/ddp.sh: unknown argument '$1' (see the top of the file)" >&2; exit 2 ;;
  esac
done
if [[ -z "$bin" ]]; then
  bin=$root/build-bench/train_distributed
  mkdir -p "$root/build-bench"
  echo "== compiling $bin (mpicxx -O2)" >&2
  mpicxx -std=c++20 -O2 -march=native -DNDEBUG -I"$root/include" -I"$root" \
    "$root/examples/mpi/train_distributed.cpp" -o "$bin" -pthread -lz ||
    { echo "bench/e2e/ddp.sh: the example failed to build" >&2; exit 1; }
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run NP THREADS [EXTRA ARGS]: prints "images/s wait%" from rank 0's "distributed:" line
run() {
  local np=$1 threads=$2 line
  shift 2
  line=$(mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$np" -x STRATA_NUM_THREADS="$threads" \
    "$bin" --epochs 1 --n-train "$n_train" --n-valid 1000 --target 0 "${bucket[@]}" "$@" --out "$out" 2>&1 |
    tee -a "$out/log.txt" | grep '^distributed:')
  [[ -n "$line" ]] || { echo "bench/e2e/ddp.sh: no result from np=$np (see the log below)" >&2; tail -20 "$out/log.txt" >&2; exit 1; }
  echo "$line" >&2
  awk '{for (i = 1; i <= NF; ++i) { if ($(i+1) == "images/s") ips = $i; if ($i == "wait") w = $(i+1) } }
       END { sub("%", "", w); print ips, w }' <<<"$line"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

a_ips=() a_wait=() b_ips=() b_wait=() c_ips=() c_wait=()
for ((r = 1; r <= rounds; ++r)); do
  order=(a b)
  ((sync_bn)) && order+=(c)
  ((r % 2 == 0)) && order=($(printf '%s\n' "${order[@]}" | tac))
  for s in "${order[@]}"; do
    case $s in
      a) echo "== round $r: 1 process x 2 threads" >&2
         read -r ips w < <(run 1 2); a_ips+=("$ips"); a_wait+=("$w") ;;
      b) echo "== round $r: 2 processes x 1 thread" >&2
         read -r ips w < <(run 2 1); b_ips+=("$ips"); b_wait+=("$w") ;;
      c) echo "== round $r: 2 processes x 1 thread, sync_bn" >&2
         read -r ips w < <(run 2 1 --sync-bn); c_ips+=("$ips"); c_wait+=("$w") ;;
    esac
  done
done
A=$(printf '%s\n' "${a_ips[@]}" | median) B=$(printf '%s\n' "${b_ips[@]}" | median)
echo
echo "Fashion-MNIST flagship, global batch 128, $n_train training images per run, medians of $rounds (load: $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| setting | images/s | all-reduce wait (% of step time) |"
echo "|---|---|---|"
echo "| 1 process x 2 threads | $A | $(printf '%s\n' "${a_wait[@]}" | median) |"
echo "| 2 processes x 1 thread | $B | $(printf '%s\n' "${b_wait[@]}" | median) |"
echo "| ratio (2 x 1 / 1 x 2) | $(awk -v a="$A" -v b="$B" 'BEGIN { printf "%.2f", b / a }') | |"
if ((sync_bn)); then
  C=$(printf '%s\n' "${c_ips[@]}" | median)
  echo "| 2 processes x 1 thread, sync_bn | $C | $(printf '%s\n' "${c_wait[@]}" | median) (buckets only) |"
  echo "| ratio (sync_bn / 2 x 1) | $(awk -v b="$B" -v c="$C" 'BEGIN { printf "%.2f", c / b }') | |"
fi
