// The native relay (src/proxy/native-relay.ts, native/relay.c): sessions with
// nothing to rewrite move onto it after start-up. What it must keep from the
// JavaScript pumps: every byte in order, backpressure, the errors and closes
// of both sides, the byte counts, and no descriptor left behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { readdirSync } from 'node:fs';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { startProxy, type ProxyServer } from '../../src/proxy/server.js';
import { NativeRelay } from '../../src/proxy/native-relay.js';
import { createLogger } from '../../src/log.js';
import { ensureRole, proxyConfig, proxyUrl, until, capturingLogger } from './helpers.js';
import { RawClient, errorOf } from './raw-client.js';

const native = NativeRelay.available;

const openFds = (): number => readdirSync('/proc/self/fd').length;

describe.skipIf(!native)('proxy: the native relay', () => {
  let db: TestDb;
  let proxy: ProxyServer;
  let logLines: string[] = [];
  beforeAll(async () => {
    db = await createTestDatabase('pxrelay');
    await ensureRole(db.client, 'pgcmek_trust');
    const log = capturingLogger('debug');
    logLines = log.lines;
    proxy = await startProxy(proxyConfig(), { logger: log.logger, limits: { maxClientFrame: 1 << 20 } });
  });
  afterAll(async () => {
    await proxy?.close(0);
    await db?.drop();
  });

  it('takes over a plain session after start-up; queries, COPY, NOTIFY and large results go through it byte for byte', async () => {
    const c = new pg.Client(proxyUrl(proxy, db.name));
    await c.connect();
    await until(() => proxy.traffic!().relayed === 1);
    expect((await c.query('SELECT 1 AS x')).rows).toEqual([{ x: 1 }]);
    expect((await c.query('SELECT $1::text AS y', ['héllo'])).rows).toEqual([{ y: 'héllo' }]);
    // 3 MB in one DataRow, then 20,000 rows: frames cross every read boundary.
    const big = (await c.query("SELECT repeat('ab', 1500000) AS z")).rows[0].z as string;
    expect(big.length).toBe(3_000_000);
    const many = await c.query('SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g');
    expect(many.rows.length).toBe(20000);
    expect(many.rows[19999].g).toBe(20000);
    const check = await c.query("SELECT md5(string_agg(md5(g::text), '' ORDER BY g)) AS d FROM generate_series(1, 20000) g");
    const { createHash } = await import('node:crypto');
    const joined = many.rows.map((r: { h: string }) => r.h).join('');
    expect(createHash('md5').update(joined).digest('hex')).toBe(check.rows[0].d);
    // An error, then the session goes on.
    await expect(c.query('SELECT 1/0')).rejects.toMatchObject({ code: '22012' });
    expect((await c.query('SELECT 2 AS x')).rows).toEqual([{ x: 2 }]);
    // Notifications arrive while the client sends nothing.
    const l = new pg.Client(proxyUrl(proxy, db.name));
    await l.connect();
    const got = new Promise<string>((resolve) => l.on('notification', (n) => resolve(n.payload ?? '')));
    await l.query('LISTEN relay_chan');
    await c.query("NOTIFY relay_chan, 'ping'");
    expect(await got).toBe('ping');
    expect(proxy.traffic!().relayed).toBe(2);
    await l.end();
    await c.end();
    await until(() => proxy.sessionCount() === 0);
    expect(proxy.traffic!().relayed).toBe(0);
    expect(logLines.some((line) => line.includes('session on the native relay'))).toBe(true);
  });

  it('counts the bytes it forwards in the client traffic', async () => {
    const before = proxy.traffic!();
    const c = new pg.Client(proxyUrl(proxy, db.name));
    await c.connect();
    await until(() => proxy.traffic!().relayed === 1);
    const mid = proxy.traffic!();
    await c.query("SELECT repeat('x', 1000000) AS z");
    const open = proxy.traffic!();
    expect(open.bytesOut - mid.bytesOut).toBeGreaterThan(1_000_000);
    expect(open.bytesIn - mid.bytesIn).toBeGreaterThan(30);
    await c.end();
    await until(() => proxy.sessionCount() === 0);
    const after = proxy.traffic!();
    // Closed sessions keep their counts.
    expect(after.bytesOut - before.bytesOut).toBeGreaterThan(1_000_000);
    expect(after.bytesOut).toBeGreaterThanOrEqual(open.bytesOut);
  });

  it('a client that vanishes mid-query ends its server session; a terminated backend ends the client session', async () => {
    const admin = new pg.Client(proxyUrl(proxy, db.name));
    await admin.connect();
    const backends = async (app: string): Promise<number> =>
      Number((await admin.query('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [app])).rows[0].n);

    // Postgres notices a closed connection during a query only when it checks (client_connection_check_interval).
    const params = { application_name: 'relay_gone', options: '-c client_connection_check_interval=100' };
    const gone = await RawClient.connect(proxy.port, { database: db.name, params });
    await until(() => proxy.traffic!().relayed === 2);
    gone.send(serialize.query('SELECT pg_sleep(30)'));
    await until(async () => (await backends('relay_gone')) === 1);
    gone.socket.destroy();
    await until(async () => (await backends('relay_gone')) === 0, 10_000);
    // And between queries.
    const idle = await RawClient.connect(proxy.port, { database: db.name, params: { application_name: 'relay_idle' } });
    await until(async () => (await backends('relay_idle')) === 1);
    idle.socket.destroy();
    await until(async () => (await backends('relay_idle')) === 0, 10_000);

    const victim = new pg.Client({ connectionString: proxyUrl(proxy, db.name), application_name: 'relay_victim' });
    await victim.connect();
    const ended = new Promise<void>((resolve) => victim.on('end', () => resolve()));
    victim.on('error', () => {});
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'relay_victim'");
    await ended;
    await admin.end();
    await until(() => proxy.sessionCount() === 0);
  });

  it('an oversized client frame on the relay: FATAL 08P01, the frames before it still reach the server', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    await until(() => proxy.traffic!().relayed === 1);
    const header = Buffer.from([0x51, 0, 0, 0, 0]);
    header.writeInt32BE((1 << 20) + 100, 1);
    await db.client.query('CREATE TABLE relay_seen (x int); GRANT INSERT ON relay_seen TO pgcmek_trust');
    // One write: a valid Query, then the bad header. The session ends at once (its reply is not awaited).
    c.send(serialize.query('INSERT INTO relay_seen VALUES (7)'), header, Buffer.alloc(100));
    const m = await c.next();
    expect(m.code).toBe('E');
    expect(errorOf(m)).toMatchObject({ severity: 'FATAL', code: '08P01' });
    expect(errorOf(m).message).toContain(`invalid message length ${(1 << 20) + 100}`);
    await c.waitClosed();
    await until(() => proxy.sessionCount() === 0);
    await until(async () => (await db.client.query('SELECT x FROM relay_seen')).rows.length === 1);
  });

  it('a slow client: the relay stops reading the server instead of buffering (the server blocks)', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name, params: { application_name: 'relay_slow' } });
    await until(() => proxy.traffic!().relayed === 1);
    c.socket.pause();
    c.send(serialize.query("SELECT repeat('y', 1000) FROM generate_series(1, 200000)"));
    const admin = new pg.Client(proxyUrl(proxy, db.name));
    await admin.connect();
    // 200 MB cannot fit in socket buffers: the backend waits to send while the client reads nothing.
    await until(async () => {
      const r = await admin.query("SELECT wait_event FROM pg_stat_activity WHERE application_name = 'relay_slow'");
      return r.rows[0]?.wait_event === 'ClientWrite';
    }, 10_000);
    const rss = process.memoryUsage().rss;
    await new Promise((r) => setTimeout(r, 300));
    expect(process.memoryUsage().rss - rss).toBeLessThan(32 << 20);
    c.socket.destroy();
    await admin.end();
    await until(() => proxy.sessionCount() === 0, 10_000);
  });

  it('leaves no descriptor behind: 40 sessions opened and closed', async () => {
    const base = openFds();
    for (let round = 0; round < 2; round++) {
      const clients = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const c = new pg.Client(proxyUrl(proxy, db.name));
          await c.connect();
          return c;
        }),
      );
      await until(() => proxy.traffic!().relayed === 20);
      await Promise.all(clients.map((c) => c.query('SELECT 1')));
      await Promise.all(clients.map((c) => c.end()));
      await until(() => proxy.sessionCount() === 0);
    }
    await until(() => openFds() <= base + 2);
  });

  it('SIGTERM-style close: sessions on the relay get FATAL 57P01', async () => {
    const p = await startProxy(proxyConfig(), { logger: createLogger('silent') });
    const c = await RawClient.connect(p.port, { database: db.name });
    await until(() => p.traffic!().relayed === 1);
    await p.close(50);
    const m = await c.next();
    expect(errorOf(m)).toMatchObject({ severity: 'FATAL', code: '57P01' });
    await c.waitClosed();
  });
});

