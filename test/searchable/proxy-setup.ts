// pgcmek with searchable columns in front of the suite's Postgres: the
// encryption layer built directly, so tests can tune the key refresh and the
// activation delay (a rotation in seconds, not minutes) and reach its keys.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config, TablePolicy } from '../../src/config/types.js';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { EncryptionLayer } from '../../src/encryption/layer.js';
import type { SearchableOptions } from '../../src/encryption/searchable-keys.js';
import { createLogger } from '../../src/log.js';
import { startProxy, type ProxyServer } from '../../src/proxy/server.js';
import { createProxyDeps } from '../../src/encryption/deps.js';
import type { SearchableKeys } from '../../src/searchable/keys.js';
import { initSql } from '../../src/sql/index.js';
import { retarget, testProxyConfig, type TestProxy } from '../helpers/proxy.js';

export interface SearchableProxy extends TestProxy {
  keyring: Keyring;
  layer: EncryptionLayer;
  kekPath: string;
  /** The keys this proxy loaded for a database (after a session's first statement). */
  keys(database: string): SearchableKeys;
}

export function newKekFile(): { path: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-skek-'));
  const path = join(dir, 'kek.key');
  generateKekFile(path);
  return { path, dir };
}

export async function startSearchableProxy(opts: {
  encrypted: TablePolicy[];
  kekPath?: string;
  previous?: string[];
  searchable?: SearchableOptions;
  config?: Partial<Config>;
}): Promise<SearchableProxy> {
  await initSql();
  const own = opts.kekPath ? undefined : newKekFile();
  const kekPath = opts.kekPath ?? own!.path;
  const config = testProxyConfig({
    encrypted: opts.encrypted,
    ...opts.config,
    kek: {
      backend: 'local',
      local: { path: kekPath, previous: opts.previous ?? [] },
      dek: { maxAgeSeconds: 300, maxUses: 100000, cacheSize: 1000, cacheTtlSeconds: 0 },
    },
  });
  const logger = createLogger(process.env.PGCMEK_TEST_LOG ?? 'silent');
  const keyring = await Keyring.fromConfig(config.kek);
  const layer = new EncryptionLayer({ config, keyring, logger, ...(opts.searchable && { searchable: opts.searchable }) });
  const server = await startProxy(config, { logger, keyring, interceptor: layer.factory() });
  return {
    host: server.host,
    port: server.port,
    server,
    keyring,
    layer,
    kekPath,
    via: (u) => retarget(u, server.host, server.port),
    keys: (database) => {
      const k = layer.searchable.keysFor(database);
      if (!k) throw new Error(`no searchable keys loaded for ${database}`);
      return k;
    },
    close: async (graceMs = 2_000) => {
      await server.close(graceMs);
      await layer.close();
      await keyring.close();
      if (own) rmSync(own.dir, { recursive: true, force: true });
    },
  };
}

/** pgcmek wired as in production (deps.ts: admin gateway included) on a local KEK file, with `previous` KEKs readable. */
export interface WiredProxy {
  layer: EncryptionLayer;
  keyring: Keyring;
  server: ProxyServer;
  via(url: string): string;
  close(): Promise<void>;
}

export async function startWiredProxy(opts: {
  encrypted: TablePolicy[];
  kekPath: string;
  previous?: string[];
  searchable: SearchableOptions;
  config?: Partial<Config>;
}): Promise<WiredProxy> {
  const config: Config = testProxyConfig({
    encrypted: opts.encrypted,
    ...opts.config,
    kek: { backend: 'local', local: { path: opts.kekPath, previous: opts.previous ?? [] }, dek: { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 1000, cacheTtlSeconds: 0 } },
  });
  const logger = createLogger(process.env.PGCMEK_TEST_LOG ?? 'silent');
  const keyring = await Keyring.fromConfig(config.kek);
  const { deps, layer } = await createProxyDeps(config, logger, keyring, { searchable: opts.searchable });
  const server = await startProxy(config, { logger, keyring, ...deps });
  return {
    layer,
    keyring,
    server,
    via: (u) => retarget(u, server.host, server.port),
    close: async () => {
      await server.close(1_000);
      await layer.close();
      await keyring.close();
    },
  };
}
