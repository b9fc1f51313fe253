// The Prometheus metrics (prom-client). Every series is read at scrape time, in a
// collect() callback, from state the proxy keeps anyway (sockets, the keyring's
// counters, the remote backends' metrics()) or from the plain integers in
// ProxyStats — nothing on the hot path talks to prom-client. The one exception
// is the sampled latency histogram (instrument.ts), 1 observation per 16 frames.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';
import type { KeyringStats } from '../crypto/keyring.js';
import type { RemoteMetrics } from '../crypto/kek/retry.js';
import type { ProxyServer } from '../proxy/server.js';
import type { Direction, FrameTimer } from './instrument.js';
import type { ProxyStats } from './stats.js';

/** KEK and DEK counters summed over every keyring the process has had (reloads build new ones). */
export interface KekTotals {
  keyring: KeyringStats;
  remote: RemoteMetrics[];
}

export interface MetricsSources {
  stats: ProxyStats;
  server(): ProxyServer | undefined;
  kek(): KekTotals;
  /** Config generation: 1 at start, +1 per successful reload. */
  generation(): number;
  version: string;
  /** In a cluster worker: its number, as a `worker` label on the series that do not add up across workers. */
  worker?: number;
}

/**
 * Series about the process as a whole: with workers, the primary's (it reads the
 * config and reloads it); the rest come from the workers, where sessions run.
 */
export const PRIMARY_SERIES: ReadonlySet<string> = new Set(['pgcmek_build_info', 'pgcmek_config_generation', 'pgcmek_config_reloads_total', 'pgcmek_worker_restarts_total']);

type Series = [LabelValues<string>, number];

/** A counter whose value is read from elsewhere at each scrape. */
function readCounter(registry: Registry, name: string, help: string, labelNames: string[], read: () => Iterable<Series>): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, v] of read()) this.inc(labels, v);
    },
  });
}

function readGauge(registry: Registry, name: string, help: string, labelNames: string[], read: () => Iterable<Series>): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, v] of read()) this.set(labels, v);
    },
  });
}

const one = (v: number): Series[] => [[{}, v]];

function* split(m: Map<string, number>, names: string[]): Generator<Series> {
  for (const [k, v] of m) {
    const parts = k.split('|');
    yield [Object.fromEntries(names.map((n, i) => [n, parts[i] ?? ''])), v];
  }
}

/** Sums one field of every backend's metrics() (live and closed keyrings) per backend and key. */
function* remote(all: RemoteMetrics[], pick: (m: RemoteMetrics) => Record<string, number>, label = 'operation'): Generator<Series> {
  const sum = new Map<string, number>();
  for (const m of all) for (const [k, v] of Object.entries(pick(m))) sum.set(`${m.backend}|${k}`, (sum.get(`${m.backend}|${k}`) ?? 0) + v);
  yield* split(sum, ['backend', label]);
}

/** Buckets from 10 µs (a cached decrypt) to 5 s (a KEK backend timing out). */
const FRAME_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface ProxyMetrics {
  registry: Registry;
  timer: FrameTimer;
}

