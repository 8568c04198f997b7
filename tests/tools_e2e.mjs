// A tool-calling agent on a tessera-trained adapter, the way LangChain JS
// runs one: ChatOpenAI.bindTools with the fixture's two tools (JSON schema,
// tests/fixtures/tools_zh_en/world.json), then the tool loop: the model
// calls, this script runs the tool (world.json's tables), sends the result
// back as a ToolMessage with the call's id, and the model answers from it.
// Run by tests/test_tools_e2e.sh, which trains the adapter first.
//
// What it measures and checks (the thresholds come from the caller):
//   - held-out questions (val.jsonl's and HELD_OUT below: wordings the
//     adapter never saw), English and Chinese: whether the first reply calls
//     the right tool(s) with the right arguments (counted: `calls`), whether
//     the final answer, after the tool ran, states what the tool returned
//     (counted: `answers`: the status, or the city and its weather, in the
//     question's language); questions that need no tool must get text, no
//     call (counted: `chats`);
//   - every call a client gets is well formed: a declared tool, arguments
//     that match its parameters (ajv), an id call_...; the loop ends;
//   - streaming and non-streaming agree at temperature 0: the streamed
//     chunks, concatenated as LangChain concatenates them, give the same
//     calls (names, arguments) and the same final text;
//   - the base model (no adapter) with tool_choice "required" returns a call
//     whose arguments match the schema, for every question (Qwen3's
//     non-thinking prompt, see baseRequired).
// Env: PORT, ADAPTER (the adapter's name), BASE (the base model's name),
// FIXTURE (the fixture folder), MIN_TOOLS, MIN_CALLS, MIN_ANSWERS, MIN_CHATS.
import fs from 'node:fs';
import Ajv from 'ajv';
import { ChatOpenAI } from '@langchain/openai';
import { HumanMessage, SystemMessage, ToolMessage } from '@langchain/core/messages';

const env = process.env;
const world = JSON.parse(fs.readFileSync(`${env.FIXTURE}/world.json`, 'utf8'));
const ajv = new Ajv({ strict: false, allErrors: true });
const schemaOf = Object.fromEntries(world.tools.map((t) => [t.function.name, ajv.compile(t.function.parameters)]));
let failures = 0;
const fail = (what) => { failures++; console.error(`CHECK failed: ${what}`); };
for (const k of ['MIN_TOOLS', 'MIN_CALLS', 'MIN_ANSWERS', 'MIN_CHATS'])
    if (!/^[0-9]+$/.test(env[k] ?? '')) throw new Error(`${k} is not set: the caller gives the thresholds`);

function runTool(name, args) {
    if (name === 'get_order_status') {
        const status = world.orders[args.order_id];
        return status ? { order_id: args.order_id, status } : { error: `no order ${args.order_id}` };
    }
    const w = world.weather[args.city];
    if (!w) return { error: `no weather for ${args.city}` };
    return { city: args.city, temperature: w[args.unit], unit: args.unit, condition: w.condition };
}

// Held-out questions beyond val.jsonl's: [question, expected calls] (no
// calls: a question that needs no tool).
const order = (id) => ['get_order_status', { order_id: id }];
const weather = (city, unit = 'celsius') => ['get_weather', { city, unit }];
const HELD_OUT = [
    ['Please check the status of order 10234.', [order('10234')]],
    ['订单20517现在在哪里？', [order('20517')]],
    ['What is the weather like in Paris?', [weather('Paris')]],
    ['东京天气如何？', [weather('Tokyo')]],
    ['Hey!', []],
    ['谢谢！', []],
];
function questions() {
    const out = [];
    for (const line of fs.readFileSync(`${env.FIXTURE}/val.jsonl`, 'utf8').split('\n').filter(Boolean)) {
        const m = JSON.parse(line).messages;
        const calls = (m[2].tool_calls ?? []).map((c) => [c.function.name, JSON.parse(c.function.arguments)]);
        out.push([m[1].content, calls]);
    }
    return out.concat(HELD_OUT);
}

// Does the answer say what the tool returned, in the question's language?
const isZh = (s) => /[\u4e00-\u9fff]/.test(s);
function usesResult(answer, results, zh) {
    return results.every((r) => {
        if (r.status) return answer.includes(zh ? world.zh.status[r.status] : r.status);
        if (r.condition) {
            const city = zh ? world.zh.city[r.city] : r.city, cond = zh ? world.zh.condition[r.condition] : r.condition;
            return answer.includes(city) && answer.includes(cond);
        }
        return false;
    });
}

const llm = (model, extra = {}) => new ChatOpenAI({
    model, temperature: 0, maxTokens: 80, maxRetries: 0, apiKey: 'none',
    configuration: { baseURL: `http://127.0.0.1:${env.PORT}/v1` }, ...extra,
});

// One model turn, non-streamed or streamed (chunks concatenated the way
// LangChain's docs show: chunk.concat).
async function turn(model, msgs, stream) {
    if (!stream) return model.invoke(msgs);
    let acc = null;
    for await (const chunk of await model.stream(msgs)) acc = acc ? acc.concat(chunk) : chunk;
    return acc;
}

const callKey = (calls) => JSON.stringify((calls ?? []).map((c) => [c.name, c.args]));

function checkCalls(calls, what) {
    for (const c of calls) {
        if (!/^call_[A-Za-z0-9]+$/.test(c.id ?? '')) fail(`${what}: call id ${c.id}`);
        const v = schemaOf[c.name];
        if (!v) fail(`${what}: undeclared tool ${c.name}`);
        else if (!v(c.args)) fail(`${what}: arguments ${JSON.stringify(c.args)}: ${ajv.errorsText(v.errors)}`);
    }
}

