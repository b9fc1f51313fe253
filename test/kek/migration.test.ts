// Backend migration through the keyring: values written under `local` stay
// readable once `vault` is the primary with `local` kept readable; rewrap moves
// them to Vault (local unwrap + Transit encrypt); then local can go. The same
// for vault -> aws_kms. The envelope stays cmek:v1: throughout.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseEnvelope } from '../../src/crypto/envelope.js';
import { CMEKDecryptionError } from '../../src/crypto/errors.js';
import { createAwsKmsBackend } from '../../src/crypto/kek/aws-kms.js';
import { generateKekFile, LocalKekBackend } from '../../src/crypto/kek/local.js';
import { createVaultBackend, type VaultBackend } from '../../src/crypto/kek/vault.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { FakeKms } from './fake-kms.js';
import { FakeVault } from './fake-vault.js';
import { captureLog, FAST_RETRY, kmsConfig, NO_REUSE, rejection, REUSE, transitRules, vaultConfig } from './helpers.js';

let dir: string;
let vault: FakeVault;
let vb: VaultBackend;
const closers: (() => Promise<void>)[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgcmek-mig-'));
  vault = await new FakeVault().start();
  vault.createKey('pgcmek');
  const token = vault.createToken({ rules: transitRules() });
  vb = await createVaultBackend(vaultConfig({ addr: vault.url, token }), { retry: FAST_RETRY, log: captureLog().logger, refreshSeconds: 0 });
  await vb.init();
  closers.push(() => vb.close(), () => vault.stop());
});

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
  vi.unstubAllEnvs();
});

describe('migration local -> vault via the keyring', () => {
  it('vault primary + local readable reads old values; rewrap moves them; then local can be dropped', async () => {
    const path = join(dir, 'kek.bin');
    generateKekFile(path);
    const local = new LocalKekBackend({ path, previous: [] });
    await local.init();
    const before = new Keyring({ primary: local, readable: [local], dek: REUSE });
    const plain = Array.from({ length: 30 }, (_, i) => `card ${i}`);
    const old = await Promise.all(plain.map((p) => before.encrypt(p)));
    expect(before.describe(old[0]!).backend).toBe('local');

    // Step 1: vault becomes primary; local stays readable.
    const during = new Keyring({ primary: vb, readable: [vb, local], dek: NO_REUSE });
    expect(await Promise.all(old.map((v) => during.decrypt(v)))).toEqual(plain);
    const fresh = await during.encrypt('new value');
    expect(during.describe(fresh)).toEqual({ backend: 'vault', kekId: '1', primary: true });
    expect(old.every((v) => during.needsRotation(v))).toBe(true);

    // Step 2: rewrap. All 30 values share one local DEK: one Transit encrypt.
    const encBefore = vault.count(/^transit\/encrypt\//);
    const moved = await Promise.all(old.map((v) => during.rewrap(v)));
    expect(vault.count(/^transit\/encrypt\//) - encBefore).toBe(1);
    for (const [i, v] of moved.entries()) {
      expect(v.startsWith('cmek:v1:')).toBe(true);
      expect(during.describe(v)).toEqual({ backend: 'vault', kekId: '1', primary: true });
      expect(parseEnvelope(v).token).toBe(parseEnvelope(old[i]!).token);
      expect(during.needsRotation(v)).toBe(false);
    }

    // Step 3: local removed from the configuration; everything reads from Vault.
    const after = new Keyring({ primary: vb, readable: [vb], dek: NO_REUSE });
    expect(await Promise.all(moved.map((v) => after.decrypt(v)))).toEqual(plain);
    expect(await after.decrypt(fresh)).toBe('new value');
    // An old value that was missed is a clear error, not garbage.
    const e = await rejection(after.decrypt(old[0]!));
    expect((e as CMEKDecryptionError).reason).toBe('unknown_backend');
  });
});

describe('migration vault -> aws_kms via the keyring', () => {
  it('kms primary + vault readable; rewrap unwraps with Transit and wraps with KMS Encrypt', async () => {
    const kms = await new FakeKms().start();
    closers.push(() => kms.stop());
    kms.credentials.set('AKIAMIGRATE', 'migrate-secret');
    const key = kms.createKey({ alias: 'alias/pgcmek' });
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIAMIGRATE');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'migrate-secret');
    const kb = await createAwsKmsBackend(kmsConfig({ keyId: 'alias/pgcmek', region: 'us-east-1', endpoint: kms.url }), { retry: FAST_RETRY, log: captureLog().logger });
    await kb.init();
    closers.push(() => kb.close());

    const onVault = new Keyring({ primary: vb, readable: [vb], dek: NO_REUSE });
    const old = await Promise.all(['x', 'y'].map((s) => onVault.encrypt(s)));
    const k = new Keyring({ primary: kb, readable: [kb, vb], dek: NO_REUSE });
    expect(await Promise.all(old.map((v) => k.decrypt(v)))).toEqual(['x', 'y']);
    const moved = await Promise.all(old.map((v) => k.rewrap(v)));
    expect(kms.count('Encrypt')).toBe(2);
    expect(k.describe(moved[0]!)).toEqual({ backend: 'aws_kms', kekId: key.arn, primary: true });
    const kmsOnly = new Keyring({ primary: kb, readable: [kb], dek: NO_REUSE });
    expect(await Promise.all(moved.map((v) => kmsOnly.decrypt(v)))).toEqual(['x', 'y']);
  });
});
