// ROTATE KEK on real Postgres: values under two old KEKs are re-wrapped under
// the primary, the Fernet tokens are untouched, reads work before, during and
// after, and a second run finds nothing to do.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEnvelope } from '../../src/crypto/envelope.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { col, configOf, keyringOf, newKek, plaintextOf, records, rows, runnerFor } from './helpers.js';

let db: TestDb;
const N = rows(3000);
const [kA, kB, kC] = [newKek(), newKek(), newKek()];
const ringA = keyringOf(kA);
const ringB = keyringOf(kB);
// The rotated configuration: C wraps new DEKs, A and B stay readable.
const ringC = keyringOf(kC, kA, kB);
const config = configOf([{ schema: 'public', table: 'secrets', columns: [col('secret')] }]);
const kekLabel = (ring: Keyring) => ring.primaryLabel();

beforeAll(async () => {
  db = await createTestDatabase('rot');
  await db.client.query(`CREATE TABLE secrets (id int PRIMARY KEY, secret text)`);
  const ids: number[] = [];
  const vals: (string | null)[] = [];
  for (let i = 1; i <= N; i++) {
    ids.push(i);
    // Half under A, most of the rest under B, a few legacy plaintexts and NULLs.
    vals.push(i % 50 === 0 ? null : i % 25 === 0 ? plaintextOf(i) : await (i % 2 ? ringA : ringB).encrypt(plaintextOf(i)));
  }
  await db.client.query(`INSERT INTO secrets SELECT * FROM unnest($1::int[], $2::text[])`, [ids, vals]);
});

afterAll(async () => {
  await Promise.all([ringA, ringB, ringC].map((r) => r.close()));
  await db?.drop();
});

async function readAll(ring: Keyring): Promise<Map<number, string | null>> {
  const { rows: got } = await db.client.query(`SELECT id, secret FROM secrets`);
  const out = new Map<number, string | null>();
  for (const r of got) out.set(r.id, r.secret === null ? null : await ring.decrypt(r.secret));
  return out;
}

describe('CMEK ROTATE KEK', () => {
  it('re-wraps every value under the primary KEK; tokens unchanged; reads work throughout', async () => {
    const before = await db.client.query(`SELECT id, secret FROM secrets ORDER BY id`);
    const expected = await readAll(ringC);
    for (let i = 1; i <= N; i++) expect(expected.get(i)).toBe(i % 50 === 0 ? null : plaintextOf(i));

    const run = runnerFor(db.client, config, ringC);
    const st0 = records(await run('CMEK STATUS secrets.secret'))[0];
    expect(st0.keks).toContain(`${kekLabel(ringA)}: `);
    expect(st0.keks).toContain(`${kekLabel(ringB)}: `);
    expect(st0.keks).not.toContain('(primary)');

    // A reader keeps decrypting rows, 200 at a time all over the table, while the rotation runs (its own connection).
    const pg = (await import('pg')).default;
    const reader = new pg.Client(db.url);
    await reader.connect();
    let stop = false;
    let reads = 0;
    const readerLoop = (async () => {
      for (let i = 0; !stop; i++) {
        const from = 1 + ((i * 7919) % N);
        const { rows: got } = await reader.query(`SELECT id, secret FROM secrets WHERE id BETWEEN $1 AND $1 + 199`, [from]);
        for (const r of got) expect(r.secret === null ? null : await ringC.decrypt(r.secret)).toBe(expected.get(r.id));
        reads += got.length;
      }
    })();
    const res = records(await run('CMEK ROTATE KEK secrets.secret BATCH 200'))[0];
    stop = true;
    await readerLoop;
    await reader.end();
    expect(reads).toBeGreaterThan(0);
    const envelopes = before.rows.filter((r) => r.secret && Keyring.isEncrypted(r.secret)).length;
    expect(res).toMatchObject({ rows_to_rewrap: String(envelopes), rewrapped: String(envelopes), failed: '0' });

    const after = await db.client.query(`SELECT id, secret FROM secrets ORDER BY id`);
    after.rows.forEach((r, i) => {
      const old = before.rows[i].secret as string | null;
      if (old === null || !Keyring.isEncrypted(old)) return expect(r.secret).toBe(old);
      expect(parseEnvelope(r.secret).token).toBe(parseEnvelope(old).token);
      expect(ringC.needsRotation(r.secret)).toBe(false);
    });
    expect(await readAll(ringC)).toEqual(expected);

    const st1 = records(await run('CMEK STATUS secrets.secret'))[0];
    expect(st1.keks).toBe(`${kekLabel(ringC)} (primary): ${envelopes}`);
    expect(records(await run('CMEK ROTATE KEK ALL'))[0]).toMatchObject({ rows_to_rewrap: '0', rewrapped: '0' });
    expect(records(await run('CMEK VERIFY'))[0]).toMatchObject({ values: String(envelopes), ok: String(envelopes), failed: '0' });
  });

  it('DRY RUN counts and changes nothing; a value under an unknown KEK is reported, not fatal', async () => {
    const stranger = keyringOf(newKek());
    await db.client.query(`UPDATE secrets SET secret = $1 WHERE id = 2`, [await stranger.encrypt('x')]);
    await db.client.query(`UPDATE secrets SET secret = $1 WHERE id = 4`, [await ringA.encrypt('y')]);
    await stranger.close();
    const run = runnerFor(db.client, config, ringC);
    const snapshot = await db.client.query(`SELECT md5(string_agg(coalesce(secret, '-'), ',' ORDER BY id)) AS h FROM secrets`);
    const dry = records(await run('CMEK ROTATE KEK secrets DRY RUN'))[0];
    expect(dry).toMatchObject({ rows_to_rewrap: '2', would_be_rewrapped: '1', failed: '1' });
    expect((await db.client.query(`SELECT md5(string_agg(coalesce(secret, '-'), ',' ORDER BY id)) AS h FROM secrets`)).rows).toEqual(snapshot.rows);
    const notices: string[] = [];
    const real = records(await runnerFor(db.client, config, ringC, notices)('CMEK ROTATE KEK secrets'))[0];
    expect(real).toMatchObject({ rewrapped: '1', failed: '1' });
    expect(notices.join('\n')).toMatch(/id=2 \(unknown_kek/);
    const v = records(await run('CMEK VERIFY secrets'))[0];
    expect(v).toMatchObject({ failed: '1', failed_keys: 'id=2' });
  });
});
