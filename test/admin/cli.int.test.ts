// The admin CLI as a process (the built dist/src/cli.js; `npm test` builds
// first): killed mid-backfill (SIGKILL) then re-run, nothing lost or encrypted
// twice; SIGINT stops cleanly after the current batch; rotate-kek with
// --old-path/--new-path; exit codes.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKekBackend, readKekFile } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { DEK, rows } from './helpers.js';

const BIN = join(process.cwd(), 'dist', 'src', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'pgcmek-admin-cli-'));
// Enough rows to catch the process mid-run; capped so a scaled-up suite stays within the test timeout.
const N = Math.min(rows(10_000), 100_000);
let db: TestDb;
let cfg: string;
const kek1 = join(dir, 'k1.key');
const kek2 = join(dir, 'k2.key');

const env = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIGILO_CMEK_') && !k.startsWith('PG') && k !== 'DATABASE_URL'));

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: env(), timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ringOf(...files: string[]): Keyring {
  return new Keyring({ primary: LocalKekBackend.fromKeys(files.map(readKekFile)), readable: [], dek: DEK });
}

async function counts(): Promise<{ enc: number; total: number }> {
  const { rows: r } = await db.client.query(`SELECT count(*) FILTER (WHERE secret LIKE 'cmek:v1:%')::int AS enc, count(*)::int AS total FROM items`);
  return r[0];
}

async function checkAllOnce(ring: Keyring): Promise<void> {
  const { rows: got } = await db.client.query(`SELECT id, secret FROM items`);
  expect(got.length).toBe(N);
  for (const r of got) {
    expect(Keyring.isEncrypted(r.secret)).toBe(true);
    expect(await ring.decrypt(r.secret)).toBe(`item-secret-${r.id}`);
  }
}

beforeAll(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npx tsc -p tsconfig.json\` (npm test does)`);
  execFileSync(process.execPath, [BIN, 'keygen', '--out', kek1], { stdio: 'ignore' });
  execFileSync(process.execPath, [BIN, 'keygen', '--out', kek2], { stdio: 'ignore' });
  db = await createTestDatabase('cli');
  await db.client.query(`CREATE TABLE items (id int PRIMARY KEY, secret text); INSERT INTO items SELECT g, 'item-secret-' || g FROM generate_series(1, ${N}) g`);
  cfg = join(dir, 'pgcmek.yaml');
  writeFileSync(cfg, `kek: { backend: local, local: { path: ${kek1} } }\nencrypted:\n  public.items: [secret]\n`);
});

