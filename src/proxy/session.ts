// One client session: its own server connection (no pooling) and two pumps,
// client → server and server → client.
//
//   connecting  server connection + upstream TLS being set up
//   auth        StartupMessage forwarded; Authentication (SASL list rewritten),
//               BackendKeyData (replaced by the proxy's own) until the first ReadyForQuery
//   ready       frames forwarded; the interceptor sees the types it asked for.
//               With no interceptor and plain TCP on both sides, the two sockets
//               are handed to the native relay at the first idle ReadyForQuery
//               (native-relay.ts) and come back when it stops
//   closed      both sockets closed, cancel key forgotten
// One file (a little over 400 lines): the phases, the pumps' hooks and the ways
// a session ends share one set of fields.
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { AuthCode, BackendCode, FrontendCode } from '../protocol/codes.js';
import { authenticationCode, stripChannelBinding } from '../protocol/backend/authentication.js';
import { decodeBackendKeyData, encodeBackendKeyData } from '../protocol/backend/backend-key-data.js';
import { adminShutdown, connectionFailure, internalError, protocolViolation, unableToConnect } from '../protocol/backend/error-response.js';
import { TERMINATE } from '../protocol/frontend/simple.js';
import { splitFrames } from '../protocol/frame.js';
import { ProtocolError } from '../protocol/errors.js';
import type { ClientHello } from './client-hello.js';
import { connectUpstream, UpstreamError, type UpstreamTarget } from './upstream.js';
import { NOTE, PASS, Pump, WHOLE, type Verdict } from './pump.js';
import type { RelayResult } from './native-relay.js';
import { SessionRelay } from './session-relay.js';
import { SessionState } from './state.js';
import type { InternalReplyHandler, Pending } from './state-types.js';
import type { InterceptContext, Interceptor, InterceptorFactory, SessionInfo } from './interceptor.js';
import type { CancelRegistry } from './cancel.js';

export type SessionPhase = 'connecting' | 'auth' | 'ready' | 'closed';

export interface SessionDeps {
  logger: Logger;
  upstream: UpstreamTarget;
  cancels: CancelRegistry;
  interceptor?: InterceptorFactory;
  /** Largest frame a client may send. */
  maxClientFrame: number;
  /** Largest frame accepted from the server. */
  maxServerFrame: number;
}

/** Client messages the state must decode whole, and those it only counts. */
const STATE_FRONTEND_WHOLE = [FrontendCode.Parse, FrontendCode.Bind, FrontendCode.Describe, FrontendCode.Execute, FrontendCode.Close];
const STATE_FRONTEND_NOTE = [FrontendCode.Sync, FrontendCode.Query, FrontendCode.FunctionCall, FrontendCode.CopyDone, FrontendCode.CopyFail];
const STATE_BACKEND_WHOLE = [BackendCode.RowDescription, BackendCode.ParameterDescription, BackendCode.ReadyForQuery, BackendCode.CommandComplete];
const STATE_BACKEND_NOTE = [
  BackendCode.ParseComplete,
  BackendCode.BindComplete,
  BackendCode.CloseComplete,
  BackendCode.NoData,
  BackendCode.DataRow,
  BackendCode.PortalSuspended,
  BackendCode.EmptyQueryResponse,
  BackendCode.CopyInResponse,
  BackendCode.CopyOutResponse,
  BackendCode.CopyBothResponse,
  BackendCode.CopyData,
  BackendCode.CopyDone,
  BackendCode.FunctionCallResponse,
  BackendCode.ErrorResponse,
];
const ASYNC_BACKEND = new Uint8Array(256);
ASYNC_BACKEND[BackendCode.NoticeResponse] = 1;
ASYNC_BACKEND[BackendCode.NotificationResponse] = 1;
ASYNC_BACKEND[BackendCode.ParameterStatus] = 1;

let nextId = 1;

export class Session {
  readonly id = nextId++;
  phase: SessionPhase = 'connecting';
  readonly info: SessionInfo;
  private readonly client: Socket;
  private upstream?: Socket;
  private c2s?: Pump;
  private s2c?: Pump;
  private interceptor?: Interceptor;
  private state?: SessionState;
  private ctx?: InterceptContext;
  private wantF?: Uint8Array;
  private wantB?: Uint8Array;
  private clientPid?: number;
  private readonly logger: Logger;
  private clientTerminated = false;
  private closing = false;
  /** The native relay: sessions with no interceptor move onto it after start-up. */
  private readonly relay: SessionRelay;

