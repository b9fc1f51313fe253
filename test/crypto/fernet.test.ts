import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodePadded } from '../../src/crypto/base64url.js';
import { decrypt, encrypt, FernetError, FernetKey, type FernetErrorReason } from '../../src/crypto/fernet.js';
import { oracleDecrypt, oracleEncrypt } from './oracle.js';

const SPEC = new URL('../fixtures/fernet-spec/', import.meta.url);
const load = <T>(name: string): T => JSON.parse(readFileSync(new URL(name, SPEC), 'utf8')) as T;
const seconds = (rfc3339: string) => Date.parse(rfc3339) / 1000;

interface GenerateCase { token: string; now: string; iv: number[]; src: string; secret: string }
interface VerifyCase { token: string; now: string; ttl_sec: number; src: string; secret: string }
interface InvalidCase { desc: string; token: string; now: string; ttl_sec: number; secret: string }

function reasonOf(fn: () => unknown): FernetErrorReason {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FernetError);
    return (e as FernetError).reason;
  }
  throw new Error('expected a FernetError, got a result');
}

const b64key = () => randomBytes(32).toString('base64url') + '=';

describe('Fernet spec vectors', () => {
  const generate = load<GenerateCase[]>('generate.json');
  const verify = load<VerifyCase[]>('verify.json');
  const invalid = load<InvalidCase[]>('invalid.json');

  it('has the 10 cases', () => {
    expect(generate.length + verify.length + invalid.length).toBe(10);
  });

  it.each(generate)('generate: $src', (c) => {
    const token = encrypt(FernetKey.fromBase64(c.secret), c.src, { iv: Buffer.from(c.iv), timestamp: seconds(c.now) });
    expect(token).toBe(c.token);
  });

  it.each(verify)('verify: $src', (c) => {
    const pt = decrypt(FernetKey.fromBase64(c.secret), c.token, { ttlSeconds: c.ttl_sec, now: seconds(c.now) });
    expect(pt.toString('utf8')).toBe(c.src);
  });

  const expected: Record<string, FernetErrorReason> = {
    'incorrect mac': 'bad_mac',
    'too short': 'too_short',
    'invalid base64': 'bad_base64',
    'payload size not multiple of block size': 'bad_length',
    'payload padding error': 'bad_padding',
    'far-future TS (unacceptable clock skew)': 'future',
    'expired TTL': 'expired',
    'incorrect IV (causes padding error)': 'bad_padding',
  };
  it.each(invalid)('invalid: $desc', (c) => {
    const key = FernetKey.fromBase64(c.secret);
    const reason = reasonOf(() => decrypt(key, c.token, { ttlSeconds: c.ttl_sec, now: seconds(c.now) }));
    expect(reason).toBe(expected[c.desc]);
  });
});

describe('Fernet against the npm fernet package (oracle)', () => {
  const messages = ['x', 'hello', 'a'.repeat(15), 'b'.repeat(16), 'c'.repeat(17), 'héllo wörld ✓ 😀', 'z'.repeat(1000)];

  it.each(messages)('oracle decrypts ours: %s', (m) => {
    const k = b64key();
    expect(oracleDecrypt(k, encrypt(FernetKey.fromBase64(k), m))).toBe(m);
  });

  it.each(messages)('we decrypt the oracle: %s', (m) => {
    const k = b64key();
    expect(decrypt(FernetKey.fromBase64(k), oracleEncrypt(k, m)).toString('utf8')).toBe(m);
  });

  it('produces the same token as the oracle for a fixed IV and time', () => {
    // The oracle reads an IV array's indices, not its values (`for (var _byte in array)`),
    // so only the IV 00 01 .. 0f is passed through faithfully.
    const k = b64key();
    const iv = [...Array(16).keys()];
    const time = '2024-03-01T12:00:00Z';
    const ours = encrypt(FernetKey.fromBase64(k), 'same bytes', { iv: Buffer.from(iv), timestamp: seconds(time) });
    expect(ours).toBe(oracleEncrypt(k, 'same bytes', { iv, time }));
  });
});

