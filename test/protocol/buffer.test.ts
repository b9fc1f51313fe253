import { describe, expect, it } from 'vitest';
import { BufferReader } from '../../src/protocol/buffer-reader.js';
import { BufferWriter } from '../../src/protocol/buffer-writer.js';
import { ProtocolError } from '../../src/protocol/errors.js';

describe('BufferWriter', () => {
  it('fills in the length of each message, counting itself but not the type byte', () => {
    const b = new BufferWriter(2).begin(0x51).cstring('SELECT 1').end().begin(0x53).end().finish();
    expect(b.subarray(0, 1).toString()).toBe('Q');
    expect(b.readInt32BE(1)).toBe(4 + 9);
    expect(b.subarray(5, 14).toString()).toBe('SELECT 1\0');
    expect(b.subarray(14)).toEqual(Buffer.from([0x53, 0, 0, 0, 4]));
  });

  it('writes startup-style packets without a type byte', () => {
    const b = new BufferWriter().begin().int32(80877103).end().finish();
    expect(b).toEqual(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
  });

  it('grows past its initial size', () => {
    const big = Buffer.alloc(100_000, 7);
    const b = new BufferWriter(1).begin(0x64).bytes(big).end().finish();
    expect(b.length).toBe(100_005);
    expect(b.readInt32BE(1)).toBe(100_004);
  });

  it('refuses strings with a NUL and unbalanced begin/end', () => {
    expect(() => new BufferWriter().begin(0x51).cstring('a\0b')).toThrow(ProtocolError);
    expect(() => new BufferWriter().end()).toThrow(ProtocolError);
    expect(() => new BufferWriter().begin(0x51).finish()).toThrow(ProtocolError);
  });

  it('finish() returns a copy and resets', () => {
    const w = new BufferWriter();
    const a = w.begin(0x53).end().finish();
    const b = w.begin(0x48).end().finish();
    expect(a[0]).toBe(0x53);
    expect(b[0]).toBe(0x48);
    expect(b.length).toBe(5);
  });
});

describe('BufferReader', () => {
  const buf = new BufferWriter().begin(0x54).int16(-2).uint16(65535).int32(-5).uint32(0xfffffffe).cstring('hé').byte(9).bytes(Buffer.from('xyz')).end().finish();

  it('reads each field type', () => {
    const r = new BufferReader(buf, 5);
    expect(r.int16()).toBe(-2);
    expect(r.uint16()).toBe(65535);
    expect(r.int32()).toBe(-5);
    expect(r.uint32()).toBe(0xfffffffe);
    expect(r.cstring()).toBe('hé');
    expect(r.byte()).toBe(9);
    expect(r.remaining).toBe(3);
    expect(r.bytes(3).toString()).toBe('xyz');
    r.done('test');
  });

  it('throws ProtocolError past the end instead of reading garbage', () => {
    const r = new BufferReader(Buffer.from([0, 1, 2]));
    expect(() => r.int32()).toThrow(ProtocolError);
    expect(() => new BufferReader(Buffer.from([0, 1]), 0, 1).int16()).toThrow(ProtocolError);
    expect(() => new BufferReader(Buffer.from('abc')).cstring()).toThrow(/unterminated/);
    expect(() => new BufferReader(Buffer.from([1, 2])).bytes(-1)).toThrow(ProtocolError);
    expect(() => new BufferReader(Buffer.from([1, 2]), 0, 5)).toThrow(ProtocolError);
  });

  it('a string may not run past the reader end even if the buffer has a NUL later', () => {
    const r = new BufferReader(Buffer.from('ab\0'), 0, 2);
    expect(() => r.cstring()).toThrow(ProtocolError);
  });

  it('done() rejects trailing bytes', () => {
    const r = new BufferReader(Buffer.from([1, 2]));
    r.byte();
    expect(() => r.done('x')).toThrow(/trailing/);
  });

  it('count16 rejects negative counts', () => {
    expect(() => new BufferReader(Buffer.from([0xff, 0xff])).count16()).toThrow(ProtocolError);
  });
});
