// Per-session protocol state, fed with every frame the proxy writes to the server
// (`frontend`) and every frame it reads from it (`backend`), in order.
//
// It keeps an ordered queue of what each pending request will get back, so each
// server message is matched to the request it answers (and to that request's
// origin: the client, or the proxy itself), and it remembers what the encryption
// layer needs to read a DataRow: the RowDescription and result formats that apply
// to each statement and portal, the text and parameter types of each statement.
//
// Replies, per request (Postgres "Message Flow"):
//   Parse → 1                 Bind → 2                Close → 3
//   Describe S → t, then T|n  Describe P → T|n
//   Execute → D* then C|s|I, or a COPY (G|H|W ... then C)
//   Sync / Query / FunctionCall → ... Z
// An ErrorResponse to an extended-protocol request makes the server skip every
// message up to the next Sync. Flush, Terminate and CopyData/Done/Fail get no reply.
// NoticeResponse, NotificationResponse and ParameterStatus can come at any time.
import { BackendCode, FrontendCode, TxStatus } from '../protocol/codes.js';
import { decodeParse } from '../protocol/frontend/parse.js';
import { decodeBindHead, formatAt } from '../protocol/frontend/bind.js';
import { decodeDescribe, decodeClose } from '../protocol/frontend/describe-close.js';
import { decodeExecute } from '../protocol/frontend/execute.js';
import { decodeRowDescription, type RowDescription } from '../protocol/backend/row-description.js';
import { decodeParameterDescription } from '../protocol/backend/parameter-description.js';
import { decodeReadyForQuery, type TxStatusValue } from '../protocol/backend/ready-for-query.js';
import { decodeCommandComplete } from '../protocol/backend/command-complete.js';
import { NameMap } from './names.js';
import type { InternalReplyHandler, Origin, Pending, PortalInfo, RequestKind, ResultShape, StatementInfo } from './state-types.js';

const EXTENDED: ReadonlySet<RequestKind> = new Set(['parse', 'bind', 'describe', 'execute', 'close']);
const ENDS_WITH_Z: ReadonlySet<RequestKind> = new Set(['sync', 'query', 'function-call']);

export class SessionState {
  readonly statements = new NameMap<StatementInfo>();
  readonly portals = new NameMap<PortalInfo>();
  /** Requests in the order they were sent; the head is what the next server message answers. */
  readonly queue: Pending[] = [];
  /** The server's transaction status from the last ReadyForQuery. */
  txStatus: TxStatusValue = TxStatus.Idle;
  /** After an error in the extended protocol the server discards everything up to Sync. */
  skippingToSync = false;
  /** The client is in COPY FROM STDIN: Sync and Flush it sends are ignored by the server. */
  clientCopyIn = false;
  /** CopyDone/CopyFail messages the client has sent so far. */
  private copyEnds = 0;
  /** Internal requests still in the queue (lets the session use its fast path when 0). */
  internalPending = 0;
  /** Set by `backend()` for an ErrorResponse that answered an internal request but also cost the client requests: forward it. */
  errorAffectsClient = false;
  /** Count of server messages that matched no request (a proxy bug or a protocol change; logged by the session). */
  unmatched = 0;

  // ---- client → server -------------------------------------------------

  /**
   * Records a frame written to the server. `frame` must be the whole frame for
   * P, B, D, E, C; for other codes only `code` is read.
   */
  frontend(code: number, frame: Buffer | undefined, origin: Origin = 'client', handler?: InternalReplyHandler): void {
    if (code === FrontendCode.CopyDone || code === FrontendCode.CopyFail) {
      this.copyEnds++;
      this.clientCopyIn = false;
      return;
    }
    if (this.clientCopyIn && (code === FrontendCode.Sync || code === FrontendCode.Flush)) return;
    if (this.skippingToSync) {
      if (code !== FrontendCode.Sync) {
        // The server will discard it; an injected request learns that now.
        if (handler && isRequest(code)) handler.done?.({ kind: 'sync', origin, name: '' }, 'skipped');
        return;
      }
      this.skippingToSync = false;
    }
    let p: Pending | undefined;
    switch (code) {
      case FrontendCode.Parse: {
        const m = decodeParse(frame!);
        p = { kind: 'parse', origin, name: m.name, parse: { text: m.text, paramTypes: m.paramTypes } };
        break;
      }
      case FrontendCode.Bind: {
        const m = decodeBindHead(frame!);
        p = { kind: 'bind', origin, name: m.portal, bind: { statement: m.statement, resultFormats: m.resultFormats } };
        break;
      }
      case FrontendCode.Describe: {
        const m = decodeDescribe(frame!);
        p = { kind: 'describe', origin, name: m.name, target: m.kind };
        break;
      }
      case FrontendCode.Close: {
        const m = decodeClose(frame!);
        p = { kind: 'close', origin, name: m.name, target: m.kind };
        break;
      }
      case FrontendCode.Execute: {
        const m = decodeExecute(frame!);
        p = { kind: 'execute', origin, name: m.portal, maxRows: m.maxRows };
        break;
      }
      case FrontendCode.Sync:
        p = { kind: 'sync', origin, name: '' };
        break;
      case FrontendCode.Query:
        p = { kind: 'query', origin, name: '' };
        break;
      case FrontendCode.FunctionCall:
        p = { kind: 'function-call', origin, name: '' };
        break;
      default:
        return; // Flush, Terminate, Copy*, password messages: no reply of their own.
    }
    if (handler) p.handler = handler;
    p.copyEnds = this.copyEnds;
    if (origin === 'internal') this.internalPending++;
    this.queue.push(p);
  }

