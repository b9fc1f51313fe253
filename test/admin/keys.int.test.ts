// How rows are walked: composite primary keys (row comparison), no primary key
// (ctid page ranges), uuid keys, partitioned and inheritance parents (each leaf
// by itself), quoted names; and per-row failures that do not stop the rest.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/crypto/keyring.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { col, configOf, keyringOf, newKek, records, rows, runnerFor, type Runner } from './helpers.js';

let db: TestDb;
const keyring = keyringOf(newKek());
const notices: string[] = [];
let run: Runner;
const N = rows(1500);

beforeAll(async () => {
  db = await createTestDatabase('keys');
  await db.client.query(`
    CREATE TABLE composite (tenant text, n int, secret text, PRIMARY KEY (tenant, n));
    INSERT INTO composite SELECT 'tenant-' || (g % 7), g, 'c' || g FROM generate_series(1, ${N}) g;
    CREATE TABLE nokey (label text, secret text);
    INSERT INTO nokey SELECT 'l' || g, CASE WHEN g % 5 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, ${N}) g;
    CREATE TABLE uuids (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), secret text);
    INSERT INTO uuids (secret) SELECT 'u' || g FROM generate_series(1, ${N}) g;
    CREATE TABLE events (id int, at date, note text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
    CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE events_2025 (note text, at date, id int, PRIMARY KEY (id, at));
    ALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    INSERT INTO events SELECT g, DATE '2024-06-01' + (g % 400), 'e' || g FROM generate_series(1, ${N}) g;
    CREATE TABLE base (id int PRIMARY KEY, secret text);
    CREATE TABLE derived (extra text) INHERITS (base);
    INSERT INTO base SELECT g, 'b' || g FROM generate_series(1, 100) g;
    INSERT INTO derived SELECT g, 'd' || g, 'x' FROM generate_series(101, 200) g;
    CREATE SCHEMA "Odd Schema";
    CREATE TABLE "Odd Schema"."Mixed Case" ("Key Col" int PRIMARY KEY, "Secret Value" text);
    INSERT INTO "Odd Schema"."Mixed Case" SELECT g, 'm' || g FROM generate_series(1, 50) g;
    CREATE TABLE short (id int PRIMARY KEY, secret varchar(220));
    INSERT INTO short SELECT g, repeat('s', CASE WHEN g % 10 = 0 THEN 120 ELSE 5 END) FROM generate_series(1, 100) g;
  `);
  const config = configOf([
    { schema: 'public', table: 'composite', columns: [col('secret')] },
    { schema: 'public', table: 'nokey', columns: [col('secret')] },
    { schema: 'public', table: 'uuids', columns: [col('secret')] },
    { schema: 'public', table: 'events', columns: [col('note')] },
    { schema: 'public', table: 'base', columns: [col('secret')] },
    { schema: 'Odd Schema', table: 'Mixed Case', columns: [col('Secret Value')] },
    { schema: 'public', table: 'short', columns: [col('secret')] },
  ]);
  run = runnerFor(db.client, config, keyring, notices);
});

afterAll(async () => {
  await keyring.close();
  await db?.drop();
});

/** Every value of a column decrypts (once) to what `expect` computes from the row. */
async function allEncrypted(sql: string, want: (r: Record<string, unknown>) => string | null): Promise<number> {
  const { rows: got } = await db.client.query(sql);
  for (const r of got) {
    const w = want(r);
    if (w === null) {
      expect(r.v).toBeNull();
      continue;
    }
    expect(Keyring.isEncrypted(r.v as string)).toBe(true);
    expect(await keyring.decrypt(r.v as string)).toBe(w);
  }
  return got.length;
}

