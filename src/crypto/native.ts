// The optional native crypto addon (native/crypto.c, built by `npm ci`): HMAC-SHA256
// and AES-128-CBC on Node's own OpenSSL without node:crypto's per-call objects,
// which cost more than the crypto on short values (~1.3 µs per call against
// ~0.15–0.2 µs here; a whole new Fernet token is one call). HmacSha256Key and
// FernetKey use it when it loads and passes a self-test against node:crypto
// (tokens included); otherwise they run their JavaScript paths,
// which give the same bytes. PGCMEK_NATIVE=off forces the JavaScript paths;
// PGCMEK_NATIVE=require makes a missing or failing addon an error at startup.
// A key's native memory (~1.7 KB for a FernetKey) is reported to V8 and freed by
// destroy() or, for a key dropped without it, by a finaliser that Node runs
// between event-loop turns: a synchronous loop that makes millions of keys
// without destroy() holds their memory until it yields.
import { createCipheriv, createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { addonPath } from '../addon-path.js';

/** A key held by the addon (an N-API external). */
export type NativeHandle = { readonly __native: unique symbol };

export interface NativeCrypto {
  hmacKey(key: Uint8Array): NativeHandle;
  /** HMAC of src[start, end) into out[at, at + 32). */
  hmacInto(k: NativeHandle, src: Uint8Array, start: number, end: number, out: Uint8Array, at: number): void;
  hmacDestroy(k: NativeHandle): void;
  /** A 16-byte AES key: an encrypt and a decrypt context, CBC without padding. */
  aesKey(key: Uint8Array): NativeHandle;
  /** AES-128-CBC of whole blocks src[srcAt, srcAt + len) into dst[dstAt, …) (the same range = in place). */
  cbc(k: NativeHandle, decrypt: boolean, src: Uint8Array, srcAt: number, len: number, iv: Uint8Array, ivAt: number, dst: Uint8Array, dstAt: number): void;
  aesDestroy(k: NativeHandle): void;
  /**
   * The raw Fernet token of src[start, end) into out[at, at + 57 + padded length):
   * version, the timestamp tsHi * 2^32 + tsLo, the IV iv[ivAt, ivAt + 16),
   * AES-128-CBC (PKCS7) under `aes`, HMAC-SHA256 under `mac`. One call.
   */
  fernetSeal(
    mac: NativeHandle,
    aes: NativeHandle,
    src: Uint8Array,
    start: number,
    end: number,
    iv: Uint8Array,
    ivAt: number,
    tsHi: number,
    tsLo: number,
    out: Uint8Array,
    at: number,
  ): void;
  opensslVersion(): string;
}

export interface NativeStatus {
  active: boolean;
  /** What was loaded, or why not. Never key material. */
  detail: string;
}

const ADDON = 'pgcmek_crypto.node';

/** The addon must give node:crypto's bytes before anything relies on it. */
function selfTest(n: NativeCrypto): string | undefined {
  const key = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
  const msg = Buffer.from('pgcmek native self-test: 57 bytes, a 2-block HMAC input');
  const mac = Buffer.alloc(32);
  const h = n.hmacKey(key);
  n.hmacInto(h, msg, 0, msg.length, mac, 0);
  n.hmacDestroy(h);
  if (!mac.equals(createHmac('sha256', key).update(msg).digest())) return 'HMAC-SHA256 differs from node:crypto';
  const iv = Buffer.from('f0e1d2c3b4a5968778695a4b3c2d1e0f', 'hex');
  const pt = msg.subarray(0, 48);
  const c = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false);
  const expected = c.update(pt);
  const a = n.aesKey(key);
  const ct = Buffer.alloc(48);
  n.cbc(a, false, pt, 0, 48, iv, 0, ct, 0);
  const back = Buffer.alloc(48);
  n.cbc(a, true, ct, 0, 48, iv, 0, back, 0);
  if (!ct.equals(expected) || !back.equals(pt)) {
    n.aesDestroy(a);
    return 'AES-128-CBC differs from node:crypto';
  }
  // A whole Fernet token (a 21-byte plaintext: one full block and a padded one), built by node:crypto.
  const ts = 0x1_2345_6789;
  const value = msg.subarray(0, 21);
  const head = Buffer.concat([Buffer.from([0x80, 0, 0, 0, 1, 0x23, 0x45, 0x67, 0x89]), iv]);
  const cbcAll = createCipheriv('aes-128-cbc', key, iv);
  const want = Buffer.concat([head, cbcAll.update(value), cbcAll.final()]);
  const token = Buffer.concat([want, createHmac('sha256', key).update(want).digest()]);
  const got = Buffer.alloc(token.length);
  const m = n.hmacKey(key);
  n.fernetSeal(m, a, value, 0, value.length, iv, 0, Math.floor(ts / 2 ** 32), ts >>> 0, got, 0);
  n.hmacDestroy(m);
  n.aesDestroy(a);
  if (!got.equals(token)) return 'Fernet sealing differs from node:crypto';
  return undefined;
}

function load(): { native?: NativeCrypto; status: NativeStatus } {
  const mode = (process.env.PGCMEK_NATIVE ?? 'auto').toLowerCase();
  if (mode === 'off') return { status: { active: false, detail: 'off (PGCMEK_NATIVE=off)' } };
  let native: NativeCrypto | undefined;
  let detail: string;
  const path = addonPath(ADDON);
  if (path === undefined) detail = `not built (build/Release/${ADDON} missing: npm ci builds it with node-gyp)`;
  else {
    try {
      native = createRequire(import.meta.url)(path) as NativeCrypto;
      const failed = selfTest(native);
      if (failed) {
        native = undefined;
        detail = `disabled: self-test failed (${failed})`;
      } else detail = `native (${native.opensslVersion()})`;
    } catch (e) {
      native = undefined;
      detail = `not loadable (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
    }
  }
  if (mode === 'require' && native === undefined) throw new Error(`pgcmek: PGCMEK_NATIVE=require, but the native crypto is ${detail}`);
  return native ? { native, status: { active: true, detail } } : { status: { active: false, detail } };
}

const loaded = load();

/** The addon, or undefined: use the JavaScript path. */
export const native: NativeCrypto | undefined = loaded.native;

/** For the startup log and `pgcmek status`: which crypto path this process runs. */
export function nativeCryptoStatus(): NativeStatus {
  return loaded.status;
}
