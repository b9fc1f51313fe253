// One proxy session's encryption: the interceptor the proxy core calls with the
// frames it asked for (see src/proxy/interceptor.ts). Writes: Query and Parse
// texts are planned by the SQL analysis (literals spliced, statements refused),
// Bind parameters (session-bind.ts) and COPY FROM data are encrypted.
// Comparisons on searchable columns are widened to every stored form of the
// value (searchable-rewrite.ts).
// Reads: DataRows and COPY TO data are decrypted using the result's
// RowDescription and the live catalog (result-rows.ts, session-catalog.ts).
// docs/ARCHITECTURE.md ("The encryption layer") walks through it.
import { isAscii } from 'node:buffer';
import { BackendCode as B, FrontendCode as F, TxStatus } from '../protocol/codes.js';
import { decodeParse, encodeParse, type Parse } from '../protocol/frontend/parse.js';
import { encodeQuery } from '../protocol/frontend/query.js';
import { decodeClose, decodeDescribe } from '../protocol/frontend/describe-close.js';
import { decodeExecute } from '../protocol/frontend/execute.js';
import { FORWARD, DROP, type InterceptContext, type Interceptor, type SessionInfo, type Verdict } from '../proxy/interceptor.js';
import type { Pending } from '../proxy/state-types.js';
import { SqlSession } from '../sql/session.js';
import type { CopyPlan, RewritePlan, SqlPlan, SqlRejection } from '../sql/types.js';
import type { EncryptionLayer } from './layer.js';
import type { BindContext, BindPlan } from './params.js';
import { spliceEncryptedLiterals } from './literals.js';
import { errorFrame, raiseFrames, raiseStatement, writeFailure } from './refusal.js';
import { CopyStreams } from './copy-streams.js';
import { mustReadNames, NameResolution, namesRefusal, readResolution, writeNames } from './name-resolution.js';
import { runAdmin } from './admin-reply.js';
import { RewriteError } from './searchable-sql.js';
import { SessionBinds } from './session-bind.js';
import { SessionCatalog } from './session-catalog.js';
import { ResultRows } from './result-rows.js';
import { rewriteRefusal, SearchableStatements, type SearchableParse } from './searchable-session.js';
import { NameMap } from '../proxy/names.js';

/** SQL that may drop prepared statements (a quick test before dropDeallocated). */
const DROPS_STATEMENTS = /deallocate|discard/i;
/** DEALLOCATE [PREPARE] name | ALL, DISCARD ALL: which names they drop. */
const DEALLOCATE = /\bdeallocate\s+(?:prepare\s+)?(?:(all)\b|"((?:[^"]|"")*)"|([a-z_\u0080-\uffff][\w$\u0080-\uffff]*))|\bdiscard\s+(all)\b/gi;

const FRONTEND = [F.Query, F.Parse, F.Bind, F.Execute, F.Describe, F.Close, F.Sync, F.Flush, F.CopyData, F.CopyDone, F.CopyFail];
const BACKEND = [
  B.RowDescription, B.DataRow, B.CommandComplete, B.ReadyForQuery, B.ErrorResponse, B.PortalSuspended, B.EmptyQueryResponse,
  B.NoData, B.ParameterDescription, B.ParseComplete, B.BindComplete, B.CloseComplete, B.CopyInResponse, B.CopyOutResponse,
  B.CopyBothResponse, B.CopyData, B.CopyDone, B.ParameterStatus,
];

export class EncryptionSession implements Interceptor {
  readonly frontendCodes = FRONTEND;
  readonly backendCodes = BACKEND;
  readonly trackState = true;

