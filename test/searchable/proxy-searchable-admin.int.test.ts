// CMEK admin commands on a searchable column sent through the proxy: the
// backfill of legacy plaintext writes with the column's deterministic key (the
// proxy's lookups then find every row, by parameter and by literal), VERIFY is
// clean, a KEK rotation re-wraps with the column key (lookups still find every
// row, through the new proxy and through one that still runs the old KEK), and
// the rollback brings the plaintext back. A role whose session could not load
// the keys gets 55000 with the proxy's reason.
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, table } from '../helpers/encrypted-proxy.js';
import { newKekFile, startWiredProxy, type WiredProxy } from './proxy-setup.js';

const ROLE = 'pgcmek_srch_adm';
const ref = { schema: 'public', table: 'tokens', column: 'token_hash' };
const encrypted = [table('tokens', [column('token_hash', { searchable: true })])];
// retryMs: the refused role's failed load must not hold back the next session's for 5 s.
const timing = { refreshMs: 100, activationDelayMs: 1_200, retryMs: 50 };
const N = 250;
const hash = (i: number) => `sha256:${String(i).padStart(5, '0')}${'cd'.repeat(28)}`;
/** Legacy values: plaintext hashes, some NULL, one empty (kept empty: encrypt_empty is off). */
const legacy = (i: number) => (i % 25 === 0 ? null : i === 7 ? '' : hash(i));
const headerOf = (v: string) => v.slice(0, v.lastIndexOf('|') + 1);

type Proxy = WiredProxy;

const proxyWith = (kekPath: string, previous: string[] = []): Promise<Proxy> =>
  startWiredProxy({ encrypted, kekPath, previous, searchable: timing, config: { admin: { roles: ['postgres', ROLE] } } });

let db: TestDb;
const kek1 = newKekFile();
const kek2 = newKekFile();
let a: Proxy; // KEK1
let b: Proxy | undefined; // KEK2 primary, KEK1 readable
const clients: pg.Client[] = [];
let ids: number[] = [];

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client(url);
  await c.connect();
  clients.push(c);
  return c;
}

/** Every non-empty row is found by its plaintext through `c`: `= $1`, `= 'literal'` and `= ANY($1)`. */
async function lookupAll(c: pg.Client, read = true): Promise<void> {
  const found = ids.filter((i) => legacy(i));
  for (const i of found) {
    const ext = await c.query(`SELECT id${read ? ', token_hash' : ''} FROM tokens WHERE token_hash = $1`, [hash(i)]);
    expect(ext.rows).toEqual([read ? { id: i, token_hash: hash(i) } : { id: i }]);
    const simple = await c.query(`SELECT id FROM tokens WHERE token_hash = '${hash(i)}'`);
    expect(simple.rows).toEqual([{ id: i }]);
  }
  const all = await c.query('SELECT count(*)::int AS n FROM tokens WHERE token_hash = ANY($1)', [found.map(hash)]);
  expect(all.rows[0].n).toBe(found.length);
}

async function storedHeaders(): Promise<Map<string, number>> {
  const { rows } = await db.client.query(`SELECT token_hash FROM tokens WHERE token_hash <> ''`);
  const out = new Map<string, number>();
  for (const r of rows) out.set(headerOf(r.token_hash), (out.get(headerOf(r.token_hash)) ?? 0) + 1);
  return out;
}

beforeAll(async () => {
  db = await createTestDatabase('srchadm');
  await db.client.query(`CREATE TABLE tokens (id int PRIMARY KEY, name text, token_hash text UNIQUE)`);
  ids = Array.from({ length: N }, (_, k) => k + 1);
  // Legacy rows written before pgcmek: plaintext in the searchable column.
  await db.client.query(`INSERT INTO tokens SELECT id, 'n' || id, h FROM unnest($1::int[], $2::text[]) AS x(id, h)`, [ids, ids.map(legacy)]);
  await db.client.query(`DROP ROLE IF EXISTS ${ROLE}`);
  await db.client.query(`CREATE ROLE ${ROLE} LOGIN PASSWORD 'pw'; GRANT SELECT, UPDATE ON tokens TO ${ROLE}`);
  a = await proxyWith(kek1.path);
});

afterAll(async () => {
  for (const c of clients) await c.end().catch(() => {});
  await b?.close();
  await a?.close();
  await db?.drop();
  await db?.client.query(`DROP ROLE IF EXISTS ${ROLE}`).catch(() => {});
  const admin = new pg.Client(db.url.replace(/\/[^/?]+(\?|$)/, '/postgres$1'));
  await admin.connect().then(() => admin.query(`DROP ROLE IF EXISTS ${ROLE}`)).finally(() => admin.end());
  for (const k of [kek1, kek2]) rmSync(dirname(k.path), { recursive: true, force: true });
});

