// The operations endpoint of `pgcmek serve` (config `metrics:`): /healthz,
// /readyz (Postgres reachable, KEKs loaded) and a Prometheus scrape whose numbers
// match what the test did through the proxy — sessions, bytes, queries, values
// encrypted/decrypted per column, decrypt failures and refusals by reason, DEK
// cache, admin commands, the sampled processing-time histogram — plus the remote
// KEK call counters with a (fake) Vault.
import { createServer, type AddressInfo, type Server } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/crypto/keyring.js';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import { probeUpstream } from '../../src/metrics/readiness.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { retarget } from '../helpers/proxy.js';
import { FakeVault } from '../kek/fake-vault.js';
import { transitRules } from '../kek/helpers.js';
import { httpGet, sample, serveInProcess, type Served } from './helpers.js';

const COLUMN = { column: 'public.secrets.token' };
const ENCRYPTED = `encrypted:\n  public.secrets: [token]\n`;

let db: TestDb;
let served: Served;
let metricsText: string;
/** An envelope under a KEK the proxy does not hold. */
let foreign: string;

async function scrape(): Promise<string> {
  const r = await httpGet(served.metrics!, '/metrics');
  expect(r.status).toBe(200);
  expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
  return r.body;
}

beforeAll(async () => {
  db = await createTestDatabase('ops_metrics');
  await db.client.query('CREATE TABLE secrets (id serial PRIMARY KEY, name text, token text)');
  const other = mkdtempSync(join(tmpdir(), 'pgcmek-foreign-'));
  generateKekFile(join(other, 'kek.key'));
  const k = await Keyring.fromConfig({
    backend: 'local',
    local: { path: join(other, 'kek.key'), previous: [] },
    dek: { maxAgeSeconds: 0, maxUses: 1, cacheSize: 0, cacheTtlSeconds: 0 },
  });
  foreign = await k.encrypt('under another KEK');
  await k.close();
  rmSync(other, { recursive: true, force: true });
  served = await serveInProcess(`${ENCRYPTED}metrics: { host: 127.0.0.1, port: 0 }\nlog: { level: info }\n`);
});

afterAll(async () => {
  await served?.stop();
  await db?.drop();
});

describe('health endpoints', () => {
  it('/healthz answers 200 while the process serves', async () => {
    const r = await httpGet(served.metrics!, '/healthz');
    expect(r).toMatchObject({ status: 200, body: 'ok\n' });
  });

  it('/readyz: 200 with Postgres reachable and the KEKs loaded', async () => {
    const r = await httpGet(served.metrics!, '/readyz');
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body) as { ready: boolean; checks: { upstream: { ok: boolean }; kek: { ok: boolean; reason: string } } };
    expect(body.ready).toBe(true);
    expect(body.checks.upstream.ok).toBe(true);
    expect(body.checks.kek).toMatchObject({ ok: true, reason: expect.stringMatching(/^primary KEK local:[0-9a-f]{16}$/) });
  });

  it('unknown paths are 404, other methods 405', async () => {
    expect((await httpGet(served.metrics!, '/nope')).status).toBe(404);
    expect((await httpGet(served.metrics!, '/metrics', 'POST')).status).toBe(405);
  });
});

describe('the upstream probe behind /readyz', () => {
  it('fails on a closed port, and on a port that accepts but does not speak Postgres', async () => {
    const closed = await probeUpstream({ host: '127.0.0.1', port: 1, tls: 'disable' }, 1000);
    expect(closed.ok).toBe(false);
    expect(closed.reason).toMatch(/could not connect to server 127\.0\.0\.1:1: ECONNREFUSED/);
    // A server that answers the SSLRequest with something no Postgres sends.
    const liar: Server = createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
    try {
      const r = await probeUpstream({ host: '127.0.0.1', port: (liar.address() as AddressInfo).port, tls: 'disable' }, 1000);
      expect(r.ok).toBe(false);
    } finally {
      liar.close();
    }
  });

  it('a serve whose upstream is down is not ready (503, with the reason)', async () => {
    const down = await serveInProcess(`upstream: { host: 127.0.0.1, port: 1, tls: disable }\nmetrics: { host: 127.0.0.1, port: 0 }\nlog: { level: info }\n`);
    try {
      const r = await httpGet(down.metrics!, '/readyz');
      expect(r.status).toBe(503);
      const body = JSON.parse(r.body) as { ready: boolean; checks: { upstream: { ok: boolean; reason: string } } };
      expect(body.ready).toBe(false);
      expect(body.checks.upstream.reason).toMatch(/ECONNREFUSED/);
      expect((await httpGet(down.metrics!, '/healthz')).status).toBe(200);
    } finally {
      await down.stop();
    }
  });
});

