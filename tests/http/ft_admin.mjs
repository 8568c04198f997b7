// An admin key cannot hand a tenant's fine-tuned model to others (serve/
// admin.c): POST /v1/load_lora_adapter refuses, 403 permission_error, a
// lora_path that is a published "ft:..." folder (directly or through a
// symlink) or lies inside the fine-tuning data folder, whatever the new
// name; the refused name is then served and listed to nobody, and the
// message shows no more of the server's file system than the client sent.
// A plain adapter folder still loads, lists by glob and unloads.
//
// Runs after tests/http/finetune.mjs, whose job (tenant acme) succeeded
// with model MODEL. Keys (tests/test_finetune.sh): sk-acme (acme, no
// globs), sk-globex (globex, adapters ["*"]), sk-ops (tenant ops, admin).
// Env: PORT; ADAPTERS (the adapters folder); DATA (--data-dir); TMP
// (scratch); MODEL (the fine-tuned model); PLAIN (an adapter folder for the
// tiny base, outside both folders).
import fs from 'node:fs';
import OpenAI from 'openai';
import { check, eq, finish, step, client, rejects, fetchJson } from './lib.mjs';

const { ADAPTERS, DATA, TMP, MODEL, PLAIN } = process.env;
const acme = client('sk-acme'), globex = client('sk-globex'), ops = client('sk-ops');
const listed = async (c) => (await c.models.list()).data.map((m) => m.id);
const admin = (p, body) => fetchJson(p, { method: 'POST', key: 'sk-ops', body: JSON.stringify(body) });
const load = (name, path) => admin('/v1/load_lora_adapter', { lora_name: name, lora_path: path });
const unload = (name) => admin('/v1/unload_lora_adapter', { lora_name: name });

// A refused load: 403 permission_error on lora_path, a message naming the
// rule and not the server's folders, and the name served to nobody.
async function refused(name, path, what, sent = path) {
    const r = await load(name, path);
    eq([r.status, r.json?.error?.type, r.json?.error?.param], [403, 'permission_error', 'lora_path'],
       `${what}: answer`);
    const msg = r.json?.error?.message ?? '';
    check(/served only to their own tenant/.test(msg), `${what}: message says why: ${msg}`);
    for (const dir of [ADAPTERS, DATA, TMP].filter((d) => !sent.startsWith(d)))
        check(!msg.includes(dir), `${what}: message shows no server folder: ${msg}`);
    check(!msg.includes(MODEL), `${what}: message does not name the fine-tuned model: ${msg}`);
    for (const [who, c] of [['globex', globex], ['admin', ops], ['acme', acme]])
        check(!(await listed(c)).includes(name), `${what}: ${who} does not list '${name}'`);
    const chat = () => globex.chat.completions.create({ model: name, messages: [{ role: 'user', content: 'hi' }],
                                                        max_tokens: 2 });
    await rejects(chat, OpenAI.NotFoundError, `${what}: globex chat`);
    eq((await unload(name)).status, 404, `${what}: nothing to unload`);
}

await step('the ft: folder under a new name', async () => {
    check(MODEL && MODEL.startsWith('ft:') && fs.existsSync(`${ADAPTERS}/${MODEL}`),
          `fine-tuned model ${MODEL} published`);
    check((await listed(acme)).includes(MODEL), 'its tenant lists it');
    await refused('support-bot', `${ADAPTERS}/${MODEL}`, 'by path');
    await refused('support-bot', `${ADAPTERS}/./${MODEL}/`, 'by a roundabout path');
});

await step('through a symlink', async () => {
    fs.symlinkSync(`${ADAPTERS}/${MODEL}`, `${TMP}/innocent`);
    await refused('innocent', `${TMP}/innocent`, 'symlink to the folder');
    fs.mkdirSync(`${TMP}/links`);
    fs.symlinkSync(ADAPTERS, `${TMP}/links/ads`);
    await refused('innocent', `${TMP}/links/ads/${MODEL}`, 'symlink to the adapters folder');
});

await step('inside the data folder', async () => {
    const inData = `${DATA}/admin-test-copy`;
    fs.cpSync(PLAIN, inData, { recursive: true });
    try {
        await refused('from-data', inData, 'a folder in --data-dir');
        fs.symlinkSync(inData, `${TMP}/to-data`);
        await refused('from-data', `${TMP}/to-data`, 'a symlink into --data-dir');
    } finally {
        fs.rmSync(inData, { recursive: true, force: true });
    }
});

await step('a plain folder still loads', async () => {
    let r = await load('plain-rt', PLAIN);
    eq(r.status, 200, `load a plain folder: ${r.text}`);
    check((await listed(globex)).includes('plain-rt'), 'globex (adapters ["*"]) lists it');
    check(!(await listed(acme)).includes('plain-rt'), 'acme (no globs) does not');
    fs.symlinkSync(PLAIN, `${TMP}/plain-link`);
    r = await load('plain-link', `${TMP}/plain-link`);
    eq(r.status, 200, `load a plain folder through a symlink: ${r.text}`);
    for (const name of ['plain-rt', 'plain-link']) eq((await unload(name)).status, 200, `unload ${name}`);
    check(!(await listed(globex)).includes('plain-rt'), 'gone after unload');
    check((await listed(acme)).includes(MODEL), 'the fine-tuned model is still its tenant\'s');
});

finish('ft_admin.mjs');
