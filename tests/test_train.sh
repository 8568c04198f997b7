#!/usr/bin/env bash
# train end to end on a tiny Qwen3 (mkmodel: hidden 64, 2 layers, the real
# Qwen3 tokenizer; --final-norm 16 gives its random logits a trained
# model's range, see mkmodel.c) and six examples of the customer-service
# set tests/fixtures/data/support_zh_en.jsonl (3 English, 3 Chinese):
#   - QLoRA (NF4 base) for 72 steps: the training loss falls from ~16 to
#     well below 1; validation runs; the log is one line per logging step
#     (stdout is not a terminal); metrics.jsonl and the loss plot appear
#     beside the adapter; the adapter folder is published whole (no temp
#     folder left) with PEFT's adapter_config.json, and loads (serve
#     --inspect runs lora_load on it);
#   - greedy answers with the adapter (serve --generate) reproduce the
#     trained answers; the base model's reproduce none;
#   - checkpoints and --resume: a run stopped after step 2 (--stop-after),
#     and one killed with SIGKILL once its checkpoint-2 appears, each
#     resumed from checkpoint-2, write the same adapter bytes as an
#     uninterrupted run (dropout 0.1, grad accumulation, warmup, cosine
#     schedule, evaluation on); a checkpoint of other options is refused;
#   - early stopping stops when validation stops improving and writes the
#     best evaluation's adapter.
set -euo pipefail
build=${TESSERA_BUILD:-build/san}
fix=tests/fixtures/data/support_zh_en.jsonl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
failed() { echo "FAIL $*"; fail=1; }

"$build/tools/mkmodel" --arch qwen3 --out "$tmp/model" --seed 1 --final-norm 16 >/dev/null
sed -n '1p;4p;7p;16p;19p;27p' $fix >"$tmp/train.jsonl"
sed -n '2p;17p' $fix >"$tmp/val.jsonl"

# ---- training -------------------------------------------------------------------
out=$tmp/adapters/support
"$build/train" --model "$tmp/model" --data "$tmp/train.jsonl" --val "$tmp/val.jsonl" --out "$out" \
    --epochs 24 --batch-size 2 --lr 6e-3 --schedule constant --dropout 0 --seed 1 \
    --eval-steps 24 --logging-steps 10 >"$tmp/train.out" 2>&1 || { failed "train exited $?"; cat "$tmp/train.out"; }
grep "info train" "$tmp/train.out" | sed 's/^/    /'
first=$(sed -n 's/.*first_loss=\([0-9.]*\).*/\1/p' "$tmp/train.out")
last=$(sed -n 's/.*last_loss=\([0-9.]*\).*/\1/p' "$tmp/train.out")
echo "training loss: first step $first, last step $last"
awk -v f="${first:-0}" -v l="${last:-99}" 'BEGIN { exit !(f > 10 && l < 1 && l < f / 10) }' ||
    failed "loss did not fall well below its start: $first -> $last"
[ "$(grep -c '^info train: step=' "$tmp/train.out")" -eq 8 ] || failed "expected 8 log lines (72 steps: every 10, and the last)"
[ "$(grep -c '^info train: eval step=' "$tmp/train.out")" -eq 3 ] || failed "expected 3 evaluations"
[ "$(grep -c '"loss"' "$out.metrics.jsonl")" -eq 8 ] || failed "metrics.jsonl: expected 8 loss lines"
[ "$(grep -c '"eval_loss"' "$out.metrics.jsonl")" -eq 3 ] || failed "metrics.jsonl: expected 3 eval lines"
if command -v gnuplot >/dev/null; then [ -s "$out.loss.png" ] || failed "no loss plot"; fi
[ -f "$out/adapter_config.json" ] && [ -f "$out/adapter_model.safetensors" ] || failed "adapter files missing"
ls -A "$tmp/adapters" | grep -q '^\.' && failed "a temp folder is left in $tmp/adapters: $(ls -A "$tmp/adapters")"
for p in '"r": 16' '"lora_alpha": 32' '"peft_type": "LORA"' '"task_type": "CAUSAL_LM"' '"q_proj"' '"down_proj"' \
         "\"base_model_name_or_path\": \"$tmp/model\"" '"lora_dropout": 0.0'; do
    grep -qF -- "$p" "$out/adapter_config.json" || failed "adapter_config.json has no $p"
done
"$build/serve" --inspect --model "$tmp/model" --adapter "$out" >"$tmp/inspect.out" 2>&1 ||
    { failed "the adapter does not load"; cat "$tmp/inspect.out"; }
grep -q "adapted: 14 modules in 2 of 2 layers" "$tmp/inspect.out" || failed "inspect: not 14 adapted modules"

