// The encryption layer's hooks, exercised by a test interceptor against real
// Postgres: state tracking, replace/drop, internal requests whose replies never
// reach the client, synthetic replies in order, and asynchronous verdicts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import pg from 'pg';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import type { ProxyServer } from '../../src/proxy/server.js';
import type { Interceptor, InterceptContext, SessionInfo } from '../../src/proxy/interceptor.js';
import { DROP, FORWARD } from '../../src/proxy/interceptor.js';
import type { SessionState } from '../../src/proxy/state.js';
import type { Pending } from '../../src/proxy/state-types.js';
import { BackendCode, FrontendCode } from '../../src/protocol/codes.js';
import { decodeDataRow, encodeDataRow } from '../../src/protocol/backend/data-row.js';
import { decodeQuery, encodeQuery } from '../../src/protocol/frontend/query.js';
import { decodeBind } from '../../src/protocol/frontend/bind.js';
import { encodeDescribe } from '../../src/protocol/frontend/describe-close.js';
import { encodeErrorResponse } from '../../src/protocol/backend/error-response.js';
import { encodeReadyForQuery } from '../../src/protocol/backend/ready-for-query.js';
import { TxStatus } from '../../src/protocol/codes.js';
import { createLogger } from '../../src/log.js';
import { startProxy } from '../../src/proxy/server.js';
import { ensureRole, proxyConfig, proxyUrl } from './helpers.js';
import { RawClient, codes, errorOf, rowValues } from './raw-client.js';

interface Seen {
  rows: { shape: string | null; values: (string | null)[] }[];
  internal: string[];
  states: SessionState[];
  sessions: SessionInfo[];
}

function testInterceptor(seen: Seen): (info: SessionInfo) => Interceptor {
  return (info) => {
    seen.sessions.push(info);
    let state: SessionState | undefined;
    return {
      trackState: true,
      frontendCodes: [FrontendCode.Query, FrontendCode.Bind],
      backendCodes: [BackendCode.DataRow, BackendCode.NoticeResponse],
      onFrontend(code, frame, ctx: InterceptContext) {
        state ??= ctx.state;
        if (!seen.states.includes(ctx.state!)) seen.states.push(ctx.state!);
        if (code === FrontendCode.Bind) {
          // Like the encryption layer: learn a statement's columns before its rows arrive.
          const b = decodeBind(frame);
          if (b.statement !== '' && ctx.state!.statements.get(b.statement)?.rowDescription === undefined) {
            ctx.injectToServer(encodeDescribe({ kind: 'S', name: b.statement }), {
              message: (c) => seen.internal.push(String.fromCharCode(c)),
            });
          }
          return FORWARD;
        }
        const sql = decodeQuery(frame);
        if (sql.startsWith('REFUSE')) {
          // Answer it ourselves, in order, and never send it.
          ctx.sendToClient(Buffer.concat([
            encodeErrorResponse({ severity: 'ERROR', code: '0A000', message: 'refused by test' }),
            encodeReadyForQuery(TxStatus.Idle),
          ]));
          return DROP;
        }
        if (sql.startsWith('SLOW ')) return new Promise((r) => setTimeout(() => r(encodeQuery(sql.slice(5))), 60));
        if (sql === 'INTERNAL') {
          ctx.injectToServer(encodeQuery('SELECT 7'), { message: (c) => seen.internal.push(String.fromCharCode(c)) });
          return DROP;
        }
        return FORWARD;
      },
      onBackend(code, frame, reply: Pending | undefined) {
        if (code === BackendCode.NoticeResponse) return frame.includes('drop me') ? DROP : FORWARD;
        const shape = reply?.shape;
        const values = decodeDataRow(frame).map((v) => (v === null ? null : v.toString()));
        seen.rows.push({ shape: shape ? shape.fields.map((f) => `${f.name}:${f.format}`).join(',') : null, values });
        if (shape?.fields[0]?.name === 'shout') {
          const cols = decodeDataRow(frame);
          cols[0] = Buffer.from(values[0]!.toUpperCase());
          return encodeDataRow(cols);
        }
        return FORWARD;
      },
    };
  };
}