// The agent loop for one question: at most 3 rounds of calls. Returns the
// transcript: the first reply's calls, the tool results, the final text.
async function agent(model, q, stream) {
    const msgs = [new SystemMessage(world.system), new HumanMessage(q)];
    let ai = await turn(model, msgs, stream);
    const first = ai.tool_calls ?? [];
    const results = [];
    for (let round = 0; ai.tool_calls?.length && round < 3; round++) {
        checkCalls(ai.tool_calls, `${q} (round ${round}${stream ? ', streamed' : ''})`);
        msgs.push(ai);
        for (const c of ai.tool_calls) {
            const r = runTool(c.name, c.args);
            results.push(r);
            msgs.push(new ToolMessage({ content: JSON.stringify(r), tool_call_id: c.id }));
        }
        ai = await turn(model, msgs, stream);
    }
    if (ai.tool_calls?.length) fail(`${q}: still calling tools after 3 rounds`);
    return { first, results, text: typeof ai.content === 'string' ? ai.content : JSON.stringify(ai.content) };
}

async function heldOut() {
    const model = llm(env.ADAPTER).bindTools(world.tools);
    let calls = 0, names = 0, nCalls = 0, answers = 0, nAnswers = 0, chats = 0, nChats = 0, errors = 0;
    for (const [q, want] of questions()) {
        let r, s;
        try {
            r = await agent(model, q, false);
            s = await agent(model, q, true);
        } catch (e) { // an HTTP error: the agent stops there, as LangChain's would
            errors++;
            console.log(`  ERROR ${q} -> ${e.message}`);
            if (want.length) nCalls++;
            else nChats++;
            continue;
        }
        if (callKey(r.first) !== callKey(s.first) || r.text !== s.text)
            fail(`${q}: streamed ${callKey(s.first)} ${JSON.stringify(s.text)} != ${callKey(r.first)} ${JSON.stringify(r.text)}`);
        const got = r.first.map((c) => [c.name, c.args]);
        if (want.length === 0) {
            nChats++;
            const ok = got.length === 0 && r.text.length > 0;
            chats += ok;
            console.log(`  ${ok ? 'text' : 'MISS'}  ${q} -> ${got.length ? callKey(r.first) : JSON.stringify(r.text)}`);
            continue;
        }
        nCalls++;
        const right = JSON.stringify(got) === JSON.stringify(want);
        calls += right;
        names += JSON.stringify(got.map((c) => c[0])) === JSON.stringify(want.map((c) => c[0]));
        console.log(`  ${right ? 'call' : 'MISS'}  ${q} -> ${callKey(r.first)}`);
        // Whatever was called, if the tool answered, the answer must say what it said.
        if (r.results.length && r.results.every((x) => !x.error)) {
            nAnswers++;
            const used = usesResult(r.text, r.results, isZh(q));
            answers += used;
            console.log(`  ${used ? 'used' : 'MISS'}    the tool said ${r.results.map((x) => JSON.stringify(x)).join(' ')}` +
                        ` -> ${JSON.stringify(r.text)}`);
        }
    }
    console.log(`held-out: right tools ${names} of ${nCalls}, right calls (tools and arguments) ${calls};` +
                ` answers stating the tool's result ${answers} of ${nAnswers} tool replies;` +
                ` no call where none is needed ${chats} of ${nChats}; HTTP errors ${errors}`);
    if (names < +env.MIN_TOOLS) fail(`right tools ${names} < ${env.MIN_TOOLS}`);
    if (calls < +env.MIN_CALLS) fail(`right calls ${calls} < ${env.MIN_CALLS}`);
    if (answers < +env.MIN_ANSWERS) fail(`answers from the result ${answers} < ${env.MIN_ANSWERS}`);
    if (chats < +env.MIN_CHATS) fail(`text replies ${chats} < ${env.MIN_CHATS}`);
}

// The base model, random weights, tool_choice "required": the engine's
// grammar alone must make every call schema-valid. The tools get
// additionalProperties false here: with any key allowed, a random model
// spells one key until max_tokens. With Qwen3's non-thinking prompt: with
// thinking on, a reply may open a think block, which a random model never
// closes (the constraint would start after it).
const closed = world.tools.map((t) => ({ ...t, function: { ...t.function,
    parameters: { ...t.function.parameters, additionalProperties: false } } }));
async function baseRequired() {
    const model = llm(env.BASE, { maxTokens: 200, modelKwargs: { chat_template_kwargs: { enable_thinking: false } } })
        .bindTools(closed, { tool_choice: 'required' });
    let n = 0;
    for (const [q] of questions()) {
        const ai = await model.invoke([new SystemMessage(world.system), new HumanMessage(q)]);
        if (!ai.tool_calls?.length) fail(`base model, required: no call for ${q}: ${JSON.stringify(ai.content).slice(0, 200)}`);
        else if (ai.invalid_tool_calls?.length) fail(`base model, required: invalid calls ${JSON.stringify(ai.invalid_tool_calls)}`);
        else n++;
        checkCalls(ai.tool_calls ?? [], `base model, required: ${q}`);
    }
    console.log(`base model, tool_choice required: ${n} of ${questions().length} replies are calls, arguments valid (ajv)`);
}

try {
    await heldOut();
    await baseRequired();
} catch (e) {
    fail(`threw: ${e && e.stack || e}`);
}
console.log(`tools_e2e: ${failures} failed checks`);
process.exit(failures ? 1 : 0);
