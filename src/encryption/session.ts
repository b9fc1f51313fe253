// One proxy session's encryption: the interceptor the proxy core calls with the
// frames it asked for (see src/proxy/interceptor.ts). Writes: Query and Parse
// texts are planned by the SQL analysis (literals spliced, statements refused),
// Bind parameters and COPY FROM data are encrypted. Comparisons on searchable
// columns are widened to every stored form of the value (searchable-rewrite.ts).
// Reads: DataRows and COPY TO data are decrypted using the result's
// RowDescription and the live catalog.
// docs/ARCHITECTURE.md ("The encryption layer") walks through it.
import type { ResolvedCatalog } from '../catalog/types.js';
import { buildCatalog } from '../catalog/build.js';
import { catalogQuery, type CatalogRow } from '../catalog/query.js';
import { CMEKDecryptionError, KekConfigError } from '../crypto/errors.js';
import { RemoteKekError } from '../crypto/kek/retry.js';
import { BackendCode as B, FrontendCode as F, TxStatus } from '../protocol/codes.js';
import { decodeDataRow } from '../protocol/backend/data-row.js';
import { decodeRowDescription } from '../protocol/backend/row-description.js';
import { decodeParse, encodeParse } from '../protocol/frontend/parse.js';
import { decodeBindHead } from '../protocol/frontend/bind.js';
import { encodeQuery } from '../protocol/frontend/query.js';
import { decodeDescribe, encodeDescribe } from '../protocol/frontend/describe-close.js';
import { decodeExecute } from '../protocol/frontend/execute.js';
import { FORWARD, DROP, type InterceptContext, type Interceptor, type SessionInfo, type Verdict } from '../proxy/interceptor.js';
import type { Pending, ResultShape } from '../proxy/state.js';
import { SqlSession } from '../sql/session.js';
import { quoteLiteral, spliceLiterals } from '../sql/lexical.js';
import type { ColumnTarget, CopyPlan, RewritePlan, SqlPlan, SqlRejection } from '../sql/types.js';
import { SearchableKeyError } from '../searchable/types.js';
import type { EncryptionLayer } from './layer.js';
import { planRows, decryptDataRow, RowDecryptError, type RowPlan, type FieldPlan } from './rows.js';
import { BindCountError, encryptBind, ParamError, type BindPlan } from './params.js';
import { errorFrame, raiseFrames, raiseStatement, SQLSTATE_DECRYPT_FAILED } from './refusal.js';
import { shapeOf, type MaybePromise, type ValueShape } from './values.js';
import { CopyStreams } from './copy-streams.js';
import { runAdmin } from './admin-reply.js';
import type { Edit } from './searchable-rewrite.js';
import { RewriteError } from './searchable-sql.js';
import { rewriteRefusal, SearchableStatements } from './searchable-session.js';

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
  private lastCatalog: ResolvedCatalog | undefined;
  /** Prepared statement name → what its Binds need (parameters to encrypt, searchable candidates to fill). */
  private readonly stmtParams = new Map<string, BindPlan>();
  private readonly searchable: SearchableStatements;
  /** Statements whose text names a configured table: their results need a RowDescription. */
  private readonly readsMapped = new Set<string>();
  /** Portal → its statement, bound without a known RowDescription and not described by the client yet. */
  private readonly undescribed = new Map<string, string>();
  private readonly rowPlans = new WeakMap<ResultShape, RowPlan | null>();
  private readonly copies: CopyStreams;
  /** Extended protocol: a message was refused; drop the client's messages up to Sync. */
  private refusing: SqlRejection | undefined;
  /** A DataRow failed to decrypt: drop the server's replies up to ReadyForQuery. */
  private discarding = false;
  /** DDL went through this session: refresh the database's catalog at the next ReadyForQuery. */
  private ddl = false;
  /** The client has sent extended-protocol messages since its last Sync (its batch is open). */
  private batchOpen = false;

  constructor(
    private readonly layer: EncryptionLayer,
    private readonly info: SessionInfo,
  ) {
    this.sql = new SqlSession(layer.analyzer(info.database));
    this.searchable = new SearchableStatements(layer, info.database, (t) => this.shapeOfTarget(t));
    this.copies = new CopyStreams(layer.codec, (t) => this.shapeOfTarget(t), layer.logger, (t) => this.searchable.key(t));
  }

  // ---- client → server ---------------------------------------------------

  onFrontend(code: number, frame: Buffer, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const atBoundary = !this.batchOpen;
    if (code === F.Sync) this.batchOpen = false;
    else if (code === F.Parse || code === F.Bind || code === F.Describe || code === F.Execute || code === F.Close) this.batchOpen = true;
    if (this.refusing) return this.whileRefusing(code, ctx);
    // The proxy's own queries end with a Sync: only between the client's batches, never inside one.
    if ((code === F.Query || code === F.Parse || code === F.Bind) && atBoundary && this.layer.tables.length > 0 && ctx.state!.queue.length === 0) {
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
        ? this.layer.searchable.maintain(this.info.database, this, ctx, this.catalog() ?? this.lastCatalog)
        : undefined;
    if (!catalog || this.catalog()) return keys();
    return this.loadCatalog(ctx).then(
      () => keys(),
      (err: unknown) => {
        ctx.logger.warn({ reason: (err as Error).message }, 'catalog load failed; positional writes to encrypted tables are refused until it loads');
      },
    );
  }

  private frontend(code: number, frame: Buffer, ctx: InterceptContext): Verdict | Promise<Verdict> {
    switch (code) {
      case F.Query:
        return this.onQuery(frame, ctx);
      case F.Parse:
        return this.onParse(frame, ctx);
      case F.Bind:
        return this.onBind(frame, ctx);
      case F.Describe: {
        const d = decodeDescribe(frame);
        if (d.kind === 'P') this.undescribed.delete(d.name);
        return FORWARD;
      }
      case F.Execute:
        this.learnShape(decodeExecute(frame).portal, ctx);
        return FORWARD;
      case F.CopyData:
      case F.CopyDone:
      case F.CopyFail:
        return this.copies.clientFrame(code, frame);
      default:
        return FORWARD;
    }
  }

  private onQuery(frame: Buffer, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const body = frame.subarray(5, frame.length - 1);
    const plan = this.guard(this.sql.analyze(body));
    if (plan.kind === 'admin') return this.onAdmin(plan.text, ctx);
    if (plan.kind === 'passthrough') {
      if (plan.isDdl) this.ddl = true;
      this.copies.queryForwarded([]);
      return FORWARD;
    }
    if (plan.kind === 'reject') {
      this.copies.queryForwarded([]);
      this.logRefusal(ctx, plan.error);
      // The server raises it: its transaction state then matches what the client is told.
      return encodeQuery(raiseStatement(plan.error));
    }
    if (plan.isDdl) this.ddl = true;
    this.copies.queryForwarded(plan.copies);
    const failed = (e: unknown): Verdict => {
      const error = e instanceof RewriteError ? rewriteRefusal(e, plan) : writeFailure(e);
      this.logRefusal(ctx, error);
      return encodeQuery(raiseStatement(error));
    };
    try {
      const spliced = this.spliceLiterals(body, plan, this.searchable.queryEdits(body, plan));
      const toFrame = (b: Buffer | undefined): Verdict => (b ? queryFrame(b) : FORWARD);
      return spliced instanceof Promise ? spliced.then(toFrame, failed) : toFrame(spliced);
    } catch (e) {
      return failed(e);
    }
  }

  private onParse(frame: Buffer, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const parse = decodeParse(frame);
    const text = Buffer.from(parse.text, 'utf8');
    const plan = this.guard(this.sql.analyze(text));
    this.stmtParams.delete(parse.name);
    this.readsMapped.delete(parse.name);
    if (plan.kind === 'passthrough') {
      if (plan.isDdl) this.ddl = true;
      return FORWARD;
    }
    if (plan.kind === 'admin') return this.refuse(ctx, { code: '0A000', reason: 'internal', message: 'pgcmek: CMEK admin commands must be sent with the simple query protocol (psql, or a query without parameters)' });
    if (plan.kind === 'reject') return this.refuse(ctx, plan.error);
    if (plan.copies.some((c) => c.direction === 'in' && c.viaClient && c.fields.some((f) => f !== null))) {
      return this.refuse(ctx, { code: '0A000', reason: 'internal', message: 'pgcmek: COPY FROM STDIN into an encrypted table must use the simple query protocol' });
    }
    if (plan.isDdl) this.ddl = true;
    this.readsMapped.add(parse.name);
    const failed = (e: unknown): Verdict => this.refuse(ctx, e instanceof RewriteError ? rewriteRefusal(e, plan) : writeFailure(e));
    try {
      const rw = this.searchable.parseRewrite(text, plan, parse.paramTypes);
      if (plan.params.size > 0 || rw) this.stmtParams.set(parse.name, { writes: plan.params, ...(rw && { rewrite: rw }) });
      const fixed = rw && plan.literals.length === 0;
      const spliced = fixed && rw.text !== undefined ? undefined : this.spliceLiterals(text, plan, rw?.edits ?? []);
      const toFrame = (b: Buffer | undefined): Verdict => {
        if (!rw) return b ? encodeParse({ ...parse, text: b.toString('utf8') }) : FORWARD;
        const out = fixed ? (rw.text ??= (b ?? text).toString('utf8')) : (b ?? text).toString('utf8');
        this.searchable.rewritten(out, rw.clientCount);
        return encodeParse({ ...parse, text: out, paramTypes: rw.paramTypes });
      };
      return spliced instanceof Promise ? spliced.then(toFrame, failed) : toFrame(spliced);
    } catch (e) {
      this.stmtParams.delete(parse.name);
      return failed(e);
    }
  }

  private onBind(frame: Buffer, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const head = decodeBindHead(frame);
    const st = ctx.state!;
    if (this.readsMapped.has(head.statement) && st.statements.get(head.statement)?.rowDescription === undefined) this.undescribed.set(head.portal, head.statement);
    else this.undescribed.delete(head.portal);
    const plan = this.stmtParams.get(head.statement);
    if (!plan) return FORWARD;
    try {
      const r = encryptBind(frame, plan, { shapeOf: (t) => this.shapeOfTarget(t), codec: this.layer.codec, key: (t) => this.searchable.key(t) }, head.statement);
      return r instanceof Promise ? r.catch((e: unknown) => this.bindFailed(e, ctx)) : r;
    } catch (e) {
      return this.bindFailed(e, ctx);
    }
  }

  /**
   * Execute of a portal whose rows nobody described (pgbench -M prepared, cached
   * statements): learn the statement's columns first, so its DataRows can be
   * decrypted. Deferred from Bind to here because most clients describe the
   * portal in between (libpq, node-postgres), which makes it unnecessary. The
   * reply is consumed internally; a named statement is described once.
   */
  private learnShape(portal: string, ctx: InterceptContext): void {
    const stmt = this.undescribed.get(portal);
    if (stmt === undefined) return;
    this.undescribed.delete(portal);
    if (ctx.state!.statements.get(stmt)?.rowDescription === undefined) ctx.injectToServer(encodeDescribe({ kind: 'S', name: stmt }));
  }

  private bindFailed(e: unknown, ctx: InterceptContext): Verdict {
    return this.refuse(ctx, writeFailure(e));
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
    const cat = this.catalog();
    if (cat && cat.errors.length > 0) {
      const touched = plan.tablesTouched.find((t) => t.mapped && cat.errors.some((e) => e.includes(`${t.mapped!.schema}.${t.mapped!.table}`)));
      if (touched) return { kind: 'reject', error: { code: '42804', reason: 'internal', message: `pgcmek: ${cat.errors.find((e) => e.includes(`${touched.mapped!.schema}.${touched.mapped!.table}`))}` } };
    }
    return plan;
  }

  /** The text with written literals encrypted and `extra` edits (searchable comparisons) applied; undefined = unchanged. */
  private spliceLiterals(bytes: Buffer, plan: RewritePlan, extra: Edit[]): MaybePromise<Buffer | undefined> {
    if (plan.literals.length === 0 && extra.length === 0) return undefined;
    const texts = plan.literals.map((l) => {
      const pt = Buffer.from(l.value, 'utf8');
      const r = l.target.policy.searchable
        ? this.layer.codec.encryptSearchable(pt, this.searchable.key(l.target))
        : this.layer.codec.encrypt(pt, l.target.policy, this.shapeOfTarget(l.target), false);
      return r instanceof Promise ? r.then((b) => b.toString('utf8')) : r.toString('utf8');
    });
    const build = (vals: string[]) =>
      spliceLiterals(bytes, [...plan.literals.map((l, i) => ({ start: l.start, end: l.end, text: quoteLiteral(vals[i]!) })), ...extra]);
    return texts.some((t) => t instanceof Promise) ? Promise.all(texts).then(build) : build(texts as string[]);
  }

  private onAdmin(text: string, ctx: InterceptContext): Promise<Verdict> | Verdict {
    return runAdmin(this.layer.admin, this.info, text, ctx);
  }

  // ---- server → client ---------------------------------------------------

  onBackend(code: number, frame: Buffer, reply: Pending | undefined, ctx: InterceptContext): Verdict | Promise<Verdict> {
    if (this.discarding) {
      if (code !== B.ReadyForQuery) return code === B.ParameterStatus ? FORWARD : DROP;
      this.discarding = false;
    }
    switch (code) {
      case B.DataRow:
        return this.onDataRow(frame, reply, ctx);
      case B.ReadyForQuery:
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
          return r instanceof Promise ? r.catch((e: unknown) => this.decryptFailed(e, ctx)) : r;
        } catch (e) {
          return this.decryptFailed(e, ctx);
        }
      case B.ParameterDescription:
        // A statement the proxy rewrote has parameters the client never binds: it sees its own.
        return reply?.kind === 'describe' ? this.searchable.trimDescription(frame, ctx.state?.statements.get(reply.name)?.text) : FORWARD;
      case B.ParameterStatus: {
        const [name, value] = frame.subarray(5, frame.length - 1).toString('utf8').split('\0');
        if (name !== undefined && value !== undefined) this.sql.setServerParameter(name, value);
        return FORWARD;
      }
      default:
        return FORWARD;
    }
  }

  private onDataRow(frame: Buffer, reply: Pending | undefined, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const shape = reply?.shape;
    if (!shape) return FORWARD;
    let plan = this.rowPlans.get(shape);
    if (plan === undefined) {
      plan = planRows(shape, this.catalogForShapes(), this.layer.decryptUnmapped);
      this.rowPlans.set(shape, plan);
    }
    if (!plan) return FORWARD;
    const kept = (f: FieldPlan, e: CMEKDecryptionError) =>
      ctx.logger.warn({ table: f.table, column: f.column, reason: e.reason, kekId: e.kekId }, 'value not decrypted; returned as stored (on_decrypt_error: ciphertext)');
    try {
      const r = decryptDataRow(frame, plan, this.layer.codec, kept);
      return r instanceof Promise ? r.catch((e: unknown) => this.decryptFailed(e, ctx)) : r;
    } catch (e) {
      return this.decryptFailed(e, ctx);
    }
  }

  /** Replaces the row with an ErrorResponse and drops the rest of the result (up to ReadyForQuery). */
  private decryptFailed(e: unknown, ctx: InterceptContext): Verdict {
    this.discarding = true;
    if (!(e instanceof RowDecryptError)) {
      // Not a bad value: the KEK backend (or something else) failed. Never fatal to the session.
      const msg = e instanceof Error ? e.message : String(e);
      ctx.logger.warn({ reason: msg }, 'decryption failed: result discarded');
      return errorFrame({ code: e instanceof RemoteKekError ? '58030' : SQLSTATE_DECRYPT_FAILED, message: `CMEKDecryptionError: ${msg}` });
    }
    ctx.logger.warn({ table: e.field.table, column: e.field.column, reason: e.cause.reason, kekId: e.cause.kekId }, 'CMEKDecryptionError: result discarded');
    return errorFrame({
      code: SQLSTATE_DECRYPT_FAILED,
      message: `CMEKDecryptionError: cannot decrypt ${e.field.label}: ${e.cause.message}`,
      hint: e.cause.reason === 'unknown_kek' ? 'load the KEK that wrapped this value (kek.local.previous or the right backend), then retry' : undefined,
      table: e.field.table,
      column: e.field.column,
    });
  }

  // ---- catalog -----------------------------------------------------------

  private catalog(): ResolvedCatalog | undefined {
    const c = this.layer.catalogs.get(this.info.database);
    if (c) this.lastCatalog = c;
    return c;
  }

  /** The catalog as of now, or the last one this session saw (reads keep working while a reload is due). */
  private catalogForShapes(): ResolvedCatalog | undefined {
    return this.catalog() ?? this.lastCatalog;
  }

  private shapeOfTarget(t: ColumnTarget): ValueShape {
    const rel = this.catalogForShapes()?.relation(t.schema, t.table);
    const col = rel?.columns.find((c) => c.name === t.column);
    return shapeOf(col?.baseTypeOid ?? 25);
  }

  /** Runs the catalog query inside this session (an internal request: its replies never reach the client). */
  private loadCatalog(ctx: InterceptContext): Promise<ResolvedCatalog> {
    const tables = this.layer.tables;
    const db = this.info.database;
    return this.layer.catalogs.getOrLoad(db, () =>
      new Promise<ResolvedCatalog>((resolve, reject) => {
        let cols: string[] = [];
        const rows: Partial<CatalogRow>[] = [];
        let failed: string | undefined;
        ctx.injectToServer(encodeQuery(catalogQuery(tables)), {
          message: (code, f) => {
            if (code === B.RowDescription) cols = decodeRowDescription(f).map((x) => x.name);
            else if (code === B.DataRow) {
              const row: Record<string, string | null> = {};
              decodeDataRow(f).forEach((v, i) => (row[cols[i]!] = v === null ? null : v.toString('utf8')));
              rows.push(row as Partial<CatalogRow>);
            } else if (code === B.ErrorResponse) failed = 'the catalog query failed (is the transaction aborted?)';
          },
          done: (_entry, outcome) => {
            if (failed || outcome !== 'ok') return reject(new Error(failed ?? `catalog query ${outcome}`));
            const catalog = buildCatalog(rows, tables);
            this.layer.noteCatalog(db, catalog);
            resolve(catalog);
          },
        });
      }),
    ).then((c) => {
      this.lastCatalog = c;
      return c;
    });
  }

  close(): void {
    this.copies.reset();
    this.layer.searchable.sessionClosed(this);
  }
}

