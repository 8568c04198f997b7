// Fine-tuning through the official OpenAI SDK, as OpenAI's guide does it:
// upload a JSONL file, create a job, poll it and its events until it
// succeeds, then chat with job.fine_tuned_model and get the trained answers
// (greedy) that the base model does not give. Also: a bad file fails in
// validating_files naming its bad lines; a running job is cancelled and
// leaves no folder behind; another tenant (even with an "adapters": ["*"]
// glob, even an admin key) gets 404 for the file, the job and the model;
// jobs and events paginate; upload limits and request errors.
//
// Env: PORT; ADAPTERS (the server's adapters folder); DATA (its --data-dir);
// DATASET (the training JSONL: questions and answers); TMP (scratch).
// Keys (tests/test_finetune.sh writes them): sk-acme and sk-acme-2 (tenant
// acme), sk-globex (tenant globex, adapters ["*"]), sk-ops (admin).
import fs from 'node:fs';
import OpenAI from 'openai';
import { check, eq, finish, step, client, sleep, rejects, fetchJson } from './lib.mjs';

const ADAPTERS = process.env.ADAPTERS, DATA = process.env.DATA, DATASET = process.env.DATASET, TMP = process.env.TMP;
const acme = client('sk-acme', { timeout: 120000 }), acme2 = client('sk-acme-2');
const globex = client('sk-globex'), ops = client('sk-ops');
const examples = fs.readFileSync(DATASET, 'utf8').trim().split('\n').map((l) => JSON.parse(l).messages);
const DONE = ['succeeded', 'failed', 'cancelled'];

// Polls retrieve and listEvents as OpenAI's guide does; returns the final
// job, every status seen and the events (oldest first).
async function follow(c, id, until = (j) => DONE.includes(j.status), ms = 240000) {
    const statuses = new Set(), events = new Map();
    const end = Date.now() + ms;
    for (;;) {
        const job = await c.fineTuning.jobs.retrieve(id);
        statuses.add(job.status);
        for await (const ev of c.fineTuning.jobs.listEvents(id, { limit: 50 })) events.set(ev.id, ev);
        if (until(job, [...events.values()]) || Date.now() > end) {
            // The listing is newest first (ids are random, times in seconds): reverse one full listing.
            const evs = [];
            for await (const ev of c.fineTuning.jobs.listEvents(id, { limit: 100 })) evs.push(ev);
            return { job, statuses, events: evs.reverse() };
        }
        await sleep(300);
    }
}

async function ask(c, model, question) {
    const r = await c.chat.completions.create({ model, messages: [{ role: 'user', content: question }],
                                                max_tokens: 60, temperature: 0 });
    return r.choices[0].message.content;
}

const folders = () => fs.readdirSync(ADAPTERS);
const hp = { n_epochs: 30, batch_size: 2, learning_rate_multiplier: 30 };
let file = null, val = null, bad = null, job = null, badJob = null, cancelled = null;

await step('upload', async () => {
    file = await acme.files.create({ file: fs.createReadStream(DATASET), purpose: 'fine-tune' });
    eq([file.object, file.purpose, file.filename, file.bytes], ['file', 'fine-tune', DATASET.split('/').pop(),
        fs.statSync(DATASET).size], 'file object');
    check(/^file-[0-9a-f]{24}$/.test(file.id), `file id ${file.id}`);
    eq((await acme.files.retrieve(file.id)).bytes, file.bytes, 'retrieve');
    const body = await (await acme.files.content(file.id)).text();
    eq(body, fs.readFileSync(DATASET, 'utf8'), 'content round trip');
    const mine = [];
    for await (const f of acme.files.list()) mine.push(f.id);
    check(mine.includes(file.id), 'files.list has the upload');
    const theirs = [];
    for await (const f of globex.files.list()) theirs.push(f.id);
    check(!theirs.includes(file.id), 'another tenant does not list it');
    await rejects(() => globex.files.retrieve(file.id), OpenAI.NotFoundError, 'another tenant: retrieve');
    await rejects(() => globex.files.content(file.id), OpenAI.NotFoundError, 'another tenant: content');
    await rejects(() => globex.files.delete(file.id), OpenAI.NotFoundError, 'another tenant: delete');
    await rejects(() => acme.files.create({ file: fs.createReadStream(DATASET), purpose: 'assistants' }),
                  OpenAI.BadRequestError, 'purpose other than fine-tune');
});

