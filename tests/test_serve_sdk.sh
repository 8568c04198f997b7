#!/usr/bin/env bash
# The real engine behind the server, driven by the official `openai` npm SDK
# (tests/serve_sdk.mjs), with no echo engine: completions (string, list,
# token ids, streaming), seeds, stop strings, usage, max_tokens, n,
# logprobs, typed errors and per-tenant model lists. Expected texts come
# from `serve --generate` (raw prompts for /v1/completions, the chat
# template for chat), greedy and seeded; token counts from the npm
# tokenizer oracle (@lenml/tokenizers) on the same tokenizer.json.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init serve-sdk

for m in openai @lenml/tokenizers; do
    if [ ! -f "node_modules/$m/package.json" ]; then
        echo "test_serve_sdk: the $m npm package is missing: run make deps (npm ci)"; exit 1
    fi
done
for b in serve tools/mkmodel tools/mkadapter; do
    [ -x "$build/$b" ] || { echo "test_serve_sdk: $build/$b not built"; exit 1; }
done

# ---- fixtures and expected texts ---------------------------------------------------
"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny" --seed 7 >/dev/null
mkdir -p "$tmp/adapters" "$tmp/exp"
mkadapter() { "$build/tools/mkadapter" --model "$tmp/tiny" --out "$tmp/adapters/$1" --rank 8 --alpha 16 \
                  --targets q_proj,v_proj --seed "$2" >/dev/null; }
mkadapter acme-a 11
mkadapter acme-b 12
mkadapter globex-a 13
cat >"$tmp/tenants.json" <<'JSON'
{"keys": {
  "sk-acme-0001":   {"tenant": "acme", "adapters": ["acme-*"]},
  "sk-globex-0002": {"tenant": "globex", "adapters": ["globex-*"], "base": false},
  "sk-admin-0003":  {"tenant": "ops", "admin": true}
}}
JSON
# The prompts serve_sdk.mjs sends (index = the file name's prompt number).
p0='The quick brown fox'
p1='Once upon a time, in a land far away, there lived a'
N=24
# gen OUT PROMPT ARGS...: the CLI's text (24 tokens), without its final newline.
gen() {
    local out=$1 p=$2; shift 2
    "$build/serve" --generate --model "$tmp/tiny" --prompt "$p" --max-tokens "$N" "$@" >"$out.nl"
    head -c -1 "$out.nl" >"$out"; rm -f "$out.nl"
}
gen "$tmp/exp/raw.tiny.0.txt" "$p0" --raw
for i in 0 1; do
    p=$p0; [ "$i" = 1 ] && p=$p1
    gen "$tmp/exp/raw.acme-a.$i.txt" "$p" --raw --adapter "$tmp/adapters/acme-a"
    for seed in 5 6; do
        gen "$tmp/exp/seed$seed.acme-a.$i.txt" "$p" --raw --temperature 1 --seed "$seed" --adapter "$tmp/adapters/acme-a"
    done
done
gen "$tmp/exp/raw.acme-b.0.txt" "$p0" --raw --adapter "$tmp/adapters/acme-b"
gen "$tmp/exp/chat.acme-a.0.txt" "$p0" --adapter "$tmp/adapters/acme-a"
for seed in 5 6; do gen "$tmp/exp/chat-seed$seed.acme-a.0.txt" "$p0" --temperature 1 --seed "$seed" --adapter "$tmp/adapters/acme-a"; done
cmp -s "$tmp/exp/raw.tiny.0.txt" "$tmp/exp/raw.acme-a.0.txt" && bad "fixture: adapter acme-a does not change the output"
cmp -s "$tmp/exp/seed5.acme-a.0.txt" "$tmp/exp/seed6.acme-a.0.txt" && bad "fixture: seeds 5 and 6 sample the same text"

# ---- the server ---------------------------------------------------------------------
serve_start "$tmp/serve.log" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters" \
    --tenants "$tmp/tenants.json"

PORT=$port EXP="$tmp/exp" TOKENIZER="$tmp/tiny" N=$N node tests/serve_sdk.mjs || bad "tests/serve_sdk.mjs"

serve_stop
t_done
