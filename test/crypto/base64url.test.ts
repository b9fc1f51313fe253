import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeStrict, encodePadded, encodeUnpadded } from '../../src/crypto/base64url.js';

const dec = (s: string, padded: boolean) => {
  const b = Buffer.from(s, 'latin1');
  return decodeStrict(b, 0, b.length, padded);
};
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

describe('strict base64url', () => {
  it('round-trips every length 0..96 padded and unpadded, agreeing with Node', () => {
    for (let n = 0; n <= 96; n++) {
      const b = randomBytes(n);
      const u = encodeUnpadded(b);
      const p = encodePadded(b);
      expect(p.length % 4).toBe(0);
      expect(dec(u, false)!.equals(b)).toBe(true);
      expect(dec(p, true)!.equals(b)).toBe(true);
      expect(Buffer.from(p, 'base64url').equals(b)).toBe(true);
    }
  });

  it('decodes a sub-range without copying the rest', () => {
    const b = Buffer.from('xx' + encodeUnpadded(Buffer.from('range')) + 'yy', 'latin1');
    expect(decodeStrict(b, 2, b.length - 2, false)!.toString()).toBe('range');
  });

  it('rejects padding where none is allowed and missing or extra padding where it is required', () => {
    expect(dec('QQ==', false)).toBeUndefined();
    expect(dec('QQ', true)).toBeUndefined();
    expect(dec('QQ===', true)).toBeUndefined();
    expect(dec('QUI==', true)).toBeUndefined();
    expect(dec('Q===', true)).toBeUndefined();
    expect(dec('====', true)).toBeUndefined();
    expect(dec('QQ=A', true)).toBeUndefined();
  });

  it('rejects impossible lengths', () => {
    expect(dec('Q', false)).toBeUndefined();
    expect(dec('QUJDR', false)).toBeUndefined();
  });

  it('rejects every byte outside the alphabet at every position of a group', () => {
    const good = encodeUnpadded(randomBytes(6)); // 8 chars
    for (let c = 0; c < 256; c++) {
      if (ALPHABET.includes(String.fromCharCode(c))) continue;
      for (let i = 0; i < good.length; i++) {
        const b = Buffer.from(good, 'latin1');
        b[i] = c;
        expect(decodeStrict(b, 0, b.length, false), `byte ${c} at ${i}`).toBeUndefined();
      }
    }
  });

  it('rejects non-zero unused trailing bits (the non-canonical twin Node accepts)', () => {
    expect(dec('QQ', false)!.toString()).toBe('A');
    expect(dec('QR', false)).toBeUndefined();
    expect(Buffer.from('QR', 'base64url').toString()).toBe('A');
    expect(dec('QUI', false)!.toString()).toBe('AB');
    expect(dec('QUJ', false)).toBeUndefined();
    expect(dec('QUJ=', true)).toBeUndefined();
  });

  it('rejects the standard (+/) alphabet', () => {
    expect(dec('+/+/', false)).toBeUndefined();
    expect(dec('-_-_', false)!.length).toBe(3);
  });
});
