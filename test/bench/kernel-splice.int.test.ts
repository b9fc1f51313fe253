import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startKernelSplice, type KernelSplice } from '../../bench/lib/kernel-splice.js';
import { cleanup } from '../../bench/lib/proc.js';
import { freePort } from '../../src/dev/cluster.js';
import { until } from '../proxy/helpers.js';

// The benchmark's kernel relay must be a faithful relay, or the ceiling it reports is wrong.
const pgUrl = inject('pgUrl');

describe.skipIf(!pgUrl)('kernel-splice (bench:proxy --kernel-splice)', () => {
  let splice: KernelSplice | undefined;
  let why = '';
  const url = (): string => {
    const u = new URL(pgUrl);
    u.port = String(splice!.port);
    return u.toString();
  };

  beforeAll(async () => {
    const u = new URL(pgUrl);
    const s = await startKernelSplice(await freePort(), { host: u.hostname, port: Number(u.port) });
    if ('unavailable' in s) why = s.unavailable;
    else splice = s;
  });
  afterAll(async () => {
    await splice?.stop();
    await cleanup();
  });

  it('compiles, and starts wherever the kernel lets it (root, BPF sockmap), or says why not', (ctx) => {
    // A compile error is the project's bug; a kernel or a container without BPF is the machine's.
    expect(why).not.toMatch(/^gcc failed/);
    if (!splice) {
      expect(why).not.toBe('');
      ctx.skip();
    }
  });

  it('relays simple and extended queries, errors and a large value byte for byte', async (ctx) => {
    if (!splice) return ctx.skip();
    const c = new pg.Client(url());
    await c.connect();
    try {
      expect((await c.query('SELECT 1 AS x')).rows).toEqual([{ x: 1 }]);
      expect((await c.query('SELECT $1::text || $2::text AS y', ['a', 'b'])).rows).toEqual([{ y: 'ab' }]);
      await expect(c.query('SELECT 1/0')).rejects.toMatchObject({ code: '22012' });
      const big = 'x'.repeat(3 << 20) + 'end';
      const r = await c.query<{ d: string; n: number }>('SELECT md5($1) AS d, length($1) AS n', [big]);
      expect(r.rows[0]).toEqual({ d: createHash('md5').update(big).digest('hex'), n: big.length });
      const rows = await c.query<{ g: number }>('SELECT g FROM generate_series(1, 20000) g');
      expect(rows.rows.length).toBe(20000);
      expect(rows.rows[19999]!.g).toBe(20000);
    } finally {
      await c.end();
    }
  });

  it('ends the backend of each session that ends, and serves many sessions', async (ctx) => {
    if (!splice) return ctx.skip();
    const admin = new pg.Client(pgUrl);
    await admin.connect();
    try {
      const tag = `splice-${process.pid}`;
      for (let i = 0; i < 20; i++) {
        const c = new pg.Client({ connectionString: url(), application_name: tag });
        await c.connect();
        expect((await c.query('SELECT $1::int AS i', [i])).rows[0].i).toBe(i);
        await c.end();
      }
      await until(async () => (await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [tag])).rows[0].n === 0, 5_000);
    } finally {
      await admin.end();
    }
  });
});
