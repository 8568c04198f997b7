"""Tool calling against tessera with the official OpenAI Python SDK
(pip install openai): the model asks for a tool, we run it, send the result
back, and the model answers from it.

    python3 clients/openai_tools.py

Environment: TESSERA_BASE_URL (http://127.0.0.1:8000/v1), TESSERA_API_KEY
(none; with --tenants your key), TESSERA_MODEL (tools-bot: an adapter trained
on tests/fixtures/tools_zh_en, see README.md "Tool calling"), TESSERA_PROMPT
(Where is my order 10234?).
"""
import json
import os
import sys

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("TESSERA_BASE_URL", "http://127.0.0.1:8000/v1"),
                api_key=os.environ.get("TESSERA_API_KEY", "none"), max_retries=0)
model = os.environ.get("TESSERA_MODEL", "tools-bot")

# The tools, as OpenAI's function calling declares them (JSON schema).
tools = [
    {"type": "function", "function": {
        "name": "get_order_status", "description": "Get an order's status",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "pattern": "^[0-9]{5}$"}},
                       "required": ["order_id"]}}},
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get a city's weather",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 20},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"]}}},
]


def run_tool(name, args):
    """Our side of the tools: what the application would look up."""
    if name == "get_order_status":
        return {"order_id": args["order_id"], "status": "delivered"}
    if name == "get_weather":
        return {"city": args["city"], "temperature": 20, "unit": args["unit"], "condition": "rainy"}
    return {"error": f"no tool {name}"}


def as_json(o):
    # Compact, as JavaScript's JSON.stringify writes it: the format the
    # tools-bot adapter's training data uses for tool results.
    return json.dumps(o, ensure_ascii=False, separators=(",", ":"))


messages = [
    {"role": "system", "content": "You are the assistant of Example Shop."},
    {"role": "user", "content": os.environ.get("TESSERA_PROMPT", "Where is my order 10234?")},
]


def loop():
    """While the model calls tools, run them and send each result back as a
    `tool` message carrying the call's id."""
    for _ in range(4):
        r = client.chat.completions.create(model=model, messages=messages, tools=tools, temperature=0,
                                           max_tokens=128)
        msg = r.choices[0].message
        if not msg.tool_calls:
            print(f"answer: {msg.content}")
            return
        messages.append(msg.model_dump(exclude_none=True))  # the assistant's turn, calls included
        for call in msg.tool_calls:
            args = json.loads(call.function.arguments)  # a JSON string, as OpenAI sends it
            result = run_tool(call.function.name, args)
            print(f"call: {call.function.name}({call.function.arguments}) -> {as_json(result)}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": as_json(result)})
    print("answer: (still calling tools after 4 rounds)")


def streamed():
    """The first turn again, streamed: calls arrive as deltas by index, the
    first with id and name, then argument fragments to append."""
    stream = client.chat.completions.create(model=model, messages=messages[:2], tools=tools, temperature=0,
                                            max_tokens=128, stream=True)
    calls, text = {}, ""
    for chunk in stream:
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        text += d.content or ""
        for t in d.tool_calls or []:
            c = calls.setdefault(t.index, {"id": t.id, "name": t.function.name, "arguments": ""})
            c["arguments"] += t.function.arguments or ""
    for c in calls.values():
        print(f"streamed call: {c['name']}({c['arguments']})")
    if not calls:
        print(f"streamed answer: {text}")


try:
    loop()
    streamed()
except Exception as e:  # the SDK's typed errors: BadRequestError (400), NotFoundError (404), ...
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
