"""Adds Python jinja2 renderings to the cases tests/chat/oracle.js wrote.

    python3 tests/chat/oracle.py cases.json     (rewrites the file in place)

Hugging Face transformers renders chat templates with jinja2; this sets the
environment up the way its apply_chat_template does (sandboxed, trim_blocks,
lstrip_blocks, loop controls, a json.dumps-based tojson, raise_exception) and
passes the same variables: messages, add_generation_prompt, the config's
special tokens and extra keyword arguments (enable_thinking). Python is the
reference where the JS engines differ (str.strip semantics).

Exits 77 when jinja2 is not installed, so the caller can report a skip.
"""
import json
import sys

try:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("oracle.py: jinja2 not installed; Python reference skipped", file=sys.stderr)
    sys.exit(77)

SPECIAL = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # What transformers installs: unlike jinja2's own filter, no HTML escaping.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def special_tokens(cfg):
    out = {}
    for k in SPECIAL:
        v = cfg.get(k)
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            out[k] = v
    return out


def main():
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    env = environment()
    templates = {}
    for case in doc["cases"]:
        if case["config"] not in templates:
            with open(case["config"], encoding="utf-8") as f:
                cfg = json.load(f)
            templates[case["config"]] = (env.from_string(cfg["chat_template"]), special_tokens(cfg))
        tpl, specials = templates[case["config"]]
        kwargs = {} if case["enable_thinking"] is None else {"enable_thinking": case["enable_thinking"]}
        if "tools" in case:
            kwargs["tools"] = case["tools"]
        case["expected"]["py"] = tpl.render(messages=case["messages"],
                                            add_generation_prompt=case["add_generation_prompt"],
                                            **specials, **kwargs)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
