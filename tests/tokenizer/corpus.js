// The tokenizer test corpus: a deterministic (seeded) list of byte strings
// covering what a tokenizer gets wrong first: languages, code, emoji,
// numbers, whitespace runs, contractions, special-token text, Unicode
// spaces, combining marks (NFC), and ill-formed UTF-8.
//
// makeCorpus(seed) returns an array of Buffers. Strings are Buffers, not JS
// strings, so that invalid UTF-8 can be part of the corpus: the C side
// tokenizes the raw bytes, the oracle what TextDecoder makes of them.
//
// Characters are drawn only from blocks complete by Unicode 6: Node 20's
// ICU knows Unicode 17 while PCRE2 10.42 and utf8proc 2.8 know Unicode 15,
// so a letter assigned after 15.0 (e.g. CJK Extension I) is \p{L} to the
// oracle and unassigned to us. That gap is documented, not tested.
'use strict';

function rng(seed) {
  // mulberry32
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)); // inclusive
  const pick = (arr) => arr[Math.floor(next() * arr.length)];
  return { next, int, pick };
}

const WORDS = (
  'the of and to in is you that it he was for on are as with his they I at be this have from or one had by ' +
  'word but not what all were we when your can said there use an each which she do how their if will up other ' +
  'about out many then them these so some her would make like him into time has look two more write go see number ' +
  'no way could people my than first water been call who oil its now find long down day did get come made may part ' +
  'tokenizer Transformer attention gradient adapter LoRA quantization kernel throughput latency benchmark ' +
  'Internationalization antidisestablishmentarianism supercalifragilisticexpialidocious naïve café résumé ' +
  'façade coöperate Zürich São Paulo Ångström jalapeño München Kraków Dvořák Øresund'
).split(' ');

const CONTRACTIONS = [
  "it's", "IT'S", "It'S", "don't", "DON'T", "Don'T", "they're", "THEY'RE", "They'Re", "we've", "WE'VE", "I'm",
  "I'M", "you'll", "YOU'LL", "You'Ll", "you'lL", "he'd", "HE'D", "'s", "'S", "'t", "'re", "'RE", "'ve", "'m",
  "'ll", "'LL", "'d", "''", "'''s", "'ſ", "'ſt", "’s", "don’t", "rock 'n' roll", "'tis", "o'clock", "the '90s",
  "ma'am", "y'all'd've", "'sup", "'s's's", "it 's", "I' m", "l'homme", "aujourd'hui", "'LLama", "'Re:", "'\u212Aelvin",
];

const ZH_HANS = [
  '我们今天去公园散步，天气非常好。', '机器学习模型需要大量的训练数据。', '请问最近的地铁站在哪里？',
  '这个分词器必须与参考实现完全一致。', '中华人民共和国成立于一九四九年。', '他说：“你好，世界！”',
  '人工智能正在改变我们的生活方式', '数据中心的电力消耗越来越大。', '一二三四五六七八九十百千万亿',
];
const ZH_HANT = [
  '我們今天去公園散步，天氣非常好。', '機器學習模型需要大量的訓練資料。', '請問最近的捷運站在哪裡？',
  '這個分詞器必須與參考實作完全一致。', '繁體中文與簡體中文並存於網路上。', '臺灣、香港與澳門使用正體字。',
];
const JA = [
  '今日はとても良い天気ですね。', 'トークナイザーのテストを書いています。', '東京都渋谷区の天気予報',
  'ひらがなとカタカナと漢字が混ざった文章。', 'ｶﾀｶﾅ ﾊﾝｶｸ ﾃｽﾄ', 'ラーメン、寿司、天ぷらが好きです！',
  'か\u3099き\u3099く\u3099', 'ハ\u309Aン', '「こんにちは」と彼は言った。',
];
const KO = [
  '안녕하세요, 만나서 반갑습니다.', '한국어 형태소 분석은 어렵습니다.', '서울특별시 강남구 테헤란로',
  '\u1100\u1161\u11A8\u1102\u1161', '\uAC00\u11A8', '대한민국의 수도는 서울이다.', '얼마예요? 너무 비싸요!',
];
// More scripts and languages. Many of these words are whole Llama 3 tokens
// that BPE merges would not reach (found by running the merges over its
// vocab), so only ignore_merges gives the oracle's ids for them.
const WORLD = [
  'Tôi không biết việc này có hợp lý không, nhưng nhiều điều thú vị ở Việt Nam.',
  'Nhiệt độ hôm nay rất cao; mềm mại, duyệt web, hiểu biết, riêng tư, nhanh chóng.',
  'Küçük bir köyde yaşıyordu ve bilgisayar mühendisliği okuyordu; ayrıntılı bilgi için dikkate alınız.',
  'Belediyesi bu yıl toplumsal projeler geliştirmektedir, döneminde uygulama giriş söyledi itibaren.',
  'Это характерно для культуры; даже практика показывает развитие, вполне профессиональный подход.',
  'Використовувати розвиток виробництва, дозволяється виявлення, принадлежность.',
  'Každý článek obsahuje odkazy; žádné zásoby, chtěl zpracovat, všechny otevřené zdravotní otázky.',
  'اطلاعات درباره ایران و کلاس‌های الکترونیک؛ مدیر الحياة في أبريل.',
  'Müller, Größe, Straße und Übermaß — le garçon était déjà là, ¿Qué pasó? ¡Olé!',
  'Ελληνικά: καλημέρα κόσμε. עברית: שלום עולם. हिन्दी: नमस्ते दुनिया। ไทย: สวัสดีชาวโลก',
  'Insecta, talya, lıklı, üyordu, maması, abancı, iyordu, ilmektedir, ektedir, mektedir, lardan, ıldı.',
];

