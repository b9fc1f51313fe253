// The hook the encryption layer plugs into. An interceptor names the message
// types it wants per direction; the session hands it those frames whole (with
// the session state) and it decides what goes on. Types nobody wants are
// forwarded by the pump from their header alone.
import type { Logger } from '../log.js';
import type { SessionState } from './state.js';
import type { InternalReplyHandler, Pending } from './state-types.js';
import type { OutputSink } from './out-batch.js';
import type { Verdict } from './pump.js';

export type { OutputSink, Verdict };
/** The replacement was written in place through `ctx.toClient` (OutputSink). */
export { WRITTEN } from './out-batch.js';

/** Forward the frame unchanged. */
export const FORWARD: Verdict = undefined;
/** Drop the frame. */
export const DROP: Verdict = null;

export interface SessionInfo {
  /** Process-unique session number (for logs). */
  id: number;
  user: string;
  database: string;
  applicationName?: string;
  /** Minor protocol version the client asked for (0 or 2). */
  protocolMinor: number;
  /** Whether the client talks TLS to the proxy. */
  clientTls: boolean;
}

export interface InterceptContext {
  readonly info: SessionInfo;
  /** Present when the interceptor asked for `trackState`. */
  readonly state: SessionState | undefined;
  readonly logger: Logger;
  /**
   * Writes frames of the proxy's own to the server. Called while a client frame
   * is being decided, they go before it. Their replies are routed to `handler`
   * and never reach the client (needs `trackState`). An ErrorResponse to them is
   * forwarded only when it also cost the client's own pending requests (the
   * server then skips the client's messages up to Sync, so the client must know).
   */
  injectToServer(frames: Buffer, handler?: InternalReplyHandler): void;
  /**
   * Sends frames the proxy made up to the client. `ordered` (default, needs
   * `trackState`): after the replies to every request sent so far, as a reply
   * to the client's latest message would be. Unordered: at the next frame boundary.
   */
  sendToClient(frames: Buffer, opts?: { ordered?: boolean }): void;
  /**
   * While onBackend decides a frame synchronously: where its replacement can be
   * written in place (then return WRITTEN) instead of returned as a new Buffer.
   */
  readonly toClient: OutputSink;
}

export interface Interceptor {
  /** Client message type bytes (FrontendCode) to receive whole. */
  readonly frontendCodes: readonly number[];
  /** Server message type bytes (BackendCode) to receive whole. */
  readonly backendCodes: readonly number[];
  /** Keep the pending-reply queue, statements and portals (costs a decode of P/B/D/E/C, T/t/Z/C). */
  readonly trackState: boolean;
  /**
   * A client frame (whole, a view valid during the call or until the returned
   * Promise settles). Later client frames wait while a Promise is pending.
   */
  onFrontend?(code: number, frame: Buffer, ctx: InterceptContext): Verdict | Promise<Verdict>;
  /** A server frame; `reply` is the request it answers (with trackState), undefined for asynchronous messages. */
  onBackend?(code: number, frame: Buffer, reply: Pending | undefined, ctx: InterceptContext): Verdict | Promise<Verdict>;
  /**
   * With trackState, asked at each DataRow's header: true when the rows answering
   * `reply` (the head of the queue) need not reach onBackend. They are then
   * forwarded from their header with the frames around them, as if nobody had
   * asked for DataRows (results that touch no configured column).
   */
  passesRows?(reply: Pending | undefined): boolean;
  /** The session ended. */
  close?(): void;
}

/** Makes the interceptor for one session once its StartupMessage is known; undefined = plain forwarding. */
export type InterceptorFactory = (info: SessionInfo) => Interceptor | undefined;

/** The interceptor with an empty `encrypted:` map: wants nothing, so every frame is forwarded from its header. */
export const noopInterceptor: Interceptor = {
  frontendCodes: [],
  backendCodes: [],
  trackState: false,
};
