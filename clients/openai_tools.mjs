// Tool calling against tessera with the official OpenAI JS SDK (npm install
// openai): the model asks for a tool, we run it, send the result back, and
// the model answers from it.
//
//   node clients/openai_tools.mjs
//
// Environment: TESSERA_BASE_URL (http://127.0.0.1:8000/v1), TESSERA_API_KEY
// (none; with --tenants your key), TESSERA_MODEL (tools-bot: an adapter
// trained on tests/fixtures/tools_zh_en, see README.md "Tool calling"),
// TESSERA_PROMPT (Where is my order 10234?).
import OpenAI from 'openai';

const env = process.env;
const client = new OpenAI({
    baseURL: env.TESSERA_BASE_URL || 'http://127.0.0.1:8000/v1',
    apiKey: env.TESSERA_API_KEY || 'none',
    maxRetries: 0,
});
const model = env.TESSERA_MODEL || 'tools-bot';

// The tools, as OpenAI's function calling declares them (JSON schema).
const tools = [
    { type: 'function', function: { name: 'get_order_status', description: "Get an order's status",
        parameters: { type: 'object', properties: { order_id: { type: 'string', pattern: '^[0-9]{5}$' } },
                      required: ['order_id'] } } },
    { type: 'function', function: { name: 'get_weather', description: "Get a city's weather",
        parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 20 },
                                                    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
                      required: ['city', 'unit'] } } },
];

// Our side of the tools: what the application would look up.
function runTool(name, args) {
    if (name === 'get_order_status') return { order_id: args.order_id, status: 'delivered' };
    if (name === 'get_weather') return { city: args.city, temperature: 20, unit: args.unit, condition: 'rainy' };
    return { error: `no tool ${name}` };
}

const messages = [
    { role: 'system', content: 'You are the assistant of Example Shop.' },
    { role: 'user', content: env.TESSERA_PROMPT || 'Where is my order 10234?' },
];

// The tool loop: while the model calls tools, run them and send each result
// back as a `tool` message carrying the call's id.
async function loop() {
    for (let round = 0; round < 4; round++) {
        const r = await client.chat.completions.create({ model, messages, tools, temperature: 0, max_tokens: 128 });
        const msg = r.choices[0].message;
        if (!msg.tool_calls?.length) {
            console.log(`answer: ${msg.content}`);
            return;
        }
        messages.push(msg); // the assistant's turn, calls included, goes back as it came
        for (const call of msg.tool_calls) {
            const args = JSON.parse(call.function.arguments); // a JSON string, as OpenAI sends it
            const result = runTool(call.function.name, args);
            console.log(`call: ${call.function.name}(${call.function.arguments}) -> ${JSON.stringify(result)}`);
            messages.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify(result) });
        }
    }
    console.log('answer: (still calling tools after 4 rounds)');
}

// The first turn again, streamed: calls arrive as deltas by index, the
// first with id and name, then argument fragments to append.
async function streamed() {
    const stream = await client.chat.completions.create({ model, messages: messages.slice(0, 2), tools, temperature: 0,
                                                          max_tokens: 128, stream: true });
    const calls = [];
    let text = '';
    for await (const chunk of stream) {
        const d = chunk.choices[0]?.delta ?? {};
        text += d.content ?? '';
        for (const t of d.tool_calls ?? []) {
            calls[t.index] ??= { id: t.id, name: t.function?.name, arguments: '' };
            calls[t.index].arguments += t.function?.arguments ?? '';
        }
    }
    for (const c of calls) console.log(`streamed call: ${c.name}(${c.arguments})`);
    if (!calls.length) console.log(`streamed answer: ${text}`);
}

try {
    await loop();
    await streamed();
} catch (e) {
    console.error(`error: ${e.message}`);
    process.exit(1);
}
