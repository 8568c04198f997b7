// GET /metrics after tests/http/engine.mjs has run against the server:
// Prometheus text (format 0.0.4) that parses line by line, needs no key,
// and whose counters moved with the traffic.
//
// Env: PORT; KV_BYTES and KV_BYTES_F32: `serve --inspect`'s kv_bytes_per_token
// for the served model with the default bf16 cache and with --kv-dtype f32.
// The server runs the default, so its gauge must equal the first and be
// half the second.
import { BASE, check, eq, finish, step } from './lib.mjs';

// name{labels} value, or name value; labels as k="v" pairs.
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*)?\})? (-?[0-9.e+-]+|\+Inf|NaN)$/;

function parse(text) {
    const samples = [];
    for (const line of text.split('\n')) {
        if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
        const m = SAMPLE.exec(line);
        check(m !== null, `a sample line: ${JSON.stringify(line)}`);
        if (m) samples.push({ name: m[1], labels: m[3] ?? '', value: Number(m[5]) });
    }
    return samples;
}
const value = (ss, name, labels = '') => ss.find((s) => s.name === name && s.labels === labels)?.value;

await step('format and counters', async () => {
    const r = await fetch(`${BASE}/metrics`); // no Authorization header
    eq(r.status, 200, 'status');
    check((r.headers.get('content-type') ?? '').startsWith('text/plain; version=0.0.4'), 'content type');
    const ss = parse(await r.text());
    for (const n of ['tessera_prompt_tokens_total', 'tessera_generation_tokens_total', 'tessera_adapters_loaded_total',
                     'tessera_step_seconds_count', 'tessera_step_seconds_sum'])
        check(value(ss, n) > 0, `${n} > 0 (got ${value(ss, n)})`);
    for (const n of ['tessera_queue_depth', 'tessera_running_sequences', 'tessera_batch_tokens',
                     'tessera_adapters_resident', 'tessera_adapter_load_failures_total', 'tessera_cancelled_total'])
        check(value(ss, n) >= 0, `${n} present`);
    check(value(ss, 'tessera_cancelled_total') >= 1, 'the disconnect was counted as a cancel');
    const kvb = value(ss, 'tessera_kv_bytes_per_token');
    check(kvb > 0, `tessera_kv_bytes_per_token > 0 (got ${kvb})`);
    eq(kvb, Number(process.env.KV_BYTES), 'tessera_kv_bytes_per_token = serve --inspect kv_bytes_per_token (bf16)');
    eq(2 * kvb, Number(process.env.KV_BYTES_F32), 'tessera_kv_bytes_per_token is half the --kv-dtype f32 figure');
    const chat200 = value(ss, 'tessera_requests_total', 'endpoint="/v1/chat/completions",status="200"');
    check(chat200 >= 10, `chat completions answered 200 counted (got ${chat200})`);
    const buckets = ss.filter((s) => s.name === 'tessera_step_seconds_bucket');
    check(buckets.length >= 2 && buckets.at(-1).labels === 'le="+Inf"', 'buckets end with +Inf');
    check(buckets.every((b, i) => i === 0 || b.value >= buckets[i - 1].value), 'buckets are cumulative');
    eq(buckets.at(-1)?.value, value(ss, 'tessera_step_seconds_count'), '+Inf bucket = _count');
    const r2 = await fetch(`${BASE}/metrics`, { method: 'POST' });
    eq(r2.status, 405, 'POST /metrics');
});

finish('metrics.mjs');
