// /readyz's upstream check: can a session reach Postgres right now? A TCP
// connect, then an SSLRequest, which any Postgres answers with one byte ('S' or
// 'N') — so a port that accepts but is not Postgres fails too. With 'S' the TLS
// handshake is completed and closed with close_notify, and with 'N' the socket
// is closed before a StartupMessage: Postgres logs nothing for either (it keeps
// quiet about connections that end before start-up), so probing every few
// seconds does not flood the server's log. No credentials are sent.
import { connectUpstream, upstreamTarget } from '../proxy/upstream.js';
import type { Config } from '../config/types.js';

export interface ProbeResult {
  ok: boolean;
  /** Why not (safe to show: host, port and an error code). */
  reason?: string;
}

export async function probeUpstream(upstream: Config['upstream'], timeoutMs: number): Promise<ProbeResult> {
  // `disable` sends no SSLRequest in a session; the probe sends one anyway to see a Postgres answer.
  const target = upstreamTarget({ ...upstream, tls: upstream.tls === 'disable' ? 'prefer' : upstream.tls }, timeoutMs);
  try {
    const s = await connectUpstream(target);
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        s.destroy();
        resolve();
      }, timeoutMs);
      s.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      s.on('error', () => {});
      s.end();
      s.resume();
    });
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}

/** Probes at most once per `maxAgeMs`; concurrent callers share one probe. */
export class CachedProbe {
  private last?: { at: number; result: ProbeResult };
  private running?: Promise<ProbeResult>;

  constructor(
    private readonly probe: () => Promise<ProbeResult>,
    private readonly maxAgeMs = 1000,
  ) {}

  get(): Promise<ProbeResult> {
    if (this.last && Date.now() - this.last.at < this.maxAgeMs) return Promise.resolve(this.last.result);
    this.running ??= this.probe().then((result) => {
      this.last = { at: Date.now(), result };
      this.running = undefined;
      return result;
    });
    return this.running;
  }
}
