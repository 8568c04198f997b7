#!/usr/bin/env bash
# The real engine behind the server (serve/sched.c), end to end: a tiny
# Qwen3 model and four adapters; expected texts from `serve --generate`;
# then tests/http/engine.mjs (official OpenAI SDK) against a server with
# few slots, few sequences, a small token budget and a small KV pool, so
# LRU adapter swaps, queueing, chunked prefill and preemption all happen.
# Finally: SIGTERM with streams in flight exits 0 with a clean ASan log.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init serve-engine

for m in openai @langchain/openai @langchain/core; do
    if [ ! -f "node_modules/$m/package.json" ]; then
        echo "test_serve_engine: the $m npm package is missing: run make deps (npm ci)"; exit 1
    fi
done

# ---- fixtures and expected texts ---------------------------------------------------
"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny" --seed 7 >/dev/null
mkdir -p "$tmp/adapters" "$tmp/exp"
mkadapter() { "$build/tools/mkadapter" --model "$tmp/tiny" --out "$1" --rank 8 --alpha 16 \
                  --targets q_proj,v_proj --seed "$2" >/dev/null; }
mkadapter "$tmp/adapters/ad-a" 11
mkadapter "$tmp/adapters/ad-b" 12
mkadapter "$tmp/adapters/ad-c" 13
mkadapter "$tmp/adapters/swap" 21
mkadapter "$tmp/adapters/.swap-new" 22
p0='hello world'
p1='Tell me a story about a dragon who learned to code in C; make it long and full of detail, please, with many characters and places and things going on.'
# gen OUT MAXTOK PROMPT [--adapter DIR]: the CLI's text, without its final newline.
gen() {
    local out=$1 n=$2 p=$3; shift 3
    "$build/serve" --generate --model "$tmp/tiny" --prompt "$p" --max-tokens "$n" "$@" >"$out.nl"
    head -c -1 "$out.nl" >"$out"; rm -f "$out.nl"
}
for i in 0 1; do
    p=$p0; [ "$i" = 1 ] && p=$p1
    gen "$tmp/exp/tiny.$i.txt" 24 "$p"
    for a in ad-a ad-b ad-c; do gen "$tmp/exp/$a.$i.txt" 24 "$p" --adapter "$tmp/adapters/$a"; done
done
mkadapter "$tmp/rt-lora" 31 # loaded at runtime (POST /v1/load_lora_adapter)
gen "$tmp/exp/rt-lora.0.txt" 24 "$p0" --adapter "$tmp/rt-lora"
gen "$tmp/exp/swap-v1.txt" 100 "$p0" --adapter "$tmp/adapters/swap"
gen "$tmp/exp/swap-v2.txt" 100 "$p0" --adapter "$tmp/adapters/.swap-new"
cmp -s "$tmp/exp/swap-v1.txt" "$tmp/exp/swap-v2.txt" && bad "fixture: the two swap versions generate the same text"
cmp -s "$tmp/exp/tiny.0.txt" "$tmp/exp/ad-a.0.txt" && bad "fixture: adapter ad-a does not change the output"

# ---- the server ---------------------------------------------------------------------
serve_start "$tmp/serve.log" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters" \
    --lora-roots "$tmp/rt-lora" --admin-key sk-open-admin --max-loras 2 --max-num-seqs 4 --max-num-batched-tokens 32 --max-model-len 160 --kv-blocks 12

PORT=$port EXP="$tmp/exp" LOG="$log" ADAPTERS="$tmp/adapters" node tests/http/engine.mjs || bad "tests/http/engine.mjs"
kvb() { "$build/serve" --inspect --model "$tmp/tiny" "$@" | sed -n 's/^kv_bytes_per_token //p'; }
PORT=$port KV_BYTES=$(kvb) KV_BYTES_F32=$(kvb --kv-dtype f32) node tests/http/metrics.mjs || bad "tests/http/metrics.mjs"
PORT=$port EXP="$tmp/exp" LORA_PATH="$tmp/rt-lora" ADMIN_KEY=sk-open-admin node tests/http/lora_admin.mjs || bad "tests/http/lora_admin.mjs"
PORT=$port EXP="$tmp/exp" node tests/http/langchain.mjs || bad "tests/http/langchain.mjs"
grep -q "info sched: preempted" "$log" && echo "test_serve_engine: preemption happened (KV pool of 12 blocks)"

# (e) SIGTERM while streams are in flight: exit 0, every stream ended, no leaks.
: >"$tmp/bg.out"
PORT=$port node -e '
const base = `http://127.0.0.1:${process.env.PORT}/v1/chat/completions`;
const one = (m) => fetch(base, {method: "POST", headers: {"Content-Type": "application/json"},
  body: JSON.stringify({model: m, messages: [{role: "user", content: "stream on"}], max_tokens: 120, stream: true})})
  .then(async (r) => { const rd = r.body.getReader(); let first = true;
    for (;;) { const {done} = await rd.read().catch(() => ({done: true})); if (done) break;
               if (first) { first = false; console.log("streaming"); } } });
Promise.all(["tiny", "ad-a", "ad-b"].map(one)).then(() => console.log("ended"), () => console.log("ended"));
' >"$tmp/bg.out" 2>&1 &
bg=$!
t_bg "$bg"
for _ in $(seq 1 200); do [ "$(grep -c streaming "$tmp/bg.out" || true)" -ge 3 ] && break; sleep 0.05; done
[ "$(grep -c streaming "$tmp/bg.out" || true)" -ge 3 ] || bad "the three streams did not start: $(cat "$tmp/bg.out")"
serve_stop # with the three streams in flight
wait "$bg" || true
grep -q ended "$tmp/bg.out" || bad "the streams did not end on shutdown: $(cat "$tmp/bg.out")"
t_done
