// The `local` KEK backend: 32-byte KEK files on disk. The primary file wraps
// new DEKs; `previous` files stay readable so a KEK rotation never stops reads.
//   kek id  = HMAC-SHA256(KEK, "cmek-kek-id")[0..8]
//   wrapped = AES-256-GCM(KEK, nonce 12, aad = tag|id_len|id, DEK) = ciphertext 32 | GCM tag 16
// Everything is synchronous underneath, so the proxy never awaits on this path.
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { wrappedDekHeader } from '../envelope.js';
import { CMEKDecryptionError, KekConfigError } from '../errors.js';
import { randomPublic, randomSecret } from '../random.js';
import { BackendTag, type KekBackend, type WrappedDek } from './types.js';

export const KEK_BYTES = 32;
const NONCE_BYTES = 12;
const GCM_TAG_BYTES = 16;
const WRAPPED_BYTES = 32 + GCM_TAG_BYTES;

export function kekIdOf(kek: Buffer): Buffer {
  return createHmac('sha256', kek).update('cmek-kek-id').digest().subarray(0, 8);
}

/** Deterministic wrap (the nonce is given): the backend draws a fresh nonce; test vectors fix it. */
export function sealDek(kek: Buffer, kekId: Buffer, dek: Buffer, nonce: Buffer): WrappedDek {
  const c = createCipheriv('aes-256-gcm', kek, nonce, { authTagLength: GCM_TAG_BYTES });
  c.setAAD(wrappedDekHeader(BackendTag.local, kekId));
  const ct = c.update(dek);
  c.final();
  return { tag: BackendTag.local, kekId: Buffer.from(kekId), nonce, wrapped: Buffer.concat([ct, c.getAuthTag()]) };
}

export function openDek(kek: Buffer, w: WrappedDek): Buffer {
  if (w.nonce.length !== NONCE_BYTES) {
    throw new CMEKDecryptionError('bad_format', { detail: `local nonce must be ${NONCE_BYTES} bytes` });
  }
  if (w.wrapped.length !== WRAPPED_BYTES) {
    const reason = w.wrapped.length < WRAPPED_BYTES ? 'truncated' : 'bad_format';
    throw new CMEKDecryptionError(reason, { detail: `local wrapped DEK must be ${WRAPPED_BYTES} bytes` });
  }
  const d = createDecipheriv('aes-256-gcm', kek, w.nonce, { authTagLength: GCM_TAG_BYTES });
  d.setAAD(wrappedDekHeader(BackendTag.local, w.kekId));
  d.setAuthTag(w.wrapped.subarray(32));
  const dek = d.update(w.wrapped.subarray(0, 32));
  try {
    d.final();
  } catch {
    dek.fill(0);
    throw new CMEKDecryptionError('unwrap_failed', {
      backend: 'local',
      kekId: w.kekId.toString('hex'),
      detail: 'AES-GCM authentication of the wrapped DEK failed',
    });
  }
  return dek;
}

function errCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Reads a KEK file, refusing anything an operator must fix first: missing,
 * not a regular file, readable by group/others, owned by another user, or not
 * exactly 32 raw bytes. Checks run on the opened descriptor (no stat/open race).
 */
export function readKekFile(path: string): Buffer {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO placed at the path must not hang startup.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if (errCode(e) === 'ENOENT') {
      throw new KekConfigError(`local KEK file ${path} does not exist: create one with \`pgcmek keygen --out ${path}\``);
    }
    if (errCode(e) === 'EACCES') {
      throw new KekConfigError(`local KEK file ${path} is not readable by this user: fix its owner (\`chown\`) and run \`chmod 600 ${path}\``);
    }
    throw new KekConfigError(`local KEK file ${path} cannot be opened (${errCode(e) ?? String(e)})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new KekConfigError(`local KEK file ${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
      throw new KekConfigError(`local KEK file ${path} has mode ${mode}; group/other must have no access: run \`chmod 600 ${path}\``);
    }
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new KekConfigError(`local KEK file ${path} is owned by uid ${st.uid}, not by the user running pgcmek (uid ${uid}): run \`chown ${uid} ${path}\``);
    }
    if (st.size !== KEK_BYTES) {
      throw new KekConfigError(`local KEK file ${path} is ${st.size} bytes; a KEK is exactly ${KEK_BYTES} raw bytes (not hex or base64): create one with \`pgcmek keygen --out NEW_PATH\``);
    }
    const kek = Buffer.alloc(KEK_BYTES);
    const n = readSync(fd, kek, 0, KEK_BYTES, 0);
    if (n !== KEK_BYTES) throw new KekConfigError(`local KEK file ${path} changed while being read; retry`);
    return kek;
  } finally {
    closeSync(fd);
  }
}

