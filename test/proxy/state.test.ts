// The session state machine, fed frame by frame as the session would feed it.
import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import { SessionState } from '../../src/proxy/state.js';
import type { InternalReplyHandler } from '../../src/proxy/state-types.js';
import { BackendCode, FrontendCode, TxStatus } from '../../src/protocol/codes.js';
import { encodeRowDescription, type FieldDescription } from '../../src/protocol/backend/row-description.js';
import { encodeParameterDescription } from '../../src/protocol/backend/parameter-description.js';
import { encodeReadyForQuery } from '../../src/protocol/backend/ready-for-query.js';
import { encodeCommandComplete } from '../../src/protocol/backend/command-complete.js';
import { encodeDataRow } from '../../src/protocol/backend/data-row.js';
import { encodeErrorResponse } from '../../src/protocol/backend/error-response.js';

const field = (name: string, typeOid = 25, format = 0): FieldDescription => ({
  name, tableOid: 16400, columnAttr: 1, typeOid, typeSize: -1, typeModifier: -1, format,
});
const T = (...f: FieldDescription[]) => encodeRowDescription(f);
const Z = (s: number = TxStatus.Idle) => encodeReadyForQuery(s as 0x49);
const C = (tag: string) => encodeCommandComplete(tag);
const E = encodeErrorResponse({ severity: 'ERROR', code: '42P01', message: 'x' });
const D = encodeDataRow([Buffer.from('v')]);

/** Feeds client frames (a concatenation) to the state, frame by frame. */
function send(st: SessionState, frames: Buffer, origin: 'client' | 'internal' = 'client', handler?: InternalReplyHandler): void {
  let p = 0;
  while (p < frames.length) {
    const len = frames.readInt32BE(p + 1);
    const f = frames.subarray(p, p + 1 + len);
    st.frontend(f[0]!, f, origin, handler);
    p += 1 + len;
  }
}
const recv = (st: SessionState, f: Buffer) => st.backend(f[0]!, f);
const simple = (code: number) => Buffer.from([code, 0, 0, 0, 4]);
const kinds = (st: SessionState) => st.queue.map((p) => p.kind);

