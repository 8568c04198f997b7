// tessera with LangChain JS (npm install @langchain/openai @langchain/core).
//
//   node clients/langchain_chat.mjs
//
// Environment as in clients/openai_chat.mjs: TESSERA_BASE_URL
// (http://127.0.0.1:8000/v1), TESSERA_API_KEY (none; with --tenants your
// key, which picks your tenant), TESSERA_MODEL (support-bot: the adapter),
// TESSERA_PROMPT (Where is my order?).
import { ChatOpenAI } from '@langchain/openai';

const env = process.env;
const model = env.TESSERA_MODEL || 'support-bot';
const llm = new ChatOpenAI({
    model, // the adapter (or the base model) this chat model talks to
    temperature: 0,
    maxTokens: 64,
    maxRetries: 0,
    apiKey: env.TESSERA_API_KEY || 'none',
    configuration: { baseURL: env.TESSERA_BASE_URL || 'http://127.0.0.1:8000/v1' },
});
const question = [['human', env.TESSERA_PROMPT || 'Where is my order?']];

// An HTTP error arrives as a typed error: AuthenticationError (401, bad key),
// NotFoundError (404: no such model, or not your tenant's), BadRequestError
// (400, with e.param naming the field), RateLimitError (429, busy).
try {
    const r = await llm.invoke(question);
    console.log(`== ${model}`);
    console.log(r.content);

    console.log(`== ${model}, streamed`);
    for await (const chunk of await llm.stream(question)) process.stdout.write(chunk.content);
    process.stdout.write('\n');
} catch (e) {
    console.error(`error: ${e.message}`);
    process.exit(1);
}
