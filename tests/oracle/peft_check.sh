#!/usr/bin/env bash
# On the GPU machine (torch + transformers + peft, no registry), after
# ../shared/device/prep here:   source .device/env.sh && tests/oracle/peft_check.sh
# Builds the CPU programs, trains a small adapter with `train` on two tiny
# models (Qwen3 and Llama 3 layouts), then checks that PEFT loads each and
# computes the same logits as tessera (tests/oracle/peft_check.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
make -j16 CUDA=0 build/train build/tools/mkmodel build/tools/dumplogits
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ids=151644,872,198,9707,11,1879,0,151645,198
fail=0
for arch in qwen3 llama3; do
    build/tools/mkmodel --arch "$arch" --out "$tmp/$arch" --seed 1 --final-norm 16 >/dev/null
    build/train --model "$tmp/$arch" --data clients/support_demo.jsonl --out "$tmp/$arch-lora" --epochs 2 \
        --batch-size 2 --lr 5e-3 --quant none --seed 1 --logging-steps 100 >/dev/null
    [ "$arch" = llama3 ] && ids=128000,128006,882,128007,271,9906,11,1917,0
    build/tools/dumplogits --model "$tmp/$arch" --adapter "$tmp/$arch-lora" --ids "$ids" --out "$tmp/$arch.st"
    python3 tests/oracle/peft_check.py "$tmp/$arch" "$tmp/$arch-lora" "$tmp/$arch.st" || fail=1
done
exit "$fail"
