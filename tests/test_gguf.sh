#!/usr/bin/env bash
# bench/gguf on tiny mkmodel models and adapters: the model GGUF has the
# qwen2 metadata, the whole vocabulary and merges of tokenizer.json, the
# token types, llama.cpp's tensor names and shapes, every offset aligned,
# and (`gguf check`) every tensor equal to the checkpoint's, in bf16 and
# f32; untied models get output.weight; the adapter GGUF has llama.cpp's
# LoRA keys and lora_a / lora_b shapes; a Llama model and a truncated file
# are refused naming the problem. (That llama.cpp loads these files and
# decodes the same greedy tokens as tessera is bench/peer.sh's first check.)
set -euo pipefail
build=${TESSERA_BUILD:-build/san}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
gguf=$build/bench/gguf
expect() { # expect NAME PATTERN FILE
    if ! grep -qF -- "$2" "$3"; then echo "FAIL $1: no '$2' in:"; head -n 60 "$3" | sed 's/^/    /'; fail=1; fi
}
refuse() { # refuse NAME PATTERN CMD...
    local name=$1 pat=$2
    shift 2
    if "$@" >"$tmp/$name.out" 2>&1; then echo "FAIL $name: succeeded"; fail=1; fi
    expect "$name" "$pat" "$tmp/$name.out"
}

"$build/tools/mkmodel" --arch qwen2 --out "$tmp/m" --hidden 64 --layers 2 --heads 4 --kv-heads 2 \
    --intermediate 176 --seed 3 >/dev/null
"$build/tools/mkadapter" --model "$tmp/m" --out "$tmp/a" --rank 8 --alpha 16 --targets all-linear --seed 4 >/dev/null

"$gguf" model "$tmp/m" "$tmp/m.gguf" >/dev/null
"$gguf" dump "$tmp/m.gguf" >"$tmp/m.txt"
# 2 layers x 12 tensors (norms, q/k/v/o, q/k/v biases, gate/up/down) + token_embd + output_norm; tied: no output
expect header "version 3 tensors 26 kv 25 alignment 32" "$tmp/m.txt"
for kv in "general.architecture str qwen2" "general.type str model" "qwen2.block_count u32 2" \
    "qwen2.embedding_length u32 64" "qwen2.feed_forward_length u32 176" "qwen2.attention.head_count u32 4" \
    "qwen2.attention.head_count_kv u32 2" "qwen2.context_length u32 4096" "qwen2.rope.freq_base f32 1000000" \
    "tokenizer.ggml.model str gpt2" "tokenizer.ggml.pre str qwen2" "tokenizer.ggml.eos_token_id u32 151645" \
    "tokenizer.ggml.padding_token_id u32 151643" "tokenizer.ggml.add_bos_token bool 0" \
    "tokenizer.ggml.tokens arr[str] 151669 ! \" #" "tokenizer.chat_template str"; do
    expect metadata "kv $kv" "$tmp/m.txt"
done
merges=$(node -e 'console.log(require(process.argv[1]).model.merges.length)' "$(realpath "$tmp/m/tokenizer.json")")
expect merges "kv tokenizer.ggml.merges arr[str] $merges " "$tmp/m.txt"
for t in "token_embd.weight BF16 [64, 151669]" "output_norm.weight F32 [64]" "blk.1.attn_q.weight BF16 [64, 64]" \
    "blk.1.attn_k.weight BF16 [64, 32]" "blk.1.attn_q.bias F32 [64]" "blk.1.attn_v.bias F32 [32]" \
    "blk.0.ffn_down.weight BF16 [176, 64]" "blk.0.ffn_gate.weight BF16 [64, 176]" "blk.0.ffn_norm.weight F32 [64]"; do
    expect tensors "tensor $t " "$tmp/m.txt"
done
if grep -q "^tensor output.weight" "$tmp/m.txt"; then echo "FAIL tied: output.weight written"; fail=1; fi
# Offsets: each a multiple of 32, each tensor right after the one before it (padded).
awk '/^version/ {if ($10 % 32) {print "FAIL data_offset " $10; bad = 1}}
     /^tensor/ {off = $(NF - 2); n = $NF; if (off % 32 || off != next_off) {print "FAIL offset " $2 " " off; bad = 1}
                next_off = int((off + n + 31) / 32) * 32}
     END {exit bad}' next_off=0 "$tmp/m.txt" || fail=1

