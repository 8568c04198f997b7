// Hot swap under load (driven by tests/test_hotswap.sh): 32 concurrent
// streaming greedy requests over eight adapters while the shell adds an
// adapter folder, publishes a new version of another (atomic rename) and
// removes a third. Every request completes, and its text is that of a
// version of its adapter that existed while it ran; once /v1/models shows
// the change, new requests get the new version, the added adapter serves
// and the removed one answers 404.
//
// Env: PORT; EXP (expected texts: <name>.txt for each adapter ad-0..ad-7
// and ad-new, <name>.v2.txt for the replaced one); LOG (the server's log);
// SYNC (a folder: this script creates SYNC/go once the streams are
// in the engine, the shell creates SYNC/done when its changes are on disk);
// REPLACED, REMOVED, ADDED (adapter names); N (max_tokens); BIG (optional:
// an adapter whose rank is above the server's --max-lora-rank).
import fs from 'node:fs';
import { check, eq, finish, step, client, sleep } from './lib.mjs';

const { EXP, LOG, SYNC, REPLACED, REMOVED, ADDED } = process.env;
const N = Number(process.env.N ?? 8);
const NAMES = Array.from({ length: 8 }, (_, i) => `ad-${i}`);
const PROMPT = 'hello world';
const exp = (f) => fs.readFileSync(`${EXP}/${f}.txt`, 'utf8');
// The texts a request for m may legitimately get: each version of m.
const versions = (m) => (m === REPLACED ? [exp(m), exp(`${m}.v2`)] : [exp(m)]);
const c = client('none', { timeout: 60000 });
const logText = () => fs.readFileSync(LOG, 'utf8');

// onStart: the response headers arrived, so the server has resolved the
// adapter and submitted the request to the engine.
async function stream(model, onStart = () => {}) {
    const s = await c.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }],
        max_tokens: N, temperature: 0, stream: true });
    onStart();
    let text = '', fin = null;
    for await (const ch of s) {
        const ch0 = ch.choices[0];
        if (!ch0) continue;
        text += ch0.delta.content ?? '';
        if (ch0.finish_reason) fin = ch0.finish_reason;
    }
    return { text, fin };
}

async function waitFor(what, pred, ms = 20000) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (await pred()) return true;
        await sleep(50);
    }
    check(false, `timed out waiting for ${what}`);
    return false;
}

// Every original adapter answers with its own text, which also makes each
// resident in an engine slot before the load starts.
await step('warm', async () => {
    const rs = await Promise.all(NAMES.map((m) => stream(m)));
    NAMES.forEach((m, i) => eq(rs[i].text, exp(m), `warm ${m}`));
});

await step('under load', async () => {
    // The shell changes the folder once all 32 are in the engine (a request
    // for the removed adapter that arrived after it is gone would rightly
    // be a 404); most of them are then still queued or generating.
    let started = 0, doneBeforeSwap = 0, doneAfterSwap = 0, swapped = false;
    const jobs = [];
    for (let i = 0; i < 32; i++) {
        const m = NAMES[i % NAMES.length];
        jobs.push(stream(m, () => {
            if (++started === 32) fs.writeFileSync(`${SYNC}/go`, '');
        }).then((r) => {
            if (swapped) doneAfterSwap++; else doneBeforeSwap++;
            return { m, i, ...r };
        }, (e) => ({ m, i, err: e })));
    }
    const swap = waitFor('the shell\'s changes (SYNC/done)', () => fs.existsSync(`${SYNC}/done`), 30000)
        .then(() => { swapped = true; });
    const rs = await Promise.all(jobs);
    await swap;
    for (const r of rs) {
        if (r.err) {
            check(false, `request #${r.i} ${r.m} failed: ${r.err.status ?? ''} ${r.err.message}`);
            continue;
        }
        // Every request was resolved (headers sent) before the changes, so
        // each gets the version it was resolved to: the old one.
        check(versions(r.m).includes(r.text), `request #${r.i} ${r.m}: text ${JSON.stringify(r.text)} is no version's`);
        eq(r.text, exp(r.m), `request #${r.i} ${r.m}: the version it was resolved to`);
        eq(r.fin, 'length', `request #${r.i} ${r.m} finish_reason`);
    }
    console.log(`hotswap.mjs: ${doneBeforeSwap} requests finished before the changes were on disk, ` +
        `${doneAfterSwap} after`);
});

await step('after the swap', async () => {
    const ids = async () => (await c.models.list()).data.map((m) => m.id);
    await waitFor('/v1/models to list the added adapter and drop the removed one', async () => {
        const l = await ids();
        return l.includes(ADDED) && !l.includes(REMOVED);
    });
    // The replacement: the registry logs it once it has validated the new files.
    await waitFor('the registry to see the new version', async () =>
        new RegExp(`info registry: replaced adapter=${REPLACED} `).test(logText()));
    const l = await ids();
    check(l.includes(REPLACED), 'the replaced adapter is still listed');
    for (const m of NAMES.filter((x) => x !== REMOVED)) check(l.includes(m), `${m} still listed`);

    const rs = await Promise.all([REPLACED, ADDED, ...NAMES.filter((x) => x !== REMOVED && x !== REPLACED)]
        .map((m) => stream(m).then((r) => [m, r])));
    for (const [m, r] of rs) {
        const want = m === REPLACED ? exp(`${m}.v2`) : exp(m);
        eq(r.text, want, `after the swap: ${m}${m === REPLACED ? ' (new version)' : ''}`);
    }
    try {
        await c.chat.completions.create({ model: REMOVED, messages: [{ role: 'user', content: PROMPT }], max_tokens: N });
        check(false, 'the removed adapter still answers');
    } catch (e) {
        eq(e.status, 404, `the removed adapter: status (${e.message})`);
        check(/does not exist|not found/i.test(e.message ?? ''), `the removed adapter: message: ${e.message}`);
    }
});

// An adapter whose rank is above the server's --max-lora-rank: a 400 that
// says so, not a 500 from the engine, for streamed and plain requests.
if (process.env.BIG) {
    await step('rank above --max-lora-rank', async () => {
        const BIG = process.env.BIG;
        for (const s of [false, true]) {
            try {
                await c.chat.completions.create({ model: BIG, messages: [{ role: 'user', content: PROMPT }],
                    max_tokens: N, stream: s });
                check(false, `${BIG} (stream=${s}): no error`);
            } catch (e) {
                eq(e.status, 400, `${BIG} (stream=${s}): status (${e.message})`);
                eq(e.param, 'model', `${BIG} (stream=${s}): param`);
                check(/rank 16.*--max-lora-rank 8/.test(e.message ?? ''), `${BIG} (stream=${s}): message: ${e.message}`);
            }
        }
        const r = await stream('ad-0');
        eq(r.text, exp('ad-0'), 'served after the refusal');
    });
}

finish('hotswap.mjs');
