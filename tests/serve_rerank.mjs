// POST /v1/rerank with plain fetch (as Dify, LangChain's and llama-server's
// clients send it): the answer's shape, results sorted by score, top_n,
// return_documents, documents as strings or {"text"} objects, the /rerank
// alias, an adapter as the model, a client that goes away mid-request, and
// the 400/404 errors naming the field.
// Each relevance_score must equal P(yes) computed independently: the same
// Qwen3-Reranker prompt written out here as raw text, sent to
// /v1/completions with max_tokens 1, logprobs 2 and a +B logit_bias on the
// tokens "yes" and "no" (read from tokenizer.json here), for two values of
// B: softmax over the two logprobs. Env: PORT; TOKENIZER, the model folder.
import fs from 'node:fs';
import { BASE, check, eq, finish, step } from './http/lib.mjs';

const vocab = JSON.parse(fs.readFileSync(`${process.env.TOKENIZER}/tokenizer.json`, 'utf8')).model.vocab;
const YES = vocab['yes'], NO = vocab['no'];
const INSTRUCT = 'Given a web search query, retrieve relevant passages that answer the query';
const prompt = (q, d, ins = INSTRUCT) =>
    '<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct ' +
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n' +
    `<Instruct>: ${ins}\n<Query>: ${q}\n<Document>: ${d}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n`;

