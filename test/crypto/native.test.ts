// The native crypto addon (native/crypto.c via src/crypto/native.ts) against
// node:crypto, its argument checks, and the JavaScript paths it replaces, which
// must keep giving the same bytes (PGCMEK_NATIVE=off, or no addon built).
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { decrypt, encrypt, FernetKey } from '../../src/crypto/fernet.js';
import { HmacSha256Key } from '../../src/crypto/hmac-sha256.js';
import { native, nativeCryptoStatus } from '../../src/crypto/native.js';
import { DeterministicKey } from '../../src/searchable/deterministic.js';

const SPEC = new URL('../fixtures/fernet-spec/', import.meta.url);
interface GenerateCase { token: string; now: string; iv: number[]; src: string; secret: string }
const generate = JSON.parse(readFileSync(new URL('generate.json', SPEC), 'utf8')) as GenerateCase[];

describe('native crypto: loading', () => {
  it('is active when built (and must be when PGCMEK_NATIVE=require, as in CI)', () => {
    const s = nativeCryptoStatus();
    if (process.env.PGCMEK_NATIVE === 'require') expect(s.active, s.detail).toBe(true);
    expect(s.active).toBe(native !== undefined);
    expect(s.detail).toMatch(s.active ? /^native \(OpenSSL 3\./ : /not built|not loadable|disabled|off/);
  });
});

describe.skipIf(native === undefined)('native crypto: the addon against node:crypto', () => {
  const n = native!;

  it('HMAC-SHA256 for every length 0..1100 and keys of 0..64 bytes', () => {
    for (const keyLen of [0, 16, 32, 64]) {
      const key = randomBytes(keyLen);
      const k = n.hmacKey(key);
      const msg = randomBytes(1100);
      const out = Buffer.alloc(32);
      for (let len = 0; len <= 1100; len++) {
        n.hmacInto(k, msg, 0, len, out, 0);
        expect(out.equals(createHmac('sha256', key).update(msg.subarray(0, len)).digest()), `key ${keyLen} len ${len}`).toBe(true);
      }
      n.hmacDestroy(k);
    }
  });

  it('AES-128-CBC both ways, in place and between buffers, at offsets, value after value', () => {
    const key = randomBytes(16);
    const k = n.aesKey(key);
    for (let i = 0; i < 500; i++) {
      const len = 16 * (1 + (i % 9));
      const pt = randomBytes(len);
      const iv = randomBytes(16);
      const expected = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false).update(pt);
      const buf = Buffer.concat([randomBytes(7), pt, randomBytes(3)]);
      n.cbc(k, false, buf, 7, len, iv, 0, buf, 7);
      expect(buf.subarray(7, 7 + len).equals(expected)).toBe(true);
      const back = Buffer.alloc(len + 5, 0xaa);
      n.cbc(k, true, buf, 7, len, Buffer.concat([Buffer.alloc(2), iv]), 2, back, 5);
      expect(back.subarray(5).equals(pt)).toBe(true);
      expect(back.subarray(0, 5).every((b) => b === 0xaa)).toBe(true);
      expect(createDecipheriv('aes-128-cbc', key, iv).setAutoPadding(false).update(expected).equals(pt)).toBe(true);
    }
    n.aesDestroy(k);
  });

  it('the IV may sit inside the range it encrypts (it is read first)', () => {
    const key = randomBytes(16);
    const buf = randomBytes(48);
    const iv = Buffer.from(buf.subarray(0, 16));
    const expected = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false).update(buf);
    const k = n.aesKey(key);
    n.cbc(k, false, buf, 0, 48, buf, 0, buf, 0);
    expect(buf.equals(expected)).toBe(true);
  });

  it('refuses ranges outside their buffers, partial blocks, overlaps, bad keys and bad argument types', () => {
    const h = n.hmacKey(randomBytes(16));
    const src = Buffer.alloc(40);
    const out = Buffer.alloc(32);
    expect(() => n.hmacInto(h, src, 0, 41, out, 0)).toThrow(RangeError);
    expect(() => n.hmacInto(h, src, 10, 5, out, 0)).toThrow(RangeError);
    expect(() => n.hmacInto(h, src, 0, 40, out, 1)).toThrow(RangeError);
    expect(() => n.hmacInto(h, src, -1, 4, out, 0)).toThrow(/bad arguments/);
    expect(() => n.hmacInto(h, src, 0.5, 4, out, 0)).toThrow(/bad arguments/);
    expect(() => n.hmacInto(h, 'text' as unknown as Buffer, 0, 4, out, 0)).toThrow(RangeError);
    expect(() => n.hmacInto(h, new Uint16Array(8) as unknown as Uint8Array, 0, 4, out, 0)).toThrow(RangeError);
    const a = n.aesKey(randomBytes(16));
    const iv = Buffer.alloc(16);
    const buf = Buffer.alloc(64);
    expect(() => n.cbc(a, false, buf, 0, 15, iv, 0, buf, 0)).toThrow(RangeError);
    expect(() => n.cbc(a, false, buf, 32, 48, iv, 0, buf, 32)).toThrow(RangeError);
    expect(() => n.cbc(a, false, buf, 0, 32, iv, 1, buf, 0)).toThrow(RangeError);
    expect(() => n.cbc(a, false, buf, 0, 32, iv, 0, buf, 16)).toThrow(/overlapping/);
    expect(() => n.aesKey(randomBytes(32))).toThrow(RangeError);
    n.hmacDestroy(h);
    n.aesDestroy(a);
    expect(() => n.hmacInto(h, src, 0, 4, out, 0)).toThrow(/destroyed/);
    expect(() => n.cbc(a, false, buf, 0, 16, iv, 0, buf, 0)).toThrow(/destroyed/);
    expect(() => n.hmacDestroy(h)).not.toThrow(); // twice is harmless
    expect(() => n.aesDestroy(a)).not.toThrow();
  });

  it('refuses a key of the other kind (never reads one as the other)', () => {
    const h = n.hmacKey(randomBytes(16));
    const a = n.aesKey(randomBytes(16));
    const buf = Buffer.alloc(64);
    const iv = Buffer.alloc(16);
    expect(() => n.hmacInto(a, buf, 0, 4, buf, 32)).toThrow(/not an HMAC key/);
    expect(() => n.cbc(h, false, buf, 0, 16, iv, 0, buf, 0)).toThrow(/not an AES key/);
    expect(() => n.fernetSeal(a, h, buf, 0, 4, iv, 0, 0, 0, Buffer.alloc(128), 0)).toThrow(/not an HMAC and an AES key/);
    expect(() => n.hmacDestroy(a)).toThrow(/not an HMAC key/);
    expect(() => n.aesDestroy(h)).toThrow(/not an AES key/);
    n.hmacDestroy(h);
    n.aesDestroy(a);
  });

  /** The raw Fernet token as node:crypto builds it. */
  function fernetRef(signing: Buffer, encryption: Buffer, pt: Buffer, iv: Buffer, ts: number): Buffer {
    const head = Buffer.alloc(25);
    head[0] = 0x80;
    head.writeUInt32BE(Math.floor(ts / 2 ** 32), 1);
    head.writeUInt32BE(ts >>> 0, 5);
    iv.copy(head, 9);
    const c = createCipheriv('aes-128-cbc', encryption, iv);
    const body = Buffer.concat([head, c.update(pt), c.final()]);
    return Buffer.concat([body, createHmac('sha256', signing).update(body).digest()]);
  }

  it('fernetSeal builds the Fernet token of node:crypto for every length 0..300, at offsets, with the IV anywhere', () => {
    const signing = randomBytes(16);
    const encryption = randomBytes(16);
    const m = n.hmacKey(signing);
    const a = n.aesKey(encryption);
    const src = randomBytes(310);
    for (let len = 0; len <= 300; len++) {
      const iv = randomBytes(16);
      const ts = [0, 1, 2 ** 32 - 1, 2 ** 32, 1_700_000_000, Number.MAX_SAFE_INTEGER][len % 6]!;
      const want = fernetRef(signing, encryption, src.subarray(3, 3 + len), iv, ts);
      const out = Buffer.alloc(want.length + 9, 0xaa);
      n.fernetSeal(m, a, src, 3, 3 + len, Buffer.concat([Buffer.alloc(5), iv]), 5, Math.floor(ts / 2 ** 32), ts >>> 0, out, 4);
      expect(out.subarray(4, 4 + want.length).equals(want), `len ${len}`).toBe(true);
      expect(out.subarray(0, 4).every((b) => b === 0xaa) && out.subarray(4 + want.length).every((b) => b === 0xaa)).toBe(true);
    }
    // The IV read from inside the output range (where a random IV is written first).
    const iv = randomBytes(16);
    const out = Buffer.alloc(89);
    iv.copy(out, 9);
    n.fernetSeal(m, a, src, 0, 20, out, 9, 0, 7, out, 0);
    expect(out.equals(fernetRef(signing, encryption, src.subarray(0, 20), iv, 7))).toBe(true);
    n.hmacDestroy(m);
    n.aesDestroy(a);
  });

  it('fernetSeal refuses short outputs, overlaps, bad ranges and destroyed keys', () => {
    const m = n.hmacKey(randomBytes(16));
    const a = n.aesKey(randomBytes(16));
    const pt = Buffer.alloc(20);
    const iv = Buffer.alloc(16);
    expect(() => n.fernetSeal(m, a, pt, 0, 20, iv, 0, 0, 0, Buffer.alloc(88), 0)).toThrow(/outside/); // 89 needed
    expect(() => n.fernetSeal(m, a, pt, 0, 20, iv, 0, 0, 0, Buffer.alloc(89), 1)).toThrow(/outside/);
    expect(() => n.fernetSeal(m, a, pt, 0, 21, iv, 0, 0, 0, Buffer.alloc(89), 0)).toThrow(/outside/);
    expect(() => n.fernetSeal(m, a, pt, 5, 4, iv, 0, 0, 0, Buffer.alloc(89), 0)).toThrow(/outside/);
    expect(() => n.fernetSeal(m, a, pt, 0, 20, iv, 1, 0, 0, Buffer.alloc(89), 0)).toThrow(/outside/);
    const shared = Buffer.alloc(200);
    expect(() => n.fernetSeal(m, a, shared, 100, 120, iv, 0, 0, 0, shared, 50)).toThrow(/overlapping/);
    expect(() => n.fernetSeal(m, a, pt, 0, 20, iv, 0, -1, 0, Buffer.alloc(89), 0)).toThrow(/bad arguments/); // never wrapped to 2^32 - 1
    expect(() => n.fernetSeal(m, a, pt, 0, 20, iv, 0, 0, 1.5, Buffer.alloc(89), 0)).toThrow(/bad arguments/);
    n.aesDestroy(a);
    expect(() => n.fernetSeal(m, a, pt, 0, 20, iv, 0, 0, 0, Buffer.alloc(89), 0)).toThrow(/destroyed/);
    n.hmacDestroy(m);
  });
});

