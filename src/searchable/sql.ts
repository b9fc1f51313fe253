// SQL text the proxy wiring and the operator need around searchable columns:
// the candidate array bound for `col = ANY($k::text[])`, and the expression
// that names a value's token part (equal for one plaintext under every KEK).
import { PREFIX } from '../crypto/envelope.js';
import type { ColumnRef } from './types.js';

const QUOTE = 0x22; // "
const BACKSLASH = 0x5c;
const COMMA = 0x2c;

/**
 * A Postgres text[] literal (`{"v1","v2"}`) of these values, to bind as the
 * parameter of `col = ANY($k::text[])`. Every element is quoted, so empty
 * strings and legacy plaintext with commas, braces or quotes survive.
 */
export function textArrayLiteral(values: readonly Buffer[]): Buffer {
  let len = 2 + Math.max(0, values.length - 1);
  for (const v of values) {
    len += v.length + 2;
    for (const c of v) if (c === QUOTE || c === BACKSLASH) len++;
  }
  const out = Buffer.allocUnsafe(len);
  let o = 0;
  out[o++] = 0x7b; // {
  values.forEach((v, i) => {
    if (i > 0) out[o++] = COMMA;
    out[o++] = QUOTE;
    for (const c of v) {
      if (c === QUOTE || c === BACKSLASH) out[o++] = BACKSLASH;
      out[o++] = c;
    }
    out[o++] = QUOTE;
  });
  out[o++] = 0x7d; // }
  return out;
}

/** Always double-quoted, inner quotes doubled. */
export function quoteIdent(s: string): string {
  return `"${s.replaceAll('"', '""')}"`;
}

/**
 * The token part of a stored value (the value itself for legacy plaintext):
 * the same for one plaintext under every KEK. Immutable, so it can be indexed.
 */
export function tokenPartSql(columnSql: string): string {
  return `(CASE WHEN starts_with(${columnSql}, '${PREFIX}') THEN split_part(${columnSql}, '|', 3) ELSE ${columnSql} END)`;
}

function indexName(ref: ColumnRef, suffix: string): string {
  const base = `${ref.table}_${ref.column}`;
  const max = 63 - suffix.length - 1;
  return quoteIdent(`${Buffer.from(base).subarray(0, max).toString('utf8').replace(/\uFFFD$/, '')}_${suffix}`);
}

/**
 * What docs/SEARCHABLE.md tells the operator to create:
 *  - lookup: a plain btree on the column (serves `col = ANY(candidates)`);
 *  - unique: a unique index on the token part, which keeps uniqueness sound
 *    while values of one plaintext can sit under two KEKs (a rotation).
 */
export function indexAdvice(ref: ColumnRef): { lookup: string; unique: string } {
  const table = `${quoteIdent(ref.schema)}.${quoteIdent(ref.table)}`;
  const col = quoteIdent(ref.column);
  return {
    lookup: `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${indexName(ref, 'cmek_idx')} ON ${table} (${col})`,
    unique: `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ${indexName(ref, 'cmek_token_key')} ON ${table} (${tokenPartSql(col)})`,
  };
}
