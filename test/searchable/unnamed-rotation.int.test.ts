// An unnamed statement holds the candidates that exist at its Parse (one per
// KEK wrapping). Parsed before a rotation began and bound after this proxy
// learned the new wrapping, it is Parsed again with more candidates, just
// before the Bind and invisibly to the client: the lookup finds its row, the
// client sees exactly the replies it asked for, and the row shape is still
// known (a result column of the searchable table is decrypted).
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

const encrypted = [table('tokens', [column('token_hash', { searchable: true }), column('label')])];
const timing = { refreshMs: 100, activationDelayMs: 1_200, retryMs: 50 };
const hash = (i: number) => `sha256:${String(i).padStart(5, '0')}${'ab'.repeat(28)}`;

const proxyWith = (kekPath: string, previous: string[] = []): Promise<WiredProxy> => startWiredProxy({ encrypted, kekPath, previous, searchable: timing });

let db: TestDb;
const kek1 = newKekFile();
const kek2 = newKekFile();
const proxies: WiredProxy[] = [];
const clients: pg.Client[] = [];

beforeAll(async () => {
  db = await createTestDatabase('srchun');
  await db.client.query(`CREATE TABLE tokens (id int PRIMARY KEY, token_hash text UNIQUE, label text)`);
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

describe('an unnamed statement bound after its key gained a KEK wrapping', () => {
  it('is Parsed again with more candidates: the lookup finds its row and the client sees only its own replies', async () => {
    const a = await proxyWith(kek1.path);
    proxies.push(a);
    const ca = await connect(a.via(db.url));
    for (let i = 1; i <= 5; i++) await ca.query('INSERT INTO tokens VALUES ($1, $2, $3)', [i, hash(i), `label ${i}`]);
    // A trust role (the raw client speaks no SCRAM) that may read the table and the key tables ca's session made.
    await ensureRole(db.client, 'pgcmek_trust');
    await db.client.query('GRANT SELECT ON tokens TO pgcmek_trust; GRANT USAGE ON SCHEMA pgcmek TO pgcmek_trust; GRANT SELECT ON ALL TABLES IN SCHEMA pgcmek TO pgcmek_trust');
    const raw = await RawClient.connect(a.server.port, { database: db.name, user: 'pgcmek_trust' });
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
