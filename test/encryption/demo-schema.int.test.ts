// The design's own schema (demo/schema.sql) with the encrypted map of the repo's
// config.yaml: every secret the app writes through pgcmek — six integration
// tokens, the webhook secret, the SMTP password inside workspace settings, the
// TOTP secret and backup codes — is stored as an envelope, reads back as
// plaintext through pgcmek, and a pg_dump of the database holds none of them.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { startEncryptedProxy, type EncryptedProxy } from '../helpers/encrypted-proxy.js';

const PREFIX = 'cmek:v1:';
const TOKENS = ['slack_token', 'jira_token', 'linear_key', 'git_token', 'pagerduty_key', 'twilio_auth_token'] as const;
const tag = randomBytes(6).toString('hex');
const secret = (name: string, i = 0) => `${name}-${i}-${tag}`;

/** Every plaintext secret this file writes (for the dump check). */
const written = new Set<string>();
const remember = (s: string) => (written.add(s), s);

let db: TestDb;
let proxy: EncryptedProxy;
let app: pg.Client;
let workspaceId: number;

beforeAll(async () => {
  db = await createTestDatabase('enc_demo');
  await db.client.query(readFileSync(join(process.cwd(), 'demo', 'schema.sql'), 'utf8'));
  const cfg = parseConfig(readFileSync(join(process.cwd(), 'config.yaml'), 'utf8'), 'config.yaml', {});
  proxy = await startEncryptedProxy({ encrypted: cfg.encrypted, config: { decryptUnmapped: cfg.decryptUnmapped } });
  app = new pg.Client(proxy.via(db.url));
  await app.connect();
  const settings = { smtp: { host: 'smtp.example.com', port: 587, username: 'mailer', password: remember(secret('smtp')) }, theme: 'dark', locale: 'fr' };
  const ws = await app.query<{ id: string }>(`INSERT INTO workspace (name, plan, settings) VALUES ($1, 'pro', $2) RETURNING id`, ['acme', JSON.stringify(settings)]);
  workspaceId = Number(ws.rows[0]!.id);
});

afterAll(async () => {
  await app?.end();
  await proxy?.close();
  await db?.drop();
});

async function expectEnvelope(stored: unknown, plain: string): Promise<void> {
  expect(typeof stored).toBe('string');
  expect((stored as string).startsWith(PREFIX)).toBe(true);
  expect(stored).not.toContain(plain);
  expect(await proxy.keyring.decrypt(stored as string)).toBe(plain);
}

