// What `serve` (and `demo`) run the proxy with, and how SIGHUP changes it.
//
// A generation = one config's keyring + EncryptionLayer (immutable). The proxy
// gets one interceptor factory that delegates to the current generation, so a
// reload swaps what NEW sessions use without touching the listener: open
// sessions keep the generation they started with (its encrypted map, KEKs and
// admin roles) until they end. A retired generation's layer and keyring are
// closed (searchable column keys and DEKs zeroed, cached plaintexts dropped)
// when its last session ends. A config that does not load, or KEKs that
// do not initialise, are rejected with the reason and the current generation
// stays. The log level applies at once, to open sessions too.
import type { Config } from '../config/types.js';
import { Keyring, type KeyringStats } from '../crypto/keyring.js';
import { createBackends } from '../crypto/kek/registry.js';
import type { RemoteMetrics } from '../crypto/kek/retry.js';
import type { KekBackend } from '../crypto/kek/types.js';
import { createAdminGateway } from '../encryption/admin-gateway.js';
import { layerSearchableKeys } from '../encryption/deps.js';
import { EncryptionLayer } from '../encryption/layer.js';
import type { Logger } from '../log.js';
import { instrumentAdmin } from '../metrics/admin.js';
import { CountingCodec } from '../metrics/counting-codec.js';
import { InstrumentedInterceptor, type FrameTimer } from '../metrics/instrument.js';
import type { KekTotals } from '../metrics/registry.js';
import type { ProbeResult } from '../metrics/readiness.js';
import { ProxyStats } from '../metrics/stats.js';
import type { InterceptorFactory } from '../proxy/interceptor.js';
import { initSql } from '../sql/index.js';

interface Generation {
  id: number;
  config: Config;
  keyring: Keyring;
  backends: KekBackend[];
  layer: EncryptionLayer;
  factory: InterceptorFactory;
  sessions: number;
  retired: boolean;
}

/** Keys the listener or the process was started with: a reload cannot change them. */
const RESTART_KEYS = ['listen', 'upstream', 'tls', 'workers', 'metrics'] as const;

/** Keyring.fromConfig, keeping the backends so their metrics() can be read. */
async function openKeyring(kek: Config['kek']): Promise<{ keyring: Keyring; backends: KekBackend[] }> {
  const { primary, readable } = await createBackends(kek);
  const backends = [...new Set([primary, ...readable])];
  try {
    for (const b of backends) await b.init();
  } catch (e) {
    await Promise.allSettled(backends.map((b) => b.close?.()));
    throw e;
  }
  return { keyring: new Keyring({ primary, readable, dek: kek.dek }), backends };
}

function remoteMetrics(backends: KekBackend[]): RemoteMetrics[] {
  return backends.flatMap((b) => {
    const m = (b as { metrics?: () => RemoteMetrics }).metrics;
    return m ? [m.call(b)] : [];
  });
}

function addStats(a: KeyringStats, b: KeyringStats): KeyringStats {
  return {
    cache: { size: a.cache.size + b.cache.size, hits: a.cache.hits + b.cache.hits, misses: a.cache.misses + b.cache.misses, evictions: a.cache.evictions + b.cache.evictions },
    unwraps: a.unwraps + b.unwraps,
    generates: a.generates + b.generates,
    rewraps: a.rewraps + b.rewraps,
  };
}

const ZERO: KeyringStats = { cache: { size: 0, hits: 0, misses: 0, evictions: 0 }, unwraps: 0, generates: 0, rewraps: 0 };

export class ProxyRuntime {
  readonly stats = new ProxyStats();
  /** Set when metrics are on: samples frame processing time into the histogram. */
  timer: FrameTimer | undefined;
  private current!: Generation;
  private readonly live = new Set<Generation>();
  private nextId = 1;
  // Counters of closed keyrings, so the totals never go down.
  private retired: KekTotals = { keyring: { ...ZERO, cache: { ...ZERO.cache } }, remote: [] };

  private constructor(private readonly logger: Logger) {}

  static async open(config: Config, logger: Logger): Promise<ProxyRuntime> {
    await initSql();
    const rt = new ProxyRuntime(logger);
    rt.current = await rt.build(config);
    rt.live.add(rt.current);
    return rt;
  }