  constructor(
    private readonly hello: Extract<ClientHello, { kind: 'startup' }>,
    private readonly deps: SessionDeps,
    private readonly onClosed: (s: Session) => void,
  ) {
    this.client = hello.socket;
    const p = hello.startup.params;
    this.info = {
      id: this.id,
      user: p.get('user') ?? '',
      database: p.get('database') ?? p.get('user') ?? '',
      applicationName: p.get('application_name'),
      protocolMinor: hello.startup.minor,
      clientTls: hello.tls,
    };
    this.logger = deps.logger.child({ session: this.id });
    this.relay = new SessionRelay(this.client, deps.maxClientFrame, deps.maxServerFrame, this.relayStopped);
  }

  async start(): Promise<void> {
    const client = this.client;
    client.setNoDelay?.(true);
    client.on('error', this.onClientGone);
    client.on('close', this.onClientGone);
    client.on('end', this.onClientGone);
    let up: Socket;
    try {
      up = await connectUpstream(this.deps.upstream);
    } catch (err) {
      const e = err instanceof UpstreamError ? err : new UpstreamError(String((err as Error)?.message ?? err), '08001');
      this.logger.warn({ reason: e.message }, 'server connection failed');
      if (this.phase !== 'closed') {
        client.end(e.sqlstate === '08001' ? unableToConnect(e.message) : connectionFailure(e.message));
        this.finish();
      }
      return;
    }
    if (this.phase === 'closed') {
      up.destroy();
      return;
    }
    this.upstream = up;
    this.phase = 'auth';
    up.on('error', this.onUpstreamError);
    up.on('close', this.onUpstreamGone);
    up.on('end', this.onUpstreamGone);
    this.logger.debug({ user: this.info.user, database: this.info.database, tls: this.info.clientTls }, 'session started');

    this.interceptor = this.deps.interceptor?.(this.info);
    if (this.interceptor?.trackState) this.state = new SessionState();

    this.c2s = new Pump(client, up, { note: this.frontendNote, frame: this.frontendFrame, fail: this.clientFailed }, { maxFrame: this.deps.maxClientFrame });
    this.s2c = new Pump(up, client, { note: this.backendNote, frame: this.backendFrame, fail: this.serverFailed }, { maxFrame: this.deps.maxServerFrame });
    this.ctx = this.makeContext();
    // Until the first ReadyForQuery only start-up messages need a look.
    this.s2c.table[BackendCode.Authentication] = WHOLE;
    this.s2c.table[BackendCode.BackendKeyData] = WHOLE;
    this.s2c.table[BackendCode.ReadyForQuery] = WHOLE;
    this.installFrontendTable();

    up.write(this.hello.packet);
    this.c2s.start(this.hello.rest);
    this.s2c.start();
  }

  /** SIGTERM after the grace period: FATAL 57P01 to the client, Terminate to the server. */
  shutdown(): void {
    if (this.phase === 'closed') return;
    this.closing = true;
    this.stopRelay();
    if (this.toClientAtBoundary) this.client.write(adminShutdown());
    if (this.upstream && this.toServerAtBoundary) this.upstream.write(TERMINATE);
    this.finish();
  }

  /** Closes both sides now. */
  destroy(): void {
    this.stopRelay();
    this.client.destroy();
    this.upstream?.destroy();
    this.finish();
  }

  // ---- start-up (server → client) ----------------------------------------

  private authFrame(code: number, frame: Buffer): Verdict {
    if (code === BackendCode.Authentication) {
      return authenticationCode(frame) === AuthCode.SASL ? replaced(frame, stripChannelBinding(frame)) : undefined;
    }
    if (code === BackendCode.BackendKeyData) {
      const real = decodeBackendKeyData(frame);
      const mine = this.deps.cancels.register({ upstream: this.deps.upstream, pid: real.pid, key: real.key });
      this.clientPid = mine.pid;
      return encodeBackendKeyData(mine);
    }
    // The first ReadyForQuery: start-up is over.
    this.phase = 'ready';
    this.installBackendTable();
    this.logger.debug('session ready');
    if (this.interceptor === undefined && !this.info.clientTls) process.nextTick(this.tryRelay);
    return undefined;
  }

  // ---- the native relay ---------------------------------------------------

  /** After a ReadyForQuery has gone out (the pumps are done with their chunk). */
  private readonly tryRelay = (): void => {
    if (this.phase !== 'ready' || this.closing || !this.upstream) return;
    if (this.relay.tryStart(this.upstream, this.c2s!, this.s2c!)) this.logger.debug('session on the native relay');
  };

