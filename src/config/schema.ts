// The YAML keys, declared once. The reader validates against this tree, the
// environment overrides come from its `env` annotations, and a test checks that
// the README's reference names every key and variable here. Key names are a
// public contract (tools outside the project write the file): add, never rename.
import type { TablePolicy } from './types.js';

interface Common {
  /** Environment variables that override the file (first set one wins). */
  env?: readonly string[];
  /** Conventional variables (VAULT_ADDR, AWS_REGION) that only fill a value the file and `env` leave unset. */
  envFallback?: readonly string[];
  /** A filesystem path: resolved against the config file's directory. */
  path?: boolean;
  /** Must be present whenever its parent map is. */
  required?: boolean;
  /** Never echo the value in a message (a token written as a bare number). */
  secret?: boolean;
}

export type Spec =
  | ({ kind: 'string' } & Common)
  | ({ kind: 'int'; min: number; max: number } & Common)
  | ({ kind: 'number'; min: number } & Common)
  | ({ kind: 'bool' } & Common)
  | ({ kind: 'enum'; values: readonly string[] } & Common)
  | ({ kind: 'strings' } & Common)
  | ({ kind: 'map'; fields: Readonly<Record<string, Spec>> } & Common)
  | ({ kind: 'encrypted' } & Common);

/** The parsed (still snake_case) shape of a spec; every key optional, as in the file. */
export type Infer<S> = S extends { kind: 'string' }
  ? string
  : S extends { kind: 'int' | 'number' }
    ? number
    : S extends { kind: 'bool' }
      ? boolean
      : S extends { kind: 'enum'; values: readonly (infer V)[] }
        ? V
        : S extends { kind: 'strings' }
          ? string[]
          : S extends { kind: 'map'; fields: infer F }
            ? { [K in keyof F]?: Infer<F[K]> }
            : S extends { kind: 'encrypted' }
              ? TablePolicy[]
              : never;

const str = (c: Common = {}): { kind: 'string' } & Common => ({ kind: 'string', ...c });
const int = (min: number, max: number): { kind: 'int'; min: number; max: number } => ({ kind: 'int', min, max });
const num = (min: number): { kind: 'number'; min: number } => ({ kind: 'number', min });
const bool = (): { kind: 'bool' } => ({ kind: 'bool' });
const oneOf = <const V extends readonly string[]>(values: V, c: Common = {}): { kind: 'enum'; values: V } & Common => ({
  kind: 'enum',
  values,
  ...c,
});
const strings = (c: Common = {}): { kind: 'strings' } & Common => ({ kind: 'strings', ...c });
const map = <const F extends Record<string, Spec>>(fields: F) => ({ kind: 'map' as const, fields });

const port = () => int(0, 65535);
const COUNT = Number.MAX_SAFE_INTEGER;

export const UPSTREAM_TLS_MODES = ['disable', 'prefer', 'require', 'verify-full'] as const;
export const KEK_BACKENDS = ['local', 'vault', 'aws_kms'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Options of one encrypted column (`encrypted.<table>.<column>`). */
export const COLUMN_OPTIONS = map({
  json_paths: strings(),
  searchable: bool(),
  key_group: str(),
  on_decrypt_error: oneOf(['error', 'ciphertext'] as const),
  encrypt_empty: bool(),
});

export const ROOT = map({
  listen: map({ host: str(), port: port() }),
  upstream: map({
    host: str(),
    port: port(),
    tls: oneOf(UPSTREAM_TLS_MODES),
    ca_file: str({ path: true }),
  }),
  tls: map({ cert: str({ path: true, required: true }), key: str({ path: true, required: true }) }),
  workers: int(1, 1024),
  shutdown_grace_seconds: num(0),
  kek: map({
    backend: oneOf(KEK_BACKENDS, { env: ['VIGILO_CMEK_BACKEND'] }),
    local: map({
      path: str({ path: true, env: ['VIGILO_CMEK_LOCAL_KEK_PATH'] }),
      previous: strings({ path: true }),
    }),
    vault: map({
      addr: str({ env: ['VIGILO_CMEK_VAULT_ADDR'], envFallback: ['VAULT_ADDR'] }),
      token: str({ env: ['VIGILO_CMEK_VAULT_TOKEN'], envFallback: ['VAULT_TOKEN'], secret: true }),
      key_name: str({ env: ['VIGILO_CMEK_VAULT_KEY_NAME'] }),
      namespace: str({ envFallback: ['VAULT_NAMESPACE'] }),
      ca_file: str({ path: true, envFallback: ['VAULT_CACERT'] }),
      mount: str(),
    }),
    aws_kms: map({
      key_id: str({ env: ['VIGILO_CMEK_AWS_KMS_KEY_ID'] }),
      region: str({ envFallback: ['AWS_REGION'] }),
      endpoint: str(),
    }),
    dek: map({
      max_age_seconds: int(0, COUNT),
      max_uses: int(1, COUNT),
      cache_size: int(0, COUNT),
      cache_ttl_seconds: int(0, COUNT),
      value_cache_size: int(0, COUNT),
    }),
  }),
  encrypted: { kind: 'encrypted' as const },
  decrypt_unmapped: oneOf(['off', 'prefixed'] as const),
  admin: map({ roles: strings() }),
  log: map({ level: oneOf(LOG_LEVELS, { env: ['PGCMEK_LOG_LEVEL'] }) }),
  metrics: map({ host: str(), port: port() }),
});

export type RawConfig = Infer<typeof ROOT>;
export type RawColumnOptions = Infer<typeof COLUMN_OPTIONS>;

export function joinPath(parent: string, key: string): string {
  return parent ? `${parent}.${key}` : key;
}

/** Every key path with its spec, depth first (`listen`, `listen.host`, ...). */
export function* walkSpec(spec: Spec = ROOT, path = ''): Generator<{ path: string; spec: Spec }> {
  if (spec.kind !== 'map') return;
  for (const [key, child] of Object.entries(spec.fields)) {
    const p = joinPath(path, key);
    yield { path: p, spec: child };
    yield* walkSpec(child, p);
  }
}
