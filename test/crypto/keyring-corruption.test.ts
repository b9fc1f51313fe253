// A failed decryption is a CMEKDecryptionError, never garbage: every altered,
// truncated or foreign value is refused, and errors carry no secrets.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeUnpadded } from '../../src/crypto/base64url.js';
import { formatEnvelope, parseEnvelope, PREFIX } from '../../src/crypto/envelope.js';
import { CMEKDecryptionError, type DecryptionFailureReason } from '../../src/crypto/errors.js';
import { kekIdOf, LocalKekBackend } from '../../src/crypto/kek/local.js';
import { BackendTag } from '../../src/crypto/kek/types.js';
import { Keyring } from '../../src/crypto/keyring.js';

const policy = { maxAgeSeconds: 300, maxUses: 1000, cacheSize: 100, cacheTtlSeconds: 0 };
const ringOf = (...keks: Buffer[]) => new Keyring({ primary: LocalKekBackend.fromKeys(keks), readable: [], dek: policy });
const PLAINTEXT = 'forty bytes of card data 4111111111111';
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

async function reasonOf(p: Promise<unknown>): Promise<DecryptionFailureReason> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CMEKDecryptionError);
    return (e as CMEKDecryptionError).reason;
  }
  throw new Error('decrypted a value that should have been refused');
}

/** Several different replacements for one byte: a neighbour in the alphabet, bit flips, non-ASCII, separators. */
function mutations(b: number): number[] {
  const c = String.fromCharCode(b);
  const i = B64.indexOf(c);
  const out = new Set([b ^ 0x01, b ^ 0x20, b ^ 0x80, b ^ 0xff, 0x7c /* | */, 0x3d /* = */]);
  if (i >= 0) out.add(B64.charCodeAt((i + 1) % 64));
  out.delete(b);
  return [...out];
}

