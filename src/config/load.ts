// Reads config.yaml into a validated Config: YAML -> raw tree (reader.ts, checked
// against schema.ts) -> environment overrides (env.ts) -> defaults and the checks
// that span keys. Every problem is reported at once, each with its key and line.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { readEncrypted } from './encrypted.js';
import { applyEnv, type Env } from './env.js';
import { ConfigError, type ConfigProblem } from './errors.js';
import { problem, readNode, type ReadContext } from './reader.js';
import { ROOT, walkSpec, type RawConfig } from './schema.js';
import type { Config } from './types.js';

export { ConfigError } from './errors.js';
export type { Env } from './env.js';

export interface ParseOptions {
  /** Relative paths in the file (KEK, CA, cert files) are resolved against this directory. */
  baseDir?: string;
}

/** The configuration an empty file gives (no KEK path: tests set `kek.local.path`). */
export function defaultConfig(): Config {
  return {
    listen: { host: '127.0.0.1', port: 6432 },
    upstream: { host: '127.0.0.1', port: 5432, tls: 'prefer' },
    workers: 1,
    shutdownGraceSeconds: 30,
    kek: {
      backend: 'local',
      local: { previous: [] },
      dek: { maxAgeSeconds: 300, maxUses: 100_000, cacheSize: 10_000, cacheTtlSeconds: 3600, valueCacheSize: 10_000 },
    },
    encrypted: [],
    decryptUnmapped: 'off',
    admin: { roles: ['postgres'] },
    log: { level: 'info' },
  };
}

/** Reads and validates a config file; relative paths in it are relative to the file. */
export function loadConfig(path: string, env: Env = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new ConfigError([{ where: path, path: '', message: `cannot read the config file: ${why}` }]);
  }
  return parseConfig(text, path, env, { baseDir: dirname(resolve(path)) });
}

/** Parses config text; `source` names it in messages (a file path, or `environment` for none). */
export function parseConfig(text: string, source: string, env: Env = process.env, opts: ParseOptions = {}): Config {
  const lines = new LineCounter();
  // Duplicate keys are found by the reader, which can name the key and its own line.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  const problems: ConfigProblem[] = [];
  for (const e of doc.errors) {
    const line = lines.linePos(e.pos[0]).line;
    problems.push({ where: `${source}:${line}`, line, path: '', message: `YAML syntax: ${e.message}` });
  }
  // A document with syntax errors has no trustworthy structure: stop here.
  if (problems.length) throw new ConfigError(problems);

  const ctx: ReadContext = { source, doc, lines, problems, lineOf: new Map(), readEncrypted };
  const raw = (readNode(ctx, doc.contents, ROOT, '') ?? {}) as RawConfig;
  if (opts.baseDir) resolvePaths(raw as Record<string, unknown>, opts.baseDir);
  const fromEnv = applyEnv(raw as Record<string, unknown>, env, problems);
  const config = build(raw, source);
  checkKek(config, ctx, fromEnv);
  if (problems.length) throw new ConfigError(problems);
  return config;
}

function resolvePaths(raw: Record<string, unknown>, baseDir: string): void {
  const abs = (p: unknown) => (typeof p === 'string' && !isAbsolute(p) ? resolve(baseDir, p) : p);
  for (const { path, spec } of walkSpec(ROOT)) {
    if (!spec.path) continue;
    const keys = path.split('.');
    const parent = keys.slice(0, -1).reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], raw) as
      | Record<string, unknown>
      | undefined;
    const key = keys[keys.length - 1];
    if (!parent || parent[key] === undefined) continue;
    parent[key] = Array.isArray(parent[key]) ? (parent[key] as unknown[]).map(abs) : abs(parent[key]);
  }
}