describe('keys and table shapes', () => {
  it('composite primary key: keyset by row comparison', async () => {
    const r = records(await run('CMEK ENCRYPT EXISTING composite BATCH 97'))[0];
    expect(r).toMatchObject({ key: 'tenant, n', plaintext_rows: String(N), encrypted: String(N) });
    expect(await allEncrypted(`SELECT n, secret AS v FROM composite`, (x) => `c${x.n}`)).toBe(N);
  });

  it('no primary key: ctid page ranges, compare-and-set on the value', async () => {
    const r = records(await run('CMEK ENCRYPT EXISTING nokey BATCH 64'))[0];
    const nonNull = N - Math.floor(N / 5);
    expect(r).toMatchObject({ key: 'ctid', plaintext_rows: String(nonNull), encrypted: String(nonNull) });
    await allEncrypted(`SELECT label, secret AS v FROM nokey`, (x) => (Number(String(x.label).slice(1)) % 5 === 0 ? null : `n${String(x.label).slice(1)}`));
    // Rows our updates moved to later pages are seen again but are ciphertext now: a re-run finds nothing.
    expect(records(await run('CMEK ENCRYPT EXISTING nokey'))[0]).toMatchObject({ plaintext_rows: '0', encrypted: '0' });
    expect(records(await run('CMEK VERIFY nokey'))[0]).toMatchObject({ values: String(nonNull), failed: '0' });
  });

  it('uuid keys', async () => {
    expect(records(await run('CMEK ENCRYPT EXISTING uuids.secret BATCH 100'))[0]).toMatchObject({ encrypted: String(N) });
    const { rows: got } = await db.client.query(`SELECT secret FROM uuids`);
    const pts = new Set(await Promise.all(got.map((r) => keyring.decrypt(r.secret))));
    expect(pts.size).toBe(N);
  });

  it('partitioned tables: each partition by its own key (attnums differ)', async () => {
    const res = records(await run('CMEK ENCRYPT EXISTING events.note'));
    expect(res.map((r) => r.table).sort()).toEqual(['public.events_2024', 'public.events_2025']);
    expect(res.reduce((n, r) => n + Number(r.encrypted), 0)).toBe(N);
    await allEncrypted(`SELECT id, note AS v FROM events`, (x) => `e${x.id}`);
    const st = records(await run('CMEK STATUS events'))[0];
    expect(st).toMatchObject({ table: 'public.events', rows: String(N), encrypted: String(N), plaintext: '0' });
  });

  it('inheritance: the parent alone (ONLY) and each child', async () => {
    const res = records(await run('CMEK ENCRYPT EXISTING base'));
    expect(res.map((r) => [r.table, r.key, r.encrypted])).toEqual([
      ['public.base', 'id', '100'],
      ['public.derived', 'ctid', '100'],
    ]);
    await allEncrypted(`SELECT id, secret AS v FROM base`, (x) => (Number(x.id) <= 100 ? `b${x.id}` : `d${x.id}`));
  });

  it('quoted schema, table and column names', async () => {
    const r = records(await run('CMEK ENCRYPT EXISTING "Odd Schema"."Mixed Case"."Secret Value"'))[0];
    expect(r).toMatchObject({ table: '"Odd Schema"."Mixed Case"', column: 'Secret Value', key: 'Key Col', encrypted: '50' });
    await allEncrypted(`SELECT "Key Col" AS k, "Secret Value" AS v FROM "Odd Schema"."Mixed Case"`, (x) => `m${x.k}`);
  });

  it('a value that no longer fits its varchar(n) fails alone; the rest of the batch is written', async () => {
    notices.length = 0;
    const r = records(await run('CMEK ENCRYPT EXISTING short BATCH 1000'))[0];
    expect(r).toMatchObject({ plaintext_rows: '100', encrypted: '90', failed: '10' });
    expect(notices.join('\n')).toMatch(/public\.short\.secret: 10 row\(s\) failed: id=10 \(SQLSTATE 22001: value too long for type character varying\(220\)\)/);
    const { rows: left } = await db.client.query(`SELECT id FROM short WHERE secret NOT LIKE 'cmek:v1:%' ORDER BY id`);
    expect(left.map((x) => x.id)).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
  });
});
