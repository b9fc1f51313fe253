// Deterministic Fernet: the token is a function of (DEK, plaintext) alone, is
// standard Fernet (an independent implementation builds the same bytes from
// the documented IV and timestamp), and different plaintexts share nothing.
import { createCipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decrypt as fernetDecrypt } from '../../src/crypto/fernet.js';
import { DeterministicKey, dekCheck, IV_INFO, tokenTextLength } from '../../src/searchable/deterministic.js';
import { oracleDecrypt } from '../crypto/oracle.js';

const b64 = (b: Buffer) => b.toString('base64url') + '='; // 32 bytes -> 43 chars + one pad
const raw = (token: string) => Buffer.from(token, 'base64url');

/** The Fernet spec written out with node:crypto (not src/crypto/fernet.ts): version | ts | iv | AES-128-CBC | HMAC. */
function referenceToken(dek: Buffer, pt: Buffer, iv: Buffer, ts: number): string {
  const c = createCipheriv('aes-128-cbc', dek.subarray(16), iv);
  const body = Buffer.concat([Buffer.from([0x80]), Buffer.alloc(4), Buffer.alloc(4), iv, c.update(pt), c.final()]);
  body.writeUInt32BE(ts, 5);
  const mac = createHmac('sha256', dek.subarray(0, 16)).update(body).digest();
  return Buffer.concat([body, mac]).toString('base64');
}
const urlsafe = (b64text: string) => b64text.replaceAll('+', '-').replaceAll('/', '_');

describe('DeterministicKey', () => {
  const dek = randomBytes(32);
  const key = new DeterministicKey(dek);
  const cases = ['', 'a', 'x'.repeat(15), 'x'.repeat(16), 'sha256:' + 'ab'.repeat(32), 'Grüße 🔑'];

  it.each(cases)('same plaintext, same token; decrypts with plain Fernet (%j)', (pt) => {
    const a = key.token(Buffer.from(pt));
    const b = new DeterministicKey(dek).token(Buffer.from(pt));
    expect(a).toBe(b);
    expect(fernetDecrypt(dek, a).toString('utf8')).toBe(pt);
    expect(oracleDecrypt(b64(dek), a)).toBe(pt);
  });

  it.each(cases)('byte-identical to the Fernet spec written out with IV = HMAC(HKDF(DEK), pt)[0..16], time 0 (%j)', (pt) => {
    const ivKey = Buffer.from(hkdfSync('sha256', dek, Buffer.alloc(0), IV_INFO, 32));
    const iv = createHmac('sha256', ivKey).update(Buffer.from(pt)).digest().subarray(0, 16);
    const expected = urlsafe(referenceToken(dek, Buffer.from(pt), iv, 0));
    expect(key.token(Buffer.from(pt))).toBe(expected);
    const t = raw(expected);
    expect(t[0]).toBe(0x80);
    expect(t.subarray(1, 9).equals(Buffer.alloc(8))).toBe(true); // timestamp 0
  });

  it('writeToken writes token() at an offset, in tokenTextLength bytes; raw() is its bytes', () => {
    for (let n = 0; n <= 100; n++) {
      const pt = randomBytes(n);
      const t = key.token(pt);
      expect(tokenTextLength(n)).toBe(t.length);
      const out = Buffer.alloc(7 + t.length + 3, 0xaa);
      expect(key.writeToken(pt, out, 7)).toBe(7 + t.length);
      expect(out.toString('latin1', 7, 7 + t.length)).toBe(t);
      expect(out.subarray(0, 7).every((x) => x === 0xaa) && out.subarray(7 + t.length).every((x) => x === 0xaa)).toBe(true);
      expect(key.raw(pt).equals(raw(t))).toBe(true);
      expect(key.iv(pt).equals(raw(t).subarray(9, 25))).toBe(true);
    }
  });

  it('interleaved with other plaintexts and keys, a token never changes (no state carried between values)', () => {
    const other = new DeterministicKey(randomBytes(32));
    const pts = Array.from({ length: 50 }, (_, i) => randomBytes(i * 3));
    const first = pts.map((p) => key.token(p));
    for (let r = 0; r < 3; r++) {
      pts.forEach((p, i) => {
        other.token(p);
        expect(key.token(p)).toBe(first[i]);
      });
    }
  });

  it('different plaintexts get unrelated IVs, also with a shared prefix', () => {
    const ivs = new Set<string>();
    const p = 'x'.repeat(32);
    for (let i = 0; i < 1000; i++) {
      const t = raw(key.token(Buffer.from(`${p}${i}`)));
      ivs.add(t.subarray(9, 25).toString('hex'));
      // the first cipher block differs although the first 16 plaintext bytes are equal (no fixed-IV CBC leak)
    }
    expect(ivs.size).toBe(1000);
    const a = raw(key.token(Buffer.from(p + 'a')));
    const b = raw(key.token(Buffer.from(p + 'b')));
    expect(a.subarray(25, 41).equals(b.subarray(25, 41))).toBe(false);
  });

  it('another DEK gives another token for the same plaintext', () => {
    const other = new DeterministicKey(randomBytes(32));
    expect(other.token(Buffer.from('same'))).not.toBe(key.token(Buffer.from('same')));
  });

  it('fingerprint: stable, DEK-specific, reveals no key half', () => {
    expect(dekCheck(dek).equals(key.check)).toBe(true);
    expect(key.matches(Buffer.from(dek))).toBe(true);
    expect(key.matches(randomBytes(32))).toBe(false);
    expect(key.check.length).toBe(16);
    expect(dek.includes(key.check.subarray(0, 8))).toBe(false);
  });

  it('dek() returns a copy of the DEK; destroy() zeroes the key', () => {
    const k = new DeterministicKey(dek);
    const copy = k.dek();
    expect(copy.equals(dek)).toBe(true);
    k.destroy();
    expect(k.fernet.signingKey.equals(Buffer.alloc(16))).toBe(true);
    expect(k.dek().equals(Buffer.alloc(32))).toBe(true);
    expect(dek.equals(copy)).toBe(true); // the caller's DEK untouched
  });

  it('refuses a DEK that is not 32 bytes', () => {
    expect(() => new DeterministicKey(randomBytes(16))).toThrow(RangeError);
  });
});