function build(r: RawConfig, source: string): Config {
  const d = defaultConfig();
  const k = r.kek ?? {};
  const config: Config = {
    source,
    listen: { host: r.listen?.host ?? d.listen.host, port: r.listen?.port ?? d.listen.port },
    upstream: {
      host: r.upstream?.host ?? d.upstream.host,
      port: r.upstream?.port ?? d.upstream.port,
      tls: r.upstream?.tls ?? d.upstream.tls,
      ...(r.upstream?.ca_file !== undefined && { caFile: r.upstream.ca_file }),
    },
    workers: r.workers ?? d.workers,
    shutdownGraceSeconds: r.shutdown_grace_seconds ?? d.shutdownGraceSeconds,
    kek: {
      backend: k.backend ?? d.kek.backend,
      local: { ...(k.local?.path !== undefined && { path: k.local.path }), previous: k.local?.previous ?? [] },
      dek: {
        maxAgeSeconds: k.dek?.max_age_seconds ?? d.kek.dek.maxAgeSeconds,
        maxUses: k.dek?.max_uses ?? d.kek.dek.maxUses,
        cacheSize: k.dek?.cache_size ?? d.kek.dek.cacheSize,
        cacheTtlSeconds: k.dek?.cache_ttl_seconds ?? d.kek.dek.cacheTtlSeconds,
        valueCacheSize: k.dek?.value_cache_size ?? d.kek.dek.valueCacheSize,
      },
    },
    encrypted: r.encrypted ?? [],
    decryptUnmapped: r.decrypt_unmapped ?? d.decryptUnmapped,
    admin: { roles: r.admin?.roles ?? d.admin.roles },
    log: { level: r.log?.level ?? d.log.level },
  };
  if (r.tls?.cert !== undefined && r.tls.key !== undefined) config.tls = { cert: r.tls.cert, key: r.tls.key };
  if (k.vault) {
    const v = k.vault;
    config.kek.vault = {
      addr: v.addr,
      token: v.token,
      keyName: v.key_name,
      namespace: v.namespace,
      caFile: v.ca_file,
      mount: v.mount ?? 'transit',
    };
  }
  if (k.aws_kms) config.kek.awsKms = { keyId: k.aws_kms.key_id, region: k.aws_kms.region, endpoint: k.aws_kms.endpoint };
  if (r.metrics) config.metrics = { host: r.metrics.host ?? '127.0.0.1', port: r.metrics.port ?? 9187 };
  return config;
}

/** Keys that are required only together: the backend in use, and any backend section present. */
function checkKek(config: Config, ctx: ReadContext, fromEnv: Map<string, string>): void {
  const backendFrom = fromEnv.get('kek.backend');
  const because = (name: string) => `kek.backend is ${name}${backendFrom ? ` (from ${backendFrom})` : ''}`;
  const need = (path: string, env: string[], why: string) => {
    if (ctx.problems.some((p) => p.path === path)) return; // present but invalid: already reported
    const how = `set ${path} in the config file or ${env[0]}${env.length > 1 ? ` (or ${env[1]})` : ''}`;
    problem(ctx, path, `required when ${why}: ${how}`, nearestLine(ctx, path));
  };
  const { kek } = config;
  if (kek.backend === 'local' && !kek.local.path) need('kek.local.path', ['VIGILO_CMEK_LOCAL_KEK_PATH'], because('local'));
  if (kek.vault) {
    const why = kek.backend === 'vault' ? because('vault') : 'kek.vault is configured';
    if (!kek.vault.addr) need('kek.vault.addr', ['VIGILO_CMEK_VAULT_ADDR', 'VAULT_ADDR'], why);
    if (!kek.vault.token) need('kek.vault.token', ['VIGILO_CMEK_VAULT_TOKEN', 'VAULT_TOKEN'], why);
    if (!kek.vault.keyName) need('kek.vault.key_name', ['VIGILO_CMEK_VAULT_KEY_NAME'], why);
  }
  if (kek.awsKms && !kek.awsKms.keyId) {
    need('kek.aws_kms.key_id', ['VIGILO_CMEK_AWS_KMS_KEY_ID'], kek.backend === 'aws_kms' ? because('aws_kms') : 'kek.aws_kms is configured');
  }
}

/** The line of a key path, or of its closest ancestor the file does have. */
function nearestLine(ctx: ReadContext, path: string): number | undefined {
  for (let keys = path.split('.'); keys.length; keys.pop()) {
    const line = ctx.lineOf.get(keys.join('.'));
    if (line) return line;
  }
  return undefined;
}
