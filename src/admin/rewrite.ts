// The engine under ENCRYPT EXISTING, ROTATE KEK and DECRYPT EXISTING: walk the
// rows that need work (scan.ts), compute each new value, and write a batch back
// with one compare-and-set UPDATE:
//   UPDATE ONLY t SET col = u.n FROM unnest($keys, $old, $new) u(k.., o, n)
//    WHERE t.key = u.key AND t.col::text = u.o
// A row changed by anyone since it was read (an application write, another
// backfill through another proxy) no longer matches `u.o` and is left alone:
// nothing is overwritten and nothing is encrypted twice. Each batch is one
// autocommit statement, so an interruption loses at most the batch in flight
// (which then simply was not written) and a re-run resumes by skipping what is
// done. One UPDATE is in flight while the next batch is read and transformed.
import type { Db } from '../catalog/db.js';
import { CMEKDecryptionError } from '../crypto/errors.js';
import { log } from '../log.js';
import { JsonPathError } from './json-paths.js';
import { qualified, quoteIdent, type LeafPlan } from './plan.js';
import { ProgressMeter, type ProgressFn } from './progress.js';
import { formatKey, scanBatches, type ScannedRow } from './scan.js';
import { newValue } from './sql.js';

/** New text for a value; undefined = nothing to change. Throws for a value that cannot be processed. */
export type Transform = (value: string) => Promise<string | undefined>;

export interface RowFailure {
  key: string;
  reason: string;
}

export interface RewriteStats {
  /** Rows that matched the predicate when the command started. */
  found: number;
  /** Rows the scan returned (matched the predicate). */
  examined: number;
  /** Rows written (or, in a dry run, that would be). */
  changed: number;
  /** Rows read but changed by someone else before the write: left alone. */
  skippedConcurrent: number;
  /** Rows whose value could not be processed or written. */
  failed: number;
  /** The first failures, by key (never values). */
  failures: RowFailure[];
  seconds: number;
  interrupted: boolean;
}

export interface RewriteOptions {
  batch: number;
  dryRun: boolean;
  label: string;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  /** A second connection for the UPDATEs, so reads and writes overlap (the CLI has one; the proxy may not). */
  writer?: Db;
  /** How many failures to keep by key. */
  maxFailures?: number;
}

const RETRYABLE = new Set(['40P01', '40001']);

