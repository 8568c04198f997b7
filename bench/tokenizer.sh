#!/usr/bin/env bash
# Tokenizer encode throughput: tessera's core/tokenizer.c against the npm
# tokenizer (@lenml/tokenizers, transformers.js) on the same corpus, in the
# same run. Run by hand after `make`:
#
#   bench/tokenizer.sh [MB] [THREADS]     (defaults: 4 MB, 2 threads)
#
# BUILD picks the build folder (default build, the -O2 one).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MB=${1:-4}
THREADS=${2:-2}
out=$BUILD/benchout
mkdir -p "$out"
[ -x "$BUILD/bench/tokenizer" ] || { echo "bench/tokenizer.sh: build $BUILD/bench/tokenizer first (make)" >&2; exit 1; }

corpus=$out/tokenizer_corpus.bin
node tests/tokenizer/bench.js corpus "$corpus" "$MB"
for name in qwen3 llama3; do
    dir=node_modules/@lenml/tokenizer-$name/models
    js=$(node tests/tokenizer/bench.js run "$name" "$corpus")
    c=$("$BUILD/bench/tokenizer" "$dir" "$corpus" "$THREADS")
    echo "$js"
    echo "$c"
    npm_mbs=$(echo "$js" | awk '{print $(NF-1)}')
    c_mbs=$(echo "$c" | head -n1 | awk '{print $(NF-1)}')
    awk -v a="$c_mbs" -v b="$npm_mbs" -v n="$name" 'BEGIN { printf "%s: tessera / npm = %.2fx (single thread)\n", n, a / b }'
done
