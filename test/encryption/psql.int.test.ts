// The simple query protocol with literals, through psql 15 and node-postgres
// simple queries: standard strings, E'' strings, dollar quoting, multi-statement
// messages, standard_conforming_strings = off; and psql's \copy in text and CSV,
// both ways. The app side reads plaintext; a direct connection reads envelopes.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { startEncryptedProxy, table, type EncryptedProxy } from '../helpers/encrypted-proxy.js';

const PREFIX = 'cmek:v1:';

let db: TestDb;
let proxy: EncryptedProxy;
let app: pg.Client;
let dir: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs psql 15 against `url` (password from the URL, passed in PGPASSWORD, never on the command line). */
function psql(url: string, args: string[], input?: string): Promise<Run> {
  const u = new URL(url);
  const bin = join(inject('pgClientBin'), 'psql');
  const conn = ['-h', u.hostname, '-p', u.port, '-U', decodeURIComponent(u.username), '-d', u.pathname.slice(1)];
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', ...conn, ...args], {
      env: { ...process.env, PGPASSWORD: decodeURIComponent(u.password), PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    // psql may exit before reading all of its input (an error stops it): EPIPE is expected then.
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

/** psql through the proxy; fails the test on a non-zero exit. */
async function viaPsql(args: string[], input?: string): Promise<string> {
  const r = await psql(proxy.via(db.url), args, input);
  if (r.code !== 0) throw new Error(`psql exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function directSecrets(): Promise<Map<number, string | null>> {
  const r = await db.client.query<{ id: number; secret: string | null }>('SELECT id, secret FROM webhook ORDER BY id');
  return new Map(r.rows.map((x) => [x.id, x.secret]));
}

/** Every stored value is an envelope of the expected plaintext (NULL stays NULL), and the app reads the plaintext. */
async function check(want: Record<number, string | null>): Promise<void> {
  const stored = await directSecrets();
  expect([...stored.keys()]).toEqual(Object.keys(want).map(Number));
  for (const [id, v] of stored) {
    const plain = want[id]!;
    if (plain === null || plain === '') {
      expect(v).toBe(plain); // NULL stays NULL, '' stays '' (encrypt_empty is off)
      continue;
    }
    expect(v!.startsWith(PREFIX)).toBe(true);
    expect(await proxy.keyring.decrypt(v!)).toBe(plain);
  }
  const via = await app.query('SELECT id, secret FROM webhook ORDER BY id');
  expect(Object.fromEntries(via.rows.map((r) => [r.id, r.secret]))).toEqual(want);
}

beforeAll(async () => {
  db = await createTestDatabase('enc_psql');
  await db.client.query(`CREATE TABLE webhook (id int PRIMARY KEY, url text, secret text)`);
  proxy = await startEncryptedProxy({ encrypted: [table('webhook', ['secret'])] });
  app = new pg.Client(proxy.via(db.url));
  await app.connect();
  dir = mkdtempSync(join(tmpdir(), 'pgcmek-psql-'));
});

afterAll(async () => {
  await app?.end();
  await proxy?.close();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  await db.client.query('TRUNCATE webhook');
});

describe('psql literals', () => {
  it("standard strings, E'' strings, dollar quoting and a tagged dollar quote in one -c (one multi-statement Query)", async () => {
    await viaPsql([
      '-c',
      [
        `INSERT INTO webhook VALUES (1, 'u', 'it''s standard')`,
        `INSERT INTO webhook VALUES (2, 'u', E'tab\\there\\nnewline \\x41\\u00e9')`,
        `INSERT INTO webhook VALUES (3, 'u', $$dollar 'quoted' \\n$$)`,
        `INSERT INTO webhook VALUES (4, 'u', $tag$has $$ inside$tag$), (5, 'u', 'adjacent'\n'continued'), (6, 'u', NULL)`,
      ].join('; '),
    ]);
    await check({
      1: "it's standard",
      2: 'tab\there\nnewline Aé',
      3: "dollar 'quoted' \\n",
      4: 'has $$ inside',
      5: 'adjacentcontinued',
      6: null,
    });
  });

  it('a script with -f: statements one by one, a transaction, UPDATE, and reads printed by psql', async () => {
    const file = join(dir, 'script.sql');
    writeFileSync(
      file,
      `BEGIN;
INSERT INTO webhook (id, url, secret) VALUES (1, 'a', 'script-one'), (2, 'b', U&'\\00e9t\\00e9');
UPDATE webhook SET secret = 'script-two' WHERE id = 1;
COMMIT;
SELECT id || '=' || url FROM webhook ORDER BY id;
SELECT secret FROM webhook ORDER BY id;
`,
    );
    const out = await viaPsql(['-f', file]);
    expect(out.trim().split('\n')).toEqual(['1=a', '2=b', 'script-two', 'été']);
    await check({ 1: 'script-two', 2: 'été' });
  });

  it('standard_conforming_strings = off: literals for encrypted tables are refused (not guessed), and work again after RESET', async () => {
    const r = await psql(proxy.via(db.url), ['-c', `SET standard_conforming_strings = off`, '-c', `INSERT INTO webhook VALUES (1, 'u', 'back\\\\slash')`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('standard_conforming_strings');
    expect(r.stderr).not.toContain('slash');
    expect((await directSecrets()).size).toBe(0);
    // Statements on other tables are unaffected; after RESET the session writes again.
    await viaPsql(['-c', `SET standard_conforming_strings = off`, '-c', `SELECT 'a\\tb'`, '-c', 'RESET standard_conforming_strings', '-c', `INSERT INTO webhook VALUES (1, 'u', 'after reset')`]);
    await check({ 1: 'after reset' });
  });

  it('a refused statement stops the script (ON_ERROR_STOP) with the SQLSTATE message, and stores nothing', async () => {
    const r = await psql(proxy.via(db.url), ['-c', `INSERT INTO webhook VALUES (1, 'u', 'ok')`, '-c', `INSERT INTO webhook VALUES (2, 'u', upper('x'))`, '-c', `INSERT INTO webhook VALUES (3, 'u', 'never')`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('public.webhook.secret');
    expect(r.stderr).not.toContain("'x'");
    await check({ 1: 'ok' });
  });
});

describe('node-postgres simple queries', () => {
  it("multi-statement text with E'', dollar quotes and a read in the same message", async () => {
    const r = (await app.query(
      `INSERT INTO webhook VALUES (1, 'u', E'\\'esc\\''); INSERT INTO webhook VALUES (2, 'u', $q$dq$q$); SELECT secret FROM webhook ORDER BY id`,
    )) as unknown as pg.QueryResult[];
    expect(r).toHaveLength(3);
    expect(r[2]!.rows.map((x) => x.secret)).toEqual(["'esc'", 'dq']);
    await check({ 1: "'esc'", 2: 'dq' });
  });
});

describe('psql \\copy', () => {
  it('text format FROM STDIN (inline data in a script): escapes, NULL, tabs', async () => {
    const file = join(dir, 'copy.sql');
    writeFileSync(file, `\\copy webhook (id, secret, url) from stdin\n1\tcopy-one\tu1\n2\twith\\ttab and \\\\ backslash\tu2\n3\t\\N\tu3\n4\t\tu4\n\\.\n`);
    await viaPsql(['-f', file]);
    await check({ 1: 'copy-one', 2: 'with\ttab and \\ backslash', 3: null, 4: '' });
    const urls = await db.client.query('SELECT url FROM webhook ORDER BY id');
    expect(urls.rows.map((r) => r.url)).toEqual(['u1', 'u2', 'u3', 'u4']);
  });

  it('CSV FROM pstdin with quotes, embedded commas and newlines, and a header', async () => {
    const csv = 'id,secret,url\n1,"a,b",u\n2,"multi\nline ""quoted""",u\n3,,u\n';
    await viaPsql(['-c', `\\copy webhook (id, secret, url) from pstdin with (format csv, header true)`], csv);
    await check({ 1: 'a,b', 2: 'multi\nline "quoted"', 3: null });
  });

  it('\\copy TO STDOUT: plaintext through pgcmek, envelopes direct', async () => {
    await app.query(`INSERT INTO webhook VALUES (1, 'u1', 'out-one'), (2, 'u2', NULL), (3, 'u3', 'tab\there')`);
    const via = await viaPsql(['-c', `\\copy webhook (id, secret) to stdout`]);
    expect(via).toBe('1\tout-one\n2\t\\N\n3\ttab\\there\n');
    const viaCsv = await viaPsql(['-c', `\\copy (SELECT id, secret FROM webhook ORDER BY id) to stdout with (format csv)`]);
    expect(viaCsv).toBe('1,out-one\n2,\n3,tab\there\n');
    const direct = await psql(db.url, ['-c', `\\copy webhook (id, secret) to stdout`]);
    expect(direct.code).toBe(0);
    const lines = direct.stdout.trim().split('\n').map((l) => l.split('\t'));
    expect(lines[0]![1]!.startsWith(PREFIX)).toBe(true);
    expect(await proxy.keyring.decrypt(lines[0]![1]!)).toBe('out-one');
    expect(lines[1]![1]).toBe('\\N');
    expect(direct.stdout).not.toContain('out-one');
  });

  it('binary COPY into an encrypted table is refused with a clear error, and nothing is stored', async () => {
    // A valid binary COPY file, made by the server itself.
    const bin = join(dir, 'rows.bin');
    const made = await psql(db.url, ['-c', `\\copy (SELECT 1 AS id, 'u'::text AS url, 'bin-secret'::text AS secret) to '${bin}' with (format binary)`]);
    expect(made.code).toBe(0);
    const r = await psql(proxy.via(db.url), ['-c', `\\copy webhook from '${bin}' with (format binary)`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/binary COPY into encrypted column public\.webhook\.secret is refused/);
    expect(r.stderr).not.toContain('bin-secret');
    expect((await directSecrets()).size).toBe(0);
    // The session that got the refusal is not needed again; a new one works.
    expect(await viaPsql(['-c', 'SELECT 1'])).toBe('1\n');
  });
});
