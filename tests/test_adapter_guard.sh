#!/usr/bin/env bash
# Issue 12, findings 1-3, against a real server (echo engine):
#   1. POST /v1/load_lora_adapter is off in open mode without --admin-key;
#      with it, only the key's Bearer may call it, only folders inside
#      --adapters or --lora-roots load (absolute paths outside, '../',
#      symlinks out are refused the same way, whether they exist or not),
#      names are checked (no '..', no newline), and a weights file that is
#      not safetensors (a symlink to a passwd-like file) leaks no bytes.
#   2. The watcher does not follow a symlinked subfolder (or file) out of
#      its folder (a subfolder symlink that stays inside is served).
#   3. A truncated adapter_model.safetensors written over a served adapter
#      in place keeps the last good version serving, logged and counted in
#      tessera_adapter_load_failures_total{adapter="alpha"}; removing the
#      folder unlists it.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init adapter_guard
say() { echo "test_adapter_guard: $*"; }

"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny" --seed 7 >/dev/null
mkadapter() { "$build/tools/mkadapter" --model "$tmp/tiny" --out "$1" --rank 4 --alpha 8 \
                  --targets q_proj,v_proj --seed 9 >/dev/null; }
mkdir -p "$tmp/adapters" "$tmp/roots/r1" "$tmp/outside"
mkadapter "$tmp/adapters/alpha"
mkadapter "$tmp/roots/r1/good"
mkadapter "$tmp/outside/evil"
ln -s "$tmp/outside/evil" "$tmp/adapters/escape"    # finding 2: out of the folder
ln -s "$tmp/adapters/alpha" "$tmp/adapters/inner"   # stays inside: served
mkdir -p "$tmp/adapters/filelink"                     # a file symlinked out: skipped
cp "$tmp/outside/evil/adapter_config.json" "$tmp/adapters/filelink/"
ln -s "$tmp/outside/evil/adapter_model.safetensors" "$tmp/adapters/filelink/adapter_model.safetensors"
ln -s "$tmp/outside/evil" "$tmp/roots/r1/link-out"  # finding 1: a symlink out of a root
# A folder in a root whose weights are a symlink to a file outside (as
# /etc/passwd in the issue): its first 8 bytes must not show up.
mkdir -p "$tmp/roots/r1/leak"
cp "$tmp/roots/r1/good/adapter_config.json" "$tmp/roots/r1/leak/"
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$tmp/outside/passwd"
ln -s "$tmp/outside/passwd" "$tmp/roots/r1/leak/adapter_model.safetensors"
# The same bytes inside the root: refused as not safetensors, number hidden.
mkdir -p "$tmp/roots/r1/junk"
cp "$tmp/roots/r1/good/adapter_config.json" "$tmp/roots/r1/junk/"
cp "$tmp/outside/passwd" "$tmp/roots/r1/junk/adapter_model.safetensors"

# post KEY PATH BODY -> "STATUS BODY" on one line
post() {
    curl -s -o "$tmp/body" -w '%{http_code}' -X POST "http://127.0.0.1:$port$2" \
        -H "Authorization: Bearer $1" -H 'Content-Type: application/json' --data-binary "$3"
    printf ' %s' "$(tr '\n' ' ' <"$tmp/body")"
}
# expect WHAT GOT STATUS REGEX [FORBIDDEN]
expect() {
    local st=${2%% *} body=${2#* }
    [ "$st" = "$3" ] || bad "$1: status $st, want $3: $body"
    echo "$body" | grep -qE -- "$4" || bad "$1: body lacks /$4/: $body"
    if [ -n "${5:-}" ] && echo "$body" | grep -qF -- "$5"; then bad "$1: body shows '$5': $body"; fi
}
models() { curl -s "http://127.0.0.1:$port/v1/models" -H "Authorization: Bearer ${1:-x}" |
           node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).data.map(m=>m.id).sort().join(" ")))'; }
wait_models() { # wait_models WANT
    local got=""
    for _ in $(seq 1 100); do got=$(models); [ "$got" = "$1" ] && return 0; sleep 0.1; done
    bad "models: got '$got', want '$1'"
}
load() { post "$1" /v1/load_lora_adapter "{\"lora_name\": \"$2\", \"lora_path\": \"$3\"}"; }

# ---- open mode, no --admin-key: the admin routes are off --------------------------
serve_start "$tmp/open.log" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters" \
    --echo-engine 0
say "open mode without --admin-key"
expect "load in open mode" "$(load x rt "$tmp/roots/r1/good")" 403 "off in open mode.*--admin-key"
expect "unload in open mode" "$(post x /v1/unload_lora_adapter '{"lora_name": "alpha"}')" 403 "off in open mode"