  /** The relay stopped by itself: carry on with Node's sockets, as the pumps would have. */
  private readonly relayStopped = (r: RelayResult): void => {
    this.logger.debug({ reason: r.reason, side: r.side, errno: r.errno }, 'native relay stopped');
    if (this.phase === 'closed') return;
    const server = r.side === 'server';
    if (r.reason === 'eof') {
      if (server) this.onUpstreamGone();
      else this.onClientGone();
    } else if (r.reason === 'bad-frame') {
      const err = new ProtocolError('PROTO_FRAME_LEN', `invalid message length ${r.badLength} (type 0x${r.badCode.toString(16)})`);
      if (server) this.serverFailed(err);
      else this.clientFailed(err);
    } else if (server) {
      this.onUpstreamError(new Error(`${r.reason === 'read-error' ? 'read' : 'write'} ${r.errno}`));
    } else {
      this.onClientGone();
    }
  };

  private stopRelay(): void {
    this.relay.stop(this.upstream);
  }

  /** Whether what went to the client (server) so far ends between two frames. */
  private get toClientAtBoundary(): boolean {
    return this.relay.toClientAtBoundary ?? this.s2c?.atBoundary !== false;
  }

  private get toServerAtBoundary(): boolean {
    return this.relay.toServerAtBoundary ?? this.c2s?.atBoundary === true;
  }

  /** Whether the native relay forwards this session's traffic now. */
  get relayed(): boolean {
    return this.relay.active;
  }

  /** Bytes read from and written to the client, by Node and by the relay. */
  get bytesIn(): number {
    return this.client.bytesRead + this.relay.bytesIn;
  }

  get bytesOut(): number {
    return this.client.bytesWritten + this.relay.bytesOut;
  }

  private installFrontendTable(): void {
    const t = this.c2s!.table;
    if (this.state) {
      for (const c of STATE_FRONTEND_NOTE) t[c] = NOTE;
      for (const c of STATE_FRONTEND_WHOLE) t[c] = WHOLE;
    }
    const i = this.interceptor;
    if (i?.onFrontend && i.frontendCodes.length > 0) {
      this.wantF = new Uint8Array(256);
      for (const c of i.frontendCodes) {
        this.wantF[c] = 1;
        t[c] = WHOLE;
      }
    }
    // Frames are handed out and kept from here on: see Pump.copyReads.
    this.c2s!.copyReads = t.includes(WHOLE);
  }

  private installBackendTable(): void {
    const s2c = this.s2c!;
    const t = s2c.table;
    t.fill(PASS);
    const i = this.interceptor;
    if (this.state) {
      for (const c of STATE_BACKEND_NOTE) t[c] = NOTE;
      for (const c of STATE_BACKEND_WHOLE) t[c] = WHOLE;
      const state = this.state;
      s2c.classify = (code) => {
        // Replies to the proxy's own requests are read whole and never forwarded.
        if (state.internalPending > 0 && ASYNC_BACKEND[code] === 0 && state.queue[0]?.origin === 'internal') return WHOLE;
        // Rows of a result the interceptor has no use for leave as bytes, not one call each.
        if (code === BackendCode.DataRow && i?.passesRows?.(state.queue[0]) === true) return PASS;
        return t[code]!;
      };
    }
    if (i?.onBackend && i.backendCodes.length > 0) {
      this.wantB = new Uint8Array(256);
      for (const c of i.backendCodes) {
        this.wantB[c] = 1;
        t[c] = WHOLE;
      }
    }
    // Frames are handed out and kept from here on: see Pump.copyReads.
    s2c.copyReads = t.includes(WHOLE) || s2c.classify !== null;
  }

  // ---- client → server ---------------------------------------------------

  private readonly frontendNote = (code: number): void => {
    this.state?.frontend(code, undefined);
  };

  private readonly frontendFrame = (code: number, frame: Buffer): Verdict | Promise<Verdict> => {
    if (this.wantF?.[code] === 1) {
      const v = this.interceptor!.onFrontend!(code, frame, this.ctx!);
      if (v instanceof Promise) return v.then((r) => this.sentToServer(code, frame, r));
      return this.sentToServer(code, frame, v);
    }
    return this.sentToServer(code, frame, undefined);
  };

  /** Feeds the state with what actually goes to the server. */
  private sentToServer(code: number, frame: Buffer, v: Verdict): Verdict {
    const st = this.state;
    if (st) {
      if (v === undefined) st.frontend(code, frame);
      else if (v !== null) for (const f of splitFrames(v)) st.frontend(f[0]!, f);
    }
    return v;
  }

  // ---- server → client ---------------------------------------------------

  private readonly backendNote = (code: number): void => {
    if (code === BackendCode.ReadyForQuery && this.interceptor === undefined) process.nextTick(this.tryRelay);
    const st = this.state;
    if (st === undefined || this.phase !== 'ready') return;
    st.backend(code, undefined);
    if (st.queue.length > 0 && st.queue[0]!.kind === 'synthetic') this.drainSynthetic();
  };