function sqlstate(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Data errors (22xxx) and constraint violations (23xxx) are the row's fault, not the batch's. */
function isRowError(err: unknown): boolean {
  const s = sqlstate(err);
  return s !== undefined && (s.startsWith('22') || s.startsWith('23'));
}

export function failureReason(err: unknown): string {
  if (err instanceof CMEKDecryptionError) return `${err.reason}${err.kekId ? ` (KEK ${err.backend ?? '?'}:${err.kekId})` : ''}`;
  if (err instanceof JsonPathError) return 'malformed JSON';
  const s = sqlstate(err);
  // Postgres's primary message names types and constraints, not values (DETAIL would: never used).
  if (s) return `SQLSTATE ${s}: ${(err as Error).message}`;
  return err instanceof Error ? err.name : 'error';
}

export function updateSql(p: LeafPlan): string {
  const keyNames = p.key.kind === 'ctid' ? ['ctid'] : p.key.columns.map((c) => c.name);
  const keyTypes = p.key.kind === 'ctid' ? ['pg_catalog.tid'] : p.key.columns.map((c) => c.type);
  const n = keyNames.length;
  // ROWS FROM (unnest(a), unnest(b)): the multi-argument unnest shorthand only exists unqualified.
  const arrays = [...keyTypes.map((t, i) => `$${i + 1}::${t}[]`), `$${n + 1}::pg_catalog.text[]`, `$${n + 2}::pg_catalog.text[]`].map((a) => `pg_catalog.unnest(${a})`);
  const alias = [...keyNames.map((_, i) => `k${i}`), 'o', 'n'];
  const match = keyNames.map((k, i) => (k === 'ctid' && p.key.kind === 'ctid' ? `t.ctid = u.k${i}` : `t.${quoteIdent(k)} = u.k${i}`));
  const c = quoteIdent(p.column);
  return (
    `UPDATE ONLY ${qualified(p.schema, p.table)} AS t SET ${c} = ${newValue(p)} ` +
    `FROM ROWS FROM (${arrays.join(', ')}) AS u(${alias.join(', ')}) ` +
    `WHERE ${match.join(' AND ')} AND t.${c}::pg_catalog.text COLLATE "C" = u.o COLLATE "C"`
  );
}

interface Change {
  row: ScannedRow;
  next: string;
}

export async function rewriteColumn(db: Db, p: LeafPlan, filter: string, transform: Transform, opts: RewriteOptions): Promise<RewriteStats> {
  const stats: RewriteStats = { found: 0, examined: 0, changed: 0, skippedConcurrent: 0, failed: 0, failures: [], seconds: 0, interrupted: false };
  const maxFailures = opts.maxFailures ?? 100;
  const fail = (row: ScannedRow, err: unknown) => {
    stats.failed++;
    if (stats.failures.length < maxFailures) stats.failures.push({ key: formatKey(p.key, row.key), reason: failureReason(err) });
  };
  const { rows } = await db.query(`SELECT pg_catalog.count(*)::int8::text AS n FROM ONLY ${qualified(p.schema, p.table)} AS t WHERE ${filter}`);
  stats.found = Number(rows[0].n);
  const meter = new ProgressMeter(opts.label, stats.found, opts.onProgress);
  const writer = opts.writer ?? db;
  const sql = updateSql(p);
  const width = p.key.kind === 'ctid' ? 1 : p.key.columns.length;

  const run = async (changes: Change[]): Promise<number> => {
    const params: unknown[] = [];
    for (let i = 0; i < width; i++) params.push(changes.map((c) => c.row.key[i]));
    params.push(changes.map((c) => c.row.value), changes.map((c) => c.next));
    for (let attempt = 0; ; attempt++) {
      try {
        const n = (await writer.query(sql, params)).rowCount;
        // Without the count, written and skipped rows cannot be told apart: a broken Db, not a data problem.
        if (typeof n !== 'number') throw new Error('the connection did not report how many rows the UPDATE changed');
        return n;
      } catch (err) {
        if (!RETRYABLE.has(sqlstate(err) ?? '') || attempt >= 5) throw err;
        await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
      }
    }
  };

  const write = async (changes: Change[]): Promise<void> => {
    if (changes.length === 0) return;
    try {
      const n = await run(changes);
      stats.changed += n;
      stats.skippedConcurrent += changes.length - n;
    } catch (err) {
      if (!isRowError(err)) throw err;
      // One bad row (a value too long for varchar(n), a domain CHECK) must not stop the rest: retry one by one.
      for (const c of changes) {
        try {
          const n = await run([c]);
          stats.changed += n;
          stats.skippedConcurrent += 1 - n;
        } catch (e) {
          if (!isRowError(e)) throw e;
          fail(c.row, e);
        }
      }
    }
  };

  let inflight: Promise<void> = Promise.resolve();
  try {
    for await (const batch of scanBatches(db, p, filter, opts.batch)) {
      if (opts.signal?.aborted) {
        stats.interrupted = true;
        break;
      }
      const changes: Change[] = [];
      for (const row of batch) {
        try {
          const next = await transform(row.value);
          if (next !== undefined && next !== row.value) changes.push({ row, next });
        } catch (err) {
          if (!(err instanceof CMEKDecryptionError || err instanceof JsonPathError)) throw err;
          fail(row, err);
        }
      }
      stats.examined += batch.length;
      await inflight;
      if (opts.dryRun) stats.changed += changes.length;
      else inflight = write(changes);
      // Keep a rejected write observed until the next await picks it up.
      inflight.catch(() => {});
      meter.add(batch.length);
      if (opts.signal?.aborted) {
        stats.interrupted = true;
        break;
      }
    }
    await inflight;
  } catch (err) {
    await inflight.catch(() => {});
    throw err;
  } finally {
    stats.seconds = meter.elapsedSeconds;
  }
  meter.finish();
  if (stats.failed) log().warn({ table: `${p.schema}.${p.table}`, column: p.column, failed: stats.failed }, 'admin: some rows could not be processed');
  return stats;
}
