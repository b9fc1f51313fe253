// Builds what the proxy needs to encrypt: the keyring-backed EncryptionLayer and
// its per-session interceptor factory. `serve` calls createProxyDeps; with
// `workers > 1` each worker process imports this module and calls
// createWorkerDeps (keyrings and functions do not cross processes).
import type { Config } from '../config/types.js';
import { Keyring } from '../crypto/keyring.js';
import type { Logger } from '../log.js';
import type { ProxyDeps } from '../proxy/server.js';
import { initSql } from '../sql/index.js';
import { createAdminGateway, type SearchableKeySource } from './admin-gateway.js';
import { EncryptionLayer } from './layer.js';
import type { SearchableOptions } from './searchable-keys.js';

export interface EncryptionDeps {
  layer: EncryptionLayer;
  deps: Partial<ProxyDeps>;
}

/**
 * What admin commands use of a layer's searchable keys: those the layer loaded
 * for the session's database (the gateway is built before the layer, hence the getter).
 */
export function layerSearchableKeys(layer: () => EncryptionLayer): SearchableKeySource {
  return {
    keys: (info) => layer().searchable.keysFor(info.database),
    problem: (info) => layer().searchable.problem(info.database),
  };
}

export async function createProxyDeps(
  config: Config,
  logger: Logger,
  keyring: Keyring,
  options: { searchable?: SearchableOptions } = {},
): Promise<EncryptionDeps> {
  await initSql();
  let layer: EncryptionLayer | undefined;
  const admin = createAdminGateway(config, keyring, undefined, layerSearchableKeys(() => layer!));
  layer = new EncryptionLayer({ config, keyring, logger, admin, ...(options.searchable && { searchable: options.searchable }) });
  return {
    layer,
    deps: {
      interceptor: layer.factory(),
      workerDepsModule: new URL('./deps.js', import.meta.url).href,
    },
  };
}

/** Called in each worker process (see ProxyDeps.workerDepsModule). */
export async function createWorkerDeps(config: Config, logger: Logger): Promise<Partial<ProxyDeps>> {
  const keyring = await Keyring.fromConfig(config.kek);
  return (await createProxyDeps(config, logger, keyring)).deps;
}