  /**
   * Queues frames the proxy made up for the client, to be delivered once every
   * earlier request has had its replies. Returns true when nothing is ahead of
   * them (the caller should call `takeSynthetic()` right away).
   */
  synthetic(frames: Buffer): boolean {
    this.queue.push({ kind: 'synthetic', origin: 'synthetic', name: '', frames });
    return this.queue.length === 1;
  }

  /** Frames of a synthetic entry that reached the head of the queue (removed), if any. */
  takeSynthetic(): Buffer | undefined {
    const head = this.queue[0];
    if (head?.kind !== 'synthetic') return undefined;
    this.queue.shift();
    return head.frames;
  }

  // ---- server → client -------------------------------------------------

  /**
   * Records a frame read from the server and returns the request it answers
   * (undefined for asynchronous messages). `frame` must be whole for T, t, Z, C.
   */
  backend(code: number, frame: Buffer | undefined): Pending | undefined {
    const head = this.queue[0];
    switch (code) {
      case BackendCode.NoticeResponse:
      case BackendCode.NotificationResponse:
      case BackendCode.ParameterStatus:
        return undefined;
      case BackendCode.ParseComplete:
        if (!this.expect(head, 'parse')) return undefined;
        this.statements.set(head.name, head.parse!);
        this.pop('ok');
        return head;
      case BackendCode.BindComplete:
        if (!this.expect(head, 'bind')) return undefined;
        this.portals.set(head.name, {
          statementName: head.bind!.statement,
          statement: this.statements.get(head.bind!.statement),
          resultFormats: head.bind!.resultFormats,
        });
        this.pop('ok');
        return head;
      case BackendCode.CloseComplete:
        if (!this.expect(head, 'close')) return undefined;
        if (head.target === 'S') this.statements.delete(head.name);
        else this.portals.delete(head.name);
        this.pop('ok');
        return head;
      case BackendCode.ParameterDescription: {
        if (!this.expect(head, 'describe')) return undefined;
        const st = this.statements.get(head.name);
        if (st) st.paramOids = decodeParameterDescription(frame!);
        return head;
      }
      case BackendCode.RowDescription:
        if (head?.kind === 'query') {
          const fields = decodeRowDescription(frame!);
          head.shape = { fields, formats: fields.map((f) => f.format) };
          return head;
        }
        if (!this.expect(head, 'describe')) return undefined;
        this.described(head, decodeRowDescription(frame!));
        this.pop('ok');
        return head;
      case BackendCode.NoData:
        if (!this.expect(head, 'describe')) return undefined;
        this.described(head, null);
        this.pop('ok');
        return head;
      case BackendCode.DataRow:
        if (!head || (head.kind !== 'execute' && head.kind !== 'query')) return this.miss();
        if (head.shape === undefined) head.shape = this.resolveShape(head);
        return head;
      case BackendCode.CommandComplete:
        if (!head || (head.kind !== 'execute' && head.kind !== 'query')) return this.miss();
        // Only two tags matter (DISCARD ALL, DEALLOCATE ALL): decode by length first.
        if (frame && (frame.length === 17 || frame.length === 20)) this.commandTag(decodeCommandComplete(frame));
        if (head.kind === 'execute') this.pop('ok');
        else {
          head.shape = undefined;
          head.copy = undefined;
        }
        return head;
      case BackendCode.PortalSuspended:
        if (!this.expect(head, 'execute')) return undefined;
        this.pop('ok');
        return head;
      case BackendCode.EmptyQueryResponse:
        if (!head || (head.kind !== 'execute' && head.kind !== 'query')) return this.miss();
        if (head.kind === 'execute') this.pop('ok');
        return head;
      case BackendCode.CopyInResponse:
      case BackendCode.CopyBothResponse:
        if (!head || (head.kind !== 'execute' && head.kind !== 'query')) return this.miss();
        head.copy = code === BackendCode.CopyInResponse ? 'in' : 'both';
        this.enterClientCopy(head);
        return head;
      case BackendCode.CopyOutResponse:
        if (!head || (head.kind !== 'execute' && head.kind !== 'query')) return this.miss();
        head.copy = 'out';
        return head;
      case BackendCode.CopyData:
      case BackendCode.CopyDone:
        return head?.copy ? head : this.miss();
      case BackendCode.FunctionCallResponse:
        return this.expect(head, 'function-call') ? head : undefined;
      case BackendCode.ErrorResponse:
        return this.error(head);
      case BackendCode.ReadyForQuery:
        return this.ready(frame!);
      default:
        return undefined; // start-up messages (R, K, v): not queued.
    }
  }

