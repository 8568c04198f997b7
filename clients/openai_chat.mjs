// tessera with the official OpenAI JS SDK (npm install openai).
//
//   node clients/openai_chat.mjs
//
// Settings from the environment; the defaults match the README's main
// command (`make demo`: build/serve on port 8000, adapter "support-bot",
// open mode, so any key is accepted):
//   TESSERA_BASE_URL  http://127.0.0.1:8000/v1  (the /v1 is part of it)
//   TESSERA_API_KEY   none                      (with --tenants: your key; it picks your tenant)
//   TESSERA_MODEL     support-bot               (an adapter name = its folder name, or the base model)
//   TESSERA_PROMPT    Where is my order?
import OpenAI from 'openai';

const env = process.env;
const client = new OpenAI({
    baseURL: env.TESSERA_BASE_URL || 'http://127.0.0.1:8000/v1',
    apiKey: env.TESSERA_API_KEY || 'none', // the SDK insists on one; open mode ignores it
    maxRetries: 0,
});
const model = env.TESSERA_MODEL || 'support-bot';
const messages = [{ role: 'user', content: env.TESSERA_PROMPT || 'Where is my order?' }];

// An HTTP error arrives as a typed error: AuthenticationError (401, bad key),
// NotFoundError (404: no such model, or not your tenant's), BadRequestError
// (400, with e.param naming the field), RateLimitError (429, busy).
try {
    // What this key's tenant may use: the base model (if allowed) and its adapters.
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    console.log(`models: ${ids.sort().join(' ')}`);

    // `model` picks the adapter; temperature 0 is greedy (the same answer every time).
    const r = await client.chat.completions.create({ model, messages, max_tokens: 64, temperature: 0 });
    console.log(`== ${model}`);
    console.log(r.choices[0].message.content);

    console.log(`== ${model}, streamed`);
    const stream = await client.chat.completions.create({ model, messages, max_tokens: 64, temperature: 0, stream: true });
    for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
    process.stdout.write('\n');
} catch (e) {
    console.error(`error: ${e.message}`);
    process.exit(1);
}
