#!/usr/bin/env bash
# Runs every CPU test against one build folder (default build/san):
# each compiled tests/test_* program, then each tests/test_*.sh script.
# Scripts get TESSERA_BUILD; all run from the repository root.
set -uo pipefail
cd "$(dirname "$0")/.."
export TESSERA_BUILD=${1:-build/san}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$TESSERA_BUILD/testout"
pass=0; fail=0; failed=()
for t in "$TESSERA_BUILD"/tests/test_* tests/test_*.sh; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    log="$TESSERA_BUILD/testout/$name.log"
    start=$(date +%s)
    if "$t" >"$log" 2>&1; then
        pass=$((pass + 1)); echo "PASS $name ($(( $(date +%s) - start ))s)"
    else
        fail=$((fail + 1)); failed+=("$name"); echo "FAIL $name ($(( $(date +%s) - start ))s)"
        tail -n 40 "$log" | sed 's/^/    /'
    fi
done
echo "tests: $pass passed, $fail failed${failed:+: ${failed[*]}}"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
