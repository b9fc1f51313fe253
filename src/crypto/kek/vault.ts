// The `vault` KEK backend: HashiCorp Vault's Transit secrets engine holds the
// KEK; DEKs are wrapped and unwrapped by Vault and the KEK never leaves it.
//   new DEK  POST <mount>/datakey/plaintext/<key>  {bits: 256}
//   wrap     POST <mount>/encrypt/<key>            (batch_input)
//   unwrap   POST <mount>/decrypt/<key>            (batch_input)
//   rewrap   POST <mount>/rewrap/<key>             (batch_input; the DEK stays in Vault)
// A Transit ciphertext is `vault:v<N>:<base64>`. In the envelope the KEK id is
// N in ASCII and the wrapped bytes are that ciphertext string as ASCII, exactly
// as Vault returned it: an operator can hand it to `vault write transit/decrypt`
// without pgcmek (docs/FORMAT.md §4).
import type { KekConfig } from '../../config/types.js';
import { log as rootLog, type Logger } from '../../log.js';
import { CMEKDecryptionError, KekConfigError } from '../errors.js';
import { DEFAULT_RETRY, lastError, RemoteCounters, RemoteKekError, withRetry, type RemoteMetrics, type RetryPolicy } from './retry.js';
import { BackendTag, type KekBackend, type WrappedDek } from './types.js';
import { Batcher } from './vault-batch.js';
import { checkWrapped, ciphertextOf, parseTransitCiphertext, parseVersionId, wrappedOf } from './vault-ciphertext.js';
import { checkCapabilities, checkKeyInfo, neededCapabilities, readVaultConfig } from './vault-config.js';
import { classifyVault, describeVaultFailure, safeAddr, type VaultHealth, type VaultTarget } from './vault-errors.js';
import { VaultHttp, VaultHttpError, type VaultResponse } from './vault-http.js';
import { parseLookupSelf, parseRenewSelf, TokenRenewer } from './vault-token.js';

export interface VaultBackendOptions {
  retry?: RetryPolicy;
  /** Deadline of one HTTP request. */
  timeoutMs?: number;
  /** How often the key's versions are re-read (another instance or an operator may rotate). */
  refreshSeconds?: number;
  /** Most items in one batch_input request. */
  batchMax?: number;
  /** Floor between token renewals (tests shorten it). */
  renewMinDelayMs?: number;
  log?: Logger;
}

const DEK_BYTES = 32;
const ON_DEMAND_REFRESH_MS = 5000;
const EMPTY = Buffer.alloc(0);

/** An item of a batch (or a single-item call) that Vault refused; the request itself went through. */
class ItemError extends Error {
  override readonly name = 'VaultItemError';
}

export class VaultBackend implements KekBackend {
  readonly name = 'vault' as const;
  readonly tag = BackendTag.vault;
  private readonly http: VaultHttp;
  private readonly counters = new RemoteCounters('vault');
  private readonly retry: RetryPolicy;
  private readonly log: Logger;
  private readonly renewer: TokenRenewer;
  private readonly decrypts: Batcher<string, Record<string, unknown>>;
  private readonly encrypts: Batcher<string, Record<string, unknown>>;
  private readonly rewraps: Batcher<string, Record<string, unknown>>;
  private refreshTimer?: NodeJS.Timeout;
  private refreshing?: Promise<void>;
  private ready = false;
  private latest = 0;
  private minDecryption = 1;
  private lastOnDemandRefresh = 0;

  constructor(
    readonly target: VaultTarget,
    token: string,
    ca: Buffer | undefined,
    /** The primary backend (kek.backend = vault): it must be able to generate DEKs. */
    private readonly isPrimary: boolean,
    private readonly o: VaultBackendOptions = {},
  ) {
    this.retry = o.retry ?? DEFAULT_RETRY;
    this.log = (o.log ?? rootLog()).child({ kek: 'vault' });
    const httpOpts = { addr: target.addr, token, timeoutMs: o.timeoutMs ?? 10_000, ...(ca ? { ca } : {}) };
    this.http = new VaultHttp(target.namespace ? { ...httpOpts, namespace: target.namespace } : httpOpts);
    const max = o.batchMax ?? 250;
    this.decrypts = new Batcher((items) => this.runBatch('decrypt', 'ciphertext', items), max);
    this.encrypts = new Batcher((items) => this.runBatch('encrypt', 'plaintext', items), max);
    this.rewraps = new Batcher((items) => this.runBatch('rewrap', 'ciphertext', items), max);
    this.renewer = new TokenRenewer({
      renew: async () => parseRenewSelf((await this.send('renew-self', 'POST', 'auth/token/renew-self', {})).body),
      describe: (e) => describeVaultFailure(lastError(e).error, this.target, lastError(e).attempts).message,
      log: this.log,
      ...(o.renewMinDelayMs !== undefined ? { minDelayMs: o.renewMinDelayMs } : {}),
    });
  }

