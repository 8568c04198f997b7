#!/usr/bin/env bash
# Serving load test: requests/s, output tokens/s, TTFT and inter-token latency
# percentiles of build/serve at 1, 16 and 64 concurrent streams, with requests
# spread over 1 and over 16 LoRA adapters (bench/serve_load.mjs). Run by hand
# after `make`:
#
#   bench/serve.sh [THREADS]        (default: every online CPU)
#
# Builds nothing. Writes a random qwen3 model (hidden 256, 4 layers,
# intermediate 704, real Qwen3 tokenizer, so the 151k-row embedding / lm_head
# dominates) and 16 random rank-16 all-linear adapters to a temp folder,
# starts build/serve on a free port (--max-loras 16 --max-num-seqs 64), waits
# for /health, runs the load generator, stops the server with SIGTERM and
# removes the folder. BUILD picks the build folder (default build); extra
# load generator flags go in LOAD_ARGS (e.g. LOAD_ARGS="--requests 1:4,16:32,64:64").
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${1:-}
for b in serve tools/mkmodel tools/mkadapter; do
    [ -x "$BUILD/$b" ] || { echo "bench/serve.sh: build $BUILD/$b first (make)" >&2; exit 1; }
done

. bench/lib.sh
bench_init serve
bench_model
mkdir -p "$tmp/adapters"
names=()
for i in $(seq 0 15); do
    n=$(printf 'a%02d' "$i")
    "$BUILD/tools/mkadapter" --model "$tmp/model" --out "$tmp/adapters/$n" --rank 16 \
        --alpha 32 --targets all-linear --seed "$((i + 1))" >/dev/null
    names+=("$n")
done

args=(--model "$tmp/model" --adapters "$tmp/adapters" --max-loras 16 --max-num-seqs 64)
[ -n "$THREADS" ] && args+=(--threads "$THREADS")
bench_serve "${args[@]}"
echo "serve pid $pid port $port threads ${THREADS:-all ($(nproc))}; model: qwen3 hidden 256, 4 layers, intermediate 704, vocab 151669; 16 adapters rank 16 all-linear"

rc=0
# shellcheck disable=SC2086
node bench/serve_load.mjs --url "http://127.0.0.1:$port" \
    --adapters "$(IFS=,; echo "${names[*]}")" ${LOAD_ARGS:-} || rc=$?
grep -c 'loaded adapter' "$tmp/serve.log" | sed 's/^/adapter slot loads during the run: /'
exit "$rc"
