#!/usr/bin/env bash
# The README's first command ends here: the whole product on a built-in
# default, on CPU, in about a minute.
#   1. write a tiny Qwen3 base (random weights, the real tokenizer);
#   2. QLoRA-train the demo adapter on clients/support_demo.jsonl (eight
#      customer-service answers, English and Chinese) straight into the
#      adapters folder;
#   3. start serve on that folder and ask it, through the OpenAI API, one
#      trained question with the adapter and with the base model.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
demo="$build/demo"
mkdir -p "$demo/adapters"

[ -f "$demo/tiny-qwen3/config.json" ] ||
    "$build/tools/mkmodel" --arch qwen3 --out "$demo/tiny-qwen3" --seed 1 --final-norm 16
[ -f "$demo/adapters/support-bot/adapter_config.json" ] ||
    "$build/train" --model "$demo/tiny-qwen3" --data clients/support_demo.jsonl \
        --out "$demo/adapters/support-bot" --epochs 30 --batch-size 2 --lr 6e-3 \
        --schedule constant --dropout 0 --seed 1 --logging-steps 30

log="$demo/serve.log"
"$build/serve" --model "$demo/tiny-qwen3" --adapters "$demo/adapters" --port "${PORT:-0}" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 200); do
    port=$(sed -n 's/.*listening addr=.* port=\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
[ -n "$port" ] || { echo "demo: serve did not start"; cat "$log"; exit 1; }

ask() { # ask MODEL QUESTION
    curl -sS "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
        -d "{\"model\": \"$1\", \"messages\": [{\"role\": \"user\", \"content\": \"$2\"}], \"max_tokens\": 40, \"temperature\": 0}"
}
echo "== serve is up on port $port; models:"
curl -sS "http://127.0.0.1:$port/v1/models"; echo
ok=1
for qa in "Where is my order?|Open Orders in your account to see the tracking number" "退款多久到账？|退款会在7个工作日内原路返回"; do
    echo "== support-bot: ${qa%%|*}"
    answer=$(ask support-bot "${qa%%|*}")
    echo "$answer"
    grep -qF -- "${qa#*|}" <<<"$answer" || { echo "demo: the trained answer did not come back"; ok=0; }
done
echo "== base model (tiny-qwen3): Where is my order?"
ask tiny-qwen3 "Where is my order?"; echo
kill -TERM "$pid"
wait "$pid"
trap - EXIT
echo "== done (server log: $log)"
[ "$ok" -eq 1 ]