  private get keyPath(): string {
    return `${this.target.mount}/keys/${this.target.keyName}`;
  }

  private opPath(op: string): string {
    return `${this.target.mount}/${op}/${this.target.keyName}`;
  }

  // ---- startup ------------------------------------------------------------

  /** Token, key and policy checks; any problem is a KekConfigError naming the setting. */
  async init(): Promise<void> {
    if (this.ready) return;
    try {
      const info = parseLookupSelf((await this.send('lookup-self', 'GET', 'auth/token/lookup-self')).body);
      await this.readKey();
      await this.checkCapabilities();
      this.renewer.start(info);
      this.log.info(
        { addr: safeAddr(this.target.addr), keyName: this.target.keyName, version: this.latest, tokenTtlSeconds: info.ttl, renewable: info.renewable },
        'Vault Transit KEK ready',
      );
    } catch (e) {
      if (e instanceof KekConfigError) throw e;
      throw new KekConfigError(`vault KEK backend: ${(await this.explain(e)).message}`, { cause: lastError(e).error });
    }
    const every = (this.o.refreshSeconds ?? 60) * 1000;
    if (every > 0) {
      this.refreshTimer = setInterval(() => void this.refresh().catch(() => {}), every);
      this.refreshTimer.unref();
    }
    this.ready = true;
  }

  private async readKey(): Promise<void> {
    const d = (await this.send('read-key', 'GET', this.keyPath)).body.data as Record<string, unknown> | undefined;
    checkKeyInfo(d, this.target, this.keyPath);
    this.noteMeta(d!);
  }

  private async checkCapabilities(): Promise<void> {
    let body: Record<string, unknown>;
    const needs = neededCapabilities(this.target, this.isPrimary);
    try {
      body = (await this.send('capabilities', 'POST', 'sys/capabilities-self', { paths: needs.map((n) => n.path) })).body;
    } catch (e) {
      const err = lastError(e).error;
      // A policy may withhold this endpoint; the real calls then tell.
      if (err instanceof VaultHttpError && (err.status === 403 || err.status === 404 || err.status === 400)) {
        this.log.debug('sys/capabilities-self not allowed; permissions are checked on first use');
        return;
      }
      throw e;
    }
    for (const warning of checkCapabilities(body, needs, this.target)) this.log.warn(warning);
  }