await step('create', async () => {
    // A validation file (three of the examples): its loss is evaluated each epoch.
    fs.writeFileSync(`${TMP}/val.jsonl`, fs.readFileSync(DATASET, 'utf8').trim().split('\n').slice(0, 3).join('\n') + '\n');
    val = await acme.files.create({ file: fs.createReadStream(`${TMP}/val.jsonl`), purpose: 'fine-tune' });
    job = await acme.fineTuning.jobs.create({ model: 'tiny', training_file: file.id, validation_file: val.id,
                                              suffix: 'support', seed: 1,
                                              method: { type: 'supervised', supervised: { hyperparameters: hp } } });
    check(/^ftjob-[0-9a-f]{24}$/.test(job.id), `job id ${job.id}`);
    eq([job.object, job.status, job.model, job.training_file, job.validation_file, job.fine_tuned_model, job.seed,
        job.error], ['fine_tuning.job', 'validating_files', 'tiny', file.id, val.id, null, 1, null], 'new job');
    eq(job.method.supervised.hyperparameters, hp, 'hyperparameters echoed');
    eq(job.user_provided_suffix, 'support', 'suffix');
});

await step('bad file fails in validating_files', async () => {
    const lines = fs.readFileSync(DATASET, 'utf8').trim().split('\n');
    lines.splice(1, 0, '{"messages": [{"role": "user", "content": "no answer"}]}'); // line 2
    lines.splice(3, 0, '{not json');                                                 // line 4
    fs.writeFileSync(`${TMP}/bad.jsonl`, lines.join('\n') + '\n');
    bad = await acme.files.create({ file: fs.createReadStream(`${TMP}/bad.jsonl`), purpose: 'fine-tune' });
    badJob = await acme.fineTuning.jobs.create({ model: 'tiny', training_file: bad.id, hyperparameters: hp });
    const { job: j, statuses } = await follow(acme, badJob.id);
    eq(j.status, 'failed', 'bad file job status');
    check(!statuses.has('running'), `the bad job never ran: ${[...statuses]}`);
    eq(j.error && j.error.code, 'invalid_training_file', 'error code');
    eq(j.error && j.error.param, 'training_file', 'error param');
    check(j.error && /line 2\b/.test(j.error.message) && /line 4\b/.test(j.error.message) &&
          !/line 3\b/.test(j.error.message), `message names lines 2 and 4: ${j.error && j.error.message}`);
    check(j.finished_at >= j.created_at, 'finished_at set');
    // A good training file with a bad validation file fails on the latter.
    const vj = await acme.fineTuning.jobs.create({ model: 'tiny', training_file: file.id, validation_file: bad.id });
    const { job: v } = await follow(acme, vj.id);
    eq([v.status, v.error && v.error.code, v.error && v.error.param],
       ['failed', 'invalid_validation_file', 'validation_file'], 'bad validation file');
    check(v.error && /line 2\b/.test(v.error.message), `validation file message: ${v.error && v.error.message}`);
    badJob = [vj, badJob]; // both are listed below (newest first)
});

await step('create errors', async () => {
    const e1 = await rejects(() => acme.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: file.id }),
                             OpenAI.BadRequestError, 'unknown base model');
    eq(e1 && e1.param, 'model', 'param of an unknown model');
    const theirs = await globex.files.create({ file: fs.createReadStream(DATASET), purpose: 'fine-tune' });
    const e2 = await rejects(() => acme.fineTuning.jobs.create({ model: 'tiny', training_file: theirs.id }),
                             OpenAI.BadRequestError, "another tenant's file");
    eq(e2 && e2.param, 'training_file', "param of another tenant's file");
    await rejects(() => acme.fineTuning.jobs.create({ model: 'tiny', training_file: file.id,
                                                      hyperparameters: { n_epochs: 0 } }),
                  OpenAI.BadRequestError, 'n_epochs 0');
    await rejects(() => acme.fineTuning.jobs.create({ model: 'tiny', training_file: file.id,
                                                      method: { type: 'dpo', dpo: {} } }),
                  OpenAI.BadRequestError, 'dpo');
    await rejects(() => acme.fineTuning.jobs.create({ model: 'tiny', training_file: file.id, suffix: 'a b' }),
                  OpenAI.BadRequestError, 'suffix with a space');
    await globex.files.delete(theirs.id);
});

