#!/usr/bin/env bash
# Hot swap under load: a server over eight adapters (ad-0..ad-7) answers 32
# concurrent streaming greedy requests (tests/http/hotswap.mjs) while this
# script adds an adapter folder (ad-new), publishes a new version of ad-3
# (mkadapter --out on the existing path: RENAME_EXCHANGE) and removes ad-5
# (renamed to a dot-folder, which the registry ignores, then deleted).
# Also: an adapter of rank 16 above --max-lora-rank 8 is a 400 (BIG).
# Expected texts per adapter version come from `serve --generate`. Ends
# with SIGTERM: exit 0 and a clean ASan log.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init hotswap

if [ ! -f node_modules/openai/package.json ]; then
    echo "test_hotswap: the openai npm package is missing: run make deps (npm ci)"; exit 1
fi

N=8
replaced=ad-3 removed=ad-5 added=ad-new
"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny" --seed 7 >/dev/null
mkdir -p "$tmp/adapters" "$tmp/stage" "$tmp/exp" "$tmp/sync"
mkadapter() { "$build/tools/mkadapter" --model "$tmp/tiny" --out "$1" --rank 8 --alpha 16 \
                  --targets q_proj,v_proj --seed "$2" >/dev/null; }
gen() { # gen OUT ADAPTER_DIR: the CLI's greedy text without its final newline
    "$build/serve" --generate --model "$tmp/tiny" --prompt 'hello world' --max-tokens "$N" \
        --adapter "$2" >"$1.nl"
    head -c -1 "$1.nl" >"$1"; rm -f "$1.nl"
}
for i in 0 1 2 3 4 5 6 7; do
    mkadapter "$tmp/adapters/ad-$i" $((40 + i))
    gen "$tmp/exp/ad-$i.txt" "$tmp/adapters/ad-$i"
done
# Rank 16, above the server's --max-lora-rank 8: listed, but requests get 400.
"$build/tools/mkadapter" --model "$tmp/tiny" --out "$tmp/adapters/big" --rank 16 --alpha 32 \
    --targets q_proj,v_proj --seed 50 >/dev/null
# The new version of ad-3 and the added adapter, staged to compute their texts.
mkadapter "$tmp/stage/$replaced.v2" 60
gen "$tmp/exp/$replaced.v2.txt" "$tmp/stage/$replaced.v2"
mkadapter "$tmp/stage/$added" 61
gen "$tmp/exp/$added.txt" "$tmp/stage/$added"
cmp -s "$tmp/exp/$replaced.txt" "$tmp/exp/$replaced.v2.txt" && bad "fixture: the two versions of $replaced generate the same text"

# --max-loras 2 and --max-num-seqs 2 for 8 adapters: slots are evicted and
# refilled all through the load, so requests resolved before the changes
# load their version after the folder was replaced or removed (from the
# files the registry entry keeps open), not whatever is on disk by then.
# (With a slot per adapter the old version would never be reloaded, and
# the test could not tell.)
serve_start "$tmp/serve.log" --model "$tmp/tiny" --served-model-name tiny --adapters "$tmp/adapters" \
    --max-loras 2 --max-lora-rank 8 --max-num-seqs 2 --max-num-batched-tokens 64 --max-model-len 64

PORT=$port EXP="$tmp/exp" LOG="$log" SYNC="$tmp/sync" N=$N REPLACED=$replaced REMOVED=$removed ADDED=$added BIG=big \
    node tests/http/hotswap.mjs &
node_pid=$!
t_bg "$node_pid"
# Wait until all 32 requests are in the engine, then change the folder under the load.
for _ in $(seq 1 600); do
    [ -e "$tmp/sync/go" ] && break
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.05
done
if [ -e "$tmp/sync/go" ]; then
    mkadapter "$tmp/adapters/$added" 61                         # add
    mkadapter "$tmp/adapters/$replaced" 60                      # replace in place (RENAME_EXCHANGE)
    mv "$tmp/adapters/$removed" "$tmp/adapters/.$removed-gone"  # remove: unlisted at once ...
    rm -rf "$tmp/adapters/.$removed-gone"                       # ... then deleted
    : >"$tmp/sync/done"
else
    bad "tests/http/hotswap.mjs never started streaming"
fi
rc=0; wait "$node_pid" || rc=$?
node_pid=""
[ "$rc" -eq 0 ] || bad "tests/http/hotswap.mjs"

grep -q "info registry: added adapter=$added " "$log" || bad "no 'added adapter=$added' in the log"
grep -q "info registry: replaced adapter=$replaced " "$log" || bad "no 'replaced adapter=$replaced' in the log"
grep -q "info registry: removed adapter=$removed" "$log" || bad "no 'removed adapter=$removed' in the log"

serve_stop
t_done
