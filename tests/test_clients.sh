#!/usr/bin/env bash
# The examples in clients/ run against a real build/serve laid out as
# `make demo` lays it out (a tiny Qwen3 named tiny-qwen3, an adapter named
# support-bot; random weights here, no training): the JS ones (openai SDK,
# LangChain) and curl.sh run, in open mode and with
# clients/tenants.example.json, and print the adapter's greedy answer
# (= `serve --generate` with that adapter), streamed and not; a key whose
# tenant may not use the model gets the 404, not an answer. The
# tool-calling JS examples (tools-bot, a random adapter here) run to an
# answer. The Python ones are byte-compiled only (no openai/langchain
# Python packages here).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init clients

for m in openai @langchain/openai; do
    [ -f "node_modules/$m/package.json" ] || { echo "test_clients: npm package $m missing: run make deps"; exit 1; }
done

# ---- the Python examples: they must at least compile ------------------------------------
for f in clients/*.py; do
    python3 -c 'import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)' \
        "$f" "$tmp/$(basename "$f")c" || bad "python3 cannot compile $f"
done
# The examples' defaults are the README's main command.
grep -qF -- '--port 8000' README.md && grep -qF '"model": "support-bot"' README.md ||
    bad "README.md no longer serves support-bot on port 8000: update the defaults in clients/"
grep -qF '"model": "tools-bot"' README.md ||
    bad "README.md's tool-calling example no longer uses tools-bot: update the defaults in clients/"
for f in clients/*.py clients/*.mjs clients/curl.sh; do
    grep -qF '127.0.0.1:8000/v1' "$f" || bad "$f: its base URL differs from the README's server"
    case "$f" in
    clients/finetune.*) continue ;; # fine-tunes the base: no adapter name
    clients/*tools* | clients/*agent*) want=tools-bot ;; # README's tool-calling adapter
    *) want=support-bot ;;
    esac
    grep -qF "$want" "$f" || bad "$f: its default adapter differs from the README's ($want)"
done

# ---- fixtures: the demo's names -----------------------------------------------------------
"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny-qwen3" --seed 1 --final-norm 16 >/dev/null
mkdir -p "$tmp/adapters"
for a in support-bot:1 globex-bot:2 tools-bot:3; do
    "$build/tools/mkadapter" --model "$tmp/tiny-qwen3" --out "$tmp/adapters/${a%%:*}" --rank 8 --alpha 16 \
        --targets q_proj,v_proj --seed "${a#*:}" >/dev/null
done
question='Where is my order?'
for a in support-bot globex-bot; do
    "$build/serve" --generate --model "$tmp/tiny-qwen3" --adapter "$tmp/adapters/$a" --prompt "$question" \
        --max-tokens 64 >"$tmp/$a.txt"
done
cmp -s "$tmp/support-bot.txt" "$tmp/globex-bot.txt" && bad "fixture: the two adapters answer the same"

start() { serve_start "$tmp/serve.log" --model "$tmp/tiny-qwen3" --adapters "$tmp/adapters" "$@"; }
stop() { serve_stop; }
# expect NAME MODEL [MODELS-LINE]: the output an example must print.
expect() {
    { [ -n "${3:-}" ] && echo "models: $3"
      echo "== $2"; cat "$tmp/$2.txt"; echo "== $2, streamed"; cat "$tmp/$2.txt"; } >"$tmp/$1.want"
}
# run_js NAME FILE [ENV...]: runs a JS example, compares with $tmp/NAME.want.
run_js() {
    local name=$1 file=$2; shift 2
    if ! env TESSERA_BASE_URL="http://127.0.0.1:$port/v1" "$@" node "$file" >"$tmp/$name.out" 2>"$tmp/$name.err"; then
        bad "$name: $file failed: $(cat "$tmp/$name.err")"
    elif ! cmp -s "$tmp/$name.out" "$tmp/$name.want"; then
        bad "$name: $file printed something else:"; diff "$tmp/$name.want" "$tmp/$name.out" | head -20
    fi
}

# ---- open mode: the defaults (any key, model support-bot) --------------------------------
start
expect open-openai support-bot "globex-bot support-bot tiny-qwen3 tools-bot"
run_js open-openai clients/openai_chat.mjs
expect open-langchain support-bot
run_js open-langchain clients/langchain_chat.mjs
# The tool-calling flows (a random tools-bot here: whether it calls a tool
# is up to its weights; tests/test_tools_e2e.sh runs them on a trained one):
# they run to an answer, and the streamed first turn agrees with the loop's.
for f in clients/openai_tools.mjs clients/langchain_agent.mjs; do
    if ! TESSERA_BASE_URL="http://127.0.0.1:$port/v1" node "$f" >"$tmp/tools.out" 2>"$tmp/tools.err"; then
        bad "$f failed: $(tail -n 5 "$tmp/tools.err")"
    elif ! grep -q '^answer: ' "$tmp/tools.out"; then
        bad "$f printed no answer: $(head -c 300 "$tmp/tools.out")"
    elif grep -q '^call: ' "$tmp/tools.out" && ! grep -q '^streamed call: ' "$tmp/tools.out"; then
        bad "$f: the streamed first turn made no call where the non-streamed one did"
    fi
done
if TESSERA_BASE_URL="http://127.0.0.1:$port/v1" clients/curl.sh >"$tmp/curl.out" 2>&1; then
    for want in '"object":"list"' '"object":"chat.completion"' '"object":"chat.completion.chunk"' \
                'data: [DONE]' '"object":"text_completion"' '"usage":{"prompt_tokens"'; do
        grep -qF -- "$want" "$tmp/curl.out" || bad "curl.sh: no $want in its output"
    done
    # The non-streamed answer is the adapter's greedy text.
    node -e 'const fs = require("fs"); const [out, want] = process.argv.slice(1).map((f) => fs.readFileSync(f, "utf8"));
             const line = out.split("\n").find((l) => l.startsWith("{\"id\":\"chatcmpl-"));
             process.exit(line && JSON.parse(line).choices[0].message.content + "\n" === want ? 0 : 1)' \
        "$tmp/curl.out" "$tmp/support-bot.txt" || bad "curl.sh: the chat answer is not support-bot's greedy text"
else
    bad "curl.sh failed: $(tail -n 20 "$tmp/curl.out")"
fi
stop

# ---- tenants: the key picks the tenant, the model the adapter ------------------------------
start --tenants clients/tenants.example.json
expect acme-openai support-bot "support-bot tiny-qwen3"
run_js acme-openai clients/openai_chat.mjs TESSERA_API_KEY=sk-acme-demo-0001
expect globex-openai globex-bot "globex-bot"
run_js globex-openai clients/openai_chat.mjs TESSERA_API_KEY=sk-globex-demo-0002 TESSERA_MODEL=globex-bot
expect globex-langchain globex-bot
run_js globex-langchain clients/langchain_chat.mjs TESSERA_API_KEY=sk-globex-demo-0002 TESSERA_MODEL=globex-bot
expect admin-langchain support-bot
run_js admin-langchain clients/langchain_chat.mjs TESSERA_API_KEY=sk-ops-admin-0003
# Another tenant's adapter: 404 model_not_found, as if it did not exist.
for f in clients/openai_chat.mjs clients/langchain_chat.mjs clients/curl.sh; do
    cmd=(node "$f"); [ "${f##*.}" = sh ] && cmd=("$f")
    if TESSERA_BASE_URL="http://127.0.0.1:$port/v1" TESSERA_API_KEY=sk-globex-demo-0002 "${cmd[@]}" \
           >"$tmp/forbidden.out" 2>&1; then
        bad "$f: globex's key used support-bot"
    elif ! grep -qE "404|model_not_found|MODEL_NOT_FOUND" "$tmp/forbidden.out"; then
        bad "$f: globex's key on support-bot did not get a 404: $(tail -n 5 "$tmp/forbidden.out")"
    fi
done
TESSERA_BASE_URL="http://127.0.0.1:$port/v1" TESSERA_API_KEY=sk-wrong node clients/openai_chat.mjs \
    >"$tmp/nokey.out" 2>&1 && bad "a wrong key got an answer"
grep -q 401 "$tmp/nokey.out" || bad "a wrong key did not get a 401: $(tail -n 5 "$tmp/nokey.out")"
stop

t_done
