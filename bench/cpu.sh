#!/usr/bin/env bash
# CPU engine throughput: the NF4 decode matmul's GB/s of weights read next
# to this machine's memcpy GB/s measured in the same process (same thread
# count), and decode tokens/s of a Qwen2.5-0.5B-shaped NF4 model with 0, 1,
# 4 and 16 LoRA adapters in one batch of 16 sequences (see bench/nf4.c);
# then (bench/nf4 --modes) the matmul modes side by side: exact vs q8 vs q8
# with a Q8 lm_head, decode of 1 and 16 sequences and a 512-token prefill.
# Run by hand after `make build/bench/nf4`:
#
#   bench/cpu.sh [RUNS] [THREADS]     (defaults: 3 runs, every CPU)
#
# BUILD picks the build folder (default build, the -O2 one). Each run is a
# separate process; the summary gives min / median / max over the runs of
# every number the RESULT lines carry. The first run writes the model
# (~460 MB) to /tmp/tessera_bench_qwen05b; later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${1:-3}
THREADS=${2:-}
out=$BUILD/benchout
mkdir -p "$out"
[ -x "$BUILD/bench/nf4" ] || { echo "bench/cpu.sh: build $BUILD/bench/nf4 first (make)" >&2; exit 1; }
args=()
[ -n "$THREADS" ] && args+=(--threads "$THREADS")

results=$out/cpu_results.txt
: >"$results"
for i in $(seq "$RUNS"); do
    echo "== run $i of $RUNS"
    "$BUILD/bench/nf4" "${args[@]}" | tee "$out/cpu_run$i.txt"
    grep '^RESULT' "$out/cpu_run$i.txt" >>"$results"
    "$BUILD/bench/nf4" "${args[@]}" --modes | tee "$out/cpu_modes$i.txt"
    grep '^RESULT' "$out/cpu_modes$i.txt" >>"$results"
done

echo "== $RUNS runs: min / median / max of each number"
awk '
function sort(a, n,    i, j, t) {
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
}
{
    key = $2
    for (f = 3; f <= NF; f++) if ($f ~ /^(kernels|adapters|batch|threads|kind|mode)=/) key = key " " $f
    if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
    for (f = 3; f <= NF; f++) {
        if ($f ~ /^(kernels|adapters|batch|threads|kind|mode)=/) continue
        split($f, kv, "=")
        id = key SUBSEP kv[1]
        if (!(id in cnt)) names[key] = names[key] " " kv[1]
        vals[id, ++cnt[id]] = kv[2] + 0
    }
}
END {
    for (k = 1; k <= nk; k++) {
        line = keys[k] ":"
        nn = split(names[keys[k]], nm, " ")
        for (i = 1; i <= nn; i++) {
            id = keys[k] SUBSEP nm[i]
            n = cnt[id]
            for (j = 1; j <= n; j++) a[j] = vals[id, j]
            sort(a, n)
            line = line sprintf("  %s %.2f / %.2f / %.2f", nm[i], a[1], a[int((n + 1) / 2)], a[n])
        }
        print line
    }
}' "$results"
