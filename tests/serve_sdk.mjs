// The real engine through the official `openai` npm SDK, no echo engine:
// /v1/completions with a string, a list of prompts and token ids (greedy
// text = `serve --generate --raw`), streaming, seeded sampling (= the CLI
// with the same seed; choice k of n uses seed + k), stop strings (one, a
// list, streamed), usage (prompt_tokens = the npm tokenizer oracle's
// count), max_tokens -> 'length', n > 1, logprobs shapes, errors as the
// SDK's typed classes, and each tenant's model list.
//
// Env (set by tests/test_serve_sdk.sh): PORT; EXP, the expected texts
// (raw.<model>.<p>.txt, seed<S>.acme-a.<p>.txt, chat.acme-a.0.txt,
// chat-seed<S>.acme-a.0.txt); N, the
// token count they were generated with; TOKENIZER, the model folder.
import fs from 'node:fs';
import OpenAI from 'openai';
import { TokenizerLoader } from '@lenml/tokenizers';
import { check, eq, finish, step, client, rejects } from './http/lib.mjs';

const EXP = process.env.EXP, N = Number(process.env.N);
const PROMPTS = ['The quick brown fox', 'Once upon a time, in a land far away, there lived a'];
const exp = (name) => fs.readFileSync(`${EXP}/${name}.txt`, 'utf8');
const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(`${process.env.TOKENIZER}/tokenizer.json`, 'utf8')),
    tokenizerConfig: JSON.parse(fs.readFileSync(`${process.env.TOKENIZER}/tokenizer_config.json`, 'utf8')),
});
const countTokens = (s) => tok.encode(s, { add_special_tokens: true }).length;

const admin = client('sk-admin-0003', { timeout: 60000 });
const acme = client('sk-acme-0001', { timeout: 60000 });
const globex = client('sk-globex-0002', { timeout: 60000 });
const greedy = { max_tokens: N, temperature: 0 };

// Streams a completion; returns {texts, finish, usage, chunks} per choice index.
async function streamCompletion(c, body) {
    const s = await c.completions.create({ ...body, stream: true });
    const texts = [], finish = [];
    let usage = null, chunks = 0, afterUsage = 0;
    for await (const ch of s) {
        chunks++;
        if (usage) afterUsage++;
        if (ch.usage) usage = ch.usage;
        for (const x of ch.choices) {
            texts[x.index] = (texts[x.index] ?? '') + x.text;
            if (x.finish_reason) {
                check(finish[x.index] === undefined, `stream: choice ${x.index} finished twice`);
                finish[x.index] = x.finish_reason;
            }
        }
    }
    check(afterUsage === 0, 'stream: the usage chunk is the last one');
    return { texts, finish, usage, chunks };
}

// ---- completions: greedy --------------------------------------------------------------
await step('completion string', async () => {
    for (const [m, c] of [['tiny', admin], ['acme-a', acme], ['acme-b', acme]]) {
        const r = await c.completions.create({ model: m, prompt: PROMPTS[0], ...greedy });
        eq(r.object, 'text_completion', `${m}: object`);
        eq(r.model, m, `${m}: model`);
        eq(r.choices.length, 1, `${m}: one choice`);
        eq(r.choices[0].index, 0, `${m}: index`);
        eq(r.choices[0].text, exp(`raw.${m}.0`), `${m}: greedy text = serve --generate --raw`);
        eq(r.choices[0].finish_reason, 'length', `${m}: finish_reason`);
        eq(r.usage, { prompt_tokens: countTokens(PROMPTS[0]), completion_tokens: N,
                      total_tokens: countTokens(PROMPTS[0]) + N }, `${m}: usage`);
    }
});

await step('completion list of prompts', async () => {
    const r = await acme.completions.create({ model: 'acme-a', prompt: PROMPTS, ...greedy });
    eq(r.choices.map((x) => x.index), [0, 1], 'list: indices');
    eq(r.choices.map((x) => x.text), [exp('raw.acme-a.0'), exp('raw.acme-a.1')], 'list: texts in prompt order');
    const pt = countTokens(PROMPTS[0]) + countTokens(PROMPTS[1]);
    eq(r.usage, { prompt_tokens: pt, completion_tokens: 2 * N, total_tokens: pt + 2 * N }, 'list: usage sums both');
});

