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
tmp=$(mktemp -d /tmp/tessera_structured_bench.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

"$BUILD/tools/mkmodel" --arch qwen3 --out "$tmp/model" --hidden 256 --layers 4 \
    --heads 4 --kv-heads 2 --intermediate 704 >/dev/null
args=(--model "$tmp/model" --served-model-name bench --port 0 --max-num-seqs 16)
[ -n "$THREADS" ] && args+=(--threads "$THREADS")
"$BUILD/serve" "${args[@]}" >"$tmp/serve.log" 2>&1 &
pid=$!
port=
for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { echo "bench/structured.sh: serve exited" >&2; cat "$tmp/serve.log" >&2; exit 1; }
    port=$(sed -n 's/.*listening .*port=\([0-9][0-9]*\).*/\1/p' "$tmp/serve.log" | head -n1)
    if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
    port=
    sleep 0.1
done
[ -n "$port" ] || { echo "bench/structured.sh: no /health within 30 s" >&2; cat "$tmp/serve.log" >&2; exit 1; }
echo "serve pid $pid port $port threads ${THREADS:-all ($(nproc))}; model: qwen3 hidden 256, 4 layers, vocab 151669"
# shellcheck disable=SC2086
node bench/structured.mjs --url "http://127.0.0.1:$port" ${ARGS:-}
