// What only a separate process shows: the proxy's memory under a slow reader
// (backpressure), and `workers: N` with cancels crossing workers. Both run the
// compiled proxy from dist/ (built here when missing or older than src/).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fork, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { startProxy, type ProxyServer } from '../../src/proxy/server.js';
import { createLogger } from '../../src/log.js';
import { connect } from 'node:net';
import { createHash } from 'node:crypto';
import { ensureRole, proxyConfig, proxyUrl } from './helpers.js';
import { RawClient } from './raw-client.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DIST_SERVER = join(ROOT, 'dist/src/proxy/server.js');

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/ unless it is newer than every proxy/protocol source. */
function ensureBuilt(): void {
  const src = Math.max(newest(join(ROOT, 'src/proxy')), newest(join(ROOT, 'src/protocol')));
  if (existsSync(DIST_SERVER) && statSync(DIST_SERVER).mtimeMs >= src && statSync(join(ROOT, 'dist/src/proxy/worker-main.js')).mtimeMs >= src) return;
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json')], { stdio: 'pipe' });
  } catch {
    // Type errors elsewhere in the tree still emit JS; the check below is what matters.
  }
  if (!existsSync(DIST_SERVER)) throw new Error('could not build dist/');
}

interface Child {
  proc: ChildProcess;
  port: number;
  rss: () => number;
  maxRss: () => number;
  stop: () => Promise<void>;
}

