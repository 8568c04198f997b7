// Tool calling through the real engine on tiny random-weight models
// (tests/tools/mkmodel), judged by the official `openai` SDK and ajv. The
// weights are random, so every request samples at temperature 1 over
// several seeds, with tool schemas whose values end (enums, bounded
// integers, short strings, nested objects). What it checks, per family
// (FAMILY=qwen3: the Qwen3 template, Hermes <tool_call> blocks;
// FAMILY=qwen2.5: the same calls, no reasoning; FAMILY=llama3.1: Llama
// 3.1's JSON calls):
//   - tool_choice "required" and a named tool: only calls, each naming a
//     declared tool (the named one) with arguments that parse and match
//     its parameters (ajv), ids call_..., finish_reason "tool_calls",
//     content null;
//   - parallel_tool_calls false caps the calls at one;
//   - "none" renders the tools yet never returns tool_calls, even with the call tag pushed by
//     logit_bias; "auto" returns well-formed calls when it calls;
//   - streaming with a seed = non-streaming with that seed (content,
//     reasoning, names, arguments, finish); each call's first delta has
//     index, id, type, name and arguments ""; each argument fragment ends
//     outside any JSON escape;
//   - qwen3: a think block goes to reasoning_content (the logprobs show
//     the raw tokens), never into content;
//   - a history of calls and tool results renders (the request succeeds
//     and its prompt is longer);
//   - 400s: a strict tool whose schema the engine refuses names
//     tools[i].function.parameters; the non-strict one falls back to any
//     object.
// Env (tests/test_serve_tools.sh): PORT; FAMILY; TOKENIZER, the model
// folder (tokenizer.json).
import fs from 'node:fs';
import Ajv from 'ajv';
import OpenAI from 'openai';
import { check, eq, finish, step, client, rejects } from './http/lib.mjs';

const FAMILY = process.env.FAMILY;
const HERMES = FAMILY !== 'llama3.1';
const api = client('sk-none', { timeout: 120000 });
const ajv = new Ajv({ strict: false, allErrors: true });
const vocab = JSON.parse(fs.readFileSync(`${process.env.TOKENIZER}/tokenizer.json`, 'utf8'));
const added = Object.fromEntries(vocab.added_tokens.map((a) => [a.content, a.id]));
const idOf = (s) => vocab.model.vocab[s] ?? added[s];

const fn = (name, parameters, extra = {}) => ({ type: 'function', function: { name, description: `the ${name} tool`,
                                                                              parameters, ...extra } });
const TOOLS = [
    fn('get_weather', { type: 'object', properties: { city: { enum: ['Paris', 'Tokyo', 'Lima'] },
                                                      unit: { enum: ['c', 'f'] } },
                        required: ['city', 'unit'], additionalProperties: false }),
    fn('get_order_status', { type: 'object', properties: { order_id: { type: 'string', maxLength: 6 },
                                                           urgent: { type: 'boolean' } },
                             required: ['order_id'], additionalProperties: false }),
    fn('set_alarm', { type: 'object',
                      properties: { time: { type: 'object', properties: { h: { type: 'integer', minimum: 0, maximum: 23 },
                                                                          m: { type: 'integer', minimum: 0, maximum: 59 } },
                                            required: ['h', 'm'], additionalProperties: false },
                                    label: { type: 'string', maxLength: 5 } },
                      required: ['time'], additionalProperties: false }),
];
const schemaOf = Object.fromEntries(TOOLS.map((t) => [t.function.name, t.function.parameters]));
const MSG = [{ role: 'user', content: 'What is the weather in Paris, and where is order 42?' }];
const NO_THINK = { chat_template_kwargs: { enable_thinking: false } };
const MAX = 400;
const SEEDS = [1, 2, 3, 4, 5, 6];
// After a Hermes call the model may open another or stop; a random one
// opens call after call until max_tokens, so requests push it to stop
// (the parallel-calls check below asks without the push).
const STOP = HERMES ? { [idOf('<|im_end|>')]: 4 } : {};
const base = (extra = {}) => ({ model: 'tiny', messages: MSG, tools: TOOLS, max_tokens: MAX, temperature: 1, ...NO_THINK,
                                ...extra, logit_bias: { ...STOP, ...extra.logit_bias } });

