#!/usr/bin/env bash
# tessera's GPU benchmarks (issue #6) in one command, on a machine with an
# NVIDIA GPU, CUDA, gcc and python3 with torch, transformers and peft
# (bitsandbytes is used when it imports). No downloads: the models and
# adapters are generated on the machine.
#
#   bench/gpu.sh [STAGE ...]          (or: make bench-gpu)
#
# On the lent GPU machine, from the repository root, with .device prepared
# by ../shared/device/prep and carried:
#
#   source .device/env.sh && bench/gpu.sh
#
# With no STAGE every stage runs, in this order, each only while enough
# time is left before DEADLINE seconds (default 570: one 10-minute command);
# a stage that does not fit is skipped and says so, and one that overruns
# its share is stopped (its finished lines still count). Stages:
#
#   build        make CUDA=1 the gpu benches and tools (-j every CPU)
#   gen-llama    Llama-3-8B shape: bench/gen_model (bnb-4bit NF4, random) and
#                POOL rank-16 all-linear adapters (tests/tools/mkadapter, bf16)
#   decode-llama build/bench/gpu_serve --decode --hotload
#   tput-llama   build/bench/gpu_serve --throughput: batch 32, 64 x adapters
#                0, 1, 8, 32, 64, 512 (64 slots: 512 swaps through the LRU)
#   peft-serve   bench/peft_serve.py: bf16 transformers + PEFT, batch 32,
#                0 / 1 / 32 adapters (generate(adapter_names=...))
#   train        build/bench/gpu_train 4 x 1024, with --recompute and without
#   peft-train   bench/peft_train.py: bf16 LoRA, gradient checkpointing
#   gen-qwen     Qwen2.5-7B shape, the same way
#   serve-qwen   gpu_serve --decode --throughput, batch 32/64 x 0/64 adapters
#   peft-qlora   bench/peft_train.py --mode qlora (bitsandbytes NF4), if it imports
#   summary      bench/gpu_summary.py over every log: each ratio the targets use
#
# Naming stages runs those only (e.g. `bench/gpu.sh gen-qwen serve-qwen
# summary` as a second command on a machine still warm). Results accumulate:
# RESULT lines in $BUILD/gpubench/<stage>.log; summary.md beside them. With
# OUT set (the device tool's output folder) summary.md, results.txt (every
# RESULT line) and logs.tar.gz are copied there.
#
# Environment: BUILD (build), WORK (/tmp/tessera_gpu: models and adapters,
# ~13 GB, reused when present), DEADLINE (570), STEPS (64: timed decode and
# throughput steps), POOL (16 distinct adapter files per model), SMOKE=1
# (tiny models and --cpu runs: checks this script's plumbing on a machine
# without a GPU; the gpu_* binaries must exist).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/tessera_gpu}
DEADLINE=${DEADLINE:-570}
STEPS=${STEPS:-64}
POOL=${POOL:-16}
SMOKE=${SMOKE:-0}
RES=$BUILD/gpubench
mkdir -p "$RES" "$WORK"
SECONDS=0

all_stages=(build gen-llama decode-llama tput-llama peft-serve train peft-train gen-qwen serve-qwen peft-qlora summary)
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=("${all_stages[@]}")

cpu=()
small=()
if [ "$SMOKE" = 1 ]; then
    cpu=(--cpu)
    small=(--layers 2 --hidden 256 --heads 4 --kv-heads 2 --intermediate 512 --vocab 2048)
    POOL=4
fi

# Budget (seconds a stage may take) and the least time it is worth starting with.
budget() {
    case $1 in
        build) echo "300 60" ;; gen-llama | gen-qwen) echo "180 40" ;; decode-llama) echo "150 40" ;;
        tput-llama) echo "300 90" ;; peft-serve) echo "200 90" ;; train) echo "240 60" ;;
        peft-train) echo "180 70" ;; serve-qwen) echo "200 60" ;; peft-qlora) echo "150 90" ;; *) echo "60 5" ;;
    esac
}