/** `pgcmek keygen --out PATH`: 32 random bytes, mode 600, never overwriting. Returns the new KEK's id. */
export function generateKekFile(path: string): { path: string; kekId: string } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (e) {
    if (errCode(e) === 'EEXIST') {
      throw new KekConfigError(`${path} already exists; keygen never overwrites a KEK: remove it or choose another --out path`);
    }
    throw new KekConfigError(`cannot create KEK file ${path} (${errCode(e) ?? String(e)}): check that its directory exists and is writable`);
  }
  const kek = randomSecret(KEK_BYTES);
  let written = false;
  try {
    fchmodSync(fd, 0o600); // the umask may only have removed bits; make the mode exactly 600
    if (writeSync(fd, kek, 0, KEK_BYTES, 0) !== KEK_BYTES) throw new KekConfigError(`short write to ${path}`);
    fsyncSync(fd);
    written = true;
    return { path, kekId: kekIdOf(kek).toString('hex') };
  } finally {
    closeSync(fd);
    kek.fill(0);
    if (!written) rmSync(path, { force: true }); // never leave a partial KEK behind
  }
}

interface LoadedKek {
  id: Buffer;
  key: Buffer;
  /** Where it came from, for messages (a path, never bytes). */
  source: string;
}

export interface LocalKekFiles {
  /** Primary KEK file: wraps new DEKs. */
  path?: string;
  /** Older KEK files, readable only. */
  previous: string[];
}

export class LocalKekBackend implements KekBackend {
  readonly name = 'local' as const;
  readonly tag = BackendTag.local;
  private readonly keks = new Map<string, LoadedKek>();
  private primary?: LoadedKek;

  constructor(private readonly files: LocalKekFiles) {}

  /** From raw KEKs (tests, benchmarks); the first is primary. Ready without init(). */
  static fromKeys(keys: Buffer[]): LocalKekBackend {
    const b = new LocalKekBackend({ previous: [] });
    keys.forEach((k, i) => b.add(Buffer.from(k), `key #${i}`));
    return b;
  }

  async init(): Promise<void> {
    if (this.primary) return;
    const paths = [...(this.files.path ? [this.files.path] : []), ...this.files.previous];
    if (paths.length === 0) {
      throw new KekConfigError('the local KEK backend has no KEK file: set VIGILO_CMEK_LOCAL_KEK_PATH (create one with `pgcmek keygen --out PATH`)');
    }
    for (const p of paths) this.add(readKekFile(p), p);
  }

  private add(key: Buffer, source: string): void {
    if (key.length !== KEK_BYTES) throw new KekConfigError(`${source}: a KEK is ${KEK_BYTES} bytes`);
    const id = kekIdOf(key);
    const hex = id.toString('hex');
    if (this.keks.has(hex)) {
      key.fill(0); // the same KEK listed twice (e.g. primary also in previous): harmless
      return;
    }
    const k = { id, key, source };
    this.keks.set(hex, k);
    this.primary ??= k;
  }

  private ready(): LoadedKek {
    if (!this.primary) throw new Error('local KEK backend used before init()');
    return this.primary;
  }

  primaryKekId(): Buffer {
    return this.ready().id;
  }

  hasKek(kekId: Buffer): boolean {
    return this.keks.has(kekId.toString('hex'));
  }

  /** Ids and file paths of the loaded KEKs (safe to print). */
  kekIds(): { id: string; source: string; primary: boolean }[] {
    return [...this.keks.values()].map((k) => ({ id: k.id.toString('hex'), source: k.source, primary: k === this.primary }));
  }

  generateDekSync(): { dek: Buffer; wrapped: WrappedDek } {
    const dek = randomSecret(32);
    return { dek, wrapped: this.wrapSync(dek) };
  }

  async generateDek(): Promise<{ dek: Buffer; wrapped: WrappedDek }> {
    return this.generateDekSync();
  }

  wrapSync(dek: Buffer): WrappedDek {
    const p = this.ready();
    return sealDek(p.key, p.id, dek, randomPublic(NONCE_BYTES));
  }

  async wrap(dek: Buffer): Promise<WrappedDek> {
    return this.wrapSync(dek);
  }

  unwrapSync(w: WrappedDek): Buffer {
    if (w.tag !== this.tag) throw new CMEKDecryptionError('unknown_backend', { detail: 'not a local-backend DEK' });
    const k = this.keks.get(w.kekId.toString('hex'));
    if (!k) {
      throw new CMEKDecryptionError('unknown_kek', {
        backend: 'local',
        kekId: w.kekId.toString('hex'),
        detail: 'no configured local KEK file has this id; add the KEK that wrote it to kek.local.previous',
      });
    }
    return openDek(k.key, w);
  }

  async unwrap(w: WrappedDek): Promise<Buffer> {
    return this.unwrapSync(w);
  }

  async rewrap(w: WrappedDek): Promise<WrappedDek> {
    const dek = this.unwrapSync(w);
    try {
      return this.wrapSync(dek);
    } finally {
      dek.fill(0);
    }
  }

  async close(): Promise<void> {
    for (const k of this.keks.values()) k.key.fill(0);
    this.keks.clear();
    this.primary = undefined;
  }
}
