import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CMEKDecryptionError, KekConfigError } from '../../src/crypto/errors.js';
import { generateKekFile, kekIdOf, LocalKekBackend, openDek, readKekFile, sealDek } from '../../src/crypto/kek/local.js';
import { BackendTag } from '../../src/crypto/kek/types.js';

const dir = mkdtempSync(join(tmpdir(), 'pgcmek-kek-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function kekFile(bytes: Buffer = randomBytes(32), mode = 0o600): string {
  const p = join(dir, `kek-${n++}`);
  writeFileSync(p, bytes, { mode });
  chmodSync(p, mode);
  return p;
}

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KekConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a KekConfigError');
}

describe('KEK files', () => {
  it('reads a 32-byte file with mode 600 or 400', () => {
    const k = randomBytes(32);
    expect(readKekFile(kekFile(k)).equals(k)).toBe(true);
    expect(readKekFile(kekFile(k, 0o400)).equals(k)).toBe(true);
  });

  it('follows a symlink (Kubernetes secret mounts) and checks the target', () => {
    const target = kekFile();
    const link = join(dir, `link-${n++}`);
    symlinkSync(target, link);
    expect(readKekFile(link)).toHaveLength(32);
    chmodSync(target, 0o644);
    expect(configError(() => readKekFile(link))).toContain('chmod 600');
  });

  it('refuses a missing file and says how to create one', () => {
    const p = join(dir, 'nope');
    const m = configError(() => readKekFile(p));
    expect(m).toContain(p);
    expect(m).toContain(`pgcmek keygen --out ${p}`);
  });

  it.each([0o644, 0o640, 0o604, 0o660, 0o601])('refuses mode %s and says chmod 600', (mode) => {
    const p = kekFile(randomBytes(32), mode);
    const m = configError(() => readKekFile(p));
    expect(m).toContain(p);
    expect(m).toContain(`mode ${mode.toString(8)}`);
    expect(m).toContain(`chmod 600 ${p}`);
  });

  it('refuses a file owned by another user', () => {
    const p = kekFile();
    chownSync(p, 12345, 12345);
    const m = configError(() => readKekFile(p));
    expect(m).toContain(p);
    expect(m).toContain('uid 12345');
    expect(m).toContain(`chown ${process.getuid!()} ${p}`);
  });

  it.each([0, 16, 31, 33, 44, 64])('refuses a %i-byte file', (size) => {
    const p = kekFile(randomBytes(size));
    const m = configError(() => readKekFile(p));
    expect(m).toContain(p);
    expect(m).toContain(`${size} bytes`);
    expect(m).toContain('exactly 32 raw bytes');
  });

  it('refuses a directory', () => {
    const p = join(dir, `d-${n++}`);
    mkdirSync(p, { mode: 0o700 });
    expect(configError(() => readKekFile(p))).toContain('not a regular file');
  });
});

describe('generateKekFile', () => {
  it('writes 32 random bytes with mode 600 and returns the KEK id', () => {
    const p = join(dir, `gen-${n++}`);
    const { kekId } = generateKekFile(p);
    const st = statSync(p);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBe(32);
    expect(kekId).toBe(kekIdOf(readFileSync(p)).toString('hex'));
    expect(readKekFile(p)).toHaveLength(32);
  });

  it('never overwrites an existing file', () => {
    const p = kekFile();
    const before = readFileSync(p);
    const m = configError(() => generateKekFile(p));
    expect(m).toContain('already exists');
    expect(readFileSync(p).equals(before)).toBe(true);
  });

  it('reports a missing directory', () => {
    expect(configError(() => generateKekFile(join(dir, 'no-such-dir', 'k')))).toContain('directory');
  });
});

