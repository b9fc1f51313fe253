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

/**
 * After loading: VACUUM (sets hint bits and the visibility map, so no cell pays
 * for the first read of each row) and ANALYZE the tables, then CHECKPOINT, so
 * neither autovacuum's pass over freshly loaded tables nor a checkpoint lands
 * in the middle of a measured run (as pgbench -i vacuums before pgbench runs).
 */
export async function settleTables(c: pg.Client, tables: readonly string[]): Promise<void> {
  for (const t of tables) await c.query(`VACUUM (ANALYZE) ${t}`);
  await c.query('CHECKPOINT');
}