have_torch() {
    python3 -c 'import torch, transformers, peft, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}

# Model folder and POOL adapters a0..a(POOL-1) beside it (each made once).
gen() {
    local preset=$1 dir=$WORK/$2
    if [ ! -f "$dir/model.safetensors" ]; then
        "$BUILD/bench/gen_model" --preset "$preset" --out "$dir" "${small[@]}" || return 1
    fi
    mkdir -p "$dir-adapters"
    seq 0 $((POOL - 1)) | xargs -P "$(nproc)" -I{} sh -c \
        "[ -f '$dir-adapters/a{}/adapter_model.safetensors' ] || '$BUILD/tools/mkadapter' --model '$dir' \
         --out '$dir-adapters/a{}' --rank 16 --alpha 32 --targets all-linear --seed \$(({} + 1)) --dtype bf16 \
         >/dev/null" || return 1
    du -sh "$dir" "$dir-adapters"
}

serve() { # model-name, then gpu_serve options
    local name=$1
    shift
    "$BUILD/bench/gpu_serve" --model "$WORK/$name" --adapters "$WORK/$name-adapters" --name "$name" --pool "$POOL" \
        --steps "$STEPS" "${cpu[@]}" "$@"
}

run_stage() {
    case $1 in
        build)
            nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem,driver_version --format=csv ||
                true
            [ "$SMOKE" = 1 ] && { make -j2 CUDA=0 BUILD="$BUILD" "$BUILD/bench/gen_model" "$BUILD/tools/mkadapter"; return; }
            make -j"$(nproc)" CUDA=1 BUILD="$BUILD" "$BUILD/bench/gpu_serve" "$BUILD/bench/gpu_train" \
                "$BUILD/bench/gen_model" "$BUILD/tools/mkadapter" ;;
        gen-llama) gen llama3-8b llama3-8b ;;
        gen-qwen) gen qwen2.5-7b qwen2.5-7b ;;
        decode-llama) serve llama3-8b --decode --hotload ;;
        tput-llama) serve llama3-8b --throughput ;;
        serve-qwen) serve qwen2.5-7b --decode --throughput --batches 32,64 --nadapters 0,64 ;;
        train)
            local n=1024 s=3
            [ "$SMOKE" = 1 ] && n=64
            "$BUILD/bench/gpu_train" --model "$WORK/llama3-8b" --name llama3-8b --batch 4 --seq $n --steps $s \
                --recompute "${cpu[@]}"
            "$BUILD/bench/gpu_train" --model "$WORK/llama3-8b" --name llama3-8b --batch 4 --seq $n --steps $s \
                "${cpu[@]}" ;;
        peft-serve | peft-train | peft-qlora)
            have_torch || { echo "skipped: python3 with torch (CUDA), transformers and peft not found"; return 0; }
            export PYTHONUNBUFFERED=1
            case $1 in
                peft-serve) python3 bench/peft_serve.py --model "$WORK/llama3-8b" --name llama3-8b --batch 32 \
                    --adapters 0,1,32 --new-tokens 8 ;;
                peft-train) python3 bench/peft_train.py --model "$WORK/llama3-8b" --name llama3-8b --mode lora ;;
                peft-qlora) python3 bench/peft_train.py --model "$WORK/llama3-8b" --name llama3-8b --mode qlora ;;
            esac ;;
        summary)
            python3 bench/gpu_summary.py "$RES"/*.log >"$RES/summary.md" && cat "$RES/summary.md" ;;
        *) echo "bench/gpu.sh: unknown stage $1 (see the comment atop bench/gpu.sh)" >&2; return 2 ;;
    esac
}

: >"$RES/stages.txt"
for st in "${stages[@]}"; do
    read -r want least < <(budget "$st")
    left=$((DEADLINE - SECONDS - 15)) # 15 s kept for the summary
    [ "$st" = summary ] && left=$((left + 15))
    if [ "$left" -lt "$least" ]; then
        echo "== $st: skipped, ${left} s left before the ${DEADLINE} s deadline" | tee -a "$RES/stages.txt"
        continue
    fi
    limit=$((want < left ? want : left))
    echo "== $st (limit ${limit} s, at ${SECONDS} s)"
    t0=$SECONDS
    # The stage runs in a child bash under timeout so an overrun stops it whole.
    export -f run_stage gen serve have_torch
    export BUILD WORK STEPS POOL SMOKE RES
    timeout --kill-after=10 "$limit" bash -c "cpu=(${cpu[*]}); small=(${small[*]}); run_stage $st" 2>&1 |
        tee "$RES/$st.log"
    rc=${PIPESTATUS[0]}
    note=""
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && note=" (stopped at its ${limit} s limit)"
    echo "== $st: exit $rc$note, $((SECONDS - t0)) s" | tee -a "$RES/stages.txt"
done

echo "== stages"
cat "$RES/stages.txt"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    [ -f "$RES/summary.md" ] && cp "$RES/summary.md" "$OUT/summary.md"
    cat "$RES"/*.log 2>/dev/null | grep '^RESULT' >"$OUT/results.txt"
    tar -czf "$OUT/logs.tar.gz" -C "$RES" . 2>/dev/null
    echo "copied summary.md, results.txt, logs.tar.gz to $OUT"
fi