describe('native crypto: the JavaScript paths give the same bytes (PGCMEK_NATIVE=off)', () => {
  afterAll(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  async function jsModules() {
    vi.stubEnv('PGCMEK_NATIVE', 'off');
    vi.resetModules();
    const m = {
      native: await import('../../src/crypto/native.js'),
      hmac: await import('../../src/crypto/hmac-sha256.js'),
      fernet: await import('../../src/crypto/fernet.js'),
      det: await import('../../src/searchable/deterministic.js'),
    };
    vi.unstubAllEnvs();
    return m;
  }

  it('loads nothing native when told not to', async () => {
    const m = await jsModules();
    expect(m.native.native).toBeUndefined();
    expect(m.native.nativeCryptoStatus()).toEqual({ active: false, detail: 'off (PGCMEK_NATIVE=off)' });
  });

  it('HMAC: every length 0..1100 under both paths', async () => {
    const m = await jsModules();
    const key = randomBytes(32);
    const js = new m.hmac.HmacSha256Key(key);
    const def = new HmacSha256Key(key);
    const msg = randomBytes(1100);
    for (let len = 0; len <= 1100; len++) {
      const a = js.digest(msg.subarray(0, len));
      expect(a.equals(def.digest(msg.subarray(0, len))), `len ${len}`).toBe(true);
      expect(a.equals(createHmac('sha256', key).update(msg.subarray(0, len)).digest())).toBe(true);
    }
  });

  it('Fernet: the spec vectors, and tokens of either path decrypt under the other', async () => {
    const m = await jsModules();
    for (const c of generate) {
      const opts = { iv: Buffer.from(c.iv), timestamp: Date.parse(c.now) / 1000 };
      expect(m.fernet.encrypt(m.fernet.FernetKey.fromBase64(c.secret), c.src, opts)).toBe(c.token);
      expect(encrypt(FernetKey.fromBase64(c.secret), c.src, opts)).toBe(c.token);
    }
    const raw = randomBytes(32);
    const js = new m.fernet.FernetKey(raw);
    const def = new FernetKey(raw);
    for (let len = 0; len < 300; len += 7) {
      const pt = randomBytes(len);
      expect(decrypt(def, m.fernet.encrypt(js, pt)).equals(pt)).toBe(true);
      expect(m.fernet.decrypt(js, encrypt(def, pt)).equals(pt)).toBe(true);
    }
  });

  it('searchable tokens are the same string on both paths', async () => {
    const m = await jsModules();
    const dek = randomBytes(32);
    const js = new m.det.DeterministicKey(dek);
    const def = new DeterministicKey(dek);
    for (let i = 0; i < 200; i++) {
      const pt = randomBytes(i % 90);
      expect(js.token(pt)).toBe(def.token(pt));
      // writeToken (the lookup path: one native call into a reused buffer) writes the same text.
      const len = m.det.tokenTextLength(pt.length);
      const a = Buffer.alloc(len + 4, 0xaa);
      const b = Buffer.alloc(len + 4, 0xbb);
      expect(js.writeToken(pt, a, 2)).toBe(len + 2);
      expect(def.writeToken(pt, b, 2)).toBe(len + 2);
      expect(a.toString('latin1', 2, len + 2)).toBe(def.token(pt));
      expect(b.subarray(2, len + 2).equals(a.subarray(2, len + 2))).toBe(true);
    }
    // A plaintext longer than the reused buffer grows it.
    const long = randomBytes(5000);
    const out = Buffer.alloc(m.det.tokenTextLength(long.length));
    def.writeToken(long, out, 0);
    expect(out.toString('latin1')).toBe(js.token(long));
  });
});
