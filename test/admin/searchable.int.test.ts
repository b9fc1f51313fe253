// Searchable columns in the admin commands: the backfill writes deterministic
// values (equality lookups find them), the rotation re-wraps them with the
// column's key (lookups still find them, randomly encrypted leftovers become
// deterministic), and both are refused when the searchable keys are not loaded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminError } from '../../src/admin/errors.js';
import { LocalKekBackend } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { createLogger } from '../../src/log.js';
import { SearchableKeys } from '../../src/searchable/keys.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { col, configOf, DEK, newKek, records, rows, runnerFor } from './helpers.js';

const ref = { schema: 'public', table: 'tokens', column: 'token_hash' };
const config = configOf([{ schema: 'public', table: 'tokens', columns: [col('token_hash', { searchable: true })] }]);
const N = rows(600);
const pt = (id: number) => `sha256:${id.toString(16).padStart(8, '0')}`;
let db: TestDb;
const [kA, kB] = [newKek(), newKek()];
const open: { close(): Promise<void> }[] = [];

/** One proxy's keys: a keyring and the searchable keys over the same backend. */
async function replica(keks: Buffer[]): Promise<{ keyring: Keyring; keys: SearchableKeys }> {
  const backend = LocalKekBackend.fromKeys(keks);
  const keyring = new Keyring({ primary: backend, readable: [], dek: DEK });
  const keys = await SearchableKeys.load({
    db: db.client,
    kek: { primary: backend, readable: [] },
    columns: [{ ...ref, encryptEmpty: false }],
    keyring,
    log: createLogger('silent'),
    activationDelayMs: 0,
  });
  open.push(keys, keyring);
  return { keyring, keys };
}

/** Every row is found by an equality lookup through the replica's candidates, and decrypts to its plaintext. */
async function lookupsWork(r: { keyring: Keyring; keys: SearchableKeys }): Promise<void> {
  const { rows: got } = await db.client.query(`SELECT id, token_hash FROM tokens WHERE token_hash IS NOT NULL`);
  for (const x of got) {
    expect(await r.keyring.decrypt(x.token_hash)).toBe(pt(x.id));
    const candidates = r.keys.equalityCandidates(ref, Buffer.from(pt(x.id))).map((b) => b.toString('latin1'));
    expect(candidates).toContain(x.token_hash);
  }
}

beforeAll(async () => {
  db = await createTestDatabase('srch');
  await db.client.query(`CREATE TABLE tokens (id int PRIMARY KEY, token_hash text)`);
});

afterAll(async () => {
  for (const o of open.reverse()) await o.close();
  await db?.drop();
});

describe('searchable columns', () => {
  it('backfill writes deterministic values; rotation re-wraps them with the column key', async () => {
    const a = await replica([kA]);
    // Legacy plaintext, a few values randomly encrypted before the column became searchable, NULLs.
    const ids: number[] = [];
    const vals: (string | null)[] = [];
    for (let i = 1; i <= N; i++) {
      ids.push(i);
      vals.push(i % 20 === 0 ? null : i % 7 === 0 ? await a.keyring.encrypt(pt(i)) : pt(i));
    }
    await db.client.query(`INSERT INTO tokens SELECT * FROM unnest($1::int[], $2::text[])`, [ids, vals]);

    // Without the searchable keys: refused, nothing written.
    for (const text of ['CMEK ENCRYPT EXISTING tokens', 'CMEK ROTATE KEK tokens']) {
      const err = await runnerFor(db.client, config, a.keyring)(text).catch((e: unknown) => e);
      expect(err, text).toBeInstanceOf(AdminError);
      expect((err as AdminError).sqlstate).toBe('55000');
      expect((err as AdminError).message).toMatch(/searchable/);
    }

    const plain = vals.filter((v) => v !== null && !Keyring.isEncrypted(v)).length;
    const res = records(await runnerFor(db.client, config, a.keyring)('CMEK ENCRYPT EXISTING tokens', { searchable: a.keys }))[0];
    expect(res).toMatchObject({ plaintext_rows: String(plain), encrypted: String(plain), failed: '0' });
    const { rows: got } = await db.client.query(`SELECT id, token_hash FROM tokens WHERE id % 7 <> 0 AND id % 20 <> 0`);
    for (const x of got) expect(x.token_hash).toBe(a.keys.encryptDeterministic(ref, Buffer.from(pt(x.id))).toString('latin1'));

    // Rotation to KEK B (A readable): every value under the column key's B wrapping, lookups through B find all rows.
    const b = await replica([kB, kA]);
    const envelopes = vals.filter((v) => v !== null).length;
    const rot = records(await runnerFor(db.client, config, b.keyring)('CMEK ROTATE KEK tokens', { searchable: b.keys }))[0];
    expect(rot).toMatchObject({ rows_to_rewrap: String(envelopes), rewrapped: String(envelopes), failed: '0' });
    await lookupsWork(b);
    const { rows: after } = await db.client.query(`SELECT token_hash FROM tokens WHERE token_hash IS NOT NULL`);
    for (const x of after) expect(b.keys.needsRewrap(ref, x.token_hash)).toBe(false);
    const again = records(await runnerFor(db.client, config, b.keyring)('CMEK ROTATE KEK tokens', { searchable: b.keys }))[0];
    expect(again).toMatchObject({ rewrapped: '0' });
    // Reads need nothing searchable-specific: verify and status work with the keyring alone.
    expect(records(await runnerFor(db.client, config, b.keyring)('CMEK VERIFY tokens'))[0]).toMatchObject({ ok: String(envelopes), failed: '0' });
    expect(records(await runnerFor(db.client, config, b.keyring)('CMEK STATUS tokens'))[0]).toMatchObject({ encrypted: String(envelopes), plaintext: '0' });
  });
});
