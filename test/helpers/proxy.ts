// Starts pgcmek in front of the suite's real Postgres, so integration tests can
// run the same client code DIRECT and THROUGH THE PROXY and compare what they see.
// In-process (`startTestProxy`) for most tests; as a child process running the
// CLI (`spawnProxyProcess`) for what only a real process shows (RSS, signals).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { freePort } from '../../src/dev/cluster.js';
import { createLogger } from '../../src/log.js';
import { startProxy, type ProxyServer } from '../../src/proxy/server.js';

/** A Config with no encrypted columns: a plain forwarder to the test cluster. */
export function testProxyConfig(overrides: Partial<Config> = {}, upstreamUrl: string = inject('pgUrl')): Config {
  const up = new URL(upstreamUrl);
  return {
    source: 'test/helpers/proxy.ts',
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: up.hostname, port: Number(up.port || 5432), tls: 'disable' },
    workers: 1,
    shutdownGraceSeconds: 1,
    kek: {
      backend: 'local',
      local: { previous: [] },
      dek: { maxAgeSeconds: 0, maxUses: 1, cacheSize: 1000, cacheTtlSeconds: 0 },
    },
    encrypted: [],
    decryptUnmapped: 'off',
    admin: { roles: [] },
    log: { level: 'silent' },
    ...overrides,
  };
}

export interface TestProxy {
  host: string;
  port: number;
  server: ProxyServer;
  /** The same connection URL (user, password, database, query) pointed at the proxy. */
  via(directUrl: string): string;
  close(graceMs?: number): Promise<void>;
}

/** Points a postgres:// URL at another host:port, keeping credentials, database and options. */
export function retarget(url: string, host: string, port: number): string {
  const u = new URL(url);
  u.hostname = host;
  u.port = String(port);
  return u.toString();
}

export async function startTestProxy(opts: { config?: Partial<Config>; upstreamUrl?: string } = {}): Promise<TestProxy> {
  const config = testProxyConfig(opts.config, opts.upstreamUrl);
  const server = await startProxy(config, { logger: createLogger('silent') });
  return {
    host: server.host,
    port: server.port,
    server,
    via: (directUrl) => retarget(directUrl, server.host, server.port),
    // A grace period by default: clients that just sent Terminate (pool.end() does not wait
    // for the socket to close) are not sent a shutdown FATAL they would raise as an error.
    close: (graceMs = 2_000) => server.close(graceMs),
  };
}

/**
 * Runs a scenario DIRECT (on directUrl) and then THROUGH the proxy (the same URL
 * retargeted), sequentially, and returns both transcripts. Tests assert they are
 * equal: a client must not be able to tell the proxy is there. The scenario must
 * leave the database as it found it (the second run sees the first one's leftovers).
 */
export async function both<T>(directUrl: string, proxy: TestProxy, fn: (url: string, target: 'direct' | 'proxy') => Promise<T>): Promise<{ direct: T; proxy: T }> {
  const direct = await fn(directUrl, 'direct');
  const proxied = await fn(proxy.via(directUrl), 'proxy');
  return { direct, proxy: proxied };
}

/** Resolves when host:port accepts a TCP connection (child processes announce nothing). */
export async function waitForPort(host: string, port: number, timeoutMs = 20_000, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`process exited before listening on ${host}:${port}`);
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ProxyProcess {
  host: string;
  port: number;
  child: ChildProcess;
  /** What the process printed so far (stdout + stderr, last 64 KiB), for failure messages. */
  output(): string;
  via(directUrl: string): string;
  /** Sends a signal and waits for exit; SIGKILL after killAfterMs. Resolves to the exit code (or signal name). */
  stop(signal?: NodeJS.Signals, killAfterMs?: number): Promise<number | string>;
  /** Resolves with the exit code (or signal name) whenever the process exits. */
  exited: Promise<number | string>;
}

export interface ProxyProcessOptions {
  shutdownGraceSeconds?: number;
  logLevel?: string;
  /** YAML appended to the generated config (an `encrypted:` section, say). */
  extraYaml?: string;
  node?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs the production entry point, `node dist/src/cli.js serve --config <tmp.yaml>`,
 * in front of the suite's Postgres, with a fresh local KEK from `pgcmek keygen`.
 * Needs a build (`npx tsc -p tsconfig.json`; `npm test` builds first).
 */
export async function spawnProxyProcess(opts: ProxyProcessOptions = {}): Promise<ProxyProcess> {
  const cli = join(process.cwd(), 'dist', 'src', 'cli.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build first (npx tsc -p tsconfig.json)`);
  const node = opts.node ?? process.execPath;
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-proxy-'));
  const kek = join(dir, 'kek');
  execFileSync(node, [cli, 'keygen', '--out', kek], { stdio: 'ignore' });
  const up = new URL(inject('pgUrl'));
  const listen = { host: '127.0.0.1', port: await freePort() };
  const yaml = [
    `listen: { host: ${listen.host}, port: ${listen.port} }`,
    `upstream: { host: ${up.hostname}, port: ${up.port}, tls: disable }`,
    `shutdown_grace_seconds: ${opts.shutdownGraceSeconds ?? 2}`,
    `kek: { backend: local, local: { path: ${kek} } }`,
    `log: { level: ${opts.logLevel ?? 'warn'} }`,
    opts.extraYaml ?? '',
  ].join('\n');
  const file = join(dir, 'pgcmek.yaml');
  writeFileSync(file, yaml, { mode: 0o600 });
  // The developer's own VIGILO_CMEK_* / PGCMEK_LOG_LEVEL must not override the file.
  const env = Object.fromEntries(Object.entries({ ...process.env, ...opts.env }).filter(([k]) => !k.startsWith('VIGILO_CMEK_') && k !== 'PGCMEK_LOG_LEVEL'));
  const child = spawn(node, [cli, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-65_536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  void exited.then(() => rmSync(dir, { recursive: true, force: true }));
  try {
    await waitForPort(listen.host, listen.port, 20_000, () => child.exitCode === null && child.signalCode === null);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n--- proxy output ---\n${out}`);
  }
  return {
    ...listen,
    child,
    exited,
    output: () => out,
    via: (directUrl) => retarget(directUrl, listen.host, listen.port),
    stop: async (signal = 'SIGTERM', killAfterMs = 10_000) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const t = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        const r = await exited;
        clearTimeout(t);
        return r;
      }
      return exited;
    },
  };
}
