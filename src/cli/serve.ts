// `pgcmek serve --config PATH`: load the config and the KEKs, start the proxy
// (with the metrics endpoint when configured), and act on signals:
//   SIGTERM (docker stop, Kubernetes) lets open sessions finish for
//           shutdown_grace_seconds; SIGINT (Ctrl-C), or a second signal,
//           closes them at once — Postgres's own smart/fast shutdown split;
//   SIGHUP  re-reads the config for new sessions (reload.ts).
// runService is shared with `demo`, which runs the same service in front of
// its own Postgres.
import { pino } from 'pino';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { nativeCryptoStatus } from '../crypto/native.js';
import { nativeRelayStatus } from '../proxy/native-relay.js';
import { createLogger, setLogger, type Logger } from '../log.js';
import type { OpsServer } from '../metrics/http.js';
import { bump } from '../metrics/stats.js';
import type { ProxyServer } from '../proxy/server.js';
import { CONFIG_OPTION } from './crypt.js';
import type { Command } from './command.js';
import type { CliIo, Signal } from './io.js';
import type { ProxyRuntime } from './reload.js';
import { describeError } from './report.js';

export function loggerFor(config: Config, io: CliIo): Logger {
  // Anything but the process's stdout (tests) is written to directly.
  if (io.stdout !== process.stdout) return createLogger(config.log.level, io.stdout);
  // A terminal gets pino-pretty (createLogger's TTY handling).
  if (process.stdout.isTTY && !process.env.CI) return createLogger(config.log.level);
  // A pipe or a file: synchronous writes. pino's default stdout stream writes
  // asynchronously, and the bin calls process.exit() when main() returns: the
  // last lines ("pgcmek stopped") could be lost or come out of order. Logs are
  // not per message, so a write(2) per line costs nothing that matters.
  return createLogger(config.log.level, pino.destination({ dest: 1, sync: true }));
}

/** SignalSource with SIGHUP too (process and EventEmitter accept any signal name). */
interface AllSignals {
  on(signal: Signal | 'SIGHUP', listener: () => void): unknown;
  off(signal: Signal | 'SIGHUP', listener: () => void): unknown;
}

export interface ServiceOptions {
  config: Config;
  /** Reads the config again for SIGHUP; throws (ConfigError) when it is invalid. */
  reread(): Config;
  logger: Logger;
  io: CliIo;
  /** Called once the proxy (and the metrics endpoint) listen. */
  onReady?(s: { server: ProxyServer; ops: OpsServer | undefined }): Promise<void> | void;
}

/** Runs the proxy until SIGTERM/SIGINT; resolves once it has closed. */
export async function runService(o: ServiceOptions): Promise<void> {
  const { logger, io } = o;
  // Loaded here, not at the top: keygen/encrypt/decrypt must work even if the proxy's modules cannot load.
  const { startProxy } = await import('../proxy/server.js');
  const { ProxyRuntime } = await import('./reload.js');
  const runtime = await ProxyRuntime.open(o.config, logger);
  let server: ProxyServer | undefined;
  let ops: OpsServer | undefined;
  try {
    const config = runtime.config;
    server = await startProxy(config, {
      logger,
      keyring: runtime.keyring,
      interceptor: runtime.interceptor,
      // workers > 1: each worker builds its own runtime from the config; the primary reloads and scrapes them.
      workerDepsModule: new URL('./worker-deps.js', import.meta.url).href,
    });
    if (config.metrics) ops = await startOps(config.metrics, runtime, () => server);
    const signals = (io.signals ?? process) as AllSignals;
    const stopped = untilStopped(server, runtime, logger, signals, o.reread);
    const cryptoPath = nativeCryptoStatus();
    if (!cryptoPath.active && !cryptoPath.detail.startsWith('off')) logger.warn({ crypto: cryptoPath.detail }, 'native crypto not active: the JavaScript crypto runs instead (same bytes, slower per value)');
    const relay = nativeRelayStatus().detail;
    logger.info({ host: server.host, port: server.port, config: config.source, pid: process.pid, crypto: cryptoPath.detail, relay, ...(ops && { metrics: `${ops.host}:${ops.port}` }) }, 'pgcmek ready');
    await o.onReady?.({ server, ops });
    await stopped;
  } finally {
    await server?.close(0); // a no-op after a signal (close() runs once); closes it after a failure
    await ops?.close();
    await runtime.close();
  }
}

