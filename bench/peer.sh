#!/usr/bin/env bash
# tessera vs llama.cpp on this CPU, side by side in one run (issue 13):
#
#   LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin bench/peer.sh
#
# LLAMA_CPP_BIN is a folder holding already-built llama-bench, llama-server
# and llama-quantize (built outside this repository, CPU, for this machine:
# ../shared/PEERS.md). This script builds nothing of llama.cpp and downloads
# nothing; it needs tessera's $BUILD/serve, $BUILD/bench/gguf and
# $BUILD/tools/mkmodel, mkadapter (`make`).
#
# The model: a random Qwen2.5-0.5B-shaped qwen2 (hidden 896, 24 layers, 14
# heads, 2 KV heads, intermediate 4864, tied embeddings, q/k/v biases) with
# the real Qwen tokenizer (node_modules' Qwen3 tokenizer.json: Qwen2.5's
# byte-level BPE vocab and merges plus Qwen3's added tokens, 151669 ids), and
# 16 random PEFT adapters, rank 16, alpha 32, all 7 linear projections.
# bench/gguf converts them (model bf16, adapters f32); llama-quantize makes
# Q4_0 and Q4_0 with token_embd/output kept bf16.
#
# Measured, engines alternated (tessera first in odd runs, llama.cpp first
# in even ones), medians over RUNS (default 3; QUICK=1: 1 run, 16 requests):
#   decode  batch 1, 128 tokens from a 1-token prompt: tessera
#           `serve --generate --stats` decode_tok_s vs llama-bench tg128;
#   prefill a 512-token prompt ("the" + 511 x " the"; tessera's stats line
#           shows it counted 512): prefill_tok_s vs llama-bench pp512;
#   serve   16 streams x 128 tokens, closed loop (bench/serve_load.mjs, the
#           same generator and prompts for both; greedy; each run tags its
#           prompts so no server answers from a prompt cached in a former
#           run; the warm-up prompts differ from the measured ones), on the
#           base model, then round robin over the 16 adapters: tessera serve
#           (--max-num-seqs 16 --max-loras 16) vs llama-server -np 16 with the
#           16 GGUF LoRAs loaded at scale 0 (--lora-scaled F:0: a request
#           without a lora field runs the base model; --lora alone would apply
#           all 16 to it), each adapter request choosing its own with
#           "lora": [{"id": i, "scale": 1}] (the others then count 0).
#           Output tok/s = completion tokens of the streams that ended well,
#           plus the content chunks (~tokens) that failed streams delivered
#           before failing (serve_load's --count-partial), over the cell's
#           wall time. llama-server breaks off some streams of a random model
#           with HTTP 500 mid-stream (its output parser refuses the text):
#           they count in the errors column, their tokens so far in tok/s.
#           It runs with --no-jinja: its built-in chatml renders the very
#           prompt Qwen's template does for one user message (the same prompt
#           token counts, printed), and it then parses the output as plain
#           content; with the jinja template it parses it for Qwen3's
#           tool-call / thinking format, which a random model's tokens break
#           far more often (15 of 32 streams of a trial run; with --no-jinja
#           32 of 96 in bench/RESULTS.md's full run, "does not match the
#           expected Content-only format").
# Before that, a check that both engines run the same model: a tiny random
# qwen2 converted to f32 GGUF, greedy 16 tokens from a raw prompt, base and
# one adapter, tessera `--quant none` vs llama-server; prints agree/DIFFER.
#
# Matched: the same weights (bf16 values before quantization), tokenizer,
# chat template and prompts (both engines' prompt token counts are printed);
# threads (THREADS, default every CPU: tessera --threads, llama -t/-tb);
# 128 output tokens, greedy. Not matched: the 4-bit formats: tessera NF4
# with double quant ~4.13 bits per weight (64-weight blocks, 8-bit absmax)
# vs Q4_0 4.5 (32-weight blocks, f16 scale); the embedding: tessera keeps it
# bf16, llama-quantize's Q4_0 stores token_embd (and so the tied lm_head)
# as Q8_0 (8.5 bits), hence the second llama.cpp column with both kept bf16
# (decode and prefill); KV cache precision (each engine's default);
# llama-bench measures tg128 from an empty context, tessera's decode follows
# a 1-token prompt.
#
# Environment: BUILD (default build), RUNS, QUICK=1, THREADS, REQUESTS
# (serve requests per cell; default 32, QUICK 16), PEER_DIR (work folder,
# kept and reused when given; default a temp folder removed at the end),
# TESSERA_FLAGS (extra `serve` flags, e.g. "--matmul q8"), TESSERA_GEN_FLAGS
# (extra `serve --generate` flags; default TESSERA_FLAGS), LLAMA_FLAGS
# (extra llama-bench and llama-server flags, e.g. "--poll 0"). The last line is
# one JSON object with every median and ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
RUNS=${RUNS:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
REQUESTS=${REQUESTS:-$([ "$QUICK" = 1 ] && echo 16 || echo 32)}
THREADS=${THREADS:-$(nproc)}
TESSERA_FLAGS=${TESSERA_FLAGS:-}
TESSERA_GEN_FLAGS=${TESSERA_GEN_FLAGS:-$TESSERA_FLAGS}
LLAMA_FLAGS=${LLAMA_FLAGS:-}
L=${LLAMA_CPP_BIN:-}

die() { echo "bench/peer.sh: $*" >&2; exit 1; }
[ -n "$L" ] || die "set LLAMA_CPP_BIN to a folder with llama-bench, llama-server, llama-quantize"
for b in llama-bench llama-server llama-quantize; do [ -x "$L/$b" ] || die "$L/$b: not an executable"; done
for b in serve bench/gguf tools/mkmodel tools/mkadapter; do [ -x "$BUILD/$b" ] || die "build $BUILD/$b first (make)"; done

if [ -n "${PEER_DIR:-}" ]; then W=$PEER_DIR; mkdir -p "$W"; keep=1; else W=$(mktemp -d /tmp/tessera_peer.XXXXXX); keep=0; fi
pid=
stop_server() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    pid=
}
cleanup() { stop_server; [ "$keep" = 1 ] || rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server LOG CMD...: runs CMD in the background, waits for /health
# (the port is the one CMD was given: $port).
start_server() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1200); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "server exited: $*"; }
        curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "no /health within 300 s: $*"
}

