// Load generator for build/serve (run by bench/serve.sh, or by hand against a
// running server):
//
//   node bench/serve_load.mjs --url http://127.0.0.1:PORT --adapters a00,a01,...
//        [--conc 1,16,64] [--nadapters 1,16] [--requests 1:32,16:160,64:512]
//        [--max-tokens 32] [--warmup 2] [--base-model NAME] [--lora-field 1]
//        [--tag TEXT] [--json FILE] [--warmup-tokens N] [--count-partial 1]
//
// For each concurrency C and adapter count A it keeps C streaming
// /v1/chat/completions requests in flight (closed loop: a stream that ends
// starts the next request) until N requests have been sent; requests go
// round robin over the first A adapters. Raw fetch + SSE parsing, so the
// client adds little on top of the server. Per request:
//   TTFT = request sent -> first SSE chunk with non-empty delta.content
//   ITL  = gaps between successive content chunks (one chunk per token,
//          except where the detokenizer holds back an incomplete UTF-8 char)
//   output tokens = usage.completion_tokens (stream_options.include_usage)
// requests/s and output tokens/s = completed requests / tokens over the wall
// time of the cell (first send -> last stream end). Percentiles: nearest rank.
// Prompts differ per request (a request number up front) and are ~64 tokens
// after the chat template (the table prints the measured mean).
//
// For bench/peer.sh, which drives llama-server with the same load:
//   an adapter count of 0 sends every request to the base model
//   (--base-model, default "base"); --lora-field 1 also names the adapter
//   the way llama-server takes it, "lora": [{"id": i, "scale": 1}] with i
//   its index in --adapters (base requests carry no lora field); --tag puts
//   TEXT before every prompt, so repeated runs send prompts no server has
//   cached; --json FILE writes the table's rows as JSON; --warmup-tokens
//   caps the warm-up requests' max_tokens (default --max-tokens);
//   --count-partial 1 adds to the output tokens of a cell the content chunks
//   a stream that then failed had delivered (about one per token; such a
//   stream still counts as an error, and its TTFT/ITL are left out).

const args = Object.fromEntries(
    process.argv.slice(2).reduce((acc, a, i, all) => {
        if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
        return acc;
    }, []));
const url = args.url ?? 'http://127.0.0.1:8000';
const adapters = (args.adapters ?? '').split(',').filter(Boolean);
const concs = (args.conc ?? '1,16,64').split(',').map(Number);
const nads = (args.nadapters ?? '1,16').split(',').map(Number);
const maxTokens = Number(args['max-tokens'] ?? 32);
const warmup = Number(args.warmup ?? 2);
const warmupTokens = Number(args['warmup-tokens'] ?? maxTokens);
const baseModel = args['base-model'] ?? 'base';
const loraField = args['lora-field'] === '1';
const tag = args.tag ?? '';
const countPartial = args['count-partial'] === '1';
const reqFor = Object.fromEntries((args.requests ?? '1:32,16:160,64:512')
    .split(',').map(s => s.split(':').map(Number)));

if (adapters.length < Math.max(...nads)) {
    console.error(`serve_load: need ${Math.max(...nads)} adapters, got ${adapters.length}`);
    process.exit(2);
}

const FILLER = 'Please summarize the following customer note in one short sentence ' +
    'and keep the tone polite. The order arrived two days late, the box was ' +
    'slightly damaged, but every item inside worked fine and the support team ' +
    'answered quickly when I asked about the tracking number. Thanks.';