// A call as a client reads it: id, type, a declared name, arguments that
// parse to an object matching the tool's parameters.
function validCall(c, what, names = Object.keys(schemaOf)) {
    check(/^call_[A-Za-z0-9]{24}$/.test(c.id ?? ''), `${what}: id ${c.id}`);
    eq(c.type, 'function', `${what}: type`);
    check(names.includes(c.function.name), `${what}: name ${c.function.name} not in ${names}`);
    let args;
    try {
        args = JSON.parse(c.function.arguments);
    } catch (e) {
        check(false, `${what}: arguments not JSON (${e.message}): ${c.function.arguments}`);
        return;
    }
    const schema = schemaOf[c.function.name];
    if (schema) check(ajv.validate(schema, args), `${what}: ajv: ${ajv.errorsText()} in ${c.function.arguments}`);
}

// A reply of calls only.
function callsOnly(r, what, names) {
    const c = r.choices[0], m = c.message;
    eq(c.finish_reason, 'tool_calls', `${what}: finish_reason`);
    check(Array.isArray(m.tool_calls) && m.tool_calls.length >= 1, `${what}: tool_calls ${JSON.stringify(m.tool_calls)}`);
    eq(m.content, null, `${what}: content`);
    for (const [i, tc] of (m.tool_calls ?? []).entries()) validCall(tc, `${what} call ${i}`, names);
    return m.tool_calls ?? [];
}

// Where a JSON text stands after s, from state st: inside a string, and
// inside an escape (how many escape bytes are still due).
function jsonScan(s, st) {
    for (const ch of s) {
        if (st.esc > 0) {
            if (st.esc === 5 && ch !== 'u') st.esc = 0;
            else st.esc = ch === 'u' ? 4 : st.esc - 1;
        } else if (st.str && ch === '\\') st.esc = 5;
        else if (ch === '"') st.str = !st.str;
    }
    return st;
}

// A streamed reply, joined the way a client joins it, with the delta rules
// checked on the way.
async function streamed(body, what) {
    const s = await api.chat.completions.create({ ...body, stream: true });
    let content = '', reasoning = '', fin = null, sawContent = false;
    const calls = [], states = [], lps = [];
    for await (const ch of s) {
        for (const x of ch.choices) {
            const d = x.delta;
            if (typeof d.content === 'string') content += d.content, sawContent ||= d.content.length > 0;
            if (typeof d.reasoning_content === 'string') reasoning += d.reasoning_content;
            for (const t of d.tool_calls ?? []) {
                if (!calls[t.index]) {
                    check(t.id && t.type === 'function' && t.function?.name && t.function.arguments === '',
                          `${what}: first delta of call ${t.index}: ${JSON.stringify(t)}`);
                    calls[t.index] = { id: t.id, type: 'function', function: { name: t.function?.name, arguments: '' } };
                    states[t.index] = { str: false, esc: 0 };
                    continue;
                }
                check(!t.id && !t.function?.name, `${what}: a later delta of call ${t.index} repeats id/name`);
                const frag = t.function?.arguments ?? '';
                calls[t.index].function.arguments += frag;
                check(!frag.includes('\ufffd'), `${what}: fragment with a broken character ${JSON.stringify(frag)}`);
                check(jsonScan(frag, states[t.index]).esc === 0, `${what}: fragment ends mid-escape ${JSON.stringify(frag)}`);
            }
            for (const t of x.logprobs?.content ?? []) lps.push(t.token);
            if (x.finish_reason) fin = x.finish_reason;
        }
    }
    return { content: sawContent || !calls.length ? content : null, reasoning, calls, fin, lps };
}

// ---- forced calls --------------------------------------------------------------------------

await step('required: only schema-valid calls', async () => {
    for (const seed of SEEDS) callsOnly(await api.chat.completions.create(base({ seed, tool_choice: 'required' })),
                                        `required seed ${seed}`);
});

await step('named: one call of that tool', async () => {
    for (const seed of SEEDS) {
        const calls = callsOnly(await api.chat.completions.create(base({ seed, tool_choice: { type: 'function',
                                                                          function: { name: 'set_alarm' } } })),
                                `named seed ${seed}`, ['set_alarm']);
        eq(calls.length, 1, `named seed ${seed}: one call`);
    }
});

