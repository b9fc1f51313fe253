// The Transit part of the fake Vault: keys with versions and the encrypt /
// decrypt / rewrap / datakey crypto, as Vault's keysutil does it:
// `vault:v<N>:` + base64(nonce 12 | AES-256-GCM ciphertext | tag 16), with
// Vault's user-error strings and batch status rules.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

interface KeyVersion {
  key: Buffer;
  created: number;
}

export interface TransitKey {
  name: string;
  versions: Map<number, KeyVersion>;
  latestVersion: number;
  minDecryptionVersion: number;
  minEncryptionVersion: number;
}

/** A Vault API error: the HTTP status and Vault's `errors` array. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: string[],
  ) {
    super(errors.join('; '));
  }
}

const NONCE = 12;
const TAG = 16;

export function b64decodeStrict(s: unknown): Buffer | undefined {
  if (typeof s !== 'string') return undefined;
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return undefined;
  const b = Buffer.from(s, 'base64');
  return b.toString('base64') === s ? b : undefined;
}

export function rotateKey(k: TransitKey): void {
  k.latestVersion++;
  k.versions.set(k.latestVersion, { key: randomBytes(32), created: Math.floor(Date.now() / 1000) });
}

export function newKey(name: string): TransitKey {
  const k: TransitKey = { name, versions: new Map(), latestVersion: 0, minDecryptionVersion: 1, minEncryptionVersion: 0 };
  rotateKey(k);
  return k;
}

/** The `data` of GET <mount>/keys/<name>. */
export function keyInfo(k: TransitKey): Record<string, unknown> {
  const keys: Record<string, number> = {};
  for (const [v, kv] of k.versions) if (v >= k.minDecryptionVersion) keys[String(v)] = kv.created;
  return {
    allow_plaintext_backup: false,
    auto_rotate_period: 0,
    deletion_allowed: false,
    derived: false,
    exportable: false,
    imported_key: false,
    keys,
    latest_version: k.latestVersion,
    min_available_version: 0,
    min_decryption_version: k.minDecryptionVersion,
    min_encryption_version: k.minEncryptionVersion,
    name: k.name,
    supports_decryption: true,
    supports_derivation: true,
    supports_encryption: true,
    supports_signing: false,
    type: 'aes256-gcm96',
  };
}

/** POST <mount>/keys/<name>/config. */
export function keyConfig(k: TransitKey, input: Record<string, unknown>): void {
  if (input.min_decryption_version !== undefined) {
    const v = Number(input.min_decryption_version);
    if (!Number.isInteger(v) || v < 0) throw new HttpError(400, ['min decryption version must be a non-negative integer']);
    if (v > k.latestVersion) {
      throw new HttpError(400, [`cannot set min decryption version of ${v}, latest key version is ${k.latestVersion}`]);
    }
    k.minDecryptionVersion = v === 0 ? 1 : v;
  }
  if (input.min_encryption_version !== undefined) {
    const v = Number(input.min_encryption_version);
    if (!Number.isInteger(v) || v < 0 || v > k.latestVersion) throw new HttpError(400, ['invalid min encryption version']);
    k.minEncryptionVersion = v;
  }
}

export function encrypt(k: TransitKey, plaintext: Buffer, version: number): string {
  const kv = k.versions.get(version)!;
  const nonce = randomBytes(NONCE);
  const c = createCipheriv('aes-256-gcm', kv.key, nonce);
  const body = Buffer.concat([nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
  return `vault:v${version}:${body.toString('base64')}`;
}

/** Throws a user error string as Vault's keysutil does. */
function decrypt(k: TransitKey, ciphertext: string): Buffer {
  if (!ciphertext.startsWith('vault:')) throw new Error('invalid ciphertext: no prefix');
  const rest = ciphertext.slice(6);
  const colon = rest.indexOf(':');
  if (colon < 0 || !/^v\d+$/.test(rest.slice(0, colon))) throw new Error('invalid ciphertext: wrong number of fields');
  const version = Number(rest.slice(1, colon));
  if (version > k.latestVersion) throw new Error('invalid ciphertext: version is too new');
  if (version < k.minDecryptionVersion) throw new Error('ciphertext or signature version is disallowed by policy (too old)');
  const body = b64decodeStrict(rest.slice(colon + 1));
  if (!body) throw new Error('invalid ciphertext: could not decode base64');
  if (body.length < NONCE + TAG) throw new Error('invalid ciphertext: unable to decrypt');
  const d = createDecipheriv('aes-256-gcm', k.versions.get(version)!.key, body.subarray(0, NONCE));
  d.setAuthTag(body.subarray(body.length - TAG));
  try {
    return Buffer.concat([d.update(body.subarray(NONCE, body.length - TAG)), d.final()]);
  } catch {
    throw new Error('cipher: message authentication failed');
  }
}

function encryptVersion(k: TransitKey, requested: unknown): number {
  const v = requested === undefined || requested === 0 ? k.latestVersion : Number(requested);
  if (!Number.isInteger(v) || v > k.latestVersion) throw new Error('invalid key version');
  if (k.minEncryptionVersion > 0 && v < k.minEncryptionVersion) {
    throw new Error('cannot encrypt with a key version below the min_encryption_version');
  }
  return v;
}

/** encrypt / decrypt / rewrap, single item or batch_input, with Vault's status rules: the status and the `data`. */
export function batchOp(op: 'encrypt' | 'decrypt' | 'rewrap', k: TransitKey, input: Record<string, unknown>): { status: number; data: unknown } {
  const batch = input.batch_input;
  if (batch !== undefined && !Array.isArray(batch)) throw new HttpError(400, ['failed to parse batch input']);
  const items: Record<string, unknown>[] = Array.isArray(batch) ? (batch as Record<string, unknown>[]) : [input];
  if (items.length === 0) throw new HttpError(400, ['missing batch input to process']);
  const results: Record<string, unknown>[] = items.map((item) => {
    const out: Record<string, unknown> = {};
    if (item.reference !== undefined) out.reference = item.reference;
    try {
      if (op === 'encrypt') {
        const pt = b64decodeStrict(item.plaintext ?? '');
        if (!pt) throw new Error('failed to base64-decode plaintext');
        const v = encryptVersion(k, item.key_version ?? input.key_version);
        out.ciphertext = encrypt(k, pt, v);
        out.key_version = v;
      } else {
        if (typeof item.ciphertext !== 'string' || item.ciphertext === '') throw new Error(`missing ciphertext to ${op}`);
        const pt = decrypt(k, item.ciphertext);
        if (op === 'decrypt') out.plaintext = pt.toString('base64');
        else {
          const v = encryptVersion(k, item.key_version ?? input.key_version);
          out.ciphertext = encrypt(k, pt, v);
          out.key_version = v;
        }
      }
    } catch (e) {
      out.error = (e as Error).message;
    }
    return out;
  });
  if (!Array.isArray(batch)) {
    const r = results[0]!;
    if (r.error) throw new HttpError(400, [String(r.error)]);
    return { status: 200, data: r };
  }
  const failed = results.filter((r) => r.error).length;
  const partialCode = Number(input.partial_failure_response_code ?? 0);
  const data = { batch_results: results };
  if (failed === 0) return { status: 200, data };
  return { status: failed < results.length && partialCode > 0 ? partialCode : 400, data };
}