describe.skipIf(!native)('proxy: the native relay and a misbehaving server', () => {
  let fake: Server;
  let proxy: ProxyServer;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    // Start-up as Postgres answers it (trust), then a frame with length 2 for any Query.
    fake = createServer((s) => {
      sockets.push(s);
      let started = false;
      s.on('data', (d) => {
        if (!started) {
          started = true;
          const auth = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
          const key = Buffer.from([0x4b, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 2]);
          const ready = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
          s.write(Buffer.concat([auth, key, ready]));
          return;
        }
        if (d[0] === 0x51) s.write(Buffer.from([0x43, 0, 0, 0, 2]));
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
    const port = (fake.address() as { port: number }).port;
    proxy = await startProxy(proxyConfig({ upstream: { host: '127.0.0.1', port, tls: 'disable' } }), { logger: createLogger('silent') });
  });
  afterAll(async () => {
    await proxy?.close(0);
    for (const s of sockets) s.destroy();
    await new Promise((r) => fake?.close(r));
  });

  it('a bad server frame on the relay ends the session with 08006', async () => {
    const c = await RawClient.connect(proxy.port, { database: 'x' });
    await until(() => proxy.traffic!().relayed === 1);
    c.send(serialize.query('SELECT 1'));
    const m = await c.next();
    expect(m.code).toBe('E');
    expect(errorOf(m)).toMatchObject({ code: '08006' });
    expect(errorOf(m).message).toContain('invalid message length 2');
    await c.waitClosed();
  });
});

describe.runIf(process.env.PGCMEK_NATIVE_RELAY === 'off')('proxy: PGCMEK_NATIVE_RELAY=off', () => {
  it('keeps every session on the JavaScript pumps', async () => {
    expect(NativeRelay.available).toBe(false);
    const p = await startProxy(proxyConfig(), { logger: createLogger('silent') });
    const c = new pg.Client(proxyUrl(p, 'postgres'));
    await c.connect();
    expect((await c.query('SELECT 1 AS x')).rows).toEqual([{ x: 1 }]);
    expect(p.traffic!().relayed).toBe(0);
    await c.end();
    await p.close(0);
  });
});
