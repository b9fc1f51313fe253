// The example config parses, and the README's configuration reference stays in
// sync with the schema: every key, its default and its environment variables.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { envVariables } from '../../src/config/env.js';
import { parseConfig } from '../../src/config/load.js';
import { COLUMN_OPTIONS, ROOT, walkSpec } from '../../src/config/schema.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const readme = readFileSync(`${root}/README.md`, 'utf8');
const reference = readme.slice(readme.indexOf('## Configuration reference'), readme.indexOf('## Stored format'));

/** README table rows by their first cell: `| \`key\` | default | env | meaning |`. */
function rows(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of reference.split('\n')) {
    const m = /^\| `([^`]+)` \|(.*)\|$/.exec(line);
    if (m) out.set(m[1], m[2].split(' | ').map((c) => c.trim()));
  }
  return out;
}

const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

function format(v: unknown): string {
  if (v === undefined) return '—';
  if (Array.isArray(v)) return `\`[${v.join(', ')}]\``;
  if (typeof v === 'object' && v !== null) return Object.keys(v).length === 0 || Array.isArray(v) ? '`{}`' : '?';
  return `\`${String(v)}\``;
}

describe('config.yaml (the example)', () => {
  it('parses, with the demo tables', () => {
    const c = parseConfig(readFileSync(`${root}/config.yaml`, 'utf8'), 'config.yaml', {}, { baseDir: root });
    expect(c.kek.local.path).toBe(`${root}kek.key`);
    expect(c.encrypted.map((t) => `${t.schema}.${t.table}`)).toEqual([
      'public.integrations_integrationconnection',
      'public.webhook',
      'public.workspace',
      'public.user_profile',
      'public.api_token',
    ]);
    expect(c.encrypted[0].columns.map((x) => x.column)).toEqual(['slack_token', 'jira_token', 'linear_key', 'git_token', 'pagerduty_key', 'twilio_auth_token']);
    expect(c.encrypted[2].columns[0].jsonPaths).toEqual([['smtp', 'password']]);
    expect(c.encrypted[4].columns[0].searchable).toBe(true);
  });
});

describe('README configuration reference', () => {
  const table = rows();
  const leaves = [...walkSpec(ROOT)].filter(({ spec }) => spec.kind !== 'map');

  it('has a row for every key in the schema, and no others', () => {
    expect([...table.keys()].sort()).toEqual(
      [...leaves.map((l) => l.path), ...Object.keys(COLUMN_OPTIONS.fields)].sort(),
    );
  });

  it('documents every column option', () => {
    for (const key of Object.keys(COLUMN_OPTIONS.fields)) expect(table.has(key), key).toBe(true);
  });

  it('names every environment variable in its key\'s row', () => {
    for (const { path, name, fallback } of envVariables()) {
      const env = table.get(path)?.[1] ?? '';
      expect(env, `${path}: ${name}`).toContain(fallback ? `fallback \`${name}\`` : `\`${name}\``);
    }
  });

  it('states the real defaults', () => {
    // Every optional section present, so every default is materialised.
    const c = parseConfig(
      'tls: { cert: c, key: k }\nmetrics: {}\nkek: { vault: { addr: a, token: t, key_name: k }, aws_kms: { key_id: k } }\n',
      'c',
      { VIGILO_CMEK_LOCAL_KEK_PATH: 'k' },
    ) as unknown as Record<string, unknown>;
    const noDefault = new Set(['tls.cert', 'tls.key', 'kek.local.path', 'kek.vault.addr', 'kek.vault.token', 'kek.vault.key_name', 'kek.aws_kms.key_id']);
    for (const { path } of leaves) {
      const value = noDefault.has(path) ? undefined : path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)?.[camel(k)], c);
      const expected = path === 'encrypted' ? '`{}`' : format(value);
      expect(table.get(path)?.[0], path).toBe(expected);
    }
    const col = parseConfig('encrypted: { t: [c] }\n', 'c', { VIGILO_CMEK_LOCAL_KEK_PATH: 'k' }).encrypted[0].columns[0] as unknown as Record<string, unknown>;
    for (const key of Object.keys(COLUMN_OPTIONS.fields)) expect(table.get(key)?.[0], key).toBe(format(col[camel(key)]));
  });
});
