#!/usr/bin/env bash
# Tool calling through the real engine on tiny random-weight models, the
# Qwen3 and Qwen2.5 templates (Hermes <tool_call> blocks; Qwen3's
# reasoning) and Llama 3.1's (JSON calls), judged by the openai SDK and
# ajv: tests/serve_tools.mjs says what it checks. Here too: a template
# without a tool format refuses tools with a 400 naming it, and the engine
# never refused a token its own masks allowed.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init serve-tools

for m in openai ajv; do
    if [ ! -f "node_modules/$m/package.json" ]; then
        echo "test_serve_tools: the $m npm package is missing: run make deps (npm ci)"; exit 1
    fi
done
for b in serve tools/mkmodel; do
    [ -x "$build/$b" ] || { echo "test_serve_tools: $build/$b not built"; exit 1; }
done

"$build/tools/mkmodel" --arch qwen3 --out "$tmp/qwen3" --seed 7 >/dev/null
"$build/tools/mkmodel" --arch llama3 --out "$tmp/llama3" --seed 8 >/dev/null

# run_family NAME MODEL [SERVE ARGS...]: serve_tools.mjs against one server.
run_family() {
    local fam=$1 model=$2
    shift 2
    serve_start "$tmp/serve-$fam.log" --model "$model" --served-model-name tiny "$@"
    PORT=$port FAMILY=$fam TOKENIZER="$model" node tests/serve_tools.mjs || bad "tests/serve_tools.mjs ($fam)"
    grep -q "grammar refused" "$log" && bad "$fam: the engine refused a token its own mask allowed (see the log)"
    grep -q "tool arguments unconstrained.*tools=tag reason=uniqueItems at /properties/tags:" "$log" || bad "$fam: the non-strict fallback was not logged"
    grep -q "tool call cut short" "$log" || bad "$fam: no call was cut inside its arguments"
    grep -q "tool call unreadable" "$log" && bad "$fam: a reply parser failed (see the log)"
    serve_stop
}

run_family qwen3 "$tmp/qwen3"
run_family qwen2.5 "$tmp/qwen3" --chat-template qwen2.5
run_family llama3.1 "$tmp/llama3" --chat-template llama3.1

# The original Llama 3 template has no tool format: 400 naming it.
serve_start "$tmp/serve-llama3.log" --model "$tmp/llama3" --served-model-name tiny
body='{"model":"tiny","max_tokens":4,"messages":[{"role":"user","content":"hi"}],
       "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}'
out=$(curl -s -w '\n%{http_code}' "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' -d "$body")
[ "$(tail -n1 <<<"$out")" = 400 ] || bad "llama3 tools: status $(tail -n1 <<<"$out"), want 400"
grep -q '"param":"tools"' <<<"$out" || bad "llama3 tools: param is not \"tools\": $out"
grep -q "(llama3)" <<<"$out" || bad "llama3 tools: the message does not name the template: $out"
serve_stop
t_done