await step('completion token ids', async () => {
    const ids = tok.encode(PROMPTS[1], { add_special_tokens: true });
    const r = await acme.completions.create({ model: 'acme-a', prompt: ids, ...greedy });
    eq(r.choices[0].text, exp('raw.acme-a.1'), 'token-id prompt: same text as the string');
    eq(r.usage.prompt_tokens, ids.length, 'token-id prompt: prompt_tokens');
    const r2 = await acme.completions.create({ model: 'acme-a', prompt: [ids, tok.encode(PROMPTS[0])], ...greedy });
    eq(r2.choices.map((x) => x.text), [exp('raw.acme-a.1'), exp('raw.acme-a.0')], 'list of token-id prompts');
});

await step('completion streaming', async () => {
    const r = await streamCompletion(acme, { model: 'acme-a', prompt: PROMPTS, ...greedy,
                                             stream_options: { include_usage: true } });
    eq(r.texts, [exp('raw.acme-a.0'), exp('raw.acme-a.1')], 'stream list: texts per index');
    eq(r.finish, ['length', 'length'], 'stream list: finish_reason per index');
    check(r.chunks > 2 * 3, `stream list: many chunks (got ${r.chunks})`);
    const pt = countTokens(PROMPTS[0]) + countTokens(PROMPTS[1]);
    eq(r.usage, { prompt_tokens: pt, completion_tokens: 2 * N, total_tokens: pt + 2 * N }, 'stream list: usage');
    const plain = await streamCompletion(acme, { model: 'acme-a', prompt: PROMPTS[0], ...greedy });
    eq(plain.usage, null, 'stream without include_usage: no usage');
    eq(plain.texts, [exp('raw.acme-a.0')], 'stream one prompt');
});

// ---- sampling ---------------------------------------------------------------------------
await step('seeds', async () => {
    const body = { model: 'acme-a', prompt: PROMPTS[0], max_tokens: N, temperature: 1 };
    const a = await acme.completions.create({ ...body, seed: 5 });
    const b = await acme.completions.create({ ...body, seed: 5 });
    eq(a.choices[0].text, b.choices[0].text, 'same seed twice: same text');
    eq(a.choices[0].text, exp('seed5.acme-a.0'), 'seed 5 = serve --generate --temperature 1 --seed 5');
    const texts = new Set();
    for (const seed of [1, 2, 3, 4, 5, 6]) {
        const r = await acme.completions.create({ ...body, seed });
        texts.add(r.choices[0].text);
        if (seed === 6) eq(r.choices[0].text, exp('seed6.acme-a.0'), 'seed 6 = the CLI with seed 6');
    }
    check(texts.size >= 5, `6 seeds gave ${texts.size} different texts, want >= 5`);
    // Streaming does not change what a seed samples.
    const s = await streamCompletion(acme, { ...body, seed: 5 });
    eq(s.texts, [exp('seed5.acme-a.0')], 'seed 5 streamed');
});

await step('n > 1', async () => {
    // Greedy: every choice is the greedy text; indices run prompt-major.
    const g = await acme.completions.create({ model: 'acme-a', prompt: PROMPTS, n: 2, ...greedy });
    eq(g.choices.map((x) => x.index), [0, 1, 2, 3], 'n=2 x 2 prompts: indices');
    eq(g.choices.map((x) => x.text), [exp('raw.acme-a.0'), exp('raw.acme-a.0'), exp('raw.acme-a.1'),
                                      exp('raw.acme-a.1')], 'n=2 x 2 prompts: greedy texts');
    eq(g.usage.completion_tokens, 4 * N, 'n=2 x 2 prompts: completion_tokens');
    // Sampled with a seed: choice k samples with seed + k.
    const body = { model: 'acme-a', prompt: PROMPTS, n: 2, max_tokens: N, temperature: 1, seed: 5 };
    const want = [exp('seed5.acme-a.0'), exp('seed6.acme-a.0'), exp('seed5.acme-a.1'), exp('seed6.acme-a.1')];
    const r = await acme.completions.create(body);
    eq(r.choices.map((x) => x.text), want, 'n=2 seeded: choice k = the CLI with seed 5 + k');
    const s = await streamCompletion(acme, body);
    eq(s.texts, want, 'n=2 seeded, streamed');
    eq(s.finish, ['length', 'length', 'length', 'length'], 'n=2 streamed: every choice finished');
    // Chat n=2 sampled: the two choices differ.
    const c = await acme.chat.completions.create({ model: 'acme-a', messages: [{ role: 'user', content: PROMPTS[0] }],
        n: 2, max_tokens: N, temperature: 1, seed: 5 });
    eq(c.choices.map((x) => x.index), [0, 1], 'chat n=2: indices');
    check(c.choices[0].message.content !== c.choices[1].message.content, 'chat n=2 sampled: the choices differ');
});

