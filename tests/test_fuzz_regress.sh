#!/usr/bin/env bash
# Replays the fuzzing regression inputs: every tests/fuzz/regress/NAME/ file
# (an input that once crashed a target or leaked, kept after the fix) and
# every seed of tests/fuzz/corpus/NAME/, through the libFuzzer target
# tests/fuzz/fuzz_NAME.c built with clang into build/fuzz (FUZZ_BUILD). Each
# input runs once; a crash, leak or sanitizer report fails the test. The
# fuzzing itself is `make fuzz` (tests/fuzz/run.sh).
#
# Needs clang (.ci/deps.sh installs it, so CI always runs this); without it
# the test says SKIP and passes.
set -uo pipefail
cd "$(dirname "$0")/.."
fb=${FUZZ_BUILD:-build/fuzz}
if ! command -v "${FUZZ_CC:-clang}" >/dev/null; then
    echo "SKIP test_fuzz_regress: ${FUZZ_CC:-clang} is not installed (.ci/deps.sh installs it)"
    exit 0
fi
mkdir -p "$fb"
if ! make --no-print-directory -j"$(nproc 2>/dev/null || echo 2)" FUZZ=1 CC="${FUZZ_CC:-clang}" BUILD="$fb" \
    fuzz-build >"$fb/build.log" 2>&1; then
    echo "FAIL test_fuzz_regress: building the fuzz targets failed"; tail -n 30 "$fb/build.log"; exit 1
fi
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fail=0; n=0
for dir in tests/fuzz/regress/* tests/fuzz/corpus/*; do
    [ -d "$dir" ] || continue
    name=${dir##*/}
    bin="$fb/fuzz/fuzz_$name"
    if [ ! -x "$bin" ]; then
        echo "FAIL $dir: no target tests/fuzz/fuzz_$name.c"; fail=1; continue
    fi
    files=("$dir"/*)
    [ -e "${files[0]}" ] || continue
    if "$bin" "${files[@]}" >"$fb/replay-$name.log" 2>&1; then
        n=$((n + ${#files[@]}))
    else
        echo "FAIL $dir: an input crashes fuzz_$name"
        grep -E 'Running: |ERROR|SUMMARY|runtime error' "$fb/replay-$name.log" | tail -n 6 | sed 's/^/    /'
        fail=1
    fi
done
[ "$fail" -eq 0 ] || exit 1
echo "test_fuzz_regress: ok ($n inputs replayed)"
