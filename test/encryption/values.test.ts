import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Keyring } from '../../src/crypto/keyring.js';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import { CMEKDecryptionError } from '../../src/crypto/errors.js';
import { ValueCodec } from '../../src/encryption/values.js';

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

  it('never serves a tampered envelope from the cache: the key is the whole value, MAC included', async () => {
    const codec = new ValueCodec(keyring, { size: 100, ttlMs: 0 });
    const env = Buffer.from(await keyring.encrypt('tok_x'));
    codec.decrypt(env, policy, 'text', false);
    const bad = Buffer.from(env);
    bad[bad.length - 3] = bad[bad.length - 3] === 0x41 ? 0x42 : 0x41;
    expect(() => codec.decrypt(bad, policy, 'text', false)).toThrow(CMEKDecryptionError);
  });
});