await step('train, poll, serve', async () => {
    const { job: j, statuses, events } = await follow(acme, job.id);
    eq(j.status, 'succeeded', `job status (error: ${JSON.stringify(j.error)})`);
    check(statuses.has('running'), `statuses seen: ${[...statuses]}`);
    eq(j.fine_tuned_model, `ft:tiny:acme:support:${job.id}`, 'fine_tuned_model');
    check(j.trained_tokens > 0, `trained_tokens ${j.trained_tokens}`);
    const metrics = events.filter((e) => e.type === 'metrics' && 'train_loss' in e.data);
    const evals = events.filter((e) => e.type === 'metrics' && 'valid_loss' in e.data);
    eq(evals.length, 30, 'a validation loss per epoch');
    check(evals.length && evals[evals.length - 1].data.valid_loss < evals[0].data.valid_loss,
          'the validation loss went down');
    check(metrics.length >= 10, `metrics events: ${metrics.length}`);
    const steps = metrics.map((e) => e.data.step);
    check(steps.every((s, i) => i === 0 || s > steps[i - 1]), 'metrics steps increase');
    eq(metrics.length && metrics[metrics.length - 1].data.step, 120, 'last step = 30 epochs x 4 steps');
    check(metrics.length && metrics[0].data.train_loss > metrics[metrics.length - 1].data.train_loss,
          'the training loss went down');
    check(events.some((e) => /successfully completed/.test(e.message)), 'completion event');
    // Servable the moment the job reads succeeded: no wait here.
    let trained = 0, base = 0;
    for (const [u, a] of examples) {
        const got = await ask(acme, j.fine_tuned_model, u.content);
        check(got.includes(a.content), `fine-tuned answer to ${u.content}: ${JSON.stringify(got)}`);
        trained += got.includes(a.content);
        base += (await ask(acme, 'tiny', u.content)).includes(a.content);
    }
    eq([trained, base], [examples.length, 0], 'trained answers from the fine-tuned model, none from the base');
    job = j;
});

await step('tenant isolation', async () => {
    const m = job.fine_tuned_model;
    check(folders().includes(m), 'the adapter folder is named after the model');
    const listed = async (c) => (await c.models.list()).data.map((x) => x.id);
    check((await listed(acme)).includes(m), 'acme lists its model');
    check((await listed(acme2)).includes(m), "acme's other key lists it");
    check(!(await listed(globex)).includes(m), 'globex (adapters ["*"]) does not list it');
    check(!(await listed(ops)).includes(m), 'the admin key does not list it');
    eq((await acme2.models.retrieve(m)).id, m, "acme's other key retrieves it");
    for (const [name, c] of [['globex', globex], ['admin', ops]]) {
        await rejects(() => ask(c, m, 'Where is my order?'), OpenAI.NotFoundError, `${name}: chat with it`);
        await rejects(() => c.models.retrieve(m), OpenAI.NotFoundError, `${name}: models.retrieve`);
        await rejects(() => c.fineTuning.jobs.retrieve(job.id), OpenAI.NotFoundError, `${name}: jobs.retrieve`);
        await rejects(() => c.fineTuning.jobs.cancel(job.id), OpenAI.NotFoundError, `${name}: jobs.cancel`);
        await rejects(() => c.fineTuning.jobs.listEvents(job.id), OpenAI.NotFoundError, `${name}: listEvents`);
        const ids = (await c.fineTuning.jobs.list()).data.map((x) => x.id);
        check(!ids.includes(job.id), `${name}: jobs.list hides it`);
    }
    const got = await ask(acme2, m, examples[1][0].content);
    check(got.includes(examples[1][1].content), "acme's other key gets the trained answer");
});

