// Every way the vault backend can be misconfigured or cut off, and what the
// operator is told: each message names the setting to check and none ever
// carries the token (messages, causes, stacks and log lines are all scanned).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CMEKDecryptionError, KekConfigError } from '../../src/crypto/errors.js';
import { RemoteKekError } from '../../src/crypto/kek/retry.js';
import { createVaultBackend, type VaultBackend, type VaultBackendOptions } from '../../src/crypto/kek/vault.js';
import { FakeVault } from './fake-vault.js';
import { captureLog, errorText, FAST_RETRY, rejection, transitRules, vaultConfig } from './helpers.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');

let vault: FakeVault;
let token: string;
let logs: string[];
const opened: VaultBackend[] = [];
/** Every error seen in a test, checked for the token at the end. */
const seen: unknown[] = [];

async function make(cfg: Parameters<typeof vaultConfig>[0], o: Partial<VaultBackendOptions> = {}): Promise<VaultBackend> {
  const cap = captureLog();
  logs = cap.lines;
  const b = await createVaultBackend(vaultConfig(cfg), { retry: FAST_RETRY, log: cap.logger, refreshSeconds: 0, ...o });
  opened.push(b);
  return b;
}

async function initError(cfg: Parameters<typeof vaultConfig>[0]): Promise<Error> {
  const b = await make(cfg);
  const e = await rejection(b.init());
  seen.push(e);
  expect(e).toBeInstanceOf(KekConfigError);
  return e;
}

beforeEach(async () => {
  vault = await new FakeVault().start();
  vault.createKey('pgcmek');
  token = vault.createToken({ rules: transitRules() });
  logs = [];
  seen.length = 0;
});

afterEach(async () => {
  for (const e of seen) expect(errorText(e)).not.toContain(token);
  for (const l of logs) expect(l).not.toContain(token);
  await Promise.all(opened.splice(0).map((b) => b.close()));
  await vault.stop();
});

describe('vault backend: configuration refused before any call', () => {
  it.each([
    [{ addr: '' }, 'VIGILO_CMEK_VAULT_ADDR'],
    [{ addr: 'vault.internal:8200' }, 'VIGILO_CMEK_VAULT_ADDR'],
    [{ addr: 'ftp://vault' }, 'VIGILO_CMEK_VAULT_ADDR'],
    [{ addr: 'http://127.0.0.1:1' }, 'VIGILO_CMEK_VAULT_TOKEN'],
    [{ addr: 'http://127.0.0.1:1', token: 't', keyName: '' }, 'VIGILO_CMEK_VAULT_KEY_NAME'],
    [{ addr: 'http://127.0.0.1:1', token: 't', keyName: 'bad/name' }, 'VIGILO_CMEK_VAULT_KEY_NAME'],
    [{ addr: 'http://127.0.0.1:1', token: 't', caFile: '/nonexistent/ca.pem' }, 'kek.vault.ca_file'],
  ])('%o -> names %s', async (cfg, setting) => {
    const e = await rejection(createVaultBackend(vaultConfig(cfg), { log: captureLog().logger }));
    expect(e).toBeInstanceOf(KekConfigError);
    expect(e.message).toContain(setting);
  });

  it('no kek.vault section at all', async () => {
    const e = await rejection(createVaultBackend({ backend: 'vault', local: { previous: [] }, dek: { maxAgeSeconds: 0, maxUses: 1, cacheSize: 0, cacheTtlSeconds: 0 } }));
    expect(e.message).toMatch(/VIGILO_CMEK_VAULT_ADDR.*VIGILO_CMEK_VAULT_TOKEN.*VIGILO_CMEK_VAULT_KEY_NAME/);
  });
});

