// LangChain's OpenAI chat model (@langchain/openai ChatOpenAI, which uses
// the openai SDK underneath) against the engine server: invoke() and
// stream() of an adapter give its greedy text (= `serve --generate`), and
// an unknown model surfaces as an error, not as an empty answer.
//
// Env: PORT; EXP (the expected texts written by tests/test_serve_engine.sh:
// <model>.0.txt is the 24-token greedy text for 'hello world').
import fs from 'node:fs';
import { ChatOpenAI } from '@langchain/openai';
import { BASE, check, eq, finish, step } from './lib.mjs';

const EXP = process.env.EXP;
const N = 24, PROMPT = 'hello world';
const expected = (m) => fs.readFileSync(`${EXP}/${m}.0.txt`, 'utf8');
const chat = (model, extra = {}) => new ChatOpenAI({ model, temperature: 0, maxTokens: N, apiKey: 'none',
    maxRetries: 0, timeout: 60000, configuration: { baseURL: `${BASE}/v1` }, ...extra });

for (const m of ['ad-a', 'ad-b']) {
    await step(`invoke ${m}`, async () => {
        const r = await chat(m).invoke(PROMPT);
        eq(r.content, expected(m), `invoke ${m} text`);
        eq(r.response_metadata?.finish_reason, 'length', `invoke ${m} finish_reason`);
        eq(r.usage_metadata?.output_tokens, N, `invoke ${m} output tokens`);
    });
    await step(`stream ${m}`, async () => {
        let text = '', chunks = 0;
        for await (const ch of await chat(m).stream(PROMPT)) {
            check(typeof ch.content === 'string', `stream ${m}: chunk content is a string`);
            text += ch.content;
            chunks++;
        }
        check(chunks > 1, `stream ${m}: more than one chunk (got ${chunks})`);
        eq(text, expected(m), `stream ${m} joined text`);
    });
}

await step('batch across adapters', async () => {
    const ms = ['ad-a', 'ad-b', 'ad-c', 'tiny'];
    const rs = await Promise.all(ms.map((m) => chat(m).invoke([['human', PROMPT]])));
    ms.forEach((m, i) => eq(rs[i].content, expected(m), `batch ${m}`));
});

await step('unknown model', async () => {
    for (const how of ['invoke', 'stream']) {
        let err = null;
        try {
            if (how === 'invoke') await chat('no-such-adapter').invoke(PROMPT);
            else for await (const _ of await chat('no-such-adapter').stream(PROMPT)) { /* drain */ }
        } catch (e) {
            err = e;
        }
        check(err !== null, `unknown model (${how}): no error`);
        if (err) {
            const status = err.status ?? err.lc_error_code;
            check(err.status === 404 || err.lc_error_code === 'MODEL_NOT_FOUND',
                `unknown model (${how}): want 404 / MODEL_NOT_FOUND, got ${status}: ${err.message}`);
            check(/no-such-adapter/.test(err.message), `unknown model (${how}): message names the model: ${err.message}`);
        }
    }
});

finish('langchain.mjs');