names=()
for i in $(seq 0 15); do names+=("$(printf 'a%02d' "$i")"); done

# ---- the model, adapters and their GGUF forms (reused under PEER_DIR) -----------
prepare() {
    local m=$W/model
    if [ ! -f "$m/model.safetensors" ]; then
        "$BUILD/tools/mkmodel" --arch qwen2 --out "$m" --hidden 896 --layers 24 --heads 14 --kv-heads 2 \
            --intermediate 4864 --max-pos 32768 --tie 1 --seed 1
    fi
    mkdir -p "$W/adapters" "$W/lora"
    for i in $(seq 0 15); do
        local n=${names[$i]}
        [ -d "$W/adapters/$n" ] || "$BUILD/tools/mkadapter" --model "$m" --out "$W/adapters/$n" --rank 16 \
            --alpha 32 --targets all-linear --seed "$((i + 1))" >/dev/null
        [ -f "$W/lora/$n.gguf" ] || "$BUILD/bench/gguf" lora "$m" "$W/adapters/$n" "$W/lora/$n.gguf" >/dev/null
    done
    [ -f "$W/model-bf16.gguf" ] || "$BUILD/bench/gguf" model "$m" "$W/model-bf16.gguf"
    [ -f "$W/model-q4_0.gguf" ] || "$L/llama-quantize" "$W/model-bf16.gguf" "$W/model-q4_0.gguf" Q4_0 \
        >"$W/quantize.log" 2>&1 || { tail "$W/quantize.log" >&2; die "llama-quantize failed"; }
    [ -f "$W/model-q4_0-e16.gguf" ] || "$L/llama-quantize" --token-embedding-type bf16 --output-tensor-type bf16 \
        "$W/model-bf16.gguf" "$W/model-q4_0-e16.gguf" Q4_0 >>"$W/quantize.log" 2>&1 ||
        { tail "$W/quantize.log" >&2; die "llama-quantize (bf16 embedding) failed"; }
}

