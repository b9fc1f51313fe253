// A statement holds the candidates that exist at its Parse (one per KEK
// wrapping: with one KEK, `col = $n`). Parsed before a rotation began and bound
// after this proxy learned the new wrapping, it is widened just before the
// Bind and invisibly to the client: the lookup finds its row, the client sees
// exactly the replies it asked for, and the row shape is still known (a result
// column of the searchable table is decrypted).
//  - The unnamed statement is Parsed again, wider, as itself.
//  - A named one is served by a wider copy the proxy Parses under a name of its
//    own (session-bind.ts): rows under both KEKs are found and the client's
//    statement is never closed or replaced. A failed widening (in an aborted
//    transaction) fails that Bind only; the client's Close, or DEALLOCATE,
//    drops the proxy's copy too.
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, table } from '../helpers/encrypted-proxy.js';
import { ensureRole } from '../proxy/helpers.js';
import { RawClient } from '../proxy/raw-client.js';
import { newKekFile, startWiredProxy, type WiredProxy } from './proxy-setup.js';

const searchableTable = (name: string) => [table(name, [column('token_hash', { searchable: true }), column('label')])];
const timing = { refreshMs: 100, activationDelayMs: 1_200, retryMs: 50 };
const hash = (i: number) => `sha256:${String(i).padStart(5, '0')}${'ab'.repeat(28)}`;

const proxyWith = (kekPath: string, previous: string[] = [], name = 'tokens'): Promise<WiredProxy> =>
  startWiredProxy({ encrypted: searchableTable(name), kekPath, previous, searchable: timing });

let db: TestDb;
const kek1 = newKekFile();
const kek2 = newKekFile();
const proxies: WiredProxy[] = [];
const clients: pg.Client[] = [];

beforeAll(async () => {
  db = await createTestDatabase('srchun');
  await db.client.query(`CREATE TABLE tokens (id int PRIMARY KEY, token_hash text UNIQUE, label text)`);
  await db.client.query(`CREATE TABLE tokens_n (id int PRIMARY KEY, token_hash text UNIQUE, label text)`);
});

afterAll(async () => {
  for (const c of clients) await c.end().catch(() => {});
  for (const p of proxies) await p.close().catch(() => {});
  await db?.drop();
  for (const k of [kek1, kek2]) rmSync(dirname(k.path), { recursive: true, force: true });
});

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client(url);
  await c.connect();
  clients.push(c);
  return c;
}

/**
 * A proxy holding KEK1 alone, rows 1–5 of `name` written through it, and a raw
 * client on it as a trust role (the raw client speaks no SCRAM) that may read
 * the table and the key tables the proxy's session made.
 */
async function fiveRows(name: string, h: (i: number) => string): Promise<{ a: WiredProxy; raw: RawClient }> {
  const a = await proxyWith(kek1.path, [], name);
  proxies.push(a);
  const ca = await connect(a.via(db.url));
  for (let i = 1; i <= 5; i++) await ca.query(`INSERT INTO ${name} VALUES ($1, $2, $3)`, [i, h(i), `label ${i}`]);
  await ensureRole(db.client, 'pgcmek_trust');
  await db.client.query(`GRANT SELECT ON ${name} TO pgcmek_trust; GRANT USAGE ON SCHEMA pgcmek TO pgcmek_trust; GRANT SELECT ON ALL TABLES IN SCHEMA pgcmek TO pgcmek_trust`);
  return { a, raw: await RawClient.connect(a.server.port, { database: db.name, user: 'pgcmek_trust' }) };
}

