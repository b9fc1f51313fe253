// The wire protocol through the proxy, message by message: what a raw client
// sees must be exactly what Postgres sends.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import pg from 'pg';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import type { ProxyServer } from '../../src/proxy/server.js';
import { ensureRole, proxyUrl, startTestProxy } from './helpers.js';
import { RawClient, codes, errorOf, rowValues } from './raw-client.js';

describe('proxy: wire protocol through the proxy', () => {
  let db: TestDb;
  let proxy: ProxyServer;
  let c: RawClient;
  beforeAll(async () => {
    db = await createTestDatabase('pxproto');
    await ensureRole(db.client, 'pgcmek_trust');
    await db.client.query(`ALTER DATABASE ${db.name} OWNER TO pgcmek_trust`);
    proxy = await startTestProxy();
    c = await RawClient.connect(proxy.port, { database: db.name });
    c.send(serialize.query('CREATE TABLE t (id int PRIMARY KEY, v text)'));
    expect(codes(await c.untilReady())).toBe('CZ');
  });
  afterAll(async () => {
    c?.end();
    await proxy?.close(0);
    await db?.drop();
  });

  it('start-up: ParameterStatus, the proxy\'s own BackendKeyData, ReadyForQuery', () => {
    expect(c.params.get('server_version')).toBeDefined();
    expect(c.params.get('client_encoding')).toBe('UTF8');
    expect(c.key?.key.length).toBe(4);
  });

  it('pipelines many Parse/Bind/Describe/Execute before one Sync', async () => {
    const frames: Buffer[] = [];
    for (let i = 0; i < 3; i++) {
      frames.push(
        serialize.parse({ name: `p${i}`, text: `SELECT $1::int + ${i} AS n` }),
        serialize.bind({ statement: `p${i}`, values: [String(10 * i)] }),
        serialize.describe({ type: 'P', name: '' }),
        serialize.execute({}),
      );
    }
    frames.push(serialize.sync());
    c.send(...frames);
    const ms = await c.untilReady();
    expect(codes(ms)).toBe('12TDC'.repeat(3) + 'Z');
    expect(ms.filter((m) => m.code === 'D').map((m) => rowValues(m)[0])).toEqual(['0', '11', '22']);
  });

  it('Flush without Sync delivers results before any Sync', async () => {
    c.send(serialize.parse({ text: 'SELECT 42' }), serialize.bind({}), serialize.execute({}), serialize.flush());
    expect(codes(await c.take(4))).toBe('12DC');
    expect(await c.quiet(100)).toBe(true);
    c.send(serialize.sync());
    expect(codes(await c.untilReady())).toBe('Z');
  });

  it('an error mid-pipeline skips to Sync, and the next queries work', async () => {
    c.send(
      serialize.parse({ text: 'SELECT 1' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.parse({ text: 'SELECT * FROM no_such_table' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
      serialize.parse({ text: 'SELECT 2' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
    );
    const first = await c.untilReady();
    expect(codes(first)).toBe('12DCEZ');
    expect(errorOf(first[4]!).code).toBe('42P01');
    const second = await c.untilReady();
    expect(codes(second)).toBe('12DCZ');
    expect(rowValues(second[2]!)).toEqual(['2']);
  });

  it('an error after Flush (no Sync yet): the server skips until the Sync that follows', async () => {
    c.send(serialize.parse({ text: 'SELEC oops' }), serialize.flush());
    const e = await c.next();
    expect(e.code).toBe('E');
    expect(errorOf(e).code).toBe('42601');
    c.send(serialize.bind({}), serialize.execute({}), serialize.sync());
    expect(codes(await c.untilReady())).toBe('Z');
  });

  it('named statements and portals, portal suspension with a row limit', async () => {
    c.send(serialize.query('BEGIN'));
    expect(codes(await c.untilReady())).toBe('CZ');
    c.send(
      serialize.parse({ name: 'gen', text: 'SELECT g FROM generate_series(1, 5) g' }),
      serialize.bind({ statement: 'gen', portal: 'cur' }),
      serialize.execute({ portal: 'cur', rows: 2 }),
      serialize.flush(),
    );
    expect(codes(await c.take(5))).toBe('12DDs');
    c.send(serialize.execute({ portal: 'cur', rows: 2 }), serialize.flush());
    expect(codes(await c.take(3))).toBe('DDs');
    c.send(serialize.execute({ portal: 'cur', rows: 2 }), serialize.close({ type: 'P', name: 'cur' }), serialize.close({ type: 'S', name: 'gen' }), serialize.sync());
    const ms = await c.untilReady();
    expect(codes(ms)).toBe('DC33Z');
    expect(ms.at(-1)!.body.toString()).toBe('T');
    c.send(serialize.query('COMMIT'));
    const end = await c.untilReady();
    expect(end.at(-1)!.body.toString()).toBe('I');
  });

  it('simple-protocol multi-statement query, empty query, and the real transaction status byte', async () => {
    c.send(serialize.query("SELECT 1 AS a; SELECT 'x' AS b, 2 AS c; INSERT INTO t VALUES (1, 'one')"));
    const ms = await c.untilReady();
    expect(codes(ms)).toBe('TDCTDCCZ');
    expect(rowValues(ms[4]!)).toEqual(['x', '2']);
    c.send(serialize.query(''));
    expect(codes(await c.untilReady())).toBe('IZ');
    c.send(serialize.query('BEGIN; SELECT 1/0'));
    const failed = await c.untilReady();
    expect(codes(failed)).toBe('CEZ');
    expect(failed.at(-1)!.body.toString()).toBe('E');
    c.send(serialize.query('ROLLBACK'));
    expect((await c.untilReady()).at(-1)!.body.toString()).toBe('I');
  });

  it('COPY FROM STDIN and COPY TO STDOUT', async () => {
    c.send(serialize.query('COPY t (id, v) FROM STDIN'));
    expect((await c.next()).code).toBe('G');
    c.send(serialize.copyData(Buffer.from('10\tten\n11\televen\n')), serialize.copyData(Buffer.from('12\ttwelve\n')), serialize.copyDone());
    const done = await c.untilReady();
    expect(codes(done)).toBe('CZ');
    expect(done[0]!.body.toString()).toBe('COPY 3\0');
    c.send(serialize.query('COPY (SELECT id, v FROM t WHERE id >= 10 ORDER BY id) TO STDOUT'));
    const out = await c.untilReady();
    expect(codes(out)).toBe('HdddcCZ');
    expect(out.filter((m) => m.code === 'd').map((m) => m.body.toString()).join('')).toBe('10\tten\n11\televen\n12\ttwelve\n');
  });

  it('CopyFail aborts the COPY with an error', async () => {
    c.send(serialize.query('COPY t FROM STDIN'));
    expect((await c.next()).code).toBe('G');
    c.send(serialize.copyData(Buffer.from('20\tx\n')), serialize.copyFail('client gave up'));
    const ms = await c.untilReady();
    expect(codes(ms)).toBe('EZ');
    expect(errorOf(ms[0]!).code).toBe('57014');
  });

  it('COPY FROM STDIN through the extended protocol with a pipelined Sync (as libpq does)', async () => {
    c.send(serialize.parse({ text: 'COPY t FROM STDIN' }), serialize.bind({}), serialize.execute({}), serialize.sync());
    expect(codes(await c.take(3))).toBe('12G');
    c.send(serialize.copyData(Buffer.from('30\tthirty\n')), serialize.copyDone(), serialize.sync());
    expect(codes(await c.untilReady())).toBe('CZ');
  });

  it('FunctionCall', async () => {
    c.send(serialize.query("SELECT 'int4pl'::regproc::oid"));
    const oid = Number(rowValues((await c.untilReady())[1]!)[0]);
    c.send(functionCall(oid, [Buffer.from('40'), Buffer.from('2')]));
    const ms = await c.untilReady();
    expect(codes(ms)).toBe('VZ');
    expect(ms[0]!.body.subarray(4).toString()).toBe('42');
  });

  it('NoticeResponse and ParameterStatus pass through', async () => {
    c.send(serialize.query("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$"));
    const ms = await c.untilReady();
    expect(codes(ms)).toBe('NCZ');
    expect(errorOf(ms[0]!).message).toBe('hello from plpgsql');
    c.send(serialize.query("SET application_name = 'px-test'"));
    const s = await c.untilReady();
    expect(codes(s)).toBe('CSZ');
    expect(s[1]!.body.toString()).toBe('application_name\0px-test\0');
  });

  it('LISTEN/NOTIFY between two sessions', async () => {
    const a = new pg.Client(proxyUrl(proxy, db.name));
    const b = new pg.Client(proxyUrl(proxy, db.name));
    await a.connect();
    await b.connect();
    const got = new Promise<pg.Notification>((res) => a.on('notification', res));
    await a.query('LISTEN px_chan');
    await b.query("NOTIFY px_chan, 'payload-1'");
    const n = await got;
    expect(n.channel).toBe('px_chan');
    expect(n.payload).toBe('payload-1');
    await a.end();
    await b.end();
  });

  it('Terminate closes the session', async () => {
    const t = await RawClient.connect(proxy.port, { database: db.name });
    t.send(serialize.end());
    await t.waitClosed();
  });
});

/** FunctionCall ('F'): oid, argument formats (all text), arguments, result format text. */
function functionCall(oid: number, args: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4 + 2 + 2);
  head.writeInt32BE(oid, 0);
  head.writeInt16BE(0, 4);
  head.writeInt16BE(args.length, 6);
  parts.push(head);
  for (const a of args) {
    const l = Buffer.alloc(4);
    l.writeInt32BE(a.length, 0);
    parts.push(l, a);
  }
  parts.push(Buffer.from([0, 0]));
  const body = Buffer.concat(parts);
  const f = Buffer.alloc(5 + body.length);
  f[0] = 0x46;
  f.writeInt32BE(4 + body.length, 1);
  body.copy(f, 5);
  return f;
}
