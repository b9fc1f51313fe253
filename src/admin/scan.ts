// Walks the rows of one leaf table that match a predicate, in batches, without
// holding a transaction or loading the table: each batch is its own statement.
//   primary key: keyset pagination, `WHERE (pk) > (last) ORDER BY pk LIMIT n`
//     over the primary key index (composite keys compare as rows);
//   no primary key: ranges of heap pages, `ctid >= '(p,0)' AND ctid < '(p+k,0)'`
//     (a TID range scan, Postgres 14+), k adapted so a range yields about a batch.
// The next batch is fetched while the caller works on the current one.
import type { Db } from '../catalog/db.js';
import { qualified, quoteIdent, type KeyInfo, type LeafPlan } from './plan.js';
import { valueText } from './sql.js';

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

function select(p: LeafPlan): string {
  const keys = keyColumnsSql(p.key).map((k, i) => `${k}::pg_catalog.text AS k${i}`);
  return `SELECT ${keys.join(', ')}, ${valueText(p)} AS v FROM ONLY ${qualified(p.schema, p.table)} AS t`;
}

function toRows(rows: Record<string, unknown>[], width: number): ScannedRow[] {
  return rows.map((r) => {
    const key: string[] = [];
    for (let i = 0; i < width; i++) key.push(r[`k${i}`] as string);
    return { key, value: r.v as string };
  });
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
  const cols = p.key.columns;
  const keys = keyColumnsSql(p.key);
  const order = keys.join(', ');
  const first = `${select(p)} WHERE ${filter} ORDER BY ${order} LIMIT ${batch}`;
  const after = `(${keys.join(', ')}) > (${cols.map((c, i) => `$${i + 1}::${c.type}`).join(', ')})`;
  const next = `${select(p)} WHERE ${filter} AND ${after} ORDER BY ${order} LIMIT ${batch}`;
  let pending = quiet(db.query(first));
  for (;;) {
    const rows = toRows((await pending).rows, cols.length);
    if (rows.length === 0) return;
    pending = rows.length === batch ? quiet(db.query(next, rows[rows.length - 1].key)) : Promise.resolve({ rows: [] });
    yield rows;
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
  const sql = `${select(p)} WHERE ${filter} AND t.ctid >= $1::pg_catalog.tid AND t.ctid < $2::pg_catalog.tid`;
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
    const got = toRows((await pending).rows, 1);
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
    if (got.length) yield got;
    if (!more) return;
  }
}
