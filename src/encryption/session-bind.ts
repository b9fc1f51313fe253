// One session's Binds: a prepared statement's parameters encrypted (params.ts)
// after its configured names are checked again, a searchable statement widened
// first when a rotation began since its Parse, and an undescribed portal's row
// shape learnt at its Execute. Owned by the session (session.ts).
//
// Widening: the unnamed statement is simply Parsed again, wider. A named one
// cannot be: Close and Parse under the same name would lose the client's
// statement if the Parse failed (in an aborted transaction, say). So the wider
// form is Parsed under a name of the proxy's (`pgcmek_wide_N`) and the client's
// Binds of that statement go to it; if that Parse fails, the Bind fails with
// it (the server skips to Sync), the client's statement is untouched and the
// next Bind tries again. The client's Close or new Parse of the name closes
// the proxy's statement too.
import { decodeBindHead } from '../protocol/frontend/bind.js';
import { encodeClose, encodeDescribe } from '../protocol/frontend/describe-close.js';
import { DROP, FORWARD, type InterceptContext, type Verdict } from '../proxy/interceptor.js';
import type { NameMap } from '../proxy/names.js';
import type { SqlRejection } from '../sql/types.js';
import { encryptBind, type BindContext, type BindPlan } from './params.js';
import { writeFailure } from './refusal.js';
import type { MaybePromise } from './values.js';
import { mustReadNames, namesRefusal, readResolution, type NameResolution } from './name-resolution.js';
import type { SearchableParse, SearchableStatements, Widened } from './searchable-session.js';

/** Statements the proxy Parses in place of a client's named statement start with this. */
export const WIDE_PREFIX = 'pgcmek_wide_';

/** A client's named statement served by a wider one of the proxy's. */
interface WideStatement {
  server: string;
  /** The client's Parse it widens: another Parse of the name makes it stale. */
  parse: SearchableParse;
  plan: BindPlan;
}

type BindHead = ReturnType<typeof decodeBindHead>;

