# tests/lib.sh: what the test scripts that run build/serve share. Source it
# from a script that has `set -euo pipefail`, then call t_init first:
#
#   t_init NAME         $build (TESSERA_BUILD, default build/san), $tmp (a
#                       fresh folder, removed on exit unless TESSERA_KEEP_TMP
#                       is set), fail=0, and an EXIT trap that kills $pid and
#                       every process given to t_bg
#   t_bg PID            one more background process to kill on exit
#   bad MESSAGE         prints FAIL MESSAGE; the script fails at t_done
#   serve_start LOG ARGS...
#                       starts "$build/serve" --port 0 ARGS in the background
#                       (output to LOG), sets $pid, $port and $log; exits the
#                       script with the log if it is not listening in 90 s
#   serve_stop          SIGTERM: the server must exit 0 with a clean
#                       sanitizer log and its 'stopped' line
#   sanitizer_check LOG bad if LOG holds an ASan/UBSan report
#   t_done              exit 1 (with the server log's tail) if anything was
#                       bad, else prints "NAME: ok"

t_init() {
    t_name=$1
    build=${TESSERA_BUILD:-build/san}
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/tessera-$t_name.XXXXXX")
    fail=0
    pid=""
    log=""
    port=""
    t_pids=()
    trap t_cleanup EXIT
}

t_bg() { t_pids+=("$1"); }

t_cleanup() {
    local p
    for p in "$pid" "${t_pids[@]}"; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    if [ -n "${TESSERA_KEEP_TMP:-}" ]; then echo "$t_name: kept $tmp"; else rm -rf "$tmp"; fi
}

bad() { echo "FAIL $*"; fail=1; }

serve_start() {
    log=$1; shift
    "$build/serve" --port 0 "$@" >"$log" 2>&1 &
    pid=$!
    port=""
    local _
    for _ in $(seq 1 900); do
        port=$(sed -n 's/.*info server: listening addr=.* port=\([0-9]*\).*/\1/p' "$log")
        [ -n "$port" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "FAIL $t_name: the server did not start ($log):"; cat "$log"; exit 1
}

sanitizer_check() {
    if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$1"; then
        bad "sanitizer report in $(basename "$1"):"; grep -A30 -E "ERROR:|runtime error:" "$1" | head -60
    fi
}

serve_stop() {
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    pid=""
    [ "$rc" -eq 0 ] || bad "$(basename "$log" .log): exit $rc on SIGTERM, want 0"
    sanitizer_check "$log"
    grep -q "info server: stopped" "$log" || bad "no 'stopped' line in $(basename "$log")"
}

t_done() {
    if [ "$fail" -ne 0 ]; then
        [ -n "$log" ] && [ -f "$log" ] && { echo "--- $(basename "$log") (tail)"; tail -n 40 "$log"; }
        exit 1
    fi
    echo "$t_name: ok"
}
