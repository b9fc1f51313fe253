// What the proxy gets from the catalog: for each (table OID, attnum) a
// RowDescription field can name, the column policy that applies to it.
import type { ColumnPolicy } from '../config/types.js';

/** How a relation came to carry a configured column. */
export type ColumnVia =
  /** The table named in the config. */
  | 'table'
  /** A partition or inheritance child of it (same column name, own OID and attnum). */
  | 'child'
  /** A view column that is a plain reference to one (possibly through other views). */
  | 'view'
  /** A materialized view column: a stored copy of the (ciphertext) values. */
  | 'matview';

export interface ResolvedColumn {
  /** The relation as a RowDescription names it (the view, the partition...). */
  schema: string;
  table: string;
  column: string;
  tableOid: number;
  attnum: number;
  typeOid: number;
  /** format_type() of the column, e.g. `character varying(200)`. */
  typeName: string;
  policy: ColumnPolicy;
  via: ColumnVia;
  /** The configured table and column the policy comes from. */
  source: { schema: string; table: string; column: string };
}

export interface RelationColumns {
  oid: number;
  schema: string;
  table: string;
  relkind: string;
  /** Non-dropped columns in attnum order (attnums may have gaps). */
  columns: RelationColumn[];
}

export interface RelationColumn {
  name: string;
  attnum: number;
  typeOid: number;
  /** format_type() of the column. */
  typeName: string;
  /** Base type after domains (what decides how values are stored: text or JSON). */
  baseTypeOid: number;
  /** Set when the column is encrypted, with the configured table it comes from. */
  policy?: ColumnPolicy;
  source?: { schema: string; table: string };
}

export interface ResolvedCatalog {
  /** The policy for a RowDescription field's (table OID, column attnum), if any. */
  lookup(tableOid: number, attnum: number): ResolvedColumn | undefined;
  /** Ordered non-dropped column names of a configured table (or a child), for INSERT without a column list and COPY (the same array while the catalog lasts). */
  columnsOf(schema: string, table: string): readonly string[] | undefined;
  /** A configured table or child by name, with each column's policy. */
  relation(schema: string, table: string): RelationColumns | undefined;
  /** The configured tables and their partitions/children, each with all its columns. */
  readonly tables: readonly RelationColumns[];
  /** Every resolved column (tables, children, views). */
  readonly columns: readonly ResolvedColumn[];
  /** Configuration that names something that does not exist: logged, not fatal. */
  readonly warnings: readonly string[];
  /** Configuration that cannot work (a column type that cannot hold an envelope): a startup error. */
  readonly errors: readonly string[];
  /** The error (from `errors`) about one configured column, if any. */
  errorOf(schema: string, table: string, column: string): string | undefined;
}
