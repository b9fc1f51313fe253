// The redaction guarantee: whatever goes through pgcmek, no plaintext of an
// encrypted column, no bind parameter value, no SQL literal, no password and no
// key material (KEK, DEKs, Vault token) reaches its log, at any level. `serve`
// runs at `trace` with Vault as the primary KEK and a local KEK readable; every
// path that handles a value is exercised (bind parameters, literals, jsonb
// paths, COPY in and out, failed decryptions, refused statements, failed
// encryptions, wrong passwords for each auth method, admin commands), then every
// line of stdout and stderr is searched for each secret in every encoding.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseEnvelope } from '../../src/crypto/envelope.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { createBackends } from '../../src/crypto/kek/registry.js';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import type { KekConfig } from '../../src/config/types.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { retarget } from '../helpers/proxy.js';
import { FakeVault } from '../kek/fake-vault.js';
import { transitRules } from '../kek/helpers.js';
import { serveInProcess, type Served } from './helpers.js';

const tag = `${process.pid}x${Date.now().toString(36)}`;
/** Every secret the test sends; none may appear in the log. */
const SECRETS: string[] = [];
const secret = (name: string): string => {
  const s = `S3CRET_${name}_${tag}`;
  SECRETS.push(s);
  return s;
};

let db: TestDb;
let vault: FakeVault;
let vaultToken: string;
let served: Served;
let kekConfig: KekConfig;
let log = '';
let kek: Buffer;

function url(user = 'postgres', password = 'postgres'): string {
  const u = new URL(retarget(db.url, '127.0.0.1', served.port));
  u.username = user;
  u.password = password;
  return u.toString();
}

async function client(user?: string, password?: string): Promise<pg.Client> {
  const c = new pg.Client(url(user, password));
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** psql, asynchronously: the proxy runs in this process and must keep serving meanwhile. */
function psql(sql: string, input = ''): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(join(inject('pgClientBin'), 'psql'), ['-X', '-A', '-t', '-c', sql, url()], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.once('error', reject);
    p.once('exit', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
    // psql may exit before reading all of its input (an error stops it): EPIPE is expected then.
    p.stdin.on('error', () => {});
    p.stdin.end(input);
  });
}

/** Runs a statement that must fail; returns the SQLSTATE. */
async function fails(c: pg.Client, sql: string, params?: unknown[]): Promise<string> {
  try {
    await c.query(sql, params);
  } catch (e) {
    return (e as { code?: string }).code ?? 'no code';
  }
  throw new Error(`expected an error from: ${sql.slice(0, 40)}`);
}

beforeAll(async () => {
  db = await createTestDatabase('ops_redact');
  await db.client.query(`
    DO $$ BEGIN CREATE ROLE pgcmek_password LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
    DO $$ BEGIN CREATE ROLE pgcmek_md5 LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
    DO $$ BEGIN CREATE ROLE redact_scram LOGIN PASSWORD 'right-password'; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
    -- Roles are cluster-wide and other test files log in as these too: every file uses the
    -- convention password = role name (test/proxy/helpers.ts ensureRole), so none races another.
    ALTER ROLE pgcmek_password PASSWORD 'pgcmek_password';
    SET password_encryption = 'md5';
    ALTER ROLE pgcmek_md5 PASSWORD 'pgcmek_md5';
    RESET password_encryption;
    CREATE TABLE secrets (id serial PRIMARY KEY, name text, token text);
    CREATE TABLE workspace (id serial PRIMARY KEY, settings jsonb NOT NULL DEFAULT '{}');
  `);
  vault = await new FakeVault().start();
  vault.createKey('pgcmek');
  vaultToken = vault.createToken({ rules: transitRules() });
  served = await serveInProcess(
    [
      'encrypted:',
      '  public.secrets: [token]',
      '  public.workspace:',
      '    settings: { json_paths: ["smtp.password"] }',
      'kek:',
      '  backend: vault',
      `  vault: { addr: "${vault.url}", key_name: pgcmek, token: "${vaultToken}" }`,
      '  local: { path: {{kek}} }',
      '  dek: { max_uses: 2 }',
      'admin: { roles: [postgres] }',
      'log: { level: trace }',
    ].join('\n'),
  );
  kekConfig = {
    backend: 'vault',
    local: { previous: [] }, // the KEK file goes with the served dir: a copy is made for the last test
    vault: { addr: vault.url, token: vaultToken, keyName: 'pgcmek', mount: 'transit' },
    dek: { maxAgeSeconds: 0, maxUses: 1, cacheSize: 0, cacheTtlSeconds: 0 },
  };
});

