#!/usr/bin/env bash
# Structured-output decode throughput: 16 streams all constrained by a JSON
# Schema vs the same 16 unconstrained, same server run, rounds alternated,
# medians (bench/structured.mjs). Run by hand after `make`:
#
#   bench/structured.sh [THREADS]     (default: every online CPU)
#
# Builds nothing. The model is bench/serve.sh's (random qwen3, hidden 256,
# 4 layers, the real 151k Qwen3 vocabulary, so masks run over the full
# vocabulary); served as "bench". BUILD picks the build folder (default
# build); extra flags for the load generator go in ARGS (e.g. ARGS="--rounds 9").
# The last line printed is the ratio (target >= 0.95x).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${1:-}
for b in serve tools/mkmodel; do
    [ -x "$BUILD/$b" ] || { echo "bench/structured.sh: build $BUILD/$b first (make)" >&2; exit 1; }
done
. bench/lib.sh
bench_init structured
bench_model
args=(--model "$tmp/model" --served-model-name bench --max-num-seqs 16)
[ -n "$THREADS" ] && args+=(--threads "$THREADS")
bench_serve "${args[@]}"
echo "serve pid $pid port $port threads ${THREADS:-all ($(nproc))}; model: qwen3 hidden 256, 4 layers, vocab 151669"
# shellcheck disable=SC2086
node bench/structured.mjs --url "http://127.0.0.1:$port" ${ARGS:-}
