#!/usr/bin/env bash
# Fine-tuning jobs on the server (serve/files.c, serve/ftjobs.c), end to end
# on a tiny Qwen3 model and clients/support_demo.jsonl (eight answers it
# learns in seconds):
#   1. tests/http/finetune.mjs: the whole OpenAI SDK flow (upload, create,
#      poll, serve the trained answers), a bad file, cancel, tenants,
#      pagination, limits;
#   2. tests/http/ft_admin.mjs: an admin key cannot load a fine-tuned
#      model's folder (by path, through a symlink, or inside --data-dir)
#      under another name (403); a plain folder still loads;
#      clients/finetune.mjs, the guide's example, runs against the server;
#   3. SIGTERM mid-job: exit 0, the train child killed, the job recorded as
#      failed (server_shutdown), a queued job still queued (and run after
#      the next start); a clean ASan log (leaks included) for the server
#      that ran steps 1 and 2;
#   4. kill -9 mid-job, restart: files and jobs intact, the interrupted job
#      failed with a clear error, its train process gone, no partial
#      folders, every state file whole; the earlier model still served; a
#      job queued before the crash runs to success after it;
#   5. a train that fails mid-run: the job fails with training_failed and
#      train's message; nothing of it is left.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init finetune

if [ ! -f node_modules/openai/package.json ]; then
    echo "test_finetune: the openai npm package is missing: run make deps (npm ci)"; exit 1
fi

"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny" --seed 1 --final-norm 16 >/dev/null
mkdir -p "$tmp/adapters"
cat >"$tmp/tenants.json" <<'EOF'
{"keys": {
  "sk-acme":   {"tenant": "acme", "adapters": []},
  "sk-acme-2": {"tenant": "acme", "adapters": []},
  "sk-globex": {"tenant": "globex", "adapters": ["*"]},
  "sk-ops":    {"tenant": "ops", "admin": true}
}}
EOF

