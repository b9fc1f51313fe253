// The listener: accepts client connections, runs start-up (client-hello.ts),
// routes CancelRequests, and hands each client to its own Session. With
// `workers: N > 1` the process becomes a cluster primary (cluster.ts) and each
// worker runs this same listener on the shared socket.
import cluster from 'node:cluster';
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { Config } from '../config/types.js';
import type { Logger } from '../log.js';
import { DEFAULT_MAX_FRAME } from '../protocol/frame.js';
import { adminShutdown } from '../protocol/backend/error-response.js';
import { readClientHello, ClientHelloError, type ClientHello } from './client-hello.js';
import { adoptReusing } from './reuse-reader.js';
import { upstreamTarget, type UpstreamTarget } from './upstream.js';
import { Session } from './session.js';
import { CancelRegistry, sendCancel, workerOfPid } from './cancel.js';
import type { InterceptorFactory } from './interceptor.js';
import { startPrimary, workerChannel } from './cluster.js';

export interface ProxyDeps {
  logger: Logger;
  /** The keyring (src/crypto/keyring.ts); typed loosely until the encryption layer plugs in. */
  keyring?: unknown;
  /** Builds each session's interceptor; absent = plain forwarding. */
  interceptor?: InterceptorFactory;
  /**
   * With `workers > 1`: a module each worker imports to build its own deps
   * (functions and keyrings do not cross processes). It must export
   * `createWorkerDeps(config: Config, logger: Logger): Promise<Partial<ProxyDeps>>`.
   */
  workerDepsModule?: string;
  /** Inside a worker: what the primary may ask of it (cluster.ts). */
  workerHooks?: WorkerHooks;
  limits?: ProxyLimits;
}

/** A worker's answers to its primary: a reload and a metrics scrape cross the process boundary. */
export interface WorkerHooks {
  /** Applies the config the primary reloaded (for new sessions); rejects when it cannot. Resolves with the generation now in use. */
  reload(config: Config): Promise<number>;
  /** This worker's metrics, `server` being its listener, as prom-client JSON (`Registry.getMetricsAsJSON()`); empty without a metrics section. */
  metrics(server: ProxyServer): Promise<unknown[]>;
  /** After the listener closed: release keyrings (DEKs zeroed). */
  close(): Promise<void>;
}

/** One worker's answer to a reload. */
export interface WorkerReload {
  worker: number;
  ok: boolean;
  /** The config generation the worker uses for new sessions (when ok). */
  generation?: number;
  /** Why it kept its config (when not ok). */
  reason?: string;
}

export interface ProxyLimits {
  /** Largest message a client may send (default 1 GiB - 1, Postgres's own limit). */
  maxClientFrame?: number;
  /** Largest message accepted from the server. */
  maxServerFrame?: number;
  /** A client must finish SSL negotiation and send its StartupMessage within this (default 60 s). */
  startupTimeoutMs?: number;
  /** Server connect + TLS handshake timeout (default 10 s). */
  connectTimeoutMs?: number;
}

export interface ProxyServer {
  /** The port actually bound (listen.port 0 picks a free one). */
  port: number;
  host: string;
  /** Stop accepting, let sessions finish for graceMs, then close them (FATAL 57P01). */
  close(graceMs?: number): Promise<void>;
  /** Open client sessions in this process (workers: summed over workers, refreshed periodically). */
  sessionCount(): number;
  /** Client traffic of this process so far (metrics read it at scrape time; absent on a cluster primary). */
  traffic?(): ProxyTraffic;
  /** A cluster primary: hands a reloaded config to every worker (and to workers started later). */
  reloadWorkers?(config: Config): Promise<WorkerReload[]>;
  /** A cluster primary: every worker's metrics as prom-client JSON; a worker that does not answer in time is left out. */
  workerMetrics?(): Promise<unknown[][]>;
  /** A cluster primary: workers that died and were started again. */
  workerRestarts?(): number;
}

export interface ProxyTraffic {
  /** Sessions started (StartupMessage received). */
  sessions: number;
  /** Bytes read from / written to client sockets, open and closed ones. */
  bytesIn: number;
  bytesOut: number;
  /** Open sessions whose traffic the native relay forwards now (native-relay.ts). */
  relayed: number;
}

/**
 * A plain client connection moves onto a socket that reads into a reused
 * buffer (reuse-reader.ts): what the hello read before that is counted here.
 */
function reuseReads(hello: Extract<ClientHello, { kind: 'startup' }>, done: ProxyTraffic): Extract<ClientHello, { kind: 'startup' }> {
  const raw = hello.socket;
  const bytesIn = raw.bytesRead;
  const bytesOut = raw.bytesWritten;
  const a = adoptReusing(raw);
  if (!a) return hello;
  done.bytesIn += bytesIn;
  done.bytesOut += bytesOut;
  a.socket.on('error', () => {});
  const rest = a.buffered.length > 0 ? Buffer.concat([hello.rest, ...a.buffered]) : hello.rest;
  return { ...hello, socket: a.socket, rest };
}