# ---- finding 2: the watcher's symlink rule ----------------------------------------
say "watched folder: symlinked subfolders"
wait_models "alpha inner tiny"
grep -q "skipped adapter=escape .*outside the adapters folder" "$log" || bad "no 'skipped adapter=escape' line"
grep -q "skipped adapter=filelink .*a file resolves outside" "$log" || bad "no 'skipped adapter=filelink' line"
grep -q "$tmp/outside" <(models) && bad "an outside folder is listed"

# ---- finding 3: the last good version stays served ---------------------------------
say "truncated weights written over alpha in place"
chat() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/chat/completions" \
             -H 'Content-Type: application/json' \
             --data-binary "{\"model\": \"$1\", \"max_tokens\": 2, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}"; }
[ "$(chat alpha)" = 200 ] || bad "alpha does not answer before the overwrite"
size=$(stat -c %s "$tmp/adapters/alpha/adapter_model.safetensors")
# One change, in place (same inode): `cat half > file` would first empty the
# file and then fill it, two versions a rescan under load can see apart.
truncate -s $((size / 2)) "$tmp/adapters/alpha/adapter_model.safetensors"
for _ in $(seq 1 100); do grep -q "kept previous version adapter=alpha " "$log" && break; sleep 0.1; done
grep -q "warn registry: kept previous version adapter=alpha " "$log" || bad "no 'kept previous version adapter=alpha' warning"
grep -q "removed adapter=alpha" "$log" && bad "alpha was unlisted by a bad overwrite"
[ "$(models)" = "alpha inner tiny" ] || bad "models after the overwrite: $(models)"
[ "$(chat alpha)" = 200 ] || bad "alpha does not answer after the overwrite"
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
echo "$metrics" | grep -qx 'tessera_adapter_load_failures_total{adapter="alpha"} 1' ||
    bad "metric: $(echo "$metrics" | grep adapter_load_failures)"
# It stays counted once while unchanged (rescans every 2 s).
sleep 2.5
curl -s "http://127.0.0.1:$port/metrics" | grep -qx 'tessera_adapter_load_failures_total{adapter="alpha"} 1' ||
    bad "the failure is counted again at a rescan"
rm -rf "$tmp/adapters/alpha"
wait_models "tiny"
grep -q "info registry: removed adapter=alpha" "$log" || bad "no 'removed adapter=alpha' once its folder went"
serve_stop

# ---- finding 1: open mode with --admin-key, --lora-roots --------------------------
mkadapter "$tmp/adapters/alpha"
serve_start "$tmp/key.log" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters" \
    --lora-roots "$tmp/roots/r1,$tmp/roots/none" --admin-key sk-root-admin --echo-engine 0
say "open mode with --admin-key"
K=sk-root-admin
expect "wrong key" "$(load sk-wrong rt "$tmp/roots/r1/good")" 403 "needs the --admin-key key"
expect "no key" "$(post '' /v1/load_lora_adapter '{"lora_name": "rt", "lora_path": "/tmp"}')" 403 "admin-key"
expect "absolute path outside" "$(load $K rt /etc)" 403 "'/etc' is not an adapter folder inside the allowed roots" \
    "adapter_config.json"
expect "missing path outside" "$(load $K rt /nonexistent/x)" 403 "'/nonexistent/x' is not an adapter folder inside"
expect "../ out of a root" "$(load $K rt "$tmp/roots/r1/../../outside/evil")" 403 "not an adapter folder inside"
expect "symlink out of a root" "$(load $K rt "$tmp/roots/r1/link-out")" 403 "not an adapter folder inside"
expect "weights symlinked out" "$(load $K rt "$tmp/roots/r1/leak")" 403 "not an adapter folder inside" "3475222254926655346"
expect "not safetensors" "$(load $K rt "$tmp/roots/r1/junk")" 400 "not a safetensors file" "3475222254926655346"
expect "name .." "$(load $K .. "$tmp/roots/r1/good")" 400 "'lora_name' must be 1 to 128 characters"
expect "name with a newline" "$(load $K 'a\nb' "$tmp/roots/r1/good")" 400 "'lora_name' must be"
expect "name too long" "$(load $K "$(printf 'a%.0s' $(seq 1 129))" "$tmp/roots/r1/good")" 400 "'lora_name' must be"
expect "load in a root" "$(load $K rt-good "$tmp/roots/r1/good")" 200 "added successfully"
expect "load in --adapters" "$(load $K rt-inner "$tmp/adapters/inner")" 200 "added successfully"
[ "$(models)" = "alpha inner rt-good rt-inner tiny" ] || bad "models after the loads: $(models)"
expect "unload" "$(post $K /v1/unload_lora_adapter '{"lora_name": "rt-good"}')" 200 "removed successfully"
grep -q "$tmp/outside" "$log" && bad "the log shows a path outside the roots"
serve_stop

t_done
