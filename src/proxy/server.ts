// PLACEHOLDER owned by the proxy work (issue 3): replaced by the real listener.
import type { Config } from '../config/types.js';
import type { Logger } from '../log.js';

export interface ProxyDeps {
  logger: Logger;
  /** The keyring (src/crypto/keyring.ts); typed loosely until the encryption layer plugs in. */
  keyring?: unknown;
}

export interface ProxyServer {
  /** The port actually bound (listen.port 0 picks a free one). */
  port: number;
  host: string;
  /** Stop accepting, let sessions finish for graceMs, then close them. */
  close(graceMs?: number): Promise<void>;
}

export async function startProxy(_config: Config, _deps: ProxyDeps): Promise<ProxyServer> {
  throw new Error('proxy not built yet');
}
