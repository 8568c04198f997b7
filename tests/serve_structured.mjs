// Structured output end to end, judged by oracles we did not write: the
// official `openai` SDK's chat.completions.parse with zodResponseFormat,
// @langchain/openai's withStructuredOutput(zod, {method: "jsonSchema"}),
// and ajv validating every answer against the schema that was sent. The
// model is random (tests/tools/mkmodel), so the schemas are ones whose
// values end: enums, bounded integers, strings with maxLength, arrays with
// maxItems, booleans, nested objects. Also: one batch mixing the base, two
// adapters, free and constrained sequences, json_object and json_schema,
// stream, n = 2, logprobs and /v1/completions; Qwen3's think block before
// the value; bad schemas as 400s naming the param; /metrics counters.
//
// Env (set by tests/test_serve_structured.sh): PORT; TOKENIZER, the model
// folder (tokenizer.json).
import fs from 'node:fs';
import Ajv from 'ajv';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { ChatOpenAI } from '@langchain/openai';
import { z } from 'zod';
import { check, eq, finish, step, client, rejects, BASE } from './http/lib.mjs';

const api = client('sk-none', { timeout: 120000 });
const ajv = new Ajv({ strict: false, allErrors: true });
const vocab = JSON.parse(fs.readFileSync(`${process.env.TOKENIZER}/tokenizer.json`, 'utf8'));
const added = Object.fromEntries(vocab.added_tokens.map((a) => [a.content, a.id]));
const idOf = (s) => vocab.model.vocab[s] ?? added[s];

const NO_THINK = { chat_template_kwargs: { enable_thinking: false } };
const MSG = [{ role: 'user', content: 'Review the film in JSON.' }];
const MAX = 800; // room for every value the schemas below allow, whitespace included

const Review = z.object({
    sentiment: z.enum(['positive', 'negative', 'neutral']),
    score: z.number().int().min(0).max(10),
    summary: z.string().max(12),
    tags: z.array(z.enum(['a', 'b', 'c'])).max(3),
    ok: z.boolean(),
    nested: z.object({ level: z.number().int().min(1).max(3), note: z.string().max(8).nullable() }),
});
const reviewFormat = zodResponseFormat(Review, 'review');
const Ticket = z.object({
    priority: z.enum(['low', 'high']),
    count: z.number().int().min(1).max(5),
    flags: z.array(z.boolean()).max(2),
});
const ticketSchema = zodResponseFormat(Ticket, 'ticket').json_schema.schema;

// The text parses as JSON and ajv says it matches schema.
function valid(text, schema, what) {
    let v;
    try {
        v = JSON.parse(text);
    } catch (e) {
        check(false, `${what}: not JSON (${e.message}): ${JSON.stringify(text)}`);
        return undefined;
    }
    const ok = ajv.validate(schema, v);
    check(ok, `${what}: ajv: ${ajv.errorsText()} in ${text}`);
    return v;
}

// A finished constrained choice: "stop" with a valid value.
function validChoice(c, text, schema, what) {
    eq(c.finish_reason, 'stop', `${what}: finish_reason`);
    return valid(text, schema, what);
}

// ---- the SDKs ---------------------------------------------------------------------------

await step('openai parse with zodResponseFormat', async () => {
    for (const [model, seed] of [['tiny', 1], ['acme-a', 2], ['acme-b', 3], ['acme-a', 4]]) {
        const r = await api.chat.completions.parse({
            model, messages: MSG, response_format: reviewFormat, max_tokens: MAX, temperature: 1, seed, ...NO_THINK,
        });
        const m = r.choices[0].message;
        validChoice(r.choices[0], m.content, reviewFormat.json_schema.schema, `parse ${model} seed ${seed}`);
        check(m.parsed && Review.safeParse(m.parsed).success, `parse ${model}: parsed is a Review`);
    }
});

await step('langchain withStructuredOutput jsonSchema', async () => {
    for (const model of ['tiny', 'acme-b']) {
        const llm = new ChatOpenAI({
            model, apiKey: 'sk-none', configuration: { baseURL: `${BASE}/v1` }, temperature: 1, maxTokens: MAX,
            maxRetries: 0, modelKwargs: NO_THINK,
        });
        const out = await llm.withStructuredOutput(Ticket, { method: 'jsonSchema', name: 'ticket' }).invoke('File a ticket.');
        check(ajv.validate(ticketSchema, out), `langchain ${model}: ${ajv.errorsText()} in ${JSON.stringify(out)}`);
        check(Ticket.safeParse(out).success, `langchain ${model}: zod accepts ${JSON.stringify(out)}`);
    }
});

