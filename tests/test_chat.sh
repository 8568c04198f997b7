#!/usr/bin/env bash
# Chat templates: core/chat against the reference renderers.
#
# tests/chat/oracle.js makes ~600 varied conversations (deterministic) for
# every template under test (the real tokenizer_config.json files of the npm
# packages, and tests/chat/configs/) and renders them with @huggingface/jinja
# and @lenml/tokenizers' apply_chat_template; tests/chat/oracle.py adds
# Python jinja2 (as transformers sets it up) where jinja2 is installed.
# chatcheck renders each case with core/chat and compares byte for byte,
# then runs its unit checks (errors, detection, config parsing).
#
# Run from the repository root; TESSERA_BUILD is the build folder (build/san).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${TESSERA_BUILD:-build/san}
tool=$build/tools/chatcheck
out=$build/testout/chat
[ -x "$tool" ] || { echo "test_chat: $tool not built (make SAN=1 BUILD=$build $tool)"; exit 1; }
[ -d node_modules/@huggingface/jinja ] || { echo "test_chat: node_modules missing (run: make deps, or npm ci)"; exit 1; }
mkdir -p "$out"

node tests/chat/oracle.js >"$out/cases.json"
rc=0
python3 tests/chat/oracle.py "$out/cases.json" || rc=$?
if [ "$rc" -eq 77 ]; then
    echo "test_chat: python3 jinja2 missing: cases using whitespace where JS and Python differ are checked by no oracle"
elif [ "$rc" -ne 0 ]; then
    echo "test_chat: oracle.py failed ($rc)"; exit 1
fi

fail=0
"$tool" unit || fail=1
"$tool" compare "$out/cases.json" || fail=1
exit $fail
