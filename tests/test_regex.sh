#!/usr/bin/env bash
# regex: core/regex against Node's RegExp (the u flag, ECMA-262).
#
# tests/regex_oracle.mjs prints ~200 hand-written patterns (every syntax
# feature: classes and negated classes with non-ASCII, \d \w \s, quantifiers,
# counted repetition, alternation, groups, anchors, escapes, multi-byte
# UTF-8), each in search and anchored mode, with strings drawn from the
# pattern's own characters and a tricky set, and Node's verdict on each.
# rxcheck compiles each pattern (RX_JSON_STRING, plus RX_SEARCH in search
# mode), matches each string's canonical JSON encoding and must agree on
# every case.
#
# Run from the repository root; TESSERA_BUILD is the build folder (build/san).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${TESSERA_BUILD:-build/san}
tool=$build/tools/rxcheck
out=$build/testout/regex
[ -x "$tool" ] || { echo "test_regex: $tool not built (make SAN=1 BUILD=$build $tool)"; exit 1; }
command -v node >/dev/null || { echo "test_regex: node not found"; exit 1; }
mkdir -p "$out"
node tests/regex_oracle.mjs 40 >"$out/cases.txt"
n=$(grep -c '^S' "$out/cases.txt")
[ "$n" -ge 10000 ] || { echo "test_regex: only $n cases from the oracle"; exit 1; }
"$tool" cases "$out/cases.txt"
echo "test_regex: ok ($n cases)"
