// Entry point of a cluster worker (forked by cluster.ts): rebuilds its deps from
// the environment, listens on the shared socket, and reports its port and
// session count to the primary. SIGTERM or the primary's close message start
// the same graceful shutdown as in a single process.
import type { Config } from '../config/types.js';
import { createLogger } from '../log.js';
import { startProxy, type ProxyDeps } from './server.js';
import type { ClusterMessage } from './cluster.js';

const config = JSON.parse(process.env.PGCMEK_WORKER_CONFIG ?? '{}') as Config;
const id = Number(process.env.PGCMEK_WORKER_ID);
const logger = createLogger(config.log?.level ?? 'info').child({ worker: id });
let deps: ProxyDeps = { logger, limits: JSON.parse(process.env.PGCMEK_WORKER_LIMITS || '{}') as ProxyDeps['limits'] };
const depsModule = process.env.PGCMEK_WORKER_DEPS;
if (depsModule) {
  const m = (await import(depsModule)) as { createWorkerDeps(c: Config, l: typeof logger): Promise<Partial<ProxyDeps>> };
  deps = { ...deps, ...(await m.createWorkerDeps(config, logger)) };
}
const server = await startProxy({ ...config, workers: 1 }, deps);
process.send?.({ t: 'pgcmek:listening', port: server.port } satisfies ClusterMessage);

const report = setInterval(() => process.send?.({ t: 'pgcmek:sessions', n: server.sessionCount() } satisfies ClusterMessage), 1000);
report.unref();

let stopping = false;
const stop = (graceMs: number): void => {
  if (stopping) return;
  stopping = true;
  void server.close(graceMs).then(() => process.exit(0));
};
process.on('message', (m: unknown) => {
  const msg = m as ClusterMessage;
  if (msg?.t === 'pgcmek:close') stop(msg.graceMs);
});
process.on('SIGTERM', () => stop(config.shutdownGraceSeconds * 1000));
process.on('SIGINT', () => {});
// The primary went away: finish the sessions we have and leave.
process.on('disconnect', () => stop(config.shutdownGraceSeconds * 1000));
