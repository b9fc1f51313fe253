// `npm start` = `pgcmek demo`, as a real process: its own embedded Postgres 18
// (data in --dir), the demo schema, a KEK (mode 600), and the proxy WITH
// encryption. psql through the proxy sees plaintext, psql straight to Postgres
// sees an envelope; SIGINT (Ctrl-C) stops everything and leaves nothing running;
// a second run finds the data and the KEK again. Runs once (it does not use the
// suite's server). Needs a build (`npm test` builds first).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';

const CLI = join(process.cwd(), 'dist', 'src', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'pgcmek-demo-'));
chmodSync(dir, 0o755); // as root, Postgres runs as the postgres user and must reach DIR/pg
const state = join(dir, 'state');
const children: ChildProcess[] = [];

interface Demo {
  child: ChildProcess;
  port: number;
  postgresPort: number;
  dataDir: string;
  stderr: () => string;
  stdout: () => string;
  exited: Promise<number | string>;
}

async function startDemo(): Promise<Demo> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -p tsconfig.json)`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIGILO_CMEK_') && k !== 'PGCMEK_LOG_LEVEL'));
  const child = spawn(process.execPath, [CLI, 'demo', '--dir', state, '--port', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string>((r) => child.once('exit', (code, sig) => r(code ?? sig ?? -1)));
  const ready = await new Promise<{ port: number; postgresPort: number; dataDir: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo not ready after 90 s:\n${out}\n${err}`)), 90_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('"pgcmek demo ready"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as { port: number; postgresPort: number; dataDir: string });
      }
    });
    void exited.then((code) => reject(new Error(`demo exited (${code}):\n${out}\n${err}`)));
  });
  // The banner is written right after the ready line.
  for (let i = 0; i < 100 && !err.includes('try, through pgcmek'); i++) await new Promise((r) => setTimeout(r, 20));
  return { child, ...ready, stderr: () => err, stdout: () => out, exited };
}

function psql(port: number, sql: string): string {
  const bin = join(inject('pgClientBin'), 'psql');
  return execFileSync(bin, ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql, `postgres://postgres:postgres@127.0.0.1:${port}/demo`], {
    encoding: 'utf8',
    timeout: 30_000,
  }).trim();
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Processes whose command line names the data directory (the postmaster: `postgres -D <dataDir>`). */
function processesOf(dataDir: string): string[] {
  return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(dataDir));
}

async function stop(d: Demo): Promise<number | string> {
  d.child.kill('SIGINT');
  const t = setTimeout(() => d.child.kill('SIGKILL'), 30_000);
  const code = await d.exited;
  clearTimeout(t);
  return code;
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  // A demo killed above leaves its postmaster behind: stop it by its pid file.
  const pidFile = join(state, 'pg', 'data', 'postmaster.pid');
  if (existsSync(pidFile)) {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGINT');
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe.runIf(inject('pgFlavour') !== '15')('pgcmek demo (npm start)', () => {
  const secret = `whsec_${process.pid}_${Date.now()}`;

  it('encrypts through the proxy: plaintext via pgcmek, an envelope straight from Postgres; SIGINT stops everything', async () => {
    const d = await startDemo();
    // It tells you what to run next: one psql through pgcmek, one straight to Postgres.
    expect(d.stderr()).toContain(`127.0.0.1:${d.port}/demo`);
    expect(d.stderr()).toContain(`127.0.0.1:${d.postgresPort}/demo`);
    expect(statSync(join(state, 'kek.key')).mode & 0o777).toBe(0o600);
    expect(processesOf(d.dataDir).length).toBeGreaterThan(0);

    psql(d.port, "INSERT INTO workspace (name) VALUES ('acme')");
    psql(d.port, `INSERT INTO webhook (workspace_id, url, secret) VALUES ((SELECT max(id) FROM workspace), 'https://example.com/hook', '${secret}')`);
    expect(psql(d.port, 'SELECT secret FROM webhook ORDER BY id DESC LIMIT 1')).toBe(secret);
    const stored = psql(d.postgresPort, 'SELECT secret FROM webhook ORDER BY id DESC LIMIT 1');
    expect(stored.startsWith('cmek:v1:')).toBe(true);
    expect(stored).not.toContain(secret);

    expect(await stop(d)).toBe(0);
    expect(d.stdout()).toContain('"pgcmek demo stopped"');
    expect(processesOf(d.dataDir)).toEqual([]);
    expect(await listening(d.port)).toBe(false);
    expect(await listening(d.postgresPort)).toBe(false);
  });

  it('a second run reuses the data and the KEK', async () => {
    const kek = readFileSync(join(state, 'kek.key'));
    const d = await startDemo();
    try {
      expect(readFileSync(join(state, 'kek.key')).equals(kek)).toBe(true);
      expect(psql(d.port, 'SELECT secret FROM webhook ORDER BY id DESC LIMIT 1')).toBe(secret);
    } finally {
      expect(await stop(d)).toBe(0);
    }
    expect(processesOf(d.dataDir)).toEqual([]);
  });
});