// ---- one batch mixing everything -----------------------------------------------------------

async function streamChat(body) {
    const s = await api.chat.completions.create({ ...body, stream: true });
    const texts = [], fins = [];
    for await (const ch of s)
        for (const x of ch.choices) {
            texts[x.index] = (texts[x.index] ?? '') + (x.delta.content ?? '');
            if (x.finish_reason) fins[x.index] = x.finish_reason;
        }
    return { texts, fins };
}

const tagSchema = { type: 'object', properties: { t: { enum: ['x', 'y'] }, n: { type: 'integer', minimum: 0, maximum: 9 } },
                    required: ['t', 'n'], additionalProperties: false };
const rf = (name, schema) => ({ type: 'json_schema', json_schema: { name, schema, strict: true } });

await step('mixed batch', async () => {
    const base = { messages: MSG, max_tokens: MAX, temperature: 1, ...NO_THINK };
    const jobs = [
        // constrained, n = 2, logprobs, an adapter
        api.chat.completions.create({ ...base, model: 'acme-a', n: 2, seed: 11, logprobs: true, top_logprobs: 3,
                                      response_format: reviewFormat }).then((r) => {
            eq(r.choices.length, 2, 'n=2: choices');
            for (const c of r.choices) {
                validChoice(c, c.message.content, reviewFormat.json_schema.schema, `n=2 choice ${c.index}`);
                const lps = c.logprobs.content;
                check(lps.length > 0, `n=2 choice ${c.index}: logprobs`);
                // A masked-out token is -inf (-9999): the chosen token never is.
                check(lps.every((t) => t.logprob > -9999), `n=2 choice ${c.index}: every chosen token was allowed`);
            }
        }),
        // constrained, streamed, the base
        streamChat({ ...base, model: 'tiny', seed: 12, response_format: rf('tag', tagSchema) }).then(({ texts, fins }) => {
            eq(fins, ['stop'], 'stream: finish');
            valid(texts[0], tagSchema, 'stream');
        }),
        // constrained, streamed, n = 2, another adapter
        streamChat({ ...base, model: 'acme-b', n: 2, seed: 13, response_format: rf('tag', tagSchema) }).then(({ texts, fins }) => {
            eq(fins, ['stop', 'stop'], 'stream n=2: finish');
            texts.forEach((t, i) => valid(t, tagSchema, `stream n=2 choice ${i}`));
        }),
        // free text beside them
        api.chat.completions.create({ ...base, model: 'acme-a', max_tokens: 24, seed: 14 }).then((r) => {
            check(typeof r.choices[0].message.content === 'string', 'free: content');
        }),
        api.completions.create({ model: 'tiny', prompt: 'The quick brown fox', max_tokens: 24, seed: 15, temperature: 1 }).then((r) => {
            check(r.choices[0].text.length > 0, 'free completion: text');
        }),
        // /v1/completions takes response_format too
        api.completions.create({ model: 'acme-b', prompt: 'JSON:', max_tokens: MAX, seed: 16, temperature: 1,
                                 response_format: rf('tag', tagSchema) }).then((r) => {
            eq(r.choices[0].finish_reason, 'stop', 'completions: finish');
            valid(r.choices[0].text, tagSchema, 'completions');
        }),
        // json_object: steered to the smallest object by the bias on "{" and "}"
        api.chat.completions.create({ ...base, model: 'tiny', seed: 17, response_format: { type: 'json_object' },
                                      logit_bias: { [idOf('{')]: 50, [idOf('}')]: 50 } }).then((r) => {
            eq(r.choices[0].finish_reason, 'stop', 'json_object: finish');
            eq(r.choices[0].message.content, '{}', 'json_object: the biased object');
        }),
        // json_object, unsteered: an object, or a prefix of one at the length limit
        api.chat.completions.create({ ...base, model: 'acme-a', seed: 18, max_tokens: 40, response_format: { type: 'json_object' } }).then((r) => {
            const c = r.choices[0], t = c.message.content;
            check(t.startsWith('{'), `json_object: starts with '{': ${JSON.stringify(t)}`);
            if (c.finish_reason === 'stop') check(valid(t, { type: 'object' }, 'json_object') !== undefined, 'json_object: parses');
            else eq(c.finish_reason, 'length', 'json_object: finish');
        }),
    ];
    await Promise.all(jobs);
});