afterAll(async () => {
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('pgcmek backfill / rotate-kek / status / verify (process)', () => {
  it('killed mid-backfill (SIGKILL), re-run: nothing lost, nothing encrypted twice', async () => {
    const child = spawn(process.execPath, [BIN, 'backfill', '--config', cfg, '--database-url', db.url, '--batch', '20'], { env: env(), stdio: 'ignore' });
    const exited = new Promise<number | string>((r) => child.once('exit', (c, s) => r(c ?? s ?? -1)));
    let seen = 0;
    for (let i = 0; i < 1000 && seen === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      seen = (await counts()).enc;
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const mid = await counts();
    expect(mid.enc).toBeGreaterThan(0);
    expect(mid.enc).toBeLessThan(N);

    const again = cli(['backfill', '--config', cfg, '--database-url', db.url, '--json']);
    expect(again.code, again.stderr).toBe(0);
    const [res] = JSON.parse(again.stdout) as Record<string, string>[];
    expect(Number(res.encrypted)).toBe(N - mid.enc);
    const ring = ringOf(kek1);
    await checkAllOnce(ring);
    await ring.close();
  });

  it('status, rotate-kek --old-path/--new-path, verify', async () => {
    const st = cli(['status', '--config', cfg, '-d', db.url]);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(/public\.items \| secret \| +\d+ \| +\d+ \| +0 \| +0 \| +0 \| local:[0-9a-f]{16} \(primary\): \d+/);
    expect(st.stderr).toMatch(/"audit":"admin","command":"CMEK STATUS"/);

    const rot = cli(['rotate-kek', '--config', cfg, '-d', db.url, '--old-path', kek1, '--new-path', kek2, '--json']);
    expect(rot.code, rot.stderr).toBe(0);
    expect(JSON.parse(rot.stdout)[0]).toMatchObject({ rows_to_rewrap: String(N), rewrapped: String(N), failed: '0' });
    const ring2 = ringOf(kek2);
    await checkAllOnce(ring2);
    await ring2.close();

    const rotated = join(dir, 'rotated.yaml');
    writeFileSync(rotated, `kek: { backend: local, local: { path: ${kek2}, previous: [${kek1}] } }\nencrypted:\n  public.items: [secret]\n`);
    const v = cli(['verify', '--config', rotated, '-d', db.url, 'items.secret', '--json']);
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)[0]).toMatchObject({ values: String(N), ok: String(N), failed: '0' });
    // A verify under a configuration missing the KEK fails with exit code 1 and names the rows.
    const v1 = cli(['verify', '--config', cfg, '-d', db.url, '--json', '-q']);
    expect(v1.code).toBe(1);
    expect(v1.stderr).toMatch(/NOTICE: public\.items\.secret: \d+ row\(s\) failed: id=1 \(unknown_kek/);
  });

  it('SIGINT stops after the current batch, reports, and exits 1; the re-run finishes', async () => {
    const rotated = join(dir, 'rotated.yaml');
    const dec = spawn(process.execPath, [BIN, 'decrypt-existing', '--config', rotated, '-d', db.url, '--batch', '20', '--confirm', 'items'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    dec.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    dec.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | string>((r) => dec.once('exit', (c, s) => r(c ?? s ?? -1)));
    for (let i = 0; i < 1000; i++) {
      await new Promise((r) => setTimeout(r, 10));
      if ((await counts()).enc < N) break;
    }
    dec.kill('SIGINT');
    expect(await exited).toBe(1);
    expect(stderr).toMatch(/stopping after the current batch/);
    expect(stderr).toMatch(/interrupted; what was written is kept/);
    expect(stdout).toMatch(/public\.items \| secret \| id/);
    const left = (await counts()).enc;
    expect(left).toBeGreaterThan(0);
    const fin = cli(['decrypt-existing', '--config', rotated, '-d', db.url, '--confirm', 'items', '--json']);
    expect(fin.code, fin.stderr).toBe(0);
    expect(JSON.parse(fin.stdout)[0]).toMatchObject({ decrypted: String(left) });
    const { rows: got } = await db.client.query(`SELECT id, secret FROM items`);
    for (const r of got) expect(r.secret).toBe(`item-secret-${r.id}`);
  });

  it('backfills a searchable column with its deterministic key (equal plaintexts, equal values)', async () => {
    await db.client.query(`CREATE TABLE stok (id int PRIMARY KEY, h text); INSERT INTO stok SELECT g, 'v' || (g % 10) FROM generate_series(1, 100) g`);
    const scfg = join(dir, 'searchable.yaml');
    writeFileSync(scfg, `kek: { backend: local, local: { path: ${kek2}, previous: [${kek1}] } }\nencrypted:\n  public.stok:\n    h: { searchable: true }\n`);
    const r = cli(['backfill', '--config', scfg, '-d', db.url, '--json', '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)[0]).toMatchObject({ encrypted: '100' });
    const { rows: got } = await db.client.query(`SELECT id, h FROM stok`);
    const byPlain = new Map<string, Set<string>>();
    const ring = ringOf(kek2, kek1);
    for (const x of got) {
      const p = await ring.decrypt(x.h);
      expect(p).toBe(`v${x.id % 10}`);
      byPlain.set(p, (byPlain.get(p) ?? new Set()).add(x.h));
    }
    await ring.close();
    expect([...byPlain.values()].map((s) => s.size)).toEqual(Array(10).fill(1));
  });

  it('usage errors exit 2', () => {
    expect(cli(['backfill', '--batch', 'x', '-c', cfg]).code).toBe(2);
    expect(cli(['decrypt-existing', '-c', cfg, 'items']).stderr).toMatch(/--confirm/);
    expect(cli(['decrypt-existing', '-c', cfg, 'items']).code).toBe(2);
    expect(cli(['rotate-kek', '-c', cfg, '--old-path', kek1]).code).toBe(2);
    expect(cli(['status', '--bogus']).code).toBe(2);
    expect(cli(['status', 'a.b.c.d']).code).toBe(2);
    const h = cli(['rotate-kek', '--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/--old-path/);
  });
});