  /** Re-reads the key's versions (rotation by another instance or an operator). */
  async refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        await this.readKey();
      } catch (e) {
        this.log.warn({ reason: (await this.explain(e)).message }, 'could not re-read the Vault Transit key');
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** Rotates the Transit key (admin, tests); new DEKs use the new version. Returns it. */
  async rotateKek(): Promise<number> {
    try {
      const r = await this.send('rotate', 'POST', `${this.keyPath}/rotate`, {});
      const d = r.body.data as Record<string, unknown> | undefined;
      if (d && typeof d.latest_version === 'number') this.noteMeta(d);
      else await this.readKey(); // older Vaults answer 204
      return this.latest;
    } catch (e) {
      throw await this.remoteError(e);
    }
  }

  private noteMeta(d: Record<string, unknown>): void {
    this.latest = Number(d.latest_version);
    const min = Number(d.min_decryption_version);
    this.minDecryption = Number.isInteger(min) && min > 0 ? min : 1;
  }

  /** A version seen in an answer that is newer than what we read: follow it. */
  private noteVersion(v: number): void {
    if (v > this.latest) {
      this.latest = v;
      this.refreshSoon();
    }
  }

  /** An on-demand re-read, at most every few seconds (values naming unknown versions must not flood Vault). */
  private refreshSoon(): void {
    const now = Date.now();
    if (now - this.lastOnDemandRefresh < ON_DEMAND_REFRESH_MS) return;
    this.lastOnDemandRefresh = now;
    void this.refresh();
  }

  // ---- KekBackend -----------------------------------------------------------

  primaryKekId(): Buffer {
    return Buffer.from(String(this.latest), 'latin1');
  }

  /**
   * Versions from min_decryption_version up. A version above the latest we
   * read is accepted too: another instance may have rotated the key since;
   * Vault is the judge (a version it lacks fails as unknown_kek on unwrap).
   */
  hasKek(kekId: Buffer): boolean {
    const v = parseVersionId(kekId);
    if (v === undefined || v < this.minDecryption) return false;
    if (v > this.latest) this.refreshSoon();
    return true;
  }

  async generateDek(): Promise<{ dek: Buffer; wrapped: WrappedDek }> {
    let d: Record<string, unknown>;
    try {
      d = ((await this.send('datakey', 'POST', `${this.target.mount}/datakey/plaintext/${this.target.keyName}`, { bits: 256 })).body.data ?? {}) as Record<string, unknown>;
    } catch (e) {
      throw await this.remoteError(e);
    }
    const ct = parseTransitCiphertext(d.ciphertext);
    const dek = typeof d.plaintext === 'string' ? Buffer.from(d.plaintext, 'base64') : EMPTY;
    if (!ct || dek.length !== DEK_BYTES) {
      dek.fill(0);
      throw new RemoteKekError('vault', 'bad_response', `Vault's datakey answer is not a ${DEK_BYTES}-byte key and a vault:vN: ciphertext`);
    }
    this.noteVersion(ct.version);
    return { dek, wrapped: wrappedOf(ct) };
  }

  async wrap(dek: Buffer): Promise<WrappedDek> {
    let r: Record<string, unknown>;
    try {
      r = await this.encrypts.submit(dek.toString('base64'));
    } catch (e) {
      throw await this.remoteError(e);
    }
    return this.wrappedFromAnswer(r, 'encrypt');
  }

  async unwrap(w: WrappedDek): Promise<Buffer> {
    const version = checkWrapped(w);
    const ciphertext = ciphertextOf(version, w);
    let r: Record<string, unknown>;
    try {
      r = await this.decrypts.submit(ciphertext);
    } catch (e) {
      throw await this.unwrapError(e, version);
    }
    const dek = typeof r.plaintext === 'string' ? Buffer.from(r.plaintext, 'base64') : EMPTY;
    if (dek.length !== DEK_BYTES) {
      dek.fill(0);
      throw new CMEKDecryptionError('unwrap_failed', { backend: 'vault', kekId: String(version), detail: `Vault returned ${dek.length} bytes, not a ${DEK_BYTES}-byte DEK` });
    }
    return dek;
  }

  /** Transit rewrap to the latest version: the DEK never leaves Vault. */
  async rewrap(w: WrappedDek): Promise<WrappedDek> {
    const version = checkWrapped(w);
    const ciphertext = ciphertextOf(version, w);
    let r: Record<string, unknown>;
    try {
      r = await this.rewraps.submit(ciphertext);
    } catch (e) {
      if (e instanceof ItemError) throw await this.unwrapError(e, version);
      throw await this.remoteError(e);
    }
    return this.wrappedFromAnswer(r, 'rewrap');
  }

  metrics(): RemoteMetrics {
    return this.counters.snapshot();
  }

  /** Token renewals done so far and the last renewal failure, if any (no token in it). */
  tokenStatus(): { renewals: number; lastError?: string } {
    return this.renewer.lastError ? { renewals: this.renewer.renewals, lastError: this.renewer.lastError } : { renewals: this.renewer.renewals };
  }

  async close(): Promise<void> {
    this.renewer.stop();
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = undefined;
    await this.refreshing;
    this.http.close();
  }

  // ---- helpers --------------------------------------------------------------

  private wrappedFromAnswer(r: Record<string, unknown>, op: string): WrappedDek {
    const ct = parseTransitCiphertext(r.ciphertext);
    if (!ct) throw new RemoteKekError('vault', 'bad_response', `Vault's ${op} answer holds no vault:vN: ciphertext`);
    this.noteVersion(ct.version);
    return wrappedOf(ct);
  }

  private send(op: string, method: 'GET' | 'POST', path: string, body?: unknown, batch = false): Promise<VaultResponse> {
    return withRetry(op, () => this.http.request(method, path, body, { batch }), {
      policy: this.retry,
      counters: this.counters,
      classify: classifyVault,
    });
  }

  /** One Transit request for several items; per-item refusals come back as ItemErrors. */
  private async runBatch(op: 'encrypt' | 'decrypt' | 'rewrap', field: 'plaintext' | 'ciphertext', items: string[]): Promise<(Record<string, unknown> | Error)[]> {
    const path = this.opPath(op);
    if (items.length === 1) {
      try {
        return [((await this.send(op, 'POST', path, { [field]: items[0] })).body.data ?? {}) as Record<string, unknown>];
      } catch (e) {
        const err = lastError(e).error;
        if (err instanceof VaultHttpError && err.status === 400 && !isKeyMissingError(err)) return [new ItemError(err.errors.join('; '))];
        throw e;
      }
    }
    const r = await this.send(op, 'POST', path, { batch_input: items.map((x) => ({ [field]: x })) }, true);
    this.counters.batch(op, items.length);
    const results = ((r.body.data ?? {}) as Record<string, unknown>).batch_results;
    if (!Array.isArray(results) || results.length !== items.length) {
      throw new RemoteKekError('vault', 'bad_response', `Vault's batch ${op} answer does not have one result per item`);
    }
    return results.map((x: Record<string, unknown>) => (x.error ? new ItemError(String(x.error)) : x));
  }

  /** sys/health after a 503 says whether Vault is sealed (unauthenticated call). */
  private async health(): Promise<VaultHealth> {
    this.counters.call('health');
    try {
      const r = await this.http.request('GET', 'sys/health', undefined, { auth: false });
      const b = r.body;
      return { status: r.status, sealed: b.sealed === true, standby: b.standby === true };
    } catch (e) {
      // sys/health answers 503 when sealed, 429 on a standby, 501 when not initialised.
      if (e instanceof VaultHttpError) return { status: e.status, sealed: e.status === 503, standby: e.status === 429, initialized: e.status !== 501 };
      return {};
    }
  }

  private async explain(e: unknown): Promise<{ kind: string; message: string }> {
    if (e instanceof RemoteKekError || e instanceof KekConfigError) return { kind: 'internal', message: e.message };
    const { error, attempts } = lastError(e);
    const h = error instanceof VaultHttpError && error.status === 503 ? await this.health() : undefined;
    return describeVaultFailure(error, this.target, attempts, h);
  }

  private async remoteError(e: unknown): Promise<Error> {
    if (e instanceof RemoteKekError) return e;
    if (e instanceof ItemError) return new RemoteKekError('vault', 'rejected', `Vault refused the item: ${e.message}`);
    const d = await this.explain(e);
    return new RemoteKekError('vault', d.kind, d.message, { cause: lastError(e).error });
  }

  private async unwrapError(e: unknown, version: number): Promise<Error> {
    const kekId = String(version);
    if (e instanceof ItemError) {
      if (/too old|too new|disallowed by policy/.test(e.message)) {
        return new CMEKDecryptionError('unknown_kek', {
          backend: 'vault',
          kekId,
          detail: `Vault refuses key version ${version} (${e.message}); the key's min_decryption_version is ${this.minDecryption}`,
        });
      }
      return new CMEKDecryptionError('unwrap_failed', { backend: 'vault', kekId, detail: `Vault: ${e.message}` });
    }
    const d = await this.explain(e);
    const reason = d.kind === 'not_found' ? 'unknown_kek' : 'backend_unavailable';
    return new CMEKDecryptionError(reason, { backend: 'vault', kekId, detail: d.message, cause: lastError(e).error });
  }
}

function isKeyMissingError(err: VaultHttpError): boolean {
  return err.errors.some((e) => e === 'encryption key not found' || e === 'policy not found');
}

/** Validates kek.vault and builds the backend; init() then checks Vault itself. */
export async function createVaultBackend(kek: KekConfig, opts: VaultBackendOptions = {}): Promise<VaultBackend> {
  const c = await readVaultConfig(kek, opts.log ?? rootLog());
  return new VaultBackend(c.target, c.token, c.ca, c.primary, opts);
}
