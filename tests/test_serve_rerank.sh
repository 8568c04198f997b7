#!/usr/bin/env bash
# POST /v1/rerank on the real engine with a tiny random Qwen3 model and an
# adapter (tests/serve_rerank.mjs, plain fetch): shapes, order, top_n,
# return_documents, errors, and every score equal to P(yes) computed
# independently through /v1/completions' logprobs; then a server whose
# queue is smaller than the list of documents.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init serve-rerank

for b in serve tools/mkmodel tools/mkadapter; do
    [ -x "$build/$b" ] || { echo "test_serve_rerank: $build/$b not built"; exit 1; }
done
"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny" --seed 7 >/dev/null
mkdir -p "$tmp/adapters"
"$build/tools/mkadapter" --model "$tmp/tiny" --out "$tmp/adapters/acme-a" --rank 8 --alpha 16 \
    --targets q_proj,v_proj --seed 11 >/dev/null

serve_start "$tmp/serve.log" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters"
PORT=$port TOKENIZER="$tmp/tiny" node tests/serve_rerank.mjs || bad "tests/serve_rerank.mjs"
serve_stop

# A queue smaller than the list: the documents go through in waves.
serve_start "$tmp/serve-queue.log" --model "$tmp/tiny" --served-model-name tiny --max-queue 2
WAVES=1 PORT=$port TOKENIZER="$tmp/tiny" node tests/serve_rerank.mjs || bad "tests/serve_rerank.mjs (waves)"
serve_stop
t_done