describe('SessionState: extended protocol', () => {
  it('matches each reply of a pipeline to its request', () => {
    const st = new SessionState();
    send(st, Buffer.concat([
      serialize.parse({ name: 's1', text: 'SELECT $1::text', types: [25] }),
      serialize.describe({ type: 'S', name: 's1' }),
      serialize.bind({ statement: 's1', portal: 'p1', values: ['a'], binary: false }),
      serialize.execute({ portal: 'p1' }),
      serialize.sync(),
    ]));
    expect(kinds(st)).toEqual(['parse', 'describe', 'bind', 'execute', 'sync']);
    expect(recv(st, simple(BackendCode.ParseComplete))?.kind).toBe('parse');
    expect(st.statements.get('s1')).toMatchObject({ text: 'SELECT $1::text', paramTypes: [25] });
    expect(recv(st, encodeParameterDescription([25]))?.kind).toBe('describe');
    expect(st.statements.get('s1')!.paramOids).toEqual([25]);
    expect(recv(st, T(field('text')))?.kind).toBe('describe');
    expect(st.statements.get('s1')!.rowDescription).toEqual([field('text')]);
    expect(recv(st, simple(BackendCode.BindComplete))?.kind).toBe('bind');
    expect(st.portals.get('p1')).toMatchObject({ statementName: 's1', resultFormats: [0] });
    const r = recv(st, D);
    expect(r?.kind).toBe('execute');
    expect(st.currentShape()).toEqual({ fields: [field('text')], formats: [0] });
    expect(recv(st, C('SELECT 1'))?.kind).toBe('execute');
    expect(recv(st, Z())?.kind).toBe('sync');
    expect(st.queue).toEqual([]);
    expect(st.unmatched).toBe(0);
    expect(st.portals.size).toBe(0); // transaction over: portals gone
    expect(st.statements.has('s1')).toBe(true);
  });

  it('applies per-column result formats from Bind to the statement description', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ name: 'q', text: 'SELECT a, b' }), serialize.describe({ type: 'S', name: 'q' }), serialize.sync()]));
    recv(st, simple(BackendCode.ParseComplete));
    recv(st, encodeParameterDescription([]));
    recv(st, T(field('a', 23), field('b', 25)));
    recv(st, Z());
    send(st, Buffer.concat([bindWithFormats('q', '', [1, 0]), serialize.execute({}), serialize.sync()]));
    recv(st, simple(BackendCode.BindComplete));
    recv(st, D);
    expect(st.currentShape()).toEqual({ fields: [field('a', 23, 1), field('b', 25, 0)], formats: [1, 0] });
    // The statement's own description stays in text format.
    expect(st.statements.get('q')!.rowDescription![0]!.format).toBe(0);
    recv(st, C('SELECT 1'));
    recv(st, Z());
  });

  it('a Describe of the portal wins over the statement description', () => {
    const st = new SessionState();
    send(st, Buffer.concat([
      serialize.parse({ text: 'SELECT 1' }),
      serialize.bind({}),
      serialize.describe({ type: 'P', name: '' }),
      serialize.execute({}),
      serialize.sync(),
    ]));
    recv(st, simple(BackendCode.ParseComplete));
    recv(st, simple(BackendCode.BindComplete));
    recv(st, T(field('x', 23, 1)));
    recv(st, D);
    expect(st.currentShape()).toEqual({ fields: [field('x', 23, 1)], formats: [1] });
  });

  it('shape is null (unknown) when nothing was described', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ text: 'SELECT 1' }), serialize.bind({}), serialize.execute({}), serialize.sync()]));
    recv(st, simple(BackendCode.ParseComplete));
    recv(st, simple(BackendCode.BindComplete));
    recv(st, D);
    expect(st.currentShape()).toBeNull();
  });

  it('NoData records a statement that returns no rows', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ name: 'i', text: 'INSERT INTO t VALUES (1)' }), serialize.describe({ type: 'S', name: 'i' }), serialize.sync()]));
    recv(st, simple(BackendCode.ParseComplete));
    recv(st, encodeParameterDescription([]));
    expect(recv(st, simple(BackendCode.NoData))?.kind).toBe('describe');
    expect(st.statements.get('i')!.rowDescription).toBeNull();
  });

  it('portal suspension: Execute with a row limit ends at PortalSuspended and the portal lives on', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ text: 'SELECT g FROM generate_series(1,5) g' }), serialize.bind({ portal: 'c' }), serialize.describe({ type: 'P', name: 'c' }), serialize.execute({ portal: 'c', rows: 2 }), serialize.flush()]));
    recv(st, simple(BackendCode.ParseComplete));
    recv(st, simple(BackendCode.BindComplete));
    recv(st, T(field('g', 23)));
    recv(st, D);
    recv(st, D);
    expect(recv(st, simple(BackendCode.PortalSuspended))?.kind).toBe('execute');
    expect(st.queue).toEqual([]);
    send(st, Buffer.concat([serialize.execute({ portal: 'c', rows: 2 }), serialize.sync()]));
    recv(st, D);
    expect(st.currentShape()?.fields).toEqual([field('g', 23)]);
    recv(st, C('SELECT 3'));
    recv(st, Z(TxStatus.Idle));
    expect(st.queue).toEqual([]);
    expect(st.unmatched).toBe(0);
  });

  it('an error mid-pipeline drops the pending requests up to Sync, and later requests match again', () => {
    const st = new SessionState();
    send(st, Buffer.concat([
      serialize.parse({ name: 'bad', text: 'SELECT * FROM nope' }),
      serialize.bind({ statement: 'bad' }),
      serialize.execute({}),
      serialize.sync(),
      serialize.parse({ text: 'SELECT 1' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
    ]));
    expect(recv(st, E)?.kind).toBe('parse');
    expect(kinds(st)).toEqual(['sync', 'parse', 'bind', 'execute', 'sync']);
    expect(st.statements.has('bad')).toBe(false);
    expect(recv(st, Z())?.kind).toBe('sync');
    recv(st, simple(BackendCode.ParseComplete));
    recv(st, simple(BackendCode.BindComplete));
    recv(st, D);
    recv(st, C('SELECT 1'));
    recv(st, Z());
    expect(st.queue).toEqual([]);
    expect(st.unmatched).toBe(0);
  });

  it('after an error with no Sync queued, messages up to the next Sync are discarded (Flush without Sync)', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ text: 'bogus' }), serialize.flush()]));
    recv(st, E);
    expect(st.skippingToSync).toBe(true);
    send(st, Buffer.concat([serialize.bind({}), serialize.execute({}), serialize.query('SELECT 1')]));
    expect(st.queue).toEqual([]);
    send(st, serialize.sync());
    expect(st.skippingToSync).toBe(false);
    expect(kinds(st)).toEqual(['sync']);
    recv(st, Z(TxStatus.Idle));
    expect(st.queue).toEqual([]);
  });

  it('Close removes statements and portals on CloseComplete', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ name: 'a', text: 'SELECT 1' }), serialize.sync()]));
    recv(st, simple(BackendCode.ParseComplete));
    recv(st, Z());
    send(st, Buffer.concat([serialize.close({ type: 'S', name: 'a' }), serialize.sync()]));
    expect(st.statements.has('a')).toBe(true);
    expect(recv(st, simple(BackendCode.CloseComplete))?.kind).toBe('close');
    expect(st.statements.has('a')).toBe(false);
    recv(st, Z());
  });

  it('portals survive ReadyForQuery inside a transaction block and die at its end', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ text: 'SELECT 1' }), serialize.bind({ portal: 'cur' }), serialize.sync()]));
    recv(st, simple(BackendCode.ParseComplete));
    recv(st, simple(BackendCode.BindComplete));
    recv(st, Z(TxStatus.InTransaction));
    expect(st.txStatus).toBe(TxStatus.InTransaction);
    expect(st.portals.has('cur')).toBe(true);
    send(st, serialize.query('COMMIT'));
    recv(st, C('COMMIT'));
    recv(st, Z(TxStatus.Idle));
    expect(st.portals.has('cur')).toBe(false);
  });

  it('DISCARD ALL forgets every statement', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ name: 'a', text: 'SELECT 1' }), serialize.sync()]));
    recv(st, simple(BackendCode.ParseComplete));
    recv(st, Z());
    send(st, serialize.query('DISCARD ALL'));
    recv(st, C('DISCARD ALL'));
    recv(st, Z());
    expect(st.statements.size).toBe(0);
  });
});

