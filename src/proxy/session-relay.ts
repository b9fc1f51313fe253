// A session's side of the native relay (native-relay.ts): when to hand the two
// sockets over, and what to do with what the relay hands back when it stops
// (its unwritten bytes, where each direction stopped, its byte counts). The
// session decides what a stop means (session.ts, relayStopped).
import type { Socket } from 'node:net';
import { BackendCode } from '../protocol/codes.js';
import { NOTE, PASS, type Pump } from './pump.js';
import { NativeRelay, resumeReads, type RelayResult } from './native-relay.js';

/** ReadyForQuery points at which a session tries to move onto the relay before it gives up. */
const TRIES = 32;

export class SessionRelay {
  private relay?: NativeRelay;
  /** What the relay handed back when it stopped. */
  private end?: RelayResult;
  private tries = 0;

  constructor(
    private readonly client: Socket,
    private readonly maxClientFrame: number,
    private readonly maxServerFrame: number,
    private readonly onStopped: (r: RelayResult) => void,
  ) {}

  /**
   * Moves both sockets onto the relay when nothing is in flight in either
   * pump (they are stopped then); else asks the server pump to note the next
   * ReadyForQuery, where the session calls this again. True when it moved.
   */
  tryStart(upstream: Socket, c2s: Pump, s2c: Pump): boolean {
    if (this.relay !== undefined || !NativeRelay.available || !NativeRelay.plain(this.client) || !NativeRelay.plain(upstream)) return false;
    const later = (): false => {
      s2c.table[BackendCode.ReadyForQuery] = ++this.tries < TRIES ? NOTE : PASS;
      return false;
    };
    if (!c2s.idle || !s2c.idle) return later();
    const relay = NativeRelay.tryStart(this.client, upstream, this.maxClientFrame, this.maxServerFrame, (r) => {
      this.handBack(r, upstream);
      this.onStopped(r);
    });
    if (relay === undefined) return later();
    this.relay = relay;
    c2s.stop();
    s2c.stop();
    return true;
  }

  /** Stops the relay if it runs, and takes its sockets back. */
  stop(upstream: Socket | undefined): void {
    const r = this.relay?.stop();
    if (r) this.handBack(r, upstream);
  }

  /** Writes what the relay had not, and lets Node read the sockets again (to see them end). */
  private handBack(r: RelayResult, upstream: Socket | undefined): void {
    this.end = r;
    if (r.toServer && upstream && !upstream.destroyed) upstream.write(r.toServer);
    if (r.toClient && !this.client.destroyed) this.client.write(r.toClient);
    resumeReads(this.client);
    if (upstream) resumeReads(upstream);
  }

  get active(): boolean {
    return this.relay?.active === true;
  }

  /** Once the relay has run: whether what went to the client ends between two frames (undefined: ask the pump). */
  get toClientAtBoundary(): boolean | undefined {
    return this.end?.serverAtBoundary;
  }

  get toServerAtBoundary(): boolean | undefined {
    return this.end?.clientAtBoundary;
  }

  /** Bytes the relay read from and wrote to the client. */
  get bytesIn(): number {
    return this.relay ? this.relay.bytes()[0] : 0;
  }

  get bytesOut(): number {
    return this.relay ? this.relay.bytes()[1] : 0;
  }
}
