#!/usr/bin/env bash
# The HTTP server end to end: a tiny model, adapters for three tenants (and
# a corrupt one), a tenants file; then the node scripts in tests/http/ talk
# to it with the official OpenAI SDK and raw sockets. Also: the adapters
# folder watched live (add, replace, remove), SIGHUP reloading the tenants,
# the echo engine (streaming, stop strings, n, logprobs, disconnects), and a
# clean exit 0 on SIGTERM (under ASan: no leak reports).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init http
say() { echo "test_http: $*"; }

if [ ! -f node_modules/openai/package.json ]; then
    echo "test_http: the openai npm package is missing: run make deps (npm ci)"; exit 1
fi

# ---- fixtures ---------------------------------------------------------------
"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny-qwen3" --seed 7 >/dev/null
mkdir -p "$tmp/adapters"
mkadapter() { "$build/tools/mkadapter" --model "$tmp/tiny-qwen3" --out "$1" --rank "${2:-8}" --alpha 16 \
                  --targets q_proj,v_proj --seed 9 >/dev/null; }
for a in acme-bot acme-helper shared-bot globex-bot broken; do mkadapter "$tmp/adapters/$a"; done
truncate -s -100 "$tmp/adapters/broken/adapter_model.safetensors"
mkdir -p "$tmp/adapters/not-an-adapter" "$tmp/adapters/.hidden"
cat >"$tmp/tenants.json" <<'JSON'
{"keys": {
  "sk-acme-test-0001":   {"tenant": "acme", "adapters": ["acme-*", "shared-bot"]},
  "sk-globex-test-0002": {"tenant": "globex", "adapters": ["globex-*"], "base": false},
  "sk-admin-test-0003":  {"tenant": "ops", "admin": true}
}}
JSON

# start NAME ARGS...: serve on the tiny model in the background (log NAME.log).
start() {
    local name=$1; shift
    serve_start "$tmp/$name.log" --model "$tmp/tiny-qwen3" "$@"
}
stop() { serve_stop; }
expect_log() { grep -qF -- "$1" "$log" || bad "no '$1' in $(basename "$log"):$(tail -n 20 "$log" | sed 's/^/    /')"; }
models() { # models KEY -> sorted ids, one line
    node -e 'fetch(process.argv[1]+"/v1/models",{headers:{Authorization:"Bearer "+process.argv[2]}}).then(r=>r.json())
             .then(j=>console.log(j.data.map(m=>m.id).sort().join(" ")))' "http://127.0.0.1:$port" "$1"
}
wait_models() { # wait_models KEY WANT: polls up to 10 s
    local got=""
    for _ in $(seq 1 100); do got=$(models "$1"); [ "$got" = "$2" ] && return 0; sleep 0.1; done
    bad "models for $1: got '$got', want '$2'"
}

# ---- 1. no engine: auth, tenants, validation, HTTP --------------------------------
start api --no-engine --served-model-name tiny-qwen3 --adapters "$tmp/adapters" --tenants "$tmp/tenants.json" \
    --lora-roots "$tmp/rt-lora" \
    --max-body 65536 --request-timeout 2 --idle-timeout 3
expect_log "warn registry: skipped adapter=broken"
expect_log "info registry: added adapter=acme-bot rank=8"
PORT=$port node tests/http/api.mjs || bad "tests/http/api.mjs"
# A request whose body names no model (malformed JSON) is logged model=-,
# not printf's "(null)" for a NULL string (found by tests/fuzz/fuzz_http).
! grep -q "model=(null)" "$log" || bad "a request log line printed a NULL model: $(grep -m1 "model=(null)" "$log")"
mkadapter "$tmp/rt-lora"
PORT=$port ADMIN_KEY=sk-admin-test-0003 USER_KEY=sk-acme-test-0001 LORA_PATH="$tmp/rt-lora" \
    node tests/http/lora_admin.mjs || bad "tests/http/lora_admin.mjs"
expect_log "status=503"
expect_log "info http: rejected status=413"
expect_log "info http: rejected status=408"
expect_log "info http: rejected status=431"

