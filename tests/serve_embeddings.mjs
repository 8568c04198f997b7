// POST /v1/embeddings through the official `openai` SDK and LangChain's
// OpenAIEmbeddings, against vectors computed apart from the server by
// tools/embedref (one forward of the same token ids, pooled by emb_pool).
//
// Env (tests/test_serve_embeddings.sh): PORT; MODEL, the model folder (its
// tokenizer.json gives the ids /v1/completions would use, through the npm
// tokenizer oracle); ADAPTERS; EMBEDREF, the tool; POOLING, the server's.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import OpenAI from 'openai';
import { OpenAIEmbeddings } from '@langchain/openai';
import { TokenizerLoader } from '@lenml/tokenizers';
import { BASE, check, eq, finish, step, client, rejects, fetchJson } from './http/lib.mjs';

const { MODEL, ADAPTERS, EMBEDREF, POOLING } = process.env;
const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(`${MODEL}/tokenizer.json`, 'utf8')),
    tokenizerConfig: JSON.parse(fs.readFileSync(`${MODEL}/tokenizer_config.json`, 'utf8')),
});
const ids = (s) => tok.encode(s, { add_special_tokens: true });
const ref = (tokens, adapter) => JSON.parse(execFileSync(EMBEDREF, [
    '--model', MODEL, '--pooling', POOLING, ...(adapter ? ['--adapter', `${ADAPTERS}/${adapter}`] : []),
    tokens.join(','),
], { encoding: 'utf8' }));
const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const maxDiff = (a, b) => a.length !== b.length ? Infinity : Math.max(...a.map((x, i) => Math.abs(x - b[i])));
// The float answer's numbers are cJSON's (15 significant digits when they
// read back within its tolerance): the same float32 once rounded.
const f32 = (v) => v.map(Math.fround);
const TOL = 1e-5; // f32 everywhere; chunked prefill and batching change nothing but summation order of the mean
const close = (a, b, what) => { const d = maxDiff(a, b); check(d <= TOL, `${what}: max |diff| ${d}`); };

const TEXTS = ['The quick brown fox', 'Once upon a time, in a land far away, there lived a', 'tessera'];
const acme = client('sk-acme-0001', { timeout: 60000 });
const globex = client('sk-globex-0002', { timeout: 60000 });
const HIDDEN = JSON.parse(fs.readFileSync(`${MODEL}/config.json`, 'utf8')).hidden_size;

await step('float: one string, equal to the independent computation, unit norm, usage', async () => {
    const r = await acme.embeddings.create({ model: 'tiny', input: TEXTS[1], encoding_format: 'float' });
    eq(r.object, 'list', 'object');
    eq(r.model, 'tiny', 'model');
    eq(r.data.length, 1, 'data length');
    eq([r.data[0].object, r.data[0].index], ['embedding', 0], 'data[0]');
    const v = r.data[0].embedding;
    eq(v.length, HIDDEN, 'length = hidden_size');
    check(Math.abs(norm(v) - 1) < 1e-5, `unit norm: ${norm(v)}`);
    close(v, ref(ids(TEXTS[1])), 'vs embedref on the tokenizer oracle\'s ids');
    eq(r.usage, { prompt_tokens: ids(TEXTS[1]).length, total_tokens: ids(TEXTS[1]).length }, 'usage');
});

await step('base64 (the SDK default, decoded by it) equals float; a batch equals each alone', async () => {
    const f = await acme.embeddings.create({ model: 'tiny', input: TEXTS, encoding_format: 'float' });
    const b = await acme.embeddings.create({ model: 'tiny', input: TEXTS });
    eq(b.data.map((d) => d.index), [0, 1, 2], 'indexes');
    for (let i = 0; i < TEXTS.length; i++) {
        eq(f32(b.data[i].embedding), f32(f.data[i].embedding), `input ${i}: base64 decodes to the float answer`);
        const alone = await acme.embeddings.create({ model: 'tiny', input: TEXTS[i], encoding_format: 'float' });
        eq(f.data[i].embedding, alone.data[0].embedding, `input ${i}: batched = alone`);
    }
    const raw = await fetchJson('/v1/embeddings', { method: 'POST', key: 'sk-acme-0001',
        body: JSON.stringify({ model: 'tiny', input: 'tessera', encoding_format: 'base64' }) });
    const buf = Buffer.from(raw.json.data[0].embedding, 'base64');
    eq(buf.length, 4 * HIDDEN, 'base64 bytes = 4 x hidden_size');
    const le = Array.from({ length: HIDDEN }, (_, k) => buf.readFloatLE(4 * k));
    eq(le, f32(f.data[2].embedding), 'base64 is little-endian float32');
});

await step('token-id inputs: one list, a list of lists; text = its ids', async () => {
    const a = ids(TEXTS[0]), b = ids(TEXTS[2]);
    const r1 = await acme.embeddings.create({ model: 'tiny', input: a, encoding_format: 'float' });
    const r2 = await acme.embeddings.create({ model: 'tiny', input: [a, b], encoding_format: 'float' });
    const t = await acme.embeddings.create({ model: 'tiny', input: TEXTS[0], encoding_format: 'float' });
    eq(r1.data[0].embedding, t.data[0].embedding, 'ids = text');
    eq(r2.data[0].embedding, r1.data[0].embedding, 'list of lists [0]');
    close(r2.data[1].embedding, ref(b), 'list of lists [1] vs embedref');
    eq(r2.usage.prompt_tokens, a.length + b.length, 'usage sums the inputs');
});

