// CMEK admin commands sent through the proxy as ordinary queries: answered by
// pgcmek itself, run over the session's own connection, with NOTICE progress.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { startEncryptedProxy, table, type EncryptedProxy } from '../helpers/encrypted-proxy.js';

describe('CMEK admin commands through the proxy', () => {
  let db: TestDb;
  let proxy: EncryptedProxy;
  let client: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase('adm');
    await db.client.query(`CREATE TABLE webhook (id serial PRIMARY KEY, url text, secret text)`);
    await db.client.query(`INSERT INTO webhook (url, secret) SELECT 'u' || g, 'legacy-' || g FROM generate_series(1, 1200) g`);
    await db.client.query(`INSERT INTO webhook (url, secret) VALUES ('null', NULL)`);
    await db.client.query(`CREATE ROLE pgcmek_nonadmin LOGIN PASSWORD 'pw'; GRANT ALL ON ALL TABLES IN SCHEMA public TO pgcmek_nonadmin`);
    proxy = await startEncryptedProxy({ encrypted: [table('webhook', ['secret'])], config: { admin: { roles: ['postgres'] } } });
    client = new pg.Client(proxy.via(db.url));
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
    await proxy?.close();
    await db.client.query('DROP ROLE IF EXISTS pgcmek_nonadmin').catch(() => {});
    await db?.drop();
  });

  it('STATUS, dry run, backfill, verify: every value decrypts to its original', async () => {
    const before = await client.query('CMEK STATUS webhook.secret');
    expect(before.rows.length).toBe(1);
    const dry = await client.query('CMEK ENCRYPT EXISTING webhook.secret DRY RUN');
    expect(dry.rows.length).toBeGreaterThan(0);
    const still = await db.client.query(`SELECT count(*)::int AS n FROM webhook WHERE secret LIKE 'cmek:v1:%'`);
    expect(still.rows[0].n).toBe(0);

    const notices: string[] = [];
    client.on('notice', (n) => notices.push(n.message ?? ''));
    await client.query('CMEK ENCRYPT EXISTING webhook.secret BATCH 100');
    const enc = await db.client.query(`SELECT count(*)::int AS n FROM webhook WHERE secret LIKE 'cmek:v1:%'`);
    expect(enc.rows[0].n).toBe(1200);
    const via = await client.query(`SELECT url, secret FROM webhook ORDER BY id`);
    for (const r of via.rows) expect(r.secret).toBe(r.url === 'null' ? null : 'legacy-' + r.url.slice(1));

    const verify = await client.query('CMEK VERIFY webhook.secret');
    expect(verify.rows.length).toBeGreaterThan(0);
    // The session is still an ordinary session afterwards.
    expect((await client.query('SELECT 1 AS x')).rows[0].x).toBe(1);
  });

  it('refuses a role not in admin.roles with 42501', async () => {
    const u = new URL(proxy.via(db.url));
    u.username = 'pgcmek_nonadmin';
    u.password = 'pw';
    const c = new pg.Client(u.toString());
    await c.connect();
    await expect(c.query('CMEK STATUS')).rejects.toMatchObject({ code: '42501' });
    expect((await c.query('SELECT 1 AS x')).rows[0].x).toBe(1);
    await c.end();
  });

  it('refuses inside a transaction block', async () => {
    await client.query('BEGIN');
    await expect(client.query('CMEK STATUS')).rejects.toMatchObject({ code: '25001' });
    await client.query('ROLLBACK');
  });
});
