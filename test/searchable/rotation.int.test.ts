// KEK rotation of a searchable column over real Postgres, with two replicas:
// A keeps the old configuration (primary KEK1), B has the new one (primary
// KEK2, KEK1 readable). Before, during (rows under both KEKs, half rewrapped)
// and after the rewrap pass, every lookup from either replica finds its row;
// the unique-constraint subtlety is shown and the token-part index fixes it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CMEKDecryptionError } from '../../src/crypto/errors.js';
import { LocalKekBackend } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { indexAdvice, tokenPartSql } from '../../src/searchable/sql.js';
import { SearchableKeyError, keyNameOf } from '../../src/searchable/types.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { buf, column, DEK_POLICY, headerOf, newKek, replica, tokenHash, tokenOf, type Replica } from './helpers.js';

const ACTIVATION = 30_000;
const c = column('api_token', 'token_hash');
const k1 = newKek();
const k2 = newKek();
let now = 1_000_000;
const clock = () => now;
let db: TestDb;
let A: Replica;
let B: Replica;
const open: Replica[] = [];
/** id -> plaintext of every row inserted so far. */
const rows = new Map<number, string>();

async function insert(r: Replica, ids: number[]): Promise<void> {
  for (const id of ids) rows.set(id, tokenHash(id));
  await db.client.query(`INSERT INTO api_token SELECT * FROM unnest($1::int[], $2::text[])`, [
    ids,
    ids.map((id) => r.keys.encryptDeterministic(c, buf(rows.get(id)!)).toString()),
  ]);
}

/** Looks every row up through a replica's candidate slots, as a rewritten prepared statement would. */
async function lookupAll(r: Replica): Promise<void> {
  const h = r.keys.column(c)!;
  const sql = `SELECT id FROM api_token WHERE token_hash IN (${Array.from({ length: h.slotCount }, (_, k) => `$${k + 1}`).join(', ')})`;
  const missed: number[] = [];
  for (const [id, pt] of rows) {
    const res = await db.client.query({ name: 'lookup', text: sql, values: h.slots(buf(pt)) });
    if (res.rows.length !== 1 || res.rows[0].id !== id) missed.push(id);
  }
  expect(missed).toEqual([]);
}

async function stored(): Promise<Map<number, string>> {
  const { rows: got } = await db.client.query(`SELECT id, token_hash FROM api_token`);
  return new Map(got.map((x) => [x.id as number, x.token_hash as string]));
}

beforeAll(async () => {
  db = await createTestDatabase('srchr');
  await db.client.query(`CREATE TABLE api_token (id int PRIMARY KEY, token_hash text)`);
  await db.client.query(`CREATE UNIQUE INDEX api_token_token_hash_key ON api_token (token_hash)`);
  await db.client.query(indexAdvice({ schema: 'public', table: 'api_token', column: 'token_hash' }).unique);
  A = await replica(db.url, [k1], [c], { clock, activationDelayMs: ACTIVATION });
  open.push(A);
});

afterAll(async () => {
  for (const r of open) await r.close().catch(() => {});
  await db?.drop();
});

