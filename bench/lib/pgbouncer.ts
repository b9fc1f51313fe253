// PgBouncer as a benchmark peer: the reference "does nothing but forward" proxy.
//
// Setup, chosen to match a production deployment rather than the fastest one:
// - pool_mode = session (each client keeps one server connection, like pgcmek);
// - auth_type = scram-sha-256 with the user's SCRAM *verifier* copied from
//   pg_authid into userlist.txt: no plaintext password on disk, clients do a full
//   SCRAM exchange with PgBouncer, and PgBouncer logs into Postgres with the keys
//   that exchange proved (SCRAM pass-through). The same work a client does DIRECT;
// - no TLS on either side (pgcmek and direct runs use none either);
// - it runs as the `postgres` OS user: PgBouncer refuses to run as root.
import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { findOrInstall } from './debian.js';
import { start, type Proc } from './proc.js';
import { waitForPostgres } from './wait.js';

export interface PgBouncer {
  host: string;
  port: number;
  proc: Proc;
  dir: string;
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  upstream: { host: string; port: number };
  /** A superuser URL of the upstream, to read the SCRAM verifier of `user`. */
  adminUrl: string;
  user: string;
  password: string;
  port: number;
  poolMode?: 'session' | 'transaction';
  /** Server connections per (database, user); must cover the clients of the largest run. */
  poolSize?: number;
  maxClientConn?: number;
  log?: (line: string) => void;
}

/**
 * Path of the pgbouncer binary, or undefined. With `install`, installs the Debian
 * package when missing and this process is root with apt-get available.
 */
export function findPgBouncer(opts: { install?: boolean; log?: (s: string) => void } = {}): string | undefined {
  return findOrInstall('pgbouncer', 'pgbouncer', opts);
}

function postgresIds(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  };
}

async function scramVerifier(adminUrl: string, user: string): Promise<string> {
  const c = new pg.Client(adminUrl);
  await c.connect();
  try {
    const r = await c.query<{ rolpassword: string | null }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [user]);
    const v = r.rows[0]?.rolpassword;
    if (!v?.startsWith('SCRAM-SHA-256$')) throw new Error(`role ${user} has no SCRAM verifier`);
    return v;
  } finally {
    await c.end();
  }
}

export async function startPgBouncer(bin: string, o: PgBouncerOptions): Promise<PgBouncer> {
  const dir = mkdtempSync(join(tmpdir(), 'pgbouncer-'));
  const ids = postgresIds();
  const verifier = await scramVerifier(o.adminUrl, o.user);
  const ini = `[databases]
* = host=${o.upstream.host} port=${o.upstream.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${o.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = ${join(dir, 'userlist.txt')}
pool_mode = ${o.poolMode ?? 'session'}
default_pool_size = ${o.poolSize ?? 64}
max_client_conn = ${o.maxClientConn ?? 500}
max_db_connections = 0
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits,options
server_tls_sslmode = disable
client_tls_sslmode = disable
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
logfile =
pidfile =
`;
  writeFileSync(join(dir, 'pgbouncer.ini'), ini, { mode: 0o600 });
  writeFileSync(join(dir, 'userlist.txt'), `"${o.user}" "${verifier}"\n`, { mode: 0o600 });
  if (ids) for (const f of ['', 'pgbouncer.ini', 'userlist.txt']) chownSync(join(dir, f), ids.uid, ids.gid);
  const proc = start('pgbouncer', bin, [join(dir, 'pgbouncer.ini')], { ...(ids ?? {}), onOutput: o.log });
  const stop = async (): Promise<void> => {
    await proc.stop('SIGINT', 5_000); // SIGINT: PgBouncer's fast shutdown
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPostgres({ host: '127.0.0.1', port: o.port, user: o.user, password: o.password, database: 'postgres' }, 20_000, () => proc.child.exitCode === null);
  } catch (err) {
    await stop();
    throw new Error(`pgbouncer did not start: ${(err as Error).message}\n${proc.output()}`);
  }
  return { host: '127.0.0.1', port: o.port, proc, dir, stop };
}
