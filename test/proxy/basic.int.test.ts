import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import type { ProxyServer } from '../../src/proxy/server.js';
import { proxyUrl, startTestProxy } from './helpers.js';

describe('proxy: basic forwarding', () => {
  let db: TestDb;
  let proxy: ProxyServer;
  beforeAll(async () => {
    db = await createTestDatabase('pxbasic');
    proxy = await startTestProxy();
  });
  afterAll(async () => {
    await proxy?.close(0);
    await db?.drop();
  });

  it('runs simple and extended queries through the proxy', async () => {
    const c = new pg.Client(proxyUrl(proxy, db.name));
    await c.connect();
    const r1 = await c.query('SELECT 1 AS one');
    expect(r1.rows).toEqual([{ one: 1 }]);
    const r2 = await c.query('SELECT $1::text AS t, $2::int AS n', ['hi', 42]);
    expect(r2.rows).toEqual([{ t: 'hi', n: 42 }]);
    await c.end();
  });
});
