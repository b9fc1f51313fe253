// The read path with node-postgres: every shape of result a configured column can
// reach the client through (star, aliases, joins, subqueries, CTEs, RETURNING,
// cursors and suspended portals, views over views, binary format, partitions)
// comes back as plaintext through pgcmek, while a direct connection sees the
// stored `cmek:v1:` envelopes — which decrypt with the keyring to the same values.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { startEncryptedProxy, table, type EncryptedProxy } from '../helpers/encrypted-proxy.js';

// pg-cursor ships no type declarations: this is the slice the tests use.
interface PgCursor extends pg.Submittable {
  read(rows: number): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}
type PgCursorCtor = new (text: string, values?: unknown[]) => PgCursor;

/** node-postgres supports `binary: true` (binary result format); @types/pg does not declare it. */
function binary(q: pg.QueryConfig): pg.QueryConfig {
  return { ...q, binary: true } as pg.QueryConfig;
}

const Cursor = ((await import('pg-cursor' as string)) as { default: PgCursorCtor }).default;

const PREFIX = 'cmek:v1:';
/** id → the secret written through the proxy (ids 1..5), legacy plaintext (6), NULL (7). */
const SECRETS: Record<number, string | null> = {
  1: 'whsec_alpha',
  2: 'whsec_bravo',
  3: "it's 'quoted' \\ back",
  4: 'ünïcødé 🎉',
  5: 'whsec_echo',
  6: 'legacy-plain',
  7: null,
};
const ENCRYPTED_IDS = [1, 2, 3, 4, 5];

let db: TestDb;
let proxy: EncryptedProxy;
let app: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase('enc_reads');
  await db.client.query(`
    CREATE TABLE workspace (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE webhook (id int PRIMARY KEY, workspace_id int REFERENCES workspace, url text NOT NULL, secret text);
    CREATE VIEW webhook_v AS SELECT id, url, secret AS s FROM webhook;
    CREATE VIEW webhook_vv AS SELECT id AS wid, s AS s2 FROM webhook_v WHERE id > 0;
    CREATE TABLE event (id int, region text NOT NULL, token text) PARTITION BY LIST (region);
    CREATE TABLE event_eu PARTITION OF event FOR VALUES IN ('eu');
    CREATE TABLE event_us PARTITION OF event FOR VALUES IN ('us');
    INSERT INTO workspace VALUES (1, 'acme'), (2, 'globex');
  `);
  proxy = await startEncryptedProxy({ encrypted: [table('webhook', ['secret']), table('event', ['token'])] });
  app = new pg.Client(proxy.via(db.url));
  await app.connect();
  for (const id of ENCRYPTED_IDS) {
    await app.query('INSERT INTO webhook (id, workspace_id, url, secret) VALUES ($1, $2, $3, $4)', [id, (id % 2) + 1, `https://h/${id}`, SECRETS[id]]);
  }
  // Rows written before pgcmek was deployed: plaintext and NULL, straight to the server.
  await db.client.query(`INSERT INTO webhook (id, workspace_id, url, secret) VALUES (6, 1, 'https://h/6', 'legacy-plain'), (7, 2, 'https://h/7', NULL)`);
});

afterAll(async () => {
  await app?.end();
  await proxy?.close();
  await db?.drop();
});

/** What the server stores for webhook.secret, by id. */
async function stored(): Promise<Map<number, string | null>> {
  const r = await db.client.query<{ id: number; secret: string | null }>('SELECT id, secret FROM webhook ORDER BY id');
  return new Map(r.rows.map((x) => [x.id, x.secret]));
}

function expected(ids: number[]): (string | null)[] {
  return ids.map((id) => SECRETS[id]!);
}

