// Postgres 18 with a benchmark database, and pgcmek in front of it as in
// production (the CLI `serve` in a child process, a fresh local KEK): the setup
// of the benchmarks that compare traffic through pgcmek with Postgres direct
// (bench:encryption, bench:searchable). Both are stopped by runMain's cleanup.
import { join } from 'node:path';
import pg from 'pg';
import { freePort, startCluster, type Cluster } from '../../src/dev/cluster.js';
import type { PgTarget } from './pgbench.js';
import { startPgcmek, type Pgcmek } from './pgcmek.js';
import { onCleanup } from './proc.js';
import { postgresClusterCpu } from './procstat.js';

export interface PgAndPgcmek {
  cluster: Cluster;
  pgcmek: Pgcmek;
  /** The pgbench binary that goes with the cluster. */
  pgbench: string;
  /** The benchmark database, direct and through pgcmek. */
  direct: PgTarget;
  viaProxy: PgTarget;
  /** The whole cluster's CPU so far (read it once a run's backends have exited). */
  postgresCpu: () => { cpuMs: number; minorFaults: number } | undefined;
}

export interface PgAndPgcmekOptions {
  database: string;
  /** pgcmek's `encrypted:` section (YAML). */
  encryptedYaml: string;
  /** Node binary that runs pgcmek (default: this one). */
  node?: string | undefined;
}

export async function startPgAndPgcmek(o: PgAndPgcmekOptions): Promise<PgAndPgcmek> {
  const cluster = await startCluster({ flavour: '18', settings: { max_connections: 100 } });
  onCleanup(() => cluster.stop());
  const admin = new pg.Client(cluster.url());
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${o.database}`);
  } finally {
    await admin.end();
  }

  const pgcmek = await startPgcmek({
    upstream: cluster,
    port: await freePort(),
    user: cluster.user,
    password: cluster.password,
    extraYaml: o.encryptedYaml,
    log: (s) => process.stderr.write(`[pgcmek] ${s}`),
    ...(o.node && { node: o.node }),
  });
  onCleanup(() => pgcmek.stop());
  const conn = (port: number): PgTarget => ({ host: '127.0.0.1', port, user: cluster.user, password: cluster.password, database: o.database });
  return { cluster, pgcmek, pgbench: join(cluster.clientBin, 'pgbench'), direct: conn(cluster.port), viaProxy: conn(pgcmek.port), postgresCpu: postgresClusterCpu(cluster.dataDir) };
}