await step('dimensions: the first N, renormalized', async () => {
    const full = (await acme.embeddings.create({ model: 'tiny', input: TEXTS[1], encoding_format: 'float' })).data[0].embedding;
    const r = await acme.embeddings.create({ model: 'tiny', input: TEXTS[1], encoding_format: 'float', dimensions: 8 });
    const v = r.data[0].embedding;
    eq(v.length, 8, 'length');
    check(Math.abs(norm(v) - 1) < 1e-6, `unit norm: ${norm(v)}`);
    const n8 = norm(full.slice(0, 8));
    close(v, full.slice(0, 8).map((x) => x / n8), 'the first 8 over their norm');
});

await step('an adapter applies (and equals embedref with it); tenants as chat', async () => {
    const base = (await acme.embeddings.create({ model: 'tiny', input: TEXTS[0], encoding_format: 'float' })).data[0].embedding;
    const r = await acme.embeddings.create({ model: 'acme-emb', input: TEXTS[0], encoding_format: 'float' });
    eq(r.model, 'acme-emb', 'model');
    check(maxDiff(r.data[0].embedding, base) > 1e-4, 'the adapter changes the vector');
    close(r.data[0].embedding, ref(ids(TEXTS[0]), 'acme-emb'), 'vs embedref --adapter');
    const g = await globex.embeddings.create({ model: 'globex-emb', input: TEXTS[0], encoding_format: 'float' });
    close(g.data[0].embedding, ref(ids(TEXTS[0]), 'globex-emb'), 'globex adapter vs embedref');
    const e1 = await rejects(() => globex.embeddings.create({ model: 'tiny', input: 'x' }), OpenAI.NotFoundError, 'globex: no base');
    eq(e1 && e1.code, 'model_not_found', 'code');
    await rejects(() => globex.embeddings.create({ model: 'acme-emb', input: 'x' }), OpenAI.NotFoundError, 'globex: not acme\'s adapter');
});

await step('LangChain OpenAIEmbeddings: embedQuery and embedDocuments', async () => {
    const lc = new OpenAIEmbeddings({ model: 'tiny', apiKey: 'sk-acme-0001', configuration: { baseURL: `${BASE}/v1` },
                                      maxRetries: 0 });
    const q = await lc.embedQuery(TEXTS[0]);
    const docs = await lc.embedDocuments([TEXTS[1], TEXTS[2]]);
    close(q, ref(ids(TEXTS[0])), 'embedQuery vs embedref');
    eq(docs.length, 2, 'two documents');
    close(docs[0], ref(ids(TEXTS[1])), 'embedDocuments[0]');
    close(docs[1], ref(ids(TEXTS[2])), 'embedDocuments[1]');
});

await step('embeddings batched beside generation equal embedref', async () => {
    const [c, e] = await Promise.all([
        acme.completions.create({ model: 'acme-emb', prompt: TEXTS[1], max_tokens: 12, temperature: 0 }),
        acme.embeddings.create({ model: 'tiny', input: TEXTS, encoding_format: 'float' }),
    ]);
    eq(c.choices[0].finish_reason, 'length', 'the completion ran');
    for (let i = 0; i < TEXTS.length; i++) close(e.data[i].embedding, ref(ids(TEXTS[i])), `input ${i}`);
});

await step('400s name the field', async () => {
    const bad = async (body, param) => {
        const r = await fetchJson('/v1/embeddings', { method: 'POST', key: 'sk-acme-0001', body: JSON.stringify(body) });
        eq([r.status, r.json && r.json.error && r.json.error.param], [400, param], `${JSON.stringify(body).slice(0, 60)}`);
    };
    await bad({ model: 'tiny' }, 'input');
    await bad({ model: 'tiny', input: '' }, 'input');
    await bad({ model: 'tiny', input: [] }, 'input');
    await bad({ model: 'tiny', input: ['a', ''] }, 'input[1]');
    await bad({ model: 'tiny', input: [[1, 2], []] }, 'input[1]');
    await bad({ model: 'tiny', input: [1, 1e9] }, 'input');
    await bad({ model: 'tiny', input: 'a', dimensions: HIDDEN + 1 }, 'dimensions');
    await bad({ model: 'tiny', input: 'a', dimensions: 0 }, 'dimensions');
    await bad({ model: 'tiny', input: 'a', encoding_format: 'int8' }, 'encoding_format');
    await bad({ input: 'a' }, 'model');
    await bad({ model: 'tiny', input: Array(65).fill('a') }, 'input');
    await rejects(() => acme.embeddings.create({ model: 'tiny', input: '' }), OpenAI.BadRequestError, 'SDK: BadRequestError');
});

finish(`serve_embeddings (${POOLING})`);