async function one(model, n, tokens = maxTokens) {
    const req = {
        model, stream: true, stream_options: { include_usage: true },
        max_tokens: tokens, temperature: 0,
        messages: [{ role: 'user', content: `${tag}Request ${n}. ${FILLER}` }],
    };
    if (loraField && model !== baseModel) req.lora = [{ id: adapters.indexOf(model), scale: 1 }];
    const body = JSON.stringify(req);
    const t0 = performance.now();
    const r = { ttft: null, itl: [], tokens: 0, chunks: 0, prompt: 0, err: null, end: 0 };
    try {
        const res = await fetch(`${url}/v1/chat/completions`, {
            method: 'POST', headers: { 'Content-Type': 'application/json' }, body,
        });
        if (!res.ok) throw new Error(`HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
        const dec = new TextDecoder();
        let buf = '', last = null, done = false;
        for await (const chunk of res.body) {
            const now = performance.now();
            buf += dec.decode(chunk, { stream: true });
            let i;
            while ((i = buf.indexOf('\n\n')) >= 0) {
                const ev = buf.slice(0, i);
                buf = buf.slice(i + 2);
                for (const line of ev.split('\n')) {
                    if (!line.startsWith('data:')) continue;
                    const d = line.slice(5).trim();
                    if (d === '[DONE]') { done = true; continue; }
                    const j = JSON.parse(d);
                    if (j.error) throw new Error(`stream error ${JSON.stringify(j.error).slice(0, 200)}`);
                    if (j.usage) { r.tokens = j.usage.completion_tokens; r.prompt = j.usage.prompt_tokens; }
                    const c = j.choices?.[0]?.delta?.content;
                    if (c) {
                        r.chunks++;
                        if (last === null) r.ttft = now - t0; else r.itl.push(now - last);
                        last = now;
                    }
                }
            }
        }
        if (!done) throw new Error('stream ended without [DONE]');
        if (r.ttft === null) throw new Error('no content token');
    } catch (e) {
        r.err = String(e.message ?? e);
    }
    r.end = performance.now();
    return r;
}

async function cell(conc, nad, total) {
    const models = nad === 0 ? [baseModel] : adapters.slice(0, nad);
    let next = 0;
    const results = [];
    const t0 = performance.now();
    async function worker() {
        while (next < total) {
            const n = next++;
            results.push(await one(models[n % models.length], n));
        }
    }
    await Promise.all(Array.from({ length: conc }, worker));
    const wall = (performance.now() - t0) / 1000;
    return { results, wall };
}

function pct(a, p) {
    if (!a.length) return NaN;
    const s = [...a].sort((x, y) => x - y);
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p / 100 * s.length) - 1))];
}

const f = (x, d = 1) => Number.isFinite(x) ? x.toFixed(d) : '-';

// Warm-up: touch every adapter once (slot loads, page faults), not measured.
if (warmup > 0) {
    const models = adapters.slice(0, Math.max(...nads));
    if (nads.includes(0)) models.push(baseModel);
    await Promise.all(models.map((m, i) => one(m, -1 - i, warmupTokens)));
}

const rows = [];
console.log(`url=${url} max_tokens=${maxTokens} temperature=0 requests per cell: ` +
    concs.map(c => `c${c}=${reqFor[c] ?? 4 * c}`).join(' '));
console.log('');
console.log('| streams | adapters | requests | errors | wall s | req/s | out tok/s | prompt tok (mean) | out tok (mean) | TTFT p50 / p90 / p99 ms | ITL p50 / p90 / p99 ms |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const conc of concs) {
    for (const nad of nads) {
        const total = reqFor[conc] ?? 4 * conc;
        const { results, wall } = await cell(conc, nad, total);
        const ok = results.filter(r => !r.err);
        const errs = results.filter(r => r.err);
        const partial = countPartial ? errs.reduce((s, r) => s + r.chunks, 0) : 0;
        const toks = ok.reduce((s, r) => s + r.tokens, 0) + partial;
        const ttft = ok.map(r => r.ttft);
        const itl = ok.flatMap(r => r.itl);
        const row = {
            conc, nad, total, errors: errs.length, wall,
            rps: ok.length / wall, tps: toks / wall,
            prompt: ok.reduce((s, r) => s + r.prompt, 0) / (ok.length || 1),
            out: (toks - partial) / (ok.length || 1), partial,
            ttft: [50, 90, 99].map(p => pct(ttft, p)),
            itl: [50, 90, 99].map(p => pct(itl, p)),
        };
        rows.push(row);
        console.log(`| ${conc} | ${nad} | ${total} | ${row.errors} | ${f(wall)} | ${f(row.rps, 2)} | ${f(row.tps)} | ` +
            `${f(row.prompt)} | ${f(row.out)} | ${row.ttft.map(x => f(x, 0)).join(' / ')} | ` +
            `${row.itl.map(x => f(x, 1)).join(' / ')} |`);
        for (const e of errs.slice(0, 3)) console.log(`    error: ${e.err}`);
        if (partial) console.log(`    out tok/s includes ${partial} content chunks of the ${errs.length} failed streams`);
    }
}

if (nads.length >= 2) {
    const [a, b] = [nads[0], nads[nads.length - 1]];
    console.log('');
    console.log(`Same run: out tok/s with ${b} adapters / with ${a} adapter(s), per concurrency:`);
    for (const conc of concs) {
        const ra = rows.find(r => r.conc === conc && r.nad === a);
        const rb = rows.find(r => r.conc === conc && r.nad === b);
        console.log(`  ${conc} streams: ${f(rb.tps)} / ${f(ra.tps)} = ${f(rb.tps / ra.tps, 2)}x`);
    }
}
if (args.json) (await import('node:fs')).writeFileSync(args.json, JSON.stringify(rows) + '\n');
if (rows.some(r => r.errors)) process.exitCode = 1;