describe('rotation with two replicas', () => {
  const tokensBefore = new Map<number, string>();

  it('before: one KEK, every lookup finds its row', async () => {
    await insert(A, range(0, 200));
    await lookupAll(A);
    for (const [id, v] of await stored()) tokensBefore.set(id, tokenOf(v));
  });

  it('a replica with the new primary adds a wrapping of the SAME DEK, and keeps writing under KEK1 until it is active', async () => {
    B = await replica(db.url, [k2, k1], [c], { clock, activationDelayMs: ACTIVATION });
    open.push(B);
    expect(B.keys.stats().wrappingsAdded).toBe(1);
    const { rows: w } = await db.client.query(`SELECT count(*)::int AS n FROM pgcmek.searchable_key_wraps WHERE key_name = $1`, [keyNameOf(c)]);
    expect(w[0].n).toBe(2);
    const d = B.keys.describe()[0]!;
    expect(d.wrappings.map((x) => [x.primary, x.active, x.write])).toEqual([
      [false, true, true],
      [true, false, false],
    ]);
    expect(B.keys.needsRewrap(c, A.keys.encryptDeterministic(c, buf('x')))).toBe(true);
    await expect(B.keys.rewrapSearchable(c, A.keys.encryptDeterministic(c, buf('x')).toString(), { wait: false })).rejects.toThrow(
      /becomes active in 30 s/,
    );
    await insert(B, range(200, 300));
    const s = await stored();
    expect(headerOf(s.get(250)!)).toBe(headerOf(s.get(0)!)); // still the KEK1 header
    // A learns the new wrapping at its next refresh (well within the activation delay).
    expect(A.keys.equalityCandidates(c, buf('x'))).toHaveLength(1);
    await A.keys.refresh();
    expect(A.keys.equalityCandidates(c, buf('x'))).toHaveLength(2);
    await lookupAll(A);
    await lookupAll(B);
  });

  it('during: once active, B writes under KEK2, A (old config) still under KEK1; lookups from both find every row', async () => {
    now += ACTIVATION;
    await insert(B, range(300, 400));
    await insert(A, range(400, 450));
    const s = await stored();
    const h1 = headerOf(s.get(0)!);
    const h2 = headerOf(s.get(350)!);
    expect(h2).not.toBe(h1);
    expect(headerOf(s.get(420)!)).toBe(h1);
    expect(tokenOf(s.get(350)!)).toBe(tokenOf(A.keys.encryptDeterministic(c, buf(rows.get(350)!)))); // same token under both KEKs
    await lookupAll(A);
    await lookupAll(B);
  });

  it('during the rewrap pass (half done), then after it: every lookup from both replicas finds its row', async () => {
    const pass = async (filter: (id: number) => boolean) => {
      for (const [id, v] of await stored()) {
        if (!filter(id) || !B.keys.needsRewrap(c, v)) continue;
        const next = await B.keys.rewrapSearchable(c, v);
        expect(tokenOf(next)).toBe(tokenOf(v)); // parts 1-2 swapped, the Fernet token kept byte for byte
        await db.client.query(`UPDATE api_token SET token_hash = $2 WHERE id = $1 AND token_hash = $3`, [id, next, v]);
      }
    };
    await pass((id) => id % 2 === 0);
    await lookupAll(A);
    await lookupAll(B);
    await pass(() => true);
    await lookupAll(A);
    await lookupAll(B);
    const s = await stored();
    const h2 = headerOf(B.keys.encryptDeterministic(c, buf('x')));
    for (const [id, v] of s) {
      expect(headerOf(v)).toBe(h2);
      if (tokensBefore.has(id)) expect(tokenOf(v)).toBe(tokensBefore.get(id));
      expect(B.keys.needsRewrap(c, v)).toBe(false);
    }
  });

  it('after: the ordinary keyring reads every value, also with KEK1 gone', async () => {
    const onlyK2 = new Keyring({ primary: LocalKekBackend.fromKeys([k2]), readable: [], dek: DEK_POLICY });
    try {
      for (const [id, v] of await stored()) {
        expect(await B.keyring.decrypt(v)).toBe(rows.get(id));
        expect(await onlyK2.decrypt(v)).toBe(rows.get(id));
      }
    } finally {
      await onlyK2.close();
    }
  });

  it('retiring KEK1 (deleting its wrapping row): a replica holding only KEK2 loads with one candidate and finds every row', async () => {
    const label = A.keys.describe()[0]!.wrappings.find((w) => w.primary)!.kek; // A's primary is KEK1
    expect(label).toMatch(/^local:/);
    await db.client.query(`DELETE FROM pgcmek.searchable_key_wraps WHERE key_name = $1 AND kek_id = decode($2, 'hex')`, [keyNameOf(c), label.slice('local:'.length)]);
    const C = await replica(db.url, [k2], [c], { clock, activationDelayMs: ACTIVATION });
    open.push(C);
    expect(C.keys.equalityCandidates(c, buf('x'))).toHaveLength(1);
    await lookupAll(C);
    await B.keys.refresh();
    expect(B.keys.equalityCandidates(c, buf('x'))).toHaveLength(1);
    await lookupAll(B);
  });
});

