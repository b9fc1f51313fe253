// Round trips of the client-message codecs, checked against pg-protocol's serializer
// (an independent encoder) where it has the message.
import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import { decodeParse, encodeParse } from '../../src/protocol/frontend/parse.js';
import { decodeBind, decodeBindHead, encodeBind, formatAt } from '../../src/protocol/frontend/bind.js';
import { decodeClose, decodeDescribe, encodeClose, encodeDescribe } from '../../src/protocol/frontend/describe-close.js';
import { decodeExecute, encodeExecute } from '../../src/protocol/frontend/execute.js';
import { decodeQuery, encodeQuery } from '../../src/protocol/frontend/query.js';
import { COPY_DONE, decodeCopyData, decodeCopyFail, encodeCopyData, encodeCopyFail } from '../../src/protocol/frontend/copy.js';
import { FLUSH, SYNC, TERMINATE } from '../../src/protocol/frontend/simple.js';
import {
  decodeStartupPacket,
  encodeCancelRequest,
  encodeStartup,
  SSL_REQUEST,
  startupPacketLength,
} from '../../src/protocol/frontend/startup.js';
import { ProtocolError } from '../../src/protocol/errors.js';

describe('frontend codecs', () => {
  it('Parse', () => {
    const p = { name: 's1', text: 'SELECT $1::int, $2', paramTypes: [23, 0] };
    const b = encodeParse(p);
    expect(b).toEqual(serialize.parse({ name: 's1', text: p.text, types: [23, 0] }));
    expect(decodeParse(b)).toEqual(p);
    expect(decodeParse(encodeParse({ name: '', text: 'SELECT 1', paramTypes: [] }))).toEqual({ name: '', text: 'SELECT 1', paramTypes: [] });
  });

  it('Parse keeps type OIDs above 2^31', () => {
    expect(decodeParse(encodeParse({ name: '', text: 'x', paramTypes: [0xfffffff0] })).paramTypes).toEqual([0xfffffff0]);
  });

  it('Bind with text, binary and NULL values', () => {
    const b = serialize.bind({ portal: 'p', statement: 's', values: ['a', null, Buffer.from([1, 2])] });
    const d = decodeBind(b);
    expect(d.portal).toBe('p');
    expect(d.statement).toBe('s');
    expect(d.values.map((v) => (v === null ? null : [...v]))).toEqual([[0x61], null, [1, 2]]);
    expect(d.paramFormats).toEqual([0, 0, 1]);
    expect(d.resultFormats).toEqual([0]);
    expect(encodeBind(d)).toEqual(b);
    expect(decodeBindHead(b)).toEqual({ portal: 'p', statement: 's', resultFormats: [0] });
  });

  it('Bind round trip with per-column result formats', () => {
    const m = { portal: '', statement: 'x', paramFormats: [1], values: [Buffer.from('v')], resultFormats: [0, 1, 1] };
    expect(decodeBind(encodeBind(m))).toEqual(m);
  });

  it('formatAt follows the 0 / 1 / n rule', () => {
    expect(formatAt([], 3)).toBe(0);
    expect(formatAt([1], 3)).toBe(1);
    expect(formatAt([0, 1], 1)).toBe(1);
  });

  it('Bind with a truncated value is a ProtocolError', () => {
    const b = serialize.bind({ values: ['abcdef'] });
    const cut = Buffer.from(b.subarray(0, b.length - 4));
    cut.writeInt32BE(cut.length - 1, 1);
    expect(() => decodeBind(cut)).toThrow(ProtocolError);
  });

  it('Describe and Close', () => {
    expect(encodeDescribe({ kind: 'S', name: 'st' })).toEqual(serialize.describe({ type: 'S', name: 'st' }));
    expect(decodeDescribe(serialize.describe({ type: 'P', name: '' }))).toEqual({ kind: 'P', name: '' });
    expect(encodeClose({ kind: 'P', name: 'c' })).toEqual(serialize.close({ type: 'P', name: 'c' }));
    expect(decodeClose(serialize.close({ type: 'S', name: 'x' }))).toEqual({ kind: 'S', name: 'x' });
    const bad = Buffer.from(encodeDescribe({ kind: 'S', name: '' }));
    bad[5] = 0x51;
    expect(() => decodeDescribe(bad)).toThrow(ProtocolError);
    expect(() => decodeDescribe(encodeClose({ kind: 'S', name: '' }))).toThrow(/type byte/);
  });

  it('Execute', () => {
    expect(encodeExecute({ portal: 'p', maxRows: 10 })).toEqual(serialize.execute({ portal: 'p', rows: 10 }));
    expect(decodeExecute(serialize.execute({}))).toEqual({ portal: '', maxRows: 0 });
  });

  it('Query', () => {
    expect(encodeQuery('SELECT 1; SELECT 2')).toEqual(serialize.query('SELECT 1; SELECT 2'));
    expect(decodeQuery(serialize.query('héllo'))).toBe('héllo');
  });

  it('COPY messages', () => {
    const data = Buffer.from('1\tx\n');
    expect(encodeCopyData(data)).toEqual(serialize.copyData(data));
    expect(decodeCopyData(encodeCopyData(data))).toEqual(data);
    expect(COPY_DONE).toEqual(serialize.copyDone());
    expect(encodeCopyFail('stop')).toEqual(serialize.copyFail('stop'));
    expect(decodeCopyFail(serialize.copyFail('stop'))).toBe('stop');
  });

  it('constant frames', () => {
    expect(SYNC).toEqual(serialize.sync());
    expect(FLUSH).toEqual(serialize.flush());
    expect(TERMINATE).toEqual(serialize.end());
  });

  it('startup packets', () => {
    const s = encodeStartup([['user', 'u'], ['database', 'd']]);
    expect(encodeStartup([['user', 'u'], ['database', 'd'], ['client_encoding', 'UTF8']])).toEqual(serialize.startup({ user: 'u', database: 'd' }));
    expect(startupPacketLength(s)).toBe(s.length);
    const d = decodeStartupPacket(s);
    expect(d).toEqual({ kind: 'startup', major: 3, minor: 0, params: new Map([['user', 'u'], ['database', 'd']]) });
    const s32 = decodeStartupPacket(encodeStartup([['user', 'u']], 3, 2));
    expect(s32.kind === 'startup' && s32.minor).toBe(2);
    expect(decodeStartupPacket(SSL_REQUEST)).toEqual({ kind: 'ssl' });
    expect(SSL_REQUEST).toEqual(serialize.requestSsl());
    expect(decodeStartupPacket(serialize.cancel(1234, 5678))).toEqual({ kind: 'cancel', pid: 1234, key: Buffer.from([0, 0, 0x16, 0x2e]) });
    const long = Buffer.alloc(32, 9);
    expect(decodeStartupPacket(encodeCancelRequest(7, long))).toEqual({ kind: 'cancel', pid: 7, key: long });
  });

  it('startup packet lengths out of range are refused', () => {
    const b = Buffer.alloc(8);
    b.writeInt32BE(4, 0);
    expect(() => startupPacketLength(b)).toThrow(ProtocolError);
    b.writeInt32BE(20_000, 0);
    expect(() => startupPacketLength(b)).toThrow(ProtocolError);
    expect(startupPacketLength(Buffer.alloc(3))).toBeUndefined();
  });
});
