// The native relay (native/relay.c): once start-up is over, a session with
// nothing to rewrite (no interceptor: an empty `encrypted:` map) and plain TCP
// on both sides hands its two sockets to C, which frames and forwards both
// directions on Node's own event loop without running JavaScript per message.
// Node's sockets stay open and idle meanwhile; when the relay stops (an end of
// stream, an error, a bad frame, or stop()), the session carries on with them:
// the bytes the relay had not written yet are handed back, in order.
//
// Why: with the map empty, a bare Node relay (`socket.pipe()`) costs 8–13 µs
// more CPU per transaction than PgBouncer in Node's stream and event-loop
// layers (docs/ARCHITECTURE.md, "pgcmek against a bare Node relay").
//
// Off with PGCMEK_NATIVE=off (no addons at all) or PGCMEK_NATIVE_RELAY=off; the
// sessions then stay on the JavaScript pumps (src/proxy/pump.ts), which do the
// same forwarding. PGCMEK_NATIVE=require makes a missing addon an error.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { addonPath } from '../addon-path.js';

export type RelayReason = 'eof' | 'read-error' | 'write-error' | 'bad-frame' | 'stopped';

/** What the relay hands back when it stops. */
export interface RelayResult {
  reason: RelayReason;
  /** The socket the reason is about (for 'stopped': 'client'). */
  side: 'client' | 'server';
  /** For errors: the errno name ('ECONNRESET'...), else ''. */
  errno: string;
  /** For 'bad-frame': the frame's type byte and its length field. */
  badCode: number;
  badLength: number;
  /** Bytes read but not yet written to each socket: write them first. */
  toClient: Buffer | null;
  toServer: Buffer | null;
  /** Whether what went to the server (client) so far ends between two frames. */
  clientAtBoundary: boolean;
  serverAtBoundary: boolean;
  bytesFromClient: number;
  bytesToClient: number;
  bytesFromServer: number;
  bytesToServer: number;
}

type Handle = { readonly __relay: unique symbol };

interface RelayAddon {
  relayStart(clientFd: number, serverFd: number, maxClientFrame: number, maxServerFrame: number, onStop: (r: RelayResult) => void): Handle;
  relayStop(h: Handle): RelayResult | null;
  relayCounts(h: Handle, out: Float64Array): void;
}

const ADDON = 'pgcmek_relay.node';

function load(): { addon?: RelayAddon; detail: string } {
  if ((process.env.PGCMEK_NATIVE ?? '').toLowerCase() === 'off') return { detail: 'off (PGCMEK_NATIVE=off)' };
  if ((process.env.PGCMEK_NATIVE_RELAY ?? '').toLowerCase() === 'off') return { detail: 'off (PGCMEK_NATIVE_RELAY=off)' };
  const p = addonPath(ADDON);
  if (p !== undefined) {
    try {
      return { addon: createRequire(import.meta.url)(p) as RelayAddon, detail: 'native' };
    } catch (e) {
      return { detail: `not loadable (${e instanceof Error ? e.message.split('\n')[0] : String(e)})` };
    }
  }
  return { detail: `not built (build/Release/${ADDON} missing: npm ci builds it with node-gyp)` };
}

const loaded = load();
// CI (and anyone who asks for it) must not silently test the pumps alone.
if (process.env.PGCMEK_NATIVE?.toLowerCase() === 'require' && loaded.addon === undefined && !loaded.detail.startsWith('off')) {
  throw new Error(`pgcmek: PGCMEK_NATIVE=require, but the native relay is ${loaded.detail}`);
}

/** For the startup log: whether sessions with nothing to rewrite run on the native relay. */
export function nativeRelayStatus(): { active: boolean; detail: string } {
  return { active: loaded.addon !== undefined, detail: loaded.detail };
}

/** What Node keeps on a plain TCP socket that the hand-over needs. */
interface TcpHandle {
  fd?: number;
  reading?: boolean;
  readStop?: () => number;
  readStart?: () => number;
}

function tcpHandle(s: Socket): TcpHandle | undefined {
  const h = (s as unknown as { _handle?: TcpHandle | null })._handle;
  return h && typeof h.fd === 'number' && h.fd >= 0 && typeof h.readStop === 'function' ? h : undefined;
}

/**
 * A socket the relay can take over: plain TCP (not TLS, whose bytes Node
 * decrypts), open, with nothing buffered either way.
 */
function idle(s: Socket): TcpHandle | undefined {
  if ('encrypted' in s || s.destroyed || s.connecting || s.readableEnded || !s.writable) return undefined;
  if (s.writableLength > 0 || s.readableLength > 0) return undefined;
  return tcpHandle(s);
}

/** Lets Node read a socket the relay had: its end of stream then closes it as usual. */
export function resumeReads(s: Socket): void {
  const h = tcpHandle(s);
  if (s.destroyed || !h || h.reading || typeof h.readStart !== 'function') return;
  if (h.readStart() === 0) h.reading = true;
  s.resume();
}

export class NativeRelay {
  /** Whether the addon is loaded (sessions may use the relay). */
  static readonly available = loaded.addon !== undefined;

  private readonly counts = new Float64Array(4);
  private result: RelayResult | null = null;

  private constructor(
    private readonly handle: Handle,
    private readonly addon: RelayAddon,
  ) {}

  /**
   * Takes over `client` and `server` when both are idle plain TCP sockets and
   * the relay is available; undefined otherwise (the caller keeps its pumps).
   * The caller must have stopped reading them in JavaScript (its pumps) first:
   * their handles' reads are stopped here.
   */
  static tryStart(client: Socket, server: Socket, maxClientFrame: number, maxServerFrame: number, onStop: (r: RelayResult) => void): NativeRelay | undefined {
    const addon = loaded.addon;
    if (!addon) return undefined;
    const c = idle(client);
    const s = idle(server);
    if (!c || !s) return undefined;
    const stopped: TcpHandle[] = [];
    const undo = (): undefined => {
      for (const h of stopped) if (h.readStart?.() === 0) h.reading = true;
      return undefined;
    };
    for (const h of [c, s]) {
      if (!h.reading) continue;
      if (h.readStop!() !== 0) return undo();
      h.reading = false;
      stopped.push(h);
    }
    let relay: NativeRelay | undefined;
    let handle: Handle;
    try {
      handle = addon.relayStart(c.fd!, s.fd!, maxClientFrame, maxServerFrame, (r) => {
        relay!.result = r;
        onStop(r);
      });
    } catch {
      // Out of descriptors (dup) or the loop refused the watch: the pumps carry on.
      return undo();
    }
    relay = new NativeRelay(handle, addon);
    return relay;
  }

  /** Whether `s` is a socket the relay could ever take: plain TCP (not TLS, whose bytes Node decrypts), with a descriptor. */
  static plain(s: Socket): boolean {
    return !('encrypted' in s) && tcpHandle(s) !== undefined;
  }

  get active(): boolean {
    return this.result === null;
  }

  /** Stops relaying now; undefined when it had stopped by itself already. */
  stop(): RelayResult | undefined {
    if (this.result !== null) return undefined;
    const r = this.addon.relayStop(this.handle);
    if (r) this.result = r;
    return r ?? undefined;
  }

  /** Bytes [from client, to client, from server, to server] so far. */
  bytes(): [number, number, number, number] {
    const r = this.result;
    if (r) return [r.bytesFromClient, r.bytesToClient, r.bytesFromServer, r.bytesToServer];
    this.addon.relayCounts(this.handle, this.counts);
    const c = this.counts;
    return [c[0]!, c[1]!, c[2]!, c[3]!];
  }
}
