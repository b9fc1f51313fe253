// Builds what the proxy needs to encrypt: the keyring-backed EncryptionLayer and
// its per-session interceptor factory. `serve` calls createProxyDeps; with
// `workers > 1` each worker process imports this module and calls
// createWorkerDeps (keyrings and functions do not cross processes).
import type { Config } from '../config/types.js';
import { Keyring } from '../crypto/keyring.js';
import type { Logger } from '../log.js';
import type { ProxyDeps } from '../proxy/server.js';
import { initSql } from '../sql/index.js';
import type { AdminGateway } from './admin-gateway.js';
import { EncryptionLayer } from './layer.js';

export interface EncryptionDeps {
  layer: EncryptionLayer;
  deps: Partial<ProxyDeps>;
}

export type AdminFactory = (config: Config, keyring: Keyring, logger: Logger) => AdminGateway | undefined;

let adminFactory: AdminFactory | undefined;

/** The admin layer registers how to build its gateway (keeps this module free of admin imports). */
export function setAdminFactory(f: AdminFactory): void {
  adminFactory = f;
}

export async function createProxyDeps(config: Config, logger: Logger, keyring: Keyring): Promise<EncryptionDeps> {
  await initSql();
  const layer = new EncryptionLayer({ config, keyring, logger, admin: adminFactory?.(config, keyring, logger) });
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