describe('a Prometheus scrape', () => {
  beforeAll(async () => {
    const app = new pg.Client(retarget(db.url, '127.0.0.1', served.port));
    await app.connect();
    // 4 values written (3 bind parameters, 1 literal), 1 legacy plaintext row written directly.
    for (const [i, t] of ['tok-a', 'tok-b', 'tok-c'].entries()) await app.query('INSERT INTO secrets (name, token) VALUES ($1, $2)', [`n${i}`, t]);
    await app.query(`INSERT INTO secrets (name, token) VALUES ('lit', 'tok-literal')`);
    await db.client.query(`INSERT INTO secrets (name, token) VALUES ('legacy', 'plain-legacy')`);
    // 40 reads of the 4 envelopes (+ the legacy value, passed through: not counted).
    for (let i = 0; i < 10; i++) expect((await app.query(`SELECT token FROM secrets WHERE name <> 'bad' ORDER BY id`)).rowCount).toBe(5);
    // A refusal: LIKE cannot work on ciphertext.
    await expect(app.query(`SELECT id FROM secrets WHERE token LIKE 'tok%'`)).rejects.toMatchObject({ code: '0A000' });
    // A decrypt failure: an envelope under a KEK this proxy does not hold.
    await db.client.query(`INSERT INTO secrets (name, token) VALUES ('bad', $1)`, [foreign]);
    await expect(app.query(`SELECT token FROM secrets WHERE name = 'bad'`)).rejects.toMatchObject({ message: expect.stringMatching(/CMEKDecryptionError/) });
    // An admin command, in the simple protocol.
    await app.query('CMEK STATUS public.secrets.token');
    await app.end();
    metricsText = await scrape();
  });

  it('counts sessions and client bytes', () => {
    expect(sample(metricsText, 'pgcmek_sessions_total')).toBeGreaterThanOrEqual(1);
    expect(sample(metricsText, 'pgcmek_client_received_bytes_total')).toBeGreaterThan(500);
    expect(sample(metricsText, 'pgcmek_client_sent_bytes_total')).toBeGreaterThan(1000);
  });

  it('sessions_open follows open sessions', async () => {
    const c = new pg.Client(retarget(db.url, '127.0.0.1', served.port));
    await c.connect();
    await c.query('SELECT 1');
    expect(sample(await scrape(), 'pgcmek_sessions_open')).toBe(1);
    await c.end();
    await expect.poll(async () => sample(await scrape(), 'pgcmek_sessions_open')).toBe(0);
  });

  it('counts statements by protocol', () => {
    // pg sends parameterised queries as Parse/Bind/Execute, the others as Query.
    expect(sample(metricsText, 'pgcmek_queries_total', { protocol: 'extended' })).toBeGreaterThanOrEqual(3);
    expect(sample(metricsText, 'pgcmek_queries_total', { protocol: 'simple' })).toBeGreaterThanOrEqual(13);
  });

  it('counts values encrypted and decrypted per column (legacy plaintext is not a decryption)', () => {
    expect(sample(metricsText, 'pgcmek_values_encrypted_total', COLUMN)).toBe(4);
    expect(sample(metricsText, 'pgcmek_values_decrypted_total', COLUMN)).toBe(40);
  });

  it('counts decrypt failures and refusals by reason', () => {
    expect(sample(metricsText, 'pgcmek_decrypt_failures_total', { reason: 'unknown_kek' })).toBe(1);
    expect(sample(metricsText, 'pgcmek_refusals_total', { reason: 'unsupported_operator', sqlstate: '0A000' })).toBe(1);
  });

  it('reads the keyring: DEKs generated, cache hits', () => {
    expect(sample(metricsText, 'pgcmek_dek_generated_total')).toBeGreaterThanOrEqual(1);
    expect(sample(metricsText, 'pgcmek_dek_cache_hits_total')).toBeGreaterThanOrEqual(0);
    expect(sample(metricsText, 'pgcmek_dek_cache_entries')).toBeGreaterThanOrEqual(0);
  });

  it('counts admin commands and their row progress', () => {
    expect(sample(metricsText, 'pgcmek_admin_commands_total', { command: 'status', outcome: 'ok' })).toBe(1);
    expect(sample(metricsText, 'pgcmek_admin_commands_running', { command: 'status' })).toBe(0);
  });

  it('samples the processing time of frames into a histogram', () => {
    const n = (sample(metricsText, 'pgcmek_frame_processing_seconds_count', { direction: 'client' }) ?? 0) + (sample(metricsText, 'pgcmek_frame_processing_seconds_count', { direction: 'server' }) ?? 0);
    expect(n).toBeGreaterThan(0);
    expect(sample(metricsText, 'pgcmek_frame_processing_seconds_sum', { direction: 'server' })).toBeLessThan(5);
  });

  it('has the build info, the config generation and the process metrics', () => {
    expect(metricsText).toMatch(/^pgcmek_build_info\{version="\d+\.\d+\.\d+"\} 1$/m);
    expect(sample(metricsText, 'pgcmek_config_generation')).toBe(1);
    expect(sample(metricsText, 'process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('never shows a value: no plaintext, no envelope in the exposition', () => {
    for (const s of ['tok-a', 'tok-literal', 'plain-legacy', 'cmek:v1:']) expect(metricsText).not.toContain(s);
  });

  it('an admin command progress report lands in rows_done/rows_total', async () => {
    const app = new pg.Client(retarget(db.url, '127.0.0.1', served.port));
    await app.connect();
    await db.client.query(`DELETE FROM secrets WHERE name = 'bad'`);
    await app.query('CMEK ENCRYPT EXISTING public.secrets.token');
    await app.end();
    const text = await scrape();
    expect(sample(text, 'pgcmek_admin_commands_total', { command: 'encrypt', outcome: 'ok' })).toBe(1);
    expect(sample(text, 'pgcmek_admin_rows_total', COLUMN)).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'pgcmek_admin_rows_done', COLUMN)).toBe(sample(text, 'pgcmek_admin_rows_total', COLUMN));
  });
});

