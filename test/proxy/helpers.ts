// Shared helpers for proxy tests: a Config pointing at the suite's Postgres, and
// a proxy started on a free port.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { inject } from 'vitest';
import type pg from 'pg';
import type { Config } from '../../src/config/types.js';
import { createLogger, type Logger } from '../../src/log.js';
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

/**
 * Creates a login role if it is missing (roles are cluster-wide and test files run
 * in parallel, so a concurrent creation is not an error). Password = role name,
 * the convention every proxy test follows.
 */
export async function ensureRole(client: pg.Client, name: string, opts: { md5?: boolean } = {}): Promise<void> {
  await client.query(`DO $$ BEGIN CREATE ROLE ${name} LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`);
  if (opts.md5) await client.query(`SET password_encryption = 'md5'`);
  await client.query(`ALTER ROLE ${name} PASSWORD '${name}'`);
  if (opts.md5) await client.query(`RESET password_encryption`);
}

/** A postgres:// URL to `database` through the proxy, as `user`/`password`. */
export function proxyUrl(p: ProxyServer, database: string, user = 'postgres', password = 'postgres'): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${p.host}:${p.port}/${database}`;
}

export interface TestCerts {
  dir: string;
  ca: string;
  cert: string;
  key: string;
  /** A CA that signed nothing here (for verification failures). */
  otherCa: string;
}

/** A CA and a server certificate for localhost/127.0.0.1, made with openssl in a temp dir. */
export function makeCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-certs-'));
  const o = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  o('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=pgcmek test CA');
  o('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=other CA');
  o('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  o('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf');
  return { dir, ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key'), otherCa: join(dir, 'other.pem') };
}

/** Polls `cond` every 20 ms until it holds; throws after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A logger at `level` whose lines (JSON, one per entry) are kept in `lines`, for tests that check what was logged. */
export function capturingLogger(level: string): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { logger: createLogger(level, sink), lines };
}
