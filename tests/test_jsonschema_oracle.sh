#!/usr/bin/env bash
# The verdicts of tests/jsonschema/cases.json (the hand-written schema cases
# test_jsonschema runs through the compiler and the token engine) confirmed
# by a JSON Schema validator we did not write (@cfworker/json-schema).
# Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules/@cfworker/json-schema ] || { echo "test_jsonschema_oracle: node_modules/@cfworker/json-schema missing (npm ci)"; exit 1; }
node tests/jsonschema/oracle.mjs