const CODE = [
  '#include <stdio.h>\n\nint main(void) {\n\tprintf("hello, world\\n");\n\treturn 0;\n}\n',
  'static int32_t add(int32_t a, int32_t b) { return a + b; }  // sum\n',
  'for (size_t i = 0; i < n; i++) {\n        if (x[i] != y[i]) return -1;\n    }\n',
  'def fib(n):\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n',
  'import numpy as np\nx = np.arange(10).reshape(2, 5)  # shape (2, 5)\nprint(f"{x.sum()=}")\n',
  'class Foo(Bar):\n\tdef __init__(self, *args, **kwargs) -> None:\n\t\tsuper().__init__(*args, **kwargs)\n',
  '{"model": "qwen3", "messages": [{"role": "user", "content": "Hi!"}], "temperature": 0.7, "stream": true}',
  '{\n  "a": [1, 2, 3],\n  "b": {"c": null, "d": false},\n  "e": "\\u00e9\\n"\n}\n',
  '#!/bin/sh\nset -eu\nfor f in *.c; do cc -O2 -c "$f" || exit 1; done\n',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;',
  '<div class="x"><a href="https://example.com/?q=1&r=2">link</a></div>',
  'x+=1;y-=2;z*=3;w/=4;a<<=1;b>>=2;c&&=d;e||=f;g??=h;',
  '    \n\t\t\n  \r\n    return;\r\n}\r\n',
];
const EMOJI = [
  '😀', '😂', '👍', '👍🏽', '👍🏿', '❤️', '❤', '🇯🇵', '🇺🇸🇬🇧', '1️⃣', '#️⃣', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🧑🏿‍🚀',
  '👩‍💻', '🤷‍♀️', '🙇🏻‍♂️', '🐈‍⬛', '✨', '🔥🔥🔥', '🎉', '☺️', '🫠', '🦜', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', '👁️‍🗨️',
];
const SPECIALS = [
  '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>',
  '<|start_header_id|>', '<|end_header_id|>', '<think>', '</think>', '<tool_call>', '</tool_call>',
  '<|fim_prefix|>', '<|vision_pad|>', '<|reserved_special_token_0|>', '<|reserved_special_token_250|>',
  '<|python_tag|>', '<|finetune_right_pad_id|>', '<tool_response>', '<|file_sep|>',
];
const NEAR_SPECIALS = [
  '<|im_start', '<|im_start|', 'im_start|>', '<|im_start |>', '<|IM_START|>', '<<|im_start|>>', '<|<|im_end|>|>',
  '<think', '<think >', '</think', '<|begin_of_text', '<|eot_id', '<|', '|>', '<||>', '<|reserved_special_token_9999|>',
];
const USPACES = [
  '\u00A0', '\u3000', '\u2028', '\u2029', '\u0085', '\uFEFF', '\u1680', '\u2000', '\u2003', '\u2009', '\u200A',
  '\u202F', '\u205F', '\u180E', '\u200B', '\u200C', '\u200D', '\u2060', '\u000B', '\u000C', '\u001C', '\u001F',
];
const COMBINING = [
  'e\u0301', 'cafe\u0301', 'A\u030A', '\u212B', '\u2126', 'n\u0303o', 'a\u0323\u0302', 'a\u0302\u0323',
  'Tie\u0302\u0301ng Vie\u0323\u0302t', 'e\u0301\u0301\u0301', '\u0301abc', ' \u0301', '\u0958', '\u0915\u093C',
  '\u03B1\u0301', '\u1F71', 'o\u0308\u0304', 'u\u0308\u0301', 'Å', 'Å', '\u00C5\u0301', 's\u0323\u0307',
  '\u1E9B\u0323', 'q\u0307\u0323', '\u0041\u0327\u0306', 'ﬁ', '\u2460', '\u00BD', 'x\u20D7', '\u0344', '\u0F73',
  '\u0CC6\u0CC2\u0CD5', '\u09C7\u09BE', '\u0B47\u0B3E', '\u1025\u102E', 'e\u0301\u0327', 'e\u0327\u0301',
];
const NUMBER_STYLES = [
  (r, d) => d, (r, d) => '-' + d, (r, d) => d + '.' + digits(r, r.int(1, 6)), (r, d) => d + 'e-' + r.int(1, 300),
  (r, d) => d.replace(/\B(?=(\d{3})+(?!\d))/g, ','), (r, d) => '$' + d + '.00', (r, d) => d + '%',
  (r, d) => '0x' + (parseInt(d.slice(0, 12) || '0', 10).toString(16).toUpperCase()), (r, d) => 'v' + d.split('').join('.'),
  (r, d) => d.replace(/[0-9]/g, (c) => String.fromCharCode(0x660 + +c)), // Arabic-Indic
  (r, d) => d.replace(/[0-9]/g, (c) => String.fromCharCode(0xFF10 + +c)), // fullwidth
  (r, d) => d.replace(/[0-9]/g, (c) => String.fromCharCode(0x966 + +c)), // Devanagari
  (r, d) => d + '²³¹⁴ ½ ⅞ Ⅻ ⅷ ①②',
];
// Blocks complete by Unicode 6 (see the header comment).
const BLOCKS = [
  [0x20, 0x7E], [0xA0, 0x24F], [0x370, 0x3FF], [0x400, 0x4FF], [0x530, 0x58F], [0x5D0, 0x5EA], [0x600, 0x6FF],
  [0x900, 0x97F], [0xE00, 0xE5B], [0x10A0, 0x10FF], [0x1E00, 0x1EFF], [0x2000, 0x206F], [0x20A0, 0x20B5],
  [0x2100, 0x214F], [0x2190, 0x22FF], [0x2500, 0x257F], [0x3000, 0x30FF], [0x4E00, 0x9FA5], [0xAC00, 0xD7A3],
  [0xFF01, 0xFF9F], [0x1F300, 0x1F64F], [0x1F900, 0x1F9FF], [0x300, 0x36F],
];

