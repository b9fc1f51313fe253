// The compare-and-set guarantee: a backfill never overwrites a write made after
// it read a row, and two backfills at once never encrypt a value twice.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/crypto/keyring.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { col, configOf, keyringOf, newKek, records, rows, runnerFor } from './helpers.js';

let db: TestDb;
const keyring = keyringOf(newKek());
const config = configOf([{ schema: 'public', table: 'accounts', columns: [col('secret')] }]);
const N = rows(4000);

beforeAll(async () => {
  db = await createTestDatabase('conc');
  await db.client.query(`CREATE TABLE accounts (id int PRIMARY KEY, secret text)`);
});

afterAll(async () => {
  await keyring.close();
  await db?.drop();
});

async function reset(): Promise<void> {
  await db.client.query(`TRUNCATE accounts; INSERT INTO accounts SELECT g, 'secret-' || g FROM generate_series(1, ${N}) g`);
}

async function connect(): Promise<pg.Client> {
  const c = new pg.Client(db.url);
  await c.connect();
  return c;
}

describe('concurrent writers', () => {
  it('a row written between the read and the write is left as the application wrote it', async () => {
    await reset();
    const worker = await connect();
    let injected = false;
    // The writer connection lets an application UPDATE land just before the first batch is written.
    const writer = {
      query: async (sql: string, params?: unknown[]) => {
        if (!injected && sql.startsWith('UPDATE')) {
          injected = true;
          await db.client.query(`UPDATE accounts SET secret = 'written by the app' WHERE id IN (1, 2)`);
        }
        return worker.query(sql, params);
      },
    };
    const res = records(await runnerFor(db.client, config, keyring)('CMEK ENCRYPT EXISTING accounts BATCH 10', { writer }))[0];
    expect(res).toMatchObject({ plaintext_rows: String(N), encrypted: String(N - 2), skipped_concurrent: '2' });
    const { rows: got } = await db.client.query(`SELECT secret FROM accounts WHERE id IN (1, 2)`);
    expect(got.map((r) => r.secret)).toEqual(['written by the app', 'written by the app']);
    await worker.end();
  });

  it('an application writing the same rows during the backfill keeps every one of its writes', async () => {
    await reset();
    const app = await connect();
    const last = new Map<number, string>();
    let stop = false;
    let writes = 0;
    // The application: plaintext writes (an old client) and encrypted ones (through a proxy), all over the table.
    const appLoop = (async () => {
      for (let i = 0; !stop; i++) {
        const id = 1 + ((i * 7919) % N);
        const pt = `app-${i}`;
        const stored = i % 2 ? await keyring.encrypt(pt) : pt;
        await app.query(`UPDATE accounts SET secret = $1 WHERE id = $2`, [stored, id]);
        last.set(id, pt);
        writes++;
      }
    })();
    const worker = await connect();
    const res = records(await runnerFor(db.client, config, keyring)('CMEK ENCRYPT EXISTING accounts BATCH 50', { writer: worker }))[0];
    stop = true;
    await appLoop;
    expect(writes).toBeGreaterThan(20);
    const { rows: got } = await db.client.query(`SELECT id, secret FROM accounts`);
    let plaintextLeft = 0;
    for (const r of got) {
      const want = last.get(r.id) ?? `secret-${r.id}`;
      const pt = await keyring.decrypt(r.secret);
      expect(pt).toBe(want);
      if (!Keyring.isEncrypted(r.secret)) plaintextLeft++;
    }
    // Rows the application rewrote in plaintext behind the scan may stay plaintext: a re-run takes them.
    expect(Number(res.encrypted) + Number(res.skipped_concurrent)).toBeLessThanOrEqual(Number(res.plaintext_rows));
    const again = records(await runnerFor(db.client, config, keyring)('CMEK ENCRYPT EXISTING accounts'))[0];
    expect(Number(again.encrypted)).toBe(plaintextLeft);
    await app.end();
    await worker.end();
  });

  it('two backfills at once (two proxies) never encrypt a value twice', async () => {
    await reset();
    const [a, b, wa, wb] = await Promise.all([connect(), connect(), connect(), connect()]);
    // Two proxies: two keyrings (each with its own write DEK) over the same KEK.
    const k = newKek();
    const [ringA, ringB] = [keyringOf(k), keyringOf(k)];
    const [ra, rb] = await Promise.all([
      runnerFor(a, config, ringA)('CMEK ENCRYPT EXISTING accounts.secret BATCH 100', { writer: wa }),
      runnerFor(b, config, ringB)('CMEK ENCRYPT EXISTING accounts.secret BATCH 100', { writer: wb }),
    ]);
    const [xa, xb] = [records(ra)[0], records(rb)[0]];
    expect(Number(xa.encrypted) + Number(xb.encrypted)).toBe(N);
    // Whatever one wrote first, the other's compare-and-set skipped (or never saw).
    expect(Number(xa.encrypted) + Number(xa.skipped_concurrent)).toBeLessThanOrEqual(Number(xa.plaintext_rows));
    const { rows: got } = await db.client.query(`SELECT id, secret FROM accounts`);
    for (const r of got) {
      expect(Keyring.isEncrypted(r.secret)).toBe(true);
      // Once: what comes out is the original plaintext, not another envelope.
      expect(await ringA.decrypt(r.secret)).toBe(`secret-${r.id}`);
    }
    await Promise.all([ringA.close(), ringB.close()]);
    await Promise.all([a, b, wa, wb].map((c) => c.end()));
  });
});