describe('both sides of the stored data', () => {
  it('direct: encrypted rows hold envelopes that decrypt to what the app wrote; legacy and NULL are untouched', async () => {
    const s = await stored();
    for (const id of ENCRYPTED_IDS) {
      const v = s.get(id)!;
      expect(v.startsWith(PREFIX)).toBe(true);
      expect(v).not.toContain(SECRETS[id]!);
      expect(await proxy.keyring.decrypt(v)).toBe(SECRETS[id]);
    }
    expect(s.get(6)).toBe('legacy-plain');
    expect(s.get(7)).toBeNull();
  });

  it('SELECT * reads a table mixing envelopes, legacy plaintext and NULL', async () => {
    const r = await app.query('SELECT * FROM webhook ORDER BY id');
    expect(r.rows.map((x) => x.secret)).toEqual(expected([1, 2, 3, 4, 5, 6, 7]));
    expect(r.rows[0]).toEqual({ id: 1, workspace_id: 2, url: 'https://h/1', secret: 'whsec_alpha' });
  });
});

describe('query shapes', () => {
  it('aliases: column and table aliases, the same column twice, quoted mixed-case alias', async () => {
    const r = await app.query(`SELECT w.secret AS s, secret AS "Other", w.secret FROM webhook AS w WHERE id IN (1, 2) ORDER BY id`);
    expect(r.rows).toEqual([
      { s: 'whsec_alpha', Other: 'whsec_alpha', secret: 'whsec_alpha' },
      { s: 'whsec_bravo', Other: 'whsec_bravo', secret: 'whsec_bravo' },
    ]);
  });

  it('joins: inner, left and a self-join', async () => {
    const inner = await app.query(`SELECT ws.name, w.secret FROM workspace ws JOIN webhook w ON w.workspace_id = ws.id WHERE w.id <= 3 ORDER BY w.id`);
    expect(inner.rows).toEqual([
      { name: 'globex', secret: 'whsec_alpha' },
      { name: 'acme', secret: 'whsec_bravo' },
      { name: 'globex', secret: SECRETS[3] },
    ]);
    const left = await app.query(`SELECT ws.id, w.secret FROM workspace ws LEFT JOIN webhook w ON w.workspace_id = ws.id AND w.id = 4 ORDER BY ws.id`);
    expect(left.rows).toEqual([
      { id: 1, secret: SECRETS[4] },
      { id: 2, secret: null },
    ]);
    const self = await app.query(`SELECT a.secret AS a, b.secret AS b FROM webhook a JOIN webhook b ON b.id = a.id + 1 WHERE a.id = 1`);
    expect(self.rows).toEqual([{ a: 'whsec_alpha', b: 'whsec_bravo' }]);
  });

  it('subqueries: in FROM, in WHERE (on plain columns), nested', async () => {
    const from = await app.query(`SELECT sub.s FROM (SELECT id, secret AS s FROM webhook) sub WHERE sub.id = 2`);
    expect(from.rows).toEqual([{ s: 'whsec_bravo' }]);
    const where = await app.query(`SELECT secret FROM webhook WHERE workspace_id IN (SELECT id FROM workspace WHERE name = 'acme') ORDER BY id`);
    expect(where.rows.map((x) => x.secret)).toEqual(expected([2, 4, 6]));
    const nested = await app.query(`SELECT x FROM (SELECT s AS x, id FROM (SELECT secret AS s, id FROM webhook WHERE id < 6) a WHERE id > 3) b ORDER BY id`);
    expect(nested.rows.map((r) => r.x)).toEqual(expected([4, 5]));
  });

  it('CTEs: plain, chained and MATERIALIZED', async () => {
    const r = await app.query(`
      WITH a AS (SELECT id, secret FROM webhook WHERE id <= 4),
           b AS MATERIALIZED (SELECT id, secret AS s FROM a WHERE id >= 2)
      SELECT b.s, a.secret FROM b JOIN a USING (id) ORDER BY id`);
    expect(r.rows).toEqual(expected([2, 3, 4]).map((s) => ({ s, secret: s })));
  });

  it('RETURNING from INSERT, UPDATE and DELETE', async () => {
    const ins = await app.query(`INSERT INTO webhook (id, workspace_id, url, secret) VALUES (100, 1, 'https://r', $1) RETURNING id, secret`, ['ret-one']);
    expect(ins.rows).toEqual([{ id: 100, secret: 'ret-one' }]);
    const upd = await app.query(`UPDATE webhook SET secret = $1 WHERE id = 100 RETURNING secret AS now, url`, ['ret-two']);
    expect(upd.rows).toEqual([{ now: 'ret-two', url: 'https://r' }]);
    const direct = await db.client.query(`SELECT secret FROM webhook WHERE id = 100`);
    expect(await proxy.keyring.decrypt(direct.rows[0].secret)).toBe('ret-two');
    const del = await app.query(`DELETE FROM webhook WHERE id = 100 RETURNING *`);
    expect(del.rows).toEqual([{ id: 100, workspace_id: 1, url: 'https://r', secret: 'ret-two' }]);
  });

  it('views, and views over views', async () => {
    const v = await app.query(`SELECT s FROM webhook_v ORDER BY id`);
    expect(v.rows.map((x) => x.s)).toEqual(expected([1, 2, 3, 4, 5, 6, 7]));
    const vv = await app.query(`SELECT wid, s2 FROM webhook_vv WHERE wid IN (3, 6, 7) ORDER BY wid`);
    expect(vv.rows).toEqual([
      { wid: 3, s2: SECRETS[3] },
      { wid: 6, s2: 'legacy-plain' },
      { wid: 7, s2: null },
    ]);
    const direct = await db.client.query(`SELECT s2 FROM webhook_vv WHERE wid = 3`);
    expect(direct.rows[0].s2.startsWith(PREFIX)).toBe(true);
  });

  it('NULL stays NULL, IS NULL / IS NOT NULL filters work', async () => {
    const n = await app.query(`SELECT id, secret FROM webhook WHERE secret IS NULL`);
    expect(n.rows).toEqual([{ id: 7, secret: null }]);
    const nn = await app.query(`SELECT count(*)::int AS c FROM webhook WHERE secret IS NOT NULL`);
    expect(nn.rows[0].c).toBe(6);
  });
});

