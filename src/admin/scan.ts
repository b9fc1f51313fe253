// Walks the rows of one leaf table that match a predicate, in batches, without
// holding a transaction or loading the table: each batch is its own statement.
//   primary key: keyset pagination, `WHERE (pk) > (last) ORDER BY pk LIMIT n`
//     over the primary key index (composite keys compare as rows), in windows;
//   no primary key: ranges of heap pages, `ctid >= '(p,0)' AND ctid < '(p+k,0)'`
//     (a TID range scan, Postgres 14+), k adapted so a range yields about a batch.
// The next window/range is fetched while the caller works on the current batch.
import type { Db } from '../catalog/db.js';
import { qualified, quoteIdent, type KeyInfo, type LeafPlan } from './plan.js';
import { valueText } from './sql.js';

/** A window over finished rows grows up to this many batches (bounded memory when it meets a dense region). */
const MAX_WINDOW_BATCHES = 20;

export interface ScannedRow {
  /** Key values as text (primary key columns in order, or the ctid). */
  key: string[];
  value: string;
}

export function keyColumnsSql(key: KeyInfo): string[] {
  return key.kind === 'ctid' ? ['t.ctid'] : key.columns.map((c) => `t.${quoteIdent(c.name)}`);
}

/** `id=5`, `a=1, b=x`, `ctid=(0,3)`: a row's key for reports (keys, never column values). */
export function formatKey(key: KeyInfo, values: string[]): string {
  if (key.kind === 'ctid') return `ctid=${values[0]}`;
  return key.columns.map((c, i) => `${c.name}=${values[i]}`).join(', ');
}

function selectRanges(p: LeafPlan): string {
  return `SELECT t.ctid::pg_catalog.text AS k0, ${valueText(p)} AS v FROM ONLY ${qualified(p.schema, p.table)} AS t`;
}

function toRows(rows: Record<string, unknown>[]): ScannedRow[] {
  return rows.map((r) => ({ key: [r.k0 as string], value: r.v as string }));
}

type Pending = Promise<{ rows: Record<string, unknown>[] }>;

function quiet(p: Pending): Pending {
  // The consumer may stop early (abort): a prefetch nobody awaits must not become an unhandled rejection.
  p.catch(() => {});
  return p;
}

export async function* scanBatches(db: Db, p: LeafPlan, filter: string, batch: number): AsyncGenerator<ScannedRow[]> {
  if (p.key.kind === 'ctid') {
    yield* scanPageRanges(db, p, filter, batch);
    return;
  }
  // Windows of rows in key order; the predicate is computed per row in the select list rather
  // than filtered on, so the planner always walks the primary key index: with a WHERE filter it
  // cannot estimate (stale statistics right after a backfill) it would choose a full scan and a
  // sort for every batch. Matching rows are gathered across windows; a window grows (up to
  // MAX_WINDOW_BATCHES batches) while matches are sparse, so a re-run over finished rows is cheap.
  const cols = p.key.columns;
  const keys = keyColumnsSql(p.key);
  const order = keys.join(', ');
  const window = (where: string, limit: string) => {
    // Only matching rows and the window's last row (to continue from) leave the server.
    const inner =
      `SELECT ${keys.map((k, i) => `${k} AS r${i}, ${k}::pg_catalog.text AS k${i}`).join(', ')}, ` +
      `CASE WHEN ${filter} THEN ${valueText(p)} END AS v ` +
      `FROM ONLY ${qualified(p.schema, p.table)} AS t ${where}ORDER BY ${order} LIMIT ${limit}`;
    const w = `OVER (ORDER BY ${cols.map((_, i) => `w.r${i}`).join(', ')})`;
    return (
      `SELECT ${cols.map((_, i) => `o.k${i}`).join(', ')}, o.v, o.n FROM (` +
      `SELECT w.*, pg_catalog.row_number() ${w} AS n, pg_catalog.lead(1) ${w} IS NULL AS last FROM (${inner}) AS w` +
      `) AS o WHERE o.v IS NOT NULL OR o.last`
    );
  };
  const first = window('', '$1::int8');
  const n = cols.length;
  const next = window(`WHERE (${keys.join(', ')}) > (${cols.map((c, i) => `$${i + 1}::${c.type}`).join(', ')}) `, `$${n + 1}::int8`);
  const maxWindow = batch * MAX_WINDOW_BATCHES;
  let size = batch;
  let pending: Pending | undefined = quiet(db.query(first, [size]));
  let found: ScannedRow[] = [];
  while (pending) {
    const rows: Record<string, unknown>[] = (await pending).rows;
    const tail = rows[rows.length - 1];
    const more = tail !== undefined && Number(tail.n) === size;
    let matched = 0;
    for (const r of rows) {
      if (r.v === null || r.v === undefined) continue;
      matched++;
      found.push({ key: cols.map((_, i) => r[`k${i}`] as string), value: r.v as string });
    }
    // Aim at about one batch of matches per window.
    size = matched === 0 ? Math.min(size * 4, maxWindow) : Math.max(batch, Math.min(maxWindow, Math.round((size * batch) / matched)));
    pending = more ? quiet(db.query(next, [...cols.map((_, i) => tail[`k${i}`]), size])) : undefined;
    while (found.length >= batch || (!pending && found.length)) {
      yield found.slice(0, batch);
      found = found.slice(batch);
    }
  }
}

async function relPages(db: Db, oid: number): Promise<number> {
  const { rows } = await db.query(
    `SELECT (pg_catalog.pg_relation_size($1::pg_catalog.oid::pg_catalog.regclass) / pg_catalog.current_setting('block_size')::int)::int AS pages`,
    [oid],
  );
  return Number(rows[0].pages);
}

async function* scanPageRanges(db: Db, p: LeafPlan, filter: string, batch: number): AsyncGenerator<ScannedRow[]> {
  const sql = `${selectRanges(p)} WHERE ${filter} AND t.ctid >= $1::pg_catalog.tid AND t.ctid < $2::pg_catalog.tid`;
  const est = await db.query(
    `SELECT GREATEST(c.reltuples, 0)::float8 / GREATEST(c.relpages, 1) AS per_page FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.oid`,
    [p.oid],
  );
  const perPage = Math.max(1, Number(est.rows[0]?.per_page ?? 100));
  let span = Math.max(1, Math.floor(batch / perPage));
  let pages = await relPages(db, p.oid);
  let at = 0;
  let rechecked = false;
  const fetch = (from: number, n: number) => quiet(db.query(sql, [`(${from},0)`, `(${from + n},0)`]));
  let pending = fetch(at, span);
  for (;;) {
    const got = toRows((await pending).rows);
    at += span;
    // Aim at about one batch per range: halve when a range held far more, double when far fewer.
    if (got.length > batch * 2 && span > 1) span = Math.max(1, Math.floor(span / 2));
    else if (got.length < batch / 2) span = Math.min(span * 2, 1 << 20);
    if (at >= pages && !rechecked) {
      // The table may have grown while we walked it (inserts, or rows our own updates moved).
      pages = await relPages(db, p.oid);
      rechecked = true;
    }
    const more = at < pages;
    pending = more ? fetch(at, span) : Promise.resolve({ rows: [] });
    for (let i = 0; i < got.length; i += batch) yield got.slice(i, i + batch);
    if (!more) return;
  }
}