  get config(): Config {
    return this.current.config;
  }

  get keyring(): Keyring {
    return this.current.keyring;
  }

  get layer(): EncryptionLayer {
    return this.current.layer;
  }

  /** 1 at start, +1 per successful reload. */
  get generation(): number {
    return this.current.id;
  }

  /** The factory given to startProxy: each new session gets the current generation's interceptor. */
  readonly interceptor: InterceptorFactory = (info) => {
    const g = this.current;
    const inner = g.factory(info);
    if (!inner) return undefined;
    g.sessions++;
    return new InstrumentedInterceptor(inner, this.stats, this.timer, () => this.release(g));
  };

  /**
   * Switches new sessions to `next`. Throws (and changes nothing) when its KEKs
   * cannot be loaded. Returns the keys that need a restart and were left as they are.
   */
  async reload(next: Config): Promise<string[]> {
    const old = this.current;
    const ignored = RESTART_KEYS.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(old.config[k]));
    const merged: Config = { ...next };
    for (const k of ignored) (merged as unknown as Record<string, unknown>)[k] = old.config[k];
    const g = await this.build(merged);
    this.current = g;
    this.live.add(g);
    this.logger.level = merged.log.level;
    old.retired = true;
    // Open sessions keep their map, but re-read the catalog (DDL done elsewhere).
    old.layer.invalidateAll();
    if (old.sessions === 0) void this.dispose(old);
    return ignored.map(String);
  }

  /** KEK/DEK counters over every keyring this process has had. */
  kekTotals(): KekTotals {
    let keyring = this.retired.keyring;
    const remote = [...this.retired.remote];
    for (const g of this.live) {
      keyring = addStats(keyring, g.keyring.stats());
      remote.push(...remoteMetrics(g.backends));
    }
    return { keyring, remote };
  }

  /** /readyz's KEK check: the current generation's keyring initialised (it cannot exist otherwise). */
  kekReady(): ProbeResult {
    return { ok: true, reason: `primary KEK ${this.current.keyring.primaryLabel()}` };
  }

  /** Closes every keyring (after the proxy has closed its sessions). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.live].map((g) => this.dispose(g)));
  }

  private async build(config: Config): Promise<Generation> {
    const { keyring, backends } = await openKeyring(config.kek);
    const stats = this.stats;
    try {
      // Admin commands use the searchable keys this generation's layer loaded (built just below).
      let layer: EncryptionLayer | undefined;
      const admin = instrumentAdmin(createAdminGateway(config, keyring, stats.adminProgressFn, layerSearchableKeys(() => layer!)), stats);
      layer = new EncryptionLayer({
        config,
        keyring,
        logger: this.logger,
        admin,
        observer: {
          codec: new CountingCodec(keyring, stats, { size: config.kek.dek.valueCacheSize ?? 0, ttlMs: config.kek.dek.cacheTtlSeconds * 1000 }),
          refused: (e) => stats.refused(e),
        },
      });
      stats.registerColumns(config.encrypted);
      return { id: this.nextId++, config, keyring, backends, layer, factory: layer.factory(), sessions: 0, retired: false };
    } catch (e) {
      await keyring.close();
      throw e;
    }
  }

  private release(g: Generation): void {
    g.sessions--;
    if (g.retired && g.sessions === 0) void this.dispose(g);
  }

  private dispose(g: Generation): Promise<void> {
    if (!this.live.delete(g)) return Promise.resolve();
    const s = g.keyring.stats();
    // The cache size is a gauge: a closed keyring holds nothing.
    this.retired = {
      keyring: addStats(this.retired.keyring, { ...s, cache: { ...s.cache, size: 0 } }),
      remote: [...this.retired.remote, ...remoteMetrics(g.backends)],
    };
    // Both at once (neither needs the other): the layer's searchable column keys and cached
    // plaintexts, and the keyring's DEKs, are zeroed as soon as the last session has ended.
    const layer = g.layer.close().catch((e: Error) => this.logger.warn({ reason: e.message, generation: g.id }, 'closing a retired encryption layer failed'));
    const keyring = g.keyring.close().catch((e: Error) => this.logger.warn({ reason: e.message, generation: g.id }, 'closing a retired keyring failed'));
    return Promise.all([layer, keyring]).then(() => undefined);
  }
}
