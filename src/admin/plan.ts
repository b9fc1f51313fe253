// What an admin command works on: a configured column, expanded to the tables
// that store it (the table itself, or the leaf partitions/children of a
// partitioned or inheritance parent), each with the key it is walked by.
import type { ColumnPolicy } from '../config/types.js';
import { isJsonType, JSONB_OID } from '../catalog/column-types.js';
import type { Db } from '../catalog/db.js';

/**
 * How a column stores envelopes:
 *  text        text/varchar: the envelope is the value;
 *  json-whole  json/jsonb without json_paths: a JSON string holding the envelope;
 *  json-paths  json/jsonb with json_paths: envelopes at those paths only.
 */
export type ValueKind = 'text' | 'json-whole' | 'json-paths';

export interface KeyColumn {
  name: string;
  /** format_type without typmod, for casts of key arrays. */
  type: string;
}

/** How rows are addressed: the primary key, or ctid for tables without one. */
export type KeyInfo = { kind: 'pk'; columns: KeyColumn[] } | { kind: 'ctid' };

export interface LeafPlan {
  schema: string;
  table: string;
  /** The configured table the column's policy (and a searchable column's key) belongs to. */
  source: { schema: string; table: string };
  oid: number;
  relkind: string;
  column: string;
  policy: ColumnPolicy;
  valueKind: ValueKind;
  /** jsonb or json, for the json kinds. */
  jsonType: 'jsonb' | 'json';
  key: KeyInfo;
}

/** One configured column and the leaf tables it is stored in. */
export interface ColumnTarget {
  schema: string;
  table: string;
  column: string;
  policy: ColumnPolicy;
  /** Relation kind of the configured table (p = partitioned). */
  relkind: string;
  leaves: LeafPlan[];
}

export function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

export function qualified(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/** `schema.table.column` for messages and result rows (quoted only where needed). */
export function displayName(schema: string, table: string, column?: string): string {
  const q = (s: string) => (/^[a-z_][a-z0-9_$]*$/.test(s) ? s : quoteIdent(s));
  return `${q(schema)}.${q(table)}${column === undefined ? '' : '.' + q(column)}`;
}

export function valueKindOf(baseTypeOid: number, policy: ColumnPolicy): ValueKind {
  if (!isJsonType(baseTypeOid)) return 'text';
  return policy.jsonPaths ? 'json-paths' : 'json-whole';
}

export function jsonTypeOf(baseTypeOid: number): 'jsonb' | 'json' {
  return baseTypeOid === JSONB_OID ? 'jsonb' : 'json';
}

/** The primary key of a table (in key order), or ctid when it has none. */
export async function keyOf(db: Db, oid: number): Promise<KeyInfo> {
  const { rows } = await db.query(
    `SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, NULL) AS type
       FROM pg_catalog.pg_index i
       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
      WHERE i.indrelid = $1::pg_catalog.oid AND i.indisprimary
      ORDER BY pg_catalog.array_position(i.indkey::int2[], a.attnum)`,
    [oid],
  );
  if (rows.length === 0) return { kind: 'ctid' };
  return { kind: 'pk', columns: rows.map((r) => ({ name: String(r.name), type: String(r.type) })) };
}
