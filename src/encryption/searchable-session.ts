// One session's side of searchable columns: which statements may run (their
// keys loaded, their columns text), the edits for compared values (literals in
// a Query, new parameters in a Parse), and the ParameterDescription the client
// gets for a rewritten statement (trimmed back to its own parameters: the ones
// the proxy added are invisible to it).
import { ClockCache } from '../cache/clock-cache.js';
import { encodeParameterDescription, decodeParameterDescription } from '../protocol/backend/parameter-description.js';
import type { SearchableColumnKey } from '../searchable/column-key.js';
import { keyNameOf, SearchableKeyError } from '../searchable/types.js';
import type { ColumnTarget, RewritePlan, SqlRejection } from '../sql/types.js';
import type { EncryptionLayer } from './layer.js';
import { literalEdits, planParse, type Edit, type ParseRewrite } from './searchable-rewrite.js';
import { RewriteError } from './searchable-sql.js';
import type { MaybePromise, ValueShape } from './values.js';
import { encodeParse, type Parse } from '../protocol/frontend/parse.js';
import { encodeDescribe } from '../protocol/frontend/describe-close.js';
import type { BindContext, BindPlan } from './params.js';
import { spliceEncryptedLiterals } from './literals.js';

const HINT =
  'pgcmek keeps searchable column keys in pgcmek.searchable_keys and pgcmek.searchable_key_wraps, created on first use. ' +
  'If this role may not create them, create them once as a role that may (connect through pgcmek as the database owner, ' +
  'or run `pgcmek backfill` as one), or run the DDL in docs/SEARCHABLE.md §2, then grant this role USAGE on schema pgcmek ' +
  'and SELECT, INSERT on both tables. Searchable values are never encrypted randomly instead.';

/** Rewritten statements described by the client: bounded, oldest forgotten first. */
const DESCRIBED_MAX = 1024;

const label = (t: ColumnTarget) => `${t.schema}.${t.table}.${t.column}`;
const where = (t: ColumnTarget) => ({ table: `${t.schema}.${t.table}`, column: t.column });

export function keyNameOfTarget(t: ColumnTarget): string {
  return keyNameOf({ schema: t.schema, table: t.table, column: t.column, keyGroup: t.policy.keyGroup });
}

