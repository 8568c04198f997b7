#!/usr/bin/env bash
# train --dry-run on tiny Qwen3 and Llama 3 models (mkmodel, real tokenizers)
# and the fixture files in tests/fixtures/data: the data report, the planned
# run and the exit codes; bad option values exit 2 naming the option.
# (Real training runs are in tests/test_train.sh.)
set -euo pipefail
build=${TESSERA_BUILD:-build/san}
fix=tests/fixtures/data
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() { # expect NAME PATTERN FILE
    if ! grep -qF -- "$2" "$3"; then echo "FAIL $1: no '$2' in:"; sed 's/^/    /' "$3"; fail=1; fi
}
# run NAME WANT_RC ARGS...: runs train, output (stdout + stderr) in $tmp/NAME.out
run() {
    local name=$1 want=$2 rc=0; shift 2
    "$build/train" "$@" >"$tmp/$name.out" 2>&1 || rc=$?
    if [ "$rc" -ne "$want" ]; then echo "FAIL $name: exit $rc, want $want"; sed 's/^/    /' "$tmp/$name.out"; fail=1; fi
}

"$build/tools/mkmodel" --arch qwen3 --out "$tmp/qwen3" --seed 3 >/dev/null
"$build/tools/mkmodel" --arch llama3 --out "$tmp/llama3" --seed 3 >/dev/null
q=(--model "$tmp/qwen3"); l=(--model "$tmp/llama3")

# A good file: the report, then the plan (5 examples, batch 4: 2 steps an epoch).
run good 0 "${q[@]}" --data $fix/openai_good.jsonl --out "$tmp/adapters/good" --dry-run
for p in "data: $fix/openai_good.jsonl" "format: openai-chat (detected from line 1)" "lines: 5 (0 blank, skipped)" \
         "examples: 5 ok, 0 bad" "tokens per example: min " "messages per example: min 2, max 4" \
         "truncated at max-seq-len 2048: 0" "chat template: qwen3" "Qwen3ForCausalLM, 2 layers" \
         "LoRA parameters: 37376 (" "targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj" \
         "examples: 5 train, 0 validation" "steps per epoch: 2" "total steps: 6" "warmup steps: 0" \
         "output: $tmp/adapters/good" "dry run: nothing trained, nothing written"; do
    expect good "$p" "$tmp/good.out"
done
if grep -q "bad lines:" "$tmp/good.out"; then echo "FAIL good: lists bad lines"; fail=1; fi
[ -e "$tmp/adapters" ] && { echo "FAIL good: --dry-run wrote $tmp/adapters"; fail=1; }

# Llama 3, LoRA options: 2 of 7 modules at rank 8; 5 examples, batch 2 x
# accum 2: 3 micro-batches, 2 steps an epoch, 4 in all, warmup ceil(0.4) = 1.
run llama 0 "${l[@]}" --data $fix/openai_good.jsonl --dry-run --rank 8 --alpha 16 --rslora \
    --targets q_proj,v_proj --batch-size 2 --grad-accum 2 --epochs 2 --warmup-ratio 0.1 --lr 1e-4 \
    --schedule linear --max-seq-len 512
for p in "chat template: llama3" "LoRA parameters: 3584 (" "targets q_proj,v_proj" "rank 8, alpha 16, scale 5.65685" \
         "rsLoRA" "batch: 2 x grad-accum 2 = 4 examples per step" "steps per epoch: 2" "total steps: 4" \
         "warmup steps: 1" "schedule linear" "lr 0.0001" "max-seq-len: 512" "truncated at max-seq-len 512: 0"; do
    expect llama "$p" "$tmp/llama.out"
done

# Bad lines: listed with their numbers, skipped; --strict turns them into exit 1.
run mixed 0 "${q[@]}" --data $fix/openai_mixed.jsonl --dry-run
for p in "lines: 16 (1 blank, skipped)" "examples: 3 ok, 12 bad" "bad lines:" \
         "    line 3: invalid JSON at column" "    line 4: not a JSON object (got an array)" \
         "    line 5: unknown format" "    line 6: messages[0].role: unknown role \"bot\"" \
         "    line 7: no assistant message" "    line 8: no assistant message with weight 1" \
         "    line 9: messages[0].content: empty content" "    line 10: messages[0].content: expected a string" \
         "    line 11: messages[1].weight: bad weight 0.5 (expected 0 or 1)" \
         "    line 12: format alpaca, but the file is openai-chat (set by line 1)" \
         "    line 14: messages[1].tool_calls[0].function: expected an object" "    line 16: invalid UTF-8 at column 47" \
         "examples: 3 train, 0 validation" "dry run: nothing trained"; do
    expect mixed "$p" "$tmp/mixed.out"