describe('an unnamed statement bound after its key gained a KEK wrapping', () => {
  it('is Parsed again with more candidates: the lookup finds its row and the client sees only its own replies', async () => {
    const { a, raw } = await fiveRows('tokens', hash);
    try {
      // Parsed while the key has one wrapping: one candidate.
      raw.send(serialize.parse({ name: '', text: 'SELECT id, label FROM tokens WHERE token_hash = $1', types: [] }), serialize.sync());
      expect((await raw.untilReady()).map((m) => m.code)).toEqual(['1', 'Z']);
      const keys = a.layer.searchable.keysFor(db.name)!;
      const ref = { schema: 'public', table: 'tokens', column: 'token_hash' };
      expect(keys.column(ref)!.group.wrappingCount).toBe(1);

      // A replica with KEK2 as primary adds the column key's wrapping under KEK2.
      const b = await proxyWith(kek2.path, [kek1.path]);
      proxies.push(b);
      const cb = await connect(b.via(db.url));
      expect((await cb.query('SELECT id FROM tokens WHERE token_hash = $1', [hash(2)])).rows).toEqual([{ id: 2 }]);
      await new Promise((r) => setTimeout(r, timing.refreshMs + 100));

      // Bound now: the Bind is an idle point, so proxy A learns the second wrapping first.
      raw.send(serialize.bind({ portal: '', statement: '', values: [hash(3)] }), serialize.execute({ portal: '' }), serialize.sync());
      const got = await raw.untilReady();
      expect(keys.column(ref)!.group.wrappingCount).toBe(2);
      const err = got.find((m) => m.code === 'E');
      expect(err && err.body.toString('latin1')).toBeUndefined();
      expect(got.map((m) => m.code)).toEqual(['2', 'D', 'C', 'Z']);
      // id 3 and its label, decrypted: the row shape was relearned for the new statement.
      const row = got[1]!.body;
      const n1 = row.readInt32BE(2);
      expect(row.toString('utf8', 6, 6 + n1)).toBe('3');
      expect(row.toString('utf8', 10 + n1)).toBe('label 3');

      // The widened statement serves further binds as well.
      raw.send(serialize.bind({ portal: '', statement: '', values: [hash(5)] }), serialize.execute({ portal: '' }), serialize.sync());
      const again = await raw.untilReady();
      expect(again.map((m) => m.code)).toEqual(['2', 'D', 'C', 'Z']);
      expect(again[1]!.body.toString('utf8', 6, 7)).toBe('5');
    } finally {
      raw.end();
    }
  });
});

const LOOKUP = 'SELECT id, label FROM tokens_n WHERE token_hash = $1';
const hashN = (i: number) => `sha256:${String(i).padStart(5, '0')}${'cd'.repeat(28)}`;
const codes = (msgs: { code: string }[]) => msgs.map((m) => m.code);
/** The id and label of a DataRow (two text columns). */
function idLabel(row: Buffer): [string, string] {
  const n1 = row.readInt32BE(2);
  return [row.toString('utf8', 6, 6 + n1), row.toString('utf8', 10 + n1)];
}
const lookup = (name: string, i: number) => [serialize.bind({ portal: '', statement: name, values: [hashN(i)] }), serialize.execute({ portal: '' }), serialize.sync()];
const errorText = (msgs: { code: string; body: Buffer }[]) => msgs.find((m) => m.code === 'E')?.body.toString('latin1');

