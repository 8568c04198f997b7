// The oracle for core/regex: Node's RegExp with the u flag (ECMA-262).
// Prints cases for tests/tools/rxcheck: for every pattern below, in search
// mode (JSON Schema's "pattern": new RegExp(p, 'u').test(s)) and anchored
// mode (new RegExp('^(?:' + p + ')$', 'u')), a deterministic set of strings
// drawn from the pattern's own characters plus a fixed set of tricky ones
// (escapes, controls, multi-byte UTF-8, line terminators), each with Node's
// verdict:
//     P s|a HEX          the pattern (hex of its UTF-8)
//     S HEX 0|1          a string and whether it matches
// Usage: node tests/regex_oracle.mjs [strings_per_pattern] > cases.txt

const PATTERNS = [
  // literals and concatenation
  'a', 'abc', 'hello world', 'é', '€uro', '😀', 'a😀b', 'ü+', '日本語?',
  // dot and line terminators
  '.', 'a.c', '^.*$', '^.+$', '.{2}', '^.{1,3}$', 'a.*b', 'x.?y',
  // classes
  '[abc]', '[a-c]+', '[^abc]', '^[^a-z]*$', '[a-zA-Z0-9_]', '[é-ü]', '[^é]', '[\\u00e0-\\u00ff]+', '[😀-😂]',
  '[^😀]', '[.]', '[*+?]', '[\\]\\[]', '[\\^x]', '[x^]', '[-a]', '[a-]', '[\\-]', '^[\\w.-]+$', '[\\\\]', '["]',
  '^[^"\\\\]*$', '[\\b]', '[^\\n]+', '[\\t-\\r]', '^[\\x00-\\x1f]$', '^[^\\x00-\\x7f]+$', '[\\u2028\\u2029]',
  '[^\\s\\S]?x', '[\\s\\S]', '^[\\d\\s]+$', '[^\\W]', '[^\\D]', '[\\S]', '^[^\\s]+$',
  // class escapes
  '\\d', '\\D', '\\w', '\\W', '\\s', '\\S', '^\\d+$', '^\\D*$', '^\\w+$', '^\\s*$', '^\\S+$', '\\d{3}-\\d{4}',
  // quantifiers
  'a*', 'a+', 'a?', '^a*$', '^a+$', '^a?$', '^ab*c$', '^ab+c$', '^ab?c$', '^(ab)*$', '^(ab)+$', '^(ab)?$',
  'a{2}', '^a{2}$', '^a{2,}$', '^a{2,4}$', '^a{0,2}$', '^a{0}$', '^(?:ab){1,3}$', '^[ab]{3}$', '^[ab]{2,3}c{0,1}$',
  'a*?', '^a+?$', '^a??b$', '^a{2,3}?$', '^(a|b)*?c$', '^(a*)*$', '^(a?)+$', '^(a|)+b$',
  // alternation and groups
  'a|b', 'ab|cd', '^ab|cd$', '^(ab|cd)$', '^a|b$', '^(?:a|b|c)$', 'x(?:y|z)', '(a)(b)(c)', '^(?<year>\\d{4})-(?<m>\\d{2})$',
  '|a', 'a|', '^(|a)$', '^(a|ab)(c|bcd)$', '(?:(?:a|b)c)+', '^((a)|b)+$',
  // anchors, also inside groups and alternatives (ECMA assertions)
  '^', '$', '^$', '^a', 'a$', '^a$', '^abc$', '^^a', 'a$|^b', '^x|^y', 'x$|y$', '(^a)', '(^a)|(b$)', '(^$)|(^[ab]{2}$)',
  '^([^,]+(,|$)){2,}$', '(?:^|,)a(?:,|$)', '(a|^)b', 'a(?:$|b)', '$^', '^$|a', 'a^b', 'a$b', '(^|a)*b', 'a(b|$)*',
  '^(\\/?((\\.{2})|([a-z]*))($|\\/))*$', '(^[^5]*$)|7', '[ab]$|^[cd]',
  'Normal|Fighting|Flying|Poison|Ground|Rock|Bug|Ghost|Steel|Fire|Water|Grass|Electric|Psychic|Ice|Dragon|Dark|Fairy',
  'en|de|ru|pt|nl|fr|it|es|pl|uk|zh-cn', '^list|date|time|string|enum|int|double|long|boolean|number$',
  // lookaheads right after a leading ^
  '^(?!x)[a-z]+$', '^(?=a)[a-z]{2}', '^(?!pattern$).*$', '^(?!a|bc|é).+$', '^(?=[^=]+$)(?!\\s+$)(.|\n)+$',
  '^(?!.*\\/)^(.*[^.]+.*)$', 'x|^(?!a)b', '^(?!a)', '^(?=a)(?!ab)', '^(?!(a|b)c)\\w*$', '^(?=😀)',
  // escapes
  '\\.', '\\*', '\\+', '\\?', '\\(', '\\)', '\\[', '\\]', '\\{', '\\}', '\\|', '\\^', '\\$', '\\/', '\\\\',
  '\\t', '\\n', '\\r', '\\f', '\\v', '\\0', '\\x41', '\\x7f', '\\xe9', '\\u0041', '\\u00e9', '\\u20ac', '\\u{1F600}',
  '\\uD83D\\uDE00', '\\cJ', '\\cj', '^\\u0022\\u005c$', '"', '^"a"$',
  // realistic JSON Schema patterns
  '^[a-z0-9-]+$', '^[A-Z]{2}$', '^\\+?[0-9]{7,15}$', '^[0-9]{5}(-[0-9]{4})?$', '^#[0-9a-fA-F]{6}$',
  '^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$', '^(https?|ftp)://[^\\s/$.?#].[^\\s]*$',
  '^\\d{4}-\\d{2}-\\d{2}$', '^([01]\\d|2[0-3]):[0-5]\\d$', '^[^<>]*$', '^\\S(.*\\S)?$', '^(?!x)', '^v\\d+(\\.\\d+){0,2}$',
  '^[a-z][a-z0-9_]*$', '^(0|[1-9][0-9]*)$', '^-?\\d+(\\.\\d+)?$', '^[\\p{L}]+$', '\\bword\\b', '(a)\\1',
  '^[\\u4e00-\\u9fff]+$', '^[^\\u0000-\\u001f]*$', '^.{0,5}$', '^[a-f]{1,2}[0-9]?$', 'ab{2,}c', '(x|y){2}z',
];

