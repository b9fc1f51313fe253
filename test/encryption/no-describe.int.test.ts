// Clients that execute a prepared statement they never described (pgbench
// -M prepared, drivers caching statements): the proxy does not know the result's
// columns from the client's traffic, so it asks the server itself (an injected
// Describe whose reply the client never sees) and still decrypts the rows.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'pg-protocol';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { startEncryptedProxy, table, type EncryptedProxy } from '../helpers/encrypted-proxy.js';
import { codes, dataRows, RawClient } from '../proxy/raw-client.js';

const PREFIX = 'cmek:v1:';
const ROWS = 20;

let db: TestDb;
let proxy: EncryptedProxy;
let dir: string;

beforeAll(async () => {
  db = await createTestDatabase('enc_nodesc');
  await db.client.query(`
    DO $$ BEGIN CREATE ROLE pgcmek_trust LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
    CREATE TABLE webhook (id int PRIMARY KEY, url text, secret text);
    CREATE TABLE seen (id int, v text);
    CREATE TABLE written (n bigint, secret text);
    GRANT ALL ON ALL TABLES IN SCHEMA public TO pgcmek_trust;
  `);
  proxy = await startEncryptedProxy({ encrypted: [table('webhook', ['secret']), table('written', ['secret'])] });
  const app = new pg.Client(proxy.via(db.url));
  await app.connect();
  for (let id = 1; id <= ROWS; id++) await app.query('INSERT INTO webhook VALUES ($1, $2, $3)', [id, `u${id}`, `secret-${id}`]);
  await app.end();
  const stored = await db.client.query('SELECT secret FROM webhook WHERE id = 1');
  expect(stored.rows[0].secret.startsWith(PREFIX)).toBe(true);
  dir = mkdtempSync(join(tmpdir(), 'pgcmek-nodesc-'));
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('raw protocol: Bind/Execute without Describe', () => {
  it('a named statement parsed in one batch and executed in later ones: rows decrypted, no extra replies', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    try {
      c.send(serialize.parse({ name: 'q', text: 'SELECT id, secret FROM webhook WHERE id = $1', types: [] }), serialize.sync());
      expect(codes(await c.untilReady())).toBe('1Z');
      for (const id of [1, 7, 20]) {
        c.send(serialize.bind({ statement: 'q', values: [String(id)] }), serialize.execute({}), serialize.sync());
        const ms = await c.untilReady();
        expect(codes(ms)).toBe('2DCZ'); // the injected Describe's t/T never reach the client
        expect(dataRows(ms)).toEqual([[String(id), `secret-${id}`]]);
      }
    } finally {
      c.end();
    }
  });

  it('Parse/Bind/Execute/Sync in one batch (unnamed), and binary result format', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    try {
      c.send(
        serialize.parse({ text: 'SELECT secret, url FROM webhook WHERE id = $1', types: [] }),
        serialize.bind({ values: ['3'] }),
        serialize.execute({}),
        serialize.sync(),
      );
      let ms = await c.untilReady();
      expect(codes(ms)).toBe('12DCZ');
      expect(dataRows(ms)).toEqual([['secret-3', 'u3']]);
      c.send(serialize.parse({ name: 'b', text: 'SELECT secret FROM webhook WHERE id = $1', types: [] }), serialize.sync());
      await c.untilReady();
      c.send(serialize.bind({ statement: 'b', values: ['4'], binary: true }), serialize.execute({}), serialize.sync());
      ms = await c.untilReady();
      expect(codes(ms)).toBe('2DCZ');
      expect(dataRows(ms)).toEqual([['secret-4']]); // text's binary form is its bytes
    } finally {
      c.end();
    }
  });

  it('a portal executed in batches of 2 (Execute row limit) without Describe', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    try {
      c.send(serialize.parse({ name: 'all', text: 'SELECT secret FROM webhook WHERE id <= $1 ORDER BY id', types: [] }), serialize.sync());
      await c.untilReady();
      c.send(serialize.bind({ statement: 'all', portal: 'p', values: ['5'] }), serialize.execute({ portal: 'p', rows: 2 }), serialize.flush());
      const first = await c.take(4); // BindComplete, 2 DataRows, PortalSuspended
      expect(codes(first)).toBe('2DDs');
      c.send(serialize.execute({ portal: 'p', rows: 2 }), serialize.execute({ portal: 'p', rows: 2 }), serialize.sync());
      const rest = await c.untilReady();
      expect(codes(rest)).toBe('DDsDCZ');
      expect([...dataRows(first), ...dataRows(rest)].map((r) => r[0])).toEqual([1, 2, 3, 4, 5].map((i) => `secret-${i}`));
    } finally {
      c.end();
    }
  });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function pgbench(args: string[]): Promise<Run> {
  const u = new URL(proxy.via(db.url));
  const bin = join(inject('pgClientBin'), 'pgbench');
  const conn = ['-h', u.hostname, '-p', u.port, '-U', decodeURIComponent(u.username), db.name];
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['-n', ...args, ...conn], {
      env: { ...process.env, PGPASSWORD: decodeURIComponent(u.password), PGSSLMODE: 'disable' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('pgbench with a custom script', () => {
  // The value pgbench reads (\gset) is written back into a plain table: had the
  // proxy not decrypted it, `seen` would hold envelopes.
  // -M simple substitutes variables as raw text, the others as parameters.
  const read = (mode: string) => `\\set id random(1, ${ROWS})
SELECT secret AS s FROM webhook WHERE id = :id \\gset
INSERT INTO seen (id, v) VALUES (:id, ${mode === 'simple' ? "':s'" : ':s'});
`;

  for (const mode of ['prepared', 'extended', 'simple'] as const) {
    it(`-M ${mode}: the encrypted column read by id comes back decrypted`, async () => {
      await db.client.query('TRUNCATE seen');
      const file = join(dir, `read-${mode}.sql`);
      writeFileSync(file, read(mode));
      const r = await pgbench(['-M', mode, '-f', file, '-c', '2', '-j', '1', '-t', '50']);
      expect(r.stderr).not.toMatch(/error|abort/i);
      expect(r.code).toBe(0);
      const seen = await db.client.query<{ n: number; bad: number }>(`SELECT count(*)::int AS n, count(*) FILTER (WHERE v IS DISTINCT FROM 'secret-' || id)::int AS bad FROM seen`);
      expect(seen.rows[0]).toEqual({ n: 100, bad: 0 });
    });
  }

  it('-M prepared writes: every inserted value is stored encrypted', async () => {
    const file = join(dir, 'write.sql');
    writeFileSync(file, `\\set n random(1, 1000000000)\nINSERT INTO written (n, secret) VALUES (:n, :n);\n`);
    const r = await pgbench(['-M', 'prepared', '-f', file, '-c', '2', '-j', '1', '-t', '25']);
    expect(r.code).toBe(0);
    const rows = await db.client.query<{ n: string; secret: string }>('SELECT n::text AS n, secret FROM written');
    expect(rows.rows).toHaveLength(50);
    for (const row of rows.rows) {
      expect(row.secret.startsWith(PREFIX)).toBe(true);
      expect(await proxy.keyring.decrypt(row.secret)).toBe(row.n);
    }
  });
});