export async function startProxy(config: Config, deps: ProxyDeps): Promise<ProxyServer> {
  if (config.workers > 1 && cluster.isPrimary) return startPrimary(config, deps);
  return startListener(config, deps);
}

async function startListener(config: Config, deps: ProxyDeps): Promise<ProxyServer> {
  const logger = deps.logger;
  const limits = deps.limits ?? {};
  const target: UpstreamTarget = upstreamTarget(config.upstream, limits.connectTimeoutMs);
  const secureContext: SecureContext | undefined = config.tls
    ? createSecureContext({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) })
    : undefined;
  const channel = workerChannel();
  const cancels = new CancelRegistry(channel?.workerId ?? 0);
  const sessions = new Set<Session>();
  // Closed sessions' bytes are added up here; open ones are read from them when asked.
  const clients = new Set<Session>();
  const done: ProxyTraffic = { sessions: 0, bytesIn: 0, bytesOut: 0, relayed: 0 };
  const starting = new Set<Socket>();
  let closing = false;
  const sessionDeps = {
    logger,
    upstream: target,
    cancels,
    interceptor: deps.interceptor,
    maxClientFrame: limits.maxClientFrame ?? DEFAULT_MAX_FRAME,
    maxServerFrame: limits.maxServerFrame ?? 0x7ffffffe,
  };

  const cancelLocal = (pid: number, key: Buffer): void => {
    const t = cancels.lookup(pid, key);
    // Unknown keys are ignored, as Postgres does: nothing tells the sender.
    if (!t) {
      logger.debug('cancel request with an unknown key ignored');
      return;
    }
    sendCancel(t).catch((err: Error) => logger.warn({ reason: err.message }, 'forwarding a cancel request failed'));
  };
  channel?.onCancel(cancelLocal);

  const server: Server = createServer({ noDelay: true, pauseOnConnect: false }, (raw) => {
    if (closing) {
      raw.destroy();
      return;
    }
    raw.setNoDelay(true);
    raw.on('error', () => {});
    starting.add(raw);
    readClientHello(raw, { secureContext, timeoutMs: limits.startupTimeoutMs ?? 60_000 }).then(
      (helloRead) => {
        starting.delete(raw);
        const hello = helloRead.kind === 'startup' && !helloRead.tls ? reuseReads(helloRead, done) : helloRead;
        if (hello.kind === 'cancel') {
          raw.destroy();
          const owner = workerOfPid(hello.pid);
          if (channel && owner !== channel.workerId) channel.routeCancel(owner, hello.pid, hello.key);
          else cancelLocal(hello.pid, hello.key);
          return;
        }
        if (closing) {
          hello.socket.end(adminShutdown());
          return;
        }
        const s = new Session(hello, sessionDeps, (ended) => sessions.delete(ended));
        sessions.add(s);
        const sock = hello.socket;
        const count = (): void => {
          clients.delete(s);
          done.bytesIn += s.bytesIn;
          done.bytesOut += s.bytesOut;
        };
        done.sessions++;
        if (sock.closed) count();
        else {
          clients.add(s);
          sock.once('close', count);
        }
        s.start().catch((err: Error) => {
          // A bug or an interceptor factory that threw: this session only.
          logger.error({ reason: err.message }, 'session start failed');
          s.destroy();
        });
      },
      (err: Error) => {
        starting.delete(raw);
        logger.debug({ reason: err.message }, 'client start-up failed');
        if (err instanceof ClientHelloError && err.reply) raw.end(err.reply);
        else raw.destroy();
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.listen.port;
  if (!channel) logger.info({ host: config.listen.host, port }, 'proxy listening');

  let closed: Promise<void> | undefined;
  return {
    port,
    host: config.listen.host,
    sessionCount: () => sessions.size,
    traffic() {
      const t = { ...done };
      for (const c of clients) {
        t.bytesIn += c.bytesIn;
        t.bytesOut += c.bytesOut;
        if (c.relayed) t.relayed++;
      }
      return t;
    },
    close(graceMs = config.shutdownGraceSeconds * 1000) {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((r) => server.close(() => r()));
        for (const s of starting) s.destroy();
        const deadline = Date.now() + graceMs;
        while (sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
        if (sessions.size > 0) logger.info({ sessions: sessions.size }, 'grace period over; closing sessions');
        for (const s of [...sessions]) s.shutdown();
        await stopped;
        channel?.close();
      })();
      return closed;
    },
  };
}
