// The operations endpoint (config `metrics: { host, port }`; off without it):
//   GET /metrics  Prometheus text format (registry.ts)
//   GET /healthz  200 while the process serves (liveness: restart it if this fails)
//   GET /readyz   200 when new sessions can work: Postgres answers (readiness.ts)
//                 and the KEKs are loaded; 503 with the failing check otherwise
// Plain node:http, no framework: three routes, no request body.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { ProbeResult } from './readiness.js';

/** What /metrics serves: one registry, or (workers > 1) the series of every worker added up. */
export interface MetricsText {
  contentType: string;
  text(): Promise<string>;
}

export interface ReadyChecks {
  upstream(): Promise<ProbeResult>;
  kek(): ProbeResult;
}

export interface OpsServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function route(req: IncomingMessage, res: ServerResponse, metrics: MetricsText, ready: ReadyChecks): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return send(res, 405, 'text/plain', 'method not allowed\n');
  }
  const path = (req.url ?? '/').split('?')[0];
  switch (path) {
    case '/metrics':
      return send(res, 200, metrics.contentType, await metrics.text());
    case '/healthz':
      return send(res, 200, 'text/plain', 'ok\n');
    case '/readyz': {
      const checks = { upstream: await ready.upstream(), kek: ready.kek() };
      const ok = checks.upstream.ok && checks.kek.ok;
      return send(res, ok ? 200 : 503, 'application/json', JSON.stringify({ ready: ok, checks }) + '\n');
    }
    default:
      return send(res, 404, 'text/plain', 'not found: try /metrics, /healthz or /readyz\n');
  }
}

export async function startOpsServer(at: { host: string; port: number }, metrics: MetricsText, ready: ReadyChecks): Promise<OpsServer> {
  const server = createServer((req, res) => {
    route(req, res, metrics, ready).catch((err: Error) => {
      if (!res.headersSent) send(res, 500, 'text/plain', `error: ${err.name}\n`);
      else res.destroy();
    });
  });
  // Scrapers keep connections alive; do not let them hold a shutdown.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      const why = e.code === 'EADDRINUSE' ? 'another process already listens there: stop it or change metrics.port' : e.message;
      reject(new Error(`metrics endpoint ${at.host}:${at.port}: ${e.code ?? 'error'} (${why})`));
    });
    server.listen(at.port, at.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : at.port;
  return {
    host: at.host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
