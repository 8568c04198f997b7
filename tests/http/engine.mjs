// The real engine (serve/sched.c) through the official OpenAI SDK: greedy
// results equal `serve --generate` for the base and each adapter, alone
// and batched with others (streaming and not), with more adapters in
// flight than slots, chunked prefill, a client that disconnects, and an
// adapter replaced on disk while a request is generating with it.
//
// Env: PORT; EXP (a folder of expected texts written by
// tests/test_serve_engine.sh: <model>.<prompt>.txt, swap-v1.txt,
// swap-v2.txt); LOG (the server's log); ADAPTERS (its adapters folder).
import fs from 'node:fs';
import { check, eq, finish, step, client, sleep } from './lib.mjs';

const EXP = process.env.EXP, LOG = process.env.LOG, ADAPTERS = process.env.ADAPTERS;
const N = 24;
const PROMPTS = [
    'hello world',
    'Tell me a story about a dragon who learned to code in C; make it long and full of detail, please, ' +
        'with many characters and places and things going on.',
];
const MODELS = ['tiny', 'ad-a', 'ad-b', 'ad-c'];
const expected = (m, p) => fs.readFileSync(`${EXP}/${m}.${p}.txt`, 'utf8');
const c = client('none', { timeout: 60000 });

async function chat(model, p, { stream = false, max_tokens = N } = {}) {
    const body = { model, messages: [{ role: 'user', content: PROMPTS[p] ?? p }], max_tokens, temperature: 0 };
    if (!stream) {
        const r = await c.chat.completions.create(body);
        return { text: r.choices[0].message.content, finish: r.choices[0].finish_reason, usage: r.usage };
    }
    const s = await c.chat.completions.create({ ...body, stream: true });
    let text = '', fin = null;
    for await (const ch of s) {
        const ch0 = ch.choices[0];
        if (!ch0) continue;
        text += ch0.delta.content ?? '';
        if (ch0.finish_reason) fin = ch0.finish_reason;
    }
    return { text, finish: fin };
}

const logText = () => fs.readFileSync(LOG, 'utf8');
async function waitLog(re, ms = 10000) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (re.test(logText())) return true;
        await sleep(50);
    }
    return false;
}

// (a) one at a time: each model's greedy text equals serve --generate's.
await step('solo', async () => {
    for (const m of MODELS)
        for (let p = 0; p < PROMPTS.length; p++) {
            const r = await chat(m, p);
            eq(r.text, expected(m, p), `solo ${m} prompt ${p}`);
        }
});

// (b)+(c) eight at once over three adapters and the base, half streamed,
// with --max-loras 2 and --max-num-seqs 4: queueing, LRU slot swaps,
// chunked prefill and KV preemption must not change a single token.
await step('concurrent', async () => {
    const jobs = [];
    for (let i = 0; i < 8; i++) {
        const m = MODELS[i % 4], p = (i >> 2) & 1;
        jobs.push(chat(m, p, { stream: i % 2 === 1 }).then((r) => [m, p, i, r]));
    }
    for (const [m, p, i, r] of await Promise.all(jobs)) eq(r.text, expected(m, p), `concurrent #${i} ${m} prompt ${p}`);
    check(/info sched: adapter slot=\d+ loaded adapter=\S+ rank=\d+ evicted=ad-/.test(logText()),
        'an adapter slot was swapped (LRU eviction)');
});

// n > 1 with a seed: choices are independent sequences; greedy choices agree.
await step('n', async () => {
    const r = await c.chat.completions.create({ model: 'ad-a', messages: [{ role: 'user', content: PROMPTS[0] }],
        max_tokens: N, temperature: 0, n: 3 });
    eq(r.choices.length, 3, 'n=3 choices');
    for (const ch of r.choices) eq(ch.message.content, expected('ad-a', 0), `n=3 choice ${ch.index}`);
});

// (d) a client that goes away mid-stream: its sequence is cancelled and the
// server goes on serving.
await step('disconnect', async () => {
    const ac = new AbortController();
    const s = await c.chat.completions.create({ model: 'ad-b', messages: [{ role: 'user', content: 'go on and on' }],
        max_tokens: 100, temperature: 0, stream: true }, { signal: ac.signal });
    let got = 0;
    try {
        for await (const ch of s) {
            if (ch.choices[0]?.delta?.content !== undefined && ++got >= 3) ac.abort();
        }
    } catch { /* the abort */ }
    check(await waitLog(/info sched: finished request=\d+ choice=0 reason=cancel/), 'a cancel logged by the engine');
    const r = await chat('tiny', 0);
    eq(r.text, expected('tiny', 0), 'served after the disconnect');
});

// (f) the adapter "swap" is replaced on disk (the trainer's way: a new
// folder renamed into place) while a long request generates with it: that
// request finishes with the old weights, the next one gets the new.
await step('hot swap', async () => {
    const long = chat('swap', 0, { stream: true, max_tokens: 100 });
    await waitLog(/loaded adapter=swap/);
    fs.renameSync(`${ADAPTERS}/swap`, `${ADAPTERS}/.swap-old`);
    fs.renameSync(`${ADAPTERS}/.swap-new`, `${ADAPTERS}/swap`);
    check(await waitLog(/info registry: replaced adapter=swap/), 'the registry saw the new version');
    const next = await chat('swap', 0, { max_tokens: 100 });
    const old = await long;
    eq(old.text, fs.readFileSync(`${EXP}/swap-v1.txt`, 'utf8'), 'in-flight request kept the old weights');
    eq(next.text, fs.readFileSync(`${EXP}/swap-v2.txt`, 'utf8'), 'next request got the new weights');
});

finish('engine.mjs');
