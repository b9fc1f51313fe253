// Starts pgcmek with an encrypted map and a fresh local KEK in front of the suite's
// Postgres, for tests of the encryption layer through real clients.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config, TablePolicy, ColumnPolicy } from '../../src/config/types.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { generateKekFile } from '../../src/crypto/kek/local.js';
import { createProxyDeps } from '../../src/encryption/deps.js';
import type { EncryptionLayer } from '../../src/encryption/layer.js';
import { createLogger } from '../../src/log.js';
import { startProxy } from '../../src/proxy/server.js';
import { retarget, testProxyConfig, type TestProxy } from './proxy.js';

export interface EncryptedProxy extends TestProxy {
  keyring: Keyring;
  layer: EncryptionLayer;
  kekPath: string;
  config: Config;
}

export function column(name: string, opts: Partial<ColumnPolicy> = {}): ColumnPolicy {
  return { column: name, searchable: false, onDecryptError: 'error', encryptEmpty: false, ...opts };
}

export function table(qualified: string, columns: (string | ColumnPolicy)[]): TablePolicy {
  const [schema, name] = qualified.includes('.') ? qualified.split('.') : ['public', qualified];
  return { schema: schema!, table: name!, columns: columns.map((c) => (typeof c === 'string' ? column(c) : c)) };
}

export async function startEncryptedProxy(opts: {
  encrypted: TablePolicy[];
  config?: Partial<Config>;
  upstreamUrl?: string;
  kekPath?: string;
  previous?: string[];
  logLevel?: string;
}): Promise<EncryptedProxy> {
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-kek-'));
  const kekPath = opts.kekPath ?? join(dir, 'kek.key');
  if (!opts.kekPath) generateKekFile(kekPath);
  const config = testProxyConfig(
    {
      encrypted: opts.encrypted,
      ...opts.config,
      kek: {
        backend: 'local',
        local: { path: kekPath, previous: opts.previous ?? [] },
        dek: { maxAgeSeconds: 300, maxUses: 100000, cacheSize: 1000, cacheTtlSeconds: 0 },
      },
    },
    opts.upstreamUrl,
  );
  const logger = createLogger(opts.logLevel ?? 'silent');
  const keyring = await Keyring.fromConfig(config.kek);
  const { deps, layer } = await createProxyDeps(config, logger, keyring);
  const server = await startProxy(config, { logger, keyring, ...deps });
  return {
    host: server.host,
    port: server.port,
    server,
    keyring,
    layer,
    kekPath,
    config,
    via: (u) => retarget(u, server.host, server.port),
    close: async (graceMs = 2_000) => {
      await server.close(graceMs);
      await keyring.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
