// Settings the admin scans need for the duration of a command, put back exactly
// as they were afterwards (the proxy may run a command in the client's own
// session). Parallel query is turned off: a batch reads ~500 rows through the
// primary key index, and the planner, unable to estimate the envelope filters,
// otherwise starts parallel workers for every batch: on a small machine with a
// writer busy beside it, that made rotation batches 5x slower.
import type { Db } from '../catalog/db.js';

const SETTINGS: Record<string, string> = { max_parallel_workers_per_gather: '0' };

export async function withScanSettings<T>(dbs: Db[], fn: () => Promise<T>): Promise<T> {
  const restores: { db: Db; name: string; value?: string }[] = [];
  try {
    for (const db of new Set(dbs)) {
      for (const [name, value] of Object.entries(SETTINGS)) {
        const { rows } = await db.query(`SELECT setting, source FROM pg_catalog.pg_settings WHERE name = $1`, [name]);
        if (!rows[0]) continue;
        // A value the session SET is restored with SET; anything else (file, default) with RESET.
        restores.push({ db, name, ...(rows[0].source === 'session' && { value: String(rows[0].setting) }) });
        await db.query(`SELECT pg_catalog.set_config($1, $2, false)`, [name, value]);
      }
    }
    return await fn();
  } finally {
    for (const r of restores.reverse()) {
      await (r.value === undefined ? r.db.query(`RESET ${r.name}`) : r.db.query(`SELECT pg_catalog.set_config($1, $2, false)`, [r.name, r.value])).catch(() => {});
    }
  }
}