# The adapters folder, live: add, replace, remove. mkadapter publishes a
# folder as the trainer does (built in a hidden ".NAME.tmp.PID" beside it,
# then renamed into place, or swapped with RENAME_EXCHANGE over an old one).
mkadapter "$tmp/adapters/acme-new" 4
wait_models sk-acme-test-0001 "acme-bot acme-helper acme-new shared-bot tiny-qwen3"
expect_log "info registry: added adapter=acme-new rank=4"
rm -rf "$tmp/adapters/acme-helper"
wait_models sk-acme-test-0001 "acme-bot acme-new shared-bot tiny-qwen3"
expect_log "info registry: removed adapter=acme-helper"
mkadapter "$tmp/adapters/acme-bot" 16
for _ in $(seq 1 100); do grep -q "replaced adapter=acme-bot rank=16" "$log" && break; sleep 0.1; done
expect_log "info registry: replaced adapter=acme-bot rank=16"
# Fixing the broken adapter makes it appear; an unchanged broken one is reported once.
[ "$(grep -c "skipped adapter=broken" "$log")" -eq 1 ] || bad "the broken adapter was reported more than once"
mkadapter "$tmp/adapters/broken"
wait_models sk-admin-test-0003 "acme-bot acme-new broken globex-bot shared-bot tiny-qwen3"

# SIGHUP: a new tenants file takes effect; a bad one keeps the old keys.
sed -i 's/sk-globex-test-0002/sk-globex-rotated-9/' "$tmp/tenants.json"
kill -HUP "$pid"
for _ in $(seq 1 100); do grep -q "info tenants: reloaded" "$log" && break; sleep 0.1; done
[ "$(models sk-globex-rotated-9)" = "globex-bot" ] || bad "rotated key does not work after SIGHUP"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer sk-globex-test-0002' \
      "http://127.0.0.1:$port/v1/models")" = 401 ] || bad "old key still works after SIGHUP"
echo '{"keys": ' >"$tmp/tenants.json"
kill -HUP "$pid"
for _ in $(seq 1 100); do grep -q "error tenants: reload failed" "$log" && break; sleep 0.1; done
expect_log "error tenants: reload failed, keeping the previous keys"
[ "$(models sk-globex-rotated-9)" = "globex-bot" ] || bad "a bad tenants file dropped the keys"
[ "$(curl -s "http://127.0.0.1:$port/health")" = '{"status":"ok"}' ] || bad "health at the end"
stop
say "no-engine server ok"

# ---- 2. the echo engine: streaming and the engine boundary ---------------------------
start echo --adapters "$tmp/adapters" --echo-engine 20
PORT=$port node tests/http/echo.mjs || bad "tests/http/echo.mjs"
for _ in $(seq 1 50); do grep -q "client gone, cancelling" "$log" && break; sleep 0.1; done
expect_log "client gone, cancelling request"
[ "$(curl -s "http://127.0.0.1:$port/health")" = '{"status":"ok"}' ] || bad "health at the end (echo)"
# SIGTERM with a stream in flight: the request is cancelled, the exit is clean.
curl -sN "http://127.0.0.1:$port/v1/completions" -d "{\"model\":\"tiny-qwen3\",\"prompt\":\"$(printf 'w%.0s ' $(seq 1 300))\",\"max_tokens\":300,\"stream\":true}" >"$tmp/inflight.out" 2>/dev/null &
curl_pid=$!
sleep 0.5
stop
wait "$curl_pid" 2>/dev/null || true
grep -q '"text_completion"' "$tmp/inflight.out" || bad "the in-flight stream had started"
say "echo-engine server ok"

# ---- 3. open mode: no tenants file ----------------------------------------------
start open --adapters "$tmp/adapters"
[ "$(models anything)" = "acme-bot acme-new broken globex-bot shared-bot tiny-qwen3" ] || bad "open mode lists everything"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/models")" = 200 ] || bad "open mode needs no key"
stop
say "open-mode server ok"

# ---- 4. startup errors ------------------------------------------------------------
rc=0; "$build/serve" --model "$tmp/tiny-qwen3" --port 0 --tenants "$tmp/tenants.json" >"$tmp/e1.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "tenants.json" "$tmp/e1.log" || bad "bad tenants file: exit $rc, want 1 naming the file"
rc=0; "$build/serve" --model "$tmp/tiny-qwen3" --port 0 --adapters "$tmp/none" >"$tmp/e2.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "$tmp/none" "$tmp/e2.log" || bad "missing adapters dir: exit $rc, want 1"
rc=0; "$build/serve" --model "$tmp/tiny-qwen3" --port 99999 >"$tmp/e3.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || bad "bad port: exit $rc, want 2"

t_done
