// psql (libpq 15) through the proxy: \copy both ways, multi-statement -c,
// meta-commands (catalog queries), SIGINT cancel, SSL negotiation and auth
// failures. Outputs DIRECT and THROUGH pgcmek must be byte-identical (after
// replacing the port number, which libpq prints in connection errors).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { both, startTestProxy, type TestProxy } from '../helpers/proxy.js';

let db: TestDb;
let proxy: TestProxy;
const psqlBin = (): string => join(inject('pgClientBin'), 'psql');

beforeAll(async () => {
  db = await createTestDatabase('clients_psql');
  proxy = await startTestProxy();
});
afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs psql on a URL (the password goes in PGPASSWORD, never on the command
 * line). `onSpawn` gets the child, e.g. to send SIGINT.
 */
function psql(url: string, args: string[], opts: { input?: string | Buffer; onSpawn?: (kill: (sig: NodeJS.Signals) => void) => void; password?: string; conn?: string } = {}): Promise<Run> {
  const u = new URL(url);
  const password = opts.password ?? decodeURIComponent(u.password);
  const conninfo = `host=${u.hostname} port=${u.port} user=${decodeURIComponent(u.username)} dbname=${u.pathname.slice(1)} ${opts.conn ?? ''}`;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(psqlBin(), ['-X', '-q', '-d', conninfo, ...args], {
      env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'psql', LC_ALL: 'C', PGTZ: 'UTC' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      const norm = (s: string): string => s.replaceAll(`port ${u.port}`, 'port PORT').replaceAll(`port "${u.port}"`, 'port "PORT"');
      resolve({ code, stdout: norm(Buffer.concat(out).toString()), stderr: norm(Buffer.concat(err).toString()), ms: Date.now() - started });
    });
    // psql may exit before reading all of its input (an error stops it): EPIPE is expected then.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    opts.onSpawn?.((sig) => child.kill(sig));
  });
}

const strip = (r: Run): Omit<Run, 'ms'> => ({ code: r.code, stdout: r.stdout, stderr: r.stderr });

