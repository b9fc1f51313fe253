// pgbench (libpq 15) through the proxy: initialisation (client-side COPY of
// 100,000 rows), then select-only and TPC-B-like runs in each query mode. Every
// run must exit 0 and process every transaction without a failure.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { pgbenchInit, runPgbench, type PgTarget, type QueryMode } from '../../bench/lib/pgbench.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { startTestProxy, type TestProxy } from '../helpers/proxy.js';

let db: TestDb;
let proxy: TestProxy;
const pgbench = (): string => join(inject('pgClientBin'), 'pgbench');

function target(port: number): PgTarget {
  return { host: '127.0.0.1', port, user: 'postgres', password: 'postgres', database: db.name };
}

beforeAll(async () => {
  db = await createTestDatabase('clients_pgbench');
  proxy = await startTestProxy();
});
afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

describe('pgbench through the proxy', () => {
  it('pgbench -i -s 1 loads the tables through the proxy', async () => {
    await pgbenchInit(pgbench(), target(proxy.port), 1);
    const { rows } = await db.client.query(`SELECT (SELECT count(*) FROM pgbench_accounts)::int AS accounts, (SELECT count(*) FROM pgbench_branches)::int AS branches, (SELECT count(*) FROM pgbench_tellers)::int AS tellers`);
    expect(rows[0]).toEqual({ accounts: 100_000, branches: 1, tellers: 10 });
  });

  for (const mode of ['simple', 'extended', 'prepared'] as QueryMode[]) {
    it(`pgbench -S -M ${mode}: every transaction processed, none failed (direct and proxied)`, async () => {
      for (const port of [db.port, proxy.port]) {
        const r = await runPgbench(pgbench(), target(port), { mode, clients: 4, threads: 2, transactions: 250, latencies: true });
        expect({ exit: r.exit, stderr: r.stderr.replace(/starting vacuum\.\.\.end\.\n?/, '') }).toEqual({ exit: 0, stderr: '' });
        expect(r.transactions).toBe(1000);
        expect(r.failed).toBe(0);
        expect(r.tps).toBeGreaterThan(0);
        expect(r.latencyMs?.count).toBe(1000);
      }
    });
  }

  it('pgbench TPC-B-like (read/write, transactions) -M prepared writes exactly what it reports', async () => {
    const before = await db.client.query('SELECT count(*)::int AS n, coalesce(sum(delta), 0)::bigint AS d FROM pgbench_history');
    const r = await runPgbench(pgbench(), target(proxy.port), { mode: 'prepared', clients: 4, threads: 2, transactions: 100, selectOnly: false, latencies: false });
    expect(r.exit).toBe(0);
    expect(r.transactions).toBe(400);
    expect(r.failed).toBe(0);
    const after = await db.client.query('SELECT count(*)::int AS n FROM pgbench_history');
    expect(after.rows[0].n - before.rows[0].n).toBe(400);
    // The balances stay consistent: TPC-B adds each delta to one account, teller and branch.
    const { rows } = await db.client.query(`SELECT (SELECT sum(abalance) FROM pgbench_accounts)::bigint AS a, (SELECT sum(tbalance) FROM pgbench_tellers)::bigint AS t, (SELECT sum(bbalance) FROM pgbench_branches)::bigint AS b, (SELECT sum(delta) FROM pgbench_history)::bigint AS h`);
    expect(new Set([rows[0].a, rows[0].t, rows[0].b, rows[0].h]).size).toBe(1);
  });
});
