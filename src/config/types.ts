// The validated, normalised configuration every module reads. The YAML keys
// (snake_case) are mapped onto these fields by src/config/load.ts; tools outside
// the project write that YAML, so its key names are a public contract.

export type UpstreamTlsMode = 'disable' | 'prefer' | 'require' | 'verify-full';
export type KekBackendName = 'local' | 'vault' | 'aws_kms';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface ColumnPolicy {
  /** Column name as Postgres stores it (case preserved, unquoted). */
  column: string;
  /** For jsonb columns: dotted paths whose values are encrypted; undefined = the whole value. */
  jsonPaths?: string[][];
  /** Deterministic encryption so equality lookups keep working (issue 6). */
  searchable: boolean;
  /**
   * Searchable columns with the same group share one key, so equality between
   * them (joins) can match. Undefined: the column has a key of its own.
   */
  keyGroup?: string;
  /** What a reader gets when a value cannot be decrypted. */
  onDecryptError: 'error' | 'ciphertext';
  /** Empty strings stay empty by default (not secret; keeps `col = ''` working). */
  encryptEmpty: boolean;
}

export interface TablePolicy {
  schema: string;
  table: string;
  columns: ColumnPolicy[];
}

export interface LocalKekConfig {
  /** The primary local KEK file (VIGILO_CMEK_LOCAL_KEK_PATH). */
  path?: string;
  /** Older local KEK files that stay readable (a rotation in progress). */
  previous: string[];
}

export interface VaultKekConfig {
  addr?: string;
  token?: string;
  keyName?: string;
  namespace?: string;
  caFile?: string;
  mount: string;
}

export interface AwsKmsKekConfig {
  keyId?: string;
  region?: string;
  endpoint?: string;
}

export interface DekPolicy {
  /** Reuse one fresh DEK for new writes for at most this long (0 = a fresh DEK per value). */
  maxAgeSeconds: number;
  /** ... and for at most this many values. */
  maxUses: number;
  /** Unwrapped DEKs kept for reads (CLOCK, near-LRU; keyed by wrapped bytes). */
  cacheSize: number;
  /** How long an unwrapped DEK stays cached (0 = no expiry). */
  cacheTtlSeconds: number;
  /**
   * Decrypted column values kept in memory (CLOCK, near-LRU; keyed by the stored envelope, expiring
   * with cacheTtlSeconds) so hot rows are not decrypted on every read; 0 = off.
   */
  valueCacheSize?: number;
}

export interface KekConfig {
  /** Backend that wraps new DEKs (VIGILO_CMEK_BACKEND). Every configured backend is readable. */
  backend: KekBackendName;
  local: LocalKekConfig;
  vault?: VaultKekConfig;
  awsKms?: AwsKmsKekConfig;
  dek: DekPolicy;
}

export interface Config {
  /** Where the file came from, for messages. */
  source?: string;
  listen: { host: string; port: number };
  upstream: { host: string; port: number; tls: UpstreamTlsMode; caFile?: string };
  /** Client-facing TLS; absent = SSLRequest answered 'N'. */
  tls?: { cert: string; key: string };
  workers: number;
  /** SIGTERM: how long open sessions may finish before they are closed. */
  shutdownGraceSeconds: number;
  kek: KekConfig;
  encrypted: TablePolicy[];
  /** Decrypt any text value carrying a valid envelope even when its column has no origin. */
  decryptUnmapped: 'off' | 'prefixed';
  admin: { roles: string[] };
  log: { level: LogLevel };
  metrics?: { host: string; port: number };
}
