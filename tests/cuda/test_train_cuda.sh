#!/usr/bin/env bash
# train --device cuda end to end on a tiny Qwen3 (mkmodel, hidden 64, 2
# layers) and six examples of tests/fixtures/data/support_zh_en.jsonl, next
# to the same run on the CPU (QLoRA, dropout 0.1, grad accumulation,
# warmup, evaluation and checkpoints on):
#   - every logged step's loss and grad norm, and every eval loss, of the
#     GPU run within REL of the CPU run's (f32 in another order: ~1e-6);
#   - a GPU run stopped after step 2 and resumed from its checkpoint writes
#     the same adapter bytes as the uninterrupted GPU run (the kernels are
#     deterministic; checkpoints go through the host staging buffers);
#   - the GPU-trained adapter loads (serve --inspect).
# Needs a GPU and a CUDA build: TESSERA_BUILD=build (make CUDA=1).
set -euo pipefail
build=${TESSERA_BUILD:-build}
fix=tests/fixtures/data/support_zh_en.jsonl
REL=1e-3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
failed() { echo "FAIL $*"; fail=1; }

"$build/tools/mkmodel" --arch qwen3 --out "$tmp/model" --seed 1 --final-norm 16 >/dev/null
sed -n '1p;4p;7p;16p;19p;27p' $fix >"$tmp/train.jsonl"
sed -n '2p;17p' $fix >"$tmp/val.jsonl"
common=(--model "$tmp/model" --data "$tmp/train.jsonl" --val "$tmp/val.jsonl" --eval-steps 3 --epochs 3
        --batch-size 2 --grad-accum 2 --dropout 0.1 --lr 5e-3 --warmup-steps 2 --save-steps 2 --logging-steps 1)

for d in cpu cuda; do
    "$build/train" "${common[@]}" --device $d --out "$tmp/$d/full" >"$tmp/$d.out" 2>&1 ||
        { failed "--device $d run"; cat "$tmp/$d.out"; }
done
grep -q "training on CUDA" "$tmp/cuda.out" || failed "the cuda run did not say it trains on CUDA"

# The metrics, field by field: loss, grad_norm, eval_loss.
fields() { sed -n 's/.*"\('"$1"'\)": \([-0-9.e+]*\).*/\2/p' "$2"; }
for f in loss grad_norm eval_loss; do
    paste <(fields $f "$tmp/cpu/full.metrics.jsonl") <(fields $f "$tmp/cuda/full.metrics.jsonl") >"$tmp/$f.tsv"
    [ -s "$tmp/$f.tsv" ] || { failed "no $f in the metrics"; continue; }
    awk -v rel=$REL -v f=$f '
        { n++; d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > worst) worst = r
          if ($2 == "" || r > rel) { bad++; printf "    %s line %d: cpu %s cuda %s\n", f, n, $1, $2 } }
        END { printf "%s: %d values, worst relative difference %.2e (bound %s)\n", f, n, worst, rel; exit bad > 0 }' \
        "$tmp/$f.tsv" || failed "$f: the GPU run differs from the CPU run by more than $REL"
done

# Stop after step 2, resume from the checkpoint: the same adapter bytes.
"$build/train" "${common[@]}" --device cuda --out "$tmp/cuda/cut" --stop-after 2 >"$tmp/cut.out" 2>&1 ||
    { failed "cut run"; cat "$tmp/cut.out"; }
"$build/train" "${common[@]}" --device cuda --out "$tmp/cuda/resumed" \
    --resume "$tmp/cuda/cut.checkpoints/checkpoint-2" >"$tmp/resumed.out" 2>&1 ||
    { failed "resumed run"; cat "$tmp/resumed.out"; }
if cmp -s "$tmp/cuda/full/adapter_model.safetensors" "$tmp/cuda/resumed/adapter_model.safetensors"; then
    echo "resume on the GPU: stopped after step 2 + resumed == uninterrupted (adapter bytes identical)"
else
    failed "the GPU run resumed from checkpoint-2 wrote another adapter than the uninterrupted one"
fi

"$build/serve" --model "$tmp/model" --inspect --adapter "$tmp/cuda/full" >"$tmp/inspect.out" 2>&1 ||
    { failed "serve --inspect of the GPU-trained adapter"; cat "$tmp/inspect.out"; }
grep -q "adapted: 14 modules in 2 of 2 layers" "$tmp/inspect.out" || failed "inspect: not 14 adapted modules"

[ "$fail" -eq 0 ] && echo "test_train_cuda: ok"
exit "$fail"
