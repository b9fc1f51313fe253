// The JS HMAC-SHA256 with precomputed pad states must be byte-identical to
// node:crypto for every message length, on both sides of the JS/native switch.
import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HmacSha256Key, JS_MAX_MESSAGE } from '../../src/crypto/hmac-sha256.js';

const reference = (key: Buffer, msg: Uint8Array) => createHmac('sha256', key).update(msg).digest();

describe('HmacSha256Key', () => {
  it('matches createHmac for every length 0..1100 (padding edges at 55/56/64 and the native switch included)', () => {
    for (const keyLen of [16, 32, 64]) {
      const key = randomBytes(keyLen);
      const h = new HmacSha256Key(key);
      const msg = randomBytes(1100);
      for (let n = 0; n <= 1100; n++) {
        expect(h.digest(msg.subarray(0, n)).equals(reference(key, msg.subarray(0, n))), `key ${keyLen} len ${n}`).toBe(true);
      }
    }
  });

  it('RFC 4231 test case 2 (a short key) and an empty key', () => {
    const h = new HmacSha256Key(Buffer.from('Jefe'));
    expect(h.digest(Buffer.from('what do ya want for nothing?')).toString('hex')).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
    expect(new HmacSha256Key(Buffer.alloc(0)).digest(Buffer.from('x')).equals(reference(Buffer.alloc(0), Buffer.from('x')))).toBe(true);
  });

  it('MACs a range of a larger buffer into a range of another, leaving the rest alone', () => {
    const key = randomBytes(16);
    const h = new HmacSha256Key(key);
    const src = randomBytes(600);
    for (const [s, e] of [[0, 0], [7, 80], [13, 13 + JS_MAX_MESSAGE], [13, 14 + JS_MAX_MESSAGE], [1, 600]] as const) {
      const out = Buffer.alloc(40, 0xaa);
      h.macInto(src, s, e, out, 5);
      expect(out.subarray(5, 37).equals(reference(key, src.subarray(s, e)))).toBe(true);
      expect(out.subarray(0, 5).every((b) => b === 0xaa) && out.subarray(37).every((b) => b === 0xaa)).toBe(true);
    }
  });

  it('interleaved keys do not disturb each other (the scratch is shared)', () => {
    const keys = [randomBytes(16), randomBytes(16)];
    const hs = keys.map((k) => new HmacSha256Key(k));
    for (let i = 0; i < 200; i++) {
      const msg = randomBytes(i * 3);
      const k = i % 2;
      expect(hs[k]!.digest(msg).equals(reference(keys[k]!, msg))).toBe(true);
    }
  });

  it('keeps its own copy of the key, and destroy() leaves it unable to reproduce a MAC', () => {
    const key = randomBytes(16);
    const h = new HmacSha256Key(key);
    const msg = Buffer.from('token bytes');
    const mac = h.digest(msg);
    key.fill(0);
    expect(h.digest(msg).equals(mac)).toBe(true);
    h.destroy();
    expect(h.digest(msg).equals(mac)).toBe(false);
    expect(h.digest(Buffer.alloc(JS_MAX_MESSAGE + 1)).equals(reference(Buffer.alloc(16), Buffer.alloc(JS_MAX_MESSAGE + 1)))).toBe(true);
  });

  it('refuses keys longer than one block (never used by Fernet) and ranges outside the buffers', () => {
    expect(() => new HmacSha256Key(Buffer.alloc(65))).toThrow(RangeError);
    const h = new HmacSha256Key(randomBytes(16));
    expect(() => h.macInto(Buffer.alloc(10), 0, 11, Buffer.alloc(32), 0)).toThrow(RangeError);
    expect(() => h.macInto(Buffer.alloc(10), 5, 4, Buffer.alloc(32), 0)).toThrow(RangeError);
    expect(() => h.macInto(Buffer.alloc(10), 0, 10, Buffer.alloc(32), 1)).toThrow(RangeError);
  });
});
