// Decode throughput of 16 streams all constrained by a JSON Schema vs the
// same 16 unconstrained, in one server run: rounds alternate (free,
// constrained, free, ...), each round sends its 16 requests at once and
// times them to the last answer; the medians of the rounds' tokens/s are
// compared. The schema (a table of at least 1000 rows) cannot complete
// within max_tokens, so every constrained stream decodes as many
// tokens as a free one. Also reports the grammar mask time from /metrics:
// all of it, and the part the steps waited for after the forward pass.
//
//   node bench/structured.mjs --url URL [--streams 16] [--rounds 5] [--max-tokens 128] [--temperature 1]
// The last line is the ratio (constrained / free tokens per second).
const arg = (name, def) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : def;
};
const URL_ = arg('url'), STREAMS = Number(arg('streams', 16)), ROUNDS = Number(arg('rounds', 5));
const MAX = Number(arg('max-tokens', 128)), TEMP = Number(arg('temperature', 1));
// A table: one key, then rows of (name, age, colour, flag) tuples; strings,
// integers, enums and booleans in every row, and it never completes.
const row = {
    type: 'array',
    prefixItems: [
        { type: 'string', maxLength: 16 },
        { type: 'integer', minimum: 0, maximum: 120 },
        { enum: ['red', 'green', 'blue'] },
        { type: 'boolean' },
    ],
    items: false,
    minItems: 4,
};
const schema = {
    type: 'object',
    properties: { rows: { type: 'array', minItems: 1000, items: row } },
    required: ['rows'],
    additionalProperties: false,
};
const rf = { type: 'json_schema', json_schema: { name: 'people', schema, strict: true } };

async function one(i, round, constrained) {
    const body = { model: 'bench', prompt: `Record ${i}:`, max_tokens: MAX, temperature: TEMP, seed: round * 100 + i };
    if (constrained) body.response_format = rf;
    const r = await fetch(`${URL_}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    const j = await r.json();
    if (r.status !== 200) throw new Error(`status ${r.status}: ${JSON.stringify(j)}`);
    if (j.choices[0].finish_reason !== 'length') throw new Error(`a ${constrained ? 'constrained' : 'free'} stream ended early`);
    return j.usage.completion_tokens;
}

async function round(k, constrained) {
    const t0 = performance.now();
    const toks = await Promise.all(Array.from({ length: STREAMS }, (_, i) => one(i, k, constrained)));
    const s = (performance.now() - t0) / 1000;
    return toks.reduce((a, b) => a + b, 0) / s;
}

async function metric(name) {
    const t = await (await fetch(`${URL_}/metrics`)).text();
    return Number((t.match(new RegExp(`^${name} (\\S+)$`, 'm')) || [])[1] || 0);
}

const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
await round(0, true); // warm-up: compiles the schema, builds the vocab
await round(0, false);
const m0 = await metric('tessera_grammar_mask_seconds_total'), w0 = await metric('tessera_grammar_mask_wait_seconds_total');
const n0 = await metric('tessera_grammar_masks_total');
const free = [], cons = [];
for (let k = 1; k <= ROUNDS; k++) {
    free.push(await round(k, false));
    cons.push(await round(k, true));
    console.log(`round ${k}: free ${free.at(-1).toFixed(1)} tok/s, constrained ${cons.at(-1).toFixed(1)} tok/s`);
}
const masks = (await metric('tessera_grammar_masks_total')) - n0;
const ms = (await metric('tessera_grammar_mask_seconds_total')) - m0;
const ws = (await metric('tessera_grammar_mask_wait_seconds_total')) - w0;
console.log(`streams ${STREAMS}, max_tokens ${MAX} (every stream ran to it), temperature ${TEMP}, rounds ${ROUNDS}: median free ${median(free).toFixed(1)} tok/s, ` +
            `constrained ${median(cons).toFixed(1)} tok/s`);
console.log(`masks ${masks}: ${(ms * 1e6 / Math.max(masks, 1)).toFixed(1)} us each, ${ms.toFixed(3)} s in all; ` +
            `steps waited ${ws.toFixed(3)} s for them after the forward (${ms > 0 ? (100 * (1 - Math.min(ws / ms, 1))).toFixed(0) : 0}% hidden)`);
console.log(`ratio constrained/free: ${(median(cons) / median(free)).toFixed(3)}x`);
