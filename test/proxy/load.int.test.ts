// Many sessions at once: each has its own server connection and they never mix.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import type { ProxyServer } from '../../src/proxy/server.js';
import { proxyUrl, startTestProxy } from './helpers.js';

describe('proxy: 200 concurrent sessions', () => {
  let db: TestDb;
  let proxy: ProxyServer;
  beforeAll(async () => {
    db = await createTestDatabase('pxload');
    proxy = await startTestProxy();
  });
  afterAll(async () => {
    await proxy?.close(0);
    await db?.drop();
  });

  it('serves 200 sessions at once, each seeing only its own results', async () => {
    const N = 200;
    const clients = Array.from({ length: N }, () => new pg.Client(proxyUrl(proxy, db.name)));
    await Promise.all(clients.map((c) => c.connect()));
    expect(proxy.sessionCount()).toBe(N);
    const pids = await Promise.all(
      clients.map(async (c, i) => {
        const r = await c.query('SELECT $1::int AS i, pg_backend_pid() AS pid, repeat($2, $1::int % 50) AS pad', [i, 'ab']);
        expect(r.rows[0].i).toBe(i);
        expect(r.rows[0].pad).toBe('ab'.repeat(i % 50));
        const p = await c.query({ name: 'same', text: 'SELECT $1::text || $2::text AS s', values: [`c${i}`, '!'] });
        expect(p.rows[0].s).toBe(`c${i}!`);
        return r.rows[0].pid as number;
      }),
    );
    expect(new Set(pids).size).toBe(N); // one server connection per session
    await Promise.all(clients.map((c) => c.end()));
    const deadline = Date.now() + 5000;
    while (proxy.sessionCount() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(proxy.sessionCount()).toBe(0);
  });
});