# ---- greedy answers -------------------------------------------------------------
if "$build/serve" --help 2>&1 | grep -q -- --generate; then
    good=0; base_hits=0; n=0
    while IFS= read -r line; do
        q=$(printf '%s' "$line" | sed 's/.*"user", "content": "\(.*\)"}, {"role": "assistant".*/\1/; s/\\"/"/g')
        a=$(printf '%s' "$line" | sed 's/.*"assistant", "content": "\(.*\)"}]}$/\1/; s/\\"/"/g')
        n=$((n + 1))
        got=$("$build/serve" --generate --model "$tmp/model" --adapter "$out" --prompt "$q" --max-tokens 40 2>&1 || true)
        base=$("$build/serve" --generate --model "$tmp/model" --prompt "$q" --max-tokens 24 2>&1 || true)
        if [[ "$got" == *"$a"* ]]; then good=$((good + 1)); echo "    greedy ok: $q -> $a"
        else echo "    greedy differs: $q -> $(printf '%s' "$got" | tr '\n' ' ')"; fi
        [[ "$base" == *"$a"* ]] && base_hits=$((base_hits + 1))
    done <"$tmp/train.jsonl"
    echo "greedy: $good of $n trained answers reproduced with the adapter, $base_hits without"
    [ "$good" -ge $((n - 1)) ] || failed "greedy answers: only $good of $n reproduce the trained answer"
    [ "$base_hits" -eq 0 ] || failed "the base model reproduced $base_hits trained answers"
else
    echo "SKIP greedy answers: $build/serve has no --generate"
fi

# ---- checkpoints and resume ------------------------------------------------------------
common=(--model "$tmp/model" --data "$tmp/train.jsonl" --val "$tmp/val.jsonl" --eval-steps 3 --epochs 3
        --batch-size 2 --grad-accum 2 --dropout 0.1 --lr 5e-3 --warmup-steps 2 --save-steps 2 --logging-steps 1)
r=$tmp/resume
"$build/train" "${common[@]}" --out "$r/full" >"$tmp/full.out" 2>&1 || { failed "full run"; cat "$tmp/full.out"; }
"$build/train" "${common[@]}" --out "$r/cut" --stop-after 2 >"$tmp/cut.out" 2>&1 || { failed "cut run"; cat "$tmp/cut.out"; }
[ -e "$r/cut" ] && failed "--stop-after wrote an adapter"
for s in 2 4 6; do [ -f "$r/full.checkpoints/checkpoint-$s/optimizer.safetensors" ] || failed "no checkpoint-$s"; done
"$build/train" "${common[@]}" --out "$r/resumed" --resume "$r/cut.checkpoints/checkpoint-2" >"$tmp/resumed.out" 2>&1 ||
    { failed "resumed run"; cat "$tmp/resumed.out"; }
grep -q "resumed from $r/cut.checkpoints/checkpoint-2 at step 2 of 6" "$tmp/resumed.out" || failed "no resume line"
if cmp -s "$r/full/adapter_model.safetensors" "$r/resumed/adapter_model.safetensors"; then
    echo "resume: stopped after step 2 + resumed == uninterrupted (adapter bytes identical)"
else
    failed "the resumed run's adapter differs from the uninterrupted run's"
fi
# A real kill: SIGKILL as soon as checkpoint-2 is published, then resume from it.
"$build/train" "${common[@]}" --out "$r/killed" >"$tmp/killed.out" 2>&1 &
pid=$!
for _ in $(seq 1200); do [ -d "$r/killed.checkpoints/checkpoint-2" ] && break; sleep 0.05; done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
"$build/train" "${common[@]}" --out "$r/revived" --resume "$r/killed.checkpoints/checkpoint-2" >"$tmp/revived.out" 2>&1 ||
    { failed "run resumed after a kill"; cat "$tmp/revived.out"; }
cmp -s "$r/full/adapter_model.safetensors" "$r/revived/adapter_model.safetensors" &&
    echo "resume: killed (SIGKILL) after checkpoint-2 + resumed == uninterrupted (adapter bytes identical)" ||
    failed "the adapter resumed after a kill differs from the uninterrupted run's"
# A checkpoint of another run is refused, naming the field.
"$build/train" "${common[@]}" --batch-size 1 --out "$r/bad" --resume "$r/cut.checkpoints/checkpoint-2" \
    >"$tmp/bad.out" 2>&1 && failed "a mismatched --resume was accepted"
grep -q "batch_size is 2, this run has 1" "$tmp/bad.out" || { failed "mismatched resume message"; cat "$tmp/bad.out"; }

# ---- early stopping ---------------------------------------------------------------
# Validation every 3 steps, patience 1: the loss rises at step 9, so the run
# stops there and the adapter written is step 6's (the best), byte for byte
# the adapter of checkpoint-6.
es=$tmp/early/s
"$build/train" --model "$tmp/model" --data "$tmp/train.jsonl" --val "$tmp/val.jsonl" --out "$es" --epochs 30 \
    --batch-size 2 --lr 1e-2 --dropout 0 --eval-steps 3 --early-stopping-patience 1 --save-steps 3 \
    >"$tmp/early.out" 2>&1 || { failed "early-stopping run"; cat "$tmp/early.out"; }
grep -q "info train: early stop at step 9: no improvement in 1 evaluations" "$tmp/early.out" ||
    { failed "no early stop at step 9"; grep "eval step" "$tmp/early.out"; }
cmp -s "$es/adapter_model.safetensors" "$es.checkpoints/checkpoint-6/adapter_model.safetensors" &&
    echo "early stopping: stopped at step 9, wrote the best (step 6) adapter" ||
    failed "the early-stopped adapter is not the best checkpoint's"

[ "$fail" -eq 0 ] && echo "test_train: ok"
exit "$fail"