async function post(path, body) {
    const r = await fetch(`${BASE}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' },
                                              body: typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: r.status, json: await r.json() };
}

// P(yes) of one prompt through /v1/completions, with bias b on both tokens.
async function pyes(model, text, b) {
    const { status, json } = await post('/v1/completions', {
        model, prompt: text, max_tokens: 1, temperature: 0, logprobs: 2,
        logit_bias: { [YES]: b, [NO]: b } });
    check(status === 200, `completions status ${status}: ${JSON.stringify(json)}`);
    const top = json.choices[0].logprobs.top_logprobs[0];
    check('yes' in top && 'no' in top, `top_logprobs has yes and no: ${JSON.stringify(top)}`);
    return { p: 1 / (1 + Math.exp(top.no - top.yes)), tokens: json.usage.prompt_tokens };
}

const Q = 'what does the fox do';
const DOCS = ['The quick brown fox jumps over the lazy dog.', 'Paris is the capital of France.',
              'Foxes are small omnivores.', 'Foxes hunt at night, mostly mice.', 'dogs sleep'];

async function checkScores(model, path = '/v1/rerank', extra = {}) {
    const { status, json } = await post(path, { model, query: Q, documents: DOCS, ...extra });
    eq(status, 200, `${model} ${path} status (${JSON.stringify(json)})`);
    eq(Object.keys(json).sort(), ['id', 'model', 'object', 'results', 'usage'], 'answer keys');
    check(typeof json.id === 'string' && json.id.startsWith('rerank-'), `id ${json.id}`);
    eq(json.model, model, 'model echoed');
    eq(json.results.length, DOCS.length, 'all documents by default');
    eq(json.results.map((r) => r.index).sort(), [0, 1, 2, 3, 4], 'each index once');
    for (let i = 1; i < json.results.length; i++)
        check(json.results[i - 1].relevance_score >= json.results[i].relevance_score, 'sorted by score descending');
    let tokens = 0;
    for (const r of json.results) {
        eq(Object.keys(r).sort(), ['index', 'relevance_score'], 'result keys without return_documents');
        const a = await pyes(model, prompt(Q, DOCS[r.index]), 100), b = await pyes(model, prompt(Q, DOCS[r.index]), 40);
        tokens += a.tokens;
        check(Math.abs(r.relevance_score - a.p) < 1e-6, `doc ${r.index}: score ${r.relevance_score} = P(yes) ${a.p}`);
        check(Math.abs(a.p - b.p) < 1e-5, `doc ${r.index}: P(yes) with bias 100 ${a.p} = with bias 40 ${b.p}`);
        check(r.relevance_score > 0 && r.relevance_score < 1, 'score in (0, 1)');
    }
    eq(json.usage, { prompt_tokens: tokens, total_tokens: tokens }, 'usage = the prompts\' tokens');
    return json;
}

if (process.env.WAVES) {
    // A server started with --max-queue 2: 12 documents go through in
    // waves (no 429), each score still P(yes).
    await step('more documents than the queue', async () => {
        const docs = Array.from({ length: 12 }, (_, i) => `${DOCS[i % DOCS.length]} (${i})`);
        const { status, json } = await post('/v1/rerank', { model: 'tiny', query: Q, documents: docs });
        eq(status, 200, `status (${JSON.stringify(json)})`);
        eq(json.results.length, 12, 'every document scored');
        for (const r of json.results.slice(0, 3)) {
            const a = await pyes('tiny', prompt(Q, docs[r.index]), 100);
            check(Math.abs(r.relevance_score - a.p) < 1e-6, `doc ${r.index}: score = P(yes)`);
        }
    });
    finish('serve_rerank waves');
}

let base, adapted;
await step('base', async () => { base = await checkScores('tiny'); });
await step('adapter', async () => { adapted = await checkScores('acme-a'); });
await step('adapter differs', async () => {
    check(JSON.stringify(base.results) !== JSON.stringify(adapted.results), 'the adapter changes the scores');
});
await step('/rerank alias and instruction', async () => {
    const { status, json } = await post('/rerank', { model: 'tiny', query: Q, documents: [DOCS[0]],
                                                     instruction: 'Find fox facts' });
    eq(status, 200, '/rerank status');
    const a = await pyes('tiny', prompt(Q, DOCS[0], 'Find fox facts'), 100);
    check(Math.abs(json.results[0].relevance_score - a.p) < 1e-6, 'instruction is used in the prompt');
});
await step('control tokens in a document are text', async () => {
    const d = 'A <|im_end|> typed as text.';
    const { json } = await post('/v1/rerank', { model: 'tiny', query: Q, documents: [d] });
    const special = await pyes('tiny', prompt(Q, d), 100); // /v1/completions parses it as the control token
    check(json.usage.prompt_tokens > special.tokens, `more tokens as text: ${json.usage.prompt_tokens} > ${special.tokens}`);
    check(json.results[0].relevance_score !== special.p, 'a different prompt, a different score');
});
await step('top_n and return_documents', async () => {
    const { json } = await post('/v1/rerank', { model: 'tiny', query: Q, documents: DOCS, top_n: 2,
                                                return_documents: true });
    eq(json.results.length, 2, 'top_n 2');
    eq(json.results.map((r) => r.index), base.results.slice(0, 2).map((r) => r.index), 'the two best');
    for (const r of json.results) eq(r.document, { text: DOCS[r.index] }, 'document.text');
    const big = await post('/v1/rerank', { model: 'tiny', query: Q, documents: DOCS.slice(0, 2), top_n: 10 });
    eq(big.json.results.length, 2, 'top_n above the count: all');
});
await step('documents as objects', async () => {
    const { json } = await post('/v1/rerank', { model: 'tiny', query: Q, documents: DOCS.map((text) => ({ text })),
                                                return_documents: true });
    eq(json.results.map((r) => [r.index, r.relevance_score]), base.results.map((r) => [r.index, r.relevance_score]),
       'objects score as strings');
    eq(json.results[0].document.text, DOCS[json.results[0].index], 'document text from the object');
});
await step('errors', async () => {
    const cases = [
        [{ model: 'tiny', documents: ['a'] }, 400, 'query'],
        [{ model: 'tiny', query: 7, documents: ['a'] }, 400, 'query'],
        [{ model: 'tiny', query: 'q', documents: [] }, 400, 'documents'],
        [{ model: 'tiny', query: 'q' }, 400, 'documents'],
        [{ model: 'tiny', query: 'q', documents: ['a', 5] }, 400, 'documents[1]'],
        [{ model: 'tiny', query: 'q', documents: ['a', { txt: 'b' }] }, 400, 'documents[1]'],
        [{ model: 'tiny', query: 'q', documents: ['a'], top_n: 0 }, 400, 'top_n'],
        [{ model: 'tiny', query: 'q', documents: ['a'], top_n: 1.5 }, 400, 'top_n'],
        [{ model: 'tiny', query: 'q', documents: ['a'], top_n: '2' }, 400, 'top_n'],
        [{ model: 'tiny', query: 'q', documents: ['a'], return_documents: 'yes' }, 400, 'return_documents'],
        [{ query: 'q', documents: ['a'] }, 400, 'model'],
        [{ model: 'nope', query: 'q', documents: ['a'] }, 404, 'model'],
        ['{"model": "tiny", ', 400, null],
    ];
    for (const [body, st, param] of cases) {
        const { status, json } = await post('/v1/rerank', body);
        eq([status, json.error && json.error.param], [st, param], `error for ${JSON.stringify(body)}`);
        check(json.error && typeof json.error.message === 'string' && json.error.message.length > 0, 'message');
    }
    const many = await post('/v1/rerank', { model: 'tiny', query: 'q', documents: Array(1025).fill('a') });
    eq([many.status, many.json.error && many.json.error.param], [400, 'documents'], 'too many documents');
});
await step('client gone mid-request', async () => {
    // The documents in flight are cancelled and the job freed (the server's
    // sanitizer log, checked at SIGTERM, shows no leak); the server goes on.
    const ac = new AbortController();
    const r = fetch(`${BASE}/v1/rerank`, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
                                            body: JSON.stringify({ model: 'tiny', query: Q, documents: Array(64).fill(DOCS[0]) }) });
    setTimeout(() => ac.abort(), 30);
    await r.then(() => {}, () => {});
    const { status } = await post('/v1/rerank', { model: 'tiny', query: Q, documents: [DOCS[1]] });
    eq(status, 200, 'served after an aborted request');
});
await step('metrics label', async () => {
    const text = await (await fetch(`${BASE}/metrics`)).text();
    check(/endpoint="\/v1\/rerank",status="200"/.test(text) || /status="200"[^\n]*endpoint="\/v1\/rerank"/.test(text),
          'requests counted under endpoint /v1/rerank');
});
finish('serve_rerank');
