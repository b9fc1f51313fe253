// The vault backend end to end: real HTTP client against the in-process Transit
// server. Wrap/unwrap, batching, rotation + rewrap, min_decryption_version.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CMEKDecryptionError } from '../../src/crypto/errors.js';
import { parseEnvelope } from '../../src/crypto/envelope.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { BackendTag } from '../../src/crypto/kek/types.js';
import { createVaultBackend, type VaultBackend } from '../../src/crypto/kek/vault.js';
import { parseTransitCiphertext } from '../../src/crypto/kek/vault-ciphertext.js';
import { FakeVault } from './fake-vault.js';
import { captureLog, FAST_RETRY, NO_REUSE, rejection, REUSE, transitRules, vaultConfig } from './helpers.js';

/** Changes one base64 character of a Transit ciphertext (still well-formed, no longer authentic). */
function tamper(wrapped: Buffer): void {
  const i = 20;
  wrapped[i] = wrapped[i] === 0x41 ? 0x42 : 0x41;
}

let vault: FakeVault;
let token: string;
let backend: VaultBackend;

async function open(o: { refreshSeconds?: number } = {}): Promise<VaultBackend> {
  const b = await createVaultBackend(vaultConfig({ addr: vault.url, token }), {
    retry: FAST_RETRY,
    log: captureLog().logger,
    refreshSeconds: o.refreshSeconds ?? 0,
  });
  await b.init();
  return b;
}

beforeEach(async () => {
  vault = await new FakeVault().start();
  vault.createKey('pgcmek');
  token = vault.createToken({ rules: transitRules() });
  backend = await open();
});

afterEach(async () => {
  await backend.close();
  await vault.stop();
});

