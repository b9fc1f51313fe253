// `pgcmek serve` as a child process (the build in dist/), for the operations tests
// whose signals must reach a real process (SIGHUP reloads, cluster workers), and
// the database and KEK they share.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { expect } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';

export const CLI = join(process.cwd(), 'dist', 'src', 'cli.js');

export interface LogLine {
  msg: string;
  level: number;
  [k: string]: unknown;
}

export interface ServeProcess {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  out(): string;
  /** The JSON log lines written so far. */
  logs(): LogLine[];
  /** Sends SIGHUP and waits for the reload's next outcome line (reloaded or rejected). */
  hup(): Promise<LogLine>;
  /** SIGKILL, if it still runs. */
  kill(): Promise<void>;
}

/** Starts `serve --config file` without the VIGILO_CMEK_* and PGCMEK_LOG_LEVEL of the test run; resolves once it is ready. */
export async function spawnServe(file: string): Promise<ServeProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -p tsconfig.json)`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIGILO_CMEK_') && k !== 'PGCMEK_LOG_LEVEL'));
  const child = spawn(process.execPath, [CLI, 'serve', '--config', file], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!out.includes('"pgcmek ready"')) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`serve did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const logs = (): LogLine[] =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  const outcome = (l: LogLine): boolean => l.msg.startsWith('config reloaded:') || l.msg.startsWith('config reloaded, except in some workers') || l.msg.startsWith('config reload rejected');
  return {
    child,
    out: () => out,
    logs,
    async hup() {
      const before = logs().filter(outcome).length;
      child.kill('SIGHUP');
      await expect.poll(() => logs().filter(outcome).length, { timeout: 20_000 }).toBe(before + 1);
      return logs().filter(outcome).at(-1)!;
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** What the process tests stand on: tables a and b (id int, v text) in a fresh database, a local KEK, a config path. */
export interface AbFixture {
  db: TestDb;
  dir: string;
  /** Where the test writes its config. */
  file: string;
  kek: string;
  /** The value of row `id` as Postgres stores it (read directly, not through the proxy). */
  stored(table: 'a' | 'b', id: number): Promise<string>;
  /** Ends the sessions, kills serve if it still runs, drops the database and the directory. */
  close(clients: pg.Client[], serve: ServeProcess | undefined): Promise<void>;
}

export async function abFixture(name: string): Promise<AbFixture> {
  const dir = mkdtempSync(join(tmpdir(), `pgcmek-${name}-`));
  const kek = join(dir, 'kek.key');
  const db = await createTestDatabase(name);
  await db.client.query('CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text)');
  execFileSync(process.execPath, [CLI, 'keygen', '--out', kek], { stdio: 'ignore' });
  return {
    db,
    dir,
    file: join(dir, 'pgcmek.yaml'),
    kek,
    async stored(table, id) {
      return (await db.client.query<{ v: string }>(`SELECT v FROM ${table} WHERE id = $1`, [id])).rows[0]!.v;
    },
    async close(clients, serve) {
      for (const c of clients) await c.end().catch(() => {});
      await serve?.kill();
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