await step('n = 2: each choice its own calls', async () => {
    const r = await api.chat.completions.create(base({ seed: 7, n: 2, tool_choice: 'required' }));
    eq(r.choices.length, 2, 'n=2: choices');
    for (const c of r.choices) callsOnly({ choices: [c] }, `n=2 choice ${c.index}`);
    const ids = r.choices.flatMap((c) => c.message.tool_calls ?? []).map((t) => t.id);
    eq(new Set(ids).size, ids.length, 'n=2: call ids are unique');
});

await step('parallel_tool_calls false: at most one call', async () => {
    let many = 0;
    for (const seed of SEEDS) {
        const calls = callsOnly(await api.chat.completions.create(base({ seed, tool_choice: 'required',
                                                                         parallel_tool_calls: false })),
                                `parallel false seed ${seed}`);
        eq(calls.length, 1, `parallel false seed ${seed}: one call`);
        const all = await api.chat.completions.create({ ...base({ seed, tool_choice: 'required' }), logit_bias: {} });
        many = Math.max(many, all.choices[0].message.tool_calls?.length ?? 0);
    }
    // Llama 3.1 makes one call per reply; Hermes replies may hold several.
    if (HERMES) check(many >= 2, `some required reply made parallel calls (most: ${many})`);
    else eq(many, 1, 'llama3.1: one call per reply');
});

await step('a tool schema with $defs and $ref (as zod and pydantic write them)', async () => {
    // Nested in the call's schema, its "#/$defs/..." refs must still point
    // into it.
    const place = fn('find_place', { type: 'object', properties: { loc: { $ref: '#/$defs/city' },
                                                                    near: { type: 'array', items: { $ref: '#/$defs/city' }, maxItems: 2 } },
                                     required: ['loc'], additionalProperties: false,
                                     $defs: { city: { enum: ['Oslo', 'Rome'] } } }, { strict: true });
    schemaOf.find_place = place.function.parameters;
    for (const seed of SEEDS.slice(0, 3)) {
        const r = await api.chat.completions.create(base({ seed, tools: [TOOLS[0], place],
                                                           tool_choice: { type: 'function', function: { name: 'find_place' } } }));
        eq(callsOnly(r, `$ref seed ${seed}`, ['find_place']).length, 1, `$ref seed ${seed}: one call`);
    }
});

await step('a call cut by max_tokens or a stop string is no error', async () => {
    // The request's own limit, not a fault: 200, finish_reason "length"
    // (or "stop"), and only finished calls listed.
    // (Cut inside the arguments, after the call has begun: the first '}'
    // closes them at the earliest; test_serve_tools.sh finds the log line.)
    for (const [extra, fin] of [[{ max_tokens: 40 }, 'length'], [{ stop: ['}'] }, 'stop']]) {
        for (const seed of SEEDS.slice(0, 2)) {
            const what = `cut ${JSON.stringify(extra)} seed ${seed}`;
            const r = await api.chat.completions.create(base({ seed, tool_choice: 'required', ...extra }));
            eq(r.choices[0].finish_reason, fin, `${what}: finish_reason`);
            (r.choices[0].message.tool_calls ?? []).forEach((tc, i) => validCall(tc, `${what} call ${i}`));
            const st = await streamed(base({ seed, tool_choice: 'required', ...extra }), what);
            eq(st.fin, fin, `${what}: streamed finish_reason`);
        }
    }
});

// ---- none and auto ---------------------------------------------------------------------------

// The token that opens a call: <tool_call>, or Llama's '{'.
const OPEN = HERMES ? idOf('<tool_call>') : idOf('{');

