// A LangChain JS agent on tessera (npm install @langchain/openai
// @langchain/core zod): tools bound with bindTools, then the tool loop: the
// model calls, we run the tool, send a ToolMessage with the call's id, and
// the model answers from the result.
//
//   node clients/langchain_agent.mjs
//
// Environment: TESSERA_BASE_URL (http://127.0.0.1:8000/v1), TESSERA_API_KEY
// (none; with --tenants your key), TESSERA_MODEL (tools-bot: an adapter
// trained on tests/fixtures/tools_zh_en, see README.md "Tool calling"),
// TESSERA_PROMPT (What's the weather in Paris?).
import { ChatOpenAI } from '@langchain/openai';
import { tool } from '@langchain/core/tools';
import { HumanMessage, SystemMessage, ToolMessage } from '@langchain/core/messages';
import { z } from 'zod';

const env = process.env;
const llm = new ChatOpenAI({
    model: env.TESSERA_MODEL || 'tools-bot', // the adapter (or the base model) that answers
    temperature: 0,
    maxTokens: 128,
    maxRetries: 0,
    apiKey: env.TESSERA_API_KEY || 'none',
    configuration: { baseURL: env.TESSERA_BASE_URL || 'http://127.0.0.1:8000/v1' },
});

// The tools: LangChain turns the zod schemas into the JSON schemas the
// server receives (and constrains the calls' arguments to).
const getOrderStatus = tool(async ({ order_id }) => JSON.stringify({ order_id, status: 'delivered' }), {
    name: 'get_order_status',
    description: "Get an order's status",
    schema: z.object({ order_id: z.string().regex(/^[0-9]{5}$/) }),
});
const getWeather = tool(async ({ city, unit }) => JSON.stringify({ city, temperature: 20, unit, condition: 'rainy' }), {
    name: 'get_weather',
    description: "Get a city's weather",
    schema: z.object({ city: z.string().max(20), unit: z.enum(['celsius', 'fahrenheit']) }),
});
const tools = { get_order_status: getOrderStatus, get_weather: getWeather };
const agent = llm.bindTools(Object.values(tools));

const messages = [
    new SystemMessage('You are the assistant of Example Shop.'),
    new HumanMessage(env.TESSERA_PROMPT || "What's the weather in Paris?"),
];

try {
    // The tool loop, at most 4 rounds of calls.
    let ai = await agent.invoke(messages);
    for (let round = 0; ai.tool_calls?.length && round < 4; round++) {
        messages.push(ai);
        for (const call of ai.tool_calls) {
            const result = await tools[call.name].invoke(call.args);
            console.log(`call: ${call.name}(${JSON.stringify(call.args)}) -> ${result}`);
            messages.push(new ToolMessage({ content: result, tool_call_id: call.id }));
        }
        ai = await agent.invoke(messages);
    }
    console.log(`answer: ${ai.content}`);

    // The first turn again, streamed: chunks concatenate into one message
    // whose tool_calls are complete.
    let acc;
    for await (const chunk of await agent.stream(messages.slice(0, 2))) acc = acc ? acc.concat(chunk) : chunk;
    for (const c of acc?.tool_calls ?? []) console.log(`streamed call: ${c.name}(${JSON.stringify(c.args)})`);
    if (!acc?.tool_calls?.length) console.log(`streamed answer: ${acc?.content}`);
} catch (e) {
    console.error(`error: ${e.message}`);
    process.exit(1);
}
