import { serialize } from 'pg-protocol';
import { it } from 'vitest';
import { createTestDatabase } from '../helpers/db.js';
import { startEncryptedProxy, table } from '../helpers/encrypted-proxy.js';
import { RawClient } from '../proxy/raw-client.js';
it('probe', async () => {
  const db = await createTestDatabase('probe');
  await db.client.query(`DO $$ BEGIN CREATE ROLE pgcmek_trust LOGIN SUPERUSER; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  await db.client.query(`CREATE TABLE webhook (id int PRIMARY KEY, url text, secret text)`);
  const proxy = await startEncryptedProxy({ encrypted: [table('webhook', ['secret'])], logLevel: process.env.LL ?? 'silent' });
  for (const round of [1, 2, 3]) {
  const c = await RawClient.connect(proxy.port, { database: db.name });
  const show = async (label: string) => { const out: string[] = []; try { for (;;) { const m = await c.next(1500); out.push(m.code + (m.code === 'E' ? ':' + m.body.toString().replace(/\0/g, '|').slice(0, 30) : '')); if (m.code === 'Z') break; } } catch (e) { out.push('<' + (e as Error).message + '>'); } console.log(round, label, out.join(' ')); };
  if (round !== 3) { c.send(serialize.parse({ name: 's1', text: 'SELECT 1 AS x', types: [] }), serialize.describe({ type: 'S', name: 's1' }), serialize.flush());
  await show('ok-flush');
  c.send(serialize.sync()); await show('ok-sync'); }
  c.send(serialize.parse({ name: 's2', text: 'UPDATE webhook SET secret = upper($1)', types: [] }), serialize.describe({ type: 'S', name: 's2' }), serialize.flush());
  await show('refused-flush');
  c.send(serialize.sync()); await show('refused-sync');
  c.end();
  }
  await proxy.close(); await db.drop();
});
