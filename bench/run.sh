#!/usr/bin/env bash
# THE benchmark command: strata against PyTorch (and OpenBLAS for GEMM), side by side in one run.
#
#   bash bench/run.sh [--rounds N] [--quick] [--tta]
#
#   --rounds N  rounds of every case (default 3); each round runs each case ours then PyTorch's, the
#               order flipped every other round; the table gives medians over the rounds
#   --quick     1 round, a couple of batches per case, small GEMMs: checks the script, not the speed
#   --tta       also time-to-accuracy of the flagship recipe: examples/01_fashion_mnist (5 epochs on the
#               60k images) against bench/peers/flagship.py (the same recipe in PyTorch), one run each
#               (several minutes each; with --quick: the example's --quick subset, 1 epoch)
# What it does: bench/setup.sh (installs what is missing), configures build-bench/ (Release, bench on,
# tests off), builds only the targets it runs (-j2), runs the cases, writes every raw line to
# build-bench/bench_results.txt and prints one markdown table:
#   | case | strata | PyTorch | ratio (strata/PyTorch) |
# Cases (batch 256, 2 threads, AdamW; bench/e2e/train.cpp and train.py, bench/README.md):
#   cnn, resnet9, fashion_resnet: train img/s, eval img/s, peak RSS MB of the process (train + eval)
#   cnn --bf16: strata's Autocast(bf16) against PyTorch fp32 and against PyTorch's bf16 autocast
#   cnn --channels-last: NHWC batches on both sides (skipped if strata's e2e refuses the flag)
#   GEMM n = 1024, 2048 x 1, 2 threads: GFLOP/s against OpenBLAS cblas_sgemm (bench_gemm_vs_openblas,
#   when bench/e2e/gemm_vs_openblas.cpp exists and builds; its own alternating medians, then the median
#   over rounds)
# Ratios: > 1 is better for img/s and GFLOP/s; < 1 is better for RSS and times (the row says so).
# The machine is shared and noisy: read ratios, run it on a quiet machine, and compare only numbers from
# one run.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
rounds=3 quick=0 tta=0
while (($#)); do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --quick) quick=1; shift ;;
    --tta) tta=1; shift ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1' (see the top of bench/run.sh)" >&2; exit 2 ;;
  esac
done
((quick)) && rounds=1
py=/usr/bin/python3
build=$root/build-bench
threads=2
export OMP_NUM_THREADS=$threads

# batches per run: [warmup, timed] for the fast models, resnet9 (~4 s a training batch; 16 timed eval
# batches of ~1 s, as 4 left its eval ratio within noise of the 1.5x line) and PyTorch bf16 (~10 s a batch here)
if ((quick)); then
  fast="--warmup 1 --batches 2" slow="--warmup 0 --batches 1" torch_bf16="--warmup 0 --batches 1"
  gemm_args="--n 256,512 --threads 1,2 --reps 3 --no-bf16"
else
  fast="--warmup 3 --batches 20" slow="--warmup 1 --batches 4 --eval-batches 16" torch_bf16="--warmup 1 --batches 3"
  gemm_args="--n 1024,2048 --threads 1,2 --reps 7"
fi

echo "== bench/run.sh: setup" >&2
bash "$root/bench/setup.sh" || { echo "bench/run.sh: bench/setup.sh failed" >&2; exit 1; }

echo "== configure + build build-bench/ (-j2)" >&2
conf_log=$(mktemp)
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_BENCH=ON -DSTRATA_BUILD_TESTS=OFF \
  -DSTRATA_BUILD_EXAMPLES=ON >"$conf_log" 2>&1 ||
  { cat "$conf_log" >&2; rm -f "$conf_log"; echo "bench/run.sh: cmake configure failed" >&2; exit 1; }
mv -f "$conf_log" "$build/configure.log"
cmake --build "$build" --target bench_e2e_train -j2 >&2 || { echo "bench/run.sh: bench_e2e_train failed to build" >&2; exit 1; }
e2e=$build/bench/bench_e2e_train
gemm_bin=
if [[ -f "$root/bench/e2e/gemm_vs_openblas.cpp" ]]; then
  if cmake --build "$build" --target bench_gemm_vs_openblas -j2 >&2; then
    gemm_bin=$build/bench/bench_gemm_vs_openblas
  else
    echo "bench/run.sh: bench_gemm_vs_openblas did not build (no OpenBLAS?): no GEMM rows" >&2
  fi
fi
if ((tta)) && ! cmake --build "$build" --target example_01_fashion_mnist -j2 >&2; then
  echo "bench/run.sh: example_01_fashion_mnist failed to build: no time-to-accuracy rows" >&2
  tta=0
fi

results=$build/bench_results.txt
: >"$results"
log() { echo "$*" >>"$results"; echo "$*" >&2; }
log "# bench/run.sh $(date -u +%FT%TZ) rounds=$rounds quick=$quick tta=$tta threads=$threads"
log "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; torch $($py -c 'import torch; print(torch.__version__)' 2>/dev/null)"
log "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# run TAG SIDE CMD...: one measurement; its last output line, tagged, goes to the results file
run() {
  local tag=$1 side=$2; shift 2
  local out
  if out=$("$@" 2>"$build/last_stderr.txt"); then
    log "$tag side=$side $(tail -n1 <<<"$out")"
  else
    log "$tag side=$side FAILED rc=$? ($(tail -n1 "$build/last_stderr.txt"))"
  fi
}

# channels-last: only when strata's e2e accepts the flag
channels_last=0
if "$e2e" --model cnn --channels-last --eval-only --warmup 0 --batches 1 >/dev/null 2>&1; then channels_last=1; fi

# case NAME STRATA_ARGS PYTORCH_ARGS
cases=("cnn|--model cnn $fast|--model cnn $fast"
       "cnn_bf16|--model cnn --bf16 $fast|--model cnn --bf16 $torch_bf16"
       "fashion_resnet|--model fashion_resnet $fast|--model fashion_resnet $fast"
       "resnet9|--model resnet9 $slow|--model resnet9 $slow")
((channels_last)) && cases+=("cnn_channels_last|--model cnn --channels-last $fast|--model cnn --channels-last $fast")

for ((r = 1; r <= rounds; ++r)); do
  for c in "${cases[@]}"; do
    IFS='|' read -r name sargs pargs <<<"$c"
    tag="round=$r case=$name"
    # shellcheck disable=SC2086  # the args are word lists
    if ((r % 2)); then
      run "$tag" strata "$e2e" --threads $threads $sargs
      run "$tag" pytorch "$py" "$root/bench/e2e/train.py" --threads $threads $pargs
    else
      run "$tag" pytorch "$py" "$root/bench/e2e/train.py" --threads $threads $pargs
      run "$tag" strata "$e2e" --threads $threads $sargs
    fi
  done
  if [[ -n "$gemm_bin" ]]; then
    # shellcheck disable=SC2086
    if out=$("$gemm_bin" $gemm_args 2>"$build/last_stderr.txt"); then
      while read -r line; do [[ "$line" == gemm* ]] && log "round=$r case=gemm $line"; done <<<"$out"
    else
      log "round=$r case=gemm FAILED rc=$? ($(tail -n1 "$build/last_stderr.txt"))"
    fi
  fi
done

if ((tta)); then
  if ((quick)); then ex_args="--quick" fl_args="--epochs 1 --n-train 6144 --n-valid 2000"; else ex_args="" fl_args=""; fi
  # one run each (minutes): strata's example, then the PyTorch recipe
  # shellcheck disable=SC2086
  run "round=1 case=tta" strata bash -c "'$build/examples/example_01_fashion_mnist' $ex_args --out '$build/tta_out' | grep '^DAWNBench'"
  # shellcheck disable=SC2086
  run "round=1 case=tta" pytorch bash -c "'$py' '$root/bench/peers/flagship.py' $fl_args | grep '^DAWNBench'"
fi
log "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

"$py" - "$results" <<'EOF'
import math, re, statistics, sys

rows = [l.strip() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
vals = {}  # (case, side, key) -> [values over rounds]
def put(case, side, key, v):
    vals.setdefault((case, side, key), []).append(v)
for l in rows:
    kv = dict(re.findall(r"(\w+)=(\S+)", l))
    case, side = kv.get("case"), kv.get("side")
    if "FAILED" in l:
        continue
    if case == "gemm":  # "gemm n=1024 threads=1 strata_gflops=.. openblas_gflops=.."
        kind = l.split("case=gemm ", 1)[1].split()[0]
        c = f"{kind} n={kv['n']} threads={kv['threads']}"
        put(c, "strata", "gflops", float(kv["strata_gflops"]))
        put(c, "peer", "gflops", float(kv["openblas_gflops"]))
        continue
    if case == "tta":  # the DAWNBench line
        m = re.search(r"accuracy ([\d.]+)", l)
        if m: put("tta", side, "acc", float(m.group(1)))
        m = re.search(r"after ([\d.]+) s", l)
        put("tta", side, "ttt", float(m.group(1)) if m else math.nan)
        m = re.search(r"wall ([\d.]+) s", l)
        if m: put("tta", side, "wall", float(m.group(1)))
        m = re.search(r"training (\d+) items/s", l)
        if m: put("tta", side, "ips", float(m.group(1)))
        continue
    for k in ("train_ips", "eval_ips", "peak_rss_mb", "final_loss"):
        if k in kv:
            put(case, side, k, float(kv[k]))
    if "peak_rss_mb" in kv and "start_rss_mb" in kv:
        put(case, side, "rss_growth", float(kv["peak_rss_mb"]) - float(kv["start_rss_mb"]))

def med(case, side, key):
    v = vals.get((case, side, key))
    return statistics.median(v) if v else math.nan
def fmt(x, d=1):
    return "n/a" if math.isnan(x) else f"{x:.{d}f}"
out = ["| case | strata | PyTorch | ratio (strata/PyTorch) |", "|---|---:|---:|---:|"]
def row(label, s, p, d=1, ratio=True):
    r = fmt(s / p, 2) if ratio and not (math.isnan(s) or math.isnan(p)) and p else "-"
    out.append(f"| {label} | {fmt(s, d)} | {fmt(p, d)} | {r} |")
for m in ("cnn", "resnet9", "fashion_resnet"):
    if not any(k[0] == m for k in vals): continue
    row(f"{m} train img/s", med(m, "strata", "train_ips"), med(m, "pytorch", "train_ips"))
    row(f"{m} eval img/s", med(m, "strata", "eval_ips"), med(m, "pytorch", "eval_ips"))
    row(f"{m} peak RSS MB (lower is better)", med(m, "strata", "peak_rss_mb"), med(m, "pytorch", "peak_rss_mb"), 0)
    row(f"{m} peak RSS above start-up MB (lower is better)", med(m, "strata", "rss_growth"),
        med(m, "pytorch", "rss_growth"), 0)
    row(f"{m} final-batch loss (fp32)", med(m, "strata", "final_loss"), med(m, "pytorch", "final_loss"), 3, False)
if any(k[0] == "cnn_bf16" for k in vals):
    sb_t, sb_e = med("cnn_bf16", "strata", "train_ips"), med("cnn_bf16", "strata", "eval_ips")
    row("cnn bf16 train img/s vs PyTorch fp32", sb_t, med("cnn", "pytorch", "train_ips"))
    row("cnn bf16 train img/s vs PyTorch bf16 autocast", sb_t, med("cnn_bf16", "pytorch", "train_ips"))
    row("cnn bf16 eval img/s vs PyTorch fp32", sb_e, med("cnn", "pytorch", "eval_ips"))
    row("cnn bf16 eval img/s vs PyTorch bf16 autocast", sb_e, med("cnn_bf16", "pytorch", "eval_ips"))
    row("cnn bf16 peak RSS MB (lower is better)", med("cnn_bf16", "strata", "peak_rss_mb"),
        med("cnn_bf16", "pytorch", "peak_rss_mb"), 0)
    row("cnn bf16 final-batch loss (PyTorch: fewer batches)", med("cnn_bf16", "strata", "final_loss"),
        med("cnn_bf16", "pytorch", "final_loss"), 3, False)
if any(k[0] == "cnn_channels_last" for k in vals):
    row("cnn channels-last train img/s", med("cnn_channels_last", "strata", "train_ips"),
        med("cnn_channels_last", "pytorch", "train_ips"))
    row("cnn channels-last eval img/s", med("cnn_channels_last", "strata", "eval_ips"),
        med("cnn_channels_last", "pytorch", "eval_ips"))
else:
    out.append("| cnn channels-last | n/a (bench_e2e_train refused --channels-last) | - | - |")
gemm_cases = sorted({k[0] for k in vals if k[0].startswith("gemm")},
                    key=lambda c: (c.split()[0], int(c.split()[1][2:]), c.split()[2]))
for c in gemm_cases:
    row(f"{c} GFLOP/s (PyTorch column: OpenBLAS)", med(c, "strata", "gflops"), med(c, "peer", "gflops"))
if any(k[0] == "tta" for k in vals):
    row("flagship time to target accuracy s (lower is better; 1 run)", med("tta", "strata", "ttt"),
        med("tta", "pytorch", "ttt"))
    row("flagship fit wall s (lower is better)", med("tta", "strata", "wall"), med("tta", "pytorch", "wall"))
    row("flagship final test accuracy", med("tta", "strata", "acc"), med("tta", "pytorch", "acc"), 4, False)
    row("flagship training img/s", med("tta", "strata", "ips"), med("tta", "pytorch", "ips"), 0)
fails = [l for l in rows if "FAILED" in l]
print("\n".join(out))
n_rounds = max([int(k) for k in re.findall(r"round=(\d+)", " ".join(rows))] or [0])
print(f"\nMedians over {n_rounds} round(s); ratio = median strata / median PyTorch (OpenBLAS for GEMM): "
      "> 1 is better for img/s and GFLOP/s, < 1 for RSS and times. Raw lines: " + sys.argv[1])
for l in fails:
    print("FAILED: " + l)
EOF
