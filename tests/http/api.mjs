// The server without an engine: auth, tenants, models, validation, the
// HTTP layer's limits and keep-alive/pipelining, through the official
// OpenAI SDK and raw sockets. Run by tests/test_http.sh (PORT set).
import OpenAI from 'openai';
import { BASE, Raw, check, client, eq, fetchJson, finish, rejects, req, sleep, step } from './lib.mjs';

const ACME = 'sk-acme-test-0001', GLOBEX = 'sk-globex-test-0002', ADMIN = 'sk-admin-test-0003';
const BASE_ID = 'tiny-qwen3';
const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'Hello' }], ...extra });

await step('models.list per tenant', async () => {
    const ids = async (key) => (await client(key).models.list()).data.map((m) => m.id).sort();
    eq(await ids(ACME), ['acme-bot', 'acme-helper', 'shared-bot', BASE_ID].sort(), 'acme sees its adapters + base');
    eq(await ids(GLOBEX), ['globex-bot'], 'globex (base: false) sees only globex-bot');
    eq(await ids(ADMIN), ['acme-bot', 'acme-helper', 'globex-bot', 'shared-bot', BASE_ID].sort(),
       'admin sees every good adapter; the broken one is not offered');
    const page = await client(ACME).models.list();
    const m = page.data.find((x) => x.id === 'acme-bot');
    check(m && m.object === 'model' && typeof m.created === 'number' && m.owned_by === 'tessera', 'model object shape');
});

await step('models.retrieve', async () => {
    const m = await client(ACME).models.retrieve('acme-bot');
    eq([m.id, m.object], ['acme-bot', 'model'], 'own adapter');
    eq((await client(ACME).models.retrieve(BASE_ID)).id, BASE_ID, 'base model');
    const e = await rejects(() => client(ACME).models.retrieve('globex-bot'), OpenAI.NotFoundError,
                            "another tenant's adapter is 404");
    check(e && e.code === 'model_not_found', `code model_not_found: ${e && e.code}`);
    await rejects(() => client(ACME).models.retrieve('no-such-model'), OpenAI.NotFoundError, 'unknown model is 404');
    await rejects(() => client(GLOBEX).models.retrieve(BASE_ID), OpenAI.NotFoundError, 'base hidden when base: false');
    await rejects(() => client(ACME).models.retrieve('broken'), OpenAI.NotFoundError, 'a corrupt adapter is not offered');
});

