// Round trips of the server-message codecs; expected bytes are written out by hand
// or come from a real server's shape (field layout per the protocol docs).
import { describe, expect, it } from 'vitest';
import { decodeRowDescription, encodeRowDescription } from '../../src/protocol/backend/row-description.js';
import { decodeDataRow, encodeDataRow } from '../../src/protocol/backend/data-row.js';
import { decodeParameterDescription, encodeParameterDescription } from '../../src/protocol/backend/parameter-description.js';
import { decodeReadyForQuery, encodeReadyForQuery } from '../../src/protocol/backend/ready-for-query.js';
import {
  authenticationCode,
  decodeAuthenticationSASL,
  encodeAuthenticationSASL,
  stripChannelBinding,
} from '../../src/protocol/backend/authentication.js';
import { decodeBackendKeyData, encodeBackendKeyData } from '../../src/protocol/backend/backend-key-data.js';
import { decodeCommandComplete, encodeCommandComplete } from '../../src/protocol/backend/command-complete.js';
import {
  adminShutdown,
  connectionFailure,
  decodeErrorFields,
  encodeErrorResponse,
  encodeNoticeResponse,
  featureNotSupported,
  internalError,
  protocolViolation,
  tooManyConnections,
  unableToConnect,
} from '../../src/protocol/backend/error-response.js';
import { TxStatus } from '../../src/protocol/codes.js';
import { ProtocolError } from '../../src/protocol/errors.js';

describe('backend codecs', () => {
  it('RowDescription', () => {
    const fields = [
      { name: 'id', tableOid: 16384, columnAttr: 1, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 },
      { name: 'secret', tableOid: 16384, columnAttr: 2, typeOid: 25, typeSize: -1, typeModifier: -1, format: 1 },
      { name: '?column?', tableOid: 0, columnAttr: 0, typeOid: 0xfffffff0, typeSize: -1, typeModifier: -1, format: 0 },
    ];
    const b = encodeRowDescription(fields);
    expect(b[0]).toBe(0x54);
    expect(b.readInt32BE(1)).toBe(b.length - 1);
    expect(decodeRowDescription(b)).toEqual(fields);
    expect(decodeRowDescription(encodeRowDescription([]))).toEqual([]);
  });

  it('DataRow with NULL, empty and binary values', () => {
    const row = [Buffer.from('abc'), null, Buffer.alloc(0), Buffer.from([0, 255])];
    const b = encodeDataRow(row);
    expect(b).toEqual(Buffer.from([0x44, 0, 0, 0, 27, 0, 4, 0, 0, 0, 3, 0x61, 0x62, 0x63, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, 0, 255]));
    expect(decodeDataRow(b)).toEqual(row);
  });

  it('DataRow with a column running past the frame is a ProtocolError', () => {
    const b = Buffer.from(encodeDataRow([Buffer.from('abc')]));
    b.writeInt32BE(50, 7);
    expect(() => decodeDataRow(b)).toThrow(ProtocolError);
  });

  it('ParameterDescription (unsigned count)', () => {
    const oids = Array.from({ length: 40000 }, (_, i) => i);
    expect(decodeParameterDescription(encodeParameterDescription(oids))).toEqual(oids);
    expect(decodeParameterDescription(encodeParameterDescription([25, 0xffffffff]))).toEqual([25, 0xffffffff]);
  });

  it('ReadyForQuery', () => {
    for (const s of [TxStatus.Idle, TxStatus.InTransaction, TxStatus.Failed]) expect(decodeReadyForQuery(encodeReadyForQuery(s))).toBe(s);
    expect(encodeReadyForQuery(TxStatus.Idle)).toEqual(Buffer.from([0x5a, 0, 0, 0, 5, 0x49]));
    expect(() => decodeReadyForQuery(Buffer.from([0x5a, 0, 0, 0, 5, 0x41]))).toThrow(ProtocolError);
  });

  it('AuthenticationSASL and channel-binding stripping', () => {
    const both = encodeAuthenticationSASL(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    expect(authenticationCode(both)).toBe(10);
    expect(decodeAuthenticationSASL(both)).toEqual(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    const stripped = stripChannelBinding(both);
    expect(decodeAuthenticationSASL(stripped)).toEqual(['SCRAM-SHA-256']);
    const plain = encodeAuthenticationSASL(['SCRAM-SHA-256']);
    expect(stripChannelBinding(plain)).toBe(plain);
    expect(plain).toEqual(Buffer.from('R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0', 'latin1'));
  });

  it('BackendKeyData with 4-byte (3.0) and 32-byte (3.2) keys', () => {
    const k4 = { pid: 4242, key: Buffer.from([1, 2, 3, 4]) };
    expect(encodeBackendKeyData(k4)).toEqual(Buffer.from([0x4b, 0, 0, 0, 12, 0, 0, 0x10, 0x92, 1, 2, 3, 4]));
    expect(decodeBackendKeyData(encodeBackendKeyData(k4))).toEqual(k4);
    const k32 = { pid: 1, key: Buffer.alloc(32, 0xab) };
    expect(decodeBackendKeyData(encodeBackendKeyData(k32))).toEqual(k32);
    expect(() => decodeBackendKeyData(encodeBackendKeyData({ pid: 1, key: Buffer.alloc(2) }))).toThrow(ProtocolError);
  });

  it('CommandComplete', () => {
    expect(decodeCommandComplete(encodeCommandComplete('INSERT 0 1'))).toBe('INSERT 0 1');
  });

  it('ErrorResponse round trip keeps every field', () => {
    const f = { severity: 'ERROR' as const, code: '22P02', message: 'bad', detail: 'd', hint: 'h', other: new Map([[0x50, '12']]) };
    const b = encodeErrorResponse(f);
    expect(b[0]).toBe(0x45);
    expect(decodeErrorFields(b.subarray(5))).toEqual(f);
    expect(encodeNoticeResponse({ severity: 'NOTICE', code: '00000', message: 'n' })[0]).toBe(0x4e);
    expect(() => encodeErrorResponse({ severity: 'ERROR', code: '123', message: 'x' })).toThrow(ProtocolError);
  });

  it('named constructors carry real SQLSTATEs', () => {
    const state = (b: Buffer) => decodeErrorFields(b.subarray(5));
    expect(state(protocolViolation('x'))).toMatchObject({ severity: 'FATAL', code: '08P01' });
    expect(state(connectionFailure('x'))).toMatchObject({ severity: 'FATAL', code: '08006' });
    expect(state(unableToConnect('x'))).toMatchObject({ severity: 'FATAL', code: '08001' });
    expect(state(adminShutdown())).toMatchObject({ severity: 'FATAL', code: '57P01' });
    expect(state(tooManyConnections())).toMatchObject({ severity: 'FATAL', code: '53300' });
    expect(state(featureNotSupported('x'))).toMatchObject({ severity: 'ERROR', code: '0A000' });
    expect(state(internalError('x'))).toMatchObject({ severity: 'FATAL', code: 'XX000' });
  });
});
