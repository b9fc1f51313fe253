// What each `serve` worker (workers > 1) runs: the same ProxyRuntime as a single
// process (config generations, stats, KEK counters). The primary reads the
// config on SIGHUP and asks every worker to apply it (cluster.ts); with a
// metrics section each worker keeps a registry that the primary scrapes over
// IPC and adds up (metrics/cluster.ts), instead of serving one of its own.
import type { Config } from '../config/types.js';
import type { Logger } from '../log.js';
import type { ProxyMetrics } from '../metrics/registry.js';
import type { ProxyDeps, ProxyServer } from '../proxy/server.js';
import { ProxyRuntime } from './reload.js';

/** Called in each worker process (ProxyDeps.workerDepsModule). */
export async function createWorkerDeps(config: Config, logger: Logger): Promise<Partial<ProxyDeps>> {
  const runtime = await ProxyRuntime.open(config, logger);
  let server: ProxyServer | undefined;
  let metrics: ProxyMetrics | undefined;
  if (config.metrics) {
    const { createMetrics } = await import('../metrics/registry.js');
    const { version } = await import('./main.js'); // not at the top: main.js imports serve.js
    const worker = Number(process.env.PGCMEK_WORKER_ID);
    metrics = createMetrics({ stats: runtime.stats, server: () => server, kek: () => runtime.kekTotals(), generation: () => runtime.generation, version: version(), worker });
    // Before the first session: each session's interceptor samples its frames into the timer.
    runtime.timer = metrics.timer;
  }
  return {
    keyring: runtime.keyring,
    interceptor: runtime.interceptor,
    workerHooks: {
      async reload(next: Config) {
        const ignored = await runtime.reload(next);
        logger.debug({ generation: runtime.generation, ignored }, 'worker: config reloaded');
        return runtime.generation;
      },
      async metrics(listener: ProxyServer) {
        server = listener;
        return metrics ? ((await metrics.registry.getMetricsAsJSON()) as unknown[]) : [];
      },
      close: () => runtime.close(),
    },
  };
}
