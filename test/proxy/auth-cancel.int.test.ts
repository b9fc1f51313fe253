// Authentication passes through (trust, password, md5, SCRAM), the 3.2 protocol
// negotiates, and cancel requests reach exactly the right session.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { connect } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import type { ProxyServer } from '../../src/proxy/server.js';
import { encodeCancelRequest } from '../../src/protocol/frontend/startup.js';
import { ensureRole, proxyUrl, startTestProxy } from './helpers.js';
import { RawClient, codes, errorOf } from './raw-client.js';

async function sendCancel(port: number, packet: Buffer): Promise<void> {
  const s = connect({ host: '127.0.0.1', port });
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.end(packet);
  await new Promise<void>((r) => s.once('close', () => r()));
}

describe('proxy: authentication passthrough', () => {
  let db: TestDb;
  let proxy: ProxyServer;
  beforeAll(async () => {
    db = await createTestDatabase('pxauth');
    await ensureRole(db.client, 'pgcmek_trust');
    await ensureRole(db.client, 'pgcmek_password');
    await ensureRole(db.client, 'pgcmek_md5', { md5: true });
    await ensureRole(db.client, 'px_scram_user');
    proxy = await startTestProxy();
  });
  afterAll(async () => {
    await proxy?.close(0);
    await db?.drop();
  });

  for (const user of ['pgcmek_trust', 'pgcmek_password', 'pgcmek_md5', 'px_scram_user', 'postgres']) {
    it(`logs in as ${user}`, async () => {
      const c = new pg.Client(proxyUrl(proxy, db.name, user, user === 'postgres' ? 'postgres' : user));
      await c.connect();
      expect((await c.query('SELECT current_user AS u')).rows).toEqual([{ u: user }]);
      await c.end();
    });
  }

  for (const user of ['pgcmek_password', 'pgcmek_md5', 'px_scram_user']) {
    it(`a wrong password for ${user} gets the server's 28P01`, async () => {
      const c = new pg.Client(proxyUrl(proxy, db.name, user, 'wrong'));
      await expect(c.connect()).rejects.toMatchObject({ code: '28P01' });
    });
  }

  it('an unknown database gets the server\'s own error after start-up', async () => {
    const c = new pg.Client(proxyUrl(proxy, 'no_such_db_px'));
    await expect(c.connect()).rejects.toMatchObject({ code: '3D000' });
  });

  it('md5 and cleartext through a raw client (what the proxy forwards is untouched)', async () => {
    for (const user of ['pgcmek_md5', 'pgcmek_password']) {
      const c = await RawClient.connect(proxy.port, { user, password: user, database: db.name });
      expect(c.startup[0]).toBe('R');
      c.send(serialize.query('SELECT 1'));
      expect(codes(await c.untilReady())).toBe('TDCZ');
      c.end();
    }
  });

  it('protocol 3.2: Postgres 18 accepts it and sends a long cancel key; older servers negotiate down', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name, minor: 2 });
    if (inject('pgFlavour') === '18') {
      expect(c.startup).not.toContain('v');
      expect(c.key!.key.length).toBe(32);
    } else {
      expect(c.startup).toContain('v'); // NegotiateProtocolVersion, forwarded untouched
      expect(c.key!.key.length).toBe(4);
    }
    c.send(serialize.query('SELECT pg_sleep(20)'));
    await new Promise((r) => setTimeout(r, 200));
    await sendCancel(proxy.port, encodeCancelRequest(c.key!.pid, c.key!.key));
    const ms = await c.untilReady();
    expect(errorOf(ms.find((m) => m.code === 'E')!).code).toBe('57014');
    c.end();
  });
});

describe('proxy: cancel requests', () => {
  let db: TestDb;
  let proxy: ProxyServer;
  beforeAll(async () => {
    db = await createTestDatabase('pxcancel');
    proxy = await startTestProxy();
  });
  afterAll(async () => {
    await proxy?.close(0);
    await db?.drop();
  });

  it('clients see the proxy\'s pid and key, not the server\'s', async () => {
    const c = new pg.Client(proxyUrl(proxy, db.name));
    await c.connect();
    const real = Number((await c.query('SELECT pg_backend_pid() AS p')).rows[0].p);
    const shown = (c as unknown as { processID: number }).processID;
    expect(shown).not.toBe(real);
    await c.end();
  });

  it('cancels only the session whose key was sent', async () => {
    const a = new pg.Client(proxyUrl(proxy, db.name));
    const b = new pg.Client(proxyUrl(proxy, db.name));
    await a.connect();
    await b.connect();
    const aKey = a as unknown as { processID: number; secretKey: number };
    const started = Date.now();
    const qa = a.query('SELECT pg_sleep(30)').then(() => 'done', (e: { code?: string }) => e.code);
    const qb = b.query('SELECT pg_sleep(1.5)').then(() => 'done', (e: { code?: string }) => e.code);
    await new Promise((r) => setTimeout(r, 300));
    await sendCancel(proxy.port, serialize.cancel(aKey.processID, aKey.secretKey));
    expect(await qa).toBe('57014');
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await qb).toBe('done');
    await a.end();
    await b.end();
  });

  it('an unknown or wrong key is ignored, as Postgres does', async () => {
    const p = new pg.Client(proxyUrl(proxy, db.name));
    await p.connect();
    const key = p as unknown as { processID: number; secretKey: number };
    const q = p.query('SELECT pg_sleep(1) AS s').then(() => 'done', (e: { code?: string }) => e.code);
    await new Promise((r) => setTimeout(r, 200));
    await sendCancel(proxy.port, serialize.cancel(key.processID, key.secretKey ^ 1));
    await sendCancel(proxy.port, serialize.cancel(12345, 678));
    expect(await q).toBe('done');
    await p.end();
  });

  it('a cancel arriving after its session ended does nothing', async () => {
    const p = new pg.Client(proxyUrl(proxy, db.name));
    await p.connect();
    const key = p as unknown as { processID: number; secretKey: number };
    await p.end();
    await sendCancel(proxy.port, serialize.cancel(key.processID, key.secretKey));
    const q = new pg.Client(proxyUrl(proxy, db.name));
    await q.connect();
    expect((await q.query('SELECT 1 AS x')).rows).toEqual([{ x: 1 }]);
    await q.end();
  });
});
