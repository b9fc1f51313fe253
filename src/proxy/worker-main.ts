// Entry point of a cluster worker (forked by cluster.ts): rebuilds its deps from
// the environment, listens on the shared socket, and reports its port and
// session count to the primary. SIGTERM or the primary's close message start
// the same graceful shutdown as in a single process. The primary's asks (a
// reloaded config, a metrics scrape) go to the hooks the deps module returned.
import type { Config } from '../config/types.js';
import { createLogger } from '../log.js';
import { startProxy, type ProxyDeps, type ProxyServer, type WorkerHooks } from './server.js';
import { answerAsks, type ClusterMessage } from './cluster.js';

const config = JSON.parse(process.env.PGCMEK_WORKER_CONFIG ?? '{}') as Config;
const id = Number(process.env.PGCMEK_WORKER_ID);
const logger = createLogger(config.log?.level ?? 'info').child({ worker: id });
let server: ProxyServer | undefined;
let hooks: WorkerHooks | undefined;

// Set up before start-up: a close that arrives while the worker is still starting stops it too.
let stopping = false;
const stop = (graceMs: number): void => {
  if (stopping) return;
  stopping = true;
  // Still starting: no session yet; the start-up below sees `stopping` and leaves.
  if (!server) return;
  void server
    .close(graceMs)
    .then(() => hooks?.close())
    .catch((e: Error) => logger.warn({ reason: e.message }, 'closing the worker failed'))
    .then(() => process.exit(0));
};
process.on('message', (m: unknown) => {
  const msg = m as ClusterMessage;
  if (msg?.t === 'pgcmek:close') stop(msg.graceMs);
});
process.on('SIGTERM', () => stop(config.shutdownGraceSeconds * 1000));
process.on('SIGINT', () => {});
// The primary reloads and tells its workers; a SIGHUP sent to the whole process group must not kill one.
process.on('SIGHUP', () => {});
// The primary went away: finish the sessions we have and leave.
process.on('disconnect', () => stop(config.shutdownGraceSeconds * 1000));

let deps: ProxyDeps = { logger, limits: JSON.parse(process.env.PGCMEK_WORKER_LIMITS || '{}') as ProxyDeps['limits'] };
const depsModule = process.env.PGCMEK_WORKER_DEPS;
if (depsModule) {
  const m = (await import(depsModule)) as { createWorkerDeps(c: Config, l: typeof logger): Promise<Partial<ProxyDeps>> };
  deps = { ...deps, ...(await m.createWorkerDeps(config, logger)) };
}
hooks = deps.workerHooks;
if (stopping) {
  await hooks?.close();
  process.exit(0);
}
const listener = await startProxy({ ...config, workers: 1 }, deps);
server = listener;
answerAsks({
  reload: (c) => (hooks ? hooks.reload(c) : Promise.reject(new Error('this worker was started without reload support'))),
  metrics: () => hooks?.metrics(listener) ?? Promise.resolve([]),
});
process.send?.({ t: 'pgcmek:listening', port: listener.port } satisfies ClusterMessage);

const report = setInterval(() => process.send?.({ t: 'pgcmek:sessions', n: listener.sessionCount() } satisfies ClusterMessage), 1000);
report.unref();