describe('a named statement bound after its key gained a KEK wrapping', () => {
  it('is served by a wider statement of the proxy: rows under either KEK are found, the client statement stays its own', async () => {
    // Its own table: a column key that has one wrapping so far.
    const { a, raw } = await fiveRows('tokens_n', hashN);
    const prepared = async () => {
      raw.send(serialize.query('SELECT name, statement FROM pg_prepared_statements ORDER BY name'));
      const got = await raw.untilReady();
      return got.filter((m) => m.code === 'D').map((m) => m.body.toString('utf8', 6, 6 + m.body.readInt32BE(2)));
    };
    try {
      // Parsed while the key has one wrapping: one candidate, `token_hash = $1` at the server.
      raw.send(serialize.parse({ name: 'lk', text: LOOKUP, types: [] }), serialize.parse({ name: 'lk2', text: LOOKUP, types: [] }), serialize.sync());
      expect(codes(await raw.untilReady())).toEqual(['1', '1', 'Z']);
      const keys = a.layer.searchable.keysFor(db.name)!;
      const ref = { schema: 'public', table: 'tokens_n', column: 'token_hash' };
      expect(keys.column(ref)!.group.wrappingCount).toBe(1);
      raw.send(...lookup('lk', 1));
      const before = await raw.untilReady();
      expect(codes(before)).toEqual(['2', 'D', 'C', 'Z']);
      expect(idLabel(before[1]!.body)).toEqual(['1', 'label 1']);

      // A replica with KEK2 as primary adds the column key's wrapping under KEK2, and once it
      // is active writes new rows under it.
      const b = await proxyWith(kek2.path, [kek1.path], 'tokens_n');
      proxies.push(b);
      const cb = await connect(b.via(db.url));
      expect((await cb.query(LOOKUP, [hashN(2)])).rows).toEqual([{ id: 2, label: 'label 2' }]);
      await new Promise((r) => setTimeout(r, timing.activationDelayMs + 300));
      await cb.query('INSERT INTO tokens_n (id, token_hash) VALUES ($1, $2)', [6, hashN(6)]);
      // Its label as legacy plaintext (proxy A holds no KEK2 for an ordinary value written by B).
      await db.client.query(`UPDATE tokens_n SET label = 'label 6' WHERE id = 6`);
      const stored = await db.client.query('SELECT token_hash FROM tokens_n WHERE id IN (1, 6) ORDER BY id');
      const header = (v: string) => v.slice(0, v.indexOf('|'));
      expect(header(stored.rows[0].token_hash)).not.toBe(header(stored.rows[1].token_hash));

      // Bound now (an idle point: proxy A learns the second wrapping first). Row 3 is under
      // KEK1, row 6 under KEK2: both found, with their labels decrypted.
      raw.send(...lookup('lk', 3), ...lookup('lk', 6));
      const got = await raw.untilReady(); // the first Sync's ReadyForQuery
      const got2 = await raw.untilReady();
      expect(keys.column(ref)!.group.wrappingCount).toBe(2);
      expect(errorText([...got, ...got2])).toBeUndefined();
      expect(codes(got)).toEqual(['2', 'D', 'C', 'Z']);
      expect(codes(got2)).toEqual(['2', 'D', 'C', 'Z']);
      expect(idLabel(got[1]!.body)).toEqual(['3', 'label 3']);
      expect(idLabel(got2[1]!.body)).toEqual(['6', 'label 6']);
      // The client's statements are untouched; one wider copy serves lk.
      expect(await prepared()).toEqual(['lk', 'lk2', 'pgcmek_wide_1']);
      raw.send(...lookup('lk', 5));
      expect(idLabel((await raw.untilReady())[1]!.body)).toEqual(['5', 'label 5']);
      expect(await prepared()).toEqual(['lk', 'lk2', 'pgcmek_wide_1']);

      // Bound while the server skips to Sync after an error: the wider Parse is skipped with
      // the Bind (which the proxy then does not send at all); the client hears only its error.
      raw.send(serialize.parse({ name: '', text: 'SELECT 1/0', types: [] }), serialize.bind({}), serialize.execute({}), serialize.flush());
      // (Postgres folds 1/0 while planning: the Bind fails.)
      expect(codes(await raw.take(2))).toEqual(['1', 'E']);
      raw.send(...lookup('lk2', 4));
      expect(codes(await raw.untilReady())).toEqual(['Z']);

      // In an aborted transaction the wider Parse fails: that Bind gets the server's error
      // (25P02), nothing else is lost, and after ROLLBACK the same statement works.
      raw.send(serialize.query('BEGIN; SELECT 1/0'));
      expect(codes(await raw.untilReady())).toContain('E');
      raw.send(...lookup('lk2', 4));
      const failed = await raw.untilReady();
      expect(codes(failed)).toEqual(['E', 'Z']);
      expect(errorText(failed)).toContain('25P02');
      raw.send(serialize.query('ROLLBACK'));
      await raw.untilReady();
      raw.send(...lookup('lk2', 4));
      const retried = await raw.untilReady();
      expect(codes(retried)).toEqual(['2', 'D', 'C', 'Z']);
      expect(idLabel(retried[1]!.body)).toEqual(['4', 'label 4']);
      expect(await prepared()).toEqual(['lk', 'lk2', 'pgcmek_wide_1', 'pgcmek_wide_4']);

      // The client's Close drops the wider copy too.
      raw.send(serialize.close({ type: 'S', name: 'lk' }), serialize.sync());
      expect(codes(await raw.untilReady())).toEqual(['3', 'Z']);
      expect(await prepared()).toEqual(['lk2', 'pgcmek_wide_4']);

      // After DEALLOCATE, a Bind of the name fails as it should (the proxy still holds the
      // statement's narrow plan: 55000, or the server's 26000), and no copy answers it.
      raw.send(serialize.query('DEALLOCATE lk2'));
      expect(codes(await raw.untilReady())).toEqual(['C', 'Z']);
      expect(await prepared()).toEqual([]);
      raw.send(...lookup('lk2', 4));
      const gone = await raw.untilReady();
      expect(codes(gone)).toEqual(['E', 'Z']);
      expect(errorText(gone)).toMatch(/C55000|C26000/);
      // Parsed again now: two candidates from the start, no copy needed.
      raw.send(serialize.parse({ name: 'lk2', text: LOOKUP, types: [] }), ...lookup('lk2', 6));
      const fresh = await raw.untilReady();
      expect(codes(fresh)).toEqual(['1', '2', 'D', 'C', 'Z']);
      expect(idLabel(fresh[2]!.body)).toEqual(['6', 'label 6']);
      expect(await prepared()).toEqual(['lk2']);
    } finally {
      raw.end();
    }
  });
});
