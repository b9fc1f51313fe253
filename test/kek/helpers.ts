// Shared set-up for the remote KEK backend tests: configs, a log capture (to
// prove no secret is ever logged) and a fast retry policy.
import { Writable } from 'node:stream';
import type { DekPolicy, KekConfig } from '../../src/config/types.js';
import { createLogger, type Logger } from '../../src/log.js';
import type { RetryPolicy } from '../../src/crypto/kek/retry.js';
import type { PathRule } from './fake-vault.js';

export const FAST_RETRY: RetryPolicy = { maxAttempts: 4, baseDelayMs: 5, maxDelayMs: 20 };

export const NO_REUSE: DekPolicy = { maxAgeSeconds: 0, maxUses: 1, cacheSize: 0, cacheTtlSeconds: 0 };
export const REUSE: DekPolicy = { maxAgeSeconds: 300, maxUses: 1000, cacheSize: 1000, cacheTtlSeconds: 300 };

export function vaultConfig(
  v: { addr: string; token?: string; keyName?: string; namespace?: string; caFile?: string; mount?: string },
  o: { backend?: KekConfig['backend']; dek?: DekPolicy; localPath?: string } = {},
): KekConfig {
  return {
    backend: o.backend ?? 'vault',
    local: { ...(o.localPath ? { path: o.localPath } : {}), previous: [] },
    vault: {
      addr: v.addr,
      ...(v.token !== undefined ? { token: v.token } : {}),
      keyName: v.keyName ?? 'pgcmek',
      ...(v.namespace ? { namespace: v.namespace } : {}),
      ...(v.caFile ? { caFile: v.caFile } : {}),
      mount: v.mount ?? 'transit',
    },
    dek: o.dek ?? NO_REUSE,
  };
}

export function kmsConfig(
  k: { keyId?: string; region?: string; endpoint?: string },
  o: { backend?: KekConfig['backend']; dek?: DekPolicy } = {},
): KekConfig {
  return {
    backend: o.backend ?? 'aws_kms',
    local: { previous: [] },
    awsKms: {
      ...(k.keyId !== undefined ? { keyId: k.keyId } : {}),
      ...(k.region !== undefined ? { region: k.region } : {}),
      ...(k.endpoint !== undefined ? { endpoint: k.endpoint } : {}),
    },
    dek: o.dek ?? NO_REUSE,
  };
}

/** What an application's Vault policy for pgcmek grants: the four Transit paths of one key. */
export function transitRules(key = 'pgcmek', mount = 'transit'): PathRule[] {
  return [
    { path: `${mount}/keys/${key}`, capabilities: ['read'] },
    { path: `${mount}/datakey/plaintext/${key}`, capabilities: ['update'] },
    { path: `${mount}/encrypt/${key}`, capabilities: ['update'] },
    { path: `${mount}/decrypt/${key}`, capabilities: ['update'] },
    { path: `${mount}/rewrap/${key}`, capabilities: ['update'] },
    { path: `${mount}/keys/${key}/rotate`, capabilities: ['update'] },
  ];
}

/** A logger whose JSON lines land in `lines`. */
export function captureLog(level = 'debug'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { logger: createLogger(level, sink), lines };
}

/** Every string reachable from an error: message, stack, cause chain, own properties. */
export function errorText(e: unknown, seen = new Set<unknown>()): string {
  if (e === null || e === undefined || seen.has(e)) return '';
  seen.add(e);
  if (typeof e !== 'object') return String(e);
  const parts: string[] = [];
  if (e instanceof Error) parts.push(e.name, e.message, e.stack ?? '');
  for (const k of Object.getOwnPropertyNames(e)) {
    const v = (e as Record<string, unknown>)[k];
    if (typeof v === 'string') parts.push(v);
    else if (v && typeof v === 'object') parts.push(errorText(v, seen));
  }
  if (e instanceof Error && e.cause) parts.push(errorText(e.cause, seen));
  return parts.join('\n');
}

export async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * An operator's call to the fake Vault over its HTTP API with the root token
 * (`vault write -f transit/keys/pgcmek/rotate`, `.../config min_decryption_version=2`);
 * returns the answer's `data`.
 */
export async function vaultOp(vault: { url: string; rootToken: string }, path: string, body: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const r = await fetch(`${vault.url}/v1/${path}`, {
    method: 'POST',
    headers: { 'x-vault-token': vault.rootToken, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`vault ${path}: HTTP ${r.status} ${text}`);
  return text ? ((JSON.parse(text) as { data?: Record<string, unknown> }).data ?? {}) : {};
}