# start LOG: serve on the fixture, in the background; sets pid and port.
start() {
    serve_start "$1" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters" \
        --tenants "$tmp/tenants.json" --data-dir "$tmp/data" --train-bin "$build/train" --max-file-bytes 65536 \
        --lora-roots "$tmp"
}
api() { # api METHOD PATH [JSON]: curl as tenant acme
    curl -sS -X "$1" "http://127.0.0.1:$port$2" -H 'Authorization: Bearer sk-acme' \
        -H 'Content-Type: application/json' ${3:+-d "$3"}
}
jget() { # jget JSON EXPR: a field of a JSON text (EXPR over `o`), via node
    node -e 'const o = JSON.parse(process.argv[1]); const v = eval(process.argv[2]); console.log(v ?? "")' "$1" "$2"
}
# long_job: a job of 100 epochs, waited for until it has logged a step;
# prints its id.
long_job() {
    local file id
    file=$(jget "$(cat "$tmp/ids.json")" o.file)
    id=$(jget "$(api POST /v1/fine_tuning/jobs "{\"model\":\"tiny\",\"training_file\":\"$file\",\"hyperparameters\":{\"n_epochs\":100}}")" o.id)
    for _ in $(seq 1 600); do
        [ "$(jget "$(api GET "/v1/fine_tuning/jobs/$id")" 'o.status')" = running ] &&
            [ -n "$(jget "$(api GET "/v1/fine_tuning/jobs/$id/events?limit=1")" 'o.data[0].type === "metrics" ? 1 : ""')" ] &&
            break
        sleep 0.1
    done
    echo "$id"
}
state() { cat "$tmp/data/jobs/$1.json"; }
quick_job() { # a one-epoch job (8 steps), queued behind a running one; prints its id
    jget "$(api POST /v1/fine_tuning/jobs "{\"model\":\"tiny\",\"training_file\":\"$(jget "$(cat "$tmp/ids.json")" o.file)\",\"hyperparameters\":{\"n_epochs\":1}}")" o.id
}
wait_status() { # wait_status ID STATUS: polls (60 s at most) until the job has it
    for _ in $(seq 1 600); do
        [ "$(jget "$(api GET "/v1/fine_tuning/jobs/$1")" o.status)" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# ---- 1, 2: the SDK flow and the client example ------------------------------------------
echo "test_finetune: SDK flow ($(date +%T))"
start "$tmp/serve1.log"
PORT=$port ADAPTERS="$tmp/adapters" DATA="$tmp/data" DATASET=clients/support_demo.jsonl TMP="$tmp" \
    node tests/http/finetune.mjs || bad "tests/http/finetune.mjs"
[ -f "$tmp/ids.json" ] || { echo "FAIL finetune.mjs wrote no ids"; tail -n 40 "$tmp/serve1.log"; exit 1; }
model=$(jget "$(cat "$tmp/ids.json")" o.model)
first_job=$(jget "$(cat "$tmp/ids.json")" o.job)

echo "test_finetune: admin loads of fine-tuned folders ($(date +%T))"
"$build/tools/mkadapter" --model "$tmp/tiny" --out "$tmp/plain-lora" --rank 4 --alpha 8 --targets q_proj,v_proj \
    --seed 3 >/dev/null
PORT=$port ADAPTERS="$tmp/adapters" DATA="$tmp/data" TMP="$tmp" MODEL="$model" PLAIN="$tmp/plain-lora" \
    node tests/http/ft_admin.mjs || bad "tests/http/ft_admin.mjs"

echo "test_finetune: clients/finetune.mjs ($(date +%T))"
OPENAI_BASE_URL="http://127.0.0.1:$port/v1" OPENAI_API_KEY=sk-acme N_EPOCHS=2 \
    node clients/finetune.mjs >"$tmp/client.out" 2>&1 || bad "clients/finetune.mjs: $(tail -n 5 "$tmp/client.out")"
grep -q "^job ftjob-.*: succeeded" "$tmp/client.out" || bad "clients/finetune.mjs did not succeed"
grep -q "^A: " "$tmp/client.out" || bad "clients/finetune.mjs printed no answer"

# ---- 3: SIGTERM mid-job -------------------------------------------------------------------
echo "test_finetune: SIGTERM ($(date +%T))"
id=$(long_job)
train_pid=$(jget "$(state "$id")" o.pid)
queued=$(quick_job)
wait_status "$queued" queued || bad "the job to leave queued is not queued"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || bad "exit $rc on SIGTERM with a job running, want 0"
grep -q "info server: stopped" "$tmp/serve1.log" || bad "no 'stopped' line after SIGTERM"
s=$(state "$id")
[ "$(jget "$s" o.job.status)/$(jget "$s" o.job.error.code)" = failed/server_shutdown ] ||
    bad "job after SIGTERM: $(jget "$s" o.job.status) $(jget "$s" o.job.error.code)"
kill -0 "$train_pid" 2>/dev/null && bad "the train process $train_pid outlived SIGTERM"
[ "$(jget "$(state "$queued")" o.job.status)" = queued ] || bad "a queued job did not stay queued over SIGTERM"
sigterm_queued=$queued
[ -e "$tmp/data/jobs/$id.work" ] && bad "the work folder is left after SIGTERM"
sanitizer_check "$tmp/serve1.log"

# ---- 4: kill -9 mid-job, restart -------------------------------------------------------
echo "test_finetune: kill -9 and restart ($(date +%T))"
start "$tmp/serve2.log"
wait_status "$sigterm_queued" succeeded || bad "the job left queued by SIGTERM did not run after the restart"
files_before=$(api GET /v1/files | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).data.map(f=>f.id+":"+f.bytes).sort().join(",")))')
id=$(long_job)
[ "$(jget "$(api GET "/v1/fine_tuning/jobs/$id")" o.status)" = running ] || bad "the job to interrupt is not running"
train_pid=$(jget "$(state "$id")" o.pid)
[ "${train_pid:-0}" -gt 0 ] || bad "no train pid recorded for $id"
queued=$(quick_job)
wait_status "$queued" queued || bad "the second job is not queued behind the running one"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
pid=""
start "$tmp/serve3.log"
j=$(api GET "/v1/fine_tuning/jobs/$id")
[ "$(jget "$j" o.status)" = failed ] || bad "interrupted job status: $(jget "$j" o.status), want failed"
[ "$(jget "$j" o.error.code)" = server_restarted ] || bad "interrupted job error: $j"
jget "$j" o.error.message | grep -q "while this job was running (at step [1-9]" || bad "error message: $(jget "$j" o.error.message)"
[ -z "$(jget "$j" o.fine_tuned_model)" ] || bad "the interrupted job has a model"
for _ in $(seq 1 50); do kill -0 "$train_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$train_pid" 2>/dev/null && bad "the interrupted train process $train_pid still runs"
[ -e "$tmp/data/jobs/$id.work" ] && bad "the interrupted job's work folder is left"
ls -A "$tmp/adapters" | grep -q -- "$id" && bad "an adapter folder of the interrupted job is left"
ls -A "$tmp/adapters" | grep -q '^\.' && bad "a temp folder is left in the adapters folder: $(ls -A "$tmp/adapters")"
ls -A "$tmp/data/jobs" "$tmp/data/files" | grep -q '\.tmp\.' && bad "temp files are left in the data folder"
for f in "$tmp"/data/jobs/*.json "$tmp"/data/files/*.json; do
    node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$f" 2>/dev/null || bad "corrupt state $f"
done
files_after=$(api GET /v1/files | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).data.map(f=>f.id+":"+f.bytes).sort().join(",")))')
[ "$files_before" = "$files_after" ] || bad "files changed across the restart: $files_before vs $files_after"
[ "$(jget "$(api GET "/v1/fine_tuning/jobs/$first_job")" o.status)" = succeeded ] || bad "the first job is no longer succeeded"
answer=$(api POST /v1/chat/completions "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Where is my order?\"}],\"max_tokens\":40,\"temperature\":0}")
grep -qF "Open Orders in your account to see the tracking number" <<<"$answer" ||
    bad "the fine-tuned model does not answer after the restart: $answer"
events=$(api GET "/v1/fine_tuning/jobs/$id/events?limit=100")
[ -n "$(jget "$events" 'o.data.some(e => e.type === "metrics") ? 1 : ""')" ] || bad "the interrupted job lost its events"
wait_status "$queued" succeeded || bad "the job queued before the crash did not run to success after the restart"

kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || bad "exit $rc on SIGTERM after the restart, want 0"
sanitizer_check "$tmp/serve3.log"

# ---- 5: train fails mid-run -----------------------------------------------------------------
# A train program that validates like train but fails when asked to train.
echo "test_finetune: a failing train ($(date +%T))"
{
    echo '#!/usr/bin/env bash'
    echo "for a in \"\$@\"; do [ \"\$a\" = --dry-run ] && exec \"$(cd "$build" && pwd)/train\" \"\$@\"; done"
    echo 'echo "train: out of memory in the test failing train (step 1)" >&2'
    echo 'exit 1'
} >"$tmp/failing-train"
chmod +x "$tmp/failing-train"
serve_start "$tmp/serve4.log" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters" \
    --tenants "$tmp/tenants.json" --data-dir "$tmp/data" --train-bin "$tmp/failing-train"
id=$(quick_job)
wait_status "$id" failed || bad "the job of a failing train did not fail"
j=$(api GET "/v1/fine_tuning/jobs/$id")
[ "$(jget "$j" o.error.code)" = training_failed ] || bad "failing train: error $(jget "$j" o.error.code)"
jget "$j" o.error.message | grep -q "exited with status 1): out of memory in the test failing train" ||
    bad "failing train: message $(jget "$j" o.error.message)"
[ -e "$tmp/data/jobs/$id.work" ] && bad "the failed job's work folder is left"
ls -A "$tmp/adapters" | grep -q -- "$id" && bad "the failed job left an adapter folder"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || bad "exit $rc on SIGTERM (server 4), want 0"
sanitizer_check "$tmp/serve4.log"

if [ "$fail" -ne 0 ]; then echo "--- server log (tail)"; tail -n 40 "$tmp/serve3.log"; exit 1; fi
echo "test_finetune: ok"