await step('checkpoints', async () => {
    const cps = [];
    for await (const cp of acme.fineTuning.jobs.checkpoints.list(job.id)) cps.push(cp);
    eq(cps.length, 1, 'one (final) checkpoint');
    eq(cps[0] && [cps[0].fine_tuned_model_checkpoint, cps[0].step_number, cps[0].fine_tuning_job_id],
       [job.fine_tuned_model, 120, job.id], 'checkpoint');
});

await step('cancel a running job', async () => {
    const c = await acme.fineTuning.jobs.create({ model: 'tiny', training_file: file.id, suffix: 'cancelme',
                                                  hyperparameters: { n_epochs: 100 } });
    const { job: running } = await follow(acme, c.id, (j, evs) => j.status === 'running' &&
                                          evs.some((e) => e.type === 'metrics'), 120000);
    eq(running.status, 'running', 'the job to cancel is running');
    const work = `${DATA}/jobs/${c.id}.work`;
    check(fs.existsSync(work), 'the running job has a work folder');
    cancelled = await acme.fineTuning.jobs.cancel(c.id);
    eq(cancelled.status, 'cancelled', 'cancel answers cancelled');
    for (let i = 0; i < 100 && fs.existsSync(work); i++) await sleep(100);
    check(!fs.existsSync(work), 'the work folder is gone');
    const left = folders().filter((n) => n.includes(c.id) || n.startsWith('.'));
    eq(left, [], 'nothing of the cancelled job in the adapters folder');
    const after = await acme.fineTuning.jobs.retrieve(c.id);
    eq([after.status, after.fine_tuned_model], ['cancelled', null], 'cancelled job');
    await rejects(() => acme.fineTuning.jobs.cancel(c.id), OpenAI.BadRequestError, 'cancel twice');
    await rejects(() => acme.fineTuning.jobs.cancel(job.id), OpenAI.BadRequestError, 'cancel a succeeded job');
    const evs = [];
    for await (const e of acme.fineTuning.jobs.listEvents(c.id)) evs.push(e.message);
    check(evs.some((m) => /cancelled/.test(m)), 'a cancel event');
    cancelled = after;
});

await step('pagination', async () => {
    const all = [];
    for await (const j of acme.fineTuning.jobs.list({ limit: 1 })) all.push(j.id);
    const want = [cancelled.id, badJob[0].id, badJob[1].id, job.id];
    eq(all, want, 'every job, newest first, one per page');
    const p1 = await acme.fineTuning.jobs.list({ limit: 3 });
    eq([p1.data.map((j) => j.id), p1.has_more], [want.slice(0, 3), true], 'page 1');
    const p2 = await acme.fineTuning.jobs.list({ limit: 3, after: p1.data[2].id });
    eq([p2.data.map((j) => j.id), p2.has_more], [want.slice(3), false], 'page 2');
    const e1 = await acme.fineTuning.jobs.listEvents(job.id, { limit: 3 });
    eq([e1.data.length, e1.has_more], [3, true], 'events page of 3');
    check(e1.data.every((e, i) => i === 0 || e.created_at <= e1.data[i - 1].created_at), 'events newest first');
    const evs = [];
    for await (const e of acme.fineTuning.jobs.listEvents(job.id, { limit: 7 })) evs.push(e);
    check(evs.length > 10 && new Set(evs.map((e) => e.id)).size === evs.length, `events paged: ${evs.length}`);
    eq(evs.length && evs[evs.length - 1].message, `Created fine-tuning job: ${job.id}`, 'oldest event last');
    await rejects(() => acme.fineTuning.jobs.list({ limit: 0 }), OpenAI.BadRequestError, 'limit 0');
});

await step('file delete', async () => {
    const d = await acme.files.delete(bad.id);
    eq([d.id, d.deleted], [bad.id, true], 'deleted');
    await rejects(() => acme.files.retrieve(bad.id), OpenAI.NotFoundError, 'deleted file');
    check(!fs.existsSync(`${DATA}/files/${bad.id}.data`), 'its bytes are gone');
});

