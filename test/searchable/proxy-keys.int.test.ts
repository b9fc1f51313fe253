// Loading the searchable keys over the client's own connection: a role that may
// not create the key tables gets a clear refusal (never random encryption);
// once a role that may has loaded them, every session of the database shares
// them; a role with SELECT/INSERT on pre-created tables loads them itself; a
// database without searchable tables gets no pgcmek schema.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { column, table } from '../helpers/encrypted-proxy.js';
import { startSearchableProxy, type SearchableProxy } from './proxy-setup.js';

const encrypted = [table('api_token', [column('token_hash', { searchable: true })])];
const ROLE = `srch_app_${process.pid}`;

let db: TestDb;
let appUrl: string;
const proxies: SearchableProxy[] = [];

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client(url);
  await c.connect();
  return c;
}

beforeAll(async () => {
  db = await createTestDatabase('srchk');
  await db.client.query(`
    CREATE TABLE api_token (id serial PRIMARY KEY, name text, token_hash text UNIQUE);
    DROP ROLE IF EXISTS ${ROLE};
    CREATE ROLE ${ROLE} LOGIN PASSWORD 'app-pw';
    GRANT SELECT, INSERT, UPDATE, DELETE ON api_token TO ${ROLE};
    GRANT USAGE ON SEQUENCE api_token_id_seq TO ${ROLE};
  `);
  const u = new URL(db.url);
  u.username = ROLE;
  u.password = 'app-pw';
  appUrl = u.toString();
});

afterAll(async () => {
  for (const p of proxies) await p.close().catch(() => {});
  await db?.drop();
  const admin = new pg.Client(new URL('/postgres', db.url).toString());
  await admin.connect();
  await admin.query(`DROP ROLE IF EXISTS ${ROLE}`).catch(() => {});
  await admin.end();
});

describe('searchable keys over the session connection', () => {
  it('a role without CREATE is refused clearly, writes included, and nothing is stored', async () => {
    const p = await startSearchableProxy({ encrypted, searchable: { retryMs: 50 } });
    proxies.push(p);
    const app = await connect(p.via(appUrl));
    try {
      const err = (await app.query('INSERT INTO api_token (name, token_hash) VALUES ($1, $2)', ['x', 'h']).catch((e: unknown) => e)) as pg.DatabaseError;
      expect(err.code).toBe('55000');
      expect(err.message).toContain('api_token.token_hash is searchable');
      expect(err.message).toMatch(/cannot create the searchable key tables/);
      expect(err.hint).toContain('docs/SEARCHABLE.md');
      const lookup = (await app.query(`SELECT id FROM api_token WHERE token_hash = 'h'`).catch((e: unknown) => e)) as pg.DatabaseError;
      expect(lookup.code).toBe('55000');
      // Statements not on the searchable column still work.
      await app.query(`INSERT INTO api_token (name) VALUES ('no-hash')`);
      expect((await app.query('SELECT name FROM api_token')).rows).toEqual([{ name: 'no-hash' }]);
    } finally {
      await app.end();
    }
    expect((await db.client.query(`SELECT count(*)::int AS n FROM api_token WHERE token_hash IS NOT NULL`)).rows[0].n).toBe(0);
    expect((await db.client.query(`SELECT to_regclass('pgcmek.searchable_keys')::text AS t`)).rows[0].t).toBeNull();

    // A role that may create them loads the keys for the database; the app's sessions share them.
    await new Promise((r) => setTimeout(r, 60));
    const owner = await connect(p.via(db.url));
    await owner.query('SELECT 1');
    await owner.end();
    const again = await connect(p.via(appUrl));
    try {
      await again.query('INSERT INTO api_token (name, token_hash) VALUES ($1, $2)', ['x', 'h']);
      expect((await again.query('SELECT name FROM api_token WHERE token_hash = $1', ['h'])).rows).toEqual([{ name: 'x' }]);
    } finally {
      await again.end();
    }
  });

  it('a role with SELECT, INSERT on tables created by an admin loads the keys itself', async () => {
    await db.client.query(`GRANT USAGE ON SCHEMA pgcmek TO ${ROLE}; GRANT SELECT, INSERT ON pgcmek.searchable_keys, pgcmek.searchable_key_wraps TO ${ROLE}`);
    const p = await startSearchableProxy({ encrypted, kekPath: proxies[0]!.kekPath });
    proxies.push(p);
    const app = await connect(p.via(appUrl));
    try {
      expect((await app.query(`SELECT name FROM api_token WHERE token_hash = 'h'`)).rows).toEqual([{ name: 'x' }]);
      expect(p.keys(db.name).stats().keysCreated).toBe(0);
    } finally {
      await app.end();
    }
  });

  it('creates nothing in a database without configured searchable tables', async () => {
    const other = await createTestDatabase('srchk_none');
    try {
      const p = proxies[0]!;
      const c = await connect(p.via(other.url));
      await c.query('CREATE TABLE unrelated (id int)');
      await c.query('SELECT * FROM unrelated');
      await c.end();
      expect((await other.client.query(`SELECT to_regnamespace('pgcmek')::text AS s`)).rows[0].s).toBeNull();
      expect(p.layer.searchable.keysFor(other.name)).toBeUndefined();
    } finally {
      await other.drop();
    }
  });
});
