// Shared helpers for proxy tests: a Config pointing at the suite's Postgres, and
// a proxy started on a free port.
import { inject } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { createLogger } from '../../src/log.js';
import { startProxy, type ProxyServer } from '../../src/proxy/server.js';

export function proxyConfig(overrides: Partial<Config> = {}): Config {
  const u = new URL(inject('pgUrl'));
  return {
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { host: u.hostname, port: Number(u.port), tls: 'disable' },
    workers: 1,
    shutdownGraceSeconds: 5,
    kek: { backend: 'local', local: { previous: [] }, dek: { maxAgeSeconds: 0, maxUses: 1, cacheSize: 0, cacheTtlSeconds: 0 } },
    encrypted: [],
    decryptUnmapped: 'off',
    admin: { roles: [] },
    log: { level: 'silent' },
    ...overrides,
  };
}

export async function startTestProxy(overrides: Partial<Config> = {}, level = process.env.PGCMEK_TEST_LOG ?? 'silent'): Promise<ProxyServer> {
  return startProxy(proxyConfig(overrides), { logger: createLogger(level) });
}

/** A postgres:// URL to `database` through the proxy, as `user`/`password`. */
export function proxyUrl(p: ProxyServer, database: string, user = 'postgres', password = 'postgres'): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${p.host}:${p.port}/${database}`;
}
