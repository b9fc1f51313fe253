import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { startEncryptedProxy, table, type EncryptedProxy } from '../helpers/encrypted-proxy.js';

const PREFIX = 'cmek:v1:';

describe('transparent encryption through the proxy (node-postgres)', () => {
  let db: TestDb;
  let proxy: EncryptedProxy;
  let client: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase('enc');
    await db.client.query(`
      CREATE TABLE webhook (id serial PRIMARY KEY, url text NOT NULL, secret text);
      CREATE TABLE workspace (id serial PRIMARY KEY, name text, settings jsonb);
      CREATE VIEW webhook_v AS SELECT id, secret AS s FROM webhook;
    `);
    proxy = await startEncryptedProxy({
      encrypted: [table('webhook', ['secret']), table('workspace', [{ column: 'settings', jsonPaths: [['smtp', 'password']], searchable: false, onDecryptError: 'error', encryptEmpty: false }])],
    });
    client = new pg.Client(proxy.via(db.url));
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
    await proxy?.close();
    await db?.drop();
  });

  it('encrypts bind parameters and decrypts rows', async () => {
    await client.query('INSERT INTO webhook (url, secret) VALUES ($1, $2)', ['https://a', 'whsec_one']);
    const direct = await db.client.query('SELECT secret FROM webhook WHERE url = $1', ['https://a']);
    expect(direct.rows[0].secret.startsWith(PREFIX)).toBe(true);
    const via = await client.query('SELECT secret FROM webhook WHERE url = $1', ['https://a']);
    expect(via.rows[0].secret).toBe('whsec_one');
    expect(await proxy.keyring.decrypt(direct.rows[0].secret)).toBe('whsec_one');
  });

  it('encrypts literals in the simple protocol, incl. E strings and multi-statement', async () => {
    await client.query(`INSERT INTO webhook (url, secret) VALUES ('https://b', E'it\\'s ünïcødé 🎉'); SELECT 1`);
    const direct = await db.client.query(`SELECT secret FROM webhook WHERE url = 'https://b'`);
    expect(direct.rows[0].secret.startsWith(PREFIX)).toBe(true);
    const via = await client.query(`SELECT * FROM webhook WHERE url = 'https://b'`);
    expect(via.rows[0].secret).toBe("it's ünïcødé 🎉");
  });

  it('decrypts through a view, aliases and RETURNING', async () => {
    const ins = await client.query(`INSERT INTO webhook (url, secret) VALUES ('https://c', 'ret') RETURNING secret AS x`);
    expect(ins.rows[0].x).toBe('ret');
    const v = await client.query(`SELECT s FROM webhook_v WHERE id = (SELECT id FROM webhook WHERE url = 'https://c')`);
    expect(v.rows[0].s).toBe('ret');
  });

  it('passes legacy plaintext and NULL through', async () => {
    await db.client.query(`INSERT INTO webhook (url, secret) VALUES ('https://legacy', 'plain-old'), ('https://null', NULL)`);
    const r = await client.query(`SELECT url, secret FROM webhook WHERE url IN ('https://legacy', 'https://null') ORDER BY url`);
    expect(r.rows).toEqual([
      { url: 'https://legacy', secret: 'plain-old' },
      { url: 'https://null', secret: null },
    ]);
  });

  it('encrypts only the configured JSON path', async () => {
    const settings = { smtp: { host: 'mail.example', password: 'hunter2', port: 12345678901234567890 }, theme: 'dark' };
    await client.query('INSERT INTO workspace (name, settings) VALUES ($1, $2)', ['w1', JSON.stringify(settings)]);
    const direct = await db.client.query(`SELECT settings FROM workspace WHERE name = 'w1'`);
    expect(direct.rows[0].settings.smtp.password.startsWith(PREFIX)).toBe(true);
    expect(direct.rows[0].settings.smtp.host).toBe('mail.example');
    const via = await client.query(`SELECT settings->'smtp'->>'host' AS h, settings FROM workspace WHERE name = 'w1'`);
    expect(via.rows[0].settings.smtp.password).toBe('hunter2');
    expect(via.rows[0].h).toBe('mail.example');
  });

  it('refuses a write it cannot encrypt, and the session stays usable', async () => {
    await expect(client.query(`UPDATE webhook SET secret = upper(url)`)).rejects.toMatchObject({ code: '0A000' });
    await expect(client.query(`UPDATE webhook SET secret = upper($1)`, ['x'])).rejects.toMatchObject({ code: '0A000' });
    const r = await client.query('SELECT 1 AS one');
    expect(r.rows[0].one).toBe(1);
    const direct = await db.client.query(`SELECT count(*)::int AS n FROM webhook WHERE secret NOT LIKE 'cmek:v1:%' AND secret <> 'plain-old'`);
    expect(direct.rows[0].n).toBe(0);
  });

  it('refuses an equality predicate on a non-searchable encrypted column', async () => {
    await expect(client.query(`SELECT id FROM webhook WHERE secret = 'whsec_one'`)).rejects.toMatchObject({ code: '0A000' });
  });

  it('fails a read with XX001 when the KEK is not loaded, and the session stays usable', async () => {
    // A value encrypted under another KEK: written directly.
    const other = await startEncryptedProxy({ encrypted: [table('webhook', ['secret'])] });
    const foreign = await other.keyring.encrypt('not-for-you');
    await other.close();
    await db.client.query(`INSERT INTO webhook (url, secret) VALUES ('https://foreign', $1)`, [foreign]);
    await expect(client.query(`SELECT secret FROM webhook WHERE url = 'https://foreign'`)).rejects.toMatchObject({ code: 'XX001' });
    const r = await client.query(`SELECT secret FROM webhook WHERE url = 'https://a'`);
    expect(r.rows[0].secret).toBe('whsec_one');
  });
});