// ---- stop strings -------------------------------------------------------------------
// Stop strings are cut from seeded sampled texts (reproducible, and not
// the repetitive text a random tiny model gives greedily): a piece from
// where `from` (a fraction of the text) points, whose first occurrence is
// there, spanning more than one token. The answer must be the text before
// the earliest match, without the stop string.
function pickStop(text, from, len) {
    for (let k = Math.floor(text.length * from); k + len <= text.length; k++) {
        const s = text.slice(k, k + len);
        if (s.trim() === s && !s.includes('\uFFFD') && text.indexOf(s) === k) return s;
    }
    throw new Error(`no stop string of ${len} chars after ${from} of ${JSON.stringify(text)}`);
}
const cutAt = (text, stops) => text.slice(0, Math.min(...stops.map((s) => text.indexOf(s)).filter((i) => i >= 0)));

await step('stop strings', async () => {
    const full = exp('seed5.acme-a.1');
    const stop = pickStop(full, 0.5, 6);
    const want = cutAt(full, [stop]);
    check(want.length > full.length / 3, `stop ${JSON.stringify(stop)} is in the middle of ${JSON.stringify(full)}`);
    const body = { model: 'acme-a', prompt: PROMPTS[1], max_tokens: N, temperature: 1, seed: 5 };
    const r = await acme.completions.create({ ...body, stop });
    eq(r.choices[0].text, want, `stop ${JSON.stringify(stop)}: the text before it`);
    eq(r.choices[0].finish_reason, 'stop', 'stop: finish_reason');
    check(r.usage.completion_tokens < N, `stop: fewer than ${N} tokens (got ${r.usage.completion_tokens})`);
    const s = await streamCompletion(acme, { ...body, stop, stream_options: { include_usage: true } });
    eq(s.texts, [want], 'stop streamed: no held-back text leaks');
    eq(s.finish, ['stop'], 'stop streamed: finish_reason');
    eq(s.usage.completion_tokens, r.usage.completion_tokens, 'stop streamed: the same completion_tokens');
    // A list: the earliest match wins, wherever it is in the list.
    const early = pickStop(full, 0.25, 4);
    const stops = [stop, 'never-in-the-text', early];
    const l = await acme.completions.create({ ...body, stop: stops });
    eq(l.choices[0].text, cutAt(full, stops), `stop list ${JSON.stringify(stops)}: the earliest`);
    eq(l.choices[0].finish_reason, 'stop', 'stop list: finish_reason');
    const none = await acme.completions.create({ ...body, stop: ['never-in-the-text'] });
    eq(none.choices[0].text, full, 'a stop string that never comes: the whole text');
    eq(none.choices[0].finish_reason, 'length', 'a stop string that never comes: length');
    // Greedy too (the stop string repeats there: the first occurrence counts).
    const g = exp('raw.acme-a.0'), gstop = g.trim().split(' ').at(-1);
    const gr = await acme.completions.create({ model: 'acme-a', prompt: PROMPTS[0], ...greedy, stop: gstop });
    eq([gr.choices[0].text, gr.choices[0].finish_reason], [cutAt(g, [gstop]), 'stop'], `greedy stop ${gstop}`);
    // Chat, streamed, n=2 (choice k samples with seed 5 + k): one list of
    // stops, each from one choice's text.
    const c5 = exp('chat-seed5.acme-a.0'), c6 = exp('chat-seed6.acme-a.0');
    const cstops = [pickStop(c5, 0.5, 5), pickStop(c6, 0.6, 5)];
    const cs = await acme.chat.completions.create({ model: 'acme-a', messages: [{ role: 'user', content: PROMPTS[0] }],
        max_tokens: N, temperature: 1, seed: 5, n: 2, stop: cstops, stream: true });
    const texts = ['', ''], fin = [];
    for await (const ch of cs) for (const x of ch.choices) {
        texts[x.index] += x.delta.content ?? '';
        if (x.finish_reason) fin[x.index] = x.finish_reason;
    }
    eq(texts, [cutAt(c5, cstops), cutAt(c6, cstops)], `chat stream stops ${JSON.stringify(cstops)}, n=2`);
    eq(fin, ['stop', 'stop'], 'chat stream stop: finish_reason');
});

