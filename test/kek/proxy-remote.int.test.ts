// The remote KEK backends behind the real proxy and real Postgres: values
// written through pgcmek are wrapped by (fake) Vault / KMS, read back through
// it, and survive a KEK outage as far as the DEK cache allows.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config, DekPolicy, KekConfig } from '../../src/config/types.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { createProxyDeps } from '../../src/encryption/deps.js';
import { createLogger } from '../../src/log.js';
import { startProxy, type ProxyServer } from '../../src/proxy/server.js';
import { createTestDatabase, type TestDb } from '../helpers/db.js';
import { table } from '../helpers/encrypted-proxy.js';
import { retarget, testProxyConfig } from '../helpers/proxy.js';
import { FakeKms } from './fake-kms.js';
import { FakeVault } from './fake-vault.js';
import { transitRules } from './helpers.js';

// Small reuse bound so the outage test reaches "no usable DEK" quickly.
const DEK: DekPolicy = { maxAgeSeconds: 300, maxUses: 4, cacheSize: 1000, cacheTtlSeconds: 3600 };

interface Running {
  keyring: Keyring;
  server: ProxyServer;
  client: pg.Client;
  close(): Promise<void>;
}

async function startWith(db: TestDb, kek: KekConfig): Promise<Running> {
  const config: Config = testProxyConfig({ encrypted: [table('secrets', ['secret'])], kek });
  const logger = createLogger('silent');
  const keyring = await Keyring.fromConfig(config.kek);
  const { deps } = await createProxyDeps(config, logger, keyring);
  const server = await startProxy(config, { logger, keyring, ...deps });
  const client = new pg.Client(retarget(db.url, server.host, server.port));
  client.on('error', () => {});
  await client.connect();
  return {
    keyring,
    server,
    client,
    close: async () => {
      await client.end().catch(() => {});
      await server.close(1000);
      await keyring.close();
    },
  };
}

describe('proxy with the vault KEK backend', () => {
  let db: TestDb;
  let vault: FakeVault;
  let run: Running;

  beforeAll(async () => {
    db = await createTestDatabase('kekv');
    await db.client.query('CREATE TABLE secrets (id serial PRIMARY KEY, name text, secret text)');
    vault = await new FakeVault().start();
    vault.createKey('pgcmek');
    const token = vault.createToken({ rules: transitRules() });
    run = await startWith(db, { backend: 'vault', local: { previous: [] }, vault: { addr: vault.url, token, keyName: 'pgcmek', mount: 'transit' }, dek: DEK });
  });
  afterAll(async () => {
    await run?.close();
    await vault?.stop();
    await db?.drop();
  });

  it('writes values wrapped by Vault and reads them back', async () => {
    await run.client.query('INSERT INTO secrets (name, secret) VALUES ($1, $2), ($3, $4)', ['a', 'alpha', 'b', 'beta']);
    const stored = await db.client.query(`SELECT secret FROM secrets WHERE name = 'a'`);
    expect(stored.rows[0].secret.startsWith('cmek:v1:')).toBe(true);
    expect(run.keyring.describe(stored.rows[0].secret)).toEqual({ backend: 'vault', kekId: '1', primary: true });
    const via = await run.client.query(`SELECT name, secret FROM secrets ORDER BY name`);
    expect(via.rows).toEqual([
      { name: 'a', secret: 'alpha' },
      { name: 'b', secret: 'beta' },
    ]);
    expect(vault.count(/^transit\/datakey\//)).toBeGreaterThanOrEqual(1);
  });

  it('a Vault outage: cached DEKs keep reads going; writes fail with a clear error once the DEK is used up', async () => {
    vault.cutNetwork();
    try {
      const via = await run.client.query(`SELECT secret FROM secrets WHERE name = 'a'`);
      expect(via.rows[0].secret).toBe('alpha');
      // Two uses of the current DEK are left (maxUses 4); then a new DEK is needed.
      let failure: Error | undefined;
      for (let i = 0; i < 4 && !failure; i++) {
        failure = await run.client.query('INSERT INTO secrets (name, secret) VALUES ($1, $2)', [`o${i}`, `outage ${i}`]).then(
          () => undefined,
          (e: Error) => e,
        );
      }
      expect(failure).toBeDefined();
      expect(failure!.message).toContain('cannot reach Vault');
      expect(failure!.message).toContain('VIGILO_CMEK_VAULT_ADDR');
      expect(failure!.message).not.toContain(vault.rootToken);
      const stored = await db.client.query(`SELECT count(*)::int AS n FROM secrets WHERE name LIKE 'o%'`);
      expect(stored.rows[0].n).toBe(2);
    } finally {
      vault.restoreNetwork();
    }
    // Vault back: a new session writes and reads again.
    const fresh = new pg.Client(retarget(db.url, run.server.host, run.server.port));
    await fresh.connect();
    try {
      await fresh.query('INSERT INTO secrets (name, secret) VALUES ($1, $2)', ['after', 'back']);
      const r = await fresh.query(`SELECT secret FROM secrets WHERE name IN ('after', 'o0') ORDER BY name`);
      expect(r.rows.map((x: { secret: string }) => x.secret)).toEqual(['back', 'outage 0']);
    } finally {
      await fresh.end();
    }
  });
});

describe('proxy with the aws_kms KEK backend', () => {
  let db: TestDb;
  let kms: FakeKms;
  let run: Running;

  beforeAll(async () => {
    db = await createTestDatabase('kekk');
    await db.client.query('CREATE TABLE secrets (id serial PRIMARY KEY, name text, secret text)');
    kms = await new FakeKms().start();
    kms.credentials.set('AKIAPROXYTEST', 'proxy-test-secret');
    kms.createKey({ alias: 'alias/pgcmek' });
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIAPROXYTEST');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'proxy-test-secret');
    run = await startWith(db, { backend: 'aws_kms', local: { previous: [] }, awsKms: { keyId: 'alias/pgcmek', region: 'us-east-1', endpoint: kms.url }, dek: DEK });
  });
  afterAll(async () => {
    await run?.close();
    await kms?.stop();
    await db?.drop();
    vi.unstubAllEnvs();
  });

  it('writes values wrapped by KMS and reads them back', async () => {
    await run.client.query('INSERT INTO secrets (name, secret) VALUES ($1, $2)', ['k', 'kappa']);
    const stored = await db.client.query(`SELECT secret FROM secrets WHERE name = 'k'`);
    expect(run.keyring.describe(stored.rows[0].secret).backend).toBe('aws_kms');
    const via = await run.client.query(`SELECT secret FROM secrets WHERE name = 'k'`);
    expect(via.rows[0].secret).toBe('kappa');
    expect(kms.count('GenerateDataKey')).toBeGreaterThanOrEqual(1);
  });
});
