// What a failed Vault call means and what the operator should check. Every
// message names the setting to look at (VIGILO_CMEK_VAULT_ADDR, _TOKEN,
// _KEY_NAME, kek.vault.namespace / mount / ca_file) and never the token.
import type { Classified } from './retry.js';
import { isTlsCode, VaultHttpError, VaultNetworkError } from './vault-http.js';

export const VAULT_SETTING = {
  addr: 'VIGILO_CMEK_VAULT_ADDR (kek.vault.addr)',
  token: 'VIGILO_CMEK_VAULT_TOKEN (kek.vault.token)',
  keyName: 'VIGILO_CMEK_VAULT_KEY_NAME (kek.vault.key_name)',
  namespace: 'kek.vault.namespace (VAULT_NAMESPACE)',
  caFile: 'kek.vault.ca_file (VAULT_CACERT)',
  mount: 'kek.vault.mount',
} as const;

/** Where the backend points, for messages (the address without any user:password part). */
export interface VaultTarget {
  addr: string;
  namespace?: string;
  mount: string;
  keyName: string;
}

/** What sys/health said after a 503 (unauthenticated, so it works with a bad token too). */
export interface VaultHealth {
  sealed?: boolean;
  standby?: boolean;
  initialized?: boolean;
  status?: number;
}

/** Retry decision and metrics label for a failed request. */
export function classifyVault(err: unknown): Classified {
  if (err instanceof VaultNetworkError) {
    if (isTlsCode(err.code)) return { retryable: false, kind: 'tls' };
    // A name that does not resolve will not start resolving within a second.
    return { retryable: err.code !== 'ENOTFOUND', kind: 'network' };
  }
  if (err instanceof VaultHttpError) {
    if (err.status === 403) return { retryable: false, kind: 'denied' };
    if (err.status === 429) return { retryable: true, kind: 'throttled' };
    if (err.status === 503) return { retryable: true, kind: 'unavailable' };
    if (err.status >= 500) return { retryable: true, kind: 'server_error' };
    if (err.status === 404) return { retryable: false, kind: 'not_found' };
    return { retryable: false, kind: 'rejected' };
  }
  return { retryable: false, kind: 'internal' };
}

export function safeAddr(addr: string): string {
  try {
    const u = new URL(addr);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(invalid address)';
  }
}

function nsText(t: VaultTarget): string {
  return t.namespace ? ` in namespace "${t.namespace}"` : '';
}

function isKeyMissing(err: VaultHttpError, t: VaultTarget): boolean {
  if (err.errors.some((e) => e === 'encryption key not found' || e === 'policy not found')) return true;
  // A missing key reads as 404 with no errors; an unmounted path as 404 "no handler for route".
  return err.status === 404 && err.errors.length === 0 && err.method === 'GET' && err.path === `${t.mount}/keys/${t.keyName}`;
}

/** A message naming the setting to check, and the failure's kind. */
export function describeVaultFailure(
  err: unknown,
  t: VaultTarget,
  attempts = 1,
  health?: VaultHealth,
): { kind: string; message: string } {
  const addr = safeAddr(t.addr);
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  if (err instanceof VaultNetworkError) {
    if (isTlsCode(err.code)) {
      return {
        kind: 'tls',
        message:
          `TLS with Vault at ${addr} failed (${err.code}): check ${VAULT_SETTING.caFile} holds the CA that signed ` +
          `Vault's certificate and that the host in ${VAULT_SETTING.addr} matches that certificate`,
      };
    }
    return {
      kind: 'network',
      message:
        `cannot reach Vault at ${addr} for ${err.method} ${err.path} (${err.code})${tries}: ` +
        `check ${VAULT_SETTING.addr} and the network path from this host to Vault`,
    };
  }
  if (!(err instanceof VaultHttpError)) {
    return { kind: 'internal', message: `Vault call failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  const call = `${err.method} ${err.path}`;
  const said = err.errors.length ? `: ${err.errors.join('; ')}` : '';
  if (err.status === 403) {
    if (err.path.startsWith('auth/token/')) {
      return {
        kind: 'denied',
        message:
          `Vault rejected the token (403 on ${call}${nsText(t)}): check ${VAULT_SETTING.token} is a valid, unexpired token` +
          (t.namespace ? ` that belongs to namespace "${t.namespace}" or a parent (${VAULT_SETTING.namespace})` : ''),
      };
    }
    const cap = err.method === 'GET' ? 'read' : 'update';
    return {
      kind: 'denied',
      message:
        `Vault denied ${call}${nsText(t)} (403 permission denied): check ${VAULT_SETTING.token} is valid and unexpired ` +
        `and that its policy grants ["${cap}"] on path "${err.path}"` +
        (t.namespace ? ` in namespace "${t.namespace}" (${VAULT_SETTING.namespace})` : ''),
    };
  }
  if (isKeyMissing(err, t)) {
    return {
      kind: 'not_found',
      message:
        `Vault Transit key "${t.keyName}" does not exist at mount "${t.mount}"${nsText(t)} (${err.status} on ${call}): ` +
        `check ${VAULT_SETTING.keyName}` + (t.namespace ? ` and ${VAULT_SETTING.namespace}` : ''),
    };
  }
  if (err.status === 404) {
    return {
      kind: 'not_found',
      message:
        `Vault has no handler for ${err.path}${nsText(t)} (404${said}): check ${VAULT_SETTING.mount} ("${t.mount}") is where ` +
        `the Transit engine is mounted` + (t.namespace ? ` and ${VAULT_SETTING.namespace} ("${t.namespace}") exists` : ''),
    };
  }
  if (err.status === 503) {
    if (health?.sealed) {
      return {
        kind: 'sealed',
        message:
          `Vault at ${addr} is sealed (503 on ${call}; sys/health reports sealed=true)${tries}: unseal Vault; ` +
          `values whose DEK is cached stay readable meanwhile (address from ${VAULT_SETTING.addr})`,
      };
    }
    const h = health?.status ? `; sys/health answered ${health.status}${health.standby ? ' (standby)' : ''}` : '';
    return {
      kind: 'unavailable',
      message:
        `Vault at ${addr} is unavailable (503 on ${call}${said}${h})${tries}: check Vault's health and that ` +
        `${VAULT_SETTING.addr} points at an active, unsealed node`,
    };
  }
  if (err.status === 429) {
    return {
      kind: 'throttled',
      message:
        `Vault rate-limited ${call} (429)${tries}: raise Vault's rate-limit quota for this path, or reuse DEKs ` +
        `longer (kek.dek.max_age_seconds, kek.dek.max_uses)`,
    };
  }
  if (err.status >= 500) {
    return { kind: 'server_error', message: `Vault failed ${call} (${err.status}${said})${tries}: see Vault's server log` };
  }
  return { kind: 'rejected', message: `Vault rejected ${call} (${err.status}${said})` };
}
