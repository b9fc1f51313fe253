import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Keyring } from '../../src/crypto/keyring.js';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import { CMEKDecryptionError } from '../../src/crypto/errors.js';
import { ValueCodec, ValueFormatError } from '../../src/encryption/values.js';

const policy = { column: 's', searchable: false, onDecryptError: 'error' as const, encryptEmpty: false };

describe('ValueCodec decrypted-value cache', () => {
  let dir: string;
  let keyring: Keyring;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pgcmek-values-'));
    generateKekFile(join(dir, 'kek'));
    keyring = await Keyring.fromConfig({ backend: 'local', local: { path: join(dir, 'kek'), previous: [] }, dek: { maxAgeSeconds: 300, maxUses: 1000, cacheSize: 10, cacheTtlSeconds: 0 } });
  });
  afterAll(async () => {
    await keyring.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('decrypts a hot value once, then serves it from memory', async () => {
    const codec = new ValueCodec(keyring, { size: 100, ttlMs: 0 });
    const env = Buffer.from(await keyring.encrypt('tok_hot'));
    const spy = vi.spyOn(keyring, 'tryDecryptSync');
    for (let i = 0; i < 5; i++) expect((codec.decrypt(Buffer.from(env), policy, 'text', false) as Buffer).toString()).toBe('tok_hot');
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();
  });

  it('is bounded (oldest out first), expires entries, and is off at size 0', async () => {
    let now = 0;
    const codec = new ValueCodec(keyring, { size: 2, ttlMs: 1000, now: () => now });
    const envs = await Promise.all(['a', 'b', 'c'].map(async (v) => Buffer.from(await keyring.encrypt(v))));
    const spy = vi.spyOn(keyring, 'tryDecryptSync');
    for (const e of envs) codec.decrypt(e, policy, 'text', false); // 3 misses; 'a' evicted
    codec.decrypt(envs[2]!, policy, 'text', false); // hit
    codec.decrypt(envs[0]!, policy, 'text', false); // miss again
    expect(spy).toHaveBeenCalledTimes(4);
    now = 5000;
    codec.decrypt(envs[0]!, policy, 'text', false); // expired: miss
    expect(spy).toHaveBeenCalledTimes(5);
    const off = new ValueCodec(keyring, { size: 0, ttlMs: 0 });
    off.decrypt(envs[1]!, policy, 'text', false);
    off.decrypt(envs[1]!, policy, 'text', false);
    expect(spy).toHaveBeenCalledTimes(7);
    spy.mockRestore();
  });

  it('serves each of many cached values its own plaintext', async () => {
    const codec = new ValueCodec(keyring, { size: 5000, ttlMs: 0 });
    const envs = await Promise.all(Array.from({ length: 2000 }, async (_, i) => Buffer.from(await keyring.encrypt(`v${i}`))));
    for (const e of envs) codec.decrypt(e, policy, 'text', false);
    const spy = vi.spyOn(keyring, 'tryDecryptSync');
    envs.forEach((e, i) => expect((codec.decrypt(Buffer.from(e), policy, 'text', false) as Buffer).toString()).toBe(`v${i}`));
    expect(spy).not.toHaveBeenCalled();
    spy.mockRestore();
  });

  it('the same token behind another wrapped DEK is never answered from the cache (fails as it does uncached)', async () => {
    const codec = new ValueCodec(keyring, { size: 100, ttlMs: 0 });
    const other = await Keyring.fromConfig({ backend: 'local', local: { path: join(dir, 'kek'), previous: [] }, dek: { maxAgeSeconds: 0, maxUses: 1, cacheSize: 10, cacheTtlSeconds: 0 } });
    try {
      const env = await keyring.encrypt('mine');
      const foreign = await other.encrypt('theirs'); // same KEK, a different DEK
      codec.decrypt(Buffer.from(env), policy, 'text', false);
      // The cached value's token (and so its MAC) behind the other value's header.
      const spliced = Buffer.from(foreign.slice(0, foreign.lastIndexOf('|') + 1) + env.slice(env.lastIndexOf('|') + 1), 'latin1');
      expect(() => codec.decrypt(spliced, policy, 'text', false)).toThrow(CMEKDecryptionError);
      // And a value whose MAC text matches the cached one where the lookup reads it, but differs elsewhere.
      const twin = Buffer.from(env, 'latin1');
      twin[twin.length - 40] = twin[twin.length - 40] === 0x41 ? 0x42 : 0x41;
      expect(() => codec.decrypt(twin, policy, 'text', false)).toThrow(CMEKDecryptionError);
      expect((codec.decrypt(Buffer.from(env), policy, 'text', false) as Buffer).toString()).toBe('mine');
    } finally {
      await other.close();
    }
  });

  it('never serves a tampered envelope from the cache: the key is the whole value, MAC included', async () => {
    const codec = new ValueCodec(keyring, { size: 100, ttlMs: 0 });
    const env = Buffer.from(await keyring.encrypt('tok_x'));
    codec.decrypt(env, policy, 'text', false);
    const bad = Buffer.from(env);
    bad[bad.length - 3] = bad[bad.length - 3] === 0x41 ? 0x42 : 0x41;
    expect(() => codec.decrypt(bad, policy, 'text', false)).toThrow(CMEKDecryptionError);
  });

  it('decryptTextAt: a field inside a larger frame is found in place, and only a byte-identical field is a hit', async () => {
    const codec = new ValueCodec(keyring, { size: 100, ttlMs: 0 });
    const env = Buffer.from(await keyring.encrypt('tok_in_frame'));
    const other = Buffer.from(await keyring.encrypt('tok_other'));
    // Bytes around the field (as a DataRow has) must play no part in the lookup.
    const frame = (v: Buffer, pad: number) => Buffer.concat([Buffer.alloc(pad, 0x41), v, Buffer.alloc(7, 0x7a)]);
    const spy = vi.spyOn(keyring, 'tryDecryptSync');
    for (const pad of [0, 3, 17, 3]) {
      const f = frame(env, pad);
      expect((codec.decryptTextAt(f, pad, pad + env.length, policy) as Buffer).toString()).toBe('tok_in_frame');
    }
    expect(spy).toHaveBeenCalledTimes(1);
    const f2 = frame(other, 5);
    expect((codec.decryptTextAt(f2, 5, 5 + other.length, policy) as Buffer).toString()).toBe('tok_other');
    // One byte shorter or longer than the cached field: not the cached value (its MAC fails).
    expect(() => codec.decryptTextAt(frame(env, 4), 4, 4 + env.length - 1, policy)).toThrow(CMEKDecryptionError);
    const tampered = frame(env, 2);
    tampered[2 + 20] ^= 1; // inside the header
    expect(() => codec.decryptTextAt(tampered, 2, 2 + env.length, policy)).toThrow(CMEKDecryptionError);
    // Legacy plaintext: unchanged (undefined), never a cache answer.
    const plain = frame(Buffer.from('not an envelope'), 1);
    expect(codec.decryptTextAt(plain, 1, 16, policy)).toBeUndefined();
    spy.mockRestore();
  });

  it('a document that is not JSON for json_paths, or an unknown jsonb binary version: ValueFormatError without the value', () => {
    const codec = new ValueCodec(keyring);
    const paths = { ...policy, jsonPaths: [['smtp', 'password']] };
    const bad = Buffer.from('{"smtp": {"password": "leak-me", }');
    for (const [shape, binary, v] of [['jsonb', false, bad], ['json', false, bad], ['jsonb', true, Buffer.concat([Buffer.from([1]), bad])], ['jsonb', true, Buffer.concat([Buffer.from([2]), Buffer.from('{}')])]] as const) {
      try {
        codec.encrypt(v, paths, shape, binary);
        throw new Error('expected a ValueFormatError');
      } catch (e) {
        expect(e).toBeInstanceOf(ValueFormatError);
        expect((e as Error).message).not.toContain('leak-me');
      }
    }
    // A well-formed document is encrypted at its path.
    const ok = codec.encrypt(Buffer.from('{"smtp": {"password": "pw"}}'), paths, 'jsonb', false) as Buffer;
    expect(JSON.parse(ok.toString()).smtp.password).toMatch(/^cmek:v1:/);
  });
});