// A small deterministic PRNG (mulberry32).
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TRICKY = ['aa', 'ab', 'éa', '😀😀', 'a', 'b', 'c', 'x', 'y', 'z', '0', '1', '9', ' ', '_', '-', '.', '"', '\\', '\n', '\r', '\t',
  '\b', '\f', '\v', '\x00', '\x01', '\x1f', '\x7f', '\u0085', '\u00a0', 'é', 'ü', '€', '日', '😀', '😁', '\u2028',
  '\u2029', '\u3000', '\ufeff', 'A', 'Z', '@', '/', ':', '#', '+'];

// The characters a pattern mentions (its literal text, \u escapes and the
// ends of its ranges, roughly): the alphabet strings are drawn from first.
function alphabet(p) {
  const chars = new Set(['a', 'b']);
  for (const ch of p) if (!'\\^$()|?*+{}[]'.includes(ch)) chars.add(ch);
  for (const m of p.matchAll(/\\u\{([0-9a-fA-F]+)\}|\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})/g)) {
    const cp = parseInt(m[1] || m[2] || m[3], 16);
    if (cp < 0xd800 || cp > 0xdfff) chars.add(String.fromCodePoint(cp));
  }
  return [...chars];
}

function strings(p, n, rand) {
  const own = alphabet(p), out = new Set(['']);
  const pick = (arr) => arr[Math.floor(rand() * arr.length)];
  while (out.size < n) {
    const len = Math.floor(rand() * 9);
    let s = '';
    for (let i = 0; i < len; i++) s += own.length && rand() < 0.7 ? pick(own) : pick(TRICKY);
    out.add(s);
  }
  return [...out];
}

// Random patterns: atoms from a small alphabet (ASCII, multi-byte, escapes,
// classes), quantifiers (counted too), groups and alternation, nested.
const ATOMS = ['a', 'b', 'c', 'é', '😀', '.', '\\d', '\\w', '\\s', '\\S', '\\W', '[ab]', '[^a]', '[a-cé]', '[^\\s😀]',
  '\\n', '"', '\\\\', '\\u00e9', '[\\x00-\\x1f]', '[^\\d\\n]', '^', '$'];
const QUANTS = ['', '', '', '*', '+', '?', '{2}', '{0,2}', '{1,}', '{1,3}', '*?', '+?'];

function randomPattern(rand, depth) {
  const pick = (arr) => arr[Math.floor(rand() * arr.length)];
  const alts = [];
  const nalt = rand() < 0.25 ? 2 : 1;
  for (let a = 0; a < nalt; a++) {
    let seq = '';
    const n = 1 + Math.floor(rand() * 3);
    for (let i = 0; i < n; i++) {
      const atom = depth < 2 && rand() < 0.2 ? '(' + (rand() < 0.5 ? '?:' : '') + randomPattern(rand, depth + 1) + ')' : pick(ATOMS);
      seq += atom + pick(QUANTS);
    }
    if (depth === 0 && rand() < 0.3) seq = '^' + seq;
    if (depth === 0 && rand() < 0.3) seq += '$';
    alts.push(seq);
  }
  return alts.join('|');
}

{
  const rand = rng(777);
  // Long random patterns under search semantics can blow up to the state
  // limit (a correct refusal, but slow and no test of matching): keep short.
  for (let kept = 0; kept < 250;) {
    const p = randomPattern(rand, 0);
    if ([...p].length <= 36) PATTERNS.push(p), kept++;
  }
}

const hex = (s) => Buffer.from(s, 'utf8').toString('hex');
const per = Number(process.argv[2] || 40);
const lines = [];
let seed = 12345;
for (const p of PATTERNS) {
  let search;
  try {
    search = new RegExp(p, 'u');
  } catch {
    continue; // a SyntaxError in ECMA: tests/test_regex.c checks our errors
  }
  if (/\(\?<[=!]|\\[bBpPk1-9]/.test(p)) continue; // constructs we refuse (an error, checked in test_regex.c)
  const anchored = new RegExp('^(?:' + p + ')$', 'u');
  const ss = strings(p, per, rng(seed++));
  for (const [mode, re] of [['s', search], ['a', anchored]]) {
    lines.push(`P ${mode} ${hex(p)}`);
    for (const s of ss) lines.push(`S ${hex(s)} ${re.test(s) ? 1 : 0}`);
  }
}
process.stdout.write(lines.join('\n') + '\n');
