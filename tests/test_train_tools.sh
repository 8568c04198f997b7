#!/usr/bin/env bash
# Tool-calling training data end to end, on a tiny Qwen3 (mkmodel, the real
# Qwen3 tokenizer) and tests/fixtures/data/tools_openai.jsonl (a call, the
# same call in the legacy functions form, one with weight 0, two parallel
# calls; English and Chinese):
#   - train: the report counts the tools, calls and tool results; 40 steps
#     take the loss from ~18 to below 1; the adapter is written;
#   - greedy generation with the adapter (serve --generate --raw on the
#     prompt the qwen3 template renders for the tools and the question)
#     makes the trained call, and after the tool's result gives the trained
#     answer; the base model does neither;
#   - the ShareGPT form (tools_sharegpt.jsonl) and llama3.1 dry runs; a
#     template without a tool format refuses the lines, naming them;
#   - the fine-tuning jobs API takes the file unchanged (upload, job,
#     succeeded: validation is train --dry-run, the same loader; its event
#     counts the examples with tools and the calls), and fails
#     a job whose file calls an undeclared tool with invalid_training_file
#     naming the line and the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init train_tools
fix=tests/fixtures/data

"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny" --seed 1 --final-norm 16 >/dev/null
"$build/tools/mkmodel" --arch llama3 --out "$tmp/llama" --seed 1 >/dev/null
expect() { # expect NAME PATTERN FILE
    grep -qF -- "$2" "$3" || { bad "$1: no '$2' in:"; sed 's/^/    /' "$3"; }
}

# ---- train ------------------------------------------------------------------------
out=$tmp/adapters/tools
"$build/train" --model "$tmp/tiny" --data $fix/tools_openai.jsonl --out "$out" --epochs 20 --batch-size 2 \
    --lr 6e-3 --schedule constant --dropout 0 --seed 1 --logging-steps 10 >"$tmp/train.out" 2>&1 ||
    { bad "train exited $?"; cat "$tmp/train.out"; }
for p in "format: openai-chat (detected from line 1)" "examples: 4 ok, 0 bad" \
         "tools: 4 examples with tools, 5 tool definitions, 5 calls, 5 tool results" "chat template: qwen3" \
         "total steps: 40"; do
    expect train "$p" "$tmp/train.out"
done
first=$(sed -n 's/.*first_loss=\([0-9.]*\).*/\1/p' "$tmp/train.out")
last=$(sed -n 's/.*last_loss=\([0-9.]*\).*/\1/p' "$tmp/train.out")
echo "training loss: first step $first, last step $last"
awk -v f="${first:-0}" -v l="${last:-99}" 'BEGIN { exit !(f > 10 && l < 1) }' ||
    bad "loss did not fall below 1: $first -> $last"
[ -f "$out/adapter_config.json" ] && [ -f "$out/adapter_model.safetensors" ] || bad "adapter files missing"

# ---- greedy: the call, then the answer from its result ------------------------------
tool=$(head -n 1 $fix/tools_openai.jsonl | sed 's/^{"tools": \[\(.*\)\], "messages".*/\1/')
call='{"name": "get_weather", "arguments": {"city": "Paris"}}'
prompt=$(printf '<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n%s\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\nx' "$tool")
prompt=${prompt%x}  # (x: $(...) would drop the final newline)
after=$(printf '%s<tool_call>\n%s\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n18C\n</tool_response><|im_end|>\n<|im_start|>assistant\nx' "$prompt" "$call")
after=${after%x}
gen() { "$build/serve" --generate --raw --model "$tmp/tiny" "$@" --max-tokens 40 2>&1 || true; }
got=$(gen --adapter "$out" --prompt "$prompt")
[[ "$got" == "<tool_call>"$'\n'"$call"$'\n'"</tool_call>"* ]] && echo "greedy call ok: $call" ||
    bad "greedy with the adapter does not make the trained call: $got"
got=$(gen --adapter "$out" --prompt "$after")
[[ "$got" == *"It is 18C."* ]] && echo "greedy answer ok: It is 18C." ||
    bad "greedy with the adapter does not answer from the tool result: $got"
base=$(gen --prompt "$prompt")
[[ "$base" == *"get_weather"* ]] && bad "the base model made the call: $base"

# ---- other forms and templates (dry runs) -----------------------------------------
"$build/train" --model "$tmp/tiny" --data $fix/tools_sharegpt.jsonl --dry-run >"$tmp/sg.out" 2>&1 ||
    { bad "sharegpt dry run exited $?"; cat "$tmp/sg.out"; }
