// Which KEK backends a configuration asks for. The primary (kek.backend) wraps
// new DEKs; every configured backend is readable, so values written before a
// backend migration (local -> vault, say) keep decrypting. Backends are built
// here and initialised by the keyring, which fails the start on any error.
import type { KekBackendName, KekConfig } from '../../config/types.js';
import { KekConfigError } from '../errors.js';
import { LocalKekBackend } from './local.js';
import type { KekBackend } from './types.js';

export interface Backends {
  primary: KekBackend;
  /** Every configured backend, the primary included. */
  readable: KekBackend[];
}

/** The backends a configuration names: the primary, plus any other whose settings are present. */
export function configuredBackends(kek: KekConfig): KekBackendName[] {
  const names = new Set<KekBackendName>([kek.backend]);
  if (kek.local.path || kek.local.previous.length > 0) names.add('local');
  if (kek.vault) names.add('vault');
  if (kek.awsKms) names.add('aws_kms');
  return [...names];
}

export async function createBackends(kek: KekConfig): Promise<Backends> {
  const readable: KekBackend[] = [];
  for (const name of configuredBackends(kek)) readable.push(await createBackend(name, kek));
  return { primary: readable.find((b) => b.name === kek.backend)!, readable };
}

async function createBackend(name: KekBackendName, kek: KekConfig): Promise<KekBackend> {
  switch (name) {
    case 'local':
      if (kek.backend === 'local' && !kek.local.path) {
        throw new KekConfigError('kek.backend is local but no KEK file is set: set VIGILO_CMEK_LOCAL_KEK_PATH (kek.local.path); create one with `pgcmek keygen --out PATH`');
      }
      return new LocalKekBackend({ ...(kek.local.path !== undefined && { path: kek.local.path }), previous: kek.local.previous });
    // Remote backends (docs/KEK_BACKENDS.md). Dynamic imports: the AWS SDK is only loaded by deployments that use KMS.
    case 'vault':
      return (await import('./vault.js')).createVaultBackend(kek);
    case 'aws_kms':
      return (await import('./aws-kms.js')).createAwsKmsBackend(kek);
  }
}
