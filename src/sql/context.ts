// Mutable state of one analysis: what was found so far (value sites, comparison
// sites, parameter uses, relations, COPY plans) and the inputs every walker needs.
import type { ColumnPolicy, TablePolicy } from '../config/types.js';
import type { Ast } from './ast.js';
import { qualified, refuse } from './errors.js';
import type { PolicyIndex } from './policy.js';
import type { Scope, DerivedColumn } from './scope.js';
import type { ColumnTarget, ColumnsOf, CopyPlan, PredicateSite, TableRef } from './types.js';

/** Output of a query level: its scope and output columns (undefined = unknown shape). */
export interface QueryOutput {
  scope: Scope;
  columns: DerivedColumn[] | undefined;
}

export interface ValueParam {
  target: ColumnTarget;
  elements: boolean;
  locations: Set<number>;
}

/** A predicate site before literal ranges are known (locations only). */
export interface PredicateDraft extends Omit<PredicateSite, 'params' | 'literals'> {
  params: { param: number; location: number }[];
  literals: { location: number; value: string }[];
}

/** Parameter bookkeeping; swapped out while analysing the body of a SQL-level PREPARE. */
export interface ParamState {
  /** Every occurrence of every `$n`. */
  occurrences: Map<number, Set<number>>;
  /** `$n` whose value lands in an encrypted column. */
  values: Map<number, ValueParam>;
  /** Occurrences consumed by searchable comparisons (rewritten by issue 6). */
  predicateLocations: Set<number>;
}

export function newParamState(): ParamState {
  return { occurrences: new Map(), values: new Map(), predicateLocations: new Set() };
}

/**
 * Values of the two columns are interchangeable ciphertext. Searchable columns
 * also need one key (the same column, or one `key_group`): with different keys
 * equal plaintexts are different strings, so a join could never match and a
 * copied value could never be found.
 */
export function samePolicy(a: ColumnPolicy, b: ColumnPolicy): boolean {
  return (
    a.searchable === b.searchable &&
    a.encryptEmpty === b.encryptEmpty &&
    JSON.stringify(a.jsonPaths ?? null) === JSON.stringify(b.jsonPaths ?? null) &&
    (!a.searchable || a === b || (a.keyGroup !== undefined && a.keyGroup === b.keyGroup))
  );
}

export function sameColumn(a: ColumnTarget, b: ColumnTarget): boolean {
  return a.schema === b.schema && a.table === b.table && a.column === b.column;
}

export class AnalysisContext {
  params: ParamState = newParamState();
  readonly literals = new Map<number, { value: string; target: ColumnTarget }>();
  readonly predicates = new Map<number, PredicateDraft>();
  readonly tables = new Map<string, TableRef>();
  readonly copies: CopyPlan[] = [];
  readonly selects = new WeakMap<Ast, QueryOutput>();
  /** Catalog answers this analysis depended on (re-checked on cache hits). */
  readonly deps = new Map<string, { schema: string; table: string; columns: readonly string[] | undefined }>();
  /** Set by statement walkers that create relations (SELECT … INTO). */
  ddl = false;
  depth = 0;

  constructor(
    readonly policy: PolicyIndex,
    private readonly catalog: ColumnsOf,
    readonly text: string,
    readonly bytes: Buffer,
  ) {}

  columnsOf(schema: string, table: string): readonly string[] | undefined {
    const key = `${schema}\0${table}`;
    const known = this.deps.get(key);
    if (known) return known.columns;
    const columns = this.catalog(schema, table);
    this.deps.set(key, { schema, table, columns });
    return columns;
  }

  /** The configured table a RangeVar names (records it as touched). */
  lookupTable(rv: Ast): TablePolicy | undefined {
    const schema = rv.schemaname as string | undefined;
    const table = rv.relname as string;
    const p = this.policy.lookup(schema, table);
    if (p === 'ambiguous') {
      refuse('ambiguous_table', `table name "${table}" is configured in several schemas; qualify it with its schema`, {
        location: rv.location,
      });
    }
    const key = `${schema ?? ''}\0${table}`;
    if (!this.tables.has(key)) {
      this.tables.set(key, { schema: schema ?? null, table, mapped: p ? { schema: p.schema, table: p.table } : null });
    }
    return p;
  }

  noteParam(n: number, location: number): void {
    let s = this.params.occurrences.get(n);
    if (!s) this.params.occurrences.set(n, (s = new Set()));
    s.add(location);
  }

  claimValueParam(n: number, location: number, target: ColumnTarget, elements: boolean): void {
    this.noteParam(n, location);
    const prev = this.params.values.get(n);
    if (!prev) {
      this.params.values.set(n, { target, elements, locations: new Set([location]) });
      return;
    }
    if (prev.elements !== elements || !(sameColumn(prev.target, target) || samePolicy(prev.target.policy, target.policy))) {
      refuse(
        'param_conflict',
        `parameter $${n} is written to ${qualified(prev.target)} and to ${qualified(target)}, which need different encryption; bind the value once per column`,
        { target, location },
      );
    }
    prev.locations.add(location);
  }

  claimPredicateParam(n: number, location: number): void {
    this.noteParam(n, location);
    this.params.predicateLocations.add(location);
  }

  claimLiteral(location: number, value: string, target: ColumnTarget): void {
    const prev = this.literals.get(location);
    if (prev && !(sameColumn(prev.target, target) || samePolicy(prev.target.policy, target.policy))) {
      refuse('param_conflict', `a literal is written to ${qualified(prev.target)} and to ${qualified(target)}`, {
        target,
        location,
      });
    }
    this.literals.set(location, { value, target });
  }

  /** Every occurrence of an encrypted `$n` must be a value site or a searchable comparison. */
  checkParamConflicts(state: ParamState = this.params): void {
    for (const [n, v] of state.values) {
      for (const loc of state.occurrences.get(n) ?? []) {
        if (v.locations.has(loc) || state.predicateLocations.has(loc)) continue;
        refuse(
          'param_conflict',
          `parameter $${n} is written to encrypted column ${qualified(v.target)} and also used elsewhere in the statement, where it would be ciphertext; bind the value separately for each use`,
          { target: v.target, location: loc },
        );
      }
    }
  }
}
