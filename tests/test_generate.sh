#!/usr/bin/env bash
# serve --generate (serve/generate.c) on tiny models of every architecture
# written by mkmodel with the real tokenizers: greedy output is repeatable,
# the stats line counts what was generated, the text is valid UTF-8, an
# adapter, --raw, --quant none and seeded sampling all run, and bad options
# are refused.
set -euo pipefail
build=${TESSERA_BUILD:-build/san}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
gen() { "$build/serve" --generate "$@"; }
expect() { # expect NAME PATTERN FILE
    if ! grep -qF -- "$2" "$3"; then echo "FAIL $1: no '$2' in:"; sed 's/^/    /' "$3"; fail=1; fi
}
utf8() { # utf8 NAME FILE
    if ! iconv -f UTF-8 -t UTF-8 "$2" >/dev/null 2>&1; then echo "FAIL $1: output is not valid UTF-8"; fail=1; fi
}

for arch in llama3 mistral qwen2 qwen3; do
    "$build/tools/mkmodel" --arch "$arch" --out "$tmp/$arch" --seed 5 >/dev/null
    for run in 1 2; do
        gen --model "$tmp/$arch" --prompt "Hello, 世界" --max-tokens 8 --stats \
            >"$tmp/$arch.$run.out" 2>"$tmp/$arch.$run.err" || { echo "FAIL $arch: exit $?"; cat "$tmp/$arch.$run.err"; fail=1; }
    done
    cmp -s "$tmp/$arch.1.out" "$tmp/$arch.2.out" || { echo "FAIL $arch: greedy output differs between runs"; fail=1; }
    expect "$arch" "info generate: prompt_tokens=" "$tmp/$arch.1.err"
    grep -qE "generated=8 finish=length|finish=stop" "$tmp/$arch.1.err" || { echo "FAIL $arch: stats"; cat "$tmp/$arch.1.err"; fail=1; }
    utf8 "$arch" "$tmp/$arch.1.out"
done

m=$tmp/qwen3
"$build/tools/mkadapter" --model "$m" --out "$tmp/lora" --rank 8 --alpha 16 --targets all-linear --seed 6 >/dev/null
gen --model "$m" --adapter "$tmp/lora" --prompt "Hi" --max-tokens 6 >"$tmp/lora.out" 2>&1 || { echo "FAIL adapter"; cat "$tmp/lora.out"; fail=1; }
# the f32 KV cache and f32 adapter weights (the default is bf16 for both)
gen --model "$m" --adapter "$tmp/lora" --prompt "Hi" --max-tokens 6 --kv-dtype f32 --lora-dtype f32 --stats \
    >"$tmp/f32.out" 2>&1 || { echo "FAIL --kv-dtype f32 --lora-dtype f32"; cat "$tmp/f32.out"; fail=1; }
expect f32 "generated=" "$tmp/f32.out"
gen --model "$m" --raw --prompt "Once upon a time" --max-tokens 6 --quant none --stats >"$tmp/raw.out" 2>&1 ||
    { echo "FAIL raw"; cat "$tmp/raw.out"; fail=1; }
expect raw "prompt_tokens=4 " "$tmp/raw.out"
for run in 1 2; do
    gen --model "$m" --prompt "Hi" --max-tokens 10 --temperature 0.9 --top-p 0.95 --seed 7 >"$tmp/s$run.out" 2>&1 ||
        { echo "FAIL sampling"; cat "$tmp/s$run.out"; fail=1; }
done
cmp -s "$tmp/s1.out" "$tmp/s2.out" || { echo "FAIL sampling: same seed, different text"; fail=1; }

refuse() { # refuse NAME PATTERN ARGS...
    local name=$1 pat=$2; shift 2
    if gen "$@" >"$tmp/$name.out" 2>&1; then echo "FAIL $name: accepted"; fail=1; fi
    expect "$name" "$pat" "$tmp/$name.out"
}
refuse no-prompt "--prompt TEXT is required" --model "$m"
refuse quant "--quant: expected one of nf4, none, got \"int8\"" --model "$m" --prompt x --quant int8
refuse temperature "temperature" --model "$m" --prompt x --temperature 7
refuse kv-dtype "--kv-dtype: expected one of bf16, f32, got \"fp8\"" --model "$m" --prompt x --kv-dtype fp8
refuse no-model "config.json" --model "$tmp/nope" --prompt x
exit $fail