describe('local backend', () => {
  it('derives the KEK id as HMAC-SHA256(KEK, "cmek-kek-id")[0..8]', () => {
    const id = kekIdOf(Buffer.alloc(32));
    expect(id).toHaveLength(8);
    // Independent value: python3 -c "import hmac,hashlib;print(hmac.new(bytes(32),b'cmek-kek-id',hashlib.sha256).hexdigest()[:16])"
    expect(id.toString('hex')).toBe('d63c1d517b1771e6');
  });

  it('wraps with AES-256-GCM: 48 bytes, 12-byte nonce, header bound as AAD', () => {
    const kek = randomBytes(32);
    const id = kekIdOf(kek);
    const dek = randomBytes(32);
    const w = sealDek(kek, id, dek, randomBytes(12));
    expect(w.wrapped).toHaveLength(48);
    expect(openDek(kek, w).equals(dek)).toBe(true);
    const otherId = Buffer.from(id);
    otherId[0]! ^= 1;
    expect(() => openDek(kek, { ...w, kekId: otherId })).toThrow(CMEKDecryptionError);
    const nonce = Buffer.from(w.nonce);
    nonce[0]! ^= 1;
    expect(() => openDek(kek, { ...w, nonce })).toThrow(/unwrap_failed/);
    for (let i = 0; i < 48; i++) {
      const wrapped = Buffer.from(w.wrapped);
      wrapped[i]! ^= 0x80;
      expect(() => openDek(kek, { ...w, wrapped })).toThrow(/unwrap_failed/);
    }
    expect(() => openDek(kek, { ...w, wrapped: w.wrapped.subarray(0, 47) })).toThrow(/truncated/);
    expect(() => openDek(kek, { ...w, nonce: w.nonce.subarray(0, 11) })).toThrow(/bad_format/);
  });

  it('loads primary and previous files; wraps under the primary; reads all', async () => {
    const [a, b] = [randomBytes(32), randomBytes(32)];
    const backend = new LocalKekBackend({ path: kekFile(b), previous: [kekFile(a)] });
    await backend.init();
    expect(backend.primaryKekId().equals(kekIdOf(b))).toBe(true);
    expect(backend.hasKek(kekIdOf(a))).toBe(true);
    expect(backend.kekIds().map((k) => k.primary)).toEqual([true, false]);
    const old = sealDek(a, kekIdOf(a), randomBytes(32), randomBytes(12));
    const dek = await backend.unwrap(old);
    const re = await backend.rewrap(old);
    expect(re.kekId.equals(kekIdOf(b))).toBe(true);
    expect((await backend.unwrap(re)).equals(dek)).toBe(true);
    const g = await backend.generateDek();
    expect(backend.unwrapSync(g.wrapped).equals(g.dek)).toBe(true);
    expect(g.wrapped.tag).toBe(BackendTag.local);
  });

  it('init fails on any bad file, naming it', async () => {
    const bad = kekFile(randomBytes(32), 0o644);
    await expect(new LocalKekBackend({ path: kekFile(), previous: [bad] }).init()).rejects.toThrow(bad);
    await expect(new LocalKekBackend({ previous: [] }).init()).rejects.toThrow(/VIGILO_CMEK_LOCAL_KEK_PATH/);
  });

  it('unknown KEK: names the id, never the key', async () => {
    const [a, b] = [randomBytes(32), randomBytes(32)];
    const backend = LocalKekBackend.fromKeys([b]);
    const w = sealDek(a, kekIdOf(a), randomBytes(32), randomBytes(12));
    try {
      backend.unwrapSync(w);
      throw new Error('unwrapped under the wrong KEK');
    } catch (e) {
      expect(e).toBeInstanceOf(CMEKDecryptionError);
      const err = e as CMEKDecryptionError;
      expect(err.reason).toBe('unknown_kek');
      expect(err.kekId).toBe(kekIdOf(a).toString('hex'));
      expect(err.message).toContain(kekIdOf(a).toString('hex'));
      for (const k of [a, b]) for (const enc of ['hex', 'base64', 'base64url'] as const) {
        expect(err.message).not.toContain(k.toString(enc).slice(0, 12));
      }
    }
  });

  it('close() zeroes the KEKs', async () => {
    const k = randomBytes(32);
    const backend = LocalKekBackend.fromKeys([k]);
    const g = backend.generateDekSync();
    await backend.close();
    expect(() => backend.unwrapSync(g.wrapped)).toThrow(/unknown_kek/);
    expect(() => backend.primaryKekId()).toThrow(/before init/);
  });
});
