// The Vault backend's startup checks: kek.vault itself (before any request),
// then the key's metadata and the token's capabilities as Vault reports them.
// Anything that cannot work is a KekConfigError naming the setting to fix.
import { readFile } from 'node:fs/promises';
import type { KekConfig } from '../../config/types.js';
import type { Logger } from '../../log.js';
import { KekConfigError } from '../errors.js';
import { VAULT_SETTING, type VaultTarget } from './vault-errors.js';

const SYMMETRIC = new Set(['aes256-gcm96', 'aes128-gcm96', 'chacha20-poly1305']);
// Vault's GenericNameRegex for key names.
const KEY_NAME = /^\w(?:[\w.-]*\w)?$/;

export interface VaultSettings {
  target: VaultTarget;
  token: string;
  ca: Buffer | undefined;
  /** kek.backend is vault: this backend must be able to generate DEKs. */
  primary: boolean;
}

export async function readVaultConfig(kek: KekConfig, log: Logger): Promise<VaultSettings> {
  const v = kek.vault;
  const need = `set ${VAULT_SETTING.addr}, ${VAULT_SETTING.token} and ${VAULT_SETTING.keyName}`;
  if (!v) throw new KekConfigError(`vault KEK backend: kek.vault is not configured: ${need}`);
  if (!v.addr) throw new KekConfigError(`vault KEK backend: no Vault address: set ${VAULT_SETTING.addr} (e.g. https://vault.internal:8200)`);
  let url: URL;
  try {
    url = new URL(v.addr);
  } catch {
    throw new KekConfigError(`vault KEK backend: ${VAULT_SETTING.addr} is not a URL (expected https://host:8200)`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new KekConfigError(`vault KEK backend: ${VAULT_SETTING.addr} must be an http:// or https:// URL, got ${url.protocol}`);
  }
  if (!v.token) throw new KekConfigError(`vault KEK backend: no Vault token: set ${VAULT_SETTING.token}`);
  if (!v.keyName) throw new KekConfigError(`vault KEK backend: no Transit key name: set ${VAULT_SETTING.keyName}`);
  if (!KEY_NAME.test(v.keyName)) throw new KekConfigError(`vault KEK backend: ${VAULT_SETTING.keyName} "${v.keyName}" is not a valid Transit key name`);
  const mount = (v.mount || 'transit').replace(/^\/+|\/+$/g, '');
  const namespace = v.namespace?.replace(/^\/+|\/+$/g, '') || undefined;
  let ca: Buffer | undefined;
  if (v.caFile) {
    try {
      ca = await readFile(v.caFile);
    } catch (e) {
      throw new KekConfigError(`vault KEK backend: cannot read ${VAULT_SETTING.caFile} ${v.caFile} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    if (url.protocol === 'http:') log.warn(`${VAULT_SETTING.caFile} is ignored: ${VAULT_SETTING.addr} is plain http`);
  }
  const target: VaultTarget = { addr: v.addr, mount, keyName: v.keyName, ...(namespace ? { namespace } : {}) };
  return { target, token: v.token, ca, primary: kek.backend === 'vault' };
}

/** GET <mount>/keys/<name>: a symmetric, non-derived key with a latest_version. */
export function checkKeyInfo(d: Record<string, unknown> | undefined, t: VaultTarget, path: string): void {
  if (!d || typeof d.latest_version !== 'number') throw new KekConfigError(`vault KEK backend: unexpected answer to GET ${path}`);
  const where = `Vault Transit key "${t.keyName}" (${VAULT_SETTING.keyName})`;
  if (typeof d.type === 'string' && !SYMMETRIC.has(d.type)) {
    throw new KekConfigError(`${where} is of type ${d.type}; DEK wrapping needs a symmetric key such as aes256-gcm96`);
  }
  if (d.derived === true) {
    throw new KekConfigError(`${where} uses key derivation (derived=true), which needs a context per call; use a key created without derivation`);
  }
}

export interface CapabilityNeed {
  path: string;
  why: string;
  required: boolean;
}

/** The Transit paths the token must be able to `update`; the primary also needs datakey. */
export function neededCapabilities(t: VaultTarget, primary: boolean): CapabilityNeed[] {
  const p = (op: string) => `${t.mount}/${op}/${t.keyName}`;
  return [
    { path: p('decrypt'), why: 'unwrap DEKs', required: true },
    { path: p('datakey/plaintext'), why: 'generate DEKs', required: primary },
    { path: p('rewrap'), why: 'rewrap DEKs after a key rotation', required: false },
    { path: p('encrypt'), why: 'wrap DEKs of another backend (migration)', required: false },
  ];
}

/**
 * sys/capabilities-self's answer (allowed by Vault's default policy): throws
 * for a missing required capability, returns warnings for the optional ones.
 */
export function checkCapabilities(body: Record<string, unknown>, needs: CapabilityNeed[], t: VaultTarget): string[] {
  const data = (body.data ?? body) as Record<string, unknown>;
  const warnings: string[] = [];
  for (const n of needs) {
    const caps = Array.isArray(data[n.path]) ? (data[n.path] as unknown[]).map(String) : [];
    if (caps.includes('update') || caps.includes('root')) continue;
    const msg = `the token in ${VAULT_SETTING.token} lacks "update" on "${n.path}"${t.namespace ? ` in namespace "${t.namespace}"` : ''} (needed to ${n.why}): add it to the token's policy`;
    if (n.required) throw new KekConfigError(`vault KEK backend: ${msg}`);
    warnings.push(msg);
  }
  return warnings;
}
