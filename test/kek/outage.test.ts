// A Vault / KMS outage with the DEK cache on: values whose DEK is cached keep
// reading; writes go on while the current DEK is within max_age/max_uses, then
// fail with a clear error; values whose DEK is not cached fail as
// backend_unavailable. Both backends, through the keyring.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DekPolicy } from '../../src/config/types.js';
import { CMEKDecryptionError } from '../../src/crypto/errors.js';
import { createAwsKmsBackend } from '../../src/crypto/kek/aws-kms.js';
import { RemoteKekError } from '../../src/crypto/kek/retry.js';
import type { KekBackend } from '../../src/crypto/kek/types.js';
import { createVaultBackend } from '../../src/crypto/kek/vault.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { FakeKms } from './fake-kms.js';
import { FakeVault } from './fake-vault.js';
import { captureLog, FAST_RETRY, kmsConfig, rejection, transitRules, vaultConfig } from './helpers.js';

const POLICY: DekPolicy = { maxAgeSeconds: 60, maxUses: 5, cacheSize: 100, cacheTtlSeconds: 120 };

interface Rig {
  backend: KekBackend;
  cut(): void;
  restore(): void;
  remoteCalls(): number;
  setting: string;
  close(): Promise<void>;
}

async function vaultRig(): Promise<Rig> {
  const vault = await new FakeVault().start();
  vault.createKey('pgcmek');
  const token = vault.createToken({ rules: transitRules() });
  const backend = await createVaultBackend(vaultConfig({ addr: vault.url, token }), { retry: FAST_RETRY, log: captureLog().logger, refreshSeconds: 0 });
  await backend.init();
  return {
    backend,
    cut: () => vault.cutNetwork(),
    restore: () => vault.restoreNetwork(),
    remoteCalls: () => vault.requests.length,
    setting: 'VIGILO_CMEK_VAULT_ADDR',
    close: async () => {
      await backend.close();
      await vault.stop();
    },
  };
}

async function kmsRig(): Promise<Rig> {
  const kms = await new FakeKms().start();
  kms.credentials.set('AKIAOUTAGE', 'outage-secret');
  kms.createKey({ alias: 'alias/pgcmek' });
  vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIAOUTAGE');
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'outage-secret');
  const backend = await createAwsKmsBackend(kmsConfig({ keyId: 'alias/pgcmek', region: 'us-east-1', endpoint: kms.url }), { retry: FAST_RETRY, log: captureLog().logger });
  await backend.init();
  return {
    backend,
    cut: () => kms.cutNetwork(),
    restore: () => kms.restoreNetwork(),
    remoteCalls: () => kms.requests.length,
    setting: 'kek.aws_kms.endpoint',
    close: async () => {
      await backend.close();
      await kms.stop();
      vi.unstubAllEnvs();
    },
  };
}

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

describe.each([
  ['vault', vaultRig],
  ['aws_kms', kmsRig],
])('%s outage with the DEK cache on', (_name, makeRig) => {
  it('cached DEKs keep reads going; writes continue until the DEK is used up, then fail clearly', async () => {
    rig = await makeRig();
    let now = 1_000_000;
    const clock = () => now;
    const k = new Keyring({ primary: rig.backend, readable: [rig.backend], dek: POLICY, clock });
    const written = [await k.encrypt('w1'), await k.encrypt('w2'), await k.encrypt('w3')]; // one DEK, 3 uses
    // Values of other DEKs: one read before the outage (cached), one never read.
    const other = new Keyring({ primary: rig.backend, readable: [rig.backend], dek: POLICY });
    const readBefore = await other.encrypt('read before');
    const neverRead = await new Keyring({ primary: rig.backend, readable: [rig.backend], dek: POLICY }).encrypt('never read');
    expect(await k.decrypt(readBefore)).toBe('read before');

    rig.cut();
    const calls = rig.remoteCalls();
    expect(await Promise.all([...written, readBefore].map((v) => k.decrypt(v)))).toEqual(['w1', 'w2', 'w3', 'read before']);
    expect(rig.remoteCalls()).toBe(calls); // served from the cache

    const e = await rejection(k.decrypt(neverRead));
    expect(e).toBeInstanceOf(CMEKDecryptionError);
    expect((e as CMEKDecryptionError).reason).toBe('backend_unavailable');
    expect(e.message).toContain(rig.setting);

    // Uses 4 and 5 of the current DEK need no remote call.
    expect(await k.decrypt(await k.encrypt('w4'))).toBe('w4');
    await k.encrypt('w5');
    const w = await rejection(k.encrypt('w6'));
    expect(w).toBeInstanceOf(RemoteKekError);
    expect((w as RemoteKekError).kind).toBe('network');
    expect(w.message).toContain(rig.setting);

    // Past the cache TTL a cached DEK is gone too.
    now += POLICY.cacheTtlSeconds * 1000;
    expect(((await rejection(k.decrypt(written[0]!))) as CMEKDecryptionError).reason).toBe('backend_unavailable');

    rig.restore();
    expect(await k.decrypt(await k.encrypt('w7'))).toBe('w7');
    expect(await k.decrypt(neverRead)).toBe('never read');
  });

  it('max_age: an old DEK is not used past its age even when the backend is down', async () => {
    rig = await makeRig();
    let now = 5_000_000;
    const k = new Keyring({ primary: rig.backend, readable: [rig.backend], dek: { ...POLICY, maxUses: 1000 }, clock: () => now });
    await k.encrypt('a');
    rig.cut();
    await k.encrypt('b');
    now += POLICY.maxAgeSeconds * 1000;
    expect(await rejection(k.encrypt('c'))).toBeInstanceOf(RemoteKekError);
  });
});