describe('searchable columns in admin commands through the proxy', () => {
  it('a session whose role could not load the keys: the backfill is refused with 55000 and the reason', async () => {
    const u = new URL(a.via(db.url));
    u.username = ROLE;
    u.password = 'pw';
    const c = await connect(u.toString());
    // The role may not create the key tables (no CREATE on the database): nothing loads.
    const err = await c.query('CMEK ENCRYPT EXISTING tokens.token_hash').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: '55000' });
    expect((err as Error).message).toMatch(/public\.tokens\.token_hash is searchable/);
    expect((err as Error).message).toMatch(new RegExp(`database "${db.name}"`));
    expect((err as { hint?: string }).hint).toMatch(/SEARCHABLE\.md/);
    const { rows } = await db.client.query(`SELECT count(*)::int AS n FROM tokens WHERE token_hash LIKE 'cmek:v1:%'`);
    expect(rows[0].n).toBe(0);
    // Commands that need no searchable key still run for it.
    expect((await c.query('CMEK STATUS tokens')).rows).toHaveLength(1);
  });

  it('backfill of legacy plaintext: lookups through the proxy find every row afterwards', async () => {
    // The failed load is retried after retryMs, by whichever session comes next (this one may create the tables).
    await new Promise((r) => setTimeout(r, timing.retryMs * 2));
    const c = await connect(a.via(db.url));
    // Before: the legacy rows are plaintext, which the rewritten lookups never match.
    expect((await c.query('SELECT id FROM tokens WHERE token_hash = $1', [hash(2)])).rows).toEqual([]);
    const plain = ids.filter((i) => legacy(i)).length;
    const res = await c.query('CMEK ENCRYPT EXISTING tokens.token_hash BATCH 64');
    expect(res.rows).toEqual([expect.objectContaining({ column: 'token_hash', plaintext_rows: String(plain), encrypted: String(plain), failed: '0' })]);
    // Exactly the column key's deterministic values, under KEK1's header.
    const keys = a.layer.searchable.keysFor(db.name)!;
    const { rows } = await db.client.query(`SELECT id, token_hash FROM tokens ORDER BY id`);
    for (const r of rows) {
      const want = legacy(r.id);
      expect(r.token_hash).toBe(want ? keys.encryptDeterministic(ref, Buffer.from(want)).toString('latin1') : want);
    }
    expect([...(await storedHeaders()).values()]).toEqual([plain]);
    await lookupAll(c);
    // A unique violation is detected as on plaintext.
    await expect(c.query('INSERT INTO tokens (id, token_hash) VALUES ($1, $2)', [N + 1, hash(3)])).rejects.toMatchObject({ code: '23505' });
  });

  it('VERIFY reports every value clean', async () => {
    const c = await connect(a.via(db.url));
    const plain = ids.filter((i) => legacy(i)).length;
    const v = await c.query('CMEK VERIFY tokens.token_hash');
    expect(v.rows).toEqual([expect.objectContaining({ values: String(plain), ok: String(plain), failed: '0' })]);
  });

  it('KEK rotation through the proxy: every value re-wrapped with the column key, lookups still find every row', async () => {
    const before = await storedHeaders();
    b = await proxyWith(kek2.path, [kek1.path]);
    const cb = await connect(b.via(db.url));
    // B's first statement loads the keys and adds the column key's wrapping under KEK2.
    await lookupAll(cb);
    const plain = ids.filter((i) => legacy(i)).length;
    const rot = await cb.query('CMEK ROTATE KEK tokens.token_hash BATCH 64');
    expect(rot.rows).toEqual([expect.objectContaining({ rows_to_rewrap: String(plain), rewrapped: String(plain), failed: '0' })]);
    const after = await storedHeaders();
    expect(after.size).toBe(1);
    const [header] = [...after.keys()];
    expect(before.has(header!)).toBe(false);
    // Tokens are kept byte for byte: the same value as KEK2's deterministic write.
    const keys = b.layer.searchable.keysFor(db.name)!;
    expect(keys.needsRewrap(ref, (await db.client.query(`SELECT token_hash FROM tokens WHERE id = 2`)).rows[0].token_hash)).toBe(false);
    await lookupAll(cb);
    // Proxy A (KEK1 only) still finds every row: its candidates list KEK2's wrapping after a refresh.
    const ca = await connect(a.via(db.url));
    await new Promise((r) => setTimeout(r, timing.refreshMs + 50));
    await ca.query('SELECT 1');
    await lookupAll(ca, false);
    // Nothing left to do.
    const again = await cb.query('CMEK ROTATE KEK tokens.token_hash');
    expect(again.rows).toEqual([expect.objectContaining({ rewrapped: '0', failed: '0' })]);
    const v = await cb.query('CMEK VERIFY tokens.token_hash');
    expect(v.rows).toEqual([expect.objectContaining({ ok: String(plain), failed: '0' })]);
  });

  it('rollback through the proxy returns the plaintext', async () => {
    const cb = await connect(b!.via(db.url));
    const plain = ids.filter((i) => legacy(i)).length;
    const res = await cb.query('CMEK DECRYPT EXISTING tokens.token_hash CONFIRM');
    expect(res.rows).toEqual([expect.objectContaining({ encrypted_rows: String(plain), decrypted: String(plain), failed: '0' })]);
    const { rows } = await db.client.query(`SELECT id, token_hash FROM tokens WHERE id <= $1 ORDER BY id`, [N]);
    expect(rows.map((r) => r.token_hash)).toEqual(ids.map(legacy));
  });
});