describe('with a remote KEK backend', () => {
  it('counts the calls made to it', async () => {
    const vault = await new FakeVault().start();
    vault.createKey('pgcmek');
    const token = vault.createToken({ rules: transitRules() });
    const s = await serveInProcess(
      `${ENCRYPTED}kek:\n  backend: vault\n  vault: { addr: "${vault.url}", key_name: pgcmek }\n  dek: { max_uses: 1 }\nmetrics: { host: 127.0.0.1, port: 0 }\nlog: { level: info }\n`,
      { VIGILO_CMEK_VAULT_TOKEN: token },
    );
    try {
      const app = new pg.Client(retarget(db.url, '127.0.0.1', s.port));
      await app.connect();
      await app.query('INSERT INTO secrets (name, token) VALUES ($1, $2), ($3, $4)', ['v1', 'via-vault-1', 'v2', 'via-vault-2']);
      await app.end();
      const text = (await httpGet(s.metrics!, '/metrics')).body;
      const calls = text.split('\n').filter((l) => l.startsWith('pgcmek_kek_remote_calls_total{backend="vault"'));
      expect(calls.length).toBeGreaterThan(0);
      expect(calls.map((l) => Number(l.split(' ').at(-1))).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(2);
      expect(text).not.toContain(token);
    } finally {
      await s.stop();
      await vault.stop();
    }
  });
});
