// Wraps a session's interceptor (the encryption layer) to count queries and to
// time the work the proxy adds. What is timed: from the moment the session hands
// a frame to the encryption layer to the moment its verdict is ready (SQL
// analysis, encryption/decryption, waiting on a KEK backend included) — the
// latency the proxy adds to that message. It is measured on 1 frame in
// SAMPLE_EVERY per session, so the clock and the histogram cost nothing on most
// frames. Frames the layer does not ask for are forwarded from their header and
// never pass through here (their cost is a copy, not measured).
import { FrontendCode } from '../protocol/codes.js';
import type { InterceptContext, Interceptor, Verdict } from '../proxy/interceptor.js';
import type { Pending } from '../proxy/state-types.js';
import type { ProxyStats } from './stats.js';

export const SAMPLE_EVERY = 16;

export type Direction = 'client' | 'server';

export interface FrameTimer {
  observe(direction: Direction, seconds: number): void;
}

export class InstrumentedInterceptor implements Interceptor {
  readonly frontendCodes: readonly number[];
  readonly backendCodes: readonly number[];
  readonly trackState: boolean;
  readonly onFrontend?: (code: number, frame: Buffer, ctx: InterceptContext) => Verdict | Promise<Verdict>;
  readonly onBackend?: (code: number, frame: Buffer, reply: Pending | undefined, ctx: InterceptContext) => Verdict | Promise<Verdict>;
  readonly passesRows?: (reply: Pending | undefined) => boolean;
  // A random start, so that short sessions get sampled too.
  private tick = 1 + Math.floor(Math.random() * SAMPLE_EVERY);
  private closed = false;

  constructor(
    private readonly inner: Interceptor,
    stats: ProxyStats,
    private readonly timer: FrameTimer | undefined,
    private readonly onClosed: () => void,
  ) {
    this.frontendCodes = inner.frontendCodes;
    this.backendCodes = inner.backendCodes;
    this.trackState = inner.trackState;
    const queries = stats.queries;
    if (inner.onFrontend) {
      this.onFrontend = (code, frame, ctx) => {
        if (code === FrontendCode.Query) queries.simple++;
        else if (code === FrontendCode.Execute) queries.extended++;
        return this.sample() ? this.timed('client', () => inner.onFrontend!(code, frame, ctx)) : inner.onFrontend!(code, frame, ctx);
      };
    }
    if (inner.passesRows) this.passesRows = (reply) => inner.passesRows!(reply);
    if (inner.onBackend) {
      this.onBackend = (code, frame, reply, ctx) =>
        this.sample() ? this.timed('server', () => inner.onBackend!(code, frame, reply, ctx)) : inner.onBackend!(code, frame, reply, ctx);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.inner.close?.();
    } finally {
      this.onClosed();
    }
  }

  private sample(): boolean {
    if (!this.timer || --this.tick > 0) return false;
    this.tick = SAMPLE_EVERY;
    return true;
  }

  private timed(direction: Direction, fn: () => Verdict | Promise<Verdict>): Verdict | Promise<Verdict> {
    const t0 = performance.now();
    const v = fn();
    if (v instanceof Promise) return v.finally(() => this.timer!.observe(direction, (performance.now() - t0) / 1000));
    this.timer!.observe(direction, (performance.now() - t0) / 1000);
    return v;
  }
}