await step('none: never a call, even pushed', async () => {
    check(Number.isInteger(OPEN), 'the tokenizer has the call-opening token');
    // The tools are still in the prompt (as OpenAI and vLLM do: the model
    // knows them, the engine bans the calls).
    const bare = { model: 'tiny', messages: MSG, max_tokens: 1, ...NO_THINK };
    const without = await api.chat.completions.create(bare);
    const withNone = await api.chat.completions.create({ ...bare, tools: TOOLS, tool_choice: 'none' });
    check(withNone.usage.prompt_tokens > without.usage.prompt_tokens + 50,
          `none renders the tools: ${withNone.usage.prompt_tokens} vs ${without.usage.prompt_tokens} prompt tokens`);
    for (const seed of SEEDS.slice(0, 3)) {
        const r = await api.chat.completions.create(base({ seed, tool_choice: 'none', max_tokens: 40,
                                                           logit_bias: { [OPEN]: 100 } }));
        const m = r.choices[0].message;
        check(!m.tool_calls || m.tool_calls.length === 0, `none seed ${seed}: tool_calls ${JSON.stringify(m.tool_calls)}`);
        check(r.choices[0].finish_reason !== 'tool_calls', `none seed ${seed}: finish_reason`);
        if (HERMES) check(!m.content.includes('<tool_call>'), `none seed ${seed}: a call tag in ${JSON.stringify(m.content)}`);
        else check(!m.content.trimStart().startsWith('{'), `none seed ${seed}: content opens a call ${JSON.stringify(m.content)}`);
    }
});

await step('auto: well-formed calls when it calls', async () => {
    let called = 0;
    for (const seed of SEEDS) {
        // The bias makes the model open a call at once; parallel false
        // keeps it to one, and the reply goes on as free text or stops.
        const r = await api.chat.completions.create(base({ seed, tool_choice: 'auto', parallel_tool_calls: false,
                                                           max_tokens: 120, logit_bias: { [OPEN]: 100 } }));
        const c = r.choices[0], calls = c.message.tool_calls ?? [];
        check(calls.length <= 1, `auto seed ${seed}: ${calls.length} calls with parallel false`);
        calls.forEach((tc, i) => validCall(tc, `auto seed ${seed} call ${i}`));
        if (calls.length) called++;
        check(c.finish_reason === (calls.length ? 'tool_calls' : 'stop') || c.finish_reason === 'length',
              `auto seed ${seed}: finish_reason ${c.finish_reason} with ${calls.length} calls`);
        // Unpushed: free text, and calls (rare on random weights) well-formed.
        const f = await api.chat.completions.create(base({ seed, tool_choice: 'auto', max_tokens: 40 }));
        (f.choices[0].message.tool_calls ?? []).forEach((tc, i) => validCall(tc, `auto free seed ${seed} call ${i}`));
    }
    check(called > 0, 'auto: the pushed model called');
});

// ---- streaming -------------------------------------------------------------------------------

await step('stream = non-stream with the same seed', async () => {
    const bodies = [
        base({ seed: 31, tool_choice: 'required', logprobs: true }),
        base({ seed: 32, tool_choice: { type: 'function', function: { name: 'get_order_status' } } }),
        base({ seed: 33, tool_choice: 'auto', parallel_tool_calls: false, max_tokens: 60, logit_bias: { [OPEN]: 100 } }),
        base({ seed: 34, tool_choice: 'none', max_tokens: 30 }),
    ];
    for (const [i, body] of bodies.entries()) {
        const what = `stream ${i}`;
        const r = await api.chat.completions.create(body);
        const m = r.choices[0].message;
        const s = await streamed(body, what);
        eq(s.content, m.content, `${what}: content`);
        eq(s.reasoning, m.reasoning_content ?? '', `${what}: reasoning`);
        eq(s.fin, r.choices[0].finish_reason, `${what}: finish_reason`);
        const strip = (cs) => (cs ?? []).map((c) => [c.function.name, c.function.arguments]);
        eq(strip(s.calls), strip(m.tool_calls), `${what}: calls`);
        s.calls.forEach((tc, k) => validCall(tc, `${what} call ${k}`));
        // Every sampled token's logprob comes once, in order, whatever
        // part of the reply it fed.
        if (body.logprobs) eq(s.lps, r.choices[0].logprobs.content.map((t) => t.token), `${what}: logprob tokens`);
    }
});

// ---- Qwen3 reasoning ----------------------------------------------------------------------------