function digits(r, n) {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(48 + r.int(0, 9));
  return s;
}

function sentence(r) {
  const n = r.int(1, 18);
  const w = [];
  for (let i = 0; i < n; i++) {
    let x = r.pick(WORDS);
    const c = r.next();
    if (c < 0.1) x = x.toUpperCase();
    else if (c < 0.25) x = x[0].toUpperCase() + x.slice(1);
    if (r.next() < 0.08) x = r.pick(CONTRACTIONS);
    w.push(x + (r.next() < 0.12 ? r.pick([',', ';', ':', ' -', ' —', '...']) : ''));
  }
  return w.join(' ') + r.pick(['.', '!', '?', '', '."', "'", ' :)']);
}

function randomChars(r, n) {
  let s = '';
  for (let i = 0; i < n; i++) {
    const [lo, hi] = r.pick(BLOCKS);
    s += String.fromCodePoint(r.int(lo, hi));
  }
  return s;
}

function whitespace(r) {
  const parts = [' ', '  ', '   ', '    ', '\t', '\t\t', '\n', '\n\n', '\r\n', '\r', ' \n', '  \n', '\t\n', ' \r\n',
    '\n ', '\n  ', '\n\n\n', r.pick(USPACES)];
  let s = '';
  const n = r.int(1, 6);
  for (let i = 0; i < n; i++) s += r.pick(parts);
  return s;
}

