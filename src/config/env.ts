// Environment overrides, driven by the `env`/`envFallback` annotations in schema.ts.
// VIGILO_CMEK_* (and PGCMEK_*) variables override the file. The conventional
// VAULT_ADDR, VAULT_TOKEN, AWS_REGION... only fill what is left unset, and only
// in a backend section that is in use: an operator's shell that happens to export
// VAULT_ADDR must not switch a local-KEK proxy to Vault.
import type { ConfigProblem } from './errors.js';
import { ROOT, walkSpec, type Spec } from './schema.js';

export type Env = Readonly<Record<string, string | undefined>>;

type Tree = Record<string, unknown>;

function get(tree: Tree, path: string[]): unknown {
  let cur: unknown = tree;
  for (const k of path) cur = cur && typeof cur === 'object' ? (cur as Tree)[k] : undefined;
  return cur;
}

function set(tree: Tree, path: string[], value: unknown): void {
  let cur = tree;
  for (const k of path.slice(0, -1)) cur = (cur[k] ??= {}) as Tree;
  cur[path[path.length - 1]] = value;
}

function firstSet(env: Env, names: readonly string[] | undefined): [string, string] | undefined {
  for (const n of names ?? []) {
    const v = env[n];
    if (v !== undefined && v !== '') return [n, v];
  }
  return undefined;
}

function parseValue(spec: Spec, value: string): { ok: unknown } | { error: string } {
  switch (spec.kind) {
    case 'string':
      return { ok: value };
    case 'enum':
      return spec.values.includes(value) ? { ok: value } : { error: `expected one of ${spec.values.join(', ')}, got ${JSON.stringify(value)}` };
    case 'int': {
      const n = /^\d+$/.test(value) ? Number(value) : NaN;
      return n >= spec.min && n <= spec.max ? { ok: n } : { error: `expected an integer from ${spec.min} to ${spec.max}, got ${JSON.stringify(value)}` };
    }
    default:
      throw new Error(`env override on a ${spec.kind} key is not supported`);
  }
}

/**
 * Applies the overrides to the raw (snake_case) tree in place and returns, for
 * each overridden key path, the variable it came from (for later messages).
 */
export function applyEnv(raw: Tree, env: Env, problems: ConfigProblem[]): Map<string, string> {
  const origin = new Map<string, string>();
  const leaves = [...walkSpec(ROOT)];
  for (const { path, spec } of leaves) {
    const hit = firstSet(env, spec.env);
    if (!hit) continue;
    const parsed = parseValue(spec, hit[1]);
    if ('error' in parsed) {
      problems.push({ where: `env ${hit[0]}`, path, message: parsed.error });
      continue;
    }
    set(raw, path.split('.'), parsed.ok);
    origin.set(path, hit[0]);
  }
  // The backend in use always gets its section, so its conventional variables can fill it.
  const backend = get(raw, ['kek', 'backend']);
  if (backend === 'vault' || backend === 'aws_kms') set(raw, ['kek', backend], get(raw, ['kek', backend]) ?? {});
  for (const { path, spec } of leaves) {
    const keys = path.split('.');
    if (get(raw, keys) !== undefined || get(raw, keys.slice(0, -1)) === undefined) continue;
    const hit = firstSet(env, spec.envFallback);
    if (!hit) continue;
    const parsed = parseValue(spec, hit[1]);
    if ('error' in parsed) {
      problems.push({ where: `env ${hit[0]}`, path, message: parsed.error });
      continue;
    }
    set(raw, keys, parsed.ok);
    origin.set(path, hit[0]);
  }
  return origin;
}

/** Every variable the loader reads, for docs and tests. */
export function envVariables(): { path: string; name: string; fallback: boolean }[] {
  const out: { path: string; name: string; fallback: boolean }[] = [];
  for (const { path, spec } of walkSpec(ROOT)) {
    for (const name of spec.env ?? []) out.push({ path, name, fallback: false });
    for (const name of spec.envFallback ?? []) out.push({ path, name, fallback: true });
  }
  return out;
}