// ---- usage and lengths ------------------------------------------------------------------
await step('usage and max_tokens', async () => {
    const msgs = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: PROMPTS[0] }];
    const r = await acme.chat.completions.create({ model: 'acme-a', messages: msgs, ...greedy });
    const s = await acme.chat.completions.create({ model: 'acme-a', messages: msgs, ...greedy, stream: true,
        stream_options: { include_usage: true } });
    let usage = null, text = '';
    for await (const ch of s) {
        if (ch.usage) usage = ch.usage;
        else check(ch.usage === null, 'include_usage: other chunks carry usage null');
        text += ch.choices[0]?.delta?.content ?? '';
    }
    eq(text, r.choices[0].message.content, 'chat streamed = not streamed');
    eq(usage, r.usage, 'chat usage: stream include_usage = non-streamed');
    check(r.usage.prompt_tokens > countTokens('Be brief.') + countTokens(PROMPTS[0]),
        `chat prompt_tokens ${r.usage.prompt_tokens} count the template too`);
    const chat = await acme.chat.completions.create({ model: 'acme-a', messages: [{ role: 'user', content: PROMPTS[0] }],
        ...greedy });
    eq(chat.choices[0].message.content, exp('chat.acme-a.0'), 'chat greedy = serve --generate (chat template)');
    for (const n of [1, 3, 7]) {
        const c = await acme.completions.create({ model: 'acme-a', prompt: PROMPTS[1], max_tokens: n, temperature: 0 });
        eq(c.choices[0].finish_reason, 'length', `max_tokens ${n}: finish_reason`);
        eq(c.usage.completion_tokens, n, `max_tokens ${n}: completion_tokens`);
        check(exp('raw.acme-a.1').startsWith(c.choices[0].text), `max_tokens ${n}: a prefix of the greedy text`);
        const m = await acme.chat.completions.create({ model: 'acme-a', messages: [{ role: 'user', content: PROMPTS[0] }],
            max_completion_tokens: n, temperature: 0 });
        eq([m.choices[0].finish_reason, m.usage.completion_tokens], ['length', n], `chat max_completion_tokens ${n}`);
    }
});

// ---- logprobs -------------------------------------------------------------------------
await step('logprobs', async () => {
    const r = await acme.completions.create({ model: 'acme-a', prompt: PROMPTS[0], ...greedy, logprobs: 2 });
    const lp = r.choices[0].logprobs, text = r.choices[0].text;
    for (const k of ['tokens', 'token_logprobs', 'top_logprobs', 'text_offset'])
        eq(Array.isArray(lp?.[k]) && lp[k].length, N, `completion logprobs.${k}: ${N} entries`);
    eq(lp.tokens.join(''), text, 'completion logprobs: tokens join to the text');
    let off = 0, ok = true;
    lp.tokens.forEach((t, i) => {
        ok &&= lp.text_offset[i] === off;
        off += Buffer.byteLength(t);
        const top = lp.top_logprobs[i], vals = Object.values(top);
        ok &&= vals.length === 2 && t in top && lp.token_logprobs[i] <= 0;
        // Greedy: the chosen token is the most likely one.
        ok &&= Math.abs(lp.token_logprobs[i] - Math.max(...vals)) < 1e-5;
    });
    check(ok, `completion logprobs: offsets, top-2 maps holding the greedy token: ${JSON.stringify(lp).slice(0, 400)}`);
    const plain = await acme.completions.create({ model: 'acme-a', prompt: PROMPTS[0], ...greedy });
    eq(plain.choices[0].logprobs, null, 'no logprobs asked: null');

    const c = await acme.chat.completions.create({ model: 'acme-a', messages: [{ role: 'user', content: PROMPTS[0] }],
        ...greedy, logprobs: true, top_logprobs: 3 });
    const content = c.choices[0].logprobs?.content;
    eq(content?.length, N, `chat logprobs.content: ${N} entries`);
    const bytes = Buffer.from(content.flatMap((t) => t.bytes));
    eq(bytes.toString('utf8'), c.choices[0].message.content, 'chat logprobs: the bytes make the content');
    check(content.every((t) => t.top_logprobs.length === 3 && t.top_logprobs[0].token === t.token &&
                                Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-5 &&
                                t.top_logprobs.every((x, i, a) => i === 0 || a[i - 1].logprob >= x.logprob)),
          'chat logprobs: 3 alternatives, sorted, the greedy token first');
    const s = await acme.chat.completions.create({ model: 'acme-a', messages: [{ role: 'user', content: PROMPTS[0] }],
        ...greedy, logprobs: true, top_logprobs: 1, stream: true });
    let n = 0;
    for await (const ch of s) n += ch.choices[0]?.logprobs?.content?.length ?? 0;
    eq(n, N, 'chat logprobs streamed: one entry per token');
});

