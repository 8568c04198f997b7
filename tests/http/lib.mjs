// Helpers the HTTP tests share: a tiny check kit, raw HTTP over a socket
// (for what fetch hides: pipelining, keep-alive, half-sent requests) and
// the OpenAI SDK client per key.
import net from 'node:net';
import OpenAI from 'openai';

export const PORT = Number(process.env.PORT);
export const BASE = `http://127.0.0.1:${PORT}`;
if (!PORT) throw new Error('PORT is not set');

let checks = 0, failures = 0;
export function check(cond, what) {
    checks++;
    if (!cond) {
        failures++;
        console.error(`CHECK failed: ${what}`);
    }
}
export function eq(a, b, what) {
    const ja = JSON.stringify(a), jb = JSON.stringify(b);
    check(ja === jb, `${what}: got ${ja}, want ${jb}`);
}
export function finish(name) {
    console.log(`${name}: ${checks} checks, ${failures} failed`);
    process.exit(failures === 0 && checks > 0 ? 0 : 1);
}

// One test step: errors are failures, not crashes, so every step runs.
export async function step(name, fn) {
    try {
        await fn();
    } catch (e) {
        checks++;
        failures++;
        console.error(`step ${name} threw: ${e && e.stack || e}`);
    }
}

export function client(apiKey, opts = {}) {
    return new OpenAI({ apiKey, baseURL: `${BASE}/v1`, maxRetries: 0, timeout: 20000, ...opts });
}

// Expects fn to reject with an instance of cls; returns the error.
export async function rejects(fn, cls, what) {
    try {
        await fn();
        check(false, `${what}: did not fail`);
    } catch (e) {
        check(e instanceof cls, `${what}: got ${e && e.constructor && e.constructor.name}: ${e && e.message}`);
        return e;
    }
    return null;
}

// Parses as many complete HTTP responses as buf holds. Returns
// {responses: [{status, headers, body}], rest}.
export function parseResponses(buf, max = Infinity) {
    const out = [];
    while (out.length < max) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) break;
        const head = buf.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(head[0].split(' ')[1]);
        const headers = {};
        for (const line of head.slice(1)) {
            const i = line.indexOf(':');
            headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
        }
        let p = end + 4;
        if (status === 100) {
            out.push({ status, headers, body: '' });
            buf = buf.subarray(p);
            continue;
        }
        let body;
        if (headers['transfer-encoding'] === 'chunked') {
            const parts = [];
            let done = false;
            for (;;) {
                const le = buf.indexOf('\r\n', p);
                if (le < 0) break;
                const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
                if (buf.length < le + 2 + size + 2) break;
                parts.push(buf.subarray(le + 2, le + 2 + size));
                p = le + 2 + size + 2;
                if (size === 0) { done = true; break; }
            }
            if (!done) break;
            body = Buffer.concat(parts);
        } else {
            const n = Number(headers['content-length'] || 0);
            if (buf.length < p + n) break;
            body = buf.subarray(p, p + n);
            p += n;
        }
        out.push({ status, headers, body: body.toString('utf8') });
        buf = buf.subarray(p);
    }
    return { responses: out, rest: buf };
}

// A raw connection: write bytes, wait for n responses (or the close).
export class Raw {
    constructor() {
        this.buf = Buffer.alloc(0);
        this.closed = false;
        this.waiters = [];
        this.sock = net.connect(PORT, '127.0.0.1');
        this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake(); });
        this.sock.on('close', () => { this.closed = true; this.wake(); });
        this.sock.on('error', () => {});
        this.ready = new Promise((res, rej) => { this.sock.once('connect', res); this.sock.once('error', rej); });
    }
    wake() { for (const w of this.waiters.splice(0)) w(); }
    write(data) { this.sock.write(data); }
    // Resolves with the first n responses parsed (consumed), or what there is on close/timeout.
    async read(n, ms = 10000) {
        const deadline = Date.now() + ms;
        for (;;) {
            const { responses, rest } = parseResponses(this.buf, n);
            if (responses.length >= n || this.closed || Date.now() > deadline) {
                this.buf = rest;
                return responses;
            }
            await new Promise((res) => { this.waiters.push(res); setTimeout(res, 50); });
        }
    }
    async waitClose(ms = 10000) {
        const deadline = Date.now() + ms;
        while (!this.closed && Date.now() < deadline) await new Promise((res) => { this.waiters.push(res); setTimeout(res, 50); });
        return this.closed;
    }
    destroy() { this.sock.destroy(); }
    end() { this.sock.end(); }
}

export function req(method, path, { body = null, headers = {}, key = null } = {}) {
    const h = { Host: `127.0.0.1:${PORT}`, ...headers };
    if (key) h.Authorization = `Bearer ${key}`;
    let b = body === null ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body);
    if (body !== null && !('Content-Length' in h) && !('Transfer-Encoding' in h)) h['Content-Length'] = String(b.length);
    if (body !== null && !('Content-Type' in h)) h['Content-Type'] = 'application/json';
    const head = `${method} ${path} HTTP/1.1\r\n` + Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n';
    return Buffer.concat([Buffer.from(head, 'latin1'), b]);
}

export async function fetchJson(path, { method = 'GET', body, key, headers = {} } = {}) {
    const h = { ...headers };
    if (key) h.Authorization = `Bearer ${key}`;
    if (body !== undefined && !h['Content-Type']) h['Content-Type'] = 'application/json';
    const r = await fetch(`${BASE}${path}`, { method, body, headers: h });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, headers: r.headers, text, json };
}

export const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
