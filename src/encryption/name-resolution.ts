// Where this session's server resolves each configured table name, so an
// unqualified name is never encrypted by the wrong table's policy.
//
// The SQL analysis matches an unqualified name as the default search_path
// would: the configured table of that name in `public`, else the only one
// (src/sql/policy.ts). A session can make the server resolve the same name
// elsewhere: `SET search_path`, set_config(), `SET ROLE` (for "$user"), a
// temporary table, a same-named table created in an earlier schema. Then a
// write would be encrypted by the other table's policy: plaintext can land in a
// column that is configured for the real table, and ciphertext in one the
// application reads back undecrypted. So the proxy asks the server, inside the
// session, what each configured name resolves to (`to_regclass` uses the live
// search_path), and refuses writes through a name that resolves to another
// table than the analysis assumed. Prepared statements are checked again at
// each Bind: the server re-resolves them when the search_path changes.
//
// The answer is read again at an idle point (nothing pending, between the
// client's batches) after anything that may have changed it: statements that
// mention the search_path, the role or DISCARD, DDL, and every reply after them
// until the session is out of its transaction (a rollback undoes them); a
// `search_path` ParameterStatus (Postgres 18 reports it, so a change inside a
// function is seen too); every STALE_MS (other sessions' DDL). Before Postgres
// 18 a change hidden in a function is not seen, so a name configured in several
// schemas (where a wrong guess can put plaintext in a configured column) is read
// again before every statement that writes through it. A write that needs a
// fresh answer where none can be read (inside a pipelined batch, or in the very
// message that changes the search_path) is refused.
import type { TablePolicy } from '../config/types.js';
import { sqlLiteral } from '../catalog/query.js';
import { decodeDataRow } from '../protocol/backend/data-row.js';
import { BackendCode as B, TxStatus } from '../protocol/codes.js';
import { encodeQuery } from '../protocol/frontend/query.js';
import type { InterceptContext } from '../proxy/interceptor.js';
import type { RewritePlan, SqlPlan, SqlRejection, TableRef } from '../sql/types.js';

/** Statements that can change where unqualified names resolve. */
const PATH_WORDS = /search_path|set_config|\bset\s+(?:session\s+|local\s+)?role\b|\bsession\s+authorization\b|\breset\s+(?:all|role)\b|\bdiscard\s+(?:all|temp)/i;
/** Other sessions' DDL (a new same-named table in an earlier schema) is noticed within this time. */
export const STALE_MS = 30_000;
/** ParameterStatus names whose change means the resolution may have changed. */
const REPORTED = new Set(['search_path', 'session_authorization', 'role']);
const IDLE = 0x49; // ReadyForQuery 'I'

export class NameResolution {
  /** Configured table name → the schema the analysis assumes for it unqualified. */
  private readonly assumed = new Map<string, string>();
  /** Names configured in several schemas: resolving one wrongly can put plaintext in a configured column. */
  private readonly shared = new Set<string>();
  /** Configured names that resolve elsewhere in this session. */
  private divergent = new Set<string>();
  /** The server reports search_path changes (Postgres 18+): a change inside a function is seen too. */
  private reportsPath = false;
  /** Client messages that run statements (Query, Execute) so far, and how many there were when the resolution was read. */
  private seq = 0;
  private readSeq = -1;
  private dirty = true;
  /** Changed since the session was last idle (see invalidate). */
  private touched = false;
  private readAt = 0;

  constructor(
    tables: readonly TablePolicy[],
    private readonly now: () => number = Date.now,
  ) {
    const byName = new Map<string, TablePolicy[]>();
    for (const t of tables) byName.set(t.table, [...(byName.get(t.table) ?? []), t]);
    for (const [name, list] of byName) {
      // As src/sql/policy.ts: public first, else the only one (several others: refused there as ambiguous).
      const pick = list.find((t) => t.schema === 'public') ?? (list.length === 1 ? list[0] : undefined);
      if (pick) this.assumed.set(name, pick.schema);
      if (list.length > 1) this.shared.add(name);
    }
  }

  /** True when the message may change where names resolve (it marks the resolution dirty). */
  static changesPath(text: string): boolean {
    return PATH_WORDS.test(text);
  }