await step('authentication', async () => {
    const e = await rejects(() => client('sk-wrong-key-123456').models.list(), OpenAI.AuthenticationError, 'wrong key');
    check(e && /Incorrect API key provided: sk-wr\*\*\*3456/.test(e.message), `masked key in message: ${e && e.message}`);
    check(e && e.code === 'invalid_api_key', 'code invalid_api_key');
    const r = await fetchJson('/v1/models');
    eq(r.status, 401, 'no Authorization header');
    check(r.json && /didn't provide an API key/.test(r.json.error.message), 'missing key message');
    eq(r.json && r.json.error.type, 'invalid_request_error', 'error type');
    await rejects(() => client('sk-wrong').chat.completions.create(chat('acme-bot')), OpenAI.AuthenticationError,
                  'wrong key on chat');
    eq((await fetchJson('/health')).json, { status: 'ok' }, '/health needs no key');
});

await step('chat: model visibility and the missing engine', async () => {
    await rejects(() => client(ACME).chat.completions.create(chat('globex-bot')), OpenAI.NotFoundError,
                  "chat on another tenant's adapter");
    const e = await rejects(() => client(ACME).chat.completions.create(chat('acme-bot', { max_tokens: 8 })),
                            OpenAI.APIError, 'no engine');
    eq(e && e.status, 503, 'status 503');
    check(e && /generation engine not available in this build/.test(e.message), `message: ${e && e.message}`);
    eq(e && e.type, 'server_error', 'type server_error');
    const s = await rejects(() => client(ACME).chat.completions.create(chat(BASE_ID, { stream: true })),
                            OpenAI.APIError, 'no engine, streaming');
    eq(s && s.status, 503, 'streaming request is refused before the stream starts');
    const c = await rejects(() => client(ACME).completions.create({ model: 'shared-bot', prompt: ['a', 'b'] }),
                            OpenAI.APIError, 'completions without engine');
    eq(c && c.status, 503, 'completions 503');
});

await step('chat: validation errors name the param', async () => {
    const bad = async (body, param, what) => {
        const e = await rejects(() => client(ACME).chat.completions.create(body), OpenAI.BadRequestError, what);
        eq(e && e.param, param, `${what}: param`);
        return e;
    };
    await bad(chat('acme-bot', { temperature: 'hot' }), 'temperature', 'temperature string');
    await bad(chat('acme-bot', { temperature: 3 }), 'temperature', 'temperature range');
    await bad(chat('acme-bot', { n: 0 }), 'n', 'n range');
    await bad(chat('acme-bot', { logprobs: false, top_logprobs: 3 }), 'top_logprobs', 'top_logprobs needs logprobs');
    await bad(chat('acme-bot', { stop: ['a', 'b', 'c', 'd', 'e'] }), 'stop', 'five stops');
    await bad(chat('acme-bot', { logit_bias: { '999999999': 1 } }), 'logit_bias', 'bias token outside the vocabulary');
    await bad({ model: 'acme-bot', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
              'messages[0].content[0].type', 'image part');
    await bad({ model: 'acme-bot', messages: [] }, 'messages', 'empty messages');
    const e = await bad(chat('acme-bot', { max_tokens: 5000 }), 'messages', 'context length');
    check(e && e.code === 'context_length_exceeded' && /maximum context length is 4096 tokens/.test(e.message),
          `context message: ${e && e.message}`);
    const big = 'word '.repeat(5000);
    const e2 = await bad({ model: 'acme-bot', messages: [{ role: 'user', content: big }] }, 'messages',
                         'prompt alone over the context');
    check(e2 && e2.code === 'context_length_exceeded', 'context_length_exceeded without max_tokens');
    const p = await rejects(() => client(ACME).completions.create({ model: 'acme-bot', prompt: 'x', echo: true }),
                            OpenAI.BadRequestError, 'echo unsupported');
    eq(p && p.param, 'echo', 'echo param');
    const t = await rejects(() => client(ACME).completions.create({ model: 'acme-bot', prompt: [1, 2, 99999999] }),
                            OpenAI.BadRequestError, 'token id outside the vocabulary');
    eq(t && t.param, 'prompt', 'prompt param');
});

await step('raw: malformed JSON, bad UTF-8, wrong types, routes, methods', async () => {
    let r = await fetchJson('/v1/chat/completions', { method: 'POST', key: ACME, body: '{"model": "acme-bot", ' });
    eq(r.status, 400, 'malformed JSON');
    check(r.json && /could not parse the JSON body/.test(r.json.error.message), `message: ${r.text}`);
    eq(r.json && r.json.error.param, null, 'no param for malformed JSON');
    const badUtf8 = Buffer.concat([Buffer.from('{"model":"acme-bot","messages":[{"role":"user","content":"a'),
                                   Buffer.from([0xff, 0xfe]), Buffer.from('"}]}')]);
    r = await fetchJson('/v1/chat/completions', { method: 'POST', key: ACME, body: badUtf8 });
    eq(r.status, 400, 'bad UTF-8');
    eq(r.json && r.json.error.param, 'messages[0].content', 'bad UTF-8 names the field');
    check(r.json && /not valid UTF-8/.test(r.json.error.message), `UTF-8 message: ${r.text}`);
    r = await fetchJson('/v1/chat/completions', { method: 'POST', key: ACME,
                                                  body: JSON.stringify(chat('acme-bot', { max_tokens: 'ten' })) });
    eq([r.status, r.json && r.json.error.param], [400, 'max_tokens'], 'wrong type names the param');
    r = await fetchJson('/v1/nope', { key: ACME });
    eq(r.status, 404, 'unknown route');
    check(r.json && /Invalid URL \(GET \/v1\/nope\)/.test(r.json.error.message), `404 message: ${r.text}`);
    r = await fetchJson('/v1/chat/completions', { key: ACME });
    eq([r.status, r.headers.get('allow')], [405, 'POST'], 'GET on a POST route');
    r = await fetchJson('/v1/models', { method: 'DELETE', key: ACME });
    eq([r.status, r.headers.get('allow')], [405, 'GET'], 'DELETE on /v1/models');
    r = await fetchJson('/health', { method: 'POST', body: '{}' });
    eq(r.status, 405, 'POST /health');
});

await step('raw: body and header limits', async () => {
    const big = JSON.stringify(chat('acme-bot', { user: 'x'.repeat(70000) }));
    let r = await fetchJson('/v1/chat/completions', { method: 'POST', key: ACME, body: big });
    eq(r.status, 413, 'Content-Length over --max-body');
    check(r.json && r.json.error && /larger than the server accepts/.test(r.json.error.message), `413 body: ${r.text}`);
    // A client that sends a big body anyway still reads the 413 (no reset).
    let c = new Raw();
    await c.ready;
    c.write(req('POST', '/v1/chat/completions', { key: ACME, body: Buffer.alloc(4 << 20, 0x20) }));
    let res = await c.read(1);
    eq(res.map((x) => x.status), [413], '413 read whole while the body is still being sent');
    c.destroy();
    // Chunked: the cap applies while the body arrives.
    c = new Raw();
    await c.ready;
    c.write(req('POST', '/v1/chat/completions', { key: ACME, headers: { 'Transfer-Encoding': 'chunked' }, body: '' }));
    for (let i = 0; i < 10; i++) c.write(`2000\r\n${'y'.repeat(0x2000)}\r\n`);
    res = await c.read(1);
    eq(res.map((x) => x.status), [413], 'chunked body over the cap');
    check(await c.waitClose(), 'connection closed after 413');
    c.destroy();
    // A chunked body under the cap is read whole.
    c = new Raw();
    await c.ready;
    const body = JSON.stringify(chat('acme-bot', { temperature: 9 }));
    c.write(req('POST', '/v1/chat/completions', { key: ACME, headers: { 'Transfer-Encoding': 'chunked' }, body: '' }));
    c.write(`${(10).toString(16)}\r\n${body.slice(0, 10)}\r\n`);
    c.write(`${(body.length - 10).toString(16)}\r\n${body.slice(10)}\r\n0\r\n\r\n`);
    res = await c.read(1);
    eq([res[0] && res[0].status, res[0] && JSON.parse(res[0].body).error.param], [400, 'temperature'], 'chunked body parsed');
    c.destroy();
    // Headers over 16 KiB.
    c = new Raw();
    await c.ready;
    c.write(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'h'.repeat(20000)}\r\n\r\n`);
    res = await c.read(1);
    eq(res.map((x) => x.status), [431], 'headers too large');
    c.destroy();
    // Expect: 100-continue.
    c = new Raw();
    await c.ready;
    const b = JSON.stringify(chat('acme-bot', { n: 99 }));
    c.write(req('POST', '/v1/chat/completions', { key: ACME, headers: { Expect: '100-continue', 'Content-Length': String(b.length) }, body: '' }));
    res = await c.read(1);
    eq(res.map((x) => x.status), [100], '100 Continue before the body');
    c.write(b);
    res = await c.read(1);
    eq([res[0] && res[0].status, res[0] && JSON.parse(res[0].body).error.param], [400, 'n'], 'then the answer');
    c.destroy();
    // Garbage is a 400, then close.
    c = new Raw();
    await c.ready;
    c.write('NOT HTTP AT ALL\r\n\r\n');
    res = await c.read(1);
    eq(res.map((x) => x.status), [400], 'garbage request line');
    check(await c.waitClose(), 'closed after a parse error');
    c.destroy();
});

await step('raw: HEAD is GET without the body', async () => {
    for (const [path, key, len] of [['/health', null, 15], ['/v1/models/acme-bot', ACME, null]]) {
        const c = new Raw();
        await c.ready;
        c.write(req('HEAD', path, { key, headers: { Connection: 'close' } }));
        check(await c.waitClose(), `HEAD ${path}: closed after Connection: close`);
        const text = c.buf.toString('latin1');
        check(/^HTTP\/1\.1 200 /.test(text), `HEAD ${path} status line: ${text.split('\r\n')[0]}`);
        const cl = /\r\ncontent-length: (\d+)\r\n/i.exec(text);
        check(cl && (len === null ? Number(cl[1]) > 0 : Number(cl[1]) === len), `HEAD ${path} keeps GET's Content-Length: ${text}`);
        check(text.endsWith('\r\n\r\n'), `HEAD ${path}: no body after the headers: ${JSON.stringify(text.slice(-40))}`);
        c.destroy();
    }
});

await step('raw: keep-alive and pipelining', async () => {
    const c = new Raw();
    await c.ready;
    c.write(req('GET', '/health'));
    let r = await c.read(1);
    eq(r.map((x) => [x.status, x.headers.connection]), [[200, 'keep-alive']], 'first request on the socket');
    c.write(req('GET', '/v1/models/acme-bot', { key: ACME }));
    r = await c.read(1);
    eq(r.map((x) => [x.status, x.body && JSON.parse(x.body).id]), [[200, 'acme-bot']], 'second request, same socket');
    check(!c.closed, 'socket still open');
    // Pipelined: a quick one, one that goes to the thread pool (tokenizing)
    // before its 503, a 404, an error, and one more: answered in order.
    c.write(Buffer.concat([
        req('GET', '/v1/models', { key: GLOBEX }),
        req('POST', '/v1/chat/completions', { key: ACME, body: JSON.stringify(chat('acme-bot', { max_tokens: 4 })) }),
        req('GET', '/v1/models/globex-bot', { key: ACME }),
        req('POST', '/v1/completions', { key: ACME, body: '{bad json' }),
        req('GET', '/health'),
    ]));
    r = await c.read(5);
    eq(r.map((x) => x.status), [200, 503, 404, 400, 200], 'pipelined responses in request order');
    eq(r[0] && JSON.parse(r[0].body).data.map((m) => m.id), ['globex-bot'], 'first pipelined body');
    c.write(req('GET', '/health', { headers: { Connection: 'close' } }));
    r = await c.read(1);
    eq(r.map((x) => [x.status, x.headers.connection]), [[200, 'close']], 'Connection: close honoured');
    check(await c.waitClose(), 'server closed the socket after Connection: close');
    c.destroy();
});

await step('raw: clients that vanish or stall', async () => {
    // Disconnect mid-body.
    let c = new Raw();
    await c.ready;
    c.write(req('POST', '/v1/chat/completions', { key: ACME, headers: { 'Content-Length': '1000' }, body: '' }));
    c.write('{"model": "acme-bot", "mess');
    await sleep(50);
    c.destroy();
    // Disconnect right after a full request that goes to the thread pool.
    c = new Raw();
    await c.ready;
    c.write(req('POST', '/v1/chat/completions', { key: ACME, body: JSON.stringify(chat('acme-bot')) }));
    c.destroy();
    // Half-sent headers, then silence: 408 after --request-timeout (2 s).
    c = new Raw();
    await c.ready;
    c.write('GET /health HTTP/1.1\r\nHost: x\r\n');
    const r = await c.read(1, 6000);
    eq(r.map((x) => x.status), [408], 'slow client gets 408');
    check(await c.waitClose(), 'and is closed');
    c.destroy();
    // The server kept serving throughout.
    eq((await fetchJson('/health')).status, 200, 'health after the vanishing clients');
});

await step('raw: idle keep-alive connections are closed (--idle-timeout 3)', async () => {
    const c = new Raw();
    await c.ready;
    c.write(req('GET', '/health'));
    eq((await c.read(1)).map((x) => x.status), [200], 'one request');
    await sleep(2000);
    check(!c.closed, 'still open after 2 s');
    check(await c.waitClose(3000), 'closed after the idle timeout');
    c.destroy();
});

await step('raw: a request sent byte by byte', async () => {
    const c = new Raw();
    await c.ready;
    c.sock.setNoDelay(true);
    const bytes = req('POST', '/v1/chat/completions', { key: ACME, body: JSON.stringify(chat('acme-bot', { seed: 1.5 })) });
    for (let i = 0; i < bytes.length; i++) {
        c.write(bytes.subarray(i, i + 1));
        if (i % 4 === 0) await sleep(1);
    }
    const r = await c.read(1);
    eq(r.map((x) => [x.status, JSON.parse(x.body).error.param]), [[400, 'seed']], 'parsed across many reads');
    c.destroy();
});

// Bounded fuzz: mutated and random requests, split at random points, some
// abandoned half-way. The server must stay up and answer /health after.
await step('raw: fuzzed requests', async () => {
    let seed = 12345;
    const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const templates = [
        req('GET', '/v1/models', { key: ACME }),
        req('POST', '/v1/chat/completions', { key: ACME, body: JSON.stringify(chat('acme-bot', { max_tokens: 3 })) }),
        req('POST', '/v1/completions', { key: ACME, headers: { 'Transfer-Encoding': 'chunked' }, body: '5\r\n{"a":\r\n0\r\n\r\n' }),
    ];
    const statuses = new Map();
    for (let i = 0; i < 120; i++) {
        let b = Buffer.from(templates[rnd(templates.length)]);
        const kind = rnd(4);
        if (kind === 0) for (let k = 0; k < 1 + rnd(4); k++) b[rnd(b.length)] = rnd(256); // flip bytes
        else if (kind === 1) b = b.subarray(0, rnd(b.length)); // truncate
        else if (kind === 2) b = Buffer.concat([b, b.subarray(0, rnd(b.length))]); // pipelined + partial
        else b = Buffer.from(Array.from({ length: 1 + rnd(300) }, () => rnd(256))); // noise
        const c = new Raw();
        await c.ready;
        let off = 0;
        while (off < b.length) {
            const n = 1 + rnd(64);
            c.write(b.subarray(off, off + n));
            off += n;
        }
        const r = await c.read(1, 150);
        for (const x of r) statuses.set(x.status, (statuses.get(x.status) || 0) + 1);
        c.destroy();
    }
    check([...statuses.keys()].every((s) => [200, 400, 401, 404, 405, 413, 431, 503].includes(s)),
          `only expected statuses: ${JSON.stringify([...statuses])}`);
    eq((await fetchJson('/health')).status, 200, 'alive after the fuzz');
});

await step('concurrent clients', async () => {
    const all = [];
    for (let i = 0; i < 20; i++) all.push(client(i % 2 ? ACME : GLOBEX).models.list());
    const lists = await Promise.all(all);
    check(lists.every((l, i) => l.data.length === (i % 2 ? 4 : 1)), 'twenty concurrent lists, each its tenant\'s');
});

console.log(`base ${BASE}`);
finish('http/api');