done
run strict 1 "${q[@]}" --data $fix/openai_mixed.jsonl --dry-run --strict
expect strict "examples: 3 ok, 12 bad" "$tmp/strict.out"
expect strict "train: $fix/openai_mixed.jsonl: 12 bad lines (strict); first: line 3: invalid JSON" "$tmp/strict.out"
if grep -q "^plan:" "$tmp/strict.out"; then echo "FAIL strict: printed a plan"; fail=1; fi
run strict-good 0 "${l[@]}" --data $fix/openai_good.jsonl --dry-run --strict

# The other formats, on both models.
for m in qwen3 llama3; do
    run alpaca-$m 0 --model "$tmp/$m" --data $fix/alpaca.jsonl --dry-run
    expect alpaca-$m "format: alpaca (detected from line 1)" "$tmp/alpaca-$m.out"
    expect alpaca-$m "examples: 3 ok, 0 bad" "$tmp/alpaca-$m.out"
    expect alpaca-$m "messages per example: min 2, max 5" "$tmp/alpaca-$m.out"
    run sharegpt-$m 0 --model "$tmp/$m" --data $fix/sharegpt.jsonl --dry-run
    expect sharegpt-$m "format: sharegpt (detected from line 1)" "$tmp/sharegpt-$m.out"
    expect sharegpt-$m "examples: 3 ok, 0 bad" "$tmp/sharegpt-$m.out"
done

# Validation data: a split (deterministic), or a file with its own report.
run split 0 "${q[@]}" --data $fix/openai_good.jsonl --dry-run --val-split 0.4 --seed 7 --eval-steps 10 \
    --early-stopping-patience 2 --save-steps 5
for p in "validation split: 2 of 5 examples held out (--val-split 0.4, seed 7)" "examples: 3 train, 2 validation" \
         "steps per epoch: 1" "eval: every 10 steps" "early stopping: after 2 evals" "save: every 5 steps"; do
    expect split "$p" "$tmp/split.out"
done
run split2 0 "${q[@]}" --data $fix/openai_good.jsonl --dry-run --val-split 0.4 --seed 7 --eval-steps 10 \
    --early-stopping-patience 2 --save-steps 5
cmp -s "$tmp/split.out" "$tmp/split2.out" || { echo "FAIL split: two runs differ"; fail=1; }
run valfile 0 "${q[@]}" --data $fix/openai_good.jsonl --val $fix/sharegpt.jsonl --dry-run
expect valfile "data: $fix/sharegpt.jsonl" "$tmp/valfile.out"
expect valfile "examples: 5 train, 3 validation" "$tmp/valfile.out"
expect valfile "eval: at the end of each epoch" "$tmp/valfile.out"
run valbad 1 "${q[@]}" --data $fix/openai_good.jsonl --val $fix/openai_mixed.jsonl --dry-run --strict
expect valbad "openai_mixed.jsonl: 12 bad lines (strict)" "$tmp/valbad.out"

# --chat-template overrides the model's.
run template 0 "${q[@]}" --data $fix/openai_good.jsonl --dry-run --chat-template chatml
expect template "chat template: chatml (--chat-template)" "$tmp/template.out"

run template-mismatch 1 "${q[@]}" --data $fix/openai_good.jsonl --dry-run --chat-template llama3
expect template-mismatch "the tokenizer has no added tokens <|start_header_id|>" "$tmp/template-mismatch.out"

# A file with nothing usable.
printf '{"messages": []}\n\n' >"$tmp/empty.jsonl"
run nothing 1 "${q[@]}" --data "$tmp/empty.jsonl" --dry-run
expect nothing "no usable examples (2 lines, 1 bad)" "$tmp/nothing.out"
expect nothing "line 1: messages: empty" "$tmp/nothing.out"

