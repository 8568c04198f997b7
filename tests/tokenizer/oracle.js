// The tokenizer oracle: runs the npm tokenizers (@lenml/tokenizers 3.7.2,
// a packaging of transformers.js) over the corpus and writes what they give,
// for tests/tools/tokcheck.c to compare against core/tokenizer.c.
//
//   node tests/tokenizer/oracle.js OUTDIR
//
// writes OUTDIR/<name>.tsv for qwen3, llama3 and two variants built from
// them (OUTDIR/<name>/tokenizer.json) that exercise what the real files do
// not: llama3-bos (a TemplateProcessing post_processor adding BOS and EOS),
// qwen3-gpt2 (a ByteLevel pre-tokenizer with its own GPT-2 regex and
// add_prefix_space, plus added tokens with lstrip/rstrip) and llama3-gaps
// (two Split steps whose regexes leave text between matches).
//
// Line format (tab-separated; ids comma-separated; text as hex bytes; '-'
// for a field not given):
//   E  input  ids(parse special)  ids(plain text)  ids(add_special_tokens)  roundtrip  decode(skip special)
//   D  ids  decode  decode(skip special)
// E: a corpus string. The C side encodes the raw input bytes; JS encodes
//    what TextDecoder('utf-8') makes of them (U+FFFD for ill-formed parts;
//    ignoreBOM so that a leading BOM stays text, as in C). roundtrip is the
//    text decode(encode(s)) must give: NFC(s) when the normalizer is NFC.
// D: random id sequences (split characters included) and their decode.
'use strict';

const fs = require('fs');
const path = require('path');
const { makeCorpus, rng } = require('./corpus.js');

const ROOT = path.resolve(__dirname, '../..');
const req = (m) => require(require.resolve(m, { paths: [ROOT] }));
const { TokenizerLoader } = req('@lenml/tokenizers');

const hex = (s) => (Buffer.isBuffer(s) ? s : Buffer.from(s, 'utf8')).toString('hex');
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

// parse_special=0 has no switch in transformers.js; the same tokenizer with
// no added tokens to cut out is what it means.
function plainText(tok) {
  const t = Object.create(tok);
  t.added_tokens_splitter = { split: (s) => [s] };
  t.added_tokens_map = new Map();
  return t;
}

function decode(tok, ids, skip) {
  if (ids.length === 0) return '';
  return tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });
}