describe('SessionState: simple protocol, COPY, function calls', () => {
  it('a multi-statement Query carries each RowDescription to its rows and ends at ReadyForQuery', () => {
    const st = new SessionState();
    send(st, serialize.query('SELECT 1; SELECT 2, 3; INSERT INTO t VALUES (1)'));
    recv(st, T(field('a', 23)));
    recv(st, D);
    expect(st.currentShape()?.fields.map((f) => f.name)).toEqual(['a']);
    recv(st, C('SELECT 1'));
    recv(st, T(field('b', 23), field('c', 23)));
    recv(st, D);
    expect(st.currentShape()?.fields.map((f) => f.name)).toEqual(['b', 'c']);
    recv(st, C('SELECT 1'));
    recv(st, C('INSERT 0 1'));
    expect(kinds(st)).toEqual(['query']);
    recv(st, Z());
    expect(st.queue).toEqual([]);
  });

  it('an error in a simple Query is followed by ReadyForQuery with no skipping', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.query('SELECT 1/0; SELECT 2'), serialize.query('SELECT 3')]));
    expect(recv(st, E)?.kind).toBe('query');
    expect(st.skippingToSync).toBe(false);
    recv(st, Z());
    recv(st, T(field('x')));
    recv(st, D);
    recv(st, C('SELECT 1'));
    recv(st, Z());
    expect(st.queue).toEqual([]);
    expect(st.unmatched).toBe(0);
  });

  it('an empty query gets EmptyQueryResponse then ReadyForQuery', () => {
    const st = new SessionState();
    send(st, serialize.query(''));
    expect(recv(st, simple(BackendCode.EmptyQueryResponse))?.kind).toBe('query');
    recv(st, Z());
    expect(st.queue).toEqual([]);
  });

  it('asynchronous messages match no request', () => {
    const st = new SessionState();
    send(st, serialize.query('SELECT 1'));
    expect(st.backend(BackendCode.NoticeResponse, undefined)).toBeUndefined();
    expect(st.backend(BackendCode.NotificationResponse, undefined)).toBeUndefined();
    expect(st.backend(BackendCode.ParameterStatus, undefined)).toBeUndefined();
    expect(kinds(st)).toEqual(['query']);
    expect(st.unmatched).toBe(0);
  });

  it('COPY FROM STDIN in a simple Query', () => {
    const st = new SessionState();
    send(st, serialize.query('COPY t FROM STDIN'));
    expect(st.backend(BackendCode.CopyInResponse, undefined)?.copy).toBe('in');
    expect(st.clientCopyIn).toBe(true);
    send(st, Buffer.concat([serialize.copyData(Buffer.from('1\n')), serialize.copyDone()]));
    expect(st.clientCopyIn).toBe(false);
    recv(st, C('COPY 1'));
    recv(st, Z());
    expect(st.queue).toEqual([]);
  });

  it('COPY FROM STDIN through the extended protocol: the Sync sent before the data is swallowed (libpq)', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ text: 'COPY t FROM STDIN' }), serialize.bind({}), serialize.execute({}), serialize.sync()]));
    recv(st, simple(BackendCode.ParseComplete));
    recv(st, simple(BackendCode.BindComplete));
    st.backend(BackendCode.CopyInResponse, undefined);
    expect(kinds(st)).toEqual(['execute']);
    send(st, Buffer.concat([serialize.sync(), serialize.flush(), serialize.copyData(Buffer.from('1\n')), serialize.copyDone(), serialize.sync()]));
    expect(kinds(st)).toEqual(['execute', 'sync']);
    recv(st, C('COPY 1'));
    recv(st, Z());
    expect(st.queue).toEqual([]);
    expect(st.unmatched).toBe(0);
  });

  it('a COPY pipelined whole (CopyDone before CopyInResponse arrives) keeps the Sync sent after it', () => {
    const st = new SessionState();
    send(st, Buffer.concat([
      serialize.query('COPY t FROM STDIN'),
      serialize.copyData(Buffer.from('1\n')),
      serialize.copyDone(),
      serialize.parse({ text: 'SELECT 1' }),
      serialize.sync(),
    ]));
    st.backend(BackendCode.CopyInResponse, undefined);
    expect(st.clientCopyIn).toBe(false);
    expect(kinds(st)).toEqual(['query', 'parse', 'sync']);
  });

  it('an error during COPY FROM STDIN ends the copy and ReadyForQuery follows', () => {
    const st = new SessionState();
    send(st, serialize.query('COPY t FROM STDIN'));
    st.backend(BackendCode.CopyInResponse, undefined);
    send(st, serialize.copyFail('nope'));
    expect(recv(st, E)?.kind).toBe('query');
    recv(st, Z());
    expect(st.queue).toEqual([]);
  });

  it('COPY TO STDOUT: CopyOut, CopyData, CopyDone, CommandComplete', () => {
    const st = new SessionState();
    send(st, serialize.query('COPY t TO STDOUT'));
    expect(st.backend(BackendCode.CopyOutResponse, undefined)?.copy).toBe('out');
    expect(st.clientCopyIn).toBe(false);
    expect(st.backend(BackendCode.CopyData, undefined)?.kind).toBe('query');
    expect(st.backend(BackendCode.CopyDone, undefined)?.kind).toBe('query');
    recv(st, C('COPY 3'));
    recv(st, Z());
    expect(st.queue).toEqual([]);
    expect(st.unmatched).toBe(0);
  });

  it('FunctionCall gets FunctionCallResponse then ReadyForQuery', () => {
    const st = new SessionState();
    st.frontend(FrontendCode.FunctionCall, undefined);
    expect(st.backend(BackendCode.FunctionCallResponse, undefined)?.kind).toBe('function-call');
    expect(recv(st, Z())?.kind).toBe('function-call');
    expect(st.queue).toEqual([]);
  });

  it('Flush, Terminate and stray CopyData expect nothing', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.flush(), serialize.end(), serialize.copyData(Buffer.from('x'))]));
    expect(st.queue).toEqual([]);
  });
});