/** The same Bind naming statement `server` (portal, values and formats byte for byte). */
export function renameBindStatement(frame: Buffer, head: BindHead, server: string): Buffer {
  const at = 5 + Buffer.byteLength(head.portal) + 1;
  const rest = at + Buffer.byteLength(head.statement) + 1;
  const name = Buffer.byteLength(server);
  const out = Buffer.allocUnsafe(frame.length - (rest - at) + name + 1);
  frame.copy(out, 0, 0, at);
  out.write(server, at, 'utf8');
  out[at + name] = 0;
  frame.copy(out, at + name + 1, rest);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

export class SessionBinds {
  /** The session's own maps and helpers (EncryptionSession documents each), shared, not copied. */
  constructor(
    private readonly stmtParams: NameMap<BindPlan>,
    private readonly readsMapped: NameMap<true>,
    private readonly undescribed: NameMap<string>,
    private readonly stmtNames: NameMap<string[] | undefined>,
    private readonly names: NameResolution,
    private readonly searchable: SearchableStatements,
    private readonly bindContext: BindContext,
    /** The session's extended-protocol refusal (EncryptionSession.refuse). */
    private readonly refuse: (ctx: InterceptContext, error: SqlRejection) => Verdict,
  ) {}

  /** Client statement name → the wider statement of the proxy's that serves its Binds. */
  private readonly wide = new Map<string, WideStatement>();
  private wideSeq = 0;

  /** `parses`: the session's searchable Parses by statement name; `idle`: the session's, for this message. */
  onBind(frame: Buffer, ctx: InterceptContext, parses: NameMap<SearchableParse>, idle: boolean): Verdict | Promise<Verdict> {
    const head = decodeBindHead(frame);
    const bp = this.stmtParams.get(head.statement);
    const sp = bp?.rewrite ? parses.get(head.statement) : undefined;
    if (sp === undefined) return this.bound(frame, head, ctx, idle);
    return head.statement === '' ? this.widenUnnamed(frame, head, sp, bp!, ctx, idle) : this.widenNamed(frame, head, sp, bp!, ctx, idle);
  }

  /** A rotation began since this unnamed statement's Parse: Parse it again with more candidates first. */
  private widenUnnamed(frame: Buffer, head: BindHead, sp: SearchableParse, bp: BindPlan, ctx: InterceptContext, idle: boolean): Verdict | Promise<Verdict> {
    let widened: MaybePromise<Widened | undefined>;
    try {
      widened = this.searchable.widen(sp, bp, this.bindContext, '');
    } catch (e) {
      return this.bindFailed(e, ctx);
    }
    const go = (w: Widened | undefined): Verdict | Promise<Verdict> => {
      if (w) {
        this.stmtParams.set('', w.plan);
        ctx.injectToServer(w.frames);
      }
      return this.bound(frame, head, ctx, idle);
    };
    if (widened instanceof Promise) return widened.then(go, (e: unknown) => this.bindFailed(e, ctx));
    return go(widened);
  }

  /** A named statement: its Binds go to a wider statement of the proxy's once a rotation began since its Parse. */
  private widenNamed(frame: Buffer, head: BindHead, sp: SearchableParse, bp: BindPlan, ctx: InterceptContext, idle: boolean): Verdict | Promise<Verdict> {
    const name = head.statement;
    const w = this.wide.size === 0 ? undefined : this.wide.get(name);
    try {
      if (w && w.parse === sp && !this.searchable.tooNarrow(w.plan.rewrite!)) return this.retarget(frame, head, w.server, ctx, idle);
      if (!w && !this.searchable.tooNarrow(bp.rewrite!)) return this.bound(frame, head, ctx, idle);
    } catch (e) {
      return this.bindFailed(e, ctx);
    }
    if (w) this.forget(name, ctx);
    const server = `${WIDE_PREFIX}${++this.wideSeq}`;
    let widened: MaybePromise<Widened | undefined>;
    try {
      widened = this.searchable.widen(sp, bp, this.bindContext, server);
    } catch (e) {
      return this.bindFailed(e, ctx);
    }
    const go = (wd: Widened | undefined): Verdict | Promise<Verdict> => {
      if (!wd) return this.bound(frame, head, ctx, idle);
      const entry: WideStatement = { server, parse: sp, plan: wd.plan };
      this.wide.set(name, entry);
      this.stmtParams.set(server, wd.plan);
      if (this.readsMapped.has(name)) this.readsMapped.set(server, true);
      if (this.stmtNames.has(name)) this.stmtNames.set(server, this.stmtNames.get(name));
      ctx.injectToServer(wd.frames, {
        // Its Parse failed or was skipped: the Bind fails with it; the next Bind widens again.
        done: (_, outcome) => {
          if (outcome !== 'ok' && this.wide.get(name) === entry) {
            this.wide.delete(name);
            this.dropServer(server);
          }
        },
      });
      // Skipped at once: the server is discarding everything up to Sync, this Bind included.
      // It is not sent at all rather than sent without its candidates.
      if (this.wide.get(name) !== entry) return DROP;
      return this.retarget(frame, head, server, ctx, idle);
    };
    if (widened instanceof Promise) return widened.then(go, (e: unknown) => this.bindFailed(e, ctx));
    return go(widened);
  }

  /** The client's Bind of a named statement, sent to the proxy's wider statement `server` instead. */
  private retarget(frame: Buffer, head: BindHead, server: string, ctx: InterceptContext, idle: boolean): Verdict | Promise<Verdict> {
    const out = renameBindStatement(frame, head, server);
    const as = { ...head, statement: server };
    const v = this.bound(out, as, ctx, idle);
    // FORWARD would send the client's frame, which names the narrow statement.
    return v instanceof Promise ? v.then((x) => (x === FORWARD ? out : x)) : v === FORWARD ? out : v;
  }

  /** The client closed or Parsed again its statement `name`: the wider one of the proxy's is closed too. */
  forget(name: string, ctx: InterceptContext): void {
    if (this.wide.size === 0) return;
    const w = this.wide.get(name);
    if (!w) return;
    this.wide.delete(name);
    this.dropServer(w.server);
    ctx.injectToServer(encodeClose({ kind: 'S', name: w.server }));
  }

  /** Every wider statement forgotten (DEALLOCATE, DISCARD: which statements they dropped is not known). */
  forgetAll(ctx: InterceptContext): void {
    for (const name of [...this.wide.keys()]) this.forget(name, ctx);
  }

  private dropServer(server: string): void {
    this.stmtParams.delete(server);
    this.readsMapped.delete(server);
    this.stmtNames.delete(server);
  }

  private bound(frame: Buffer, head: BindHead, ctx: InterceptContext, idle: boolean): Verdict | Promise<Verdict> {
    const st = ctx.state!;
    if (this.readsMapped.has(head.statement) && st.statements.get(head.statement)?.rowDescription === undefined) this.undescribed.set(head.portal, head.statement);
    else this.undescribed.delete(head.portal);
    // The server re-resolves a prepared statement's names when the search_path changed since it was prepared.
    if (this.stmtNames.has(head.statement)) {
      const names = this.stmtNames.get(head.statement);
      const checked = (): Verdict | Promise<Verdict> => {
        const refusal = namesRefusal(this.names, names, false, ctx);
        return refusal ? this.refuse(ctx, refusal) : this.bindValues(frame, head.statement, ctx);
      };
      // Read once; if that fails the check refuses (it stays unknown), it does not ask again.
      return mustReadNames(this.names, idle, names, false, ctx) ? readResolution(this.names, ctx).then(checked) : checked();
    }
    return this.bindValues(frame, head.statement, ctx);
  }

  private bindValues(frame: Buffer, statement: string, ctx: InterceptContext): Verdict | Promise<Verdict> {
    const plan = this.stmtParams.get(statement);
    if (!plan) return FORWARD;
    try {
      const r = encryptBind(frame, plan, this.bindContext, statement);
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
  learnShape(portal: string, ctx: InterceptContext): void {
    const stmt = this.undescribed.get(portal);
    if (stmt === undefined) return;
    this.undescribed.delete(portal);
    if (ctx.state!.statements.get(stmt)?.rowDescription === undefined) ctx.injectToServer(encodeDescribe({ kind: 'S', name: stmt }));
  }

  private bindFailed(e: unknown, ctx: InterceptContext): Verdict {
    return this.refuse(ctx, writeFailure(e));
  }
}