describe('Fernet behaviour', () => {
  const key = new FernetKey(randomBytes(32));

  it('round-trips every length around the block size, including empty', () => {
    for (let n = 0; n <= 64; n++) {
      const pt = randomBytes(n);
      const t = encrypt(key, pt);
      expect(decrypt(key, t).equals(pt)).toBe(true);
      expect(decrypt(key, Buffer.from(t, 'latin1')).equals(pt)).toBe(true);
    }
  });

  it('accepts a raw 32-byte key as well as a FernetKey', () => {
    const raw = randomBytes(32);
    expect(decrypt(raw, encrypt(new FernetKey(raw), 'k')).toString()).toBe('k');
  });

  it('writes padded base64url tokens with a fresh IV each time', () => {
    const a = encrypt(key, 'same');
    const b = encrypt(key, 'same');
    expect(a).not.toBe(b);
    expect(a.length % 4).toBe(0);
    expect(a).toMatch(/^[A-Za-z0-9_-]+={0,2}$/);
  });

  it('applies no time checks without a TTL (stored values never expire)', () => {
    const old = encrypt(key, 'old', { timestamp: 0 });
    const future = encrypt(key, 'future', { timestamp: Math.floor(Date.now() / 1000) + 86_400 });
    expect(decrypt(key, old).toString()).toBe('old');
    expect(decrypt(key, future).toString()).toBe('future');
  });

  it('enforces a TTL and a 60 s clock skew when asked', () => {
    const t = encrypt(key, 'x', { timestamp: 1000 });
    expect(decrypt(key, t, { ttlSeconds: 10, now: 1010 }).toString()).toBe('x');
    expect(reasonOf(() => decrypt(key, t, { ttlSeconds: 10, now: 1011 }))).toBe('expired');
    expect(decrypt(key, t, { ttlSeconds: 10, now: 940 }).toString()).toBe('x');
    expect(reasonOf(() => decrypt(key, t, { ttlSeconds: 10, now: 939 }))).toBe('future');
  });

  it('is deterministic given IV and timestamp', () => {
    const iv = randomBytes(16);
    expect(encrypt(key, 'd', { iv, timestamp: 5 })).toBe(encrypt(key, 'd', { iv, timestamp: 5 }));
  });

  it('rejects a wrong key with bad_mac', () => {
    expect(reasonOf(() => decrypt(new FernetKey(randomBytes(32)), encrypt(key, 'x')))).toBe('bad_mac');
  });

  it('rejects every single-character change of a token', () => {
    const t = encrypt(key, 'forty bytes of plaintext, give or take..');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=';
    for (let i = 0; i < t.length; i++) {
      for (const c of [alphabet[(alphabet.indexOf(t[i]!) + 1) % alphabet.length]!, String.fromCharCode(t.charCodeAt(i) ^ 1), '+', ' ']) {
        if (c === t[i]) continue;
        const bad = t.slice(0, i) + c + t.slice(i + 1);
        expect(() => decrypt(key, bad), `position ${i} -> ${JSON.stringify(c)}`).toThrow(FernetError);
      }
    }
  });

  it('parses base64url strictly where Node would not', () => {
    const t = encrypt(key, 'strict');
    const padded = t.endsWith('=');
    expect(padded || t.length % 4 === 0).toBe(true);
    const cases = [
      t.replace(/=+$/, '') + (padded ? '' : 'A'), // missing padding
      t + '====', // extra padding
      t.slice(0, 10) + '!' + t.slice(10), // Node skips '!' silently
      t.slice(0, 10) + '\n' + t.slice(10),
      t.replace(/-/g, '+').replace(/_/g, '/'), // standard alphabet
      ' ' + t,
    ].filter((c) => c !== t);
    for (const c of cases) expect(reasonOf(() => decrypt(key, c))).toBe('bad_base64');
  });

  it('rejects non-canonical trailing bits', () => {
    // Tokens of 73 (+16n) bytes end in "==": the last data character carries 4 unused bits,
    // and bit 0 is unused whatever the padding. Node would decode either form to the same bytes.
    for (const pt of ['', 'x'.repeat(16), 'y'.repeat(64)]) {
      const t = encrypt(key, pt);
      const pads = t.length - t.replace(/=+$/, '').length;
      expect(pads).toBeGreaterThan(0);
      const i = t.length - pads - 1;
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const bumped = alphabet[alphabet.indexOf(t[i]!) ^ 1]!;
      const bad = t.slice(0, i) + bumped + t.slice(i + 1);
      expect(Buffer.from(bad, 'base64url').equals(Buffer.from(t, 'base64url'))).toBe(true);
      expect(reasonOf(() => decrypt(key, bad))).toBe('bad_base64');
    }
  });

  it('reports bad_version and too_short', () => {
    const raw = Buffer.from(encrypt(key, 'v'), 'base64url');
    raw[0] = 0x81;
    expect(reasonOf(() => decrypt(key, encodePadded(raw)))).toBe('bad_version');
    expect(reasonOf(() => decrypt(key, ''))).toBe('too_short');
    const noBlock = Buffer.concat([Buffer.from([0x80]), Buffer.alloc(8 + 16 + 32)]);
    expect(reasonOf(() => decrypt(key, encodePadded(noBlock)))).toBe('too_short');
  });

  it('rejects keys of the wrong size and bad IVs', () => {
    expect(() => new FernetKey(randomBytes(31))).toThrow(RangeError);
    expect(() => encrypt(key, 'x', { iv: randomBytes(12) })).toThrow(RangeError);
    expect(() => encrypt(key, 'x', { timestamp: -1 })).toThrow(RangeError);
  });

  it('destroy() zeroes the key halves so nothing decrypts any more', () => {
    const k = new FernetKey(randomBytes(32));
    const t = encrypt(k, 'x');
    k.destroy();
    expect(k.signingKey.every((b) => b === 0) && k.encryptionKey.every((b) => b === 0)).toBe(true);
    expect(reasonOf(() => decrypt(k, t))).toBe('bad_mac');
  });

  it('one reused cipher and precomputed HMAC pads give the bytes of a fresh cipher and Hmac per value, value after value', () => {
    // Reference: Fernet straight from the spec, a new AES-CBC cipher and Hmac object per token.
    const reference = (raw: Buffer, pt: Buffer, iv: Buffer, ts: number): string => {
      const c = createCipheriv('aes-128-cbc', raw.subarray(16), iv);
      const head = Buffer.alloc(25);
      head[0] = 0x80;
      head.writeBigUInt64BE(BigInt(ts), 1);
      iv.copy(head, 9);
      const body = Buffer.concat([head, c.update(pt), c.final()]);
      return encodePadded(Buffer.concat([body, createHmac('sha256', raw.subarray(0, 16)).update(body).digest()]));
    };
    const raws = [randomBytes(32), randomBytes(32)];
    const keys = raws.map((r) => new FernetKey(r));
    for (let i = 0; i < 3000; i++) {
      const k = i % 7 === 0 ? 1 : 0; // two keys interleaved: each keeps its own chaining state
      const pt = randomBytes(i % 3 === 0 ? i % 700 : i % 41);
      const iv = randomBytes(16);
      const ts = 1_700_000_000 + i;
      const t = encrypt(keys[k]!, pt, { iv, timestamp: ts });
      expect(t).toBe(reference(raws[k]!, pt, iv, ts));
      if (i % 5 === 0) expect(decrypt(keys[k]!, t).equals(pt)).toBe(true);
    }
  });

  it('does not disturb the plaintext buffer it is given', () => {
    const pt = Buffer.from('0123456789abcdef0123456789abcdef!');
    const copy = Buffer.from(pt);
    encrypt(key, pt);
    expect(pt.equals(copy)).toBe(true);
  });

  it('error messages name the reason and nothing else', () => {
    try {
      decrypt(new FernetKey(randomBytes(32)), encrypt(key, 'secret plaintext'));
    } catch (e) {
      expect((e as Error).message).toContain('bad_mac');
      expect((e as Error).message).not.toContain('secret plaintext');
    }
  });
});
