// Keeps the Vault token alive: auth/token/lookup-self at init says its TTL and
// whether it is renewable; a renewable token is renewed (renew-self) at two
// thirds of its remaining TTL, as Vault's own lifetime watcher does, so it never
// lapses while the proxy runs. A failed renewal is retried before the TTL runs
// out. Nothing here ever logs or returns the token (lookup-self's `id` is it).
import type { Logger } from '../../log.js';

export interface TokenInfo {
  /** Seconds left; 0 = the token never expires (root or a period-less non-expiring token). */
  ttl: number;
  renewable: boolean;
  /** RFC 3339, when Vault says. */
  expireTime?: string;
  policies: string[];
}

/** Picks the safe fields from lookup-self's `data` (never `id`, the token itself). */
export function parseLookupSelf(body: Record<string, unknown>): TokenInfo {
  const d = (body.data ?? {}) as Record<string, unknown>;
  const info: TokenInfo = {
    ttl: typeof d.ttl === 'number' && d.ttl > 0 ? d.ttl : 0,
    renewable: d.renewable === true,
    policies: Array.isArray(d.policies) ? d.policies.map(String) : [],
  };
  if (typeof d.expire_time === 'string') info.expireTime = d.expire_time;
  return info;
}

/** renew-self's answer: the new TTL in seconds. */
export function parseRenewSelf(body: Record<string, unknown>): { ttl: number; renewable: boolean } {
  const a = (body.auth ?? {}) as Record<string, unknown>;
  return { ttl: typeof a.lease_duration === 'number' ? a.lease_duration : 0, renewable: a.renewable === true };
}

export interface RenewerOptions {
  /** Calls renew-self (with retries); resolves to the new TTL. */
  renew: () => Promise<{ ttl: number; renewable: boolean }>;
  /** Explains a renewal failure without the token (vault-errors.ts). */
  describe: (err: unknown) => string;
  log: Logger;
  /** Floor between renewals (Vault TTLs are whole seconds). */
  minDelayMs?: number;
  now?: () => number;
}

export class TokenRenewer {
  private timer?: NodeJS.Timeout;
  private expiresAt = 0;
  private stopped = false;
  private warnedCap = false;
  /** Successful renewals, for tests and metrics. */
  renewals = 0;
  lastError?: string;

  constructor(private readonly o: RenewerOptions) {}

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** Starts from lookup-self's answer. */
  start(info: TokenInfo): void {
    if (info.ttl === 0) return; // never expires: nothing to renew
    this.expiresAt = this.now() + info.ttl * 1000;
    if (!info.renewable) {
      this.o.log.warn(
        { expireTime: info.expireTime, ttlSeconds: info.ttl },
        'the Vault token is not renewable and expires; issue a new one (VIGILO_CMEK_VAULT_TOKEN) before then',
      );
      return;
    }
    this.scheduleIn((info.ttl * 1000 * 2) / 3);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Milliseconds until the token lapses (negative once it has). */
  remainingMs(): number {
    return this.expiresAt - this.now();
  }

  private scheduleIn(ms: number): void {
    if (this.stopped) return;
    const delay = Math.max(this.o.minDelayMs ?? 1000, Math.floor(ms));
    this.timer = setTimeout(() => void this.renewNow(), delay);
    // A renewal timer must not keep a finished process alive.
    this.timer.unref();
  }

  /** Renews once now; reschedules itself. Exposed for tests. */
  async renewNow(): Promise<void> {
    if (this.stopped) return;
    const before = this.remainingMs();
    try {
      const r = await this.o.renew();
      if (this.stopped) return;
      this.renewals++;
      this.lastError = undefined;
      this.expiresAt = this.now() + r.ttl * 1000;
      // A TTL that did not grow means the token hit its max TTL: it will lapse.
      if (r.ttl * 1000 <= before + 1000 && !this.warnedCap) {
        this.warnedCap = true;
        this.o.log.warn(
          { ttlSeconds: r.ttl },
          'the Vault token reached its max TTL and cannot be renewed further; issue a new one (VIGILO_CMEK_VAULT_TOKEN) before it expires',
        );
      }
      if (!r.renewable || r.ttl <= 0) return;
      this.scheduleIn((r.ttl * 1000 * 2) / 3);
    } catch (err) {
      if (this.stopped) return;
      this.lastError = this.o.describe(err);
      const left = this.remainingMs();
      this.o.log.warn({ reason: this.lastError, msLeft: Math.max(0, left) }, 'renewing the Vault token failed; retrying');
      if (left <= 0) {
        this.o.log.error({ reason: this.lastError }, 'the Vault token has expired; Vault calls will fail until VIGILO_CMEK_VAULT_TOKEN is replaced');
        return;
      }
      this.scheduleIn(Math.min(30_000, left / 3));
    }
  }
}
