// The plan the SQL analysis hands to the proxy and the encryption layer for one
// Query or Parse message. Every offset is a UTF-8 BYTE offset into the analysed
// text (the message body without its NUL terminator), half-open [start, end),
// so the proxy can splice the original bytes without decoding them again.
import type { ColumnPolicy } from '../config/types.js';

/** A configured (encrypted) column a value lands in or a predicate compares. */
export interface ColumnTarget {
  schema: string;
  table: string;
  column: string;
  policy: ColumnPolicy;
}

export interface ByteRange {
  start: number;
  end: number;
}

/** Bind parameter `$param` carries a value written to an encrypted column. */
export interface ParamSite {
  /** 1-based parameter number. */
  param: number;
  target: ColumnTarget;
  /**
   * The parameter is an array (`unnest($1::text[])`, `SELECT * FROM unnest($1::text[])`):
   * encrypt every non-NULL element, not the array text.
   */
  elements: boolean;
  /** Where `$param` occurs in the text (useful for diagnostics only). */
  ranges: ByteRange[];
}

/**
 * A string literal written to an encrypted column. Replace bytes [start, end) — the
 * whole literal token: quotes, E/U&/N prefixes, UESCAPE clause, dollar quotes and
 * adjacent-string continuations — with a quoted ciphertext (see `quoteLiteral`).
 */
export interface LiteralSite extends ByteRange {
  /** The literal's value as Postgres decodes it (escapes resolved). Never log it. */
  value: string;
  target: ColumnTarget;
}

export interface PredicateLiteral extends ByteRange {
  value: string;
}

export interface PredicateParam extends ByteRange {
  param: number;
}

/**
 * A comparison on a `searchable` column that can only match once the comparison
 * value is encrypted deterministically (issue 6 rewrites it, e.g. `col = $1` →
 * `col = ANY($k)` with the value under every loaded KEK).
 *  - eq:  `col = v`, `col IS NOT DISTINCT FROM v`
 *  - neq: `col <> v`, `col IS DISTINCT FROM v`
 *  - in:  `col IN (v, …)` (negated: `NOT IN`)
 *  - any: `col = ANY($n | ARRAY[…])` (negated: `col <> ALL(…)`)
 */
export interface PredicateSite {
  kind: 'eq' | 'neq' | 'in' | 'any';
  negated: boolean;
  target: ColumnTarget;
  /** Parameters compared (for kind 'any': array parameters). */
  params: PredicateParam[];
  /** String literals compared; each range is the whole literal token. */
  literals: PredicateLiteral[];
  /** Byte offset of the operator (for messages / rewriting anchors). */
  location: number;
}

/** Text/CSV COPY options the CopyData rewriter needs (Postgres defaults applied). */
export interface CopyFormatOptions {
  format: 'text' | 'csv' | 'binary';
  delimiter: string;
  /** The NULL marker (`\N` in text, empty in CSV unless configured). */
  null: string;
  /** CSV only: quote and escape characters. */
  quote: string;
  escape: string;
  /** `true`, `false` or `'match'` (first line is a header). */
  header: boolean | 'match';
  /** COPY … ENCODING; undefined = client_encoding. */
  encoding?: string;
  /** COPY FROM … DEFAULT 'marker' (PG16+). */
  defaultMarker?: string;
  /** CSV: field indexes listed in FORCE_NOT_NULL / FORCE_NULL / FORCE_QUOTE (or 'all'). */
  forceNotNull: number[] | 'all';
  forceNull: number[] | 'all';
  forceQuote: number[] | 'all';
}

/** `COPY t [(cols)] FROM STDIN` in text or CSV format: encrypt these fields. */
export interface CopyInPlan extends CopyFormatOptions {
  direction: 'in';
  /** Index of the COPY statement in the message. */
  statement: number;
  /** False for `FROM 'file'`/`PROGRAM` (only allowed for tables without encrypted columns). */
  viaClient: boolean;
  schema: string | null;
  table: string;
  /** One entry per field of a data row, in order: the encrypted column or null (copy as is). */
  fields: (ColumnTarget | null)[];
}

/** What a field of `COPY … TO STDOUT` output carries. */
export type CopyOutField =
  | { kind: 'plain' }
  | { kind: 'encrypted'; target: ColumnTarget }
  /** An expression over encrypted columns: its text is neither plaintext nor one envelope. */
  | { kind: 'opaque'; columns: ColumnTarget[] }
  /** The analysis could not tell (e.g. `SELECT *` over a table function): decrypt only values carrying a valid envelope. */
  | { kind: 'unknown' };

export interface CopyOutPlan extends CopyFormatOptions {
  direction: 'out';
  statement: number;
  /** False for `TO 'file'`/`PROGRAM`: the server writes ciphertext to the file, nothing to do. */
  viaClient: boolean;
  /** Undefined when the output shape is unknown (treat every field as 'unknown'). */
  fields: CopyOutField[] | undefined;
}

