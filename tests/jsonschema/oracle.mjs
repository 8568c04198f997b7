// Confirms the verdicts in tests/jsonschema/cases.json with a validator we
// did not write (@cfworker/json-schema): every "valid" text validates and
// every "invalid" one does not, under the draft the schema names. Run:
// node tests/jsonschema/oracle.mjs
import { readFileSync } from 'node:fs';
import { Validator } from '@cfworker/json-schema';

const cases = JSON.parse(readFileSync(new URL('./cases.json', import.meta.url), 'utf8'));
const draftOf = (s) => {
  const u = (s && typeof s === 'object' && s.$schema) || '';
  if (u.includes('draft-04')) return '4';
  if (u.includes('draft-07')) return '7';
  if (u.includes('2019-09')) return '2019-09';
  return '2020-12';
};
let bad = 0, n = 0;
for (const c of cases.accept) {
  const v = new Validator(c.schema, draftOf(c.schema), false);
  for (const [texts, want] of [[c.valid, true], [c.invalid, false]]) {
    for (const t of texts) {
      n++;
      const got = v.validate(JSON.parse(t)).valid;
      if (got !== want) {
        bad++;
        console.log(`MISMATCH ${c.name}: ${t} oracle says ${got ? 'valid' : 'invalid'}`);
      }
    }
  }
}
console.log(`oracle: ${n} verdicts, ${bad} disagree`);
process.exit(bad ? 1 : 0);