function loadModule(name) {
  // The same objects the package's fromPreTrained() uses; dir is for C.
  const { tokenizerJSON: json, tokenizerConfig: config } = req(`@lenml/tokenizer-${name}`);
  const file = require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`, { paths: [ROOT] });
  return { json, config, dir: path.dirname(file) };
}

function writeVariant(outdir, name, json, config) {
  const dir = path.join(outdir, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}

function variants(outdir, qwen, llama) {
  const bos = '<|begin_of_text|>', eos = '<|end_of_text|>';
  const lj = {
    ...llama.json,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: eos, type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: {
        [bos]: { id: bos, ids: [128000], tokens: [bos] },
        [eos]: { id: eos, ids: [128001], tokens: [eos] },
      },
    },
  };
  const strip = { '<|im_start|>': { lstrip: true }, '<|im_end|>': { rstrip: true }, '<think>': { lstrip: true, rstrip: true } };
  const qj = {
    ...qwen.json,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    added_tokens: qwen.json.added_tokens.map((a) => ({ ...a, ...(strip[a.content] || {}) })),
  };
  // Two Splits whose matches leave gaps (kept as pieces of their own), then
  // a ByteLevel without regex.
  const gj = {
    ...llama.json,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: '\\p{N}{1,3}|\\s+' }, behavior: 'Isolated', invert: false },
        { type: 'Split', pattern: { Regex: "[\\p{P}]|(?i:'s|'t|'re|'ve|'m|'ll|'d)" }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
  };
  return [
    { name: 'llama3-gaps', json: gj, config: llama.config, dir: writeVariant(outdir, 'llama3-gaps', gj, llama.config), roundtrip: true },
    { name: 'llama3-bos', json: lj, config: llama.config, dir: writeVariant(outdir, 'llama3-bos', lj, llama.config), roundtrip: true },
    { name: 'qwen3-gpt2', json: qj, config: qwen.config, dir: writeVariant(outdir, 'qwen3-gpt2', qj, qwen.config), roundtrip: false },
  ];
}

// Random ids, biased towards byte tokens and specials so that characters
// get split across tokens and special tokens get skipped.
function randomIds(r, tok, count) {
  const n = tok.model.vocab.length;
  // The ids of the byte tokens for bytes 0x80..0xFF (pieces of characters).
  const byteIds = Object.entries(tok.decoder.byte_decoder)
    .filter(([, b]) => b >= 0x80)
    .map(([c]) => tok.model.tokens_to_ids.get(c));
  const out = [];
  for (let i = 0; i < count; i++) {
    const len = r.int(1, 24);
    const ids = [];
    for (let k = 0; k < len; k++) {
      const c = r.next();
      if (c < 0.4) ids.push(r.pick(byteIds));
      else if (c < 0.5) ids.push(r.int(n - 300, n - 1));
      else ids.push(r.int(0, n - 1));
    }
    out.push(ids);
  }
  return out;
}

function run(spec, corpus, outdir, opts) {
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON: spec.json, tokenizerConfig: spec.config });
  const plain = plainText(tok);
  const nfc = spec.json.normalizer && spec.json.normalizer.type === 'NFC';
  const lines = [`#\t${spec.name}\t${spec.dir}`];
  let jsRoundtripFailures = 0;
  const t0 = Date.now();
  for (const bytes of corpus) {
    const text = utf8.decode(bytes);
    const ids = tok.encode(text, { add_special_tokens: false });
    const idsPlain = opts.full ? plain.encode(text, { add_special_tokens: false }) : null;
    const idsAdd = tok.encode(text, { add_special_tokens: true });
    let rt = '-';
    if (spec.roundtrip) {
      const want = nfc ? text.normalize('NFC') : text;
      if (decode(tok, ids, false) !== want) jsRoundtripFailures++;
      rt = hex(want);
    }
    lines.push(['E', hex(bytes), ids.join(','), idsPlain ? idsPlain.join(',') : '-', idsAdd.join(','), rt,
      hex(decode(tok, ids, true))].join('\t'));
  }
  const r = rng(7);
  for (const ids of randomIds(r, tok, opts.decodeCases)) {
    lines.push(['D', ids.join(','), hex(decode(tok, ids, false)), hex(decode(tok, ids, true))].join('\t'));
  }
  fs.writeFileSync(path.join(outdir, spec.name + '.tsv'), lines.join('\n') + '\n');
  console.log(`oracle ${spec.name}: ${corpus.length} strings, ${opts.decodeCases} decode cases, ` +
    `${Date.now() - t0} ms` + (spec.roundtrip ? `, JS roundtrip failures ${jsRoundtripFailures}` : ''));
}

function main() {
  const outdir = process.argv[2];
  if (!outdir) {
    console.error('usage: node tests/tokenizer/oracle.js OUTDIR');
    process.exit(2);
  }
  fs.mkdirSync(outdir, { recursive: true });
  const corpus = makeCorpus();
  const qwen = loadModule('qwen3'), llama = loadModule('llama3');
  run({ name: 'qwen3', ...qwen, roundtrip: true }, corpus, outdir, { full: true, decodeCases: 600 });
  run({ name: 'llama3', ...llama, roundtrip: true }, corpus, outdir, { full: true, decodeCases: 600 });
  // The variants share the real files' vocab and merges; a slice of the
  // corpus is enough to exercise what differs.
  const some = corpus.filter((_, i) => i % 6 === 0);
  for (const v of variants(outdir, qwen, llama)) run(v, some, outdir, { full: false, decodeCases: 0 });
}

main();
