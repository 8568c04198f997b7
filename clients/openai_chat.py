"""tessera with the official OpenAI Python SDK (pip install openai).

    python3 clients/openai_chat.py

Settings from the environment; the defaults match the README's main
command (`make demo`: build/serve on port 8000, adapter "support-bot",
open mode, so any key is accepted):
  TESSERA_BASE_URL  http://127.0.0.1:8000/v1  (the /v1 is part of it)
  TESSERA_API_KEY   none                      (with --tenants: your key; it picks your tenant)
  TESSERA_MODEL     support-bot               (an adapter name = its folder name, or the base model)
  TESSERA_PROMPT    Where is my order?
"""
import os
import sys

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("TESSERA_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("TESSERA_API_KEY", "none"),  # the SDK insists on one; open mode ignores it
    max_retries=0,
)
model = os.environ.get("TESSERA_MODEL", "support-bot")
messages = [{"role": "user", "content": os.environ.get("TESSERA_PROMPT", "Where is my order?")}]

# What this key's tenant may use: the base model (if allowed) and its adapters.
print("models:", " ".join(sorted(m.id for m in client.models.list())))

# `model` picks the adapter; temperature 0 is greedy (the same answer every time).
r = client.chat.completions.create(model=model, messages=messages, max_tokens=64, temperature=0)
print(f"== {model}")
print(r.choices[0].message.content)

print(f"== {model}, streamed")
stream = client.chat.completions.create(model=model, messages=messages, max_tokens=64, temperature=0, stream=True)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        sys.stdout.write(chunk.choices[0].delta.content)
        sys.stdout.flush()
print()
