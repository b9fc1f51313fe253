// SearchableKeys on real Postgres: the key table is created (also by racing
// replicas), racing replicas converge on ONE DEK per column, values are
// ordinary envelopes (Keyring.decrypt and the CLI read them), and a key table
// that was tampered with is never trusted.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKekBackend } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { ensureKeyTables, KEY_TABLE_DDL } from '../../src/searchable/key-table.js';
import { SearchableKeys } from '../../src/searchable/keys.js';
import { SearchableKeyError, keyNameOf } from '../../src/searchable/types.js';
import { run } from '../cli/run.js';
import { FakeRemoteBackend } from '../crypto/fake-remote.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { buf, column, DEK_POLICY, headerOf, newKek, quiet, replica, tokenOf, type Replica } from './helpers.js';

const dbs: TestDb[] = [];
const open: Replica[] = [];
async function freshDb(): Promise<TestDb> {
  const d = await createTestDatabase('srch');
  dbs.push(d);
  return d;
}
async function rep(...args: Parameters<typeof replica>): Promise<Replica> {
  const r = await replica(...args);
  open.push(r);
  return r;
}
const count = async (db: TestDb, sql: string) => Number((await db.client.query(sql)).rows[0].n);

afterAll(async () => {
  for (const r of open) await r.close().catch(() => {});
  for (const d of dbs) await d.drop();
});

