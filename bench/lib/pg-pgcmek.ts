// Postgres 18 with a benchmark database, and pgcmek in front of it as in
// production (the CLI `serve` in a child process, a fresh local KEK): the setup
// of the benchmarks that compare traffic through pgcmek with Postgres direct
// (bench:encryption, bench:searchable). Both are stopped by runMain's cleanup.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, startCluster, type Cluster } from '../../src/dev/cluster.js';
import type { PgTarget } from './pgbench.js';
import { startPgcmek, type Pgcmek } from './pgcmek.js';
import { reserveHugePages, type HugePages } from './huge-pages.js';
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
  /** The pages Postgres' shared memory is in. */
  hugePages: HugePages;
  /** `node --version` of the Node that runs pgcmek. */
  pgcmekNode: string;
}

export interface PgAndPgcmekOptions {
  database: string;
  /** pgcmek's `encrypted:` section (YAML). */
  encryptedYaml: string;
  /** Node binary that runs pgcmek (default: this one). */
  node?: string | undefined;
  /** Huge pages for Postgres (--huge-pages, default on): bench/lib/huge-pages.ts. */
  hugePages: boolean;
  log?: (s: string) => void;
}

export async function startPgAndPgcmek(o: PgAndPgcmekOptions): Promise<PgAndPgcmek> {
  // shared_buffers (128 MB, src/dev/cluster.ts) plus Postgres' other shared memory.
  const hugePages = reserveHugePages(128 + 64, o.hugePages, o.log);
  const cluster = await startCluster({ flavour: '18', settings: { max_connections: 100, huge_pages: hugePages.setting } });
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
  const pgcmekNode = o.node ? execFileSync(o.node, ['--version'], { encoding: 'utf8' }).trim() : process.version;
  const conn = (port: number): PgTarget => ({ host: '127.0.0.1', port, user: cluster.user, password: cluster.password, database: o.database });
  return { cluster, pgcmek, pgbench: join(cluster.clientBin, 'pgbench'), direct: conn(cluster.port), viaProxy: conn(pgcmek.port), postgresCpu: postgresClusterCpu(cluster.dataDir), hugePages, pgcmekNode };
}