  private readonly sql: SqlSession;
  private readonly cat: SessionCatalog;
  private readonly rows: ResultRows;
  /** Prepared statement name → what its Binds need (parameters to encrypt, searchable candidates to fill). */
  private readonly stmtParams = new NameMap<BindPlan>();
  /** Statement → the client's Parse, while the statement exists and carries a searchable rewrite (SearchableStatements.widen). */
  private readonly searchParses = new NameMap<SearchableParse>();
  private readonly searchable: SearchableStatements;
  /** Statements whose text names a configured table: their results need a RowDescription. */
  private readonly readsMapped = new NameMap<true>();
  /** Portal → its statement, bound without a known RowDescription and not described by the client yet. */
  private readonly undescribed = new NameMap<string>();
  private readonly copies: CopyStreams;
  /** Extended protocol: a message was refused; drop the client's messages up to Sync. */
  private refusing: SqlRejection | undefined;
  /** DDL went through this session: refresh the database's catalog at the next ReadyForQuery. */
  private ddl = false;
  /** The client has sent extended-protocol messages since its last Sync (its batch is open). */
  private batchOpen = false;
  /** Where this session's server resolves the configured table names (name-resolution.ts). */
  private readonly names: NameResolution;
  /** Statement → the unqualified configured names its writes go through (checked again at each Bind). */
  private readonly stmtNames = new NameMap<string[] | undefined>();
  /** The message being handled arrived at an idle point: the proxy may run its own queries before it. */
  private idle = false;
  private readonly bindContext: BindContext;
  /** The Bind path (session-bind.ts), over the maps above. */
  private readonly binds: SessionBinds;

  constructor(
    private readonly layer: EncryptionLayer,
    private readonly info: SessionInfo,
  ) {
    this.sql = new SqlSession(layer.analyzer(info.database));
    this.cat = new SessionCatalog(layer, info.database);
    this.rows = new ResultRows(layer, this.cat);
    this.searchable = new SearchableStatements(layer, info.database, (t) => this.cat.shapeOf(t));
    this.copies = new CopyStreams(layer.codec, (t) => this.cat.shapeOf(t), layer.logger, (t) => this.searchable.key(t));
    this.names = new NameResolution(layer.tables);
    this.bindContext = { shapeOf: (t) => this.cat.shapeOf(t), codec: layer.codec, key: (t) => this.searchable.key(t) };
    this.binds = new SessionBinds(this.stmtParams, this.readsMapped, this.undescribed, this.stmtNames, this.names, this.searchable, this.bindContext, (c, e) => this.refuse(c, e));
  }

  // ---- client → server ---------------------------------------------------

  onFrontend(code: number, frame: Buffer, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const atBoundary = !this.batchOpen;
    if (code === F.Sync) this.batchOpen = false;
    else if (code === F.Parse || code === F.Bind || code === F.Describe || code === F.Execute || code === F.Close) this.batchOpen = true;
    if (this.refusing) return this.whileRefusing(code, ctx);
    if (code === F.Query || code === F.Execute) this.names.statementSent();
    const statement = code === F.Query || code === F.Parse || code === F.Bind;
    this.idle = statement && atBoundary && this.layer.tables.length > 0 && ctx.state!.queue.length === 0;
    // The proxy's own queries end with a Sync: only between the client's batches, never inside one.
    if (this.idle) {
      const ready = this.idlePoint(ctx, code !== F.Bind);
      if (ready) return ready.then(() => this.frontend(code, frame, ctx));
    }
    return this.frontend(code, frame, ctx);
  }

  /**
   * Nothing is pending on the session: the proxy may use its connection. Loads
   * the catalog when missing (`catalog`: not before a Bind, whose unnamed
   * statement its Query would destroy), then loads or refreshes the database's
   * searchable keys when due (only outside a transaction: key-table writes must
   * not join one; a Bind counts, so sessions that only run prepared statements
   * keep learning new KEK wrappings).
   */
  private idlePoint(ctx: InterceptContext, catalog: boolean): Promise<void> | undefined {
    const keys = () =>
      this.layer.searchable.enabled && ctx.state!.txStatus === TxStatus.Idle
        ? this.layer.searchable.maintain(this.info.database, this, ctx, this.cat.forShapes())
        : undefined;
    // Injected first: it then shares the round trip with the catalog query.
    const names = this.names.needsRefresh && ctx.state!.txStatus !== TxStatus.Failed ? readResolution(this.names, ctx) : undefined;
    let rest: Promise<void> | undefined;
    if (!catalog || this.cat.current()) rest = keys();
    else {
      rest = this.cat.load(ctx).then(
        () => keys(),
        (err: unknown) => {
          ctx.logger.warn({ reason: (err as Error).message }, 'catalog load failed; positional writes to encrypted tables are refused until it loads');
        },
      );
    }
    if (!names) return rest;
    return rest ? Promise.all([names, rest]).then(() => undefined) : names;
  }