export function createMetrics(src: MetricsSources): ProxyMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const s = src.stats;

  readGauge(registry, 'pgcmek_build_info', 'pgcmek version (always 1)', ['version'], () => [[{ version: src.version }, 1]]);
  readGauge(registry, 'pgcmek_config_generation', 'Config generation in use for new sessions (1 at start, +1 per successful reload)', [], () => one(src.generation()));
  readCounter(registry, 'pgcmek_config_reloads_total', 'SIGHUP reloads, by result (error: the old config stayed)', ['result'], () => split(s.reloads, ['result']));

  readCounter(registry, 'pgcmek_worker_restarts_total', 'Worker processes that died and were started again (workers > 1; their sessions were lost)', [], () =>
    one(src.server()?.workerRestarts?.() ?? 0),
  );
  readGauge(registry, 'pgcmek_sessions_open', 'Client sessions open now', [], () => one(src.server()?.sessionCount() ?? 0));
  readGauge(registry, 'pgcmek_sessions_native_relay', 'Open sessions forwarded by the native relay (nothing to rewrite, plain TCP)', [], () =>
    one(src.server()?.traffic?.().relayed ?? 0),
  );
  readCounter(registry, 'pgcmek_sessions_total', 'Client sessions started', [], () => one(src.server()?.traffic?.().sessions ?? 0));
  readCounter(registry, 'pgcmek_client_received_bytes_total', 'Bytes received from clients', [], () => one(src.server()?.traffic?.().bytesIn ?? 0));
  readCounter(registry, 'pgcmek_client_sent_bytes_total', 'Bytes sent to clients', [], () => one(src.server()?.traffic?.().bytesOut ?? 0));
  readCounter(registry, 'pgcmek_queries_total', 'Statements from clients: Query messages (simple) and Execute messages (extended)', ['protocol'], () => [
    [{ protocol: 'simple' }, s.queries.simple],
    [{ protocol: 'extended' }, s.queries.extended],
  ]);

  readCounter(registry, 'pgcmek_values_encrypted_total', 'Values of a configured column encrypted on their way to Postgres', ['column'], function* () {
    for (const [column, c] of s.columns) yield [{ column }, c.encrypted];
  });
  readCounter(registry, 'pgcmek_values_decrypted_total', 'Values of a configured column decrypted on their way to the client', ['column'], function* () {
    for (const [column, c] of s.columns) yield [{ column }, c.decrypted];
  });
  readCounter(registry, 'pgcmek_decrypt_failures_total', 'Values that could not be decrypted, by reason', ['reason'], () => split(s.decryptFailures, ['reason']));
  readCounter(registry, 'pgcmek_encrypt_failures_total', 'Values that could not be encrypted (the statement was refused), by reason', ['reason'], () =>
    split(s.encryptFailures, ['reason']),
  );
  readCounter(registry, 'pgcmek_refusals_total', 'Statements refused by the proxy, by reason and SQLSTATE', ['reason', 'sqlstate'], () =>
    split(s.refusals, ['reason', 'sqlstate']),
  );

  readCounter(registry, 'pgcmek_kek_remote_calls_total', 'Requests sent to a remote KEK backend (a retry is one more)', ['backend', 'operation'], () =>
    remote(src.kek().remote, (m) => m.calls),
  );
  readCounter(registry, 'pgcmek_kek_remote_errors_total', 'Remote KEK operations that failed after their last attempt', ['backend', 'operation'], () =>
    remote(src.kek().remote, (m) => m.errors),
  );
  readCounter(registry, 'pgcmek_kek_remote_failures_total', 'Failed remote KEK requests (retried or not), by kind: network, throttled, denied, sealed...', ['backend', 'kind'], () =>
    remote(src.kek().remote, (m) => m.failures, 'kind'),
  );
  readCounter(registry, 'pgcmek_kek_remote_retries_total', 'Remote KEK requests repeated after a retryable failure', ['backend', 'operation'], () =>
    remote(src.kek().remote, (m) => m.retries),
  );
  readCounter(registry, 'pgcmek_dek_cache_hits_total', 'Reads whose DEK was already unwrapped in memory', [], () => one(src.kek().keyring.cache.hits));
  readCounter(registry, 'pgcmek_dek_cache_misses_total', 'Reads whose DEK had to be unwrapped by a KEK backend', [], () => one(src.kek().keyring.cache.misses));
  readGauge(registry, 'pgcmek_dek_cache_entries', 'Unwrapped DEKs held in memory', [], () => one(src.kek().keyring.cache.size));
  readCounter(registry, 'pgcmek_dek_unwraps_total', 'DEKs unwrapped by a KEK backend', [], () => one(src.kek().keyring.unwraps));
  readCounter(registry, 'pgcmek_dek_generated_total', 'Fresh DEKs generated for writes', [], () => one(src.kek().keyring.generates));

  readGauge(registry, 'pgcmek_admin_commands_running', 'CMEK admin commands running now', ['command'], () => split(s.adminRunning, ['command']));
  readCounter(registry, 'pgcmek_admin_commands_total', 'CMEK admin commands finished, by outcome', ['command', 'outcome'], () =>
    split(s.adminFinished, ['command', 'outcome']),
  );
  // Progress is per command, and a command runs in one worker: labelled by worker, never added up.
  const w = src.worker === undefined ? {} : { worker: String(src.worker) };
  const progressLabels = src.worker === undefined ? ['column'] : ['column', 'worker'];
  readGauge(registry, 'pgcmek_admin_rows_done', 'Rows done by the latest admin command on a column', progressLabels, function* () {
    for (const [column, p] of s.adminProgress) yield [{ column, ...w }, p.done];
  });
  readGauge(registry, 'pgcmek_admin_rows_total', 'Rows to do for the latest admin command on a column', progressLabels, function* () {
    for (const [column, p] of s.adminProgress) yield [{ column, ...w }, p.total];
  });

  const frames = new Histogram({
    name: 'pgcmek_frame_processing_seconds',
    help: `Time the encryption layer holds a message it rewrites or inspects (SQL analysis, encryption, decryption, KEK calls), sampled 1 message in 16`,
    labelNames: ['direction'],
    buckets: FRAME_BUCKETS,
    registers: [registry],
  });
  const byDirection: Record<Direction, ReturnType<typeof frames.labels>> = { client: frames.labels('client'), server: frames.labels('server') };
  return { registry, timer: { observe: (d, secs) => byDirection[d].observe(secs) } };
}