describe('large results', () => {
  it('2,000 encrypted rows in one result (many socket reads, frames split across them)', async () => {
    await db.client.query(`CREATE TABLE many (id int PRIMARY KEY, secret text)`);
    const p = await startEncryptedProxy({ encrypted: [table('many', ['secret'])], kekPath: proxy.kekPath });
    const c = new pg.Client(p.via(db.url));
    await c.connect();
    try {
      for (let start = 0; start < 2000; start += 500) {
        const ids = Array.from({ length: 500 }, (_, i) => start + i);
        await c.query(`INSERT INTO many SELECT * FROM unnest($1::int[], $2::text[])`, [ids, ids.map((i) => `many-${i}-${'x'.repeat(i % 300)}`)]);
      }
      const simple = await c.query('SELECT id, secret FROM many ORDER BY id');
      const extended = await c.query('SELECT id, secret FROM many WHERE id >= $1 ORDER BY id', [0]);
      for (const r of [simple, extended]) {
        expect(r.rows).toHaveLength(2000);
        expect(r.rows.every((x) => x.secret === `many-${x.id}-${'x'.repeat(x.id % 300)}`)).toBe(true);
      }
      const direct = await db.client.query(`SELECT count(*)::int AS n FROM many WHERE secret LIKE 'cmek:v1:%'`);
      expect(direct.rows[0].n).toBe(2000);
    } finally {
      await c.end();
      await p.close();
    }
  });

  it('a reader that stalls mid-result still gets every decrypted row intact (rows written in place, sockets backed up)', async () => {
    // 20 MB of decrypted rows: far more than the socket buffers hold, so while the
    // client does not read, the proxy's writes go from taken whole, to partly
    // taken, to queued behind unsent bytes (out-batch.ts handles each apart).
    const N = 20_000;
    const value = (i: number) => `stall-${i}-${String.fromCharCode(97 + (i % 26)).repeat(1000 + (i % 50))}`;
    await db.client.query(`CREATE TABLE stalled (id int PRIMARY KEY, secret text)`);
    const p = await startEncryptedProxy({ encrypted: [table('stalled', ['secret'])], kekPath: proxy.kekPath });
    const c = new pg.Client(p.via(db.url));
    await c.connect();
    try {
      for (let start = 0; start < N; start += 2000) {
        const ids = Array.from({ length: 2000 }, (_, i) => start + i);
        await c.query(`INSERT INTO stalled SELECT * FROM unnest($1::int[], $2::text[])`, [ids, ids.map(value)]);
      }
      const stream = (c as unknown as { connection: { stream: import('node:net').Socket } }).connection.stream;
      for (const q of ['SELECT id, secret FROM stalled ORDER BY id', { text: 'SELECT id, secret FROM stalled WHERE id >= $1 ORDER BY id', values: [0] }]) {
        const result = c.query(q as string);
        stream.pause();
        await new Promise((r) => setTimeout(r, 700));
        stream.resume();
        const r = await result;
        expect(r.rows).toHaveLength(N);
        expect(r.rows.every((x: { id: number; secret: string }) => x.secret === value(x.id))).toBe(true);
      }
      const direct = await db.client.query(`SELECT count(*)::int AS n FROM stalled WHERE secret LIKE 'cmek:v1:%'`);
      expect(direct.rows[0].n).toBe(N);
    } finally {
      await c.end();
      await p.close();
    }
  });
});