describe('rewrapSearchable edge cases', () => {
  let db2: TestDb;
  let X: Replica;
  let Y: Replica;
  const e = column('t', 'v');
  const eEmpty = column('t', 'w', { encryptEmpty: true });

  beforeAll(async () => {
    db2 = await createTestDatabase('srchr');
    X = await replica(db2.url, [k1], [e, eEmpty]);
    Y = await replica(db2.url, [k2, k1], [e, eEmpty], { activationDelayMs: 300 });
    local.push(X, Y);
  });
  const local: Replica[] = [];
  afterAll(async () => {
    for (const r of local) await r.close();
    await db2?.drop();
  });

  it('waits until the new wrapping is active, then swaps the header', async () => {
    const W = await replica(db2.url, [newKek(), k1], [e], { activationDelayMs: 2000 });
    local.push(W);
    const v = X.keys.encryptDeterministic(e, buf('tok')).toString();
    const t0 = performance.now();
    expect(W.keys.describe()[0]!.wrappings.find((w) => w.primary)!.active).toBe(false);
    const next = await W.keys.rewrapSearchable(e, v);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1000);
    expect(W.keys.describe()[0]!.wrappings.find((w) => w.primary)!.active).toBe(true);
    expect(tokenOf(next)).toBe(tokenOf(v));
    expect(next).toBe(W.keys.encryptDeterministic(e, buf('tok')).toString());
    expect(await W.keys.rewrapSearchable(e, next)).toBe(next); // already there
    expect(await Y.keys.rewrapSearchable(e, v)).toBe(Y.keys.encryptDeterministic(e, buf('tok')).toString());
  });

  it('a randomly encrypted value (from before the column was searchable) becomes the deterministic one', async () => {
    const random = await X.keyring.encrypt('tok2');
    expect(Y.keys.needsRewrap(e, random)).toBe(true);
    const next = await Y.keys.rewrapSearchable(e, random);
    expect(next).toBe(Y.keys.encryptDeterministic(e, buf('tok2')).toString());
    expect(Y.keys.equalityCandidates(e, buf('tok2')).map(String)).toContain(next);
  });

  it("legacy plaintext is left to the backfill; an encrypted '' becomes '' unless encrypt_empty", async () => {
    expect(await Y.keys.rewrapSearchable(e, 'plain')).toBe('plain');
    expect(Y.keys.needsRewrap(e, 'plain')).toBe(false);
    const emptyRandom = await X.keyring.encrypt('');
    expect(await Y.keys.rewrapSearchable(e, emptyRandom)).toBe('');
    const kept = await Y.keys.rewrapSearchable(eEmpty, emptyRandom);
    expect(kept).toBe(Y.keys.encryptDeterministic(eEmpty, buf('')).toString());
  });

  it('an altered value is refused, never given a fresh header', async () => {
    const v = X.keys.encryptDeterministic(e, buf('tok3')).toString();
    const bad = v.slice(0, -6) + (v.at(-6) === 'A' ? 'B' : 'A') + v.slice(-5);
    await expect(Y.keys.rewrapSearchable(e, bad)).rejects.toBeInstanceOf(CMEKDecryptionError);
  });

  it('the ordinary keyring.rewrap would break lookups (a fresh random wrapping no candidate names): rotation must use rewrapSearchable', async () => {
    const v = X.keys.encryptDeterministic(e, buf('tok4')).toString();
    const ordinary = await Y.keyring.rewrap(v);
    expect(await Y.keyring.decrypt(ordinary)).toBe('tok4');
    expect(Y.keys.equalityCandidates(e, buf('tok4')).map(String)).not.toContain(ordinary);
    expect(Y.keys.needsRewrap(e, ordinary)).toBe(true);
    expect(await Y.keys.rewrapSearchable(e, ordinary)).toBe(Y.keys.encryptDeterministic(e, buf('tok4')).toString());
  });

  it('more wrappings than candidate slots is a clear 55000 error for fixed-arity statements; candidates() still lists all', async () => {
    const Z = await replica(db2.url, [newKek(), k1], [e], { activationDelayMs: 0, candidateSlots: 2 });
    local.push(Z);
    const n = Number((await db2.client.query(`SELECT count(*) AS n FROM pgcmek.searchable_key_wraps WHERE key_name = $1`, [keyNameOf(e)])).rows[0].n);
    expect(n).toBeGreaterThanOrEqual(3);
    expect(Z.keys.equalityCandidates(e, buf('q'))).toHaveLength(n);
    const err = (() => {
      try {
        Z.keys.equalitySlots(e, buf('q'));
      } catch (x) {
        return x;
      }
    })();
    expect(err).toBeInstanceOf(SearchableKeyError);
    expect((err as SearchableKeyError).sqlstate).toBe('55000');
    expect((err as Error).message).toMatch(new RegExp(`has ${n} KEK wrappings but this statement's comparisons hold 2 candidates`));
  });
});