// ---- Qwen3's think block ---------------------------------------------------------------------

await step('think block first, then the value', async () => {
    // With thinking on, the model may write anything up to </think>; the
    // bias makes it close the block at once (after it, the mask never
    // allows </think> again, a special token), then the value is JSON.
    const think = idOf('</think>');
    check(Number.isInteger(think), 'the tokenizer has </think>');
    const r = await api.chat.completions.create({ model: 'tiny', messages: MSG, max_tokens: MAX, temperature: 1, seed: 21,
                                                  logit_bias: { [think]: 100 }, response_format: rf('tag', tagSchema) });
    // The reply never opened the block with <think>, so the reasoning
    // parser (which reads a leading block only) leaves the bare </think>
    // in the content: the value is what follows it.
    const content = r.choices[0].message.content;
    check(content.startsWith('</think>'), `the block closed first: ${JSON.stringify(content)}`);
    validChoice(r.choices[0], content.slice('</think>'.length), tagSchema, 'after </think>');
});

// ---- errors ------------------------------------------------------------------------------------

async function bad(body, param, part, what) {
    const e = await rejects(() => api.chat.completions.create({ model: 'tiny', messages: MSG, max_tokens: 8, ...body }),
                            OpenAI.BadRequestError, what);
    if (!e) return;
    eq(e.status, 400, `${what}: status`);
    eq(e.param, param, `${what}: param`);
    eq(e.type, 'invalid_request_error', `${what}: type`);
    check(e.message.includes(part), `${what}: message '${e.message}' lacks '${part}'`);
}

await step('bad schemas', async () => {
    await bad({ response_format: rf('tags', { type: 'array', uniqueItems: true }) },
              'response_format.json_schema.schema', 'uniqueItems', 'uniqueItems');
    await bad({ response_format: rf('x', { type: 'object', properties: { a: { $ref: '#/nowhere' } } }) },
              'response_format.json_schema.schema', "Invalid schema for response_format 'x'", 'a dangling $ref');
    await bad({ response_format: rf('x', [1]) }, 'response_format.json_schema.schema', 'expected an object', 'a list');
    await bad({ response_format: rf('a b', {}) }, 'response_format.json_schema.name', 'does not match pattern', 'name');
    await bad({ response_format: { type: 'json_schema' } }, 'response_format.json_schema', 'Missing required', 'no json_schema');
    await bad({ response_format: { type: 'yaml' } }, 'response_format.type', 'json_schema', 'type');
    // One grammar per reply: tool calls or a response format, not both.
    await bad({ tools: [{ type: 'function', function: { name: 'f' } }], response_format: rf('tag', tagSchema) },
              'response_format', 'cannot be combined', 'tools and a schema');
});

// ---- /metrics ------------------------------------------------------------------------------------

await step('metrics', async () => {
    const text = await (await fetch(`${BASE}/metrics`)).text();
    const val = (name) => Number((text.match(new RegExp(`^${name} (\\S+)$`, 'm')) || [])[1]);
    check(val('tessera_structured_requests_total') >= 10, `structured requests: ${val('tessera_structured_requests_total')}`);
    check(val('tessera_structured_schema_errors_total') >= 2, 'schema errors counted');
    check(val('tessera_grammar_masks_total') > 50, 'masks counted');
    check(val('tessera_grammar_mask_seconds_total') > 0, 'mask time counted');
    // Three schemas and json_object's were compiled; every other request found its grammar.
    check(val('tessera_grammar_cache_misses_total') >= 4, `cache misses: ${val('tessera_grammar_cache_misses_total')}`);
    check(val('tessera_grammar_cache_hits_total') >= 6, `cache hits: ${val('tessera_grammar_cache_hits_total')}`);
    check(val('tessera_grammar_cache_entries') >= 3 && val('tessera_grammar_cache_bytes') > 0, 'cache entries and bytes');
    check(val('tessera_grammar_vocab_cache_bytes') > 0, 'the vocab caches are counted');
});

finish('serve_structured');