describe('cursors and portals', () => {
  it('pg-cursor reads in batches of 2 (Execute with a row limit, PortalSuspended between batches)', async () => {
    const cursor = app.query(new Cursor('SELECT id, secret FROM webhook WHERE id > $1 ORDER BY id', [0]));
    const batches: number[] = [];
    const rows: Record<string, unknown>[] = [];
    for (;;) {
      const b = await cursor.read(2);
      if (b.length === 0) break;
      batches.push(b.length);
      rows.push(...b);
    }
    await cursor.close();
    expect(batches).toEqual([2, 2, 2, 1]);
    expect(rows.map((r) => r.secret)).toEqual(expected([1, 2, 3, 4, 5, 6, 7]));
    const after = await app.query('SELECT secret FROM webhook WHERE id = 1');
    expect(after.rows[0].secret).toBe('whsec_alpha');
  });

  it('SQL cursors: DECLARE … FETCH 2 FROM c, in the simple and the extended protocol', async () => {
    await app.query('BEGIN');
    try {
      await app.query(`DECLARE c CURSOR FOR SELECT id, secret FROM webhook ORDER BY id`);
      const f1 = await app.query('FETCH 2 FROM c');
      const f2 = await app.query({ text: 'FETCH 2 FROM c', values: [] }); // extended: Parse/Bind/Describe/Execute
      const f3 = await app.query('FETCH ALL FROM c');
      expect(f1.rows).toEqual([
        { id: 1, secret: 'whsec_alpha' },
        { id: 2, secret: 'whsec_bravo' },
      ]);
      expect(f2.rows.map((r) => r.secret)).toEqual(expected([3, 4]));
      expect(f3.rows.map((r) => r.secret)).toEqual(expected([5, 6, 7]));
      await app.query('CLOSE c');
      // A cursor over a view over a view.
      await app.query(`DECLARE v CURSOR FOR SELECT s2 FROM webhook_vv WHERE wid < 3 ORDER BY wid`);
      const fv = await app.query('FETCH 2 FROM v');
      expect(fv.rows.map((r) => r.s2)).toEqual(expected([1, 2]));
    } finally {
      await app.query('COMMIT');
    }
  });
});

describe('binary result format', () => {
  it('node-postgres binary: true returns decrypted bytes for text columns', async () => {
    const r = await app.query(binary({ text: 'SELECT id, secret FROM webhook WHERE id = ANY($1::int[]) ORDER BY id', values: [[1, 4, 6, 7]] }));
    // In binary mode pg returns text as strings still (text's binary form is its UTF-8 bytes).
    expect(r.rows.map((x) => x.secret)).toEqual(expected([1, 4, 6, 7]));
    expect(r.fields.every((f) => f.format === 'binary')).toBe(true);
    const direct = await db.client.query(binary({ text: 'SELECT secret FROM webhook WHERE id = 4' }));
    expect(String(direct.rows[0].secret).startsWith(PREFIX)).toBe(true);
  });
});