describe('psql through the proxy', () => {
  it('-c with several statements, and several -c', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, async (url) => {
      const one = await psql(url, ['-v', 'ON_ERROR_STOP=1', '-c', `CREATE TEMP TABLE m(a int, b text); INSERT INTO m VALUES (1,'x'),(2,NULL); SELECT * FROM m ORDER BY a; SELECT count(*) FROM m`]);
      const many = await psql(url, ['-v', 'ON_ERROR_STOP=1', '-A', '-t', '-c', 'SELECT 1', '-c', `SELECT 'two'`, '-c', 'SELECT now() IS NOT NULL']);
      const failing = await psql(url, ['-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-c', 'SELECT 1', '-c', 'SELECT 1/0', '-c', 'SELECT 3']);
      return [strip(one), strip(many), strip(failing)];
    });
    expect(proxied).toEqual(direct);
    expect(direct[0].code).toBe(0);
    expect(direct[0].stdout).toContain(' 1 | x');
    expect(direct[1]).toEqual({ code: 0, stdout: '1\ntwo\nt\n', stderr: '' });
    expect(direct[2].code).toBe(1);
    expect(direct[2].stderr).toContain('ERROR:  22012: division by zero');
  });

  it('\\copy FROM STDIN and TO STDOUT in text, csv and binary', async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => `${i}\tname ${i} ✓ "q"\t${i % 5 === 0 ? '\\N' : `tab\\there ${i}`}`).join('\n') + '\n';
    const csv = 'id,name,note\n9001,"comma, inside",plain\n9002,"quote "" inside",\n';
    const { direct, proxy: proxied } = await both(db.url, proxy, async (url) => {
      const create = await psql(url, ['-v', 'ON_ERROR_STOP=1', '-c', 'CREATE TABLE cp(id int PRIMARY KEY, name text, note text)']);
      const load = await psql(url, ['-v', 'ON_ERROR_STOP=1', '-c', '\\copy cp FROM STDIN'], { input: rows });
      const loadCsv = await psql(url, ['-v', 'ON_ERROR_STOP=1', '-c', '\\copy cp FROM STDIN WITH (FORMAT csv, HEADER true)'], { input: csv });
      const text = await psql(url, ['-v', 'ON_ERROR_STOP=1', '-c', '\\copy (SELECT * FROM cp WHERE id < 9000 ORDER BY id) TO STDOUT']);
      const csvOut = await psql(url, ['-v', 'ON_ERROR_STOP=1', '-c', '\\copy (SELECT * FROM cp WHERE id > 9000 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)']);
      const binary = await psql(url, ['-v', 'ON_ERROR_STOP=1', '-c', `\\copy (SELECT id, md5(name) FROM cp ORDER BY id LIMIT 100) TO STDOUT WITH (FORMAT binary)`]);
      const drop = await psql(url, ['-c', 'DROP TABLE cp']);
      return { steps: [create, load, loadCsv, drop].map(strip), text: text.stdout, csvOut: csvOut.stdout, binaryLen: binary.stdout.length, binaryCode: binary.code };
    });
    expect(proxied).toEqual(direct);
    expect(direct.steps.map((s) => s.code)).toEqual([0, 0, 0, 0]);
    expect(direct.text).toBe(rows);
    expect(direct.csvOut).toBe(csv);
    expect(direct.binaryCode).toBe(0);
  });

  it('a script mixing \\copy data, a failing COPY, and later statements (like a pg_dump restore)', async () => {
    const script = [
      'CREATE TABLE restore_t(id int PRIMARY KEY, v text);',
      'COPY restore_t FROM STDIN;',
      '1\tone',
      '2\ttwo',
      '\\.',
      '\\set VERBOSITY verbose',
      'COPY restore_t FROM STDIN;',
      '3\tthree',
      '1\tduplicate',
      '\\.',
      'SELECT id, v FROM restore_t ORDER BY id;',
      'DROP TABLE restore_t;',
      '',
    ].join('\n');
    const { direct, proxy: proxied } = await both(db.url, proxy, async (url) => strip(await psql(url, ['-f', '-'], { input: script })));
    expect(proxied).toEqual(direct);
    expect(direct.code).toBe(0);
    expect(direct.stderr).toContain('ERROR:  23505: duplicate key value violates unique constraint "restore_t_pkey"');
    expect(direct.stdout).toMatch(/ 1 \| one\n {2}2 \| two\n\(2 rows\)/);
  });

  it('\\lo_import / \\lo_export (libpq fast-path function calls)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'clients-lo-'));
    try {
      const blob = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256));
      writeFileSync(join(dir, 'in.bin'), blob);
      const { direct, proxy: proxied } = await both(db.url, proxy, async (url, target) => {
        const out = join(dir, `out-${target}.bin`);
        const r = await psql(url, ['-v', 'ON_ERROR_STOP=1', '-c', `\\lo_import ${join(dir, 'in.bin')}`, '-c', `\\lo_export :LASTOID ${out}`, '-c', '\\lo_unlink :LASTOID']);
        return { code: r.code, stderr: r.stderr, stdout: r.stdout, same: readFileSync(out).equals(blob) };
      });
      expect(proxied).toEqual(direct);
      expect(direct).toEqual({ code: 0, stderr: '', stdout: '', same: true }); // -q: no command tags
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('\\d meta-commands see the same catalog', async () => {
    await db.client.query(`CREATE SCHEMA meta; CREATE TABLE meta.t(id serial PRIMARY KEY, email text NOT NULL UNIQUE, body jsonb, created timestamptz DEFAULT now());
      CREATE INDEX t_body ON meta.t USING gin (body); CREATE VIEW meta.v AS SELECT id, email FROM meta.t; CREATE FUNCTION meta.f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1';
      COMMENT ON TABLE meta.t IS 'described'`);
    const { direct, proxy: proxied } = await both(db.url, proxy, async (url) =>
      strip(await psql(url, ['-v', 'ON_ERROR_STOP=1', '-c', '\\d meta.t', '-c', '\\d+ meta.v', '-c', '\\dt+ meta.*', '-c', '\\di meta.*', '-c', '\\df meta.*', '-c', '\\dn meta', '-c', '\\dT', '-c', '\\conninfo'])),
    );
    // \conninfo prints the port it connected to: the one thing allowed to differ (normalised above).
    expect(proxied).toEqual(direct);
    expect(direct.code).toBe(0);
    expect(direct.stdout).toContain('Table "meta.t"');
    expect(direct.stdout).toContain('"t_email_key" UNIQUE CONSTRAINT, btree (email)');
    expect(direct.stdout).toContain('described');
  });

  it('SIGINT cancels a running pg_sleep(30) quickly (libpq CancelRequest)', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, async (url) => {
      const r = await psql(url, ['-v', 'VERBOSITY=verbose', '-c', 'SELECT pg_sleep(30)'], {
        onSpawn: (kill) => setTimeout(() => kill('SIGINT'), 1000),
      });
      const lingering = await db.client.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query = 'SELECT pg_sleep(30)'`, [db.name]);
      return { code: r.code, stderr: r.stderr, fast: r.ms < 8000, lingering: lingering.rows[0].n as number };
    });
    expect(proxied).toEqual(direct);
    expect(direct).toEqual({ code: 1, stderr: expect.stringContaining('ERROR:  57014: canceling statement due to user request'), fast: true, lingering: 0 });
  });

  it('SSL negotiation: prefer falls back to plaintext, require fails the same way', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, async (url) => {
      const prefer = await psql(url, ['-A', '-t', '-c', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'], { conn: 'sslmode=prefer' });
      const disable = await psql(url, ['-A', '-t', '-c', 'SELECT 1'], { conn: 'sslmode=disable' });
      const require = await psql(url, ['-c', 'SELECT 1'], { conn: 'sslmode=require' });
      return [prefer, disable, require].map(strip);
    });
    expect(proxied).toEqual(direct);
    expect(direct[0]).toEqual({ code: 0, stdout: 'f\n', stderr: '' });
    expect(direct[1]).toEqual({ code: 0, stdout: '1\n', stderr: '' });
    expect(direct[2].code).toBe(2);
    expect(direct[2].stderr).toContain('server does not support SSL, but SSL was required');
  });

  it('a wrong password fails with the server\'s own message', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, async (url) => strip(await psql(url, ['-c', 'SELECT 1'], { password: 'wrong' })));
    expect(proxied).toEqual(direct);
    expect(direct.code).toBe(2);
    expect(direct.stderr).toContain('password authentication failed for user "postgres"');
  });
});
