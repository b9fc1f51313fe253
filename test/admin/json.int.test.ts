// JSON columns: json_paths encrypt only the values at the paths (jsonb and
// json), a whole json/jsonb value is stored as a JSON string holding the
// envelope; backfill, status, rotation, verify and rollback all agree, and the
// server-side path filters select exactly the rows the JS transform would change.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decryptPaths, ENVELOPE_PREFIX, findPathStrings, unwrapJsonString } from '../../src/admin/json-paths.js';
import { plaintextPredicate } from '../../src/admin/sql.js';
import type { LeafPlan } from '../../src/admin/plan.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { col, configOf, keyringOf, newKek, records, runnerFor, type Runner } from './helpers.js';

let db: TestDb;
const kA = newKek();
const kB = newKek();
const ringA = keyringOf(kA);
const ringB = keyringOf(kB, kA);
const PATHS = ['smtp.password', 'servers.token', 'apiKey'];
const paths = PATHS.map((p) => p.split('.'));
const config = configOf([
  { schema: 'public', table: 'workspace', columns: [col('settings', { jsonPaths: paths }), col('blob')] },
  { schema: 'public', table: 'legacy_json', columns: [col('doc', { jsonPaths: [['pw']] })] },
]);
let runA: Runner;
let runB: Runner;

const DOCS: (object | string | null)[] = [
  { smtp: { host: 'mx.example', password: 'hunter2', port: 25 }, apiKey: 'k-1', theme: 'dark' },
  { smtp: { password: '' }, servers: [{ token: 't1', name: 'a' }, { token: 't2' }, { name: 'no token' }], big: 1 },
  { nothing: 'here', count: 12345678901234567890 },
  { apiKey: 42, smtp: { password: null } },
  { servers: [[{ token: 'nested too deep' }]], apiKey: ['k-a', 'k-b'] },
  'just a string',
  [1, 2, { apiKey: 'in an array' }],
  null,
];

beforeAll(async () => {
  db = await createTestDatabase('json');
  await db.client.query(`CREATE TABLE workspace (id int PRIMARY KEY, settings jsonb, blob jsonb)`);
  await db.client.query(`CREATE TABLE legacy_json (id int PRIMARY KEY, doc json)`);
  for (const [i, d] of DOCS.entries()) {
    const text = d === null ? null : JSON.stringify(d);
    await db.client.query(`INSERT INTO workspace VALUES ($1, $2::jsonb, $2::jsonb)`, [i + 1, text]);
  }
  // json keeps its text exactly: whitespace, key order, duplicate keys.
  await db.client.query(`INSERT INTO legacy_json VALUES (1, '{ "pw" : "one",  "pw": "two", "n": 1.50 }'), (2, '{"other": 1}'), (3, '[{"pw": "x"}]')`);
  runA = runnerFor(db.client, config, ringA);
  runB = runnerFor(db.client, config, ringB);
});

afterAll(async () => {
  await Promise.all([ringA.close(), ringB.close()]);
  await db?.drop();
});

