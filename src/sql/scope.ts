// Range-table scopes and column resolution: what a column reference in a
// statement denotes — an encrypted column (its values are ciphertext), the output
// of a subquery/VALUES/CTE (its values come from other expressions), a plain
// column, or something the analysis cannot tell.
//
// Resolution is conservative in the direction that matters. A reference counts
// as "encrypted" only when Postgres must resolve it to that column or raise an
// ambiguity error; tables that are not configured may hold any column
// (their catalog is not consulted), so an unqualified name at a level that has
// one is "unknown", which refuses a write rather than guess.
import type { TablePolicy } from '../config/types.js';
import type { Ast } from './ast.js';
import type { ColumnTarget } from './types.js';

/** Where an expression evaluated in `scope` comes from; `elements`: it is an array whose elements are the values. */
export interface Source {
  expr: Ast;
  scope: Scope;
  elements: boolean;
}

export type Origin =
  | { kind: 'encrypted'; target: ColumnTarget }
  | { kind: 'derived'; sources: Source[] }
  /** A set operation's column: every arm's origin. */
  | { kind: 'union'; origins: Origin[] }
  | { kind: 'plain' }
  | { kind: 'unknown' };

export interface DerivedColumn {
  name: string;
  origin: Origin;
}

export interface TableEntry {
  kind: 'table';
  /** Name references use: the alias, else the relation name. */
  refname: string;
  /** Schema as written (undefined when unqualified). */
  schema: string | undefined;
  relname: string;
  hasAlias: boolean;
  policy: TablePolicy | undefined;
  /** Column names from the catalog (mapped tables only; undefined = unknown). */
  columns: readonly string[] | undefined;
  /** Inside a NATURAL join: an unqualified common column is COALESCE(left, right), not this table's. */
  natural?: boolean;
}

export interface DerivedEntry {
  kind: 'derived';
  refname: string | undefined;
  /** Undefined = shape unknown (e.g. a table function). */
  columns: DerivedColumn[] | undefined;
}

export type Entry = TableEntry | DerivedEntry;

/** A WITH query visible by name. */
export interface CteDef {
  name: string;
  columns: DerivedColumn[] | undefined;
}

export class Scope {
  readonly entries: Entry[] = [];
  readonly ctes: Map<string, CteDef>;
  constructor(
    readonly parent?: Scope,
    ctes?: Map<string, CteDef>,
  ) {
    this.ctes = ctes ?? new Map();
  }

  /** The same level without its FROM entries: what a non-LATERAL subquery in FROM sees. */
  withoutEntries(): Scope {
    return new Scope(this.parent, this.ctes);
  }

  findCte(name: string): CteDef | undefined {
    for (let s: Scope | undefined = this; s; s = s.parent) {
      const c = s.ctes.get(name);
      if (c) return c;
    }
    return undefined;
  }
}

const UNKNOWN: Origin = { kind: 'unknown' };
const PLAIN: Origin = { kind: 'plain' };

/** Columns of a table entry in catalog order, as origins (undefined when unknown). */
export function tableColumns(e: TableEntry): DerivedColumn[] | undefined {
  if (!e.columns) return undefined;
  return e.columns.map((c) => {
    const m = tableMember(e, c);
    return { name: c, origin: m.found ? m.origin : PLAIN };
  });
}

type Membership = { found: true; origin: Origin } | { found: false; maybe: boolean };

function tableMember(e: TableEntry, col: string): Membership {
  const p = e.policy;
  const cp = p?.columns.find((c) => c.column === col);
  const listed = e.columns?.includes(col);
  if (p && cp && listed !== false) {
    return { found: true, origin: { kind: 'encrypted', target: { schema: p.schema, table: p.table, column: col, policy: cp } } };
  }
  if (listed === true) return { found: true, origin: PLAIN };
  if (listed === false) return { found: false, maybe: false };
  return { found: false, maybe: true };
}

function derivedMember(e: DerivedEntry, col: string): Membership {
  if (!e.columns) return { found: false, maybe: true };
  const matches = e.columns.filter((c) => c.name === col);
  if (matches.length === 1) return { found: true, origin: matches[0]!.origin };
  if (matches.length > 1) return { found: true, origin: UNKNOWN };
  return { found: false, maybe: false };
}

function member(e: Entry, col: string): Membership {
  return e.kind === 'table' ? tableMember(e, col) : derivedMember(e, col);
}

function entryMatches(e: Entry, qual: string[]): boolean {
  const rel = qual[qual.length - 1]!;
  if (e.refname !== rel) return false;
  if (qual.length === 1) return true;
  // schema.table.col: only an unaliased table entry, in that schema (or unqualified and configured there).
  if (e.kind !== 'table' || e.hasAlias) return false;
  const schema = qual[qual.length - 2]!;
  if (e.schema !== undefined) return e.schema === schema;
  return e.policy ? e.policy.schema === schema : true;
}

/** Resolve a column reference given as its name fields (`[col]`, `[t, col]`, `[s, t, col]`). */
export function resolveColumn(fields: string[], scope: Scope): Origin {
  const col = fields[fields.length - 1]!;
  const qual = fields.slice(0, -1);
  for (let s: Scope | undefined = scope; s; s = s.parent) {
    if (qual.length > 0) {
      const e = s.entries.find((x) => entryMatches(x, qual));
      if (!e) continue;
      const m = member(e, col);
      return m.found ? m.origin : UNKNOWN;
    }
    const found: Origin[] = [];
    let maybe = false;
    for (const e of s.entries) {
      const m = member(e, col);
      if (m.found) {
        // An encrypted column at this level: Postgres picks it or reports ambiguity
        // (not so for a NATURAL join's merged column, which may come from the other side).
        if (m.origin.kind === 'encrypted') {
          if (e.kind === 'table' && e.natural) return UNKNOWN;
          return m.origin;
        }
        found.push(m.origin);
      } else if (m.maybe) maybe = true;
    }
    if (found.length === 1 && !maybe) return found[0]!;
    if (found.length > 0 || maybe) return UNKNOWN;
  }
  return UNKNOWN;
}

/** Entries a `*` or `t.*` expands to, in order; undefined when the columns are unknown. */
export function expandStar(qual: string[], scope: Scope): DerivedColumn[] | undefined {
  let entries: Entry[];
  if (qual.length === 0) entries = scope.entries;
  else {
    let e: Entry | undefined;
    for (let s: Scope | undefined = scope; s && !e; s = s.parent) e = s.entries.find((x) => entryMatches(x, qual));
    if (!e) return undefined;
    entries = [e];
  }
  const out: DerivedColumn[] = [];
  for (const e of entries) {
    if (e.kind === 'derived') {
      if (!e.columns) return undefined;
      out.push(...e.columns);
    } else {
      const cols = tableColumns(e);
      if (!cols) return undefined;
      out.push(...cols);
    }
  }
  return out;
}