  /** The shape of the rows the head request is returning (for a DataRow), if known. */
  currentShape(): ResultShape | null | undefined {
    return this.queue[0]?.shape;
  }

  // ---- internals -------------------------------------------------------

  private expect(head: Pending | undefined, kind: RequestKind): head is Pending {
    if (head?.kind === kind) return true;
    this.miss();
    return false;
  }

  private miss(): undefined {
    this.unmatched++;
    return undefined;
  }

  private pop(outcome: 'ok' | 'error' | 'skipped'): void {
    const p = this.queue.shift()!;
    if (p.origin === 'internal') {
      this.internalPending--;
      p.handler?.done?.(p, outcome);
    }
  }

  private described(head: Pending, rd: RowDescription | null): void {
    if (head.target === 'S') {
      const st = this.statements.get(head.name);
      if (st) st.rowDescription = rd;
    } else {
      const po = this.portals.get(head.name);
      if (po) po.rowDescription = rd;
    }
  }

  private resolveShape(head: Pending): ResultShape | null {
    if (head.kind !== 'execute') return null;
    const portal = this.portals.get(head.name);
    if (!portal) return null;
    if (portal.rowDescription) return { fields: portal.rowDescription, formats: portal.rowDescription.map((f) => f.format) };
    const rd = portal.statement?.rowDescription;
    if (!rd) return null;
    const fields = rd.map((f, i) => ({ ...f, format: formatAt(portal.resultFormats, i) }));
    return { fields, formats: fields.map((f) => f.format) };
  }

  /**
   * The server entered COPY FROM STDIN (or COPY BOTH) for `head`: until the
   * client's CopyDone/CopyFail it ignores Sync and Flush (libpq pipelines a Sync
   * behind the Execute and sends another after CopyDone). Drop the Syncs sent in
   * that window; if the client has not ended the COPY yet, ignore the next ones.
   */
  private enterClientCopy(head: Pending): void {
    const at = head.copyEnds ?? 0;
    for (let i = 1; i < this.queue.length; ) {
      const p = this.queue[i]!;
      if (p.kind === 'sync' && p.copyEnds === at) this.queue.splice(i, 1);
      else i++;
    }
    this.clientCopyIn = this.copyEnds === at;
  }

  private commandTag(tag: string): void {
    // Prepared statements removed by SQL; a plain `DEALLOCATE name` does not say which.
    if (tag === 'DISCARD ALL' || tag === 'DEALLOCATE ALL') {
      this.statements.clear();
      this.portals.clear();
    }
  }

  private error(head: Pending | undefined): Pending | undefined {
    this.errorAffectsClient = false;
    if (!head || head.kind === 'synthetic') return undefined; // a FATAL outside any request
    if (head.copy === 'in' || head.copy === 'both') this.clientCopyIn = false;
    if (!EXTENDED.has(head.kind)) {
      // Query, FunctionCall, Sync: ReadyForQuery follows; no skipping.
      head.shape = undefined;
      return head;
    }
    this.errorAffectsClient = head.origin === 'client';
    this.pop('error');
    while (this.queue.length > 0 && this.queue[0]!.kind !== 'sync') {
      if (this.queue[0]!.origin === 'client') this.errorAffectsClient = true;
      this.pop('skipped');
    }
    if (this.queue.length === 0) {
      this.skippingToSync = true;
      // Client messages sent after this point are discarded too: the client must hear of the error.
      this.errorAffectsClient = true;
    }
    return head;
  }

  private ready(frame: Buffer): Pending | undefined {
    this.txStatus = decodeReadyForQuery(frame);
    this.clientCopyIn = false;
    if (this.txStatus === TxStatus.Idle) this.portals.clear();
    // Anything ahead of the Sync/Query that never got its reply is stale.
    while (this.queue.length > 0 && !ENDS_WITH_Z.has(this.queue[0]!.kind)) {
      this.unmatched++;
      this.pop('skipped');
    }
    const head = this.queue[0];
    if (!head) return this.miss();
    if (head.kind === 'query') {
      // A simple Query destroys the unnamed statement and portal.
      this.statements.delete('');
      this.portals.delete('');
    }
    this.pop('ok');
    return head;
  }
}

function isRequest(code: number): boolean {
  return (
    code === FrontendCode.Parse ||
    code === FrontendCode.Bind ||
    code === FrontendCode.Describe ||
    code === FrontendCode.Execute ||
    code === FrontendCode.Close ||
    code === FrontendCode.Query ||
    code === FrontendCode.FunctionCall
  );
}
