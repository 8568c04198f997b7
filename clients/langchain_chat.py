"""tessera with LangChain Python (pip install langchain-openai).

    python3 clients/langchain_chat.py

Environment as in clients/openai_chat.py: TESSERA_BASE_URL
(http://127.0.0.1:8000/v1), TESSERA_API_KEY (none; with --tenants your key,
which picks your tenant), TESSERA_MODEL (support-bot: the adapter),
TESSERA_PROMPT (Where is my order?).
"""
import os
import sys

from langchain_openai import ChatOpenAI

model = os.environ.get("TESSERA_MODEL", "support-bot")
llm = ChatOpenAI(
    model=model,  # the adapter (or the base model) this chat model talks to
    temperature=0,
    max_tokens=64,
    max_retries=0,
    api_key=os.environ.get("TESSERA_API_KEY", "none"),
    base_url=os.environ.get("TESSERA_BASE_URL", "http://127.0.0.1:8000/v1"),
)
question = [("human", os.environ.get("TESSERA_PROMPT", "Where is my order?"))]

r = llm.invoke(question)
print(f"== {model}")
print(r.content)

print(f"== {model}, streamed")
for chunk in llm.stream(question):
    sys.stdout.write(chunk.content)
    sys.stdout.flush()
print()
