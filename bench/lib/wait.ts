// Waits until something speaks Postgres on host:port and answers a query: the
// readiness check for every target a benchmark starts (PgBouncer, pgcmek).
import pg from 'pg';
import type { PgTarget } from './pgbench.js';

export async function waitForPostgres(t: PgTarget, timeoutMs = 20_000, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = new pg.Client({ host: t.host, port: t.port, user: t.user, password: t.password, database: t.database, connectionTimeoutMillis: 2_000 });
    try {
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
      return;
    } catch (err) {
      await c.end().catch(() => {});
      if (!alive()) throw new Error(`process exited before accepting connections on ${t.host}:${t.port}`);
      if (Date.now() > deadline) throw new Error(`no Postgres answer on ${t.host}:${t.port} after ${timeoutMs} ms: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
