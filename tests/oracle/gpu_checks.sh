#!/usr/bin/env bash
# The GPU machine's correctness run in one device command (after
# ../shared/device/prep here; carry .device):
#   source .device/env.sh && tests/oracle/gpu_checks.sh
# 1. make test-cuda: every CUDA op, the whole forward and the whole LoRA
#    backward against the CPU backend, train --device cuda vs cpu;
# 2. tests/oracle/peft_check.sh: PEFT loads adapters written by train and
#    computes tessera's logits.
# Full logs go to $OUT (the device tool brings them back), else
# build/gpu_checks; the tail of each is printed. Exit 0 only if both pass.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/gpu_checks}
mkdir -p "$out"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
rc=0
start=$(date +%s)
make -j16 CUDA=1 test-cuda >"$out/test-cuda.log" 2>&1 || { rc=1; echo "FAIL make test-cuda"; }
echo "test-cuda: $(( $(date +%s) - start )) s"
start=$(date +%s)
tests/oracle/peft_check.sh >"$out/peft_check.log" 2>&1 || { rc=1; echo "FAIL peft_check"; }
echo "peft_check: $(( $(date +%s) - start )) s"
for f in "$out"/test-cuda.log "$out"/peft_check.log; do
    echo "==== $f (tail)"; tail -n 40 "$f"
done
exit "$rc"