// ---- errors as the SDK's typed errors -------------------------------------------------
await step('errors', async () => {
    const ask = (c, model, extra = {}) => c.completions.create({ model, prompt: PROMPTS[0], max_tokens: 2, ...extra });
    let e = await rejects(() => ask(client('sk-wrong-key-9999'), 'tiny'), OpenAI.AuthenticationError, 'bad key');
    eq(e?.status, 401, 'bad key: status');
    e = await rejects(() => client('sk-wrong-key-9999').models.list(), OpenAI.AuthenticationError, 'bad key: models');
    e = await rejects(() => ask(acme, 'no-such-model'), OpenAI.NotFoundError, 'unknown model');
    eq([e?.status, e?.code, e?.param], [404, 'model_not_found', 'model'], 'unknown model: status, code, param');
    const forbidden = await rejects(() => ask(acme, 'globex-a'), OpenAI.NotFoundError, "another tenant's adapter");
    eq(forbidden?.code, 'model_not_found', 'forbidden adapter: the same code as an unknown one');
    check(forbidden && !/permission|forbidden|tenant/i.test(forbidden.message),
        `forbidden adapter: the message does not say it exists: ${forbidden?.message}`);
    await rejects(() => ask(globex, 'tiny'), OpenAI.NotFoundError, 'base not allowed for globex');
    await rejects(() => acme.chat.completions.create({ model: 'globex-a', messages: [{ role: 'user', content: 'x' }],
        stream: true }), OpenAI.NotFoundError, 'forbidden adapter, chat stream');
    const bad = [
        [{ temperature: 'hot' }, 'temperature'],
        [{ max_tokens: 'ten' }, 'max_tokens'],
        [{ n: 0 }, 'n'],
        [{ stop: [1] }, 'stop[0]'],
        [{ logprobs: 9 }, 'logprobs'],
        [{ seed: 1.5 }, 'seed'],
    ];
    for (const [extra, param] of bad) {
        e = await rejects(() => ask(acme, 'acme-a', extra), OpenAI.BadRequestError, `400 for ${JSON.stringify(extra)}`);
        eq([e?.status, e?.param], [400, param], `${JSON.stringify(extra)}: status and param`);
    }
    e = await rejects(() => ask(acme, 'acme-a', { max_tokens: 100000 }), OpenAI.BadRequestError, 'over the context');
    eq(e?.code, 'context_length_exceeded', 'over the context: code');
    e = await rejects(() => acme.chat.completions.create({ model: 'acme-a', messages: [{ role: 'user', content: 'x' }],
        temperature: 'hot', stream: true }), OpenAI.BadRequestError, 'wrong type, chat stream');
    eq(e?.param, 'temperature', 'chat stream wrong type: param');
    // The server is fine after all that.
    const r = await ask(acme, 'acme-a', { max_tokens: N, temperature: 0 });
    eq(r.choices[0].text, exp('raw.acme-a.0'), 'served after the errors');
});

// ---- models per tenant ----------------------------------------------------------------
await step('models', async () => {
    const ids = async (c) => {
        const out = [];
        for await (const m of c.models.list()) out.push(m.id);
        return out.sort();
    };
    eq(await ids(acme), ['acme-a', 'acme-b', 'tiny'], 'acme lists its adapters and the base');
    eq(await ids(globex), ['globex-a'], 'globex lists only its adapter (no base)');
    eq(await ids(admin), ['acme-a', 'acme-b', 'globex-a', 'tiny'], 'admin lists everything');
    const m = await acme.models.retrieve('acme-b');
    eq([m.id, m.object, m.parent], ['acme-b', 'model', 'tiny'], 'retrieve an adapter: id, object, parent');
    await rejects(() => globex.models.retrieve('acme-b'), OpenAI.NotFoundError, "retrieve another tenant's adapter");
});

finish('serve_sdk.mjs');