afterAll(async () => {
  if (served) await served.stop();
  await vault?.stop();
  await db?.drop();
});

describe('nothing secret is logged, at trace level', () => {
  it('exercises every path that handles a value', async () => {
    const app = await client();
    // Bind parameters: for the encrypted column and for a plain one.
    const bound = secret('BIND');
    await app.query('INSERT INTO secrets (name, token) VALUES ($1, $2)', [secret('BIND_PLAIN'), bound]);
    // Literals (simple protocol), both columns.
    await app.query(`INSERT INTO secrets (name, token) VALUES ('${secret('LIT_PLAIN')}', '${secret('LIT')}')`);
    // A literal in the extended protocol.
    await app.query({ text: `INSERT INTO secrets (name, token) VALUES ('n', '${secret('LIT_EXT')}')`, values: [] });
    // jsonb with an encrypted path.
    await app.query('INSERT INTO workspace (settings) VALUES ($1)', [JSON.stringify({ smtp: { password: secret('JSON'), host: 'smtp.example.com' } })]);
    // Reads decrypt them all.
    const rows = await app.query('SELECT name, token FROM secrets ORDER BY id');
    expect(rows.rows.map((r) => r.token)).toContain(bound);
    expect(JSON.stringify((await app.query('SELECT settings FROM workspace')).rows)).toContain('_JSON_');

    // COPY in and out (psql, simple protocol), including data that cannot be encrypted.
    const copied = secret('COPY');
    expect(await psql('COPY secrets (name, token) FROM STDIN', `${secret('COPY_PLAIN')}\t${copied}\n\\.\n`)).toMatchObject({ code: 0 });
    expect((await psql('COPY (SELECT token FROM secrets ORDER BY id) TO STDOUT')).out).toContain(copied);
    expect((await psql('COPY workspace (settings) FROM STDIN', `{"smtp": {"password": "${secret('COPY_BADJSON')}"\n\\.\n`)).code).not.toBe(0);
    expect((await psql('COPY workspace (settings) FROM STDIN', `{"smtp": {"password": ${secret('COPY_BADJSON_BARE')}}}\n\\.\n`)).code).not.toBe(0);
    expect((await psql('COPY secrets (name, token) FROM STDIN', `only-one-field-${secret('COPY_SHORT')}\n\\.\n`)).code).not.toBe(0);

    // Refused statements, with a secret in them.
    expect(await fails(app, `SELECT id FROM secrets WHERE token LIKE '${secret('REFUSED_LIKE')}%'`)).toBe('0A000');
    expect(await fails(app, 'SELECT id FROM secrets WHERE token LIKE $1', [secret('REFUSED_PARAM')])).toBe('0A000');
    expect(await fails(app, `INSERT INTO secrets (name, token) VALUES ('x', '${secret('SYNTAX')}'`)).toMatch(/^42601|0A000$/);
    expect(await fails(app, `INSERT INTO secrets (name, token) VALUES ('x', upper('${secret('EXPR')}'))`)).toMatch(/^0A000|22P02$/);
    // A write the proxy cannot encrypt: malformed JSON for a json_paths column.
    // (JSON.parse's messages quote the input they choke on.)
    for (const bad of [`{"smtp": {"password": "${secret('BADJSON')}"`, `{"smtp": {"password": ${secret('BADJSON_BARE')}}}`]) {
      expect(await fails(app, 'INSERT INTO workspace (settings) VALUES ($1)', [bad])).not.toBe('no code');
      expect(await fails(app, `INSERT INTO workspace (settings) VALUES ('${bad}')`)).not.toBe('no code');
    }
    // Decryption failures: under a KEK the proxy lacks, and corrupted envelopes.
    const other = join(served.dir, 'other.key');
    generateKekFile(other);
    const foreignKeyring = await Keyring.fromConfig({ backend: 'local', local: { path: other, previous: [] }, dek: kekConfig.dek });
    const foreign = await foreignKeyring.encrypt(secret('FOREIGN'));
    await foreignKeyring.close();
    const good = (await db.client.query<{ token: string }>('SELECT token FROM secrets WHERE token IS NOT NULL ORDER BY id LIMIT 1')).rows[0]!.token;
    const badMac = good.slice(0, -6) + (good.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA');
    for (const bad of [foreign, badMac, `cmek:v1:${secret('CORRUPT')}|x|y`]) {
      await db.client.query('DELETE FROM secrets WHERE name = $1', ['bad']);
      await db.client.query('INSERT INTO secrets (name, token) VALUES ($1, $2)', ['bad', bad]);
      expect(await fails(app, `SELECT token FROM secrets WHERE name = 'bad'`)).toMatch(/^XX001|58030$/);
      expect(await fails(app, `SELECT token FROM secrets WHERE name = $1`, ['bad'])).toMatch(/^XX001|58030$/);
    }
    await db.client.query(`DELETE FROM secrets WHERE name = 'bad'`);

    // Admin commands, over legacy plaintext that they encrypt.
    await db.client.query('INSERT INTO secrets (name, token) VALUES ($1, $2)', ['legacy', secret('LEGACY')]);
    for (const cmd of [
      'CMEK STATUS',
      'CMEK ENCRYPT EXISTING public.secrets.token',
      'CMEK VERIFY public.secrets',
      'CMEK ROTATE KEK public.secrets DRY RUN',
      'CMEK DECRYPT EXISTING public.secrets.token DRY RUN',
    ]) {
      await app.query(cmd);
    }
    expect(await fails(app, `CMEK ENCRYPT EXISTING '${secret('ADMIN_ARG')}'`)).not.toBe('no code');
    await app.end();

    // Wrong passwords, for each authentication method (cleartext password, md5, SCRAM).
    for (const user of ['pgcmek_password', 'pgcmek_md5', 'redact_scram']) {
      await expect(client(user, secret(`PW_${user}`))).rejects.toMatchObject({ code: '28P01' });
    }
    // A right one too: the proxy relays it, never logs it.
    const ok = await client('pgcmek_password', 'pgcmek_password');
    await ok.end();

    // Let the session-closed lines land, then stop (its shutdown lines are part of the log).
    await new Promise((r) => setTimeout(r, 200));
    kek = readFileSync(served.kekPath);
    const r = await served.stop();
    expect(r.code).toBe(0);
    log = served.stdout() + served.stderr();
  });

  it('logged at trace level (the test looks at a verbose log, not an empty one)', () => {
    const lines = log.split('\n').filter((l) => l.startsWith('{'));
    expect(lines.length).toBeGreaterThan(30);
    const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    for (const m of ['session started', 'statement refused', 'CMEKDecryptionError: result discarded', 'cmek admin command']) expect(msgs).toContain(m);
  });

  it('no secret value, in any encoding', () => {
    expect(SECRETS.length).toBeGreaterThan(20);
    for (const s of SECRETS) {
      for (const form of [s, Buffer.from(s).toString('base64'), Buffer.from(s).toString('base64url'), Buffer.from(s).toString('hex'), s.slice(0, 20)]) {
        expect(log, `${s} (as ${form})`).not.toContain(form);
      }
    }
    expect(log).not.toContain('right-password');
    expect(log).not.toContain(tag);
  });

  it('no key material: the KEK, the DEKs, the Vault token', async () => {
    expect(kek.length).toBe(32);
    // The served dir (and its KEK file) is gone: unwrap the DEKs with a copy of the KEK.
    const copyDir = mkdtempSync(join(tmpdir(), 'pgcmek-redact-'));
    writeFileSync(join(copyDir, 'kek.key'), kek, { mode: 0o600 });
    const { readable } = await createBackends({ ...kekConfig, local: { path: join(copyDir, 'kek.key'), previous: [] } });
    for (const b of readable) await b.init();
    const deks: Buffer[] = [kek];
    try {
      const stored = await db.client.query<{ token: string }>(`SELECT token FROM secrets WHERE token LIKE 'cmek:v1:%'`);
      expect(stored.rowCount).toBeGreaterThan(3);
      for (const { token } of stored.rows) {
        const { wrapped } = parseEnvelope(token);
        const b = readable.find((x) => x.tag === wrapped.tag)!;
        deks.push(await b.unwrap(wrapped));
      }
    } finally {
      await Promise.allSettled(readable.map((b) => b.close?.()));
      rmSync(copyDir, { recursive: true, force: true });
    }
    for (const key of deks) {
      for (const form of [key.toString('hex'), key.toString('base64'), key.toString('base64url'), key.toString('base64').slice(0, 16), key.toString('hex').slice(0, 16)]) {
        expect(log).not.toContain(form);
      }
    }
    expect(log).not.toContain(vaultToken);
    expect(log).not.toContain(vaultToken.slice(4, 20));
  });
});
