// One session's Binds: a prepared statement's parameters encrypted (params.ts)
// after its configured names are checked again, an unnamed searchable statement
// widened first when a rotation began since its Parse, and an undescribed
// portal's row shape learnt at its Execute. Owned by the session (session.ts).
import { decodeBindHead } from '../protocol/frontend/bind.js';
import { encodeDescribe } from '../protocol/frontend/describe-close.js';
import { FORWARD, type InterceptContext, type Verdict } from '../proxy/interceptor.js';
import type { NameMap } from '../proxy/names.js';
import type { SqlRejection } from '../sql/types.js';
import { encryptBind, type BindContext, type BindPlan } from './params.js';
import { writeFailure } from './refusal.js';
import type { MaybePromise } from './values.js';
import { mustReadNames, namesRefusal, readResolution, type NameResolution } from './name-resolution.js';
import type { SearchableStatements, UnnamedParse, Widened } from './searchable-session.js';

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

  /** `unnamedParse`, `idle`: the session's, for this message. */
  onBind(frame: Buffer, ctx: InterceptContext, unnamedParse: UnnamedParse | undefined, idle: boolean): Verdict | Promise<Verdict> {
    const head = decodeBindHead(frame);
    const bp = head.statement === '' && unnamedParse ? this.stmtParams.get('') : undefined;
    if (bp?.rewrite) {
      // A rotation began since this unnamed statement's Parse: Parse it again with more candidates first.
      let widened: MaybePromise<Widened | undefined>;
      try {
        widened = this.searchable.widen(unnamedParse!, bp, this.bindContext);
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
    return this.bound(frame, head, ctx, idle);
  }

  private bound(frame: Buffer, head: ReturnType<typeof decodeBindHead>, ctx: InterceptContext, idle: boolean): Verdict | Promise<Verdict> {
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