  get enabled(): boolean {
    return this.assumed.size > 0;
  }

  /**
   * A message that may change the resolution went by: read it again before the
   * next check, and after every reply until the session is out of any
   * transaction (a ROLLBACK, or ROLLBACK TO SAVEPOINT, can undo the change).
   */
  invalidate(): void {
    this.dirty = true;
    this.touched = true;
  }

  /** A ReadyForQuery with the server's transaction status byte. */
  readyForQuery(status: number): void {
    if (!this.touched) return;
    this.dirty = true;
    if (status === IDLE) this.touched = false;
  }

  /** A ParameterStatus from the server. */
  serverParameter(name: string): void {
    if (REPORTED.has(name)) this.dirty = true;
  }

  /** Must be read again before it can be trusted (an idle point reads it). */
  get needsRefresh(): boolean {
    return this.enabled && (this.dirty || this.now() - this.readAt >= STALE_MS);
  }

  /**
   * A client Query or Execute arrived: something may run on the server from
   * here on (a Parse and the Bind after it in one batch see the same resolution).
   */
  statementSent(): void {
    this.seq++;
  }

  /**
   * True when a statement through these names must not be checked before the
   * resolution is read again (now, at an idle point): it may have changed, or a
   * name configured in several schemas is used on a server that does not report
   * search_path changes (a change inside a function would go unseen, and the
   * wrong table's policy could leave plaintext in a configured column).
   */
  wantsRead(names: readonly string[] | undefined): boolean {
    if (names !== undefined && names.length === 0) return false;
    return this.dirty || (this.perMessage(names) && this.readSeq !== this.seq);
  }

  private perMessage(names: readonly string[] | undefined): boolean {
    if (this.reportsPath) return false;
    return names === undefined ? this.shared.size > 0 : names.some((n) => this.shared.has(n));
  }

  /** One row per configured name: the schema of the relation it resolves to now (or NULL), and whether the server reports search_path. */
  query(): string {
    const names = [...this.assumed.keys()].map((n) => `(${sqlLiteral(n)})`).join(', ');
    return (
      "SELECT t.name, n.nspname::text AS nspname, (pg_catalog.current_setting('server_version_num')::int >= 180000)::text AS reports FROM (VALUES " +
      names +
      ') AS t(name) LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident(t.name))' +
      ' LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace'
    );
  }

  /** The query's rows: [name, schema or null, reports]. */
  update(rows: readonly (readonly [string, string | null, boolean])[]): void {
    const divergent = new Set<string>();
    for (const [name, schema, reports] of rows) {
      this.reportsPath = reports;
      const assumed = this.assumed.get(name);
      // No such relation at all: the server refuses the statement itself.
      if (assumed !== undefined && schema !== null && schema !== assumed) divergent.add(name);
    }
    this.divergent = divergent;
    this.dirty = false;
    this.readSeq = this.seq;
    this.readAt = this.now();
  }

  /**
   * The refusal for a statement that writes (or compares) through these
   * unqualified configured names, or undefined when they resolve as assumed.
   * `names` undefined: the statement's tables are not known (EXECUTE of an SQL
   * prepared statement), so any divergence refuses it.
   */
  check(names: readonly string[] | undefined, sameMessageChanges: boolean): SqlRejection | undefined {
    if (names !== undefined && names.length === 0) return undefined;
    if (sameMessageChanges || this.wantsRead(names)) {
      const first = names?.[0] ?? [...this.divergent][0] ?? [...this.assumed.keys()][0]!;
      return refusal(
        `where table name "${first}" resolves is not known here: this message (or one sent with it) may change the search_path or role`,
        'Send SET search_path / SET ROLE in a message of its own, or schema-qualify the table name.',
      );
    }
    if (this.divergent.size === 0) return undefined;
    const bad = names === undefined ? [...this.divergent][0] : names.find((n) => this.divergent.has(n));
    if (bad === undefined) return undefined;
    const assumed = `${this.assumed.get(bad)}.${bad}`;
    return refusal(
      `table name "${bad}" does not resolve to the configured table ${assumed} under this session's search_path (another table of that name comes first)`,
      `Schema-qualify the table name (e.g. ${assumed}), or configure the table the name resolves to.`,
    );
  }
}