describe('the demo schema through pgcmek', () => {
  it('workspace.settings: only smtp.password is encrypted inside the JSON document', async () => {
    const direct = await db.client.query('SELECT settings FROM workspace WHERE id = $1', [workspaceId]);
    const s = direct.rows[0].settings;
    await expectEnvelope(s.smtp.password, secret('smtp'));
    expect(s.smtp).toMatchObject({ host: 'smtp.example.com', port: 587, username: 'mailer' });
    expect(s.theme).toBe('dark');
    const via = await app.query(`SELECT settings, settings->'smtp'->>'host' AS host FROM workspace WHERE id = $1`, [workspaceId]);
    expect(via.rows[0].settings.smtp.password).toBe(secret('smtp'));
    expect(via.rows[0].host).toBe('smtp.example.com');
    // An update of the whole document through the proxy re-encrypts the path.
    const next = { ...via.rows[0].settings, smtp: { ...via.rows[0].settings.smtp, password: remember(secret('smtp', 2)) } };
    await app.query(`UPDATE workspace SET settings = $1 WHERE id = $2`, [JSON.stringify(next), workspaceId]);
    const after = await db.client.query('SELECT settings FROM workspace WHERE id = $1', [workspaceId]);
    await expectEnvelope(after.rows[0].settings.smtp.password, secret('smtp', 2));
  });

  it('integrations: six token columns, one provider per row (the others NULL), and a row with all six', async () => {
    for (const [i, col] of TOKENS.entries()) {
      await app.query(`INSERT INTO integrations_integrationconnection (workspace_id, provider, ${col}) VALUES ($1, $2, $3)`, [workspaceId, col.split('_')[0], remember(secret(col, i))]);
    }
    // All six at once, as literals in the simple protocol.
    const lits = TOKENS.map((c) => `'${remember(secret(c, 99))}'`).join(', ');
    await app.query(`INSERT INTO integrations_integrationconnection (workspace_id, provider, ${TOKENS.join(', ')}) VALUES (${workspaceId}, 'all', ${lits})`);
    const direct = await db.client.query(`SELECT provider, ${TOKENS.join(', ')} FROM integrations_integrationconnection ORDER BY id`);
    expect(direct.rows).toHaveLength(7);
    for (const [i, col] of TOKENS.entries()) {
      const row = direct.rows[i];
      await expectEnvelope(row[col], secret(col, i));
      for (const other of TOKENS) if (other !== col) expect(row[other]).toBeNull();
      await expectEnvelope(direct.rows[6][col], secret(col, 99));
    }
    const via = await app.query(`SELECT i.provider, i.*, w.name FROM integrations_integrationconnection i JOIN workspace w ON w.id = i.workspace_id WHERE i.provider = 'all'`);
    for (const col of TOKENS) expect(via.rows[0][col]).toBe(secret(col, 99));
    expect(via.rows[0].name).toBe('acme');
  });

  it('webhook.secret and user_profile.totp_secret / backup_codes', async () => {
    await app.query(`INSERT INTO webhook (workspace_id, url, secret) VALUES ($1, 'https://hooks.example.com/a', $2)`, [workspaceId, remember(secret('whsec'))]);
    const codes = Array.from({ length: 8 }, (_, i) => `${i}${tag}`.slice(0, 10)).join(',');
    remember(codes);
    await app.query(`INSERT INTO user_profile (workspace_id, email, display_name, totp_secret, backup_codes) VALUES ($1, 'ada@example.com', 'Ada', $2, $3)`, [
      workspaceId,
      remember(`JBSWY3DPEHPK3PXP${tag}`.toUpperCase()),
      codes,
    ]);
    await app.query(`INSERT INTO user_profile (workspace_id, email, display_name) VALUES ($1, 'bob@example.com', 'Bob')`, [workspaceId]);
    const wh = await db.client.query('SELECT secret FROM webhook');
    await expectEnvelope(wh.rows[0].secret, secret('whsec'));
    const up = await db.client.query('SELECT email, totp_secret, backup_codes FROM user_profile ORDER BY id');
    await expectEnvelope(up.rows[0].totp_secret, `JBSWY3DPEHPK3PXP${tag}`.toUpperCase());
    await expectEnvelope(up.rows[0].backup_codes, codes);
    expect(up.rows[1]).toEqual({ email: 'bob@example.com', totp_secret: null, backup_codes: null });
    const via = await app.query(`SELECT u.email, u.totp_secret, u.backup_codes, h.secret FROM user_profile u JOIN webhook h USING (workspace_id) WHERE u.email = $1`, ['ada@example.com']);
    expect(via.rows).toEqual([{ email: 'ada@example.com', totp_secret: `JBSWY3DPEHPK3PXP${tag}`.toUpperCase(), backup_codes: codes, secret: secret('whsec') }]);
  });

  it('api_token.token_hash (searchable): stored encrypted, found again with WHERE token_hash = $1', async () => {
    const u = await app.query<{ id: string }>(`SELECT id FROM user_profile WHERE email = 'ada@example.com'`);
    await app.query(`INSERT INTO api_token (user_id, name, token_hash) VALUES ($1, 'ci', $2)`, [u.rows[0]!.id, remember(secret('tokhash'))]);
    const direct = await db.client.query('SELECT token_hash FROM api_token');
    expect(String(direct.rows[0].token_hash).startsWith(PREFIX)).toBe(true);
    expect(direct.rows[0].token_hash).not.toContain(secret('tokhash'));
    const via = await app.query(`SELECT name, token_hash FROM api_token WHERE token_hash = $1`, [secret('tokhash')]);
    expect(via.rows).toEqual([{ name: 'ci', token_hash: secret('tokhash') }]);
  });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function pgDump(url: string, args: string[] = []): Promise<Run> {
  const u = new URL(url);
  const bin = join(inject('pgClientBin'), 'pg_dump');
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['-h', u.hostname, '-p', u.port, '-U', decodeURIComponent(u.username), ...args, u.pathname.slice(1)], {
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

// pg_dump 15 refuses to dump a newer server, so this runs on the pg15 project only.
describe.runIf(inject('pgFlavour') === '15')('pg_dump (pg15 project only)', () => {
  it('a dump of the database (COPY and --inserts formats) contains none of the secrets, only envelopes', async () => {
    expect(written.size).toBeGreaterThanOrEqual(16);
    for (const args of [[], ['--inserts']]) {
      const dump = await pgDump(db.url, args);
      expect(dump.code, dump.stderr).toBe(0);
      expect(dump.stdout).toContain('integrations_integrationconnection');
      expect(dump.stdout).toContain(PREFIX);
      expect(dump.stdout).toContain('smtp.example.com'); // plaintext next to the secrets is dumped as is
      for (const s of written) expect(dump.stdout.includes(s), `dump contains a secret (${args.join(' ') || 'COPY'})`).toBe(false);
      expect(dump.stdout).not.toContain(tag);
    }
  });
});