/** A write that could not be encrypted: refused with a SQLSTATE, never forwarded as plaintext. */
function writeFailure(e: unknown): SqlRejection {
  if (e instanceof SearchableKeyError) return { code: e.sqlstate, reason: 'internal', message: e.message.startsWith('pgcmek:') ? e.message : `pgcmek: ${e.message}` };
  if (e instanceof RewriteError) return { code: '0A000', reason: 'unsupported_operator', message: `pgcmek: a comparison on a searchable column cannot be rewritten (${e.message})` };
  if (e instanceof BindCountError) return { code: '08P01', reason: 'internal', message: e.message };
  if (e instanceof ParamError) {
    return { code: '22P02', reason: 'unencryptable_value', message: e.message, table: `${e.target.schema}.${e.target.table}`, column: e.target.column };
  }
  if (e instanceof RemoteKekError || e instanceof KekConfigError) {
    return { code: '58030', reason: 'internal', message: `pgcmek: cannot encrypt: ${e.message}` };
  }
  const msg = e instanceof Error ? e.message : String(e);
  return { code: 'XX000', reason: 'internal', message: `pgcmek: cannot encrypt: ${msg}` };
}

function queryFrame(body: Buffer): Buffer {
  const f = Buffer.allocUnsafe(body.length + 6);
  f[0] = F.Query;
  f.writeInt32BE(body.length + 5, 1);
  body.copy(f, 5);
  f[f.length - 1] = 0;
  return f;
}

export type { CopyPlan };
