#!/usr/bin/env bash
# tessera with curl: the models this key may use, a chat answer, the same
# streamed (server-sent events), and a raw-text completion.
#
#   clients/curl.sh
#
# Environment (defaults match the README's main command, `make demo`):
#   TESSERA_BASE_URL  http://127.0.0.1:8000/v1
#   TESSERA_API_KEY   none         (with --tenants: your key; it picks your tenant)
#   TESSERA_MODEL     support-bot  (an adapter name = its folder name, or the base model)
#   TESSERA_PROMPT    Where is my order?
set -euo pipefail
base=${TESSERA_BASE_URL:-http://127.0.0.1:8000/v1}
key=${TESSERA_API_KEY:-none}
model=${TESSERA_MODEL:-support-bot}
prompt=${TESSERA_PROMPT:-Where is my order?}
prompt=$(printf '%s' "$prompt" | sed 's/\\/\\\\/g; s/"/\\"/g') # a JSON string's body

# post PATH JSON: prints the answer; fails (exit 22) on an HTTP error, showing its JSON.
post() { curl -sS -N --fail-with-body "$base$1" -H "Authorization: Bearer $key" \
              -H 'Content-Type: application/json' -d "$2"; echo; }

echo "== GET /models (what this key's tenant may use)"
curl -sS --fail-with-body "$base/models" -H "Authorization: Bearer $key"; echo

echo "== POST /chat/completions, model=$model"
post /chat/completions "{\"model\": \"$model\", \"messages\": [{\"role\": \"user\", \"content\": \"$prompt\"}],
                        \"max_tokens\": 64, \"temperature\": 0}"

echo "== POST /chat/completions, streamed (one 'data:' event per token, then [DONE])"
post /chat/completions "{\"model\": \"$model\", \"messages\": [{\"role\": \"user\", \"content\": \"$prompt\"}],
                        \"max_tokens\": 64, \"temperature\": 0, \"stream\": true,
                        \"stream_options\": {\"include_usage\": true}}"

echo "== POST /completions (no chat template: the prompt is continued as it is)"
post /completions "{\"model\": \"$model\", \"prompt\": \"$prompt\", \"max_tokens\": 16, \"temperature\": 0}"
