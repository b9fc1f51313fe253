// Failure behaviour: unreachable server, malformed and oversized client frames,
// either side closing, and graceful shutdown.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import type { ProxyServer } from '../../src/proxy/server.js';
import { startProxy } from '../../src/proxy/server.js';
import { freePort } from '../../src/dev/cluster.js';
import { ensureRole, proxyConfig, proxyUrl, startTestProxy, until, capturingLogger } from './helpers.js';
import { RawClient, errorOf } from './raw-client.js';

describe('proxy: failures', () => {
  let db: TestDb;
  let proxy: ProxyServer;
  let logLines: string[] = [];
  beforeAll(async () => {
    db = await createTestDatabase('pxfail');
    await ensureRole(db.client, 'pgcmek_trust');
    const log = capturingLogger('info');
    logLines = log.lines;
    proxy = await startProxy(proxyConfig(), { logger: log.logger, limits: { maxClientFrame: 1 << 20 } });
  });
  afterAll(async () => {
    await proxy?.close(0);
    await db?.drop();
  });

  it('server unreachable: the client gets FATAL 08001 with the reason, not a hang', async () => {
    const dead = await freePort();
    const p = await startTestProxy({ upstream: { host: '127.0.0.1', port: dead, tls: 'disable' } });
    try {
      const c = new pg.Client({ ...pgOpts(p, db.name), connectionTimeoutMillis: 5000 });
      const t0 = Date.now();
      await expect(c.connect()).rejects.toMatchObject({ code: '08001', message: expect.stringMatching(/ECONNREFUSED/) });
      expect(Date.now() - t0).toBeLessThan(3000);
    } finally {
      await p.close(0);
    }
  });

  it('an oversized frame closes that session with FATAL 08P01 and a log line; other sessions carry on', async () => {
    const other = new pg.Client(proxyUrl(proxy, db.name));
    await other.connect();
    const busy = other.query('SELECT pg_sleep(0.5), 1 AS x');
    const c = await RawClient.connect(proxy.port, { database: db.name });
    const header = Buffer.from([0x51, 0, 0, 0, 0]);
    header.writeInt32BE((1 << 20) + 100, 1);
    c.send(header, Buffer.alloc(1000));
    const m = await c.next();
    expect(m.code).toBe('E');
    expect(errorOf(m)).toMatchObject({ severity: 'FATAL', code: '08P01' });
    await c.waitClosed();
    expect((await busy).rows[0].x).toBe(1);
    expect((await other.query('SELECT 2 AS y')).rows).toEqual([{ y: 2 }]);
    await other.end();
    expect(logLines.some((l) => l.includes('client protocol violation'))).toBe(true);
  });

  it('a length below 4 closes the session with FATAL 08P01', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    c.send(Buffer.from([0x51, 0, 0, 0, 2]));
    expect(errorOf(await c.next())).toMatchObject({ severity: 'FATAL', code: '08P01' });
    await c.waitClosed();
  });

  it('the default limit refuses frames above 1 GiB before reading them', async () => {
    const p = await startTestProxy();
    try {
      const c = await RawClient.connect(p.port, { database: db.name });
      const header = Buffer.from([0x50, 0, 0, 0, 0]);
      header.writeInt32BE(0x40000000 + 10, 1);
      c.send(header);
      expect(errorOf(await c.next())).toMatchObject({ code: '08P01' });
      await c.waitClosed();
    } finally {
      await p.close(0);
    }
  });

  it('garbage instead of a start-up packet closes the connection', async () => {
    const s = connect({ host: '127.0.0.1', port: proxy.port });
    await new Promise<void>((r) => s.once('connect', () => r()));
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    s.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await new Promise<void>((r) => s.once('close', () => r()));
    const out = Buffer.concat(got);
    expect(out[0]).toBe(0x45);
  });

  it('the server ending the session (pg_terminate_backend) reaches the client, and the proxy forgets it', async () => {
    const before = proxy.sessionCount();
    const c = await RawClient.connect(proxy.port, { database: db.name, params: { application_name: 'px_victim' } });
    expect(proxy.sessionCount()).toBe(before + 1);
    await db.client.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'px_victim'");
    const m = await c.next();
    expect(errorOf(m)).toMatchObject({ severity: 'FATAL', code: '57P01' });
    await c.waitClosed();
    await until(() => proxy.sessionCount() === before);
  });

  it('the client vanishing ends its server session', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name, params: { application_name: 'px_vanish' } });
    const count = async () => Number((await db.client.query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'px_vanish'")).rows[0].n);
    expect(await count()).toBe(1);
    c.socket.destroy();
    await until(async () => (await count()) === 0);
  });
});

describe('proxy: graceful shutdown', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDatabase('pxstop');
    await ensureRole(db.client, 'pgcmek_trust');
  });
  afterAll(async () => db?.drop());

  it('stops accepting, lets sessions finish within the grace period, then closes the rest with FATAL 57P01', async () => {
    const p = await startTestProxy();
    const idle = await RawClient.connect(p.port, { database: db.name });
    const finishing = new pg.Client(proxyUrl(p, db.name));
    await finishing.connect();
    const q = finishing.query('SELECT pg_sleep(0.3), 7 AS x');
    const t0 = Date.now();
    const closing = p.close(1200);
    await new Promise((r) => setTimeout(r, 50));
    // No new sessions.
    const late = new pg.Client({ ...pgOpts(p, db.name), connectionTimeoutMillis: 2000 });
    await expect(late.connect()).rejects.toThrow();
    // A query in flight completes, and its client may leave normally.
    expect((await q).rows[0].x).toBe(7);
    await finishing.end();
    // The idle session is told why it is closed, after the grace period.
    const m = await idle.next(5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1100);
    expect(errorOf(m)).toMatchObject({ severity: 'FATAL', code: '57P01' });
    await idle.waitClosed();
    await closing;
    expect(p.sessionCount()).toBe(0);
  });

  it('returns as soon as the last session ends', async () => {
    const p = await startTestProxy();
    const c = await RawClient.connect(p.port, { database: db.name });
    const t0 = Date.now();
    const closing = p.close(10_000);
    setTimeout(() => c.end(), 200);
    await closing;
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});

function pgOpts(p: ProxyServer, database: string) {
  return { host: p.host, port: p.port, user: 'postgres', password: 'postgres', database };
}