# ---- the same-model check on a tiny f32 model -------------------------------------
# llama_complete PROMPT LORA_JSON: llama-server's greedy 16-token completion.
llama_complete() {
    curl -sf "http://127.0.0.1:$port/completion" -H 'Content-Type: application/json' \
        -d "{\"prompt\": $(node -e 'console.log(JSON.stringify(process.argv[1]))' "$1"), \"n_predict\": 16,
             \"temperature\": 0, \"cache_prompt\": false, \"lora\": $2}" |
        node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);
                 console.log(JSON.stringify([j.content, j.tokens_evaluated]))})'
}

agree() {
    local t=$W/tiny prompt="The quick brown fox jumps over the lazy dog"
    rm -rf "$t"
    mkdir -p "$t"
    "$BUILD/tools/mkmodel" --arch qwen2 --out "$t/model" --hidden 64 --layers 2 --heads 4 --kv-heads 2 \
        --intermediate 176 --final-norm 16 --seed 7 >/dev/null
    "$BUILD/tools/mkadapter" --model "$t/model" --out "$t/a0" --rank 8 --alpha 16 --targets all-linear >/dev/null
    "$BUILD/bench/gguf" model "$t/model" "$t/model.gguf" --dtype f32 >/dev/null
    "$BUILD/bench/gguf" check "$t/model" "$t/model.gguf" >/dev/null
    "$BUILD/bench/gguf" lora "$t/model" "$t/a0" "$t/a0.gguf" >/dev/null
    port=$(free_port)
    start_server "$t/llama-server.log" "$L/llama-server" -m "$t/model.gguf" --lora-scaled "$t/a0.gguf:0" \
        --host 127.0.0.1 --port "$port" -t "$THREADS" -c 512 -np 1
    local what adapter lora ours theirs
    for what in base adapter; do
        adapter=() lora='[]'
        [ "$what" = adapter ] && adapter=(--adapter "$t/a0") lora='[{"id": 0, "scale": 1}]'
        ours=$("$BUILD/serve" --generate --model "$t/model" "${adapter[@]}" --raw --prompt "$prompt" \
            --max-tokens 16 --quant none --threads "$THREADS" --stats 2>"$t/gen.log")
        ours=$(node -e 'console.log(JSON.stringify([process.argv[1], +process.argv[2]]))' "$ours" \
            "$(sed -n 's/.*prompt_tokens=\([0-9]*\).*/\1/p' "$t/gen.log")")
        theirs=$(llama_complete "$prompt" "$lora")
        if [ "$ours" = "$theirs" ]; then
            echo "same model check ($what, f32, greedy 16 tokens): agree, [text, prompt tokens] = $ours"
        else
            echo "same model check ($what, f32, greedy 16 tokens): DIFFER: tessera $ours, llama.cpp $theirs"
        fi
    done
    stop_server
}

# ---- one run's measurements ------------------------------------------------------------
R=$W/results
record() { echo "$2" >>"$R/$1"; } # record METRIC VALUE

tessera_gen() { # tessera_gen PROMPT MAX_TOKENS -> the stats line
    # shellcheck disable=SC2086
    "$BUILD/serve" --generate --model "$W/model" --raw --prompt "$1" --max-tokens "$2" --threads "$THREADS" \
        --stats $TESSERA_GEN_FLAGS 2>&1 >/dev/null | grep 'info generate:'
}

stat_of() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }

tessera_bench() {
    local s
    s=$(tessera_gen "Hello" 128)
    echo "  tessera decode:  $s"
    record t_decode "$(echo "$s" | stat_of decode_tok_s)"
    record t_generated "$(echo "$s" | stat_of generated)"
    s=$(tessera_gen "$PROMPT512" 1)
    echo "  tessera prefill: $s"
    record t_prefill "$(echo "$s" | stat_of prefill_tok_s)"
    record t_prefill_tokens "$(echo "$s" | stat_of prompt_tokens)"
}

llama_bench() {
    # shellcheck disable=SC2086
    "$L/llama-bench" -m "$W/model-q4_0.gguf" -m "$W/model-q4_0-e16.gguf" -p 512 -n 128 -t "$THREADS" -r 1 \
        $LLAMA_FLAGS -o jsonl 2>"$W/llama-bench.log" >"$W/llama-bench.jsonl" || { tail "$W/llama-bench.log" >&2; die "llama-bench failed"; }
    node -e '
        for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean)) {
            const j = JSON.parse(l), e16 = j.model_filename.includes("e16") ? "_e16" : "";
            console.log((j.n_gen > 0 ? "decode" : "prefill") + e16, j.avg_ts);
        }' "$W/llama-bench.jsonl" | while read -r k v; do
        echo "  llama-bench $k: $v tok/s"
        record "l_$k" "$v"
    done
}

# serve_load ENGINE RUN EXTRA...: the load generator against $port.
serve_load() {
    local engine=$1 run=$2 rc=0
    shift 2
    node bench/serve_load.mjs --url "http://127.0.0.1:$port" --adapters "$(IFS=,; echo "${names[*]}")" \
        --conc 16 --nadapters 0,16 --requests "16:$REQUESTS" --max-tokens 128 --warmup 1 --warmup-tokens 8 --count-partial 1 \
        --base-model model --tag "r$run " --json "$W/$engine.json" "$@" >"$W/$engine.load.txt" 2>&1 || rc=$?
    sed 's/^/  /' "$W/$engine.load.txt" | grep -E '^\s+\| 16|error' || true
    [ -f "$W/$engine.json" ] || die "serve_load against $engine failed (rc $rc): $(tail -3 "$W/$engine.load.txt")"
    node -e '
        const rows = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        for (const r of rows) {
            const k = r.nad === 0 ? "base" : "lora";
            console.log(k, r.tps, r.errors, r.prompt, r.itl[0], r.partial);
        }' "$W/$engine.json" | while read -r k tps errs prompt itl partial; do
        record "${engine}_serve_$k" "$tps"
        record "${engine}_errors_$k" "$errs"
        record "${engine}_prompt_$k" "$prompt"
        record "${engine}_itl_$k" "$itl"
        record "${engine}_partial_$k" "$partial"
    done
    rm -f "$W/$engine.json"
}

tessera_serve() {
    port=$(free_port)
    # shellcheck disable=SC2086
    start_server "$W/serve.log" "$BUILD/serve" --model "$W/model" --adapters "$W/adapters" --port "$port" \
        --max-loras 16 --max-num-seqs 16 --threads "$THREADS" $TESSERA_FLAGS
    serve_load t "$1"
    stop_server
}

llama_serve() {
    local loras=()
    for n in "${names[@]}"; do loras+=("$W/lora/$n.gguf:0"); done
    port=$(free_port)
    # shellcheck disable=SC2086
    start_server "$W/llama-server.log" "$L/llama-server" -m "$W/model-q4_0.gguf" $LLAMA_FLAGS \
        --lora-scaled "$(IFS=,; echo "${loras[*]}")" -np 16 -c 16384 -t "$THREADS" -tb "$THREADS" \
        --host 127.0.0.1 --port "$port" --no-jinja --no-webui
    serve_load l "$1" --lora-field 1
    stop_server
}

# ---- the summary ----------------------------------------------------------------------
median() { [ -s "$R/$1" ] && sort -g "$R/$1" | awk '{a[NR] = $1} END {printf "%.1f\n", a[int((NR + 1) / 2)]}' || echo 0; }
total() { awk '{s += $1} END {print s + 0}' "$R/$1" 2>/dev/null || echo 0; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf (b > 0 ? "%.2f" : "-"), a / b}'; }

