#!/usr/bin/env bash
# A connection flood, CI-sized: serve with the echo engine under a
# descriptor limit (ulimit -Sn) below the flood, with the default caps
# (derived from that limit); tests/http/flood.mjs opens more idle
# half-header connections than the server has descriptors (from
# 127.0.0.2..9) while chat streams run and /health is probed: streams
# finish, /health answers within 1 s, and RSS comes back within 10% once
# the flood ends. FLOOD=N STREAMS=M SERVE_FDS=L ECHO_MS=T (per token) ROUNDS=R to
# size it.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
t_init http_flood

flood=${FLOOD:-3000}
streams=${STREAMS:-20}
fds=${SERVE_FDS:-2000}
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$hard" -ge $((flood + 500)) ] || flood=$((hard - 500))
[ "$fds" -lt "$flood" ] || fds=$((flood * 2 / 3))

"$build/tools/mkmodel" --arch qwen3 --out "$tmp/tiny-qwen3" --seed 7 >/dev/null
# ASan's quarantine keeps freed memory on purpose; RSS is measured without it.
ulimit -Sn "$fds"
ASAN_OPTIONS=${ASAN_OPTIONS:-}:quarantine_size_mb=0:allocator_release_to_os_interval_ms=100 \
    serve_start "$tmp/flood.log" --model "$tmp/tiny-qwen3" --served-model-name tiny-qwen3 --echo-engine "${ECHO_MS:-5}"
ulimit -Sn "$hard"
cap=$((fds - 256))
SERVE_PID=$pid PORT=$port FLOOD=$flood STREAMS=$streams ROUNDS=${ROUNDS:-1} node tests/http/flood.mjs || bad "tests/http/flood.mjs"
grep -q "info http: limits max_connections=$cap" "$log" || bad "no limits line in the log"
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
evicted=$(sed -n 's/^tessera_http_connections_evicted_total \([0-9]*\)$/\1/p' <<<"$metrics")
[ "${evicted:-0}" -gt 0 ] || bad "tessera_http_connections_evicted_total is '${evicted}' after a flood past the cap"
grep -q "^tessera_http_connections_max $cap$" <<<"$metrics" || bad "tessera_http_connections_max is not $cap"
serve_stop
t_done
