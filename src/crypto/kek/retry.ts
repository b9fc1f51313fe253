// Remote KEK calls: bounded retries (exponential backoff, full jitter) and the
// counters a metrics endpoint reads. Both remote backends share this so their
// numbers mean the same thing: `calls` counts requests actually sent (a retry
// is another call), `errors` counts operations that failed for good.

export interface RetryPolicy {
  /** Attempts in total, the first included (1 = no retry). */
  maxAttempts: number;
  /** Backoff before retry n (n >= 1) is random in [0, min(maxDelayMs, baseDelayMs * 2^(n-1))]. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Worst case: 3 waits of at most 100, 200, 400 ms before giving up (~0.7 s). */
export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 2000 };

/** How a failure is treated: retried or not, and the label it is counted under. */
export interface Classified {
  retryable: boolean;
  /** Short label: 'network', 'throttled', 'denied', 'sealed', 'unavailable', 'rejected', ... */
  kind: string;
}

/** A snapshot of one backend's remote activity since it was created. */
export interface RemoteMetrics {
  backend: 'vault' | 'aws_kms';
  /** Requests sent, by operation (`decrypt`, `GenerateDataKey`...); a retry is one more. */
  calls: Record<string, number>;
  /** Operations that failed after their last attempt, by operation. */
  errors: Record<string, number>;
  /** Every failed request (retried or not), by kind. */
  failures: Record<string, number>;
  /** Requests repeated after a retryable failure, by operation. */
  retries: Record<string, number>;
  /** Items carried by batch requests (Vault `batch_input`), by operation. */
  batchedItems: Record<string, number>;
}

function bump(m: Record<string, number>, k: string, n = 1): void {
  m[k] = (m[k] ?? 0) + n;
}

export class RemoteCounters {
  private readonly calls: Record<string, number> = {};
  private readonly errors: Record<string, number> = {};
  private readonly failures: Record<string, number> = {};
  private readonly retries: Record<string, number> = {};
  private readonly batched: Record<string, number> = {};

  constructor(readonly backend: 'vault' | 'aws_kms') {}

  call(op: string): void {
    bump(this.calls, op);
  }
  failure(kind: string): void {
    bump(this.failures, kind);
  }
  error(op: string): void {
    bump(this.errors, op);
  }
  retry(op: string): void {
    bump(this.retries, op);
  }
  batch(op: string, items: number): void {
    bump(this.batched, op, items);
  }

  /** Total requests sent, all operations. */
  totalCalls(): number {
    let n = 0;
    for (const v of Object.values(this.calls)) n += v;
    return n;
  }

  snapshot(): RemoteMetrics {
    return {
      backend: this.backend,
      calls: { ...this.calls },
      errors: { ...this.errors },
      failures: { ...this.failures },
      retries: { ...this.retries },
      batchedItems: { ...this.batched },
    };
  }
}

export interface RetryOptions {
  policy: RetryPolicy;
  counters: RemoteCounters;
  classify: (err: unknown) => Classified;
  /** Tests replace the clock; production sleeps for real. */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Backoff before attempt `attempt + 1` (attempt >= 1), full jitter. */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.floor(random() * ceiling);
}

/** The error of the last attempt, with how many attempts were made. */
export class RetriesExhausted extends Error {
  override readonly name = 'RetriesExhausted';
  constructor(
    readonly attempts: number,
    override readonly cause: unknown,
  ) {
    super(`gave up after ${attempts} attempts`);
  }
}

/**
 * Runs `fn` (one request) until it succeeds, fails with a non-retryable error,
 * or the policy's attempts are spent. Counts every request and failure. The
 * original error is rethrown; when retries were spent it is wrapped in
 * RetriesExhausted so the caller can say "after N attempts".
 */
export async function withRetry<T>(op: string, fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const sleep = o.sleep ?? realSleep;
  for (let attempt = 1; ; attempt++) {
    o.counters.call(op);
    try {
      return await fn(attempt);
    } catch (err) {
      const c = o.classify(err);
      o.counters.failure(c.kind);
      if (!c.retryable) {
        o.counters.error(op);
        throw err;
      }
      if (attempt >= o.policy.maxAttempts) {
        o.counters.error(op);
        throw o.policy.maxAttempts > 1 ? new RetriesExhausted(attempt, err) : err;
      }
      o.counters.retry(op);
      await sleep(backoffMs(o.policy, attempt, o.random));
    }
  }
}

/** Unwraps RetriesExhausted: the error that decided the outcome, and the attempt count. */
export function lastError(err: unknown): { error: unknown; attempts: number } {
  return err instanceof RetriesExhausted ? { error: err.cause, attempts: err.attempts } : { error: err, attempts: 1 };
}

/**
 * A remote KEK call (generate, wrap, rewrap, init checks) failed for good.
 * The message names the setting or permission to check; it never holds a
 * token, key bytes or a DEK. Unwrap failures are CMEKDecryptionErrors instead.
 */
export class RemoteKekError extends Error {
  override readonly name = 'RemoteKekError';
  constructor(
    readonly backend: 'vault' | 'aws_kms',
    /** The failure's label, as counted in metrics (`network`, `denied`, `sealed`, `throttled`...). */
    readonly kind: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
