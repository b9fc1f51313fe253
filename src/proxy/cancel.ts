// Cancel keys. Each session shows its client a BackendKeyData of the proxy's own
// (random pid and key), never the server's: a client can cancel only its own
// query, and the real key never leaves the proxy. A CancelRequest is matched
// against this map and re-sent, with the real pid/key, on a fresh server connection.
//
// With several workers the pid carries the worker number in bits 24-30, so the
// worker that receives a CancelRequest knows which worker owns the session.
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { encodeCancelRequest } from '../protocol/frontend/startup.js';
import { connectUpstream, type UpstreamTarget } from './upstream.js';

export interface CancelTarget {
  upstream: UpstreamTarget;
  pid: number;
  key: Buffer;
}

export const MAX_WORKERS = 127;

export class CancelRegistry {
  private readonly byPid = new Map<number, { key: Buffer; target: CancelTarget }>();

  /** `worker` is 0 in a single process, 1..127 in a cluster. */
  constructor(readonly worker = 0) {
    if (worker < 0 || worker > MAX_WORKERS) throw new Error(`worker id ${worker} out of range`);
  }

  /** Registers a session's real key; returns the pid/key its client sees (same key length). */
  register(target: CancelTarget): { pid: number; key: Buffer } {
    let pid: number;
    do pid = (this.worker << 24) | randomInt(1, 1 << 24);
    while (this.byPid.has(pid));
    const key = randomBytes(target.key.length);
    this.byPid.set(pid, { key, target });
    return { pid, key };
  }

  unregister(pid: number): void {
    this.byPid.delete(pid);
  }

  /** The session a client key belongs to, if the key is exactly right. */
  lookup(pid: number, key: Buffer): CancelTarget | undefined {
    const e = this.byPid.get(pid);
    if (!e || e.key.length !== key.length || !timingSafeEqual(e.key, key)) return undefined;
    return e.target;
  }

  get size(): number {
    return this.byPid.size;
  }
}

/** Which worker owns a client-visible pid. */
export function workerOfPid(pid: number): number {
  return (pid >>> 24) & 0x7f;
}

/** Opens a server connection, sends the real CancelRequest, and closes it (as libpq does). */
export async function sendCancel(t: CancelTarget): Promise<void> {
  const s = await connectUpstream(t.upstream);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => s.destroy(), t.upstream.connectTimeoutMs);
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    // The server closes the connection once it has read the request.
    s.end(encodeCancelRequest(t.pid, t.key));
    s.resume();
  });
}
