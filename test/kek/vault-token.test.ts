// Token lifetime: lookup-self at init, renew-self before the TTL runs out,
// warnings (never the token) when it cannot be renewed.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createVaultBackend, type VaultBackend } from '../../src/crypto/kek/vault.js';
import { FakeVault } from './fake-vault.js';
import { captureLog, FAST_RETRY, sleep, transitRules, vaultConfig } from './helpers.js';

let vault: FakeVault;
let backend: VaultBackend | undefined;
let logs: string[];

async function open(token: string): Promise<VaultBackend> {
  const cap = captureLog();
  logs = cap.lines;
  backend = await createVaultBackend(vaultConfig({ addr: vault.url, token }), {
    retry: FAST_RETRY,
    log: cap.logger,
    refreshSeconds: 0,
    renewMinDelayMs: 50,
  });
  await backend.init();
  return backend;
}

beforeEach(async () => {
  vault = await new FakeVault().start();
  vault.createKey('pgcmek');
});

afterEach(async () => {
  await backend?.close();
  backend = undefined;
  await vault.stop();
});

describe('vault token renewal', () => {
  it('looks the token up at init and renews it before its TTL runs out', async () => {
    const token = vault.createToken({ rules: transitRules(), ttl: 2 });
    const b = await open(token);
    expect(vault.count(/^auth\/token\/lookup-self$/)).toBe(1);
    await sleep(3000); // past the original expiry
    expect(vault.token(token).renewals).toBeGreaterThanOrEqual(1);
    const g = await b.generateDek();
    expect((await b.unwrap(g.wrapped)).equals(g.dek)).toBe(true);
    expect(b.tokenStatus().renewals).toBeGreaterThanOrEqual(1);
    expect(b.metrics().calls['renew-self']).toBeGreaterThanOrEqual(1);
    for (const l of logs) expect(l).not.toContain(token);
  });

  it('a token that never expires (root) is not renewed', async () => {
    await open(vault.rootToken);
    await sleep(200);
    expect(vault.count(/renew-self/)).toBe(0);
  });

  it('a non-renewable token with a TTL is a warning naming VIGILO_CMEK_VAULT_TOKEN', async () => {
    const token = vault.createToken({ rules: transitRules(), ttl: 3600, renewable: false });
    await open(token);
    const warn = logs.find((l) => l.includes('not renewable'));
    expect(warn).toBeDefined();
    expect(warn).toContain('VIGILO_CMEK_VAULT_TOKEN');
    expect(vault.count(/renew-self/)).toBe(0);
    for (const l of logs) expect(l).not.toContain(token);
  });

  it('a failed renewal is logged (without the token) and retried', async () => {
    const token = vault.createToken({ rules: transitRules(), ttl: 2 });
    vault.failNext(4, 503, ['Vault is sealed'], /renew-self/); // one whole retry round fails
    const b = await open(token);
    // The retry round takes ~2 s; on a loaded CI machine allow more before judging.
    // Vault counts the renewal when it answers; the backend clears lastError once it has read that answer.
    for (let t = Date.now(); (vault.token(token).renewals < 1 || b.tokenStatus().lastError !== undefined) && Date.now() - t < 15_000; ) await sleep(100);
    expect(vault.token(token).renewals).toBeGreaterThanOrEqual(1);
    expect(logs.some((l) => l.includes('renewing the Vault token failed'))).toBe(true);
    for (const l of logs) expect(l).not.toContain(token);
    expect(b.tokenStatus().lastError).toBeUndefined();
  });

  it('warns when the token reaches its max TTL', async () => {
    const token = vault.createToken({ rules: transitRules(), ttl: 2, explicitMaxTtl: 2 });
    await open(token);
    await sleep(1200);
    expect(logs.some((l) => l.includes('max TTL'))).toBe(true);
    for (const l of logs) expect(l).not.toContain(token);
  });
});