function numbers(r) {
  const len = r.next() < 0.7 ? r.int(1, 12) : r.int(13, 60);
  return r.pick(NUMBER_STYLES)(r, digits(r, len));
}

// Ill-formed UTF-8 fragments (as byte arrays): each kind of error the
// WHATWG decoder distinguishes.
const BAD = [
  [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xC2], [0xC2, 0x41], [0xE0, 0x80, 0x80], [0xE0, 0xA0],
  [0xE2, 0x82], [0xE2, 0x82, 0x41], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xEF, 0xBF], [0xF0, 0x80, 0x80, 0x80],
  [0xF0, 0x9F, 0x98], [0xF0, 0x9F], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80],
  [0xFE], [0xFF], [0xFF, 0xFE], [0xE4, 0xB8], [0xE4, 0xB8, 0xE4, 0xB8, 0xAD], [0xC3, 0xC3, 0xA9],
];

function badBytes(r) {
  const n = r.int(1, 4);
  const out = [];
  for (let i = 0; i < n; i++) {
    if (r.next() < 0.25) {
      const k = r.int(1, 8);
      for (let j = 0; j < k; j++) out.push(r.int(0x80, 0xFF));
    } else out.push(...r.pick(BAD));
  }
  return Buffer.from(out);
}

const B = (s) => Buffer.from(s, 'utf8');

// One generated string from a random mix of categories.
function mixed(r) {
  const gens = [
    () => sentence(r), () => r.pick(WORLD), () => r.pick(ZH_HANS), () => r.pick(ZH_HANT), () => r.pick(JA), () => r.pick(KO),
    () => r.pick(CODE), () => r.pick(EMOJI), () => numbers(r), () => whitespace(r), () => r.pick(SPECIALS),
    () => r.pick(NEAR_SPECIALS), () => r.pick(COMBINING), () => randomChars(r, r.int(1, 12)),
    () => r.pick(CONTRACTIONS), () => r.pick(USPACES),
  ];
  const n = r.int(2, 10);
  const parts = [];
  for (let i = 0; i < n; i++) {
    parts.push(r.next() < 0.08 ? badBytes(r) : B(r.pick(gens)()));
    if (r.next() < 0.5) parts.push(B(r.pick([' ', '', '\n', ' ', '', '\t', '  '])));
  }
  return Buffer.concat(parts);
}

function chatLike(r) {
  const roles = ['system', 'user', 'assistant'];
  let s = r.next() < 0.5 ? '<|begin_of_text|>' : '';
  const n = r.int(1, 4);
  for (let i = 0; i < n; i++) {
    const role = r.pick(roles);
    const body = r.next() < 0.3 ? r.pick(ZH_HANS) : sentence(r);
    if (r.next() < 0.5) s += `<|im_start|>${role}\n${body}<|im_end|>\n`;
    else s += `<|start_header_id|>${role}<|end_header_id|>\n\n${body}<|eot_id|>`;
  }
  if (r.next() < 0.4) s += '<|im_start|>assistant\n<think>\n' + sentence(r) + '\n</think>\n\n';
  return s;
}