describe('proxy: interceptor hooks', () => {
  let db: TestDb;
  let proxy: ProxyServer;
  const seen: Seen = { rows: [], internal: [], states: [], sessions: [] };
  beforeAll(async () => {
    db = await createTestDatabase('pxhook');
    await ensureRole(db.client, 'pgcmek_trust');
    proxy = await startProxy(proxyConfig(), { logger: createLogger('silent'), interceptor: testInterceptor(seen) });
  });
  afterAll(async () => {
    await proxy?.close(0);
    await db?.drop();
  });

  it('gives the interceptor the session info', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name, params: { application_name: 'hooks' } });
    c.end();
    expect(seen.sessions.at(-1)).toMatchObject({ user: 'pgcmek_trust', database: db.name, applicationName: 'hooks', protocolMinor: 0, clientTls: false });
  });

  it('replaces DataRows, knowing their RowDescription from the simple protocol', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    c.send(serialize.query("SELECT 'quiet' AS shout"));
    const ms = await c.untilReady();
    expect(rowValues(ms[1]!)).toEqual(['QUIET']);
    expect(seen.rows.at(-1)).toEqual({ shape: 'shout:0', values: ['quiet'] });
    c.end();
  });

  it('injects a Describe before Bind/Execute of an undescribed statement; its replies never reach the client', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    c.send(serialize.parse({ name: 'st', text: "SELECT $1::text AS shout, 2 AS n" }), serialize.sync());
    expect(codes(await c.untilReady())).toBe('1Z');
    seen.internal.length = 0;
    c.send(serialize.bind({ statement: 'st', values: ['abc'], binary: false }), serialize.execute({}), serialize.sync());
    const ms = await c.untilReady();
    expect(codes(ms)).toBe('2DCZ');
    expect(rowValues(ms[1]!)).toEqual(['ABC', '2']);
    expect(seen.internal).toEqual(['t', 'T']);
    expect(seen.rows.at(-1)!.shape).toBe('shout:0,n:0');
    // Second time round the statement is known: nothing injected.
    seen.internal.length = 0;
    c.send(serialize.bind({ statement: 'st', values: ['x'] }), serialize.execute({}), serialize.sync());
    expect(codes(await c.untilReady())).toBe('2DCZ');
    expect(seen.internal).toEqual([]);
    c.end();
  });

  it('synthetic replies are delivered in order within a pipeline', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    c.send(serialize.query('SELECT 1 AS a'), serialize.query('REFUSE this'), serialize.query('SELECT 2 AS a'));
    const first = await c.untilReady();
    const second = await c.untilReady();
    const third = await c.untilReady();
    expect(codes(first)).toBe('TDCZ');
    expect(codes(second)).toBe('EZ');
    expect(errorOf(second[0]!)).toMatchObject({ code: '0A000', message: 'refused by test' });
    expect(codes(third)).toBe('TDCZ');
    expect(rowValues(third[1]!)).toEqual(['2']);
    c.end();
  });

  it('a synthetic reply with nothing pending is sent at once', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    c.send(serialize.query('REFUSE alone'));
    const ms = await c.untilReady();
    expect(codes(ms)).toBe('EZ');
    c.send(serialize.query('SELECT 5 AS a'));
    expect(rowValues((await c.untilReady())[1]!)).toEqual(['5']);
    c.end();
  });

  it('an asynchronous verdict holds later messages: order is kept', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    c.send(serialize.query('SLOW SELECT 1 AS a'), serialize.query('SELECT 2 AS a'));
    const a = await c.untilReady();
    const b = await c.untilReady();
    expect(rowValues(a[1]!)).toEqual(['1']);
    expect(rowValues(b[1]!)).toEqual(['2']);
    c.end();
  });

  it('an internal query is answered to the hook only', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    seen.internal.length = 0;
    c.send(serialize.query('INTERNAL'), serialize.query('SELECT 3 AS a'));
    const ms = await c.untilReady();
    expect(codes(ms)).toBe('TDCZ');
    expect(rowValues(ms[1]!)).toEqual(['3']);
    expect(seen.internal).toEqual(['T', 'D', 'C', 'Z']);
    c.end();
  });

  it('drops the notices it is asked to', async () => {
    const c = await RawClient.connect(proxy.port, { database: db.name });
    c.send(serialize.query("DO $$ BEGIN RAISE NOTICE 'keep'; RAISE NOTICE 'drop me'; END $$"));
    const ms = await c.untilReady();
    expect(codes(ms)).toBe('NCZ');
    expect(errorOf(ms[0]!).message).toBe('keep');
    c.end();
  });

  it('node-postgres prepared statements, errors and transactions keep the state in step', async () => {
    const client = new pg.Client(proxyUrl(proxy, db.name));
    await client.connect();
    await client.query('CREATE TABLE IF NOT EXISTS h (id int, shout text)');
    for (let i = 0; i < 5; i++) await client.query({ name: 'ins', text: 'INSERT INTO h VALUES ($1, $2)', values: [i, `v${i}`] });
    const r = await client.query({ name: 'sel', text: 'SELECT shout FROM h WHERE id < $1 ORDER BY id', values: [3] });
    expect(r.rows.map((x) => x.shout)).toEqual(['V0', 'V1', 'V2']);
    await expect(client.query('SELECT * FROM missing_table')).rejects.toThrow(/does not exist/);
    await client.query('BEGIN');
    await expect(client.query({ text: 'SELECT 1/$1::int', values: [0] })).rejects.toThrow(/division by zero/);
    await client.query('ROLLBACK');
    const again = await client.query({ name: 'sel', text: 'SELECT shout FROM h WHERE id < $1 ORDER BY id', values: [2] });
    expect(again.rows.map((x) => x.shout)).toEqual(['V0', 'V1']);
    await client.end();
  });

  it('no session saw a reply it could not match', () => {
    expect(seen.states.length).toBeGreaterThan(3);
    for (const st of seen.states) expect(st.unmatched).toBe(0);
  });
});
