// What the searchable-column code is given and what it names things by.
import type { TablePolicy } from '../config/types.js';
import type { KekBackend } from '../crypto/kek/types.js';
import { quoteIdent } from './sql.js';

/** A column as Postgres stores its names (case preserved, unquoted). */
export interface ColumnRef {
  schema: string;
  table: string;
  column: string;
}

/** A configured searchable column. */
export interface SearchableColumn extends ColumnRef {
  /** Empty strings stay empty (not encrypted) unless set, as for ordinary columns. */
  encryptEmpty: boolean;
  /**
   * Columns with the same group share one DEK, so equality (joins, `a.x = b.y`)
   * works between them. Undefined: the column has its own DEK.
   */
  keyGroup?: string;
}

/**
 * The KEK backends, as the keyring has them (the keyring does not expose them
 * yet, see docs/SEARCHABLE.md "Wiring"): the primary wraps new column DEKs,
 * every readable one can unwrap.
 */
export interface KekSource {
  primary: KekBackend;
  /** Every configured backend; may include the primary. */
  readable: KekBackend[];
}

/** A searchable key could not be loaded or created; the proxy must not start (or the column is unusable). */
export class SearchableKeyError extends Error {
  override readonly name = 'SearchableKeyError';
  /** What a client gets when a statement hits it: object_not_in_prerequisite_state. */
  readonly sqlstate = '55000';
}

/**
 * The key table's name for a column's DEK: `column:"schema"."table"."column"`
 * (always quoted: one spelling per column, dots inside names stay unambiguous),
 * or `group:NAME` for a shared key group.
 */
export function keyNameOf(c: ColumnRef & { keyGroup?: string | undefined }): string {
  if (c.keyGroup !== undefined) return `group:${c.keyGroup}`;
  return `column:${quoteIdent(c.schema)}.${quoteIdent(c.table)}.${quoteIdent(c.column)}`;
}

export function columnId(c: ColumnRef): string {
  return `${c.schema}\u0000${c.table}\u0000${c.column}`;
}

export function displayColumn(c: ColumnRef): string {
  return `${c.schema}.${c.table}.${c.column}`;
}

/**
 * The searchable columns of a configuration, with their `key_group`.
 * `keyGroups` maps a column (`schema.table.column`) to a group, overriding the config (tests).
 */
export function searchableColumnsOf(encrypted: readonly TablePolicy[], keyGroups: Record<string, string> = {}): SearchableColumn[] {
  const out: SearchableColumn[] = [];
  for (const t of encrypted) {
    for (const c of t.columns) {
      if (!c.searchable) continue;
      const ref = { schema: t.schema, table: t.table, column: c.column };
      const group = keyGroups[displayColumn(ref)] ?? c.keyGroup;
      out.push({ ...ref, encryptEmpty: c.encryptEmpty, ...(group !== undefined && { keyGroup: group }) });
    }
  }
  return out;
}
