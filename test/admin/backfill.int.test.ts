// ENCRYPT EXISTING on real Postgres: legacy rows (plaintext, ciphertext, NULL,
// empty) end up encrypted, each decrypting to its original; re-runs change
// nothing; dry runs change nothing; interruptions lose nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/crypto/keyring.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { col, configOf, keyringOf, newKek, plaintextOf, records, rows, runnerFor, type Runner } from './helpers.js';

let db: TestDb;
let keyring: Keyring;
let run: Runner;
const notices: string[] = [];
const N = rows(2000);

beforeAll(async () => {
  db = await createTestDatabase('adm');
  keyring = keyringOf(newKek());
  const config = configOf([
    { schema: 'public', table: 'webhook', columns: [col('secret'), col('token')] },
    { schema: 'public', table: 'dry', columns: [col('secret')] },
  ]);
  run = runnerFor(db.client, config, keyring, notices);
  await db.client.query(`CREATE TABLE webhook (id bigint PRIMARY KEY, url text, secret text, token varchar(1000))`);
  await db.client.query(`CREATE TABLE dry (id int PRIMARY KEY, secret text)`);
});

afterAll(async () => {
  await keyring?.close();
  await db?.drop();
});

/** Legacy data: plaintext, some values already encrypted, NULLs and empty strings. */
async function seed(n: number): Promise<Map<string, string | null>> {
  const expected = new Map<string, string | null>();
  const ids: string[] = [];
  const secrets: (string | null)[] = [];
  const stored: (string | null)[] = [];
  for (let i = 1; i <= n; i++) {
    const kind = i % 10;
    const pt = kind === 7 ? null : kind === 8 ? '' : plaintextOf(i);
    expected.set(String(i), pt);
    ids.push(String(i));
    secrets.push(pt);
    stored.push(kind === 3 && pt !== null ? await keyring.encrypt(pt) : pt);
  }
  await db.client.query(`TRUNCATE webhook`);
  await db.client.query(`INSERT INTO webhook (id, url, secret, token) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])`, [
    ids,
    ids.map((i) => `https://h/${i}`),
    stored,
    secrets,
  ]);
  return expected;
}

async function checkAll(expected: Map<string, string | null>, column: 'secret' | 'token'): Promise<void> {
  const { rows: got } = await db.client.query(`SELECT id::text AS id, ${column} AS v FROM webhook`);
  expect(got.length).toBe(expected.size);
  for (const r of got) {
    const want = expected.get(r.id);
    if (want === null || want === '') {
      expect(r.v).toBe(want);
      continue;
    }
    expect(Keyring.isEncrypted(r.v)).toBe(true);
    const pt = await keyring.decrypt(r.v);
    // Encrypted exactly once: the plaintext is not itself an envelope.
    expect(pt).toBe(want);
  }
}

describe('CMEK ENCRYPT EXISTING', () => {
  it('encrypts legacy plaintext; every value decrypts to its original; NULL and empty stay', async () => {
    const expected = await seed(N);
    const res = await run('cmek encrypt existing webhook.secret batch 300;');
    const [r] = records(res);
    expect(r).toMatchObject({ table: 'public.webhook', column: 'secret', key: 'id', failed: '0', skipped_concurrent: '0' });
    const plaintext = [...expected.entries()].filter(([id, v]) => v && Number(id) % 10 !== 3).length;
    expect(Number(r.plaintext_rows)).toBe(plaintext);
    expect(Number(r.encrypted)).toBe(plaintext);
    await checkAll(expected, 'secret');

    const again = records(await run('CMEK ENCRYPT EXISTING webhook.secret'))[0];
    expect(again).toMatchObject({ plaintext_rows: '0', encrypted: '0' });
  });

  it('works on varchar columns and whole tables, and reports status', async () => {
    const expected = await seed(N);
    await run('CMEK ENCRYPT EXISTING public.webhook');
    await checkAll(expected, 'secret');
    await checkAll(expected, 'token');
    const st = records(await run('CMEK STATUS webhook'));
    const nonEmpty = [...expected.values()].filter((v) => v).length;
    const empty = [...expected.values()].filter((v) => v === '').length;
    for (const s of st) {
      expect(s).toMatchObject({ rows: String(N), encrypted: String(nonEmpty), plaintext: '0', empty: String(empty), null: String(N - nonEmpty - empty) });
      expect(s.keks).toMatch(new RegExp(`^local:[0-9a-f]{16} \\(primary\\): ${nonEmpty}$`));
    }
  });

  it('DRY RUN reports and changes nothing', async () => {
    await db.client.query(`TRUNCATE dry; INSERT INTO dry SELECT g, 'p' || g FROM generate_series(1, 500) g`);
    const before = await db.client.query(`SELECT md5(string_agg(secret, ',' ORDER BY id)) AS h FROM dry`);
    const res = records(await run('CMEK ENCRYPT EXISTING dry.secret DRY RUN'));
    expect(res[0]).toMatchObject({ plaintext_rows: '500', would_be_encrypted: '500' });
    const after = await db.client.query(`SELECT md5(string_agg(secret, ',' ORDER BY id)) AS h FROM dry`);
    expect(after.rows).toEqual(before.rows);
  });

  it('an interrupted run loses nothing and a re-run finishes the job', async () => {
    const expected = await seed(N);
    const ac = new AbortController();
    let reports = 0;
    const res = await run('CMEK ENCRYPT EXISTING webhook.secret BATCH 100', {
      signal: ac.signal,
      onProgress: () => {
        // The first report comes at once: abort after it, mid-table.
        if (++reports === 1) ac.abort();
      },
    });
    // Aborting after the first progress report stops at the next batch boundary.
    expect(res.interrupted).toBe(true);
    const first = Number(records(res)[0].encrypted);
    expect(first).toBeLessThan(Number(records(res)[0].plaintext_rows));
    const second = records(await run('CMEK ENCRYPT EXISTING webhook.secret BATCH 100'))[0];
    expect(Number(second.plaintext_rows)).toBe(Number(records(res)[0].plaintext_rows) - first);
    await checkAll(expected, 'secret');
  });
});