export type CopyPlan = CopyInPlan | CopyOutPlan;

/** A refusal: the proxy answers with an ErrorResponse and does not forward the message. */
export interface SqlRejection {
  /** SQLSTATE: 0A000 (refused), 42601 (syntax), 22021 (bytes not UTF-8), 08P01. */
  code: string;
  /** Stable machine-readable reason (metrics, tests). */
  reason: RejectReason;
  /** Names table.column and the reason; never contains a value. */
  message: string;
  hint?: string;
  /** 1-based character position in the message text (ErrorResponse field P), when known. */
  position?: number;
  table?: string;
  column?: string;
}

export type RejectReason =
  | 'unencryptable_value' // a value for an encrypted column the proxy cannot see/encrypt
  | 'non_string_constant' // a number/boolean/bit-string constant for an encrypted column
  | 'unsupported_cast' // a cast to a non-text type around a value for an encrypted column
  | 'param_conflict' // one $n both encrypted and used as plaintext elsewhere
  | 'incompatible_copy' // copying between encrypted columns with different policies
  | 'not_searchable' // a comparison on a non-searchable encrypted column
  | 'unsupported_operator' // LIKE/</>/BETWEEN… on an encrypted column
  | 'encrypted_expression' // an encrypted column inside an expression in WHERE/ORDER BY/GROUP BY
  | 'unknown_columns' // the column order of a table is unknown (catalog not loaded)
  | 'copy_binary' // COPY … FROM in binary format into an encrypted table
  | 'copy_server_file' // COPY … FROM 'file' / PROGRAM into an encrypted table
  | 'server_side_code' // DO / CREATE FUNCTION / CREATE RULE writing to an encrypted table
  | 'ambiguous_table' // an unqualified name configured in several schemas
  | 'prepared_statement' // SQL-level PREPARE/EXECUTE the proxy cannot follow
  | 'syntax_error' // the parser rejected a statement that mentions an encrypted table
  | 'invalid_utf8' // the message is not valid UTF-8
  | 'session_settings' // client_encoding / standard_conforming_strings the analysis cannot honour
  | 'internal'; // an analysis invariant failed: refuse rather than guess

/** A relation named in a statement. */
export interface TableRef {
  /** As written; null when unqualified. */
  schema: string | null;
  table: string;
  /** The configured table it resolves to, if any. */
  mapped: { schema: string; table: string } | null;
}

/** An argument of a SQL-level `EXECUTE name(args)`, resolved by `SqlSession`. */
export type ExecuteArg = { index: number } & (
  | { kind: 'literal'; value: string; range: ByteRange }
  | { kind: 'param'; param: number; range: ByteRange }
  | { kind: 'null' }
  | { kind: 'other'; description: string; location: number }
);

/** Per-statement facts (one Query message may hold several statements). */
export interface StatementInfo {
  index: number;
  /** The libpg_query node name, e.g. 'InsertStmt', 'CopyStmt'. */
  type: string;
  range: ByteRange;
  /** CREATE/ALTER/DROP/RENAME/… — the catalog cache should refresh afterwards. */
  isDdl: boolean;
  /** `PREPARE name AS …`: what each `$n` of the prepared statement writes to. */
  prepare?: { name: string; params: ParamSite[] };
  /** `EXECUTE name(args)`. */
  execute?: { name: string; args: ExecuteArg[] };
  /** `DEALLOCATE name` (`null` name = ALL) or `DISCARD ALL`. */
  deallocate?: { name: string | null };
}

export interface RewritePlan {
  kind: 'plan';
  /** Bind parameters to encrypt, by parameter number. */
  params: ReadonlyMap<number, ParamSite>;
  /** Literals to replace, sorted by start, non-overlapping. */
  literals: LiteralSite[];
  /** Comparisons on searchable columns (issue 6 rewrites them). */
  predicates: PredicateSite[];
  /** One entry per COPY statement, in statement order. */
  copies: CopyPlan[];
  statements: StatementInfo[];
  /** Relations named anywhere in the message (configured or not). */
  tablesTouched: TableRef[];
  isDdl: boolean;
}

export interface PassthroughPlan {
  kind: 'passthrough';
  /** True when the text holds DDL (catalog refresh), even though nothing needs encryption. */
  isDdl: boolean;
}

export interface AdminPlan {
  kind: 'admin';
  /** The statement text from the `CMEK` keyword on. */
  text: string;
}

export interface RejectPlan {
  kind: 'reject';
  error: SqlRejection;
}

/** Plans are cached and shared between sessions: treat them as read-only. */
export type SqlPlan = PassthroughPlan | AdminPlan | RejectPlan | RewritePlan;

/** Ordered, non-dropped column names of a table from the live catalog; undefined = unknown. */
export type ColumnsOf = (schema: string, table: string) => readonly string[] | undefined;
