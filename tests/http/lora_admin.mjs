// vLLM's runtime adapter endpoints: POST /v1/load_lora_adapter and
// /v1/unload_lora_adapter. Against the engine server in open mode (with
// --admin-key ADMIN_KEY): load a folder from a --lora-roots root outside
// the adapters folder, use it (greedy text = `serve --generate`), refuse
// bad input and paths outside the roots, unload it.
// With USER_KEY (a non-admin key of a tenants server): both answer 403.
//
// Env: PORT; ADMIN_KEY (default "none"); USER_KEY (optional); LORA_PATH
// (an adapter folder); EXP (optional: EXP/<name>.0.txt is its text for
// 'hello world', 24 tokens; also enables the generation checks).
import fs from 'node:fs';
import { BASE, check, eq, finish, step, client } from './lib.mjs';

const ADMIN = process.env.ADMIN_KEY ?? 'none', USER = process.env.USER_KEY, PATH = process.env.LORA_PATH;
const EXP = process.env.EXP;
const post = (p, key, body) => fetch(`${BASE}${p}`, { method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` }, body: JSON.stringify(body) });
const ids = async (key) => (await client(key).models.list()).data.map((m) => m.id);

if (USER) {
    await step('non-admin refused', async () => {
        for (const p of ['/v1/load_lora_adapter', '/v1/unload_lora_adapter']) {
            const r = await post(p, USER, { lora_name: 'rt-x', lora_path: PATH });
            eq(r.status, 403, `${p} status`);
            eq((await r.json()).error?.type, 'permission_error', `${p} error type`);
        }
    });
}

await step('load, use, unload', async () => {
    let r = await post('/v1/load_lora_adapter', ADMIN, { lora_name: 'rt-lora', lora_path: '/nonexistent/x' });
    eq(r.status, 403, 'path outside the roots');
    check(/not an adapter folder inside the allowed roots/.test((await r.json()).error?.message ?? ''),
          'bad path message names the problem');
    r = await post('/v1/load_lora_adapter', ADMIN, { lora_name: 'rt-lora' });
    eq(r.status, 400, 'missing lora_path');
    r = await post('/v1/load_lora_adapter', ADMIN, { lora_name: 'rt-lora', lora_path: PATH });
    eq(r.status, 200, 'load');
    r = await post('/v1/load_lora_adapter', ADMIN, { lora_name: 'rt-lora', lora_path: PATH });
    eq(r.status, 400, 'load again under the same name');
    check((await ids(ADMIN)).includes('rt-lora'), 'listed in /v1/models');
    const c = client(ADMIN, { timeout: 60000 });
    if (EXP) {
        const out = await c.chat.completions.create({ model: 'rt-lora', messages: [{ role: 'user', content: 'hello world' }],
            max_tokens: 24, temperature: 0 });
        eq(out.choices[0].message.content, fs.readFileSync(`${EXP}/rt-lora.0.txt`, 'utf8'), 'served text');
    }
    r = await post('/v1/unload_lora_adapter', ADMIN, { lora_name: 'rt-lora' });
    eq(r.status, 200, 'unload');
    r = await post('/v1/unload_lora_adapter', ADMIN, { lora_name: 'rt-lora' });
    eq(r.status, 404, 'unload again');
    check(!(await ids(ADMIN)).includes('rt-lora'), 'gone from /v1/models');
    if (EXP) {
        try {
            await c.chat.completions.create({ model: 'rt-lora', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
            check(false, 'unloaded adapter still served');
        } catch (e) {
            eq(e.status, 404, 'unloaded adapter answers 404');
        }
    }
});

finish('lora_admin.mjs');
