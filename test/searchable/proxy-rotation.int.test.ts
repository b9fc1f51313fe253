// A KEK rotation never breaks a lookup through the proxy: before (one KEK),
// during (rows under both KEKs: a second proxy with the new KEK as primary
// writes under it, and half of the old rows are re-wrapped with
// rewrapSearchable) and after (every row re-wrapped, the old KEK's wrapping
// retired, a proxy that holds only the new KEK). Lookups run in both protocols,
// through both proxies, with two real candidates per value during the rotation.
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, table } from '../helpers/encrypted-proxy.js';
import { newKekFile, startSearchableProxy, type SearchableProxy } from './proxy-setup.js';

const ref = { schema: 'public', table: 'api_token', column: 'token_hash' };
const encrypted = [table('api_token', [column('token_hash', { searchable: true })])];
const timing = { refreshMs: 100, activationDelayMs: 1_200 };
const N = 40;
const hash = (i: number) => `sha256:${String(i).padStart(4, '0')}${'ab'.repeat(28)}`;
const headerOf = (v: string) => v.slice(0, v.lastIndexOf('|') + 1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let db: TestDb;
const kek1 = newKekFile();
const kek2 = newKekFile();
let a: SearchableProxy; // KEK1 primary
let b: SearchableProxy; // KEK2 primary, KEK1 readable
let ca: pg.Client;
let cb: pg.Client;
/** Through A, only ever runs one named prepared statement (Bind/Execute after the first Parse). */
let cn: pg.Client;
const byName = (i: number) => cn.query({ name: 'lookup_by_hash', text: 'SELECT id FROM api_token WHERE token_hash = $1', values: [hash(i)] });

/**
 * Every row found by its plaintext through `c`, in both protocols. `read`: the
 * proxy also holds every KEK used, so it decrypts the values it found (a
 * replica without the new KEK finds rows written under it, but cannot read them).
 */
async function lookupAll(c: pg.Client, ids: number[], read = true): Promise<void> {
  for (const i of ids) {
    const ext = await c.query(`SELECT id${read ? ', token_hash' : ''} FROM api_token WHERE token_hash = $1`, [hash(i)]);
    expect(ext.rows).toEqual([read ? { id: i, token_hash: hash(i) } : { id: i }]);
    const simple = await c.query(`SELECT id FROM api_token WHERE token_hash = '${hash(i)}'`);
    expect(simple.rows).toEqual([{ id: i }]);
  }
  const all = await c.query('SELECT count(*)::int AS n FROM api_token WHERE token_hash = ANY($1)', [ids.map(hash)]);
  expect(all.rows[0].n).toBe(ids.length);
  const inList = await c.query(`SELECT count(*)::int AS n FROM api_token WHERE token_hash IN (${ids.map((i) => `'${hash(i)}'`).join(', ')})`);
  expect(inList.rows[0].n).toBe(ids.length);
}

/** A statement through the proxy refreshes its keys once refreshMs has passed. */
async function refreshed(c: pg.Client): Promise<void> {
  await sleep(timing.refreshMs + 50);
  await c.query('SELECT 1');
}

async function storedHeaders(): Promise<Map<string, number>> {
  const { rows } = await db.client.query('SELECT token_hash FROM api_token');
  const out = new Map<string, number>();
  for (const r of rows) out.set(headerOf(r.token_hash), (out.get(headerOf(r.token_hash)) ?? 0) + 1);
  return out;
}

beforeAll(async () => {
  db = await createTestDatabase('srchrot');
  await db.client.query('CREATE TABLE api_token (id int PRIMARY KEY, token_hash text UNIQUE)');
  a = await startSearchableProxy({ encrypted, kekPath: kek1.path, searchable: timing });
  ca = new pg.Client(a.via(db.url));
  await ca.connect();
  for (let i = 1; i <= N; i++) await ca.query('INSERT INTO api_token (id, token_hash) VALUES ($1, $2)', [i, hash(i)]);
  cn = new pg.Client(a.via(db.url));
  await cn.connect();
  expect((await byName(1)).rows).toEqual([{ id: 1 }]);
});

afterAll(async () => {
  await ca?.end().catch(() => {});
  await cb?.end().catch(() => {});
  await cn?.end().catch(() => {});
  await a?.close().catch(() => {});
  await b?.close().catch(() => {});
  await db?.drop();
  for (const k of [kek1, kek2]) rmSync(dirname(k.path), { recursive: true, force: true });
});

describe('KEK rotation of a searchable column, through the proxy', () => {
  let oldHeader = '';

  it('before: one KEK, one stored form per value', async () => {
    const headers = await storedHeaders();
    expect(headers.size).toBe(1);
    oldHeader = [...headers.keys()][0]!;
    expect(oldHeader.startsWith('cmek:v1:')).toBe(true);
    await lookupAll(ca, [1, 2, 3, N]);
    const stored = (await db.client.query('SELECT token_hash FROM api_token WHERE id = 1')).rows[0].token_hash;
    expect(await a.keyring.decrypt(stored)).toBe(hash(1));
  });

  it('during: a proxy with the new KEK writes under it once its wrapping is active; both proxies find every row', async () => {
    b = await startSearchableProxy({ encrypted, kekPath: kek2.path, previous: [kek1.path], searchable: timing });
    cb = new pg.Client(b.via(db.url));
    await cb.connect();
    // Its first statement loads the keys and wraps the column key under KEK2 (not active yet).
    await cb.query('INSERT INTO api_token (id, token_hash) VALUES ($1, $2)', [101, hash(101)]);
    expect(b.keys(db.name).describe()[0]!.wrappings.map((w) => [w.active, w.write])).toEqual([
      [true, true],
      [false, false],
    ]);
    expect(headerOf((await db.client.query('SELECT token_hash FROM api_token WHERE id = 101')).rows[0].token_hash)).toBe(oldHeader);
    await sleep(timing.activationDelayMs + 100);
    await cb.query(`INSERT INTO api_token (id, token_hash) VALUES (102, '${hash(102)}')`);
    await cb.query('INSERT INTO api_token (id, token_hash) VALUES ($1, $2)', [103, hash(103)]);
    const headers = await storedHeaders();
    expect(headers.size).toBe(2);
    const newHeader = [...headers.keys()].find((h) => h !== oldHeader)!;
    expect(headers.get(newHeader)).toBe(2);
    const v = (await db.client.query('SELECT token_hash FROM api_token WHERE id = 103')).rows[0].token_hash;
    expect(v.startsWith('cmek:v1:')).toBe(true);
    expect(await b.keyring.decrypt(v)).toBe(hash(103));

    // A statement prepared before the rotation finds rows written under the new KEK: its
    // Binds refresh the keys and fill the new candidate into a slot it always had.
    await sleep(timing.refreshMs + 50);
    await byName(2);
    expect((await byName(103)).rows).toEqual([{ id: 103 }]);
    expect((await byName(1)).rows).toEqual([{ id: 1 }]);
    await refreshed(ca);
    // A cannot unwrap KEK2's wrapping, but lists it among its candidates.
    expect(a.keys(db.name).describe()[0]!.wrappings.map((w) => w.verified)).toEqual([true, false]);
    await lookupAll(ca, [1, 2, 101, 102, 103], false);
    await lookupAll(cb, [1, 2, 101, 102, 103]);
    await expect(ca.query('SELECT token_hash FROM api_token WHERE token_hash = $1', [hash(103)])).rejects.toMatchObject({ code: 'XX001' });
  });

  it('during: half of the old rows re-wrapped (rewrapSearchable); lookups, NULL and <> keep working in both protocols', async () => {
    const keys = b.keys(db.name);
    const { rows } = await db.client.query('SELECT id, token_hash FROM api_token WHERE id <= $1 ORDER BY id', [N / 2]);
    for (const r of rows) {
      await db.client.query('UPDATE api_token SET token_hash = $1 WHERE id = $2', [await keys.rewrapSearchable(ref, r.token_hash), r.id]);
    }
    const headers = await storedHeaders();
    expect(headers.size).toBe(2);
    expect(headers.get(oldHeader)).toBe(N / 2 + 1); // ids N/2+1..N and 101
    const ids = [1, N / 2, N / 2 + 1, N, 101, 102, 103];
    await lookupAll(ca, ids, false);
    await lookupAll(cb, ids);
    for (const c of [ca, cb]) {
      const some = [1, N];
      const ne = await c.query('SELECT count(*)::int AS n FROM api_token WHERE token_hash <> $1 AND id = ANY($2)', [hash(1), some]);
      expect(ne.rows[0].n).toBe(1);
      const neLit = await c.query(`SELECT count(*)::int AS n FROM api_token WHERE token_hash NOT IN ('${hash(1)}', '${hash(N)}') AND id IN (1, ${N}, 2)`);
      expect(neLit.rows[0].n).toBe(1);
      const nd = await c.query('SELECT id FROM api_token WHERE token_hash IS NOT DISTINCT FROM $1', [hash(N)]);
      expect(nd.rows).toEqual([{ id: N }]);
      const ndLit = await c.query(`SELECT id FROM api_token WHERE '${hash(N)}' IS NOT DISTINCT FROM token_hash`);
      expect(ndLit.rows).toEqual([{ id: N }]);
      const first = await c.query(`SELECT id FROM api_token WHERE '${hash(2)}' = token_hash`);
      expect(first.rows).toEqual([{ id: 2 }]);
      const django = await c.query(`SELECT "api_token"."id" FROM "api_token" WHERE "api_token"."token_hash" = '${hash(N)}' LIMIT 21`);
      expect(django.rows).toEqual([{ id: N }]);
    }
  });

  it('after: every row re-wrapped, the old wrapping retired; a proxy holding only the new KEK finds every row', async () => {
    const keys = b.keys(db.name);
    const { rows } = await db.client.query('SELECT id, token_hash FROM api_token');
    for (const r of rows) {
      if (keys.needsRewrap(ref, r.token_hash)) {
        await db.client.query('UPDATE api_token SET token_hash = $1 WHERE id = $2', [await keys.rewrapSearchable(ref, r.token_hash), r.id]);
      }
    }
    expect((await storedHeaders()).size).toBe(1);
    expect((await storedHeaders()).has(oldHeader)).toBe(false);
    // Every replica has moved on: retire KEK1 (A, still on it, would wrap the key again).
    await cn.end();
    await ca.end();
    await a.close();
    const oldWrap = await db.client.query(
      `DELETE FROM pgcmek.searchable_key_wraps w USING (SELECT wrapped_dek FROM pgcmek.searchable_key_wraps ORDER BY created_at LIMIT 1) o
        WHERE w.wrapped_dek = o.wrapped_dek RETURNING w.key_name`,
    );
    expect(oldWrap.rowCount).toBe(1);
    const c = await startSearchableProxy({ encrypted, kekPath: kek2.path, searchable: timing });
    const cc = new pg.Client(c.via(db.url));
    await cc.connect();
    try {
      await lookupAll(cc, [1, N, 101, 103]);
      expect(c.keys(db.name).describe()[0]!.wrappings).toHaveLength(1);
      await cc.query('INSERT INTO api_token (id, token_hash) VALUES ($1, $2)', [104, hash(104)]);
      await refreshed(cb);
      await lookupAll(cb, [1, 104]);
    } finally {
      await cc.end();
      await c.close();
    }
  });
});