describe('partitioned tables', () => {
  it('the parent is configured: rows routed to any partition are encrypted, and read back plaintext through the parent and the partitions', async () => {
    await app.query(`INSERT INTO event (id, region, token) VALUES (1, 'eu', $1), (2, 'us', $2)`, ['tok-eu', 'tok-us']);
    await app.query(`INSERT INTO event (id, region, token) VALUES (3, 'eu', 'tok-lit')`);
    const direct = await db.client.query(`SELECT id, token, tableoid::regclass::text AS part FROM event ORDER BY id`);
    expect(direct.rows.map((r) => r.part)).toEqual(['event_eu', 'event_us', 'event_eu']);
    for (const [i, want] of ['tok-eu', 'tok-us', 'tok-lit'].entries()) {
      expect(direct.rows[i].token.startsWith(PREFIX)).toBe(true);
      expect(await proxy.keyring.decrypt(direct.rows[i].token)).toBe(want);
    }
    const parent = await app.query(`SELECT id, token FROM event ORDER BY id`);
    expect(parent.rows.map((r) => r.token)).toEqual(['tok-eu', 'tok-us', 'tok-lit']);
    // Reading a partition directly: its rows carry the partition's OID in the RowDescription.
    const part = await app.query(`SELECT token FROM event_us`);
    expect(part.rows).toEqual([{ token: 'tok-us' }]);
    const star = await app.query(`SELECT * FROM event_eu ORDER BY id`);
    expect(star.rows.map((r) => r.token)).toEqual(['tok-eu', 'tok-lit']);
  });
});

describe('decrypt_unmapped', () => {
  async function withUnmapped(mode: 'off' | 'prefixed', fn: (c: pg.Client) => Promise<void>): Promise<void> {
    const p = await startEncryptedProxy({
      encrypted: [table('webhook', ['secret']), table('event', ['token'])],
      config: { decryptUnmapped: mode },
      kekPath: proxy.kekPath, // the same KEK: the values written above must decrypt
    });
    const c = new pg.Client(p.via(db.url));
    await c.connect();
    try {
      await fn(c);
    } finally {
      await c.end();
      await p.close();
    }
  }

  const UNION = `SELECT secret FROM webhook WHERE id = 1 UNION ALL SELECT token FROM event WHERE id = 2`;
  const COALESCE = `SELECT coalesce(secret, '') AS s FROM webhook WHERE id IN (2, 7) ORDER BY id`;

  it('prefixed: envelopes in results with no column origin (UNION, coalesce) are decrypted', async () => {
    await withUnmapped('prefixed', async (c) => {
      const u = await c.query(UNION);
      expect(u.rows.map((r) => r.secret).sort()).toEqual(['tok-us', 'whsec_alpha']);
      const co = await c.query(COALESCE);
      expect(co.rows).toEqual([{ s: 'whsec_bravo' }, { s: '' }]);
      // Mapped columns keep working next to them.
      const m = await c.query(`SELECT secret, coalesce(secret, 'x') AS s FROM webhook WHERE id = 3`);
      expect(m.rows).toEqual([{ secret: SECRETS[3], s: SECRETS[3] }]);
    });
  });

  it('off (the default): the same results carry the stored envelopes', async () => {
    await withUnmapped('off', async (c) => {
      const u = await c.query(UNION);
      expect(u.rows.every((r) => String(r.secret).startsWith(PREFIX))).toBe(true);
      expect((await Promise.all(u.rows.map((r) => proxy.keyring.decrypt(r.secret)))).sort()).toEqual(['tok-us', 'whsec_alpha']);
      const co = await c.query(COALESCE);
      expect(co.rows[0].s.startsWith(PREFIX)).toBe(true);
      expect(co.rows[1].s).toBe('');
    });
  });
});