describe('uniqueness while values sit under two KEKs', () => {
  let db3: TestDb;
  let P: Replica;
  let Q: Replica;
  const u = column('u', 'v');

  beforeAll(async () => {
    db3 = await createTestDatabase('srchu');
    P = await replica(db3.url, [k1], [u]);
    Q = await replica(db3.url, [k2, k1], [u], { activationDelayMs: 0 });
    await db3.client.query(`CREATE TABLE u (id int PRIMARY KEY, v text UNIQUE)`);
  });
  afterAll(async () => {
    await P?.close();
    await Q?.close();
    await db3?.drop();
  });

  it('a plain unique index lets the same plaintext in twice under different KEKs; rewriting then collides', async () => {
    await db3.client.query(`INSERT INTO u VALUES (1, $1)`, [P.keys.encryptDeterministic(u, buf('same')).toString()]);
    await db3.client.query(`INSERT INTO u VALUES (2, $1)`, [Q.keys.encryptDeterministic(u, buf('same')).toString()]); // accepted: a duplicate plaintext
    const v1 = (await db3.client.query(`SELECT v FROM u WHERE id = 1`)).rows[0].v as string;
    const err = await db3.client
      .query(`UPDATE u SET v = $1 WHERE id = 1`, [await Q.keys.rewrapSearchable(u, v1)])
      .catch((x: { code?: string }) => x);
    expect((err as { code?: string }).code).toBe('23505');
    await db3.client.query(`DELETE FROM u`);
  });

  it('a unique index on the token part rejects it at once (23505), whatever the KEK', async () => {
    await db3.client.query(indexAdvice({ schema: 'public', table: 'u', column: 'v' }).unique);
    await db3.client.query(`INSERT INTO u VALUES (1, $1)`, [P.keys.encryptDeterministic(u, buf('same')).toString()]);
    const err = await db3.client
      .query(`INSERT INTO u VALUES (2, $1)`, [Q.keys.encryptDeterministic(u, buf('same')).toString()])
      .catch((x: { code?: string }) => x);
    expect((err as { code?: string }).code).toBe('23505');
    // Legacy plaintext rows and empty strings follow the plain-column rules.
    await db3.client.query(`INSERT INTO u VALUES (3, 'legacy-a'), (4, 'legacy-b'), (5, '')`);
    const dup = await db3.client.query(`INSERT INTO u VALUES (6, '')`).catch((x: { code?: string }) => x);
    expect((dup as { code?: string }).code).toBe('23505');
  });

  it('a join on the token part matches across KEKs where a join on the whole value cannot', async () => {
    await db3.client.query(`CREATE TABLE u2 (id int, v text)`);
    await db3.client.query(`INSERT INTO u2 VALUES (1, $1)`, [Q.keys.encryptDeterministic(u, buf('same')).toString()]);
    const whole = await db3.client.query(`SELECT count(*)::int AS n FROM u JOIN u2 ON u.v = u2.v`);
    const token = await db3.client.query(`SELECT count(*)::int AS n FROM u JOIN u2 ON ${tokenPartSql('u.v')} = ${tokenPartSql('u2.v')}`);
    expect(whole.rows[0].n).toBe(0);
    expect(token.rows[0].n).toBe(1);
  });
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}
