#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD/fuzz (make fuzz builds them):
# first each file of tests/fuzz/regress/NAME (inputs that once crashed: they
# must pass now), then FUZZ_SECONDS of fuzzing from tests/fuzz/corpus/NAME
# (copied into a scratch folder, so new inputs do not touch the tree).
# A crash, leak, timeout or sanitizer report fails it; the input that did it
# is left in BUILD/fuzz/crashes/NAME/ (copy it into tests/fuzz/regress/NAME/
# once fixed). Prints each target's executions/s and coverage (cov:, edges).
#
#   tests/fuzz/run.sh [BUILD] [SECONDS]   (defaults build/fuzz, 30)
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/fuzz}
secs=${2:-30}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fail=0; failed=()
for bin in "$build"/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=${bin##*/fuzz_}
    log="$build/fuzz/log/$name.log"
    scratch="$build/fuzz/work/$name"
    crashes="$build/fuzz/crashes/$name"
    mkdir -p "${log%/*}" "$crashes"
    rm -rf "$scratch"; mkdir -p "$scratch"
    cp tests/fuzz/corpus/"$name"/* "$scratch"/ 2>/dev/null
    regress=(tests/fuzz/regress/"$name"/*)
    if [ -e "${regress[0]}" ]; then
        if ! "$bin" "${regress[@]}" >"$log.regress" 2>&1; then
            fail=1; failed+=("$name(regress)")
            echo "FAIL $name: a regression input crashes again"; tail -n 30 "$log.regress" | sed 's/^/    /'
            continue
        fi
    fi
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a leak
    # or runaway allocation; -max_len: small inputs keep it fast.
    if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$scratch" >"$log" 2>&1; then
        last=$(grep -E '^#[0-9]+.*cov:' "$log" | tail -n 1)
        execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
        rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
        cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<< "$last")
        ft=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<< "$last")
        printf 'PASS %-18s %8s execs %7s exec/s  cov: %5s edges  ft: %s\n' "$name" "$execs" "$rate" "$cov" "$ft"
    else
        fail=1; failed+=("$name")
        echo "FAIL $name: crash input in $crashes/"; grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -n 5 | sed 's/^/    /'
        tail -n 30 "$log" | sed 's/^/    /'
    fi
done
[ "$fail" -eq 0 ] || { echo "fuzz: failed: ${failed[*]}"; exit 1; }
echo "fuzz: ok"