summary() {
    local td tp tb tl ld lp lde lpe lb ll
    td=$(median t_decode) tp=$(median t_prefill) tb=$(median t_serve_base) tl=$(median t_serve_lora)
    ld=$(median l_decode) lp=$(median l_prefill) lde=$(median l_decode_e16) lpe=$(median l_prefill_e16)
    lb=$(median l_serve_base) ll=$(median l_serve_lora)
    echo
    echo "== tessera vs llama.cpp, medians of $RUNS run(s), $THREADS threads, tok/s"
    echo "tessera flags: serve [${TESSERA_FLAGS:-none}] generate [${TESSERA_GEN_FLAGS:-none}]; llama.cpp flags [${LLAMA_FLAGS:-none}]"
    echo
    echo "| figure | tessera (NF4, its defaults + flags above) | llama.cpp Q4_0 | ratio | llama.cpp Q4_0, bf16 embd | ratio |"
    echo "|---|---|---|---|---|---|"
    echo "| decode, batch 1, 128 tokens | $td | $ld | $(ratio "$td" "$ld")x | $lde | $(ratio "$td" "$lde")x |"
    echo "| prefill, 512-token prompt | $tp | $lp | $(ratio "$tp" "$lp")x | $lpe | $(ratio "$tp" "$lpe")x |"
    echo "| serve, 16 streams x 128 tokens, base | $tb | $lb | $(ratio "$tb" "$lb")x | | |"
    echo "| serve, 16 streams on 16 LoRA adapters | $tl | $ll | $(ratio "$tl" "$ll")x | | |"
    echo
    echo "serve errors (all runs) tessera base/lora $(total t_errors_base)/$(total t_errors_lora)," \
        "llama.cpp $(total l_errors_base)/$(total l_errors_lora) (their tokens so far counted:" \
        "$(total l_partial_base)/$(total l_partial_lora));" \
        "prompt tokens (mean) tessera $(median t_prompt_base), llama.cpp $(median l_prompt_base);" \
        "ITL p50 ms base tessera $(median t_itl_base), llama.cpp $(median l_itl_base);" \
        "tessera prefill prompt tokens $(median t_prefill_tokens), decode generated $(median t_generated)"
    printf '{"runs": %d, "threads": %d, "requests": %d, "tessera_flags": "%s", "decode": [%s, %s, %s], "decode_e16": [%s, %s], "prefill": [%s, %s, %s], "prefill_e16": [%s, %s], "serve_base": [%s, %s, %s], "serve_lora": [%s, %s, %s]}\n' \
        "$RUNS" "$THREADS" "$REQUESTS" "$TESSERA_FLAGS" "$td" "$ld" "$(ratio "$td" "$ld")" "$lde" "$(ratio "$td" "$lde")" \
        "$tp" "$lp" "$(ratio "$tp" "$lp")" "$lpe" "$(ratio "$tp" "$lpe")" "$tb" "$lb" "$(ratio "$tb" "$lb")" \
        "$tl" "$ll" "$(ratio "$tl" "$ll")"
}

echo "bench/peer.sh: $(date -u +%FT%TZ) runs=$RUNS requests=$REQUESTS threads=$THREADS work=$W; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tessera: $(git rev-parse --short HEAD) $BUILD/serve, flags [${TESSERA_FLAGS:-none}]; llama.cpp: $("$L/llama-server" --version 2>&1 | head -n1 || true)"
prepare
agree
PROMPT512="the$(printf ' the%.0s' $(seq 511))"
rm -rf "$R"
mkdir -p "$R"
for run in $(seq "$RUNS"); do
    echo "== run $run of $RUNS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    if [ $((run % 2)) = 1 ]; then
        tessera_bench; llama_bench; tessera_serve "$run"; llama_serve "$run"
    else
        llama_bench; tessera_bench; llama_serve "$run"; tessera_serve "$run"
    fi
done
summary