  private frontend(code: number, frame: Buffer, ctx: InterceptContext): Verdict | Promise<Verdict> {
    switch (code) {
      case F.Query:
        this.searchParses.delete(''); // a Query destroys the unnamed statement
        if (this.searchParses.size > 0) this.dropDeallocated(frame, ctx);
        return this.onQuery(frame, ctx);
      case F.Parse:
        return this.onParse(frame, ctx);
      case F.Bind:
        return this.binds.onBind(frame, ctx, this.searchParses, this.idle);
      case F.Describe: {
        const d = decodeDescribe(frame);
        if (d.kind === 'P') this.undescribed.delete(d.name);
        return FORWARD;
      }
      case F.Execute:
        this.binds.learnShape(decodeExecute(frame).portal, ctx);
        return FORWARD;
      case F.Close: {
        const c = decodeClose(frame);
        if (c.kind === 'S') {
          this.searchParses.delete(c.name);
          this.binds.forget(c.name, ctx);
        }
        return FORWARD;
      }
      case F.CopyData:
      case F.CopyDone:
      case F.CopyFail:
        return this.copies.clientFrame(code, frame);
      default:
        return FORWARD;
    }
  }

  /**
   * Statements a Query may drop by SQL are forgotten (their Parse, and a wider
   * form the proxy made: session-bind.ts), so a Bind of a dropped name fails at
   * the server as it should, not through the proxy's copy. A name matched in a
   * string literal is forgotten too: its Binds then keep the candidates of
   * their Parse (55000 if a rotation needs more), never a wrong statement.
   */
  private dropDeallocated(frame: Buffer, ctx: InterceptContext): void {
    const text = frame.toString('utf8', 5, frame.length - 1);
    if (!DROPS_STATEMENTS.test(text)) return;
    for (const m of text.matchAll(DEALLOCATE)) {
      if (m[1] !== undefined || m[4] !== undefined) {
        this.searchParses.clear();
        this.binds.forgetAll(ctx);
        return;
      }
      const name = m[2] !== undefined ? m[2].replace(/""/g, '"') : m[3]!.toLowerCase();
      this.searchParses.delete(name);
      this.binds.forget(name, ctx);
    }
  }

  private onQuery(frame: Buffer, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const body = frame.subarray(5, frame.length - 1);
    // ASCII (nearly every statement): one decode serves the keyword tests and the analyzer.
    const text = isAscii(body) ? body.toString('latin1') : undefined;
    const changes = this.names.enabled && NameResolution.changesPath(text ?? body.toString('latin1'));
    const plan = this.guard(this.sql.analyze(body, text));
    if (plan.kind === 'admin') return this.onAdmin(plan.text, ctx);
    if (plan.kind === 'passthrough') {
      if (changes || plan.isDdl) this.names.invalidate();
      if (plan.isDdl) this.ddl = true;
      this.copies.queryForwarded([]);
      return FORWARD;
    }
    if (plan.kind === 'reject') {
      if (changes) this.names.invalidate();
      this.copies.queryForwarded([]);
      this.logRefusal(ctx, plan.error);
      // The server raises it: its transaction state then matches what the client is told.
      return encodeQuery(raiseStatement(plan.error));
    }
    const names = writeNames(plan, body);
    if (mustReadNames(this.names, this.idle, names, changes, ctx)) return readResolution(this.names, ctx).then(() => this.queryPlanned(body, plan, names, changes, ctx));
    return this.queryPlanned(body, plan, names, changes, ctx);
  }

  private queryPlanned(body: Buffer, plan: RewritePlan, names: string[] | undefined, changes: boolean, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const misresolved = namesRefusal(this.names, names, changes, ctx);
    if (changes || plan.isDdl) this.names.invalidate();
    if (misresolved) {
      this.copies.queryForwarded([]);
      this.logRefusal(ctx, misresolved);
      return encodeQuery(raiseStatement(misresolved));
    }
    if (plan.isDdl) this.ddl = true;
    this.copies.queryForwarded(plan.copies);
    const failed = (e: unknown): Verdict => {
      const error = e instanceof RewriteError ? rewriteRefusal(e, plan) : writeFailure(e);
      this.logRefusal(ctx, error);
      return encodeQuery(raiseStatement(error));
    };
    try {
      const spliced = spliceEncryptedLiterals(body, plan, this.searchable.queryEdits(body, plan), this.bindContext, F.Query);
      const toFrame = (b: Buffer | undefined): Verdict => b ?? FORWARD;
      return spliced instanceof Promise ? spliced.then(toFrame, failed) : toFrame(spliced);
    } catch (e) {
      return failed(e);
    }
  }

