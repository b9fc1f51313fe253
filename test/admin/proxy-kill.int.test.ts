// CMEK ENCRYPT EXISTING through the proxy (the production process, dist/src/cli.js
// serve), the proxy killed with SIGKILL mid-backfill, restarted with the same
// config, the command run again: nothing lost, nothing encrypted twice.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LocalKekBackend, readKekFile } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { freePort } from '../../src/dev/cluster.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { retarget, waitForPort } from '../helpers/proxy.js';
import { DEK, rows } from './helpers.js';

const BIN = join(process.cwd(), 'dist', 'src', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'pgcmek-admin-proxy-'));
const kek = join(dir, 'kek.key');
const N = Math.min(rows(10_000), 100_000);
let db: TestDb;
let config: string;
let port: number;

const env = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIGILO_CMEK_') && k !== 'PGCMEK_LOG_LEVEL'));

async function startProxy(): Promise<{ child: ChildProcess; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--config', config], { env: env(), stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  await waitForPort('127.0.0.1', port, 20_000, () => child.exitCode === null && child.signalCode === null);
  return { child, exited };
}

async function encryptedCount(): Promise<number> {
  const { rows: r } = await db.client.query(`SELECT count(*)::int AS n FROM items WHERE secret LIKE 'cmek:v1:%'`);
  return r[0].n;
}

beforeAll(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npx tsc -p tsconfig.json\` (npm test does)`);
  execFileSync(process.execPath, [BIN, 'keygen', '--out', kek], { stdio: 'ignore' });
  db = await createTestDatabase('pxk');
  await db.client.query(`CREATE TABLE items (id int PRIMARY KEY, secret text); INSERT INTO items SELECT g, 'proxy-secret-' || g FROM generate_series(1, ${N}) g`);
  const up = new URL(inject('pgUrl'));
  port = await freePort();
  config = join(dir, 'pgcmek.yaml');
  writeFileSync(
    config,
    [
      `listen: { host: 127.0.0.1, port: ${port} }`,
      `upstream: { host: ${up.hostname}, port: ${up.port}, tls: disable }`,
      `shutdown_grace_seconds: 1`,
      `kek: { backend: local, local: { path: ${kek} } }`,
      `log: { level: warn }`,
      `admin: { roles: [postgres] }`,
      `encrypted:`,
      `  public.items: [secret]`,
    ].join('\n'),
    { mode: 0o600 },
  );
});

afterAll(async () => {
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the proxy killed mid-backfill', () => {
  it('loses nothing and encrypts nothing twice once the command is run again', async () => {
    const first = await startProxy();
    const client = new pg.Client(retarget(db.url, '127.0.0.1', port));
    await client.connect();
    client.on('error', () => {});
    const running = client.query('CMEK ENCRYPT EXISTING items BATCH 20').then(
      () => 'finished',
      () => 'cut off',
    );
    let seen = 0;
    for (let i = 0; i < 2000 && seen === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      seen = await encryptedCount();
    }
    first.child.kill('SIGKILL');
    await first.exited;
    expect(await running).toBe('cut off');
    await client.end().catch(() => {});
    // An UPDATE the server was running when the proxy died commits or rolls back as a whole.
    await new Promise((r) => setTimeout(r, 200));
    const mid = await encryptedCount();
    expect(mid).toBeGreaterThan(0);
    expect(mid).toBeLessThan(N);

    const second = await startProxy();
    const again = new pg.Client(retarget(db.url, '127.0.0.1', port));
    await again.connect();
    const res = await again.query('CMEK ENCRYPT EXISTING items');
    expect(Number(res.rows[0].encrypted)).toBe(N - mid);
    // Through the proxy the values read back as plaintext.
    const through = await again.query(`SELECT id, secret FROM items ORDER BY id LIMIT 5`);
    expect(through.rows.map((r) => r.secret)).toEqual([1, 2, 3, 4, 5].map((i) => `proxy-secret-${i}`));
    await again.end();
    second.child.kill('SIGTERM');
    await second.exited;

    const keyring = new Keyring({ primary: LocalKekBackend.fromKeys([readKekFile(kek)]), readable: [], dek: DEK });
    const { rows: got } = await db.client.query(`SELECT id, secret FROM items`);
    for (const r of got) {
      expect(Keyring.isEncrypted(r.secret)).toBe(true);
      expect(await keyring.decrypt(r.secret)).toBe(`proxy-secret-${r.id}`);
    }
    await keyring.close();
  });
});
