// Progress of a long command: done/total, rate and ETA, reported at most about
// once a second (the CLI redraws a bar, the proxy sends a NOTICE per report).

/** `label` names the column being worked on (schema.table.column). */
export type ProgressFn = (done: number, total: number, rate: number, etaSeconds: number, label: string) => void;

export class ProgressMeter {
  private readonly started = performance.now();
  // The first batch reports at once (so a short command reports too), then at most once per interval.
  private last = Number.NEGATIVE_INFINITY;
  private done = 0;

  constructor(
    private readonly label: string,
    private total: number,
    private readonly fn: ProgressFn | undefined,
    private readonly intervalMs = 1000,
  ) {}

  /** Adds `n` finished rows; reports when the interval has passed. */
  add(n: number): void {
    this.done += n;
    // More rows than counted at the start (concurrent inserts): grow the total.
    if (this.done > this.total) this.total = this.done;
    const now = performance.now();
    if (now - this.last >= this.intervalMs) this.report(now);
  }

  /** A last report (always sent, so short commands report once too). */
  finish(): void {
    this.report(performance.now());
  }

  get elapsedSeconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  private report(now: number): void {
    this.last = now;
    if (!this.fn) return;
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? this.done / secs : 0;
    const eta = rate > 0 ? Math.max(0, (this.total - this.done) / rate) : 0;
    this.fn(this.done, this.total, rate, eta, this.label);
  }
}
