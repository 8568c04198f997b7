# Shared by the serving benches (bench/serve.sh, bench/structured.sh):
# a temp folder removed on exit with the server stopped, the bench model,
# and build/serve started on a free port. Source it after `cd` to the
# repository root, with BUILD set.
#
#   bench_init NAME          tmp folder, cleanup trap; NAME prefixes messages
#   bench_model              random qwen3 (hidden 256, 4 layers, intermediate
#                            704, the real 151k Qwen3 tokenizer) in $tmp/model
#   bench_serve ARGS...      starts $BUILD/serve ARGS --port 0, waits for
#                            /health (30 s); sets pid and port

bench_init() {
    bench_name=$1
    tmp=$(mktemp -d "/tmp/tessera_${bench_name}_bench.XXXXXX")
    pid=
    trap bench_cleanup EXIT
}

bench_cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}

bench_model() {
    "$BUILD/tools/mkmodel" --arch qwen3 --out "$tmp/model" --hidden 256 --layers 4 \
        --heads 4 --kv-heads 2 --intermediate 704 >/dev/null
}

bench_serve() {
    "$BUILD/serve" "$@" --port 0 >"$tmp/serve.log" 2>&1 &
    pid=$!
    port=
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || { echo "bench/$bench_name.sh: serve exited" >&2; cat "$tmp/serve.log" >&2; exit 1; }
        port=$(sed -n 's/.*listening .*port=\([0-9][0-9]*\).*/\1/p' "$tmp/serve.log" | head -n1)
        if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then return 0; fi
        port=
        sleep 0.1
    done
    echo "bench/$bench_name.sh: no /health within 30 s" >&2
    cat "$tmp/serve.log" >&2
    exit 1
}
