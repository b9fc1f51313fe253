// One pg client for one step of a benchmark's setup (create, load, verify),
// closed however the step ends.
import pg from 'pg';
import type { PgTarget } from './pgbench.js';

export async function withClient<R>(t: PgTarget | string, fn: (c: pg.Client) => Promise<R>): Promise<R> {
  const c = new pg.Client(t);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