  private onParse(frame: Buffer, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const parse = decodeParse(frame);
    const text = Buffer.from(parse.text, 'utf8');
    const changes = this.names.enabled && NameResolution.changesPath(parse.text);
    const plan = this.guard(this.sql.analyze(text, parse.text));
    const names = writeNames(plan, text);
    if (plan.kind === 'plan' && mustReadNames(this.names, this.idle, names, changes, ctx)) return readResolution(this.names, ctx).then(() => this.parsePlanned(parse, text, plan, names, changes, ctx));
    return this.parsePlanned(parse, text, plan, names, changes, ctx);
  }

  private parsePlanned(parse: Parse, text: Buffer, plan: SqlPlan, names: string[] | undefined, changes: boolean, ctx: InterceptContext): Verdict | Promise<Verdict> {
    // This message's own check knows it may change the resolution; later ones find it dirty.
    const checked = plan.kind === 'plan' ? namesRefusal(this.names, names, changes, ctx) : undefined;
    if (changes || ((plan.kind === 'plan' || plan.kind === 'passthrough') && plan.isDdl)) this.names.invalidate();
    this.stmtParams.delete(parse.name);
    this.searchParses.delete(parse.name);
    this.binds.forget(parse.name, ctx);
    this.readsMapped.delete(parse.name);
    this.stmtNames.delete(parse.name);
    if (plan.kind === 'passthrough') {
      if (plan.isDdl) this.ddl = true;
      return FORWARD;
    }
    if (plan.kind === 'admin') return this.refuse(ctx, { code: '0A000', reason: 'internal', message: 'pgcmek: CMEK admin commands must be sent with the simple query protocol (psql, or a query without parameters)' });
    if (plan.kind === 'reject') return this.refuse(ctx, plan.error);
    if (plan.copies.some((c) => c.direction === 'in' && c.viaClient && c.fields.some((f) => f !== null))) {
      return this.refuse(ctx, { code: '0A000', reason: 'internal', message: 'pgcmek: COPY FROM STDIN into an encrypted table must use the simple query protocol' });
    }
    if (checked) return this.refuse(ctx, checked);
    if (names === undefined || names.length > 0) this.stmtNames.set(parse.name, names);
    if (plan.isDdl) this.ddl = true;
    this.readsMapped.set(parse.name, true);
    const failed = (e: unknown): Verdict => this.refuse(ctx, e instanceof RewriteError ? rewriteRefusal(e, plan) : writeFailure(e));
    try {
      const rw = this.searchable.parseRewrite(text, plan, parse.paramTypes);
      if (plan.params.size > 0 || rw) this.stmtParams.set(parse.name, { writes: plan.params, ...(rw && { rewrite: rw }) });
      if (rw) this.searchParses.set(parse.name, { text, plan, parse });
      const fixed = rw && plan.literals.length === 0;
      const spliced = fixed && rw.text !== undefined ? undefined : spliceEncryptedLiterals(text, plan, rw?.edits ?? [], this.bindContext);
      const toFrame = (b: Buffer | undefined): Verdict => {
        if (!rw) return b ? encodeParse({ ...parse, text: b.toString('utf8') }) : FORWARD;
        const out = fixed ? (rw.text ??= (b ?? text).toString('utf8')) : (b ?? text).toString('utf8');
        this.searchable.rewritten(out, rw.clientCount);
        if (!fixed) return encodeParse({ ...parse, text: out, paramTypes: rw.paramTypes });
        // A fixed rewrite Parsed again (an unnamed statement per execution): the same frame, built once.
        const last = rw.encoded;
        if (last?.name === parse.name) return last.frame;
        const frame = encodeParse({ ...parse, text: out, paramTypes: rw.paramTypes });
        rw.encoded = { name: parse.name, frame };
        return frame;
      };
      return spliced instanceof Promise ? spliced.then(toFrame, failed) : toFrame(spliced);
    } catch (e) {
      this.stmtParams.delete(parse.name);
      return failed(e);
    }
  }