describe('corruption', () => {
  it('every mutation of every byte is refused (or, in the prefix, is no envelope at all)', async () => {
    const keyring = ringOf(randomBytes(32));
    const value = Buffer.from(await keyring.encrypt(PLAINTEXT), 'latin1');
    let checked = 0;
    for (let i = 0; i < value.length; i++) {
      for (const m of mutations(value[i]!)) {
        const bad = Buffer.from(value);
        bad[i] = m;
        if (i < PREFIX.length) {
          // Without the prefix the value is legacy plaintext by definition: it comes back unchanged.
          expect((await keyring.decryptBytes(bad)).equals(bad), `prefix position ${i}`).toBe(true);
          continue;
        }
        let out: Buffer | undefined;
        try {
          out = await keyring.decryptBytes(bad);
        } catch (e) {
          expect(e, `position ${i} -> ${m}`).toBeInstanceOf(CMEKDecryptionError);
          checked++;
          continue;
        }
        throw new Error(`position ${i} byte ${m}: decrypted to ${out.length} bytes instead of failing`);
      }
    }
    expect(checked).toBeGreaterThan(value.length * 5);
    // The intact value still decrypts: nothing above poisoned the DEK cache.
    expect((await keyring.decryptBytes(value)).toString()).toBe(PLAINTEXT);
  });

  it('the same holds through the sync path and with a cold cache', async () => {
    const kek = randomBytes(32);
    const value = Buffer.from(await ringOf(kek).encrypt(PLAINTEXT), 'latin1');
    const cold = new Keyring({ primary: LocalKekBackend.fromKeys([kek]), readable: [], dek: { ...policy, cacheSize: 0 } });
    for (let i = PREFIX.length; i < value.length; i++) {
      const bad = Buffer.from(value);
      bad[i] = bad[i]! ^ 0x01;
      expect(() => cold.tryDecryptSync(bad), `position ${i}`).toThrow(CMEKDecryptionError);
    }
    expect(cold.stats().cache.size).toBe(0);
  });

  it('every truncation is refused', async () => {
    const keyring = ringOf(randomBytes(32));
    const value = await keyring.encrypt(PLAINTEXT);
    for (let n = PREFIX.length; n < value.length; n++) {
      await expect(keyring.decrypt(value.slice(0, n)), `length ${n}`).rejects.toBeInstanceOf(CMEKDecryptionError);
    }
    // Values that end before the prefix is complete are not envelopes.
    expect(await keyring.decrypt(value.slice(0, PREFIX.length - 1))).toBe(value.slice(0, PREFIX.length - 1));
  });

  it('bad base64 in each part', async () => {
    const keyring = ringOf(randomBytes(32));
    const value = await keyring.encrypt('x'); // a 73-byte token: ends in "=="
    const [head, nonce, token] = value.slice(PREFIX.length).split('|') as [string, string, string];
    expect(token.endsWith('==')).toBe(true);
    expect(await reasonOf(keyring.decrypt(`${PREFIX}${head}!|${nonce}|${token}`))).toBe('bad_base64');
    expect(await reasonOf(keyring.decrypt(`${PREFIX}${head}|${nonce}=|${token}`))).toBe('bad_base64');
    expect(await reasonOf(keyring.decrypt(`${PREFIX}${head}|${nonce}|${token.replace(/=+$/, '')}`))).toBe('bad_base64');
    expect(await reasonOf(keyring.decrypt(`${PREFIX}${head}|${nonce}|${token} `))).toBe('bad_base64');
    expect(await reasonOf(keyring.decrypt(`${PREFIX}${head}|${nonce}|${token}|`))).toBe('bad_format');
    expect(await reasonOf(keyring.decrypt(`${PREFIX}${head}|${nonce}|`))).toBe('bad_token');
  });

  it('a token swapped in from another DEK fails its MAC', async () => {
    const keyring = new Keyring({ primary: LocalKekBackend.fromKeys([randomBytes(32)]), readable: [], dek: { ...policy, maxAgeSeconds: 0 } });
    const a = await keyring.encrypt('value a');
    const b = await keyring.encrypt('value b');
    const spliced = a.slice(0, a.lastIndexOf('|') + 1) + b.slice(b.lastIndexOf('|') + 1);
    expect(await reasonOf(keyring.decrypt(spliced))).toBe('bad_mac');
  });

  it('KEK mismatch: unknown_kek naming the KEK id, with no key bytes or plaintext in the message', async () => {
    const [a, b] = [randomBytes(32), randomBytes(32)];
    const value = await ringOf(a).encrypt(PLAINTEXT);
    const keyring = ringOf(b);
    let err: CMEKDecryptionError | undefined;
    try {
      await keyring.decrypt(value);
    } catch (e) {
      err = e as CMEKDecryptionError;
    }
    expect(err).toBeInstanceOf(CMEKDecryptionError);
    expect(err!.name).toBe('CMEKDecryptionError');
    expect(err!.reason).toBe('unknown_kek');
    const id = kekIdOf(a).toString('hex');
    expect(err!.kekId).toBe(id);
    expect(err!.message).toContain(id);
    expect(err!.message).toContain('unknown_kek');
    const text = `${err!.message} ${err!.stack ?? ''} ${JSON.stringify(err)}`;
    for (const k of [a, b]) {
      for (const enc of ['hex', 'base64', 'base64url'] as const) expect(text).not.toContain(k.toString(enc).slice(0, 10));
    }
    expect(text).not.toContain(PLAINTEXT);
    expect(text).not.toContain(value.slice(PREFIX.length, PREFIX.length + 20));
    // The same answer synchronously.
    expect(() => keyring.tryDecryptSync(Buffer.from(value))).toThrow(/unknown_kek/);
  });

  it('a same-id KEK that is not the right key: unwrap_failed', async () => {
    const value = await ringOf(randomBytes(32)).encrypt(PLAINTEXT);
    const { wrapped, token } = parseEnvelope(value);
    const other = randomBytes(32);
    // Re-label the wrapped DEK with the other KEK's id: the GCM tag (AAD = header) no longer verifies.
    const forged = formatEnvelope({ ...wrapped, kekId: kekIdOf(other) }, token);
    expect(await reasonOf(ringOf(other).decrypt(forged))).toBe('unwrap_failed');
  });

  it('a value from a backend this keyring lacks: unknown_backend', async () => {
    const forged = formatEnvelope(
      { tag: BackendTag.vault, kekId: Buffer.from('3'), nonce: Buffer.alloc(0), wrapped: randomBytes(60) },
      'gAAAAA==',
    );
    const keyring = ringOf(randomBytes(32));
    let err: CMEKDecryptionError | undefined;
    await keyring.decrypt(forged).catch((e: CMEKDecryptionError) => (err = e));
    expect(err?.reason).toBe('unknown_backend');
    expect(err?.message).toContain('vault');
    expect(err?.kekId).toBe('3');
    expect(await reasonOf(keyring.decrypt(`${PREFIX}${encodeUnpadded(Buffer.from([7, 1, 1, 1]))}||gAAAAA==`))).toBe('unknown_backend');
  });
});