  private readonly backendFrame = (code: number, frame: Buffer): Verdict | Promise<Verdict> => {
    if (this.phase !== 'ready') return this.authFrame(code, frame);
    const st = this.state;
    let reply: Pending | undefined;
    if (st) {
      reply = st.backend(code, frame);
      if (st.queue.length > 0 && st.queue[0]!.kind === 'synthetic') this.drainSynthetic();
      if (reply?.origin === 'internal') {
        reply.handler?.message?.(code, frame, reply);
        return code === BackendCode.ErrorResponse && st.errorAffectsClient ? undefined : null;
      }
    }
    if (this.wantB?.[code] === 1) return this.interceptor!.onBackend!(code, frame, reply, this.ctx!);
    return undefined;
  };

  /** Synthetic replies whose turn has come go to the client after the frame being handled. */
  private drainSynthetic(): void {
    const st = this.state!;
    for (let f = st.takeSynthetic(); f !== undefined; f = st.takeSynthetic()) this.s2c!.emit(f, undefined, true);
  }

  private makeContext(): InterceptContext {
    return {
      info: this.info,
      state: this.state,
      logger: this.logger,
      toClient: this.s2c!,
      injectToServer: (frames: Buffer, handler?: InternalReplyHandler) => {
        const parts = splitFrames(frames);
        this.c2s!.emit(frames, () => {
          for (const f of parts) this.state?.frontend(f[0]!, f, 'internal', handler);
        });
      },
      sendToClient: (frames: Buffer, opts?: { ordered?: boolean }) => {
        if (opts?.ordered === false || !this.state) {
          this.s2c!.emit(frames);
          return;
        }
        if (this.state.synthetic(frames)) this.drainSynthetic();
      },
    };
  }

  // ---- failures and close -----------------------------------------------

  private readonly clientFailed = (err: Error): void => {
    if (this.phase === 'closed') return;
    const proto = err instanceof ProtocolError;
    this.logger.warn({ reason: err.message, code: proto ? err.code : undefined }, proto ? 'client protocol violation; closing session' : 'session failed');
    if (this.toClientAtBoundary) this.client.write(proto ? protocolViolation(err.message) : internalError(`proxy error: ${err.message}`));
    this.destroyUpstream();
    this.finish();
  };

  private readonly serverFailed = (err: Error): void => {
    if (this.phase === 'closed') return;
    this.logger.warn({ reason: err.message }, 'server stream failed; closing session');
    if (this.toClientAtBoundary) this.client.write(connectionFailure(`server connection failed: ${err.message}`));
    this.destroyUpstream();
    this.finish();
  };

  private readonly onClientGone = (): void => {
    if (this.phase === 'closed') return;
    this.clientTerminated = true;
    // Let the server see an orderly end, as it would from a direct client.
    if (this.upstream && !this.upstream.destroyed) {
      this.upstream.end();
      setTimeout(() => this.upstream?.destroy(), 5_000).unref();
    }
    this.finish();
  };

  private readonly onUpstreamError = (err: Error): void => {
    if (this.phase === 'closed') return;
    this.logger.debug({ reason: err.message }, 'server connection error');
    if (!this.clientTerminated && !this.closing && this.s2c !== undefined && this.toClientAtBoundary) this.client.write(connectionFailure(`server connection lost: ${err.message}`));
    this.onUpstreamGone();
  };

  private readonly onUpstreamGone = (): void => {
    if (this.phase === 'closed') return;
    this.finish();
  };

  private destroyUpstream(): void {
    this.upstream?.destroy();
  }

  /** Both pumps stopped, client ended after its pending writes, cancel key forgotten. */
  private finish(): void {
    if (this.phase === 'closed') return;
    this.stopRelay();
    this.phase = 'closed';
    this.c2s?.stop();
    this.s2c?.stop();
    if (!this.client.destroyed) {
      this.client.end();
      setTimeout(() => this.client.destroy(), 5_000).unref();
    }
    if (this.upstream && !this.upstream.destroyed && !this.clientTerminated) {
      this.upstream.end();
      setTimeout(() => this.upstream?.destroy(), 5_000).unref();
    }
    if (this.clientPid !== undefined) this.deps.cancels.unregister(this.clientPid);
    this.interceptor?.close?.();
    this.logger.debug('session closed');
    this.onClosed(this);
  }
}

/** undefined (forward the original) when a rewrite changed nothing. */
function replaced(original: Buffer, next: Buffer): Verdict {
  return next === original ? undefined : next;
}
