// Builds what the proxy needs to encrypt: the keyring-backed EncryptionLayer and
// its per-session interceptor factory. `serve` calls createProxyDeps; with
// `workers > 1` each worker process imports this module and calls
// createWorkerDeps (keyrings and functions do not cross processes).
import type { Config } from '../config/types.js';
import { Keyring } from '../crypto/keyring.js';
import type { Logger } from '../log.js';
import type { ProxyDeps } from '../proxy/server.js';
import { initSql } from '../sql/index.js';
import { createAdminGateway } from './admin-gateway.js';
import { EncryptionLayer } from './layer.js';

export interface EncryptionDeps {
  layer: EncryptionLayer;
  deps: Partial<ProxyDeps>;
}

export async function createProxyDeps(config: Config, logger: Logger, keyring: Keyring): Promise<EncryptionDeps> {
  await initSql();
  const layer = new EncryptionLayer({ config, keyring, logger, admin: createAdminGateway(config, keyring) });
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