describe('JSON columns', () => {
  it('the server-side path filter selects exactly the rows the transform changes', async () => {
    const leaf = { column: 'settings', valueKind: 'json-paths', policy: config.encrypted[0].columns[0], jsonType: 'jsonb' } as LeafPlan;
    const { rows } = await db.client.query(`SELECT id, settings::text AS t, ${plaintextPredicate(leaf)} AS p FROM workspace AS t ORDER BY id`);
    for (const r of rows) {
      const js = r.t === null ? false : findPathStrings(r.t, paths).some((s) => s.value !== '' && !s.value.startsWith(ENVELOPE_PREFIX));
      expect(r.p ?? false, `row ${r.id}: ${r.t}`).toBe(js);
    }
  });

  it('backfill encrypts only the values at the paths; everything else is unchanged', async () => {
    const before = await db.client.query(`SELECT id, settings::text AS s, blob::text AS b FROM workspace ORDER BY id`);
    const res = records(await runA('CMEK ENCRYPT EXISTING workspace'));
    expect(res.map((r) => [r.column, r.plaintext_rows, r.encrypted, r.failed])).toEqual([
      ['settings', '4', '4', '0'],
      ['blob', '7', '7', '0'],
    ]);
    const after = await db.client.query(`SELECT id, settings::text AS s, blob::text AS b, jsonb_typeof(blob) AS bt FROM workspace ORDER BY id`);
    for (const [i, r] of after.rows.entries()) {
      const old = before.rows[i];
      if (old.s === null) {
        expect(r.s).toBeNull();
        continue;
      }
      const leaves = findPathStrings(r.s, paths).map((s) => s.value);
      for (const v of leaves) if (v !== '') expect(v.startsWith(ENVELOPE_PREFIX)).toBe(true);
      expect(await decryptPaths(r.s, paths, (e) => ringA.decrypt(e))).toBe(old.s);
      // Whole value: a JSON string holding the envelope of the original text.
      expect(r.bt).toBe('string');
      expect(await ringA.decrypt(unwrapJsonString(r.b)!)).toBe(old.b);
    }
    expect(JSON.parse(after.rows[0].s).smtp).toMatchObject({ host: 'mx.example', port: 25 });
    expect(after.rows[2].s).toBe(before.rows[2].s); // nothing at the paths: untouched (big number included)
    expect(records(await runA('CMEK ENCRYPT EXISTING workspace')).map((r) => r.plaintext_rows)).toEqual(['0', '0']);
  });

  it('json (not jsonb) keeps its exact text around the encrypted values', async () => {
    expect(records(await runA('CMEK ENCRYPT EXISTING legacy_json'))[0]).toMatchObject({ plaintext_rows: '2', encrypted: '2' });
    const { rows } = await db.client.query(`SELECT id, doc::text AS d FROM legacy_json ORDER BY id`);
    expect(rows[0].d).toMatch(/^\{ "pw" : "cmek:v1:[^"]+",  "pw": "cmek:v1:[^"]+", "n": 1\.50 \}$/);
    expect(await decryptPaths(rows[0].d, [['pw']], (e) => ringA.decrypt(e))).toBe('{ "pw" : "one",  "pw": "two", "n": 1.50 }');
    expect(rows[1].d).toBe('{"other": 1}');
  });

  it('status counts rows by what is at the paths, and KEKs by value', async () => {
    const st = records(await runA('CMEK STATUS workspace'));
    expect(st[0]).toMatchObject({ column: 'settings', rows: '8', encrypted: '4', plaintext: '0' });
    // hunter2, k-1, t1, t2, k-a, k-b, 'in an array' (the empty password stays empty).
    expect(st[0].keks).toBe(`${ringA.primaryLabel()} (primary): 7`);
    expect(st[1]).toMatchObject({ column: 'blob', rows: '8', encrypted: '7', null: '1', keks: `${ringA.primaryLabel()} (primary): 7` });
  });

  it('rotation re-wraps values inside documents and whole values; verify and rollback', async () => {
    const before = await db.client.query(`SELECT id, settings::text AS s, blob::text AS b FROM workspace ORDER BY id`);
    const res = records(await runB('CMEK ROTATE KEK workspace'));
    expect(res.map((r) => [r.column, r.rewrapped])).toEqual([
      ['settings', '4'],
      ['blob', '7'],
    ]);
    expect(records(await runB('CMEK STATUS workspace'))[0].keks).toBe(`${ringB.primaryLabel()} (primary): 7`);
    expect(records(await runB('CMEK ROTATE KEK workspace')).map((r) => r.rewrapped)).toEqual(['0', '0']);
    expect(records(await runB('CMEK VERIFY workspace')).map((r) => [r.values, r.ok, r.failed])).toEqual([
      ['7', '7', '0'],
      ['7', '7', '0'],
    ]);
    const res2 = records(await runB('CMEK DECRYPT EXISTING workspace CONFIRM'));
    expect(res2.map((r) => r.decrypted)).toEqual(['4', '7']);
    const after = await db.client.query(`SELECT id, settings::text AS s, blob::text AS b FROM workspace ORDER BY id`);
    for (const [i, r] of after.rows.entries()) {
      const orig = DOCS[i] === null ? null : JSON.stringify(DOCS[i]);
      if (orig === null) continue;
      const canon = (await db.client.query(`SELECT $1::jsonb::text AS c`, [orig])).rows[0].c;
      expect(r.s).toBe(canon);
      expect(r.b).toBe(canon);
    }
    expect(before.rows.length).toBe(after.rows.length);
  });
});