# Bad command lines: exit 2, the message names the option.
bad() { # bad NAME PATTERN ARGS...
    local name=$1 pat=$2; shift 2
    run "opt-$name" 2 "$@"
    expect "opt-$name" "$pat" "$tmp/opt-$name.out"
}
d=(--data $fix/openai_good.jsonl --dry-run)
bad rank0 "--rank: expected an integer from 1 to 4096, got \"0\"" "${q[@]}" "${d[@]}" --rank 0
bad rankx "--rank: expected an integer" "${q[@]}" "${d[@]}" --rank 8x
bad alpha "--alpha: expected a positive number, got \"-1\"" "${q[@]}" "${d[@]}" --alpha -1
bad dropout "--dropout: expected a number in [0, 1), got \"1\"" "${q[@]}" "${d[@]}" --dropout 1
bad targets "--targets: unknown module \"qkv\"" "${q[@]}" "${d[@]}" --targets q_proj,qkv
bad targets2 "--targets: \"q_proj\" is listed twice" "${q[@]}" "${d[@]}" --targets q_proj,v_proj,q_proj
bad targets3 "--targets: expected a comma-separated list" "${q[@]}" "${d[@]}" --targets q_proj,
bad epochs "--epochs: expected an integer from 1" "${q[@]}" "${d[@]}" --epochs 0
bad lr "--lr: expected a positive learning rate" "${q[@]}" "${d[@]}" --lr 0
bad lrnan "--lr: expected a positive learning rate" "${q[@]}" "${d[@]}" --lr nan
bad schedule "--schedule: expected one of cosine, linear, constant, got \"step\"" "${q[@]}" "${d[@]}" --schedule step
bad wratio "--warmup-ratio: expected a number in [0, 1)" "${q[@]}" "${d[@]}" --warmup-ratio 1.5
bad warmup-both "--warmup-ratio and --warmup-steps" "${q[@]}" "${d[@]}" --warmup-ratio 0.1 --warmup-steps 5
bad wsteps "--warmup-steps: expected an integer" "${q[@]}" "${d[@]}" --warmup-steps -3
bad batch "--batch-size: expected an integer from 1" "${q[@]}" "${d[@]}" --batch-size 0
bad accum "--grad-accum: expected an integer from 1" "${q[@]}" "${d[@]}" --grad-accum x
bad seqlen "--max-seq-len: expected an integer from 16" "${q[@]}" "${d[@]}" --max-seq-len 4
bad seqlen-model "--max-seq-len 8192: over the model's max_position_embeddings 4096" "${q[@]}" "${d[@]}" --max-seq-len 8192
bad wd "--weight-decay: expected a number from 0 to 10" "${q[@]}" "${d[@]}" --weight-decay -0.1
bad gradnorm "--max-grad-norm: expected a non-negative number" "${q[@]}" "${d[@]}" --max-grad-norm=-1
bad seed "--seed: expected a non-negative integer, got \"-1\"" "${q[@]}" "${d[@]}" --seed -1
bad split "--val-split: expected a fraction in (0, 1), got \"1\"" "${q[@]}" "${d[@]}" --val-split 1
bad split0 "--val-split: expected a fraction in (0, 1), got \"0\"" "${q[@]}" "${d[@]}" --val-split 0
bad val-both "--val and --val-split" "${q[@]}" "${d[@]}" --val $fix/alpaca.jsonl --val-split 0.1
bad val-missing "--val $tmp/none.jsonl: not a file" "${q[@]}" "${d[@]}" --val "$tmp/none.jsonl"
bad eval "--eval-steps: there is no validation data" "${q[@]}" "${d[@]}" --eval-steps 10
bad patience "--early-stopping-patience: there is no validation data" "${q[@]}" "${d[@]}" --early-stopping-patience 3
bad save "--save-steps: expected an integer from 1" "${q[@]}" "${d[@]}" --save-steps 0
bad resume "--resume $tmp/ckpt: not a folder" "${q[@]}" "${d[@]}" --resume "$tmp/ckpt"
bad quant "--quant: expected one of nf4, none, got \"int8\"" "${q[@]}" "${d[@]}" --quant int8
bad template "--chat-template: unknown chat template family 'vicuna'" "${q[@]}" "${d[@]}" --chat-template vicuna
bad unknown "unknown option --learning-rate" "${q[@]}" "${d[@]}" --learning-rate 1e-4
bad flag-value "--strict: takes no value" "${q[@]}" "${d[@]}" --strict=1
bad missing-value "--rank: missing value" "${q[@]}" "${d[@]}" --rank
bad no-model "--model DIR is required" "${d[@]}"
bad no-data "--data FILE is required" "${q[@]}" --dry-run
bad no-out "--out adapters/NAME is required" "${q[@]}" --data $fix/openai_good.jsonl
bad out-name "--out adapters/: expected a folder path ending in the adapter's name" "${q[@]}" "${d[@]}" --out adapters/
bad model-missing "--model $tmp/none: not a folder" --model "$tmp/none" "${d[@]}"
bad data-missing "--data $tmp/none.jsonl: not a file" "${q[@]}" --data "$tmp/none.jsonl" --dry-run
run help 0 --help
expect help "usage: train --model DIR --data FILE.jsonl --out adapters/NAME" "$tmp/help.out"

[ "$fail" -eq 0 ] && echo "test_train_cli: ok"
exit "$fail"
