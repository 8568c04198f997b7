// A connection flood against a running serve (echo engine), loopback only:
// FLOOD idle connections that send half a header block and wait, spread
// over source addresses 127.0.0.2.. (FLOOD_ADDRS of them, as a botnet
// would), while STREAMS chat streams run from 127.0.0.1 and /health is
// asked every 100 ms. Checks: every stream finishes with [DONE], /health
// answers 200 within 1 s every time, and once the flood is gone the
// server's RSS (VmRSS of SERVE_PID) is within 10% of its pre-flood value.
// ROUNDS=N floods in turn. Prints the numbers (bench/RESULTS.md has the
// 20,000 + 200 run).
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { BASE, check, eq, finish, step } from './lib.mjs';

const FLOOD = Number(process.env.FLOOD || 2000);
const FLOOD_ADDRS = Number(process.env.FLOOD_ADDRS || 8);
const STREAMS = Number(process.env.STREAMS || 20);
const ROUNDS = Number(process.env.ROUNDS || 1); // floods one after another
const PID = Number(process.env.SERVE_PID);
const PORT = Number(process.env.PORT);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function rssKiB() {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${PID}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
}

// One /health over a new connection (a pooled one made before the flood
// would hide a server that accepts no one new). {status, ms}; status 0 when
// refused, reset or not answered within 5 s.
function health() {
    return new Promise((resolve) => {
        const t0 = performance.now();
        let buf = '', settled = false;
        const s = net.connect({ port: PORT, host: '127.0.0.1' });
        const end = (error) => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            s.destroy();
            const m = /^HTTP\/1\.1 (\d+)/.exec(buf);
            resolve({ status: m && !error ? Number(m[1]) : 0, ms: performance.now() - t0, error });
        };
        const timer = setTimeout(() => end('no answer in 5 s'), 5000);
        s.on('connect', () => s.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
        s.on('data', (d) => { buf += d; if (buf.includes('{"status":"ok"}')) end(); });
        s.on('error', (e) => end(String(e)));
        s.on('close', () => end(buf ? undefined : 'closed without an answer'));
    });
}

async function stream(i) {
    const r = await fetch(`${BASE}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny-qwen3', stream: true, max_tokens: 64,
                               messages: [{ role: 'user', content: `stream ${i} says hello to the flood` }] }),
    });
    const text = await r.text();
    return r.status === 200 && text.includes('data: [DONE]');
}

// Opens n idle half-header connections, a batch at a time; the server may
// close any of them (that is the point), so errors are counted, not thrown.
function flood(n, sockets, stats) {
    return new Promise((resolve) => {
        let opened = 0;
        const batch = () => {
            for (let k = 0; k < 200 && opened < n; k++, opened++) {
                const s = net.connect({ port: PORT, host: '127.0.0.1', localAddress: `127.0.0.${2 + (opened % FLOOD_ADDRS)}` });
                s.on('connect', () => { stats.connected++; s.write('GET / HTTP/1.1\r\nHost: flood\r\nX-Slow: '); });
                s.on('data', (d) => { if (d.toString().startsWith('HTTP/1.1 503')) stats.refused++; });
                s.on('error', () => { stats.errors++; });
                s.on('close', () => { stats.closed++; });
                sockets.push(s);
            }
            if (opened < n) setTimeout(batch, 5);
            else resolve();
        };
        batch();
    });
}

for (let round = 1; round <= ROUNDS; round++) await step(`flood ${round}`, async () => {
    for (let i = 0; i < 20; i++) await health();
    // The same streams once without a flood first: the baseline then holds
    // what serving them costs (thread arenas, buffers), so the comparison
    // measures what the flood leaves behind.
    if (round === 1) await Promise.all(Array.from({ length: STREAMS }, (_, i) => stream(i)));
    await sleep(2000); // start-up memory the allocator is still handing back
    const rss0 = rssKiB();
    const lat = [];
    let polling = true;
    const poller = (async () => {
        while (polling) {
            lat.push(await health());
            await sleep(100);
        }
    })();
    const streams = Promise.all(Array.from({ length: STREAMS }, (_, i) => stream(i)));
    const sockets = [], stats = { connected: 0, refused: 0, errors: 0, closed: 0 };
    const t0 = performance.now();
    await flood(FLOOD, sockets, stats);
    await sleep(1000); // the flood holds while streams run
    const rssPeak = rssKiB();
    const done = await streams;
    const floodMs = performance.now() - t0;
    for (const s of sockets) s.destroy();
    await sleep(1500);
    polling = false;
    await poller;
    for (let i = 0; i < 20; i++) await health(); // the server settles
    await sleep(500);
    const rss1 = rssKiB();
    const bad = lat.filter((x) => x.status !== 200 || x.ms > 1000);
    const worst = Math.max(...lat.map((x) => x.ms));
    console.log(`flood ${round}/${ROUNDS}: ${FLOOD} half-header connections from ${FLOOD_ADDRS} addresses (${stats.connected} connected, ` +
                `${stats.closed} closed by the server or us, ${stats.refused} got 503), ${STREAMS} streams, ` +
                `${floodMs.toFixed(0)} ms; /health ${lat.length} probes, worst ${worst.toFixed(1)} ms; ` +
                `RSS before ${rss0} KiB, peak ${rssPeak} KiB, after ${rss1} KiB (${((rss1 / rss0 - 1) * 100).toFixed(1)}%)`);
    eq(done.filter((x) => x).length, STREAMS, 'streams finished with [DONE]');
    eq(bad.length, 0, `health probes over 1 s or not 200 (${JSON.stringify(bad.slice(0, 3))})`);
    check(lat.length >= 5, `health probed during the flood (${lat.length})`);
    check(rss1 <= rss0 * 1.10, `RSS after the flood ${rss1} KiB within 10% of ${rss0} KiB`);
});

finish('http/flood');