await step('reasoning goes to reasoning_content', async () => {
    if (FAMILY !== 'qwen3') return;
    const open = idOf('<think>'), close = idOf('</think>');
    // Pushed (not forced) so that some seeds open a block and close it.
    let blocks = 0;
    for (const seed of [41, 42, 43, 44, 45, 46, 47, 48]) {
        const body = { model: 'tiny', messages: MSG, tools: TOOLS, tool_choice: 'required', max_tokens: MAX,
                       temperature: 1, seed, logprobs: true, logit_bias: { [open]: 9, [close]: 9, ...STOP } };
        const r = await api.chat.completions.create(body);
        const c = r.choices[0], m = c.message;
        const toks = c.logprobs.content.map((t) => t.token);
        const end = toks.indexOf('</think>');
        // A block is reasoning when the reply opens with it, as Qwen3's
        // replies do (random weights may write text first: then it is all
        // content, as the parser's one rule says).
        if (toks[0] === '<think>' && end > 0) {
            blocks++;
            check(!(m.content ?? '').includes('<think>') && !(m.content ?? '').includes('</think>'),
                  `reasoning seed ${seed}: a think tag in content ${JSON.stringify(m.content)}`);
            // (less the newlines at the block's ends: the template's, see toolcall.h)
            eq(m.reasoning_content ?? '', toks.slice(1, end).join('').replace(/^\n+|\n+$/g, ''),
               `reasoning seed ${seed}: reasoning_content`);
            callsOnly(r, `reasoning seed ${seed}`);
            const s = await streamed(body, `reasoning stream seed ${seed}`);
            eq(s.reasoning, m.reasoning_content ?? '', `reasoning seed ${seed}: streamed reasoning`);
        }
    }
    check(blocks > 0, 'some seed opened and closed a think block');
});

// ---- history ------------------------------------------------------------------------------------

await step('a history of calls and results renders', async () => {
    const calls = [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris", "unit": "c"}' } }];
    const history = [
        ...MSG,
        { role: 'assistant', content: null, tool_calls: calls },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 21}' },
        { role: 'assistant', content: 'It is 21 C in Paris.' },
        { role: 'user', content: 'And in Tokyo?' },
    ];
    if (HERMES) { // two calls in one turn, two results
        calls.push({ id: 'call_2', type: 'function', function: { name: 'get_order_status', arguments: '{"order_id": "42"}' } });
        history.splice(3, 0, { role: 'tool', tool_call_id: 'call_2', content: 'shipped' });
    }
    const plain = await api.chat.completions.create(base({ seed: 51, max_tokens: 8, tool_choice: 'none' }));
    const r = await api.chat.completions.create(base({ seed: 51, max_tokens: MAX, messages: history, tool_choice: 'required' }));
    check(r.usage.prompt_tokens > plain.usage.prompt_tokens + 20,
          `history: prompt_tokens ${r.usage.prompt_tokens} vs ${plain.usage.prompt_tokens} without it`);
    callsOnly(r, 'after history');
});

// ---- errors ---------------------------------------------------------------------------------------

async function bad(body, param, part, what) {
    const e = await rejects(() => api.chat.completions.create({ ...base({ max_tokens: 8 }), ...body }),
                            OpenAI.BadRequestError, what);
    if (!e) return;
    eq(e.status, 400, `${what}: status`);
    eq(e.param, param, `${what}: param`);
    check(e.message.includes(part), `${what}: message '${e.message}' lacks '${part}'`);
}

const UNIQUE = { type: 'object', properties: { tags: { type: 'array', items: { enum: ['a', 'b'] }, uniqueItems: true } } };

await step('a strict schema the engine refuses is a 400', async () => {
    await bad({ tools: [TOOLS[0], fn('tag', UNIQUE, { strict: true })], tool_choice: 'required' },
              'tools[1].function.parameters', 'uniqueItems at /properties/tags:', 'strict uniqueItems');
    // Parameters without "type": "object" (held to an object by the call's
    // schema): the pointer still names their own path.
    const { type, ...untyped } = UNIQUE;
    void type;
    await bad({ tools: [fn('tag', untyped, { strict: true })], tool_choice: 'auto' },
              'tools[0].function.parameters', 'uniqueItems at /properties/tags:', 'untyped strict uniqueItems');
});

await step('a non-strict one falls back to any object', async () => {
    // Any object: the bias on '}' keeps a random model's object short.
    const r = await api.chat.completions.create(base({ seed: 61, tools: [fn('tag', UNIQUE)], tool_choice: 'required',
                                                       logit_bias: { [idOf('}')]: 30 } }));
    const calls = callsOnly(r, 'loose', ['tag']);
    for (const tc of calls) check(typeof JSON.parse(tc.function.arguments) === 'object', 'loose: arguments are an object');
});

finish(`serve_tools ${FAMILY}`);
