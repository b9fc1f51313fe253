// Starts one real Postgres per vitest project (pg18, pg15) unless
// PGCMEK_TEST_DATABASE_URL names one. Tests read the URL with inject('pgUrl').
import type { TestProject } from 'vitest/node';
import { startCluster, type Cluster, type PgFlavour } from '../../src/dev/cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
    pgFlavour: string;
    pgClientBin: string;
    pgDataDir: string;
  }
}

let cluster: Cluster | undefined;

export async function setup(project: TestProject): Promise<void> {
  const external = process.env.PGCMEK_TEST_DATABASE_URL;
  if (external) {
    project.provide('pgUrl', external);
    project.provide('pgFlavour', 'external');
    project.provide('pgClientBin', '/usr/lib/postgresql/15/bin');
    project.provide('pgDataDir', '');
    return;
  }
  const flavour = project.name.replace(/^pg/, '').replace(/-.*$/, '') as PgFlavour;
  cluster = await startCluster({ flavour });
  project.provide('pgUrl', cluster.url());
  project.provide('pgFlavour', flavour);
  project.provide('pgClientBin', cluster.clientBin);
  project.provide('pgDataDir', cluster.dataDir);
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
}
