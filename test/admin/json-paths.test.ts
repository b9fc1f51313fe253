import { describe, expect, it } from 'vitest';
import {
  decryptPaths,
  decryptPathsSync,
  encryptPaths,
  encryptPathsSync,
  findPathStrings,
  jsonPathLiteral,
  JsonPathError,
  unwrapJsonString,
  wrapJsonString,
} from '../../src/admin/json-paths.js';

const enc = (s: string) => `cmek:v1:${Buffer.from(s).toString('base64url')}|n|t`;
const dec = (s: string) => Buffer.from(s.slice(8).split('|')[0], 'base64url').toString();
const P = (...p: string[]) => p.map((x) => x.split('.'));

describe('json paths', () => {
  it('encrypts only the strings at the paths, leaving the rest of the text byte for byte', async () => {
    const doc = '{"smtp": {"host": "mx", "password": "hunter2", "port": 25}, "big": 12345678901234567890.000, "n": null}';
    const out = await encryptPaths(doc, P('smtp.password'), enc);
    expect(out).toBe(doc.replace('"hunter2"', JSON.stringify(enc('hunter2'))));
    expect(await decryptPaths(out, P('smtp.password'), dec)).toBe(doc);
  });

  it('is idempotent: envelopes stay, empty strings stay unless asked', async () => {
    const doc = '{"a": "", "b": "x"}';
    const once = encryptPathsSync(doc, P('a', 'b'), enc);
    expect(JSON.parse(once)).toEqual({ a: '', b: enc('x') });
    expect(encryptPathsSync(once, P('a', 'b'), enc)).toBe(once);
    expect(JSON.parse(await encryptPaths(doc, P('a'), enc, { encryptEmpty: true })).a).toBe(enc(''));
  });

  it('looks through one level of arrays on the way and at the end, like lax jsonpath', () => {
    const doc = JSON.stringify({
      servers: [{ password: 'p1' }, { password: 'p2', other: 'o' }, [{ password: 'deep' }]],
      tokens: ['t1', 't2', ['nested'], 5],
      num: { password: 7 },
    });
    const found = findPathStrings(doc, P('servers.password', 'tokens', 'num.password')).map((s) => s.value);
    expect(found).toEqual(['p1', 'p2', 't1', 't2']);
  });

  it('handles escapes, unicode, duplicate keys and odd key names', () => {
    const doc = '{"k\\"ey": "a\\"b\\\\c\\u00e9 \\ud83d\\ude00", "x": {"y": "1"}, "x": {"y": "2"}, "a.b": "dot"}';
    const found = findPathStrings(doc, [['k"ey'], ['x', 'y'], ['a.b']]);
    expect(found.map((s) => s.value)).toEqual(['a"b\\cé 😀', '1', '2', 'dot']);
    const out = encryptPathsSync(doc, [['k"ey']], enc);
    expect(dec(JSON.parse(out)['k"ey'])).toBe('a"b\\cé 😀');
    expect(decryptPathsSync(out, [['k"ey']], dec)).toBe(doc.replace('"a\\"b\\\\c\\u00e9 \\ud83d\\ude00"', JSON.stringify('a"b\\cé 😀')));
  });

  it('ignores non-object documents and missing paths; rejects malformed JSON', () => {
    expect(findPathStrings('"just a string"', P('a'))).toEqual([]);
    expect(findPathStrings('[1, 2, {"a": "x"}]', P('a')).map((s) => s.value)).toEqual(['x']);
    expect(findPathStrings('{"b": 1}', P('a'))).toEqual([]);
    for (const bad of ['{"a": }', '{"a": "x"', '{"a" "x"}', '{"a": "x"} junk', '[1,]', '{"a": tru}']) {
      expect(() => findPathStrings(bad, P('a')), bad).toThrow(JsonPathError);
    }
  });

  it('stores whole JSON values as a JSON string holding the envelope', () => {
    const env = enc('{"a": 1}');
    expect(unwrapJsonString(wrapJsonString(env))).toBe(env);
    expect(unwrapJsonString('{"a": 1}')).toBeUndefined();
    expect(unwrapJsonString('"plain string"')).toBeUndefined();
  });

  it('writes Postgres jsonpath literals with quoted keys', () => {
    expect(jsonPathLiteral(['smtp', 'pass"word'])).toBe('$."smtp"."pass\\"word"');
  });
});