await step('upload limit', async () => {
    // The server runs with --max-file-bytes 65536.
    fs.writeFileSync(`${TMP}/big.jsonl`, Buffer.alloc(70000, 'x'));
    const e = await rejects(() => acme.files.create({ file: fs.createReadStream(`${TMP}/big.jsonl`),
                                                      purpose: 'fine-tune' }), OpenAI.APIError, 'oversized');
    eq(e && e.status, 413, 'oversized upload status');
});

await step('http edges', async () => {
    const key = 'sk-acme';
    const mp = (body, boundary = 'B0') => ({ method: 'POST', key, body,
                                            headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` } });
    let r = await fetchJson('/v1/files', { method: 'POST', key, body: '{"purpose":"fine-tune"}' });
    check(r.status === 400 && /multipart/.test(r.json.error.message), `JSON upload: ${r.status} ${r.text}`);
    r = await fetchJson('/v1/files', mp('--B0\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n{}'));
    check(r.status === 400 && /truncated/.test(r.json.error.message), `truncated form: ${r.status} ${r.text}`);
    r = await fetchJson('/v1/files', mp('--B0\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--B0--'));
    check(r.status === 400 && r.json.error.param === 'file', `no file part: ${r.status} ${r.text}`);
    r = await fetchJson('/v1/files', { method: 'PUT', key, body: '' });
    eq([r.status, r.headers.get('allow')], [405, 'GET, POST'], 'PUT /v1/files');
    r = await fetchJson('/v1/files');
    eq(r.status, 401, 'no key');
    r = await fetchJson('/v1/files?limit=0', { key });
    eq([r.status, r.json && r.json.error.param], [400, 'limit'], 'limit=0');
    r = await fetchJson(`/v1/files/${file.id}/bogus`, { key });
    eq(r.status, 404, 'unknown file sub-path');
    r = await fetchJson(`/v1/fine_tuning/jobs/${job.id}/bogus`, { key });
    eq(r.status, 404, 'unknown job sub-path');
    r = await fetchJson(`/v1/fine_tuning/jobs/${job.id}`, { method: 'POST', key, body: '{}' });
    eq([r.status, r.headers.get('allow')], [405, 'GET'], 'POST a job');
    r = await fetchJson(`/v1/fine_tuning/jobs/${job.id}/cancel`, { key });
    eq([r.status, r.headers.get('allow')], [405, 'POST'], 'GET cancel');
    r = await fetchJson('/v1/fine_tuning/jobs', { method: 'POST', key, body: 'not json' });
    eq(r.status, 400, 'job body not JSON');
    r = await fetchJson('/v1/fine_tuning/jobs', { method: 'POST', key, body: JSON.stringify({ model: 'tiny' }) });
    eq([r.status, r.json && r.json.error.param], [400, 'training_file'], 'no training_file');
    r = await fetchJson('/v1/fine_tuning/nope', { key });
    eq(r.status, 404, 'unknown fine_tuning path');
    // Nobody, not even an admin, can register a runtime adapter in the ft: namespace.
    r = await fetchJson('/v1/load_lora_adapter', { method: 'POST', key: 'sk-ops',
        body: JSON.stringify({ lora_name: `ft:tiny:ops::ftjob-x`, lora_path: `${ADAPTERS}/${job.fine_tuned_model}` }) });
    eq([r.status, r.json && r.json.error.param], [400, 'lora_name'], 'load_lora_adapter with an ft: name');
    r = await fetchJson('/metrics');
    check(/endpoint="\/v1\/fine_tuning\/jobs\/\{id\}"/.test(r.text) && /endpoint="\/v1\/files"/.test(r.text),
          'metrics label the new endpoints by route');
});

fs.writeFileSync(`${TMP}/ids.json`, JSON.stringify({ file: file && file.id, job: job && job.id,
                                                     model: job && job.fine_tuned_model }));
finish('finetune.mjs');