function sameTypes(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Every searchable column a plan writes to or compares. */
function searchableTargets(plan: RewritePlan): ColumnTarget[] {
  const out: ColumnTarget[] = [];
  for (const p of plan.params.values()) if (p.target.policy.searchable) out.push(p.target);
  for (const l of plan.literals) if (l.target.policy.searchable) out.push(l.target);
  for (const p of plan.predicates) out.push(p.target);
  for (const c of plan.copies) if (c.direction === 'in') for (const f of c.fields) if (f?.policy.searchable) out.push(f);
  return out;
}

/** A statement's Parse as the client sent it, kept while it carries a searchable rewrite (to widen it). */
export interface SearchableParse {
  text: Buffer;
  plan: RewritePlan;
  parse: Parse;
}

/** See SearchableStatements.widen(). */
export interface Widened {
  frames: Buffer;
  plan: BindPlan;
}

export class SearchableStatements {
  /** Rewritten statement text (as the server has it) -> the client's parameter count. */
  private readonly clientCounts = new ClockCache<string, number>({ maxEntries: DESCRIBED_MAX });
  /** The last Parse rewrite handed out (plans are immutable and shared, so is a rewrite). */
  private lastRewrite: { plan: RewritePlan; slots: number; types: number[]; rw: ParseRewrite } | undefined;

  constructor(
    private readonly layer: EncryptionLayer,
    private readonly database: string,
    private readonly shapeOf: (t: ColumnTarget) => ValueShape,
  ) {}

  /** A refusal when the plan touches a searchable column that cannot be served now. */
  check(plan: RewritePlan): SqlRejection | undefined {
    const targets = searchableTargets(plan);
    if (targets.length === 0) return undefined;
    const keys = this.layer.searchable.keysFor(this.database);
    for (const t of targets) {
      if (this.shapeOf(t) !== 'text') {
        return { code: '42804', reason: 'internal', message: `pgcmek: searchable column ${label(t)} must be text or varchar: its values are compared as whole strings`, ...where(t) };
      }
      if (!keys?.column(t)) {
        return {
          code: '55000',
          reason: 'internal',
          message: `pgcmek: ${label(t)} is searchable, but its key is not available in database "${this.database}": ${this.layer.searchable.problem(this.database)}`,
          hint: HINT,
          ...where(t),
        };
      }
    }
    return undefined;
  }

  /** A searchable column's key; throws SearchableKeyError (55000) when it is not loaded. */
  key(t: ColumnTarget): SearchableColumnKey {
    const k = this.layer.searchable.keysFor(this.database)?.column(t);
    if (!k) throw new SearchableKeyError(`pgcmek: ${label(t)} is searchable, but its key is not loaded: ${this.layer.searchable.problem(this.database)}`);
    return k;
  }

  /** Simple protocol: each compared literal becomes its candidates. */
  queryEdits(bytes: Buffer, plan: RewritePlan): Edit[] {
    if (plan.predicates.length === 0) return [];
    return literalEdits(
      bytes,
      plan.predicates,
      (site, value) => this.key(site.target).quotedCandidates(Buffer.from(value, 'utf8')),
      () => this.layer.shapeOf(plan, bytes),
    );
  }

  /** Does a rewrite hold fewer candidates per value than a compared key has wrappings now? */
  tooNarrow(rw: ParseRewrite): boolean {
    for (const f of rw.scalars) if (this.key(f.column).group.wrappingCount > f.targets.length) return true;
    return false;
  }

  /**
   * A statement holds the candidates that existed at its Parse. When a compared
   * key has gained a KEK wrapping since (a rotation began between Parse and
   * Bind), the statement is Parsed again, widened, as `serverName` (the unnamed
   * statement as itself, a named one under a name of the proxy's: see
   * session-bind.ts): the frames to inject before the Bind (Parse, and a
   * Describe that learns the row shape; both answered internally) and the Bind
   * plan that goes with them. Lookups keep finding their rows instead of
   * failing with 55000. Undefined: wide enough.
   */
  widen(u: SearchableParse, bp: BindPlan, c: BindContext, serverName: string): MaybePromise<Widened | undefined> {
    if (!bp.rewrite || !this.tooNarrow(bp.rewrite)) return undefined;
    const rw = this.parseRewrite(u.text, u.plan, u.parse.paramTypes)!;
    const done = (b: Buffer | undefined): Widened => {
      const text = (b ?? u.text).toString('utf8');
      this.rewritten(text, rw.clientCount);
      const frames = Buffer.concat([encodeParse({ ...u.parse, name: serverName, text, paramTypes: rw.paramTypes }), encodeDescribe({ kind: 'S', name: serverName })]);
      return { frames, plan: { writes: bp.writes, rewrite: rw } };
    };
    const spliced = spliceEncryptedLiterals(u.text, u.plan, rw.edits, c);
    return spliced instanceof Promise ? spliced.then(done) : done(spliced);
  }

  /** Extended protocol: the Parse rewrite, or undefined when the statement compares nothing searchable. */
  parseRewrite(bytes: Buffer, plan: RewritePlan, clientTypes: readonly number[]): ParseRewrite | undefined {
    if (plan.predicates.length === 0) return undefined;
    if (!this.layer.searchable.keysFor(this.database)) throw new SearchableKeyError(`pgcmek: searchable keys are not loaded: ${this.layer.searchable.problem(this.database)}`);
    // Just the candidates that exist now: with one KEK, `col = $n`. Three padded slots
    // (a fixed arity that would survive a rotation) cost Postgres ~4 µs more per lookup
    // (docs/SEARCHABLE.md §7). A statement bound after its key gained a wrapping is
    // widened first (widen(), session-bind.ts).
    const slots = currentSlots(plan, (t) => this.key(t));
    // Clients that Parse the same statement before every execution (psycopg 3, node-postgres
    // unnamed): the plan object repeats, so the last answer is reused without building its key.
    const last = this.lastRewrite;
    if (last && last.plan === plan && last.slots === slots && sameTypes(last.types, clientTypes)) return last.rw;
    const rw = this.layer.parseRewrite(plan, `${slots}:${clientTypes.join(',')}`, () =>
      planParse(bytes, plan, this.layer.shapeOf(plan, bytes), clientTypes, slots, keyNameOfTarget),
    );
    this.lastRewrite = { plan, slots, types: [...clientTypes], rw };
    return rw;
  }

  /** Remembers a rewritten statement so a Describe of it answers in the client's parameters. */
  rewritten(text: string, clientCount: number): void {
    // The same statement again (an unnamed Parse per execution): a hit marks it, nothing moves.
    if (this.clientCounts.get(text) !== clientCount) this.clientCounts.set(text, clientCount);
  }

  /** A ParameterDescription for statement text `serverText`, trimmed to the client's parameters (undefined: as is). */
  trimDescription(frame: Buffer, serverText: string | undefined): Buffer | undefined {
    if (serverText === undefined) return undefined;
    const n = this.clientCounts.get(serverText);
    if (n === undefined) return undefined;
    const oids = decodeParameterDescription(frame);
    return oids.length > n ? encodeParameterDescription(oids.slice(0, n)) : undefined;
  }
}

/** Candidates per value: the most wrappings any compared column's key has now. */
function currentSlots(plan: RewritePlan, key: (t: ColumnTarget) => SearchableColumnKey): number {
  let n = 1;
  for (const p of plan.predicates) n = Math.max(n, key(p.target).group.wrappingCount);
  return n;
}

/** A comparison that cannot be rewritten: refused with the column named. */
export function rewriteRefusal(e: RewriteError, plan: RewritePlan): SqlRejection {
  const t = plan.predicates[0]?.target;
  return {
    code: '0A000',
    reason: 'unsupported_operator',
    message: `pgcmek: a comparison on searchable column ${t ? label(t) : ''} has a form the proxy cannot rewrite (${e.message}); write it as col = $1, col IN (…) or col = ANY($1)`,
    ...(t && { table: `${t.schema}.${t.table}`, column: t.column }),
  };
}