/** Runs the compiled proxy in a child process that reports its RSS every 25 ms. */
async function spawnProxy(config: object): Promise<Child> {
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-child-'));
  const script = join(dir, 'child.mjs');
  writeFileSync(
    script,
    `import { startProxy } from ${JSON.stringify(pathToFileURL(DIST_SERVER).href)};
import { createLogger } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist/src/log.js')).href)};
const p = await startProxy(JSON.parse(process.argv[2]), { logger: createLogger('silent') });
process.send({ port: p.port, rss: process.memoryUsage().rss });
setInterval(() => process.send({ rss: process.memoryUsage().rss }), 25);
process.on('message', async () => { await p.close(0); process.exit(0); });
`,
  );
  const proc = fork(script, [JSON.stringify(config)], { stdio: 'ignore' });
  let rss = 0;
  let max = 0;
  const port = await new Promise<number>((res, rej) => {
    proc.once('error', rej);
    proc.on('message', (m: { port?: number; rss: number }) => {
      rss = m.rss;
      max = Math.max(max, m.rss);
      if (m.port) res(m.port);
    });
  });
  return {
    proc,
    port,
    rss: () => rss,
    maxRss: () => max,
    stop: async () => {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.send('stop');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('proxy: backpressure (child process)', () => {
  let db: TestDb;
  let child: Child | undefined;
  beforeAll(async () => {
    ensureBuilt();
    db = await createTestDatabase('pxbp');
    await ensureRole(db.client, 'pgcmek_trust');
    child = await spawnProxy(proxyConfig());
  });
  afterAll(async () => {
    await child?.stop();
    await db?.drop();
  });

  it('a slow reader of a 1 GB result keeps the proxy RSS bounded', async () => {
    const c = await RawClient.connect(child!.port, { database: db.name });
    await new Promise((r) => setTimeout(r, 200));
    const base = child!.rss();
    // Stop reading: from here on the client takes bytes only as fast as it chooses.
    c.socket.removeAllListeners('data');
    c.socket.pause();
    c.send(serialize.query("SELECT repeat('x', 1000000) FROM generate_series(1, 1000)"));
    let read = 0;
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
      for (let b = c.socket.read(); b !== null; b = c.socket.read()) {
        read += (b as Buffer).length;
        if (read > (Date.now() - (until - 3000)) * 10_000) break; // ~10 MB/s
      }
    }
    const grown = child!.maxRss() - base;
    c.socket.destroy();
    if (process.env.PGCMEK_TEST_VERBOSE) console.log(`slow reader: read ${(read / 1e6).toFixed(1)} MB, proxy RSS grew ${(grown / 2 ** 20).toFixed(1)} MiB`);
    // Postgres would have produced the whole gigabyte in this time; the proxy
    // held at most a few socket buffers of it.
    expect(read).toBeGreaterThan(5_000_000);
    expect(read).toBeLessThan(200_000_000);
    expect(grown).toBeLessThan(96 * 1024 * 1024);
  });

  it('every byte of a large result survives a reader that stalls (the server read buffer is reused)', async () => {
    const c = await RawClient.connect(child!.port, { database: db.name });
    c.socket.pause();
    // Distinct rows: a reused buffer overwritten while a write still pointed into it would show.
    c.send(serialize.query('SELECT g, md5(g::text) || repeat(chr(65 + g % 26), 1000 + g % 997) FROM generate_series(1, 20000) g'));
    await new Promise((r) => setTimeout(r, 400)); // the proxy's writes to us back up meanwhile
    c.socket.resume();
    let rows = 0;
    for (;;) {
      const m = await c.next();
      if (m.code === 'D') {
        rows++;
        const n1 = m.body.readInt32BE(2); // int16 field count, then int32 length + bytes per field
        const g = Number(m.body.toString('latin1', 6, 6 + n1));
        const v = m.body.toString('latin1', 10 + n1);
        const want = createHash('md5').update(String(g)).digest('hex') + String.fromCharCode(65 + (g % 26)).repeat(1000 + (g % 997));
        if (g !== rows || v !== want) throw new Error(`row ${rows} arrived damaged (g=${g})`);
      }
      if (m.code === 'Z') break;
    }
    expect(rows).toBe(20000);
    c.socket.destroy();
  });
});

describe('proxy: workers', () => {
  let db: TestDb;
  let proxy: ProxyServer;
  beforeAll(async () => {
    ensureBuilt();
    db = await createTestDatabase('pxwk');
    proxy = await startProxy(proxyConfig({ workers: 2 }), { logger: createLogger('silent') });
  });
  afterAll(async () => {
    await proxy?.close(1000);
    await db?.drop();
  });

  it('spreads sessions over the workers on one port', async () => {
    const clients = Array.from({ length: 8 }, () => new pg.Client(proxyUrl(proxy, db.name)));
    await Promise.all(clients.map((c) => c.connect()));
    const workers = new Set(clients.map((c) => ((c as unknown as { processID: number }).processID >>> 24) & 0x7f));
    expect([...workers].sort()).toEqual([1, 2]);
    for (const c of clients) expect((await c.query('SELECT 1 AS x')).rows).toEqual([{ x: 1 }]);
    await Promise.all(clients.map((c) => c.end()));
  });

  it('a cancel request reaching any worker cancels the right session', async () => {
    const clients = Array.from({ length: 6 }, () => new pg.Client(proxyUrl(proxy, db.name)));
    await Promise.all(clients.map((c) => c.connect()));
    for (const c of clients) {
      const k = c as unknown as { processID: number; secretKey: number };
      const q = c.query('SELECT pg_sleep(20)').then(() => 'done', (e: { code?: string }) => e.code);
      await new Promise((r) => setTimeout(r, 150));
      const s = connect({ host: '127.0.0.1', port: proxy.port });
      await new Promise<void>((r) => s.once('connect', () => r()));
      s.end(serialize.cancel(k.processID, k.secretKey));
      expect(await q).toBe('57014');
    }
    await Promise.all(clients.map((c) => c.end()));
  });

  it('close() lets the workers finish their sessions, then stops them', async () => {
    // (Two clusters in one process with port 0 would share one socket, so this
    // closes the suite's proxy itself, last.)
    const c = new pg.Client(proxyUrl(proxy, db.name));
    await c.connect();
    c.on('error', () => {});
    const t0 = Date.now();
    await proxy.close(300);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    await expect(c.query('SELECT 1')).rejects.toThrow();
    const late = new pg.Client({ host: proxy.host, port: proxy.port, user: 'postgres', password: 'postgres', database: db.name, connectionTimeoutMillis: 1000 });
    await expect(late.connect()).rejects.toThrow();
  });
});