function makeCorpus(seed = 20240601) {
  const r = rng(seed);
  const out = [];
  const add = (x) => out.push(Buffer.isBuffer(x) ? x : B(x));
  const many = (count, f) => {
    for (let i = 0; i < count; i++) add(f(i));
  };

  // Fixed cases first: every list entry alone, then with neighbours.
  ['', ' ', '  ', '\n', '\r\n', '\t', 'a', 'A', '0', "'", '\0', 'a\0b', ' \0 '].forEach(add);
  for (let c = 0; c < 128; c++) add(String.fromCharCode(c));
  for (const l of [WORDS, CONTRACTIONS, WORLD, ZH_HANS, ZH_HANT, JA, KO, CODE, EMOJI, SPECIALS, NEAR_SPECIALS, USPACES, COMBINING])
    l.forEach(add);
  BAD.forEach((b) => add(Buffer.from(b)));
  CONTRACTIONS.forEach((c) => add('He said ' + c + ' and ' + c.toUpperCase() + '.'));
  SPECIALS.forEach((s) => {
    add('x' + s + 'y');
    add(' ' + s + ' ');
    add('\n' + s + '\n\n' + s);
    add(s + s);
  });
  USPACES.forEach((u) => {
    add('a' + u + 'b');
    add(u + u + 'word');
    add('word' + u + '\n');
    add(' ' + u + ' x');
    add('1' + u + '2');
  });
  COMBINING.forEach((c) => {
    add('word ' + c + ' word');
    add(c + c);
    add(' ' + c);
  });
  for (let n = 1; n <= 40; n++) add(digits(r, n));

  // Generated cases.
  many(300, () => sentence(r));
  many(120, () => Array.from({ length: r.int(1, 3) }, () => r.pick(r.next() < 0.5 ? ZH_HANS : ZH_HANT)).join(r.pick(['', ' ', '\n'])));
  many(80, () => randomChars(r, r.int(1, 40)));
  many(100, () => r.pick(JA) + r.pick(['', ' ', '\n']) + r.pick(KO));
  many(100, () => {
    const w = r.pick(WORLD).split(' ');
    return w.slice(r.int(0, w.length - 1)).join(' ') + r.pick(['', ' ', '\n', '. ']) + r.pick(WORLD);
  });
  many(120, () => r.pick(CODE) + (r.next() < 0.5 ? r.pick(CODE) : ''));
  many(60, () => JSON.stringify({ id: r.int(0, 1e9), name: sentence(r), tags: [r.pick(WORDS), r.pick(EMOJI)], v: r.next() }, null, r.pick([0, 2, 4, '\t'])));
  many(100, () => Array.from({ length: r.int(1, 8) }, () => r.pick(EMOJI)).join(r.pick(['', ' ', '\u200D'])));
  many(150, () => numbers(r) + r.pick(['', ' ', ' and ', '\n', 'x']) + numbers(r));
  many(150, () => whitespace(r) + sentence(r) + whitespace(r) + (r.next() < 0.5 ? sentence(r) + whitespace(r) : ''));
  many(150, () => chatLike(r));
  many(100, () => sentence(r) + r.pick(USPACES) + r.pick(USPACES) + sentence(r));
  many(100, () => r.pick(COMBINING) + r.pick(['', ' ', 'x']) + r.pick(COMBINING) + ' ' + sentence(r));
  many(150, () => {
    const parts = [B(sentence(r)), badBytes(r)];
    if (r.next() < 0.5) parts.push(B(r.pick(ZH_HANS)), badBytes(r));
    if (r.next() < 0.3) parts.unshift(Buffer.from([0xEF, 0xBB, 0xBF])); // a BOM: kept, not stripped
    return Buffer.concat(parts);
  });
  many(60, () => badBytes(r));
  many(700, () => mixed(r));

  // A few long strings: whitespace and punctuation runs, a long word, long
  // numbers, a long paragraph of Chinese (one \p{L}+ pre-token).
  add(' '.repeat(5000) + 'x');
  add('\n'.repeat(300) + ' \t'.repeat(300));
  add('='.repeat(3000) + '\n' + '-'.repeat(1000));
  add('a'.repeat(4000));
  add(digits(r, 3000));
  add(ZH_HANS.join('').repeat(20).replace(/[，。？！：“”]/g, ''));
  add(Array.from({ length: 200 }, () => sentence(r)).join(' '));
  add(Buffer.concat(Array.from({ length: 50 }, () => mixed(r))));
  // Long texts (several KB, like real prompts) switch on the encoder's
  // per-call word cache; repeated words must come out as the oracle says.
  for (let i = 0; i < 12; i++) {
    const gens = [() => B(sentence(r) + ' '), () => mixed(r), () => B(r.pick(WORLD) + '\n'), () => B(chatLike(r))];
    add(Buffer.concat(Array.from({ length: 150 }, () => r.pick(gens)())));
  }
  return out;
}

module.exports = { makeCorpus, rng };
