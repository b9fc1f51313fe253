// pgcmek as a benchmark target. By default it runs like production: a child
// process `node dist/src/cli.js serve --config <tmp>/pgcmek.yaml`, with a fresh
// local KEK from `pgcmek keygen`. `how: 'in-process'` calls startProxy() in the
// benchmark's own process instead (no CLI needed; the benchmark driver is idle
// while pgbench runs, but it shares its event loop with the proxy).
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec, start, type Proc } from './proc.js';
import { procTreeStat, type ProcStat } from './procstat.js';
import { waitForPostgres } from './wait.js';

export type PgcmekHow = 'process' | 'in-process';

export interface Pgcmek {
  host: string;
  port: number;
  how: PgcmekHow;
  /** The serve process's pid (this process's in-process). */
  pid: number;
  /** CPU and memory of the proxy (in-process: of the whole benchmark process). */
  stat(): ProcStat | undefined;
  stop(): Promise<void>;
}

export interface PgcmekOptions {
  upstream: { host: string; port: number };
  port: number;
  /** Credentials for the readiness check (any role that can log in). */
  user: string;
  password: string;
  how?: PgcmekHow;
  workers?: number;
  logLevel?: string;
  /** Extra YAML appended to the generated config (e.g. an `encrypted:` section for later benchmarks). */
  extraYaml?: string;
  /** Node binary for the child (default: this one). */
  node?: string;
  /** Flags for that Node binary, before the script (e.g. --perf-basic-prof for a profile). */
  nodeArgs?: string[];
  log?: (chunk: string) => void;
}

/** The repository root: dist/bench/lib/pgcmek.js -> ../../.. (also right for bench/lib/pgcmek.ts under vitest). */
export function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../../..', '../..']) {
    const root = join(here, up);
    if (existsSync(join(root, 'package.json'))) return root;
  }
  return process.cwd();
}

export function cliPath(): string {
  return join(repoRoot(), 'dist', 'src', 'cli.js');
}

export async function startPgcmek(o: PgcmekOptions): Promise<Pgcmek> {
  const how = o.how ?? 'process';
  const check = { host: '127.0.0.1', port: o.port, user: o.user, password: o.password, database: 'postgres' };
  if (how === 'in-process') {
    const { startProxy } = await import('../../src/proxy/server.js');
    const { defaultConfig } = await import('../../src/config/load.js');
    const { createLogger } = await import('../../src/log.js');
    const d = defaultConfig();
    const server = await startProxy(
      {
        ...d,
        source: 'bench',
        listen: { host: '127.0.0.1', port: o.port },
        upstream: { host: o.upstream.host, port: o.upstream.port, tls: 'disable' },
        workers: o.workers ?? 1,
        log: { level: 'silent' },
      },
      { logger: createLogger(o.logLevel ?? 'warn') },
    );
    await waitForPostgres(check);
    return { host: server.host, port: server.port, how, pid: process.pid, stat: () => procTreeStat(process.pid), stop: () => server.close(0) };
  }

  const cli = cliPath();
  if (!existsSync(cli)) throw new Error(`${cli} not found: run npm run build`);
  const node = o.node ?? process.execPath;
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-bench-'));
  const kek = join(dir, 'kek');
  const keygen = await exec(node, [cli, 'keygen', '--out', kek]);
  if (keygen.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`pgcmek keygen failed: ${keygen.stderr}`);
  }
  const yaml = [
    `listen: { host: 127.0.0.1, port: ${o.port} }`,
    `upstream: { host: ${o.upstream.host}, port: ${o.upstream.port}, tls: disable }`,
    `workers: ${o.workers ?? 1}`,
    'shutdown_grace_seconds: 1',
    `kek: { backend: local, local: { path: ${kek} } }`,
    `log: { level: ${o.logLevel ?? 'warn'} }`,
    o.extraYaml ?? '',
  ].join('\n');
  const file = join(dir, 'pgcmek.yaml');
  writeFileSync(file, yaml, { mode: 0o600 });
  // The environment must not override the file (a developer's VIGILO_CMEK_* or PGCMEK_LOG_LEVEL).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIGILO_CMEK_') && k !== 'PGCMEK_LOG_LEVEL'));
  const proc: Proc = start('pgcmek', node, [...(o.nodeArgs ?? []), cli, 'serve', '--config', file], { env, onOutput: o.log });
  const stop = async (): Promise<void> => {
    await proc.stop('SIGINT', 5_000); // SIGINT: close sessions now (SIGTERM would wait for the grace period)
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPostgres(check, 30_000, () => proc.child.exitCode === null);
  } catch (err) {
    await stop();
    throw new Error(`pgcmek did not start: ${(err as Error).message}\n${proc.output()}`);
  }
  return { host: '127.0.0.1', port: o.port, how, pid: proc.pid, stat: () => procTreeStat(proc.pid), stop };
}
