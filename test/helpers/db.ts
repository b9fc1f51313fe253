// Per-test-file databases on the suite's real Postgres, so files never share state.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

export function serverUrl(database = 'postgres'): string {
  const u = new URL(inject('pgUrl'));
  u.pathname = '/' + database;
  return u.toString();
}

export interface TestDb {
  name: string;
  url: string;
  host: string;
  port: number;
  /** A connected superuser client on this database. */
  client: pg.Client;
  drop(): Promise<void>;
}

export async function createTestDatabase(prefix = 't'): Promise<TestDb> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client(serverUrl());
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = serverUrl(name);
  const client = new pg.Client(url);
  await client.connect();
  const u = new URL(url);
  return {
    name,
    url,
    host: u.hostname,
    port: Number(u.port),
    client,
    drop: async () => {
      await client.end().catch(() => {});
      const a = new pg.Client(serverUrl());
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}