describe('SessionState: internal and synthetic entries', () => {
  it('internal requests are tagged and their handler hears the replies', () => {
    const st = new SessionState();
    const got: string[] = [];
    const h: InternalReplyHandler = {
      message: (code) => got.push(String.fromCharCode(code)),
      done: (_e, outcome) => got.push(outcome),
    };
    send(st, serialize.parse({ name: 's', text: 'SELECT 1' }));
    send(st, serialize.describe({ type: 'S', name: 's' }), 'internal', h);
    send(st, serialize.sync());
    expect(st.internalPending).toBe(1);
    expect(recv(st, simple(BackendCode.ParseComplete))?.origin).toBe('client');
    const r1 = recv(st, encodeParameterDescription([]));
    expect(r1?.origin).toBe('internal');
    const r2 = recv(st, T(field('x')));
    expect(r2?.origin).toBe('internal');
    expect(st.internalPending).toBe(0);
    expect(got).toEqual(['ok']); // message() is the session's job; done() comes from the state
    expect(st.statements.get('s')!.rowDescription).toEqual([field('x')]);
  });

  it('an error on an internal request that costs client requests is flagged for forwarding', () => {
    const st = new SessionState();
    const outcomes: string[] = [];
    send(st, serialize.describe({ type: 'S', name: 'missing' }), 'internal', { done: (_e, o) => outcomes.push(o) });
    send(st, Buffer.concat([serialize.bind({}), serialize.execute({}), serialize.sync()]));
    const r = recv(st, E);
    expect(r?.origin).toBe('internal');
    expect(st.errorAffectsClient).toBe(true);
    expect(outcomes).toEqual(['error']);
    expect(kinds(st)).toEqual(['sync']);
  });

  it('an error on an internal request followed only by its own Sync stays internal', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.describe({ type: 'S', name: 'missing' }), serialize.sync()]), 'internal', {});
    recv(st, E);
    expect(st.errorAffectsClient).toBe(false);
    expect(recv(st, Z())?.origin).toBe('internal');
    expect(st.internalPending).toBe(0);
  });

  it('internal requests sent while the server skips to Sync are reported skipped at once', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ text: 'bogus' }), serialize.flush()]));
    recv(st, E);
    const outcomes: string[] = [];
    send(st, serialize.describe({ type: 'S', name: '' }), 'internal', { done: (_e, o) => outcomes.push(o) });
    expect(outcomes).toEqual(['skipped']);
    expect(st.internalPending).toBe(0);
  });

  it('synthetic frames wait for every earlier reply', () => {
    const st = new SessionState();
    send(st, Buffer.concat([serialize.parse({ text: 'SELECT 1' }), serialize.sync()]));
    const fake = Buffer.from('synthetic');
    expect(st.synthetic(fake)).toBe(false);
    expect(st.takeSynthetic()).toBeUndefined();
    recv(st, simple(BackendCode.ParseComplete));
    expect(st.takeSynthetic()).toBeUndefined();
    recv(st, Z());
    expect(st.takeSynthetic()).toBe(fake);
    expect(st.queue).toEqual([]);
    expect(st.synthetic(fake)).toBe(true);
  });

  it('synthetic frames in a range the server skips are dropped with it', () => {
    const st = new SessionState();
    send(st, serialize.parse({ text: 'bogus' }));
    st.synthetic(Buffer.from('x'));
    send(st, serialize.sync());
    recv(st, E);
    expect(kinds(st)).toEqual(['sync']);
  });
});

/** A Bind with explicit result format codes (pg-protocol's serializer always sends one). */
function bindWithFormats(statement: string, portal: string, formats: number[]): Buffer {
  const body = Buffer.concat([
    Buffer.from(portal + '\0' + statement + '\0'),
    Buffer.from([0, 0, 0, 0]),
    Buffer.from([0, formats.length, ...formats.flatMap((f) => [0, f])]),
  ]);
  const out = Buffer.alloc(5 + body.length);
  out[0] = FrontendCode.Bind;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}
