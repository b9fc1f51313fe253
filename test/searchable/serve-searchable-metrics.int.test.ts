// `pgcmek serve` (the production runtime: ProxyRuntime, CountingCodec, the
// instrumented admin gateway) with a searchable column: every deterministic
// write — bind parameter, literal, COPY — is counted in
// pgcmek_values_encrypted_total{column}, lookups are not; and a backfill of a
// searchable column through the proxy works there too (the gateway gets the
// generation's searchable keys), and is reported in the admin metrics.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { retarget } from '../helpers/proxy.js';
import { httpGet, sample, serveInProcess, type Served } from '../ops/helpers.js';

const TOKEN = { column: 'public.tokens.token_hash' };
const SECRET = { column: 'public.tokens.secret' };

let db: TestDb;
let served: Served;
let app: pg.Client;

async function scrape(): Promise<string> {
  const r = await httpGet(served.metrics!, '/metrics');
  expect(r.status).toBe(200);
  return r.body;
}

beforeAll(async () => {
  db = await createTestDatabase('srchmet');
  await db.client.query('CREATE TABLE tokens (id serial PRIMARY KEY, name text, token_hash text UNIQUE, secret text)');
  served = await serveInProcess(
    [
      'encrypted:',
      '  public.tokens:',
      '    token_hash: { searchable: true }',
      '    secret:',
      'metrics: { host: 127.0.0.1, port: 0 }',
      'admin: { roles: [postgres] }',
      'log: { level: info }',
    ].join('\n') + '\n',
  );
  app = new pg.Client(retarget(db.url, '127.0.0.1', served.port));
  await app.connect();
});

afterAll(async () => {
  await app?.end().catch(() => {});
  await served?.stop();
  await db?.drop();
});

describe('searchable writes in the metrics', () => {
  it('counts bind parameters, literals and COPY rows; not lookups, empty strings or NULL', async () => {
    const before = sample(await scrape(), 'pgcmek_values_encrypted_total', TOKEN) ?? 0;
    expect(before).toBe(0);
    // 3 bind parameters (and 3 random encryptions of the other column).
    for (const t of ['tok-a', 'tok-b', 'tok-c']) await app.query('INSERT INTO tokens (name, token_hash, secret) VALUES ($1, $2, $3)', [t, t, 's']);
    // 2 literals, in one statement; an empty string and a NULL are stored as they are.
    await app.query(`INSERT INTO tokens (name, token_hash) VALUES ('lit1', 'tok-l1'), ('lit2', 'tok-l2'), ('empty', ''), ('null', NULL)`);
    // 2 COPY rows.
    const sql = postgres(retarget(db.url, '127.0.0.1', served.port), { max: 1, onnotice: () => {} });
    try {
      const w = await sql`COPY tokens (name, token_hash) FROM STDIN`.writable();
      await pipeline(Readable.from(['copy1\ttok-c1\n', 'copy2\ttok-c2\n']), w);
    } finally {
      await sql.end();
    }
    // Lookups in both protocols compute candidates, which are not writes.
    expect((await app.query('SELECT name FROM tokens WHERE token_hash = $1', ['tok-b'])).rows).toEqual([{ name: 'tok-b' }]);
    expect((await app.query(`SELECT name FROM tokens WHERE token_hash IN ('tok-l1', 'tok-c2') ORDER BY name`)).rows).toEqual([{ name: 'copy2' }, { name: 'lit1' }]);
    const text = await scrape();
    expect(sample(text, 'pgcmek_values_encrypted_total', TOKEN)).toBe(7);
    expect(sample(text, 'pgcmek_values_encrypted_total', SECRET)).toBe(3);
    const stored = await db.client.query(`SELECT count(*)::int AS n FROM tokens WHERE token_hash LIKE 'cmek:v1:%'`);
    expect(stored.rows[0].n).toBe(7);
  });

  it('a backfill of a searchable column through serve writes with the column key; the admin metrics report it', async () => {
    await db.client.query(`INSERT INTO tokens (name, token_hash) VALUES ('legacy1', 'tok-legacy1'), ('legacy2', 'tok-legacy2')`);
    const res = await app.query('CMEK ENCRYPT EXISTING tokens.token_hash');
    expect(res.rows).toEqual([expect.objectContaining({ plaintext_rows: '2', encrypted: '2', failed: '0' })]);
    expect((await app.query('SELECT name FROM tokens WHERE token_hash = $1', ['tok-legacy2'])).rows).toEqual([{ name: 'legacy2' }]);
    expect((await app.query(`SELECT name FROM tokens WHERE token_hash = 'tok-legacy1'`)).rows).toEqual([{ name: 'legacy1' }]);
    const text = await scrape();
    expect(sample(text, 'pgcmek_admin_commands_total', { command: 'encrypt', outcome: 'ok' })).toBe(1);
  });
});
