// `workers: N > 1`: the primary forks N workers (node:cluster) that share the
// listening socket, and routes CancelRequests between them: a cancel can reach
// any worker, but only the worker that owns the session knows its real key. The
// owner's number is in the client-visible pid (cancel.ts), so a worker that
// does not own it hands the request to the primary, which passes it on.
import cluster, { type Worker } from 'node:cluster';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/types.js';
import { MAX_WORKERS } from './cancel.js';
import type { ProxyDeps, ProxyServer } from './server.js';

type Msg =
  | { t: 'pgcmek:listening'; port: number }
  | { t: 'pgcmek:cancel'; worker: number; pid: number; key: string }
  | { t: 'pgcmek:sessions'; n: number }
  | { t: 'pgcmek:close'; graceMs: number };

function isMsg(m: unknown): m is Msg {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string' && (m as { t: string }).t.startsWith('pgcmek:');
}

/** The compiled worker entry; under a TypeScript runner the built copy in dist/ is used. */
export function workerEntry(): string {
  const here = fileURLToPath(import.meta.url);
  const js = here.replace(/cluster\.(ts|js)$/, 'worker-main.js');
  if (here.endsWith('.js') && existsSync(js)) return js;
  const dist = here.replace(/\/src\/proxy\/cluster\.ts$/, '/dist/src/proxy/worker-main.js');
  if (existsSync(dist)) return dist;
  throw new Error(`worker entry not found (${dist}): run \`npx tsc -p tsconfig.json\` first`);
}

export async function startPrimary(config: Config, deps: ProxyDeps): Promise<ProxyServer> {
  const n = Math.min(config.workers, MAX_WORKERS);
  const logger = deps.logger;
  cluster.setupPrimary({ exec: workerEntry(), args: [] });
  const workers = new Map<number, Worker>();
  const sessions = new Map<number, number>();
  let closing = false;

  const fork = (id: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const w = cluster.fork({
        PGCMEK_WORKER_ID: String(id),
        // Every worker asks for the same address (port 0 included): the primary keys its
        // shared handle on it, so they all get the one socket the first worker bound.
        PGCMEK_WORKER_CONFIG: JSON.stringify({ ...config, workers: 1 }),
        PGCMEK_WORKER_DEPS: deps.workerDepsModule ?? '',
        PGCMEK_WORKER_LIMITS: JSON.stringify(deps.limits ?? {}),
      });
      workers.set(id, w);
      let listening = false;
      w.on('message', (m: unknown) => {
        if (!isMsg(m)) return;
        if (m.t === 'pgcmek:listening') {
          listening = true;
          resolve(m.port);
        } else if (m.t === 'pgcmek:cancel') {
          workers.get(m.worker)?.send(m);
        } else if (m.t === 'pgcmek:sessions') sessions.set(id, m.n);
      });
      w.on('exit', (code, signal) => {
        sessions.delete(id);
        if (workers.get(id) === w) workers.delete(id);
        if (!listening) reject(new Error(`worker ${id} exited during start-up (code ${code}, signal ${signal})`));
        else if (!closing) {
          logger.error({ worker: id, code, signal }, 'worker died; starting a new one');
          fork(id).catch((err: Error) => logger.error({ worker: id, reason: err.message }, 'worker restart failed'));
        }
      });
    });

  // The first worker binds (port 0 = a free port); the others share that port.
  const port = await fork(1);
  await Promise.all(Array.from({ length: n - 1 }, (_, i) => fork(i + 2)));
  logger.info({ host: config.listen.host, port, workers: n }, 'proxy listening');

  let closed: Promise<void> | undefined;
  return {
    port,
    host: config.listen.host,
    sessionCount: () => [...sessions.values()].reduce((a, b) => a + b, 0),
    close(graceMs = config.shutdownGraceSeconds * 1000) {
      closed ??= (async () => {
        closing = true;
        const exits = [...workers.values()].map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.isDead()) return resolve();
              const kill = setTimeout(() => w.process.kill('SIGKILL'), graceMs + 10_000);
              w.once('exit', () => {
                clearTimeout(kill);
                resolve();
              });
              w.send({ t: 'pgcmek:close', graceMs } satisfies Msg);
            }),
        );
        await Promise.all(exits);
      })();
      return closed;
    },
  };
}

/** Inside a worker: its number and the primary link; undefined outside a cluster. */
export interface WorkerChannel {
  workerId: number;
  routeCancel(worker: number, pid: number, key: Buffer): void;
  onCancel(fn: (pid: number, key: Buffer) => void): void;
  close(): void;
}

export function workerChannel(): WorkerChannel | undefined {
  if (!cluster.isWorker || !process.env.PGCMEK_WORKER_ID) return undefined;
  const workerId = Number(process.env.PGCMEK_WORKER_ID);
  let handler: ((pid: number, key: Buffer) => void) | undefined;
  const onMessage = (m: unknown): void => {
    if (isMsg(m) && m.t === 'pgcmek:cancel' && m.worker === workerId) handler?.(m.pid, Buffer.from(m.key, 'hex'));
  };
  process.on('message', onMessage);
  return {
    workerId,
    routeCancel: (worker, pid, key) => process.send?.({ t: 'pgcmek:cancel', worker, pid, key: key.toString('hex') } satisfies Msg),
    onCancel: (fn) => (handler = fn),
    close: () => process.removeListener('message', onMessage),
  };
}

export type { Msg as ClusterMessage };