# The token types, read back with --all: the added tokens of Qwen's tokenizer.json.
"$gguf" dump "$tmp/m.gguf" --all | grep '^kv tokenizer.ggml.token_type' | tr ' ' '\n' | tail -n +5 >"$tmp/types.txt"
# shellcheck disable=SC2016 # JavaScript, not shell
node -e '
    const t = require(process.argv[1]), types = require("fs").readFileSync(process.argv[2], "utf8").trim().split("\n");
    const want = new Array(types.length).fill("1");
    for (const a of t.added_tokens) want[a.id] = a.special ? "3" : "4";
    const bad = want.findIndex((w, i) => w !== types[i]);
    if (types.length !== 151669 || bad >= 0) { console.log(`FAIL token types: ${types.length}, first wrong id ${bad}`); process.exit(1); }
' "$(realpath "$tmp/m/tokenizer.json")" "$tmp/types.txt" || fail=1

"$gguf" check "$tmp/m" "$tmp/m.gguf" >"$tmp/check.out" 2>&1 || fail=1
expect check-bf16 "all 26 tensors equal" "$tmp/check.out"
"$gguf" model "$tmp/m" "$tmp/m32.gguf" --dtype f32 >/dev/null
"$gguf" check "$tmp/m" "$tmp/m32.gguf" >"$tmp/check32.out" 2>&1 || fail=1
expect check-f32 "all 26 tensors equal" "$tmp/check32.out"
"$gguf" dump "$tmp/m32.gguf" >"$tmp/m32.txt"
expect f32 "tensor blk.0.attn_q.weight F32 [64, 64]" "$tmp/m32.txt"
expect f32 "kv general.file_type u32 0" "$tmp/m32.txt"

"$build/tools/mkmodel" --arch qwen2 --out "$tmp/untied" --tie 0 --seed 5 >/dev/null
"$gguf" model "$tmp/untied" "$tmp/untied.gguf" >/dev/null
"$gguf" dump "$tmp/untied.gguf" >"$tmp/untied.txt"
expect untied "tensor output.weight BF16 [64, 151669]" "$tmp/untied.txt"
"$gguf" check "$tmp/untied" "$tmp/untied.gguf" >/dev/null || { echo "FAIL untied check"; fail=1; }

"$gguf" lora "$tmp/m" "$tmp/a" "$tmp/a.gguf" >/dev/null
"$gguf" dump "$tmp/a.gguf" >"$tmp/a.txt"
expect lora "version 3 tensors 28 kv 5" "$tmp/a.txt" # 2 layers x 7 projections x A, B
for kv in "general.type str adapter" "general.architecture str qwen2" "adapter.type str lora" \
    "adapter.lora.alpha f32 16"; do
    expect lora "kv $kv" "$tmp/a.txt"
done
for t in "blk.0.attn_q.weight.lora_a F32 [64, 8]" "blk.0.attn_k.weight.lora_b F32 [8, 32]" \
    "blk.1.ffn_down.weight.lora_a F32 [176, 8]" "blk.1.ffn_down.weight.lora_b F32 [8, 64]" \
    "blk.1.ffn_up.weight.lora_b F32 [8, 176]"; do
    expect lora "tensor $t " "$tmp/a.txt"
done
"$gguf" lora "$tmp/m" "$tmp/a" "$tmp/a16.gguf" --dtype bf16 >/dev/null
"$gguf" dump "$tmp/a16.gguf" >"$tmp/a16.txt"
expect lora-bf16 "tensor blk.0.attn_v.weight.lora_a BF16 [64, 8]" "$tmp/a16.txt"

"$build/tools/mkmodel" --arch llama3 --out "$tmp/llama" --seed 6 >/dev/null
refuse llama "LlamaForCausalLM: only Qwen2 and Qwen3 convert" "$gguf" model "$tmp/llama" "$tmp/llama.gguf"
head -c 20 "$tmp/m.gguf" >"$tmp/cut.gguf"
refuse truncated "$tmp/cut.gguf: truncated" "$gguf" dump "$tmp/cut.gguf"
refuse usage "usage: gguf model" "$gguf" model "$tmp/m"

[ "$fail" -eq 0 ] || exit 1
echo "test_gguf.sh: ok"
