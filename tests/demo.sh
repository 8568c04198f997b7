#!/usr/bin/env bash
# The README's first command ends here: write a tiny Qwen3 model (random
# weights, real tokenizer) and a random PEFT adapter for it, then inspect
# both the way the server reads them.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
demo="$build/demo"
mkdir -p "$demo/adapters"
[ -f "$demo/tiny-qwen3/config.json" ] ||
    "$build/tools/mkmodel" --arch qwen3 --out "$demo/tiny-qwen3" --seed 1
[ -f "$demo/adapters/support-bot/adapter_config.json" ] ||
    "$build/tools/mkadapter" --model "$demo/tiny-qwen3" --out "$demo/adapters/support-bot" \
        --rank 16 --alpha 32 --targets all-linear --seed 2
"$build/serve" --inspect --model "$demo/tiny-qwen3" --adapter "$demo/adapters/support-bot" \
    --prompt "Hello from tessera! 你好，世界 🌍 — can't stop, won't stop."
