// Session life through the proxy: LISTEN/NOTIFY between sessions (messages the
// server sends while the client is idle), 200 concurrent sessions, disconnects
// from either side, and each authentication method the server asks for.
import { Socket } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { both, retarget, startTestProxy, type TestProxy } from '../helpers/proxy.js';

let db: TestDb;
let proxy: TestProxy;

beforeAll(async () => {
  db = await createTestDatabase('clients_sessions');
  proxy = await startTestProxy();
});
afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

async function connect(url: string, extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, ...extra });
  await c.connect();
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 5_000): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** A raw CancelRequest (what libpq's PQcancel sends) on a new connection. */
function sendCancel(host: string, port: number, pid: number, secret: number): Promise<void> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.connect(port, host, () => {
      const b = Buffer.alloc(16);
      b.writeInt32BE(16, 0);
      b.writeInt32BE(80877102, 4); // 1234 << 16 | 5678
      b.writeInt32BE(pid, 8);
      b.writeInt32BE(secret, 12);
      s.end(b);
    });
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
}

async function backendAlive(pid: number): Promise<boolean> {
  const r = await db.client.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid]);
  return r.rows[0].n > 0;
}

describe('sessions through the proxy', () => {
  it('LISTEN/NOTIFY across two sessions, in every direct/proxied combination', async () => {
    const urls = { direct: db.url, proxy: proxy.via(db.url) };
    for (const [listenVia, notifyVia] of [['proxy', 'proxy'], ['proxy', 'direct'], ['direct', 'proxy']] as const) {
      const listener = await connect(urls[listenVia]);
      const notifier = await connect(urls[notifyVia]);
      try {
        const got: pg.Notification[] = [];
        listener.on('notification', (n) => got.push(n));
        await listener.query('LISTEN "Chan Ñ"');
        const notifierPid = (await notifier.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
        await notifier.query(`NOTIFY "Chan Ñ", 'first'`);
        await notifier.query('BEGIN');
        await notifier.query(`SELECT pg_notify('Chan Ñ', $1)`, ['in a transaction ✓']);
        await sleep(200);
        // Nothing is delivered before COMMIT; the listener sits idle the whole time, so
        // the proxy must forward what the server sends without a client request pending.
        const beforeCommit = got.length;
        await notifier.query('COMMIT');
        await until('two notifications', async () => got.length >= 2);
        expect(beforeCommit, `${listenVia}/${notifyVia}`).toBe(1);
        expect(got.map((n) => ({ channel: n.channel, payload: n.payload, processId: n.processId }))).toEqual([
          { channel: 'Chan Ñ', payload: 'first', processId: notifierPid },
          { channel: 'Chan Ñ', payload: 'in a transaction ✓', processId: notifierPid },
        ]);
        await listener.query('UNLISTEN *');
      } finally {
        await listener.end();
        await notifier.end();
      }
    }
  });

  it('200 concurrent sessions each running queries', async () => {
    const url = proxy.via(db.url);
    // Backends of the tests before may still be exiting (a client's end() does not wait for its backend).
    await until('earlier backends to exit', async () => {
      const r = await db.client.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name]);
      return r.rows[0].n === 0;
    });
    const clients = await Promise.all(Array.from({ length: 200 }, () => connect(url)));
    try {
      const results = await Promise.all(
        clients.map(async (c, i) => {
          const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
          const sum = (await c.query('SELECT $1::int + $2::int AS s', [i, 1000])).rows[0].s as number;
          const rows = (await c.query(`SELECT g FROM generate_series(1, ${(i % 50) + 1}) g`)).rowCount;
          await c.query('BEGIN');
          await c.query('SELECT pg_sleep(0.01)');
          await c.query('COMMIT');
          return { pid, ok: sum === i + 1000 && rows === (i % 50) + 1 };
        }),
      );
      expect(results.filter((r) => !r.ok)).toEqual([]);
      expect(new Set(results.map((r) => r.pid)).size).toBe(200);
      const active = await db.client.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name]);
      expect(active.rows[0].n).toBe(200);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    // Every server connection goes away with its client.
    await until('all 200 backends to exit', async () => {
      const r = await db.client.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name]);
      return r.rows[0].n === 0;
    });
  });

  it('a client that vanishes (idle or mid-transaction) takes its backend with it, and its transaction rolls back', async () => {
    await db.client.query('CREATE TABLE vanish(id int)');
    for (const url of [db.url, proxy.via(db.url)]) {
      const idle = await connect(url);
      const idlePid = (await idle.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const inTx = await connect(url);
      const txPid = (await inTx.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await inTx.query('BEGIN');
      await inTx.query('INSERT INTO vanish VALUES (1)');
      for (const c of [idle, inTx]) {
        c.on('error', () => {});
        (c as unknown as { connection: { stream: Socket } }).connection.stream.destroy(); // no Terminate: the TCP connection just dies
      }
      await until(`backend ${idlePid} to exit`, async () => !(await backendAlive(idlePid)));
      await until(`backend ${txPid} to exit`, async () => !(await backendAlive(txPid)));
    }
    const { rows } = await db.client.query('SELECT count(*)::int AS n FROM vanish');
    expect(rows[0].n).toBe(0);
  });

  it('a CancelRequest with the wrong secret cancels nothing; the right one cancels', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, async (url) => {
      const c = await connect(url);
      try {
        // What the client was told at start-up (BackendKeyData) is all it can cancel with.
        const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
        const u = new URL(url);
        const wrong = c.query('SELECT pg_sleep(1) AS slept').then(
          () => 'finished',
          (e: pg.DatabaseError) => `cancelled ${e.code}`,
        );
        await sleep(200);
        await sendCancel(u.hostname, Number(u.port), processID, (secretKey + 1) | 0);
        await sendCancel(u.hostname, Number(u.port), (processID + 1) | 0, secretKey);
        const wrongOutcome = await wrong;
        const right = c.query('SELECT pg_sleep(30)').then(
          () => 'finished',
          (e: pg.DatabaseError) => `cancelled ${e.code}`,
        );
        await sleep(200);
        await sendCancel(u.hostname, Number(u.port), processID, secretKey);
        return { wrong: wrongOutcome, right: await right };
      } finally {
        await c.end();
      }
    });
    expect(proxied).toEqual(direct);
    expect(direct).toEqual({ wrong: 'finished', right: 'cancelled 57014' });
  });

  it('a role over its CONNECTION LIMIT gets the server\'s 53300', async () => {
    await db.client.query(`DO $$ BEGIN CREATE ROLE clients_limited LOGIN PASSWORD 'limited' CONNECTION LIMIT 1; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    const url = `postgres://clients_limited:limited@${db.host}:${db.port}/${db.name}`;
    const { direct, proxy: proxied } = await both(url, proxy, async (u) => {
      const first = await connect(u);
      try {
        const second = new pg.Client(u);
        return await second.connect().then(
          async () => {
            await second.end();
            return 'connected';
          },
          (e: pg.DatabaseError) => `${e.code} ${e.message}`,
        );
      } finally {
        await first.end();
      }
    });
    expect(proxied).toEqual(direct);
    expect(direct).toBe('53300 too many connections for role "clients_limited"');
  });

  it('a backend terminated by the server reaches the client as FATAL 57P01, then the connection closes', async () => {
    const { direct, proxy: proxied } = await both(db.url, proxy, async (url) => {
      const c = await connect(url);
      const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      // pg emits the server's FATAL, then 'Connection terminated unexpectedly' when the socket closes.
      const errors: string[] = [];
      c.on('error', (e: Error) => errors.push(`${(e as pg.DatabaseError).code ?? '-'} ${e.message}`));
      const ended = new Promise<void>((resolve) => c.once('end', () => resolve()));
      await db.client.query('SELECT pg_terminate_backend($1)', [pid]);
      await ended;
      const after = await c.query('SELECT 1').then(
        () => 'usable',
        (e: Error) => e.message,
      );
      return { errors, after };
    });
    expect(proxied).toEqual(direct);
    expect(direct.errors[0]).toBe('57P01 terminating connection due to administrator command');
  });

  it('every authentication method the server asks for works through the proxy; failures keep their SQLSTATE', async () => {
    // pg_hba (src/dev/cluster.ts) pins these role names to trust, md5 and password; everyone else is SCRAM.
    await db.client.query(`DO $$ BEGIN
        CREATE ROLE pgcmek_trust LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    for (const role of ['pgcmek_md5', 'pgcmek_password', 'clients_scram_user']) {
      await db.client.query(`DO $$ BEGIN CREATE ROLE ${role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    }
    await db.client.query(`SET password_encryption = 'md5'`);
    await db.client.query(`ALTER ROLE pgcmek_md5 PASSWORD 'pgcmek_md5'`);
    await db.client.query(`RESET password_encryption`);
    await db.client.query(`ALTER ROLE pgcmek_password PASSWORD 'pgcmek_password'`);
    await db.client.query(`ALTER ROLE clients_scram_user PASSWORD 'sc r@m:pw'`);

    const attempt = async (url: string): Promise<string> => {
      const c = new pg.Client(url);
      try {
        await c.connect();
        const r = await c.query('SELECT current_user AS u');
        return `ok ${r.rows[0].u}`;
      } catch (err) {
        const e = err as pg.DatabaseError;
        return `${e.code} ${e.message}`;
      } finally {
        await c.end().catch(() => {});
      }
    };
    const as = (user: string, password: string, database = db.name): string => `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${db.host}:${db.port}/${database}`;
    const cases = [
      as('pgcmek_trust', 'anything'),
      as('pgcmek_md5', 'pgcmek_md5'),
      as('pgcmek_password', 'pgcmek_password'),
      as('clients_scram_user', 'sc r@m:pw'),
      as('clients_scram_user', 'wrong'),
      as('pgcmek_md5', 'wrong'),
      as('no_such_role_xyz', 'x'),
      as('postgres', 'postgres', 'no_such_database_xyz'),
    ];
    const direct: string[] = [];
    const proxied: string[] = [];
    for (const url of cases) {
      direct.push(await attempt(url));
      proxied.push(await attempt(retarget(url, proxy.host, proxy.port)));
    }
    expect(proxied).toEqual(direct);
    expect(direct).toEqual([
      'ok pgcmek_trust',
      'ok pgcmek_md5',
      'ok pgcmek_password',
      'ok clients_scram_user',
      '28P01 password authentication failed for user "clients_scram_user"',
      '28P01 password authentication failed for user "pgcmek_md5"',
      '28P01 password authentication failed for user "no_such_role_xyz"',
      '3D000 database "no_such_database_xyz" does not exist',
    ]);
  });
});