describe('vault backend: wrap and unwrap', () => {
  it('generates a DEK with datakey and unwraps it with decrypt', async () => {
    const { dek, wrapped } = await backend.generateDek();
    expect(dek.length).toBe(32);
    expect(wrapped.tag).toBe(BackendTag.vault);
    expect(wrapped.kekId.toString()).toBe('1');
    expect(wrapped.nonce.length).toBe(0);
    // the Transit ciphertext as Vault returned it: nonce 12 + DEK 32 + GCM tag 16, base64
    expect(wrapped.wrapped.toString('latin1')).toMatch(/^vault:v1:[A-Za-z0-9+/]{80}$/);
    const back = await backend.unwrap(wrapped);
    expect(back.equals(dek)).toBe(true);
    expect(vault.count(/^transit\/datakey\/plaintext\/pgcmek$/)).toBe(1);
    expect(vault.count(/^transit\/decrypt\/pgcmek$/)).toBe(1);
  });

  it('wraps an existing DEK with encrypt', async () => {
    const dek = Buffer.alloc(32, 7);
    const w = await backend.wrap(dek);
    expect(w.kekId.toString()).toBe('1');
    expect((await backend.unwrap(w)).equals(dek)).toBe(true);
    expect(vault.count(/^transit\/encrypt\/pgcmek$/)).toBe(1);
  });

  it('sends the token header, never the token in the URL', async () => {
    await backend.generateDek();
    for (const r of vault.requests) expect(r.path).not.toContain(token);
  });

  it('an altered wrapped DEK fails as unwrap_failed (GCM), not garbage', async () => {
    const { wrapped } = await backend.generateDek();
    tamper(wrapped.wrapped);
    const e = await rejection(backend.unwrap(wrapped));
    expect(e).toBeInstanceOf(CMEKDecryptionError);
    expect((e as CMEKDecryptionError).reason).toBe('unwrap_failed');
    expect(e.message).toContain('message authentication failed');
  });

  it('batches concurrent unwraps into one batch_input request', async () => {
    const gens = await Promise.all(Array.from({ length: 40 }, () => backend.generateDek()));
    const before = vault.count(/^transit\/decrypt\//);
    const out = await Promise.all(gens.map((g) => backend.unwrap(g.wrapped)));
    out.forEach((d, i) => expect(d.equals(gens[i]!.dek)).toBe(true));
    const decrypts = vault.requests.filter((r) => r.path === 'transit/decrypt/pgcmek').slice(before);
    expect(decrypts.length).toBe(1);
    expect(decrypts[0]!.batchSize).toBe(40);
    expect(backend.metrics().batchedItems.decrypt).toBe(40);
  });

  it('a batch with one bad item fails that item only (Vault answers 400 with batch_results)', async () => {
    const gens = await Promise.all(Array.from({ length: 5 }, () => backend.generateDek()));
    tamper(gens[2]!.wrapped.wrapped);
    const settled = await Promise.allSettled(gens.map((g) => backend.unwrap(g.wrapped)));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const bad = (settled[2] as PromiseRejectedResult).reason as CMEKDecryptionError;
    expect(bad.reason).toBe('unwrap_failed');
    expect(vault.requests.filter((r) => r.path === 'transit/decrypt/pgcmek').at(-1)!.status).toBe(400);
  });

  it('splits batches at batchMax', async () => {
    await backend.close();
    backend = await createVaultBackend(vaultConfig({ addr: vault.url, token }), { retry: FAST_RETRY, log: captureLog().logger, refreshSeconds: 0, batchMax: 8 });
    await backend.init();
    const gens = await Promise.all(Array.from({ length: 20 }, () => backend.generateDek()));
    const before = vault.count(/^transit\/decrypt\//);
    await Promise.all(gens.map((g) => backend.unwrap(g.wrapped)));
    const sizes = vault.requests.filter((r) => r.path === 'transit/decrypt/pgcmek').slice(before).map((r) => r.batchSize ?? 1);
    expect(sizes).toEqual([8, 8, 4]);
  });

  it('encrypts and decrypts through the keyring', async () => {
    const k = new Keyring({ primary: backend, readable: [backend], dek: REUSE });
    const values = await Promise.all(Array.from({ length: 50 }, (_, i) => k.encrypt(`secret ${i}`)));
    for (const v of values) expect(v.startsWith('cmek:v1:')).toBe(true);
    expect(await Promise.all(values.map((v) => k.decrypt(v)))).toEqual(values.map((_, i) => `secret ${i}`));
    // one DEK for all 50 (reuse), seeded in the read cache: one remote call in all
    expect(vault.count(/^transit\/datakey\//)).toBe(1);
    expect(vault.count(/^transit\/decrypt\//)).toBe(0);
    expect(k.describe(values[0]!)).toEqual({ backend: 'vault', kekId: '1', primary: true });
  });

  it('parses only Transit ciphertexts', () => {
    expect(parseTransitCiphertext('vault:v12:AAAA')).toEqual({ version: 12, text: 'vault:v12:AAAA' });
    expect(parseTransitCiphertext('vault:v0:AAAA')).toBeUndefined();
    expect(parseTransitCiphertext('vault:v1:AA==extra')).toBeUndefined();
    expect(parseTransitCiphertext('other:v1:AAAA')).toBeUndefined();
  });

  it('a wrapped DEK whose ciphertext version is not its KEK id is refused before any call', async () => {
    const { wrapped } = await backend.generateDek();
    const calls = vault.requests.length;
    const e = await rejection(backend.unwrap({ ...wrapped, kekId: Buffer.from('2') }));
    expect((e as CMEKDecryptionError).reason).toBe('bad_format');
    const e2 = await rejection(backend.unwrap({ ...wrapped, wrapped: Buffer.from('garbage') }));
    expect((e2 as CMEKDecryptionError).reason).toBe('bad_format');
    expect(vault.requests.length).toBe(calls);
  });
});

describe('vault backend: rotation', () => {
  it('rotate then keyring.rewrap uses Transit rewrap (the DEK never leaves Vault)', async () => {
    const k = new Keyring({ primary: backend, readable: [backend], dek: NO_REUSE });
    const old = await Promise.all(['a', 'b', 'c'].map((s) => k.encrypt(s)));
    expect(k.describe(old[0]!).kekId).toBe('1');

    expect(await backend.rotateKek()).toBe(2);
    expect(backend.primaryKekId().toString()).toBe('2');
    expect(k.needsRotation(old[0]!)).toBe(true);

    const decryptsBefore = vault.count(/^transit\/decrypt\//);
    const rewrapped = await Promise.all(old.map((v) => k.rewrap(v)));
    expect(vault.count(/^transit\/decrypt\//)).toBe(decryptsBefore); // no plaintext DEK fetched
    expect(vault.count(/^transit\/rewrap\/pgcmek$/)).toBe(1); // three items, one batch
    for (const [i, v] of rewrapped.entries()) {
      expect(k.describe(v)).toEqual({ backend: 'vault', kekId: '2', primary: true });
      // the Fernet token is kept byte for byte
      expect(parseEnvelope(v).token).toBe(parseEnvelope(old[i]!).token);
      expect(await k.decrypt(v)).toBe(['a', 'b', 'c'][i]);
    }
    // old values still read until min_decryption_version moves
    expect(await k.decrypt(old[1]!)).toBe('b');
  });

  it('follows a rotation done elsewhere (operator or another instance)', async () => {
    const w1 = (await backend.generateDek()).wrapped;
    vault.rotateKey(vault.key('pgcmek'));
    const g = await backend.generateDek();
    expect(g.wrapped.kekId.toString()).toBe('2');
    expect(backend.primaryKekId().toString()).toBe('2');
    expect(backend.hasKek(w1.kekId)).toBe(true);
  });

  it('accepts a newer version than it read (another instance rotated) and lets Vault judge', async () => {
    const other = await open();
    vault.rotateKey(vault.key('pgcmek'));
    const g = await other.generateDek(); // v2, written by "another instance"
    await other.close();
    expect(backend.primaryKekId().toString()).toBe('1');
    expect(backend.hasKek(g.wrapped.kekId)).toBe(true);
    expect((await backend.unwrap(g.wrapped)).equals(g.dek)).toBe(true);
    expect(backend.hasKek(Buffer.from('0'))).toBe(false);
    expect(backend.hasKek(Buffer.from('x1'))).toBe(false);
  });

  it('min_decryption_version: older versions are refused (Vault 400 -> unknown_kek) and hasKek follows after refresh', async () => {
    const k = new Keyring({ primary: backend, readable: [backend], dek: NO_REUSE });
    const v1 = await k.encrypt('old');
    await backend.rotateKek();
    const v2 = await k.encrypt('new');
    const key = vault.key('pgcmek');
    key.minDecryptionVersion = 2;

    // The backend has not re-read the key: Vault itself refuses v1.
    const e = await rejection(backend.unwrap(parseEnvelope(v1).wrapped));
    expect((e as CMEKDecryptionError).reason).toBe('unknown_kek');
    expect(e.message).toContain('disallowed by policy (too old)');

    await backend.refresh();
    expect(backend.hasKek(Buffer.from('1'))).toBe(false);
    expect(backend.hasKek(Buffer.from('2'))).toBe(true);
    const e2 = await rejection(k.decrypt(v1));
    expect((e2 as CMEKDecryptionError).reason).toBe('unknown_kek');
    expect(await k.decrypt(v2)).toBe('new');
    // rewrap of a too-old value cannot work either
    const e3 = await rejection(backend.rewrap(parseEnvelope(v1).wrapped));
    expect((e3 as CMEKDecryptionError).reason).toBe('unknown_kek');
  });

  it('re-reads the key on a timer', async () => {
    await backend.close();
    backend = await open({ refreshSeconds: 0.05 });
    vault.rotateKey(vault.key('pgcmek'));
    await new Promise((r) => setTimeout(r, 200));
    expect(backend.primaryKekId().toString()).toBe('2');
  });
});