  /** Extended protocol refusal: the error now (in order), the rest of the batch dropped, the server told at Sync. */
  private refuse(ctx: InterceptContext, error: SqlRejection): Verdict {
    this.logRefusal(ctx, error);
    this.refusing = error;
    ctx.sendToClient(errorFrame(error));
    return DROP;
  }

  private whileRefusing(code: number, ctx: InterceptContext): Verdict {
    if (code === F.Flush) return FORWARD; // earlier replies (and so our error) must still reach a client that flushes
    if (code !== F.Sync) return DROP;
    // Make the server fail this batch too (its implicit transaction rolls back, an explicit one aborts),
    // then let the Sync through: the client gets the server's real ReadyForQuery.
    ctx.injectToServer(raiseFrames(this.refusing!));
    this.refusing = undefined;
    return FORWARD;
  }

  private logRefusal(ctx: InterceptContext, e: SqlRejection): void {
    ctx.logger.info({ code: e.code, reason: e.reason, table: e.table, column: e.column }, 'statement refused');
    this.layer.opts.observer?.refused?.(e);
  }

  /** Refusals that depend on the live catalog or on loaded searchable keys. */
  private guard(plan: SqlPlan): SqlPlan {
    if (plan.kind !== 'plan') return plan;
    const searchable = this.searchable.check(plan);
    if (searchable) return { kind: 'reject', error: searchable };
    const cat = this.cat.current();
    if (cat && cat.errors.length > 0) {
      const touched = plan.tablesTouched.find((t) => t.mapped && cat.errors.some((e) => e.includes(`${t.mapped!.schema}.${t.mapped!.table}`)));
      if (touched) return { kind: 'reject', error: { code: '42804', reason: 'internal', message: `pgcmek: ${cat.errors.find((e) => e.includes(`${touched.mapped!.schema}.${touched.mapped!.table}`))}` } };
    }
    return plan;
  }

  /** The text with written literals encrypted and `extra` edits (searchable comparisons) applied; undefined = unchanged. */
  private onAdmin(text: string, ctx: InterceptContext): Promise<Verdict> | Verdict {
    return runAdmin(this.layer.admin, this.info, text, ctx);
  }

  // ---- server → client ---------------------------------------------------

  /** DataRows of a result with no configured column skip onBackend (decrypt_unmapped looks at every row). */
  passesRows(reply: Pending | undefined): boolean {
    return !this.layer.decryptUnmapped && this.rows.passes(reply);
  }

  onBackend(code: number, frame: Buffer, reply: Pending | undefined, ctx: InterceptContext): Verdict | Promise<Verdict> {
    if (this.rows.discarding) {
      if (code !== B.ReadyForQuery) return code === B.ParameterStatus ? FORWARD : DROP;
      this.rows.discarding = false;
    }
    switch (code) {
      case B.DataRow:
        return this.rows.dataRow(frame, reply, ctx);
      case B.ReadyForQuery:
        this.names.readyForQuery(frame[5]!);
        if (reply?.kind === 'query') this.copies.queryDone();
        this.copies.reset();
        if (this.ddl) {
          this.ddl = false;
          this.layer.catalogs.invalidate(this.info.database);
        }
        return FORWARD;
      case B.CopyInResponse:
      case B.CopyOutResponse:
      case B.CopyBothResponse:
      case B.CopyData:
      case B.CopyDone:
        try {
          const r = this.copies.serverFrame(code, frame);
          return r instanceof Promise ? r.catch((e: unknown) => this.rows.failed(e, ctx)) : r;
        } catch (e) {
          return this.rows.failed(e, ctx);
        }
      case B.ParameterDescription:
        // A statement the proxy rewrote has parameters the client never binds: it sees its own.
        return reply?.kind === 'describe' ? this.searchable.trimDescription(frame, ctx.state?.statements.get(reply.name)?.text) : FORWARD;
      case B.ParameterStatus: {
        const [name, value] = frame.subarray(5, frame.length - 1).toString('utf8').split('\0');
        if (name !== undefined && value !== undefined) {
          this.sql.setServerParameter(name, value);
          this.names.serverParameter(name);
        }
        return FORWARD;
      }
      default:
        return FORWARD;
    }
  }

  close(): void {
    this.copies.reset();
    this.layer.searchable.sessionClosed(this);
  }
}

export type { CopyPlan };
