// The remote backends as the proxy builds them: Keyring.fromConfig through the
// registry, from a KekConfig like the loader produces.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { KekConfigError } from '../../src/crypto/errors.js';
import { generateKekFile, LocalKekBackend } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { FakeKms } from './fake-kms.js';
import { FakeVault } from './fake-vault.js';
import { kmsConfig, NO_REUSE, REUSE, transitRules, vaultConfig } from './helpers.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgcmek-reg-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
  vi.unstubAllEnvs();
});

describe('Keyring.fromConfig with remote backends', () => {
  it('vault primary with a local KEK kept readable (the migration configuration)', async () => {
    const vault = await new FakeVault().start();
    vault.createKey('pgcmek');
    const token = vault.createToken({ rules: transitRules() });
    const path = join(dir, 'kek.bin');
    generateKekFile(path);
    const local = new LocalKekBackend({ path, previous: [] });
    await local.init();
    const old = await new Keyring({ primary: local, readable: [local], dek: NO_REUSE }).encrypt('legacy');

    const k = await Keyring.fromConfig(vaultConfig({ addr: vault.url, token }, { localPath: path, dek: REUSE }));
    try {
      expect(k.primaryLabel()).toBe('vault:1');
      expect(await k.decrypt(old)).toBe('legacy');
      const v = await k.encrypt('new');
      expect(k.describe(v).backend).toBe('vault');
      expect(k.describe(await k.rewrap(old)).backend).toBe('vault');
    } finally {
      await k.close();
      await vault.stop();
    }
  });

  it('aws_kms primary', async () => {
    const kms = await new FakeKms().start();
    kms.credentials.set('AKIAREG', 'reg-secret');
    const key = kms.createKey({ alias: 'alias/pgcmek' });
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIAREG');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'reg-secret');
    const k = await Keyring.fromConfig(kmsConfig({ keyId: 'alias/pgcmek', region: 'us-east-1', endpoint: kms.url }));
    try {
      expect(k.primaryLabel()).toBe(`aws_kms:${key.arn}`);
      expect(await k.decrypt(await k.encrypt('kms'))).toBe('kms');
    } finally {
      await k.close();
      await kms.stop();
    }
  });

  it('an unreachable Vault refuses the start with a KekConfigError naming VIGILO_CMEK_VAULT_ADDR', async () => {
    const vault = await new FakeVault().start();
    const url = vault.url;
    await vault.stop();
    const e = await Keyring.fromConfig(vaultConfig({ addr: url, token: 't' })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(KekConfigError);
    expect((e as Error).message).toContain('VIGILO_CMEK_VAULT_ADDR');
  });
});