async function startOps(at: { host: string; port: number }, runtime: ProxyRuntime, server: () => ProxyServer | undefined): Promise<OpsServer> {
  const { createMetrics } = await import('../metrics/registry.js');
  const { startOpsServer } = await import('../metrics/http.js');
  const { CachedProbe, probeUpstream } = await import('../metrics/readiness.js');
  const { version } = await import('./main.js'); // not at the top: main.js imports this module
  const metrics = createMetrics({ stats: runtime.stats, server, kek: () => runtime.kekTotals(), generation: () => runtime.generation, version: version() });
  runtime.timer = metrics.timer;
  const upstream = new CachedProbe(() => probeUpstream(runtime.config.upstream, 2_000));
  const { registry } = metrics;
  const workers = server()?.workerMetrics?.bind(server());
  let text = (): Promise<string> => registry.metrics();
  if (workers) {
    const { clusterMetrics } = await import('../metrics/cluster.js');
    text = () => clusterMetrics(registry, workers);
  }
  return startOpsServer(at, { contentType: registry.contentType, text }, { upstream: () => upstream.get(), kek: () => runtime.kekReady() });
}

/** Resolves once the server has closed after SIGTERM/SIGINT; SIGHUP reloads meanwhile. */
function untilStopped(
  server: ProxyServer,
  runtime: ProxyRuntime,
  logger: Logger,
  signals: AllSignals,
  reread: () => Config,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let closing: Promise<void> | undefined;
    let reloading = Promise.resolve();
    const stop = (signal: Signal) => () => {
      if (closing) {
        logger.warn({ signal }, 'second signal: closing open sessions now');
        void server.close(0).catch(() => {});
        return;
      }
      const grace = signal === 'SIGTERM' ? runtime.config.shutdownGraceSeconds * 1000 : 0;
      logger.info({ signal, graceSeconds: grace / 1000 }, 'shutting down');
      closing = server.close(grace);
      // A reload in progress finishes first, so that the keyring it built gets closed too.
      closing.then(() => reloading).then(() => {
        signals.off('SIGTERM', onTerm);
        signals.off('SIGINT', onInt);
        signals.off('SIGHUP', onHup);
        resolve();
      }, reject);
    };
    const onTerm = stop('SIGTERM');
    const onInt = stop('SIGINT');
    // One reload at a time, in order: a SIGHUP during a reload runs after it.
    const onHup = (): void => {
      reloading = reloading.then(() => (closing ? undefined : reload(runtime, server, logger, reread)));
    };
    signals.on('SIGTERM', onTerm);
    signals.on('SIGINT', onInt);
    signals.on('SIGHUP', onHup);
  });
}

/**
 * SIGHUP. With workers, this process checks the file and loads its KEKs first
 * (a config it rejects reaches no worker), then every worker applies it.
 */
async function reload(runtime: ProxyRuntime, server: ProxyServer, logger: Logger, reread: () => Config): Promise<void> {
  logger.info({ config: runtime.config.source }, 'SIGHUP: reloading the config');
  let ignored: string[];
  try {
    ignored = await runtime.reload(reread());
  } catch (e) {
    bump(runtime.stats.reloads, 'error');
    logger.error({ reason: describeError(e) }, 'config reload rejected: the current config stays');
    return;
  }
  if (ignored.length > 0) logger.warn({ keys: ignored }, `config reloaded, except ${ignored.join(', ')}: restart pgcmek to change them`);
  const failed = server.reloadWorkers ? (await server.reloadWorkers(runtime.config)).filter((w) => !w.ok) : [];
  for (const w of failed) logger.error({ worker: w.worker, reason: w.reason }, 'config reload failed in a worker: its new sessions keep the config it had');
  const done = { generation: runtime.generation, encryptedTables: runtime.config.encrypted.length, primaryKek: runtime.keyring.primaryLabel() };
  if (failed.length === 0) {
    logger.info(done, 'config reloaded: new sessions use it; open sessions keep theirs');
    bump(runtime.stats.reloads, 'ok');
  } else {
    logger.error({ ...done, failedWorkers: failed.map((w) => w.worker) }, 'config reloaded, except in some workers: restart pgcmek to apply it everywhere');
    bump(runtime.stats.reloads, 'error');
  }
}

export const serve: Command = {
  name: 'serve',
  summary: 'run the proxy',
  usage: 'pgcmek serve --config PATH',
  description: `
Runs the proxy described by the config file: listens on listen.host:listen.port,
connects each client to upstream, encrypts the columns under "encrypted".
Environment variables (VIGILO_CMEK_*, PGCMEK_LOG_LEVEL) override the file.
With a "metrics" section it also serves /metrics, /healthz and /readyz.

SIGTERM stops accepting connections and gives open sessions
shutdown_grace_seconds to finish; SIGINT (Ctrl-C), or a second signal, closes
them at once. SIGHUP re-reads the config (encrypted columns, KEKs, admin roles,
log level) for new sessions; an invalid file is logged and ignored. Logs are
JSON lines on stdout (pretty on a terminal).`,
  options: { config: { ...CONFIG_OPTION, help: 'config file', required: true } },
  async run(values, io) {
    const path = values.config as string;
    const env = io.env ?? process.env;
    const config = loadConfig(path, env);
    const logger = loggerFor(config, io);
    setLogger(logger);
    await runService({ config, reread: () => loadConfig(path, env), logger, io });
    logger.info('pgcmek stopped');
    return 0;
  },
};
