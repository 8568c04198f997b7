#!/usr/bin/env bash
# POST /v1/embeddings on the real engine (tests/serve_embeddings.mjs): the
# openai SDK (float and base64), LangChain's OpenAIEmbeddings, unit norms,
# dimensions, batch = alone, an adapter changing the vector, tenants, the
# 400s; every vector checked against tools/embedref, which computes it
# apart from the server (one forward of the same ids, pooled by emb_pool).
# Twice: --pooling last (the default) and --pooling mean, each with a
# small --max-num-batched-tokens so prompts are prefilled in chunks.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init serve-embeddings

for m in openai @langchain/openai @lenml/tokenizers; do
    if [ ! -f "node_modules/$m/package.json" ]; then
        echo "test_serve_embeddings: the $m npm package is missing: run make deps (npm ci)"; exit 1
    fi
done
for b in serve tools/mkmodel tools/mkadapter tools/embedref; do
    [ -x "$build/$b" ] || { echo "test_serve_embeddings: $build/$b not built"; exit 1; }
done

"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny" --seed 7 >/dev/null
mkdir -p "$tmp/adapters"
"$build/tools/mkadapter" --model "$tmp/tiny" --out "$tmp/adapters/acme-emb" --rank 8 --alpha 16 \
    --targets q_proj,v_proj --seed 11 >/dev/null
"$build/tools/mkadapter" --model "$tmp/tiny" --out "$tmp/adapters/globex-emb" --rank 8 --alpha 16 \
    --targets q_proj,v_proj --seed 12 >/dev/null
cat >"$tmp/tenants.json" <<'JSON'
{"keys": {
  "sk-acme-0001":   {"tenant": "acme", "adapters": ["acme-*"]},
  "sk-globex-0002": {"tenant": "globex", "adapters": ["globex-*"], "base": false}
}}
JSON

for pooling in last mean; do
    serve_start "$tmp/serve-$pooling.log" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters" \
        --tenants "$tmp/tenants.json" --quant none --kv-dtype f32 --lora-dtype f32 --matmul exact \
        --max-num-batched-tokens 8 --max-num-seqs 4 --pooling "$pooling"
    PORT=$port MODEL="$tmp/tiny" ADAPTERS="$tmp/adapters" EMBEDREF="$build/tools/embedref" POOLING=$pooling \
        node tests/serve_embeddings.mjs || bad "tests/serve_embeddings.mjs (--pooling $pooling)"
    serve_stop
done
t_done
