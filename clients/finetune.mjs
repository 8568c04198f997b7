// Fine-tuning on tessera with the official OpenAI Node SDK, step by step as
// OpenAI's fine-tuning guide does it: upload the data, create the job, poll
// it, use the model. Only the base URL (and the base model's name) differ.
//
//   serve --model MODEL_DIR --adapters adapters --data-dir data &
//   OPENAI_BASE_URL=http://127.0.0.1:8000/v1 node clients/finetune.mjs
//
// Env: OPENAI_BASE_URL (default http://127.0.0.1:8000/v1), OPENAI_API_KEY
// (a key from --tenants; any text in open mode), BASE_MODEL (default: the
// server's base model), TRAINING_FILE (default clients/support_demo.jsonl),
// N_EPOCHS / BATCH_SIZE / LR_MULTIPLIER (defaults: what teaches the tiny
// demo model its eight answers), QUESTION.
import fs from 'node:fs';
import OpenAI from 'openai';

const client = new OpenAI({
    baseURL: process.env.OPENAI_BASE_URL || 'http://127.0.0.1:8000/v1',
    apiKey: process.env.OPENAI_API_KEY || 'none',
});
const trainingPath = process.env.TRAINING_FILE || 'clients/support_demo.jsonl';
const num = (v, d) => (v === undefined || v === '' ? d : v === 'auto' ? 'auto' : Number(v));

// The base model: the one model of /v1/models without a parent.
let base = process.env.BASE_MODEL;
if (!base) base = (await client.models.list()).data.find((m) => !m.parent).id;

// Step 1: upload the training file (JSONL, one chat per line).
const file = await client.files.create({ file: fs.createReadStream(trainingPath), purpose: 'fine-tune' });
console.log(`uploaded ${file.filename}: ${file.id} (${file.bytes} bytes)`);

// Step 2: create the fine-tuning job.
let job = await client.fineTuning.jobs.create({
    model: base,
    training_file: file.id,
    suffix: 'support',
    method: {
        type: 'supervised',
        supervised: {
            hyperparameters: {
                n_epochs: num(process.env.N_EPOCHS, 30),
                batch_size: num(process.env.BATCH_SIZE, 2),
                learning_rate_multiplier: num(process.env.LR_MULTIPLIER, 30),
            },
        },
    },
});
console.log(`created ${job.id}: ${job.status}`);

// Step 3: poll the job, printing its events as they come.
const seen = new Set();
while (!['succeeded', 'failed', 'cancelled'].includes(job.status)) {
    await new Promise((r) => setTimeout(r, 1000));
    job = await client.fineTuning.jobs.retrieve(job.id);
    const page = await client.fineTuning.jobs.listEvents(job.id, { limit: 100 });
    for (const ev of page.data.reverse()) {
        if (seen.has(ev.id)) continue;
        seen.add(ev.id);
        console.log(`  ${ev.message}`);
    }
}
console.log(`job ${job.id}: ${job.status}`);
if (job.status !== 'succeeded') {
    console.error(`error: ${job.error ? `${job.error.code}: ${job.error.message}` : 'none given'}`);
    process.exit(1);
}
console.log(`fine-tuned model: ${job.fine_tuned_model} (${job.trained_tokens} trained tokens)`);

// Step 4: use the fine-tuned model like any other.
const question = process.env.QUESTION || 'Where is my order?';
const completion = await client.chat.completions.create({
    model: job.fine_tuned_model,
    messages: [{ role: 'user', content: question }],
    temperature: 0,
    max_tokens: 60,
});
console.log(`Q: ${question}`);
console.log(`A: ${completion.choices[0].message.content}`);