describe('vault backend: init() fails fast with the setting to check', () => {
  it('a bad or expired token (403 on lookup-self) names VIGILO_CMEK_VAULT_TOKEN', async () => {
    const e = await initError({ addr: vault.url, token: 'hvs.not-a-token' });
    expect(e.message).toContain('VIGILO_CMEK_VAULT_TOKEN');
    expect(e.message).toContain('403');
    expect(errorText(e)).not.toContain('hvs.not-a-token');
  });

  it('an expired token', async () => {
    const t = vault.createToken({ rules: transitRules(), ttl: 1 });
    vault.token(t).expiresAt = Date.now() - 1;
    const e = await initError({ addr: vault.url, token: t });
    expect(e.message).toContain('VIGILO_CMEK_VAULT_TOKEN');
    expect(errorText(e)).not.toContain(t);
  });

  it('an unknown key names VIGILO_CMEK_VAULT_KEY_NAME', async () => {
    const t = vault.createToken({ rules: transitRules('nokey') });
    const e = await initError({ addr: vault.url, token: t, keyName: 'nokey' });
    expect(e.message).toContain('VIGILO_CMEK_VAULT_KEY_NAME');
    expect(e.message).toContain('"nokey"');
  });

  it('a policy without read on the key names the token setting and the path', async () => {
    const t = vault.createToken({ rules: transitRules().filter((r) => r.path !== 'transit/keys/pgcmek') });
    const e = await initError({ addr: vault.url, token: t });
    expect(e.message).toContain('VIGILO_CMEK_VAULT_TOKEN');
    expect(e.message).toContain('["read"] on path "transit/keys/pgcmek"');
  });

  it('a policy without decrypt names the path the policy needs', async () => {
    const t = vault.createToken({ rules: transitRules().filter((r) => !r.path.includes('decrypt')) });
    const e = await initError({ addr: vault.url, token: t });
    expect(e.message).toContain('VIGILO_CMEK_VAULT_TOKEN');
    expect(e.message).toContain('"update" on "transit/decrypt/pgcmek"');
  });

  it('the primary needs datakey; a readable-only vault backend does not', async () => {
    const rules = transitRules().filter((r) => !r.path.includes('datakey'));
    const t = vault.createToken({ rules });
    const e = await initError({ addr: vault.url, token: t });
    expect(e.message).toContain('"update" on "transit/datakey/plaintext/pgcmek"');

    const cap = captureLog();
    const readable = await createVaultBackend(vaultConfig({ addr: vault.url, token: t }, { backend: 'local' }), { log: cap.logger, refreshSeconds: 0 });
    opened.push(readable);
    await readable.init();
  });

  it('missing rewrap/encrypt only warns (needed for rotation and migration)', async () => {
    const t = vault.createToken({ rules: transitRules().filter((r) => !/rewrap|encrypt\//.test(r.path)) });
    const b = await make({ addr: vault.url, token: t });
    await b.init();
    expect(logs.join('\n')).toContain('transit/rewrap/pgcmek');
    expect(logs.join('\n')).toContain('transit/encrypt/pgcmek');
  });

  it('a sealed Vault (503 + sys/health) says sealed and names VIGILO_CMEK_VAULT_ADDR', async () => {
    vault.sealed = true;
    const e = await initError({ addr: vault.url, token });
    expect(e.message).toContain('sealed');
    expect(e.message).toContain('VIGILO_CMEK_VAULT_ADDR');
    expect(vault.count(/^sys\/health$/)).toBeGreaterThanOrEqual(1);
  });

  it('a network failure (nothing listening) names VIGILO_CMEK_VAULT_ADDR', async () => {
    const srv = http.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    await new Promise((r) => srv.close(r));
    const e = await initError({ addr: `http://127.0.0.1:${port}`, token });
    expect(e.message).toContain('ECONNREFUSED');
    expect(e.message).toContain('VIGILO_CMEK_VAULT_ADDR');
    expect(e.message).toContain('after 4 attempts');
  });

  it('a host name that does not resolve names VIGILO_CMEK_VAULT_ADDR', async () => {
    const e = await initError({ addr: 'http://vault.invalid:8200', token });
    expect(e.message).toContain('VIGILO_CMEK_VAULT_ADDR');
  });

  it('a Vault that does not answer in time names VIGILO_CMEK_VAULT_ADDR', async () => {
    vault.latencyMs = 500;
    const b = await make({ addr: vault.url, token }, { timeoutMs: 50, retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 } });
    const e = await rejection(b.init());
    seen.push(e);
    expect(e.message).toContain('ETIMEDOUT');
    expect(e.message).toContain('VIGILO_CMEK_VAULT_ADDR');
  });

  it('a wrong mount names kek.vault.mount', async () => {
    const t = vault.createToken({ rules: transitRules('pgcmek', 'kv') });
    const e = await initError({ addr: vault.url, token: t, mount: 'kv' });
    expect(e.message).toContain('kek.vault.mount');
  });
});

describe('vault backend: namespaces (X-Vault-Namespace)', () => {
  beforeEach(() => {
    vault.addNamespace('team-a');
    vault.enableTransit('transit', 'team-a');
    vault.createKey('pgcmek', { namespace: 'team-a' });
  });

  it('sends the namespace header and works inside it', async () => {
    const t = vault.createToken({ rules: transitRules(), namespace: 'team-a' });
    const b = await make({ addr: vault.url, token: t, namespace: 'team-a' });
    await b.init();
    const g = await b.generateDek();
    expect((await b.unwrap(g.wrapped)).equals(g.dek)).toBe(true);
    const transit = vault.requests.filter((r) => r.path.startsWith('transit/'));
    expect(transit.length).toBeGreaterThan(0);
    for (const r of transit) expect(r.namespace).toBe('team-a');
  });

  it('a token of another namespace is refused, and the message names the namespace setting', async () => {
    vault.addNamespace('team-b');
    const t = vault.createToken({ rules: transitRules(), namespace: 'team-b' });
    const e = await initError({ addr: vault.url, token: t, namespace: 'team-a' });
    expect(e.message).toContain('VIGILO_CMEK_VAULT_TOKEN');
    expect(e.message).toContain('kek.vault.namespace');
  });

  it('a key that lives in another namespace is not found: names the key and namespace settings', async () => {
    vault.addNamespace('team-b');
    vault.enableTransit('transit', 'team-b');
    const e = await initError({ addr: vault.url, token: vault.rootToken, namespace: 'team-b' });
    expect(e.message).toContain('VIGILO_CMEK_VAULT_KEY_NAME');
    expect(e.message).toContain('kek.vault.namespace');
    expect(errorText(e)).not.toContain(vault.rootToken);
  });
});

describe('vault backend: TLS (kek.vault.ca_file)', () => {
  let tlsVault: FakeVault;
  beforeEach(async () => {
    tlsVault = await new FakeVault({
      tls: { cert: readFileSync(join(FIXTURES, 'server.pem')), key: readFileSync(join(FIXTURES, 'server.key')) },
    }).start();
    tlsVault.createKey('pgcmek');
  });
  afterEach(() => tlsVault.stop());

  it('without the CA the handshake fails and the message names kek.vault.ca_file', async () => {
    const e = await initError({ addr: tlsVault.url, token: tlsVault.rootToken });
    expect(e.message).toContain('kek.vault.ca_file');
    expect(e.message).toMatch(/TLS/);
  });

  it('with the CA it works over https', async () => {
    const b = await make({ addr: tlsVault.url, token: tlsVault.rootToken, caFile: join(FIXTURES, 'ca.pem') });
    await b.init();
    const g = await b.generateDek();
    expect((await b.unwrap(g.wrapped)).equals(g.dek)).toBe(true);
  });

  it('a host name that is not in the certificate is a TLS error too', async () => {
    const url = tlsVault.url.replace('127.0.0.1', 'localhost');
    const ok = await make({ addr: url, token: tlsVault.rootToken, caFile: join(FIXTURES, 'ca.pem') });
    await ok.init(); // localhost is in the certificate
    const e = await rejection(
      (async () => {
        const b = await make({ addr: tlsVault.url.replace('127.0.0.1', '127.0.0.2'), token: tlsVault.rootToken, caFile: join(FIXTURES, 'ca.pem') });
        await b.init();
      })(),
    );
    seen.push(e);
    expect(e.message).toMatch(/kek\.vault\.ca_file|VIGILO_CMEK_VAULT_ADDR/);
  });
});

describe('vault backend: failures after startup', () => {
  let b: VaultBackend;
  beforeEach(async () => {
    b = await make({ addr: vault.url, token });
    await b.init();
  });

  it('a revoked token: unwrap is backend_unavailable naming the token setting and the decrypt path', async () => {
    const { wrapped } = await b.generateDek();
    vault.token(token).expiresAt = Date.now() - 1;
    const e = await rejection(b.unwrap(wrapped));
    seen.push(e);
    expect(e).toBeInstanceOf(CMEKDecryptionError);
    expect((e as CMEKDecryptionError).reason).toBe('backend_unavailable');
    expect(e.message).toContain('VIGILO_CMEK_VAULT_TOKEN');
    expect(e.message).toContain('transit/decrypt/pgcmek');
    const g = await rejection(b.generateDek());
    seen.push(g);
    expect(g).toBeInstanceOf(RemoteKekError);
    expect((g as RemoteKekError).kind).toBe('denied');
    expect(g.message).toContain('transit/datakey/plaintext/pgcmek');
  });

  it('sealed after startup: generate fails saying sealed; unwrap is backend_unavailable', async () => {
    const { wrapped } = await b.generateDek();
    vault.sealed = true;
    const g = await rejection(b.generateDek());
    seen.push(g);
    expect((g as RemoteKekError).kind).toBe('sealed');
    expect(g.message).toContain('sealed');
    expect(g.message).toContain('VIGILO_CMEK_VAULT_ADDR');
    const u = await rejection(b.unwrap(wrapped));
    seen.push(u);
    expect((u as CMEKDecryptionError).reason).toBe('backend_unavailable');
    expect(u.message).toContain('sealed');
    vault.sealed = false;
    expect((await b.unwrap(wrapped)).length).toBe(32);
  });

  it('the key deleted after startup: unwrap says unknown_kek and names VIGILO_CMEK_VAULT_KEY_NAME', async () => {
    const { wrapped } = await b.generateDek();
    (vault as unknown as { keys: Map<string, unknown> }).keys.clear();
    const e = await rejection(b.unwrap(wrapped));
    seen.push(e);
    expect((e as CMEKDecryptionError).reason).toBe('unknown_kek');
    expect(e.message).toContain('VIGILO_CMEK_VAULT_KEY_NAME');
  });

  it('dropped connections are retried with backoff and counted', async () => {
    const { wrapped, dek } = await b.generateDek();
    vault.dropNext(2, /decrypt/);
    expect((await b.unwrap(wrapped)).equals(dek)).toBe(true);
    const m = b.metrics();
    expect(m.retries.decrypt).toBe(2);
    expect(m.calls.decrypt).toBe(3);
    expect(m.failures.network).toBe(2);
    expect(m.errors.decrypt).toBeUndefined();
  });

  it('429 and 5xx are retried; retries are bounded', async () => {
    vault.failNext(1, 429, ['request path "transit/datakey/plaintext/pgcmek": rate limit quota exceeded'], /datakey/);
    vault.failNext(1, 502, [], /datakey/);
    await b.generateDek();
    expect(b.metrics().retries.datakey).toBe(2);

    vault.failNext(100, 500, ['internal error'], /datakey/);
    const e = await rejection(b.generateDek());
    seen.push(e);
    expect(e.message).toContain('after 4 attempts');
    expect(b.metrics().errors.datakey).toBe(1);
  });

  it('a 400 is not retried', async () => {
    const { wrapped } = await b.generateDek();
    wrapped.wrapped[20] = wrapped.wrapped[20] === 0x41 ? 0x42 : 0x41;
    const before = b.metrics().calls.decrypt ?? 0;
    await rejection(b.unwrap(wrapped));
    expect(b.metrics().calls.decrypt).toBe(before + 1);
  });
});
