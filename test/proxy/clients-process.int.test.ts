// The production entry point as a real process (`pgcmek serve --config`): clients
// through it, its memory with 200 sessions, and what SIGTERM / SIGINT do to open
// sessions. (test/cli covers serve's signal wiring with a stand-in listener; this
// file runs the real one.)
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { pgbenchInit, runPgbench } from '../../bench/lib/pgbench.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { spawnProxyProcess, type ProxyProcess } from '../helpers/proxy.js';

const run = promisify(execFile);
let db: TestDb;

beforeAll(async () => {
  db = await createTestDatabase('clients_process');
});
afterAll(async () => {
  await db?.drop();
});

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
}

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client(url);
  c.on('error', () => {}); // the tests below shut the proxy down under open clients
  await c.connect();
  return c;
}

/** Whether a new TCP connection to host:port is accepted. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('pgcmek serve as a process', () => {
  let proc: ProxyProcess;
  beforeAll(async () => {
    proc = await spawnProxyProcess();
  });
  afterAll(async () => {
    await proc?.stop('SIGINT');
  });

  it('serves node-postgres, psql and pgbench', async () => {
    const c = await connect(proc.via(db.url));
    try {
      const r = await c.query('SELECT $1::text AS t, current_database() AS d', ['through the CLI']);
      expect(r.rows).toEqual([{ t: 'through the CLI', d: db.name }]);
    } finally {
      await c.end();
    }
    const psql = await run(join(inject('pgClientBin'), 'psql'), ['-X', '-A', '-t', '-h', proc.host, '-p', String(proc.port), '-U', 'postgres', '-d', db.name, '-c', 'SELECT 40 + 2'], {
      env: { ...process.env, PGPASSWORD: 'postgres' },
    });
    expect(psql.stdout).toBe('42\n');
    const target = { host: proc.host, port: proc.port, user: 'postgres', password: 'postgres', database: db.name };
    await pgbenchInit(join(inject('pgClientBin'), 'pgbench'), target, 1);
    const bench = await runPgbench(join(inject('pgClientBin'), 'pgbench'), target, { mode: 'extended', clients: 2, transactions: 200 });
    expect({ exit: bench.exit, transactions: bench.transactions, failed: bench.failed }).toEqual({ exit: 0, transactions: 400, failed: 0 });
  });

  it('200 sessions: memory stays bounded', async () => {
    const idle = rssMiB(proc.child.pid!);
    const clients = await Promise.all(Array.from({ length: 200 }, () => connect(proc.via(db.url))));
    let busy = 0;
    try {
      await Promise.all(clients.map((c, i) => c.query('SELECT g, repeat($1, 100) FROM generate_series(1, 500) g', [String(i % 10)])));
      busy = rssMiB(proc.child.pid!);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    // Measured on the 2-core dev machine (Node 20): ~80 MiB idle, ~97 MiB with 200 sessions.
    expect(busy, `idle ${idle.toFixed(1)} MiB, busy ${busy.toFixed(1)} MiB`).toBeLessThan(idle + 200);
    expect(busy).toBeLessThan(400);
  });
});

describe('pgcmek serve backpressure', () => {
  let proc: ProxyProcess;
  beforeAll(async () => {
    proc = await spawnProxyProcess();
  });
  afterAll(async () => {
    await proc?.stop('SIGINT');
  });

  /** Peak RSS (MiB) of the proxy over `ms`, sampled every 250 ms. */
  async function peakRss(ms: number): Promise<number> {
    let peak = 0;
    for (let t = 0; t < ms; t += 250) {
      await new Promise((r) => setTimeout(r, 250));
      peak = Math.max(peak, rssMiB(proc.child.pid!));
    }
    return peak;
  }

  it('a client that stops reading a 250 MB result does not make the proxy buffer it', async () => {
    const c = await connect(proc.via(db.url));
    try {
      const before = rssMiB(proc.child.pid!);
      const stream = (c as unknown as { connection: { stream: import('node:net').Socket } }).connection.stream;
      const q = c.query(`SELECT repeat('x', 2000) FROM generate_series(1, 125000)`);
      setTimeout(() => stream.pause(), 20);
      const peak = await peakRss(2_000);
      stream.resume();
      expect((await q).rowCount).toBe(125_000);
      expect(peak - before, `RSS ${before.toFixed(0)} -> ${peak.toFixed(0)} MiB while the client was not reading`).toBeLessThan(64);
    } finally {
      await c.end();
    }
  });

  it('a server that stops reading (blocked on a lock) does not make the proxy buffer 100 MB of pipelined writes', async () => {
    await db.client.query('CREATE TABLE bp_in(v text)');
    const locker = await connect(db.url);
    const c = new pg.Client({ connectionString: proc.via(db.url), pipeline: true });
    c.on('error', () => {});
    await c.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE bp_in');
      const before = rssMiB(proc.child.pid!);
      const payload = 'y'.repeat(10_000);
      const inserts = Array.from({ length: 10_000 }, () => c.query('INSERT INTO bp_in VALUES ($1)', [payload]));
      const peak = await peakRss(2_000);
      await locker.query('COMMIT');
      await Promise.all(inserts);
      expect(peak - before, `RSS ${before.toFixed(0)} -> ${peak.toFixed(0)} MiB while the server was blocked`).toBeLessThan(64);
      const { rows } = await db.client.query('SELECT count(*)::int AS n FROM bp_in');
      expect(rows[0].n).toBe(10_000);
    } finally {
      await c.end();
      await locker.end();
      await db.client.query('DROP TABLE bp_in');
    }
  });
});

describe('pgcmek serve shutdown', () => {
  it('SIGTERM: refuses new connections, lets open sessions work for shutdown_grace_seconds, then closes them; exit 0', async () => {
    const proc = await spawnProxyProcess({ shutdownGraceSeconds: 2 });
    const c = await connect(proc.via(db.url));
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const closed = new Promise<number>((resolve) => c.once('end', () => resolve(Date.now())));
    const signalled = Date.now();
    proc.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    expect(await accepts(proc.host, proc.port)).toBe(false);
    // Still inside the grace period: the open session works.
    const r = await c.query('SELECT $1::int AS still', [1]);
    expect(r.rows).toEqual([{ still: 1 }]);
    const closedAt = await closed;
    expect(closedAt - signalled).toBeGreaterThanOrEqual(1_500);
    expect(closedAt - signalled).toBeLessThan(6_000);
    expect(await proc.exited).toBe(0);
    // Its server connection is gone too.
    const left = await db.client.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid]);
    expect(left.rows[0].n).toBe(0);
  });

  it('SIGTERM with no open session exits at once', async () => {
    const proc = await spawnProxyProcess({ shutdownGraceSeconds: 30 });
    const c = await connect(proc.via(db.url));
    await c.end();
    await new Promise((r) => setTimeout(r, 100));
    const t = Date.now();
    expect(await proc.stop('SIGTERM')).toBe(0);
    expect(Date.now() - t).toBeLessThan(3_000);
  });

  it('SIGINT: closes open sessions at once (even one in a long query); exit 0', async () => {
    const proc = await spawnProxyProcess({ shutdownGraceSeconds: 30 });
    const c = await connect(proc.via(db.url));
    const sleeping = c.query('SELECT pg_sleep(30)').then(
      () => 'finished',
      (e: Error) => `failed: ${e.message}`,
    );
    await new Promise((r) => setTimeout(r, 200));
    const t = Date.now();
    expect(await proc.stop('SIGINT')).toBe(0);
    expect(Date.now() - t).toBeLessThan(3_000);
    expect(await sleeping).toMatch(/^failed: /);
  });
});
