import pg from 'pg';
import { it, expect } from 'vitest';
import { createTestDatabase } from '../helpers/db.js';
import { startEncryptedProxy, table } from '../helpers/encrypted-proxy.js';
it('probe', async () => {
  const db = await createTestDatabase('probe');
  await db.client.query(`CREATE TABLE webhook (id int PRIMARY KEY, url text, secret text)`);
  const proxy = await startEncryptedProxy({ encrypted: [table('webhook', ['secret'])] });
  const app = new pg.Client(proxy.via(db.url)); await app.connect();
  for (const [i, q, v] of [[1, `INSERT INTO webhook VALUES (1, 'u', CAST('c-lit' AS varchar(100)))`, []], [2, `INSERT INTO webhook VALUES (2, 'u', $1::varchar(20))`, ['abc']], [3, `INSERT INTO webhook VALUES (3, 'u', $1::char(30))`, ['abc']]] as const) {
    try { await app.query(q, v as any); console.log(i, 'ok'); } catch (e: any) { console.log(i, e.code, e.message); }
  }
  const d = await db.client.query('SELECT id, length(secret) l, secret FROM webhook ORDER BY id');
  console.log(d.rows);
  try { console.log((await app.query('SELECT id, secret FROM webhook')).rows); } catch (e: any) { console.log('read', e.code, e.message); }
  await app.end(); await proxy.close(); await db.drop();
});
