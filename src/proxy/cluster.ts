// `workers: N > 1`: the primary forks N workers (node:cluster) that share the
// listening socket, and routes CancelRequests between them: a cancel can reach
// any worker, but only the worker that owns the session knows its real key. The
// owner's number is in the client-visible pid (cancel.ts), so a worker that
// does not own it hands the request to the primary, which passes it on.
// The primary also asks its workers (ask/answer messages, each with a deadline)
// to apply a reloaded config and for their metrics, which it adds up.
import cluster, { type Worker } from 'node:cluster';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/types.js';
import { MAX_WORKERS } from './cancel.js';
import type { ProxyDeps, ProxyServer, WorkerReload } from './server.js';

type Ask = { op: 'reload'; config: Config } | { op: 'metrics' };
type Answer = { ok: true; generation?: number; metrics?: unknown[] } | { ok: false; reason: string };

type Msg =
  | { t: 'pgcmek:listening'; port: number }
  | { t: 'pgcmek:cancel'; worker: number; pid: number; key: string }
  | { t: 'pgcmek:sessions'; n: number }
  | { t: 'pgcmek:close'; graceMs: number }
  | ({ t: 'pgcmek:ask'; id: number } & Ask)
  | ({ t: 'pgcmek:answer'; id: number } & Answer);

/** How long the primary waits for a worker's answer: a reload may call a remote KEK backend. */
const ASK_TIMEOUT_MS: Record<Ask['op'], number> = { reload: 30_000, metrics: 3_000 };

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
  /** Workers past start-up: the ones that answer asks (one still starting reads `current` itself). */
  const ready = new Set<Worker>();
  const sessions = new Map<number, number>();
  // What a worker started from now on gets: a worker that died is restarted with the last reloaded config.
  let current = config;
  let closing = false;
  /** Workers that died (outside a shutdown) and were started again. */
  let restarts = 0;
  let nextAsk = 1;
  /** Asks in flight: ask id → the worker asked and its resolver. */
  const asks = new Map<number, { worker: number; settle(a: Answer): void }>();

  /** Asks one worker; its answer, or `reason` when it exits or does not answer in time. */
  const askOne = (wid: number, w: Worker, what: Ask): Promise<Answer> =>
    new Promise((resolve) => {
      const id = nextAsk++;
      const timer = setTimeout(() => settle({ ok: false, reason: `no answer within ${ASK_TIMEOUT_MS[what.op] / 1000} s` }), ASK_TIMEOUT_MS[what.op]);
      const gone = (): void => settle({ ok: false, reason: 'the worker exited' });
      function settle(a: Answer): void {
        clearTimeout(timer);
        w.off('exit', gone);
        asks.delete(id);
        resolve(a);
      }
      asks.set(id, { worker: wid, settle });
      w.once('exit', gone);
      if (!w.isConnected()) return gone();
      w.send({ t: 'pgcmek:ask', id, ...what } satisfies Msg);
    });

  /** Asks every worker past start-up (one still starting reads `current` itself, or is told when ready). */
  const ask = async (what: Ask): Promise<Map<number, Answer>> => {
    const live = [...workers].filter(([, w]) => ready.has(w));
    const answers = await Promise.all(live.map(([wid, w]) => askOne(wid, w, what)));
    return new Map(live.map(([wid], i) => [wid, answers[i]!]));
  };

  const fork = (id: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const startedWith = current;
      const w = cluster.fork({
        PGCMEK_WORKER_ID: String(id),
        // Every worker asks for the same address (port 0 included): the primary keys its
        // shared handle on it, so they all get the one socket the first worker bound.
        PGCMEK_WORKER_CONFIG: JSON.stringify({ ...current, workers: 1 }),
        PGCMEK_WORKER_DEPS: deps.workerDepsModule ?? '',
        PGCMEK_WORKER_LIMITS: JSON.stringify(deps.limits ?? {}),
      });
      workers.set(id, w);
      let listening = false;
      w.on('message', (m: unknown) => {
        if (!isMsg(m)) return;
        if (m.t === 'pgcmek:listening') {
          listening = true;
          ready.add(w);
          resolve(m.port);
          // Forked before a reload, which it was too young to be asked: it applies it now.
          if (startedWith !== current) {
            void askOne(id, w, { op: 'reload', config: { ...current, workers: 1 } }).then((a) => {
              if (!a.ok) logger.error({ worker: id, reason: a.reason }, 'config reload failed in a worker: its new sessions keep the config it had');
            });
          }
        } else if (m.t === 'pgcmek:cancel') {
          workers.get(m.worker)?.send(m);
        } else if (m.t === 'pgcmek:sessions') sessions.set(id, m.n);
        else if (m.t === 'pgcmek:answer') {
          const a = asks.get(m.id);
          if (a?.worker === id) a.settle(m);
        }
      });
      w.on('exit', (code, signal) => {
        ready.delete(w);
        sessions.delete(id);
        if (workers.get(id) === w) workers.delete(id);
        if (!listening) reject(new Error(`worker ${id} exited during start-up (code ${code}, signal ${signal})`));
        else if (!closing) {
          logger.error({ worker: id, code, signal }, 'worker died; starting a new one');
          restarts++;
          fork(id).catch((err: Error) => {
            // A worker told to close while it was starting leaves before it listens: not a failure.
            if (!closing) logger.error({ worker: id, reason: err.message }, 'worker restart failed');
          });
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
    workerRestarts: () => restarts,
    async reloadWorkers(next) {
      current = next;
      const answers = await ask({ op: 'reload', config: { ...next, workers: 1 } });
      return [...answers].map(([worker, a]): WorkerReload => (a.ok ? { worker, ok: true, generation: a.generation } : { worker, ok: false, reason: a.reason }));
    },
    async workerMetrics() {
      const answers = await ask({ op: 'metrics' });
      const out: unknown[][] = [];
      for (const [worker, a] of answers) {
        if (a.ok) out.push(a.metrics ?? []);
        else logger.warn({ worker, reason: a.reason }, 'metrics: a worker did not answer; its series are left out of this scrape');
      }
      return out;
    },
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
              // A worker still starting may not listen for messages yet (Node 20 drops one
              // that arrives while the entry module loads): SIGTERM reaches it either way,
              // through its handler or, before that exists, by ending it (no session yet).
              if (!ready.has(w)) w.process.kill('SIGTERM');
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

/** Inside a worker: answers the primary's asks with the worker's hooks (worker-main.ts). */
export function answerAsks(hooks: { reload(c: Config): Promise<number>; metrics(): Promise<unknown[]> }): void {
  process.on('message', (m: unknown) => {
    if (!isMsg(m) || m.t !== 'pgcmek:ask') return;
    const work: Promise<Answer> =
      m.op === 'reload' ? hooks.reload(m.config).then((generation) => ({ ok: true, generation })) : hooks.metrics().then((metrics) => ({ ok: true, metrics }));
    void work
      .catch((e: unknown): Answer => ({ ok: false, reason: e instanceof Error ? e.message : String(e) }))
      .then((a) => process.send?.({ t: 'pgcmek:answer', id: m.id, ...a } satisfies Msg));
  });
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