describe('key table', () => {
  it('is created once; a second load finds it; the DDL is idempotent', async () => {
    const db = await freshDb();
    expect(await ensureKeyTables(db.client)).toBe('created');
    expect(await ensureKeyTables(db.client)).toBe('exists');
    for (const sql of KEY_TABLE_DDL) await db.client.query(sql);
    expect(await count(db, `SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'pgcmek'`)).toBe(2);
  });

  it.each([1, 2, 3])('racing replicas creating it on a fresh database all succeed (round %i; raw DDL would fail with 23505)', async () => {
    const db = await freshDb();
    const clients = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const c = new pg.Client(db.url);
        await c.connect();
        return c;
      }),
    );
    try {
      const r = await Promise.all(clients.map((c) => ensureKeyTables(c)));
      expect(r.every((x) => x === 'created' || x === 'exists')).toBe(true);
      expect(await count(db, `SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'pgcmek'`)).toBe(2);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  it('a role that may not create them gets a SearchableKeyError saying what to do', async () => {
    const db = await freshDb();
    await db.client.query(`DROP ROLE IF EXISTS srch_nocreate; CREATE ROLE srch_nocreate LOGIN PASSWORD 'pw'`);
    await db.client.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC; REVOKE CREATE ON DATABASE ${db.name} FROM PUBLIC`);
    const u = new URL(db.url);
    u.username = 'srch_nocreate';
    u.password = 'pw';
    try {
      await expect(replica(u.toString(), [newKek()], [column('t', 'c')])).rejects.toThrow(
        /cannot create the searchable key tables pgcmek.searchable_keys and pgcmek.searchable_key_wraps \(42501: permission denied .*\): grant the proxy role CREATE/,
      );
      // Pre-created by the operator, with the grants the docs list: the same role loads.
      for (const sql of KEY_TABLE_DDL) await db.client.query(sql);
      await db.client.query(`GRANT USAGE ON SCHEMA pgcmek TO srch_nocreate; GRANT SELECT, INSERT ON pgcmek.searchable_keys, pgcmek.searchable_key_wraps TO srch_nocreate`);
      const r = await replica(u.toString(), [newKek()], [column('t', 'c')]);
      expect(r.keys.stats().keysCreated).toBe(1);
      await r.close();
    } finally {
      await db.client.query(`DROP OWNED BY srch_nocreate; DROP ROLE srch_nocreate`).catch(() => {});
    }
  });

  it('createTables: false with no tables fails the load', async () => {
    const db = await freshDb();
    await expect(replica(db.url, [newKek()], [column('t', 'c')], { createTables: false })).rejects.toThrow(
      /the searchable key table could not be read: relation "pgcmek.searchable_keys" does not exist/,
    );
  });
});

describe('one DEK per column across replicas', () => {
  it('six replicas loading at once on a fresh database converge: one key and one wrapping per column', async () => {
    const db = await freshDb();
    const kek = newKek();
    const cols = [column('api_token', 'token_hash'), column('scim_token', 'token_hash'), column('user', 'api_key')];
    const reps = await Promise.all(Array.from({ length: 6 }, () => rep(db.url, [kek], cols)));
    for (const c of cols) {
      const values = reps.map((r) => r.keys.encryptDeterministic(c, buf('tok-1')).toString());
      expect(new Set(values).size).toBe(1);
    }
    // different columns, different DEKs
    expect(tokenOf(reps[0]!.keys.encryptDeterministic(cols[0]!, buf('x')))).not.toBe(tokenOf(reps[0]!.keys.encryptDeterministic(cols[1]!, buf('x'))));
    expect(await count(db, `SELECT count(*) AS n FROM pgcmek.searchable_keys`)).toBe(3);
    expect(await count(db, `SELECT count(*) AS n FROM pgcmek.searchable_key_wraps`)).toBe(3);
    expect(reps.reduce((n, r) => n + r.keys.stats().keysCreated, 0)).toBe(3);
  });

  it('replicas with different primary KEKs racing on a new column still share one DEK (one wrapping per KEK)', async () => {
    const db = await freshDb();
    const k1 = newKek();
    const k2 = newKek();
    const c = column('api_token', 'token_hash');
    const [a, b] = await Promise.all([rep(db.url, [k1, k2], [c]), rep(db.url, [k2, k1], [c])]);
    // Whoever lost the race added its wrapping after the winner loaded: both learn it at their next refresh.
    await Promise.all([a.keys.refresh(), b.keys.refresh()]);
    expect(await count(db, `SELECT count(*) AS n FROM pgcmek.searchable_keys`)).toBe(1);
    expect(await count(db, `SELECT count(*) AS n FROM pgcmek.searchable_key_wraps`)).toBe(2);
    const ca = a.keys.equalityCandidates(c, buf('t'));
    const cb = b.keys.equalityCandidates(c, buf('t'));
    expect(ca).toHaveLength(2);
    expect(new Set(ca.map(String))).toEqual(new Set(cb.map(String)));
    expect(new Set([...ca, ...cb].map(tokenOf)).size).toBe(1);
  });

  it('a replica holding none of the KEKs that wrap an existing key refuses to start, naming them', async () => {
    const db = await freshDb();
    const c = column('t', 'c');
    await rep(db.url, [newKek()], [c]);
    const err = await replica(db.url, [newKek()], [c]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SearchableKeyError);
    expect(String((err as Error).message)).toMatch(/cannot load searchable key column:"public"."t"."c": no wrapping could be unwrapped \(local:[0-9a-f]{16}: not configured here\)/);
  });
});

describe('values', () => {
  let db: TestDb;
  let r: Replica;
  const c = column('api_token', 'token_hash');
  const cEmpty = column('api_token', 'other', { encryptEmpty: true });
  const kek = newKek();

  beforeAll(async () => {
    db = await freshDb();
    r = await rep(db.url, [kek], [c, cEmpty]);
  });

  it('are deterministic, ordinary envelopes that Keyring.decrypt reads (also a keyring that never saw the key table)', async () => {
    const v = r.keys.encryptDeterministic(c, buf('sha256:abc'));
    expect(v.toString()).toMatch(/^cmek:v1:[A-Za-z0-9_-]+\|[A-Za-z0-9_-]+\|gAAAAAAAAAAA[A-Za-z0-9_-]+={0,2}$/);
    expect(r.keys.encryptDeterministic(c, buf('sha256:abc')).equals(v)).toBe(true);
    expect(await r.keyring.decrypt(v.toString())).toBe('sha256:abc');
    const stranger = new Keyring({ primary: LocalKekBackend.fromKeys([kek]), readable: [], dek: DEK_POLICY });
    expect(await stranger.decrypt(v.toString())).toBe('sha256:abc');
    await stranger.close();
  });

  it('decrypt with the CLI (pgcmek decrypt)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'srch-'));
    try {
      const path = join(dir, 'kek.key');
      writeFileSync(path, kek, { mode: 0o600 });
      chmodSync(path, 0o600);
      const v = r.keys.encryptDeterministic(c, buf('Grüße 🔑'));
      const out = await run(['decrypt'], { stdin: v.toString(), env: { VIGILO_CMEK_LOCAL_KEK_PATH: path } });
      expect(out.stderr).toBe('');
      expect(out.stdout).toBe('Grüße 🔑\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("'' stays '' unless encrypt_empty; then it is deterministic too", async () => {
    expect(r.keys.encryptDeterministic(c, buf('')).length).toBe(0);
    expect(r.keys.equalityCandidates(c, buf('')).map(String)).toEqual(['']);
    const e = r.keys.encryptDeterministic(cEmpty, buf(''));
    expect(e.toString().startsWith('cmek:v1:')).toBe(true);
    expect(r.keys.equalityCandidates(cEmpty, buf('')).map(String)).toEqual([e.toString()]);
    expect(await r.keyring.decrypt(e.toString())).toBe('');
  });

  it('an unconfigured column is an error, not a silent plaintext', () => {
    expect(r.keys.column({ schema: 'public', table: 'x', column: 'y' })).toBeUndefined();
    expect(() => r.keys.encryptDeterministic({ schema: 'public', table: 'x', column: 'y' }, buf('v'))).toThrow(SearchableKeyError);
  });

  it('odd column names (quotes, commas, dots, braces) have their own key', async () => {
    const odd = column('we"ird', 'a,b.{c}');
    const o = await rep(db.url, [kek], [odd, c]);
    expect(tokenOf(o.keys.encryptDeterministic(odd, buf('v')))).not.toBe(tokenOf(o.keys.encryptDeterministic(c, buf('v'))));
    expect(o.keys.encryptDeterministic(c, buf('v')).equals(r.keys.encryptDeterministic(c, buf('v')))).toBe(true);
    const again = await rep(db.url, [kek], [odd]);
    expect(again.keys.encryptDeterministic(odd, buf('v')).equals(o.keys.encryptDeterministic(odd, buf('v')))).toBe(true);
  });

  it('a second load reads the same key (a restart)', async () => {
    const again = await rep(db.url, [kek], [c]);
    expect(again.keys.encryptDeterministic(c, buf('q')).equals(r.keys.encryptDeterministic(c, buf('q')))).toBe(true);
    expect(again.keys.stats()).toMatchObject({ keys: 1, wrappings: 1, keysCreated: 0, wrappingsAdded: 0 });
  });
});

describe('key groups', () => {
  it('columns of one group share the DEK and the header, so joins between them match', async () => {
    const db = await freshDb();
    const a = column('api_token', 'token_hash', { keyGroup: 'tokens' });
    const b = column('token_audit', 'token_hash', { keyGroup: 'tokens' });
    const lone = column('other', 'token_hash');
    const r = await rep(db.url, [newKek()], [a, b, lone]);
    expect(r.keys.encryptDeterministic(a, buf('t1')).equals(r.keys.encryptDeterministic(b, buf('t1')))).toBe(true);
    expect(r.keys.encryptDeterministic(a, buf('t1')).equals(r.keys.encryptDeterministic(lone, buf('t1')))).toBe(false);
    await db.client.query(`CREATE TABLE api_token (id int, token_hash text); CREATE TABLE token_audit (id int, token_hash text); CREATE TABLE other (id int, token_hash text)`);
    const ins = (t: string, col: typeof a, ids: number[]) =>
      db.client.query(`INSERT INTO ${t} SELECT * FROM unnest($1::int[], $2::text[])`, [ids, ids.map((i) => r.keys.encryptDeterministic(col, buf(`t${i}`)).toString())]);
    await ins('api_token', a, [1, 2, 3, 4]);
    await ins('token_audit', b, [3, 4, 5]);
    await ins('other', lone, [1, 2, 3, 4]);
    const j = await db.client.query(`SELECT a.id FROM api_token a JOIN token_audit b ON a.token_hash = b.token_hash ORDER BY 1`);
    expect(j.rows.map((x) => x.id)).toEqual([3, 4]);
    const none = await db.client.query(`SELECT count(*)::int AS n FROM api_token a JOIN other o ON a.token_hash = o.token_hash`);
    expect(none.rows[0].n).toBe(0); // separate DEKs: a join can never match (the SQL layer must refuse it)
    expect(await count(db, `SELECT count(*) AS n FROM pgcmek.searchable_keys WHERE key_name = '${keyNameOf(a)}'`)).toBe(1);
  });
});

describe('a remote (async-only) primary backend', () => {
  it('loads through the async API, then encrypts synchronously with no backend call', async () => {
    const db = await freshDb();
    const remote = new FakeRemoteBackend();
    const c = column('t', 'c');
    const r = await rep(db.url, remote, [c]);
    const calls = { ...remote.calls };
    const v = r.keys.encryptDeterministic(c, buf('x'));
    expect(r.keys.equalityCandidates(c, buf('x'))).toHaveLength(1);
    expect(remote.calls).toEqual(calls);
    expect(v.toString().startsWith('cmek:v1:Ag')).toBe(true); // tag 0x02
    expect(await r.keyring.decrypt(v.toString())).toBe('x');
    // A second replica over the same Vault-like backend reads the same DEK.
    const r2 = await rep(db.url, remote, [c]);
    expect(r2.keys.encryptDeterministic(c, buf('x')).equals(v)).toBe(true);
  });
});

describe('a primary KEK that is down', () => {
  it('an existing key still loads through a readable KEK and keeps writing under it; the next refresh adds the wrapping', async () => {
    const db = await freshDb();
    const k1 = newKek();
    const c = column('t', 'c');
    const a = await rep(db.url, [k1], [c]);
    const remote = new FakeRemoteBackend();
    remote.fail = new Error('connect ECONNREFUSED');
    const keys = await SearchableKeys.load({ db: db.client, kek: { primary: remote, readable: [LocalKekBackend.fromKeys([k1])] }, columns: [c], log: quiet, activationDelayMs: 0 });
    try {
      expect(keys.encryptDeterministic(c, buf('v')).equals(a.keys.encryptDeterministic(c, buf('v')))).toBe(true);
      expect(keys.stats().wrappingsAdded).toBe(0);
      remote.fail = undefined;
      await keys.refresh();
      expect(keys.stats().wrappingsAdded).toBe(1);
      const v = keys.encryptDeterministic(c, buf('v')).toString();
      expect(v.startsWith('cmek:v1:Ag')).toBe(true); // now under the vault-like KEK
      expect(tokenOf(v)).toBe(tokenOf(a.keys.encryptDeterministic(c, buf('v'))));
    } finally {
      await keys.close();
    }
  });

  it('a wrapping left unverified by a backend outage is checked again at the next refresh', async () => {
    const db = await freshDb();
    const k1 = newKek();
    const c = column('t', 'c');
    await rep(db.url, [k1], [c]);
    const remote = new FakeRemoteBackend();
    const r2 = await SearchableKeys.load({ db: db.client, kek: { primary: remote, readable: [LocalKekBackend.fromKeys([k1])] }, columns: [c], log: quiet });
    remote.fail = new Error('connect ECONNREFUSED');
    const s = await SearchableKeys.load({ db: db.client, kek: { primary: LocalKekBackend.fromKeys([k1]), readable: [remote] }, columns: [c], log: quiet });
    try {
      const vault = () => s.describe()[0]!.wrappings.find((w) => w.kek.startsWith('vault:'))!;
      expect(vault().verified).toBe(false);
      expect(s.equalityCandidates(c, buf('v'))).toHaveLength(2); // still a candidate
      remote.fail = undefined;
      await s.refresh();
      expect(vault().verified).toBe(true);
    } finally {
      await s.close();
      await r2.close();
    }
  });

  it('a new key cannot be created while the primary KEK is down: the load fails', async () => {
    const db = await freshDb();
    const remote = new FakeRemoteBackend();
    remote.fail = new Error('connect ECONNREFUSED');
    await expect(SearchableKeys.load({ db: db.client, kek: { primary: remote, readable: [] }, columns: [column('t', 'c')], log: quiet })).rejects.toThrow(
      /^searchable key column:"public"."t"."c" could not be loaded: connect ECONNREFUSED$/,
    );
  });
});

describe('a key table that was tampered with', () => {
  it('a wrapping of another DEK is ignored (no candidate, never written under); a row whose columns disagree is ignored', async () => {
    const db = await freshDb();
    const k1 = newKek();
    const k2 = newKek();
    const c = column('t', 'c');
    const a = await rep(db.url, [k1], [c]);
    // A wrapping under k2 of some other DEK, inserted behind the proxies' back.
    const other = LocalKekBackend.fromKeys([k2]).generateDekSync();
    const enc = (w: typeof other.wrapped) => Buffer.concat([Buffer.from([w.tag, w.kekId.length]), w.kekId, w.wrapped]);
    await db.client.query(
      `INSERT INTO pgcmek.searchable_key_wraps (key_name, kek_backend, kek_id, wrapped_dek, nonce) VALUES ($1, 'local', $2, $3, $4)`,
      [keyNameOf(c), other.wrapped.kekId, enc(other.wrapped), other.wrapped.nonce],
    );
    // A row claiming to be a vault wrapping while its bytes say local.
    await db.client.query(
      `INSERT INTO pgcmek.searchable_key_wraps (key_name, kek_backend, kek_id, wrapped_dek, nonce) VALUES ($1, 'vault', $2, $3, $4)`,
      [keyNameOf(c), other.wrapped.kekId, enc(other.wrapped), other.wrapped.nonce],
    );
    const b = await rep(db.url, [k2, k1], [c], { activationDelayMs: 0 });
    await a.keys.refresh();
    // b holds k2: it sees the k2 row wraps another DEK, rejects it and cannot add its own (PK taken) — it keeps writing under k1.
    const vb = b.keys.encryptDeterministic(c, buf('v'));
    expect(vb.equals(a.keys.encryptDeterministic(c, buf('v')))).toBe(true);
    expect(b.keys.equalityCandidates(c, buf('v'))).toHaveLength(1);
    expect(b.keys.describe()[0]!.wrappings).toEqual([{ kek: expect.stringMatching(/^local:/), verified: true, active: true, primary: false, write: true }]);
    // a cannot check a k2 wrapping: it stays a lookup candidate (harmless: it matches only values written under it).
    expect(a.keys.equalityCandidates(c, buf('v'))).toHaveLength(2);
  });

  it('a key whose fingerprint no longer matches its wrappings refuses to load', async () => {
    const db = await freshDb();
    const k1 = newKek();
    const c = column('t', 'c');
    await rep(db.url, [k1], [c]);
    await db.client.query(`UPDATE pgcmek.searchable_keys SET dek_check = '\\x00000000000000000000000000000000'`);
    await expect(replica(db.url, [k1], [c])).rejects.toThrow(/unwraps to another DEK than the key's fingerprint/);
  });

  it('a loaded replica keeps its key when the key rows vanish or change, and says so', async () => {
    const db = await freshDb();
    const k1 = newKek();
    const c = column('t', 'c');
    const r = await rep(db.url, [k1], [c]);
    const before = r.keys.encryptDeterministic(c, buf('v'));
    await db.client.query(`UPDATE pgcmek.searchable_keys SET dek_check = '\\x00'`);
    await expect(r.keys.refresh()).rejects.toThrow(/another DEK than the one loaded/);
    expect(r.keys.encryptDeterministic(c, buf('v')).equals(before)).toBe(true);
    await db.client.query(`DELETE FROM pgcmek.searchable_key_wraps; DELETE FROM pgcmek.searchable_keys`);
    await r.keys.refresh();
    expect(r.keys.encryptDeterministic(c, buf('v')).equals(before)).toBe(true);
    expect(r.keys.stats().refreshFailures).toBe(1);
  });
});

describe('lifecycle', () => {
  it('startAutoRefresh picks up a wrapping another replica added; close() stops it and zeroes the keys', async () => {
    const db = await freshDb();
    const k1 = newKek();
    const k2 = newKek();
    const c = column('t', 'c');
    const a = await rep(db.url, [k1], [c], { refreshMs: 50 });
    a.keys.startAutoRefresh();
    expect(a.keys.equalityCandidates(c, buf('v'))).toHaveLength(1);
    await rep(db.url, [k2, k1], [c]);
    const until = Date.now() + 5000;
    while (a.keys.equalityCandidates(c, buf('v')).length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(a.keys.equalityCandidates(c, buf('v'))).toHaveLength(2);
    expect(a.keys.stats().lastRefreshAgeMs).toBeLessThan(5000);
    const h = a.keys.column(c)!;
    await a.keys.close();
    expect(h.group.key.fernet.signingKey.equals(Buffer.alloc(16))).toBe(true);
    expect(a.keys.column(c)).toBeUndefined();
  });

  it('no searchable columns: no table is created', async () => {
    const db = await freshDb();
    const k = await SearchableKeys.load({ db: db.client, kek: { primary: LocalKekBackend.fromKeys([newKek()]), readable: [] }, columns: [], log: quiet });
    expect(await count(db, `SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'pgcmek'`)).toBe(0);
    await k.close();
  });

  it('a column configured twice is refused', async () => {
    const db = await freshDb();
    const c = column('t', 'c');
    await expect(replica(db.url, [newKek()], [c, { ...c }])).rejects.toThrow(/configured twice/);
  });

  it('headers are the key table rows: every replica writes the same bytes', async () => {
    const db = await freshDb();
    const k1 = newKek();
    const c = column('t', 'c');
    const a = await rep(db.url, [k1], [c]);
    const { rows } = await db.client.query(`SELECT wrapped_dek, nonce FROM pgcmek.searchable_key_wraps`);
    const header = `cmek:v1:${rows[0].wrapped_dek.toString('base64url')}|${rows[0].nonce.toString('base64url')}|`;
    expect(headerOf(a.keys.encryptDeterministic(c, buf('v')))).toBe(header);
  });
});