function refusal(message: string, hint: string): SqlRejection {
  return { code: '0A000', reason: 'ambiguous_table', message: `pgcmek: ${message}`, hint };
}

/** Reads where the configured names resolve, inside the session (an internal query); never fails the client's message. */
export function readResolution(names: NameResolution, ctx: InterceptContext): Promise<void> {
  return new Promise<void>((resolve) => {
    const rows: [string, string | null, boolean][] = [];
    let failed = false;
    ctx.injectToServer(encodeQuery(names.query()), {
      message: (code, f) => {
        if (code === B.DataRow) {
          const [name, schema, reports] = decodeDataRow(f);
          rows.push([name!.toString('utf8'), schema ? schema.toString('utf8') : null, reports?.toString() === 'true']);
        } else if (code === B.ErrorResponse) failed = true;
      },
      done: (_entry, outcome) => {
        // Not read: it stays dirty, and writes through unqualified names are refused until it is.
        if (!failed && outcome === 'ok') names.update(rows);
        else ctx.logger.warn({ outcome }, 'could not read where table names resolve in this session');
        resolve();
      },
    });
  });
}

/**
 * Refuses a statement that writes (or compares) through an unqualified
 * configured table name resolving to another table in this session.
 */
export function namesRefusal(resolution: NameResolution, names: string[] | undefined, changes: boolean, ctx: InterceptContext): SqlRejection | undefined {
  if (!resolution.enabled || ctx.state!.txStatus === TxStatus.Failed) return undefined;
  return resolution.check(names, changes);
}

/** Read the resolution before checking this message (possible only at an idle point, `idle`). */
export function mustReadNames(resolution: NameResolution, idle: boolean, names: string[] | undefined, changes: boolean, ctx: InterceptContext): boolean {
  return idle && !changes && resolution.enabled && ctx.state!.txStatus !== TxStatus.Failed && resolution.wantsRead(names);
}

/** Statement types that write nothing through the names they mention. */
const READS = new Set(['SelectStmt', 'VariableShowStmt']);
/** Data-modifying statements inside a SELECT (WITH … INSERT): checked like the statements themselves. */
const WRITE_WORDS = /\b(?:insert|update|merge)\b/i;

/**
 * The unqualified configured names a statement writes or compares through
 * ([] when it has nothing to encrypt or rewrite: reads are decrypted by table
 * OID, DDL writes no values); undefined when its tables are not in its text
 * (EXECUTE of an SQL-level prepared statement).
 */
export function writeNames(plan: SqlPlan, text: Buffer): string[] | undefined {
  if (plan.kind !== 'plan') return [];
  // Keyed by the plan's tablesTouched array: every plan the analyzer rebases from
  // one shape's template shares it (sql/templates.ts), so a statement sent with a
  // new literal each time computes its names once per shape, not per text. What
  // they depend on is the same across a shape (see computeWriteNames).
  const key = plan.tablesTouched;
  if (namesOfPlan.has(key)) return namesOfPlan.get(key);
  const names = computeWriteNames(plan, text);
  namesOfPlan.set(key, names);
  return names;
}

const namesOfPlan = new WeakMap<readonly TableRef[], string[] | undefined>();

/**
 * Texts of one shape differ only in literal values and comments, and neither can
 * make a statement write: the counts of values to rewrite, the statement types
 * and the tables are the shape's own. WRITE_WORDS may also match inside a literal
 * or a comment; that only errs toward checking names.
 */
function computeWriteNames(plan: RewritePlan, text: Buffer): string[] | undefined {
  const writes =
    plan.params.size > 0 ||
    plan.literals.length > 0 ||
    plan.predicates.length > 0 ||
    plan.copies.length > 0 ||
    plan.statements.some((s) => !s.isDdl && (!READS.has(s.type) || WRITE_WORDS.test(text.toString('utf8', s.range.start, s.range.end))));
  if (!writes) return [];
  if (plan.statements.some((s) => s.execute)) return undefined;
  return [...new Set(plan.tablesTouched.filter((t) => t.schema === null && t.mapped !== null).map((t) => t.table))];
}