expect sharegpt "format: sharegpt (detected from line 1)" "$tmp/sg.out"
expect sharegpt "tools: 2 examples with tools, 3 tool definitions, 3 calls, 3 tool results" "$tmp/sg.out"
"$build/train" --model "$tmp/llama" --chat-template llama3.1 --data $fix/tools_openai.jsonl --dry-run \
    >"$tmp/l31.out" 2>&1 || { bad "llama3.1 dry run exited $?"; cat "$tmp/l31.out"; }
expect llama3.1 "examples: 3 ok, 1 bad" "$tmp/l31.out"
expect llama3.1 "line 4: chat: message 1 (assistant): 2 tool_calls, and the llama3.1 chat template takes exactly one" \
    "$tmp/l31.out"
rc=0
"$build/train" --model "$tmp/llama" --data $fix/tools_openai.jsonl --dry-run >"$tmp/l3.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || bad "llama3 (no tool format): exit $rc, want 1"
expect llama3 "line 1: tools: the llama3 chat template has no tool format (qwen2.5, qwen3 and llama3.1 have one)" \
    "$tmp/l3.out"

# ---- the fine-tuning jobs API --------------------------------------------------------
mkdir -p "$tmp/adapters"
echo '{"keys": {"sk-test": {"tenant": "acme", "adapters": []}}}' >"$tmp/tenants.json"
serve_start "$tmp/serve.log" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters" \
    --tenants "$tmp/tenants.json" --data-dir "$tmp/data" --train-bin "$build/train"
jfield() { # jfield EXPR: a field of the JSON on stdin (EXPR over `o`)
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const o=JSON.parse(s);console.log(eval(process.argv[1])??"")})' "$1"
}
upload() { # upload FILE: prints the file id
    curl -sS "http://127.0.0.1:$port/v1/files" -H 'Authorization: Bearer sk-test' -F purpose=fine-tune -F "file=@$1" |
        jfield o.id
}
job() { # job FILE_ID: creates a 2-epoch job, waits (120 s at most) until it ends; prints the job JSON
    local id j
    id=$(curl -sS "http://127.0.0.1:$port/v1/fine_tuning/jobs" -H 'Authorization: Bearer sk-test' \
        -H 'Content-Type: application/json' \
        -d "{\"model\": \"tiny\", \"training_file\": \"$1\", \"hyperparameters\": {\"n_epochs\": 2}}" | jfield o.id)
    for _ in $(seq 1 1200); do
        j=$(curl -sS "http://127.0.0.1:$port/v1/fine_tuning/jobs/$id" -H 'Authorization: Bearer sk-test')
        case $(printf '%s' "$j" | jfield o.status) in succeeded | failed | cancelled) break ;; esac
        sleep 0.1
    done
    printf '%s' "$j"
}
j=$(job "$(upload $fix/tools_openai.jsonl)")
[ "$(printf '%s' "$j" | jfield o.status)" = succeeded ] || bad "the tools file's job did not succeed: $j"
[ -n "$(printf '%s' "$j" | jfield o.fine_tuned_model)" ] || bad "no fine_tuned_model: $j"
ev=$(curl -sS "http://127.0.0.1:$port/v1/fine_tuning/jobs/$(printf '%s' "$j" | jfield o.id)/events?limit=100" \
    -H 'Authorization: Bearer sk-test' | jfield 'o.data.map(e => e.message).join(" | ")')
[[ "$ev" == *"Files validated: 4 training examples (4 with tools, 5 tool calls), "*" tokens"* ]] ||
    bad "no validation event counting the tools: $ev"
sed '2s/"name": "get_weather", "arguments"/"name": "get_time", "arguments"/' $fix/tools_openai.jsonl >"$tmp/bad.jsonl"
j=$(job "$(upload "$tmp/bad.jsonl")")
[ "$(printf '%s' "$j" | jfield o.status)/$(printf '%s' "$j" | jfield o.error.code)" = failed/invalid_training_file ] ||
    bad "the bad tools file's job: $j"
msg=$(printf '%s' "$j" | jfield o.error.message)
[[ "$msg" == *"line 2: messages[1].function_call.name: calls \"get_time\", which the line does not declare"* ]] ||
    bad "the job's error does not name line 2 and its reason: $msg"
serve_stop
t_done
