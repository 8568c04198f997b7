#!/usr/bin/env bash
# serve --inspect on tiny models of every architecture (written by mkmodel
# with the real tokenizers) and on broken folders: it must describe the good
# ones and refuse the bad ones with a message naming the problem, exit 1.
set -euo pipefail
build=${TESSERA_BUILD:-build/san}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() { # expect NAME PATTERN FILE
    if ! grep -qF -- "$2" "$3"; then echo "FAIL $1: no '$2' in:"; sed 's/^/    /' "$3"; fail=1; fi
}

for arch in llama3 mistral qwen2 qwen3; do
    "$build/tools/mkmodel" --arch "$arch" --out "$tmp/$arch" --seed 3 >/dev/null
    "$build/tools/mkadapter" --model "$tmp/$arch" --out "$tmp/$arch-lora" --rank 8 --alpha 16 \
        --targets q_proj,v_proj --seed 4 >/dev/null
    "$build/serve" --inspect --model "$tmp/$arch" --adapter "$tmp/$arch-lora" --prompt "Hi there, 世界" \
        >"$tmp/$arch.out" 2>&1 || { echo "FAIL $arch: exit $?"; cat "$tmp/$arch.out"; fail=1; }
    expect "$arch" "every tensor the config implies is present" "$tmp/$arch.out"
    expect "$arch" "decode(encode(prompt)) == the prompt" "$tmp/$arch.out"
    expect "$arch" "adapted: 4 modules in 2 of 2 layers: q_proj v_proj" "$tmp/$arch.out"
done
# kv_bytes_per_token: 2 (K and V) x layers x kv heads x head_dim x 2 bytes
# (bf16, the default), from config.json; --kv-dtype f32 doubles it.
for arch in llama3 mistral qwen2 qwen3; do
    want=$(node -e '
const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const d = c.head_dim ?? c.hidden_size / c.num_attention_heads;
console.log(2 * c.num_hidden_layers * c.num_key_value_heads * d * 2);' "$tmp/$arch/config.json")
    expect "$arch kv bytes" "kv_bytes_per_token $want" "$tmp/$arch.out"
    [ "$(grep -c '^kv_bytes_per_token ' "$tmp/$arch.out")" -eq 1 ] || { echo "FAIL $arch: not one kv_bytes_per_token line"; fail=1; }
    "$build/serve" --inspect --model "$tmp/$arch" --kv-dtype f32 >"$tmp/$arch.f32.out" 2>&1 ||
        { echo "FAIL $arch --kv-dtype f32: exit $?"; fail=1; }
    expect "$arch kv bytes f32" "kv_bytes_per_token $((2 * want))" "$tmp/$arch.f32.out"
done
echo "test_inspect: kv_bytes_per_token bf16 $want, f32 $((2 * want)) (qwen3)"

expect llama3 "chat template: llama3" "$tmp/llama3.out"
expect llama3 "<|begin_of_text|><|start_header_id|>system<|end_header_id|>" "$tmp/llama3.out"
expect qwen3 "chat template: qwen3" "$tmp/qwen3.out"
expect qwen2 "q/k/v bias" "$tmp/qwen2.out"
expect llama3 "rope: llama3" "$tmp/llama3.out"

refuse() { # refuse NAME PATTERN ARGS...
    local name=$1 pat=$2; shift 2
    local rc=0
    "$build/serve" --inspect "$@" >"$tmp/$name.out" 2>&1 || rc=$?
    if [ "$rc" -ne 1 ]; then echo "FAIL $name: exit $rc, want 1"; cat "$tmp/$name.out"; fail=1; fi
    expect "$name" "$pat" "$tmp/$name.out"
}
cp -r "$tmp/qwen3" "$tmp/gpt2"
sed -i 's/Qwen3ForCausalLM/GPT2LMHeadModel/' "$tmp/gpt2/config.json"
refuse arch "unsupported architecture GPT2LMHeadModel" --model "$tmp/gpt2"

cp -r "$tmp/qwen3" "$tmp/trunc"
truncate -s -100 "$tmp/trunc/model.safetensors"
refuse truncated "$tmp/trunc/model.safetensors" --model "$tmp/trunc"

cp -r "$tmp/qwen3-lora" "$tmp/badlora"
sed -i 's/"r": 8/"r": 4/' "$tmp/badlora/adapter_config.json"
refuse adapter-rank "$tmp/badlora" --model "$tmp/qwen3" --adapter "$tmp/badlora"
"$build/tools/mkmodel" --arch qwen3 --out "$tmp/wide" --hidden 128 --seed 5 >/dev/null
refuse adapter-for-other-model "expected" --model "$tmp/wide" --adapter "$tmp/qwen3-lora"
refuse no-model "$tmp/none" --model "$tmp/none"
rc=0; "$build/serve" --inspect --model "$tmp/qwen3" --kv-dtype fp16 >"$tmp/dt.out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL --kv-dtype fp16: exit $rc, want 2"; fail=1; }
expect kv-dtype "--kv-dtype: expected one of bf16, f32" "$tmp/dt.out"

rc=0; "$build/serve" --inspect >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL usage: exit $rc, want 2"; fail=1; }
[ "$fail" -eq 0 ] && echo "test_inspect: ok"
exit "$fail"
