import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, defaultConfig, loadConfig, parseConfig } from '../../src/config/load.js';

const KEK = { VIGILO_CMEK_LOCAL_KEK_PATH: '/keys/kek.key' };

/** The problems a text produces, as the lines of the error message. */
function problems(text: string, env: Record<string, string> = KEK): string[] {
  try {
    parseConfig(text, 'config.yaml', env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => (p.path ? `${p.where}: ${p.path}: ${p.message}` : `${p.where}: ${p.message}`));
  }
  throw new Error('expected a ConfigError');
}

describe('defaults', () => {
  it('an empty file gives the documented defaults', () => {
    const c = parseConfig('', 'config.yaml', KEK);
    expect(c).toEqual({ ...defaultConfig(), source: 'config.yaml', kek: { ...defaultConfig().kek, local: { path: '/keys/kek.key', previous: [] } } });
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 6432 });
    expect(c.upstream).toEqual({ host: '127.0.0.1', port: 5432, tls: 'prefer' });
    expect(c.workers).toBe(1);
    expect(c.shutdownGraceSeconds).toBe(30);
    expect(c.kek.dek).toEqual({ maxAgeSeconds: 300, maxUses: 100000, cacheSize: 10000, cacheTtlSeconds: 3600, valueCacheSize: 10000 });
    expect(c.decryptUnmapped).toBe('off');
    expect(c.admin.roles).toEqual(['postgres']);
    expect(c.log.level).toBe('info');
    expect(c.tls).toBeUndefined();
    expect(c.metrics).toBeUndefined();
    expect(c.kek.vault).toBeUndefined();
    expect(c.kek.awsKms).toBeUndefined();
  });

  it('a comment-only file and explicit nulls also give the defaults', () => {
    expect(parseConfig('# nothing\n', 'c', KEK).listen.port).toBe(6432);
    expect(parseConfig('listen:\nmetrics:\n', 'c', KEK).metrics).toBeUndefined();
  });

  it('fills the unset keys of a partly written section', () => {
    const c = parseConfig('listen: { port: 7000 }\nmetrics: {}\nkek: { vault: { addr: https://v, token: t, key_name: k } }\n', 'c', KEK);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 7000 });
    expect(c.metrics).toEqual({ host: '127.0.0.1', port: 9187 });
    expect(c.kek.vault?.mount).toBe('transit');
  });

  it('reads every key', () => {
    const text = `
listen: { host: 0.0.0.0, port: 0 }
upstream: { host: db, port: 5433, tls: verify-full, ca_file: /ca.pem }
tls: { cert: /c.pem, key: /k.pem }
workers: 4
shutdown_grace_seconds: 2.5
kek:
  backend: vault
  local: { path: /a.key, previous: [/b.key, /c.key] }
  vault: { addr: https://vault:8200, token: s.x, key_name: pgcmek, namespace: ns, ca_file: /vca.pem, mount: tr }
  aws_kms: { key_id: alias/k, region: eu-west-1, endpoint: http://localhost:4566 }
  dek: { max_age_seconds: 0, max_uses: 1, cache_size: 0, cache_ttl_seconds: 0, value_cache_size: 5 }
decrypt_unmapped: prefixed
admin: { roles: [ops, postgres] }
log: { level: debug }
metrics: { host: 0.0.0.0, port: 9999 }
`;
    const c = parseConfig(text, 'c', {});
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 0 });
    expect(c.upstream).toEqual({ host: 'db', port: 5433, tls: 'verify-full', caFile: '/ca.pem' });
    expect(c.tls).toEqual({ cert: '/c.pem', key: '/k.pem' });
    expect(c.workers).toBe(4);
    expect(c.shutdownGraceSeconds).toBe(2.5);
    expect(c.kek).toEqual({
      backend: 'vault',
      local: { path: '/a.key', previous: ['/b.key', '/c.key'] },
      vault: { addr: 'https://vault:8200', token: 's.x', keyName: 'pgcmek', namespace: 'ns', caFile: '/vca.pem', mount: 'tr' },
      awsKms: { keyId: 'alias/k', region: 'eu-west-1', endpoint: 'http://localhost:4566' },
      dek: { maxAgeSeconds: 0, maxUses: 1, cacheSize: 0, cacheTtlSeconds: 0, valueCacheSize: 5 },
    });
    expect(c.decryptUnmapped).toBe('prefixed');
    expect(c.admin.roles).toEqual(['ops', 'postgres']);
    expect(c.log.level).toBe('debug');
    expect(c.metrics).toEqual({ host: '0.0.0.0', port: 9999 });
  });
});

describe('every problem names its key and its line', () => {
  it('wrong types', () => {
    const text = ['listen:', '  host: 12', '  port: "6432"', 'kek:', '  local:', '    path: [a]', 'workers: 0', 'admin: { roles: postgres }'].join('\n');
    expect(problems(text)).toEqual([
      'config.yaml:2: listen.host: expected a string, got 12 (quote it: "12")',
      'config.yaml:3: listen.port: expected an integer from 0 to 65535, got "6432"',
      'config.yaml:6: kek.local.path: expected a string, got a list',
      'config.yaml:7: workers: expected an integer from 1 to 1024, got 0',
      'config.yaml:8: admin.roles: expected a list of strings, got "postgres"',
    ]);
  });

  it('the brief\'s example message', () => {
    const text = 'listen: {}\n\n\n\n\n\n\n\n\n\nkek:\n  local: { path: 5 }\n';
    expect(problems(text)).toEqual(['config.yaml:12: kek.local.path: expected a string, got 5 (quote it: "5")']);
  });

  it('ports out of range, negative numbers, bad enums', () => {
    const text = [
      'listen: { port: 65536 }',
      'upstream: { port: -1, tls: maybe }',
      'shutdown_grace_seconds: -3',
      'decrypt_unmapped: false',
      'log: { level: verbose }',
      'kek: { dek: { max_uses: 0, cache_size: 1.5 } }',
    ].join('\n');
    expect(problems(text)).toEqual([
      'config.yaml:1: listen.port: expected an integer from 0 to 65535, got 65536',
      'config.yaml:2: upstream.port: expected an integer from 0 to 65535, got -1',
      'config.yaml:2: upstream.tls: expected one of disable, prefer, require, verify-full, got "maybe"',
      'config.yaml:3: shutdown_grace_seconds: expected a number >= 0, got -3',
      'config.yaml:4: decrypt_unmapped: expected one of off, prefixed, got false',
      'config.yaml:5: log.level: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"',
      'config.yaml:6: kek.dek.max_uses: expected an integer >= 1, got 0',
      'config.yaml:6: kek.dek.cache_size: expected an integer >= 0, got 1.5',
    ]);
  });

  it('never echoes a secret', () => {
    expect(problems('kek: { vault: { addr: a, key_name: k, token: 123456789 } }\n')).toEqual([
      'config.yaml:1: kek.vault.token: expected a string, got a number (quote it)',
    ]);
  });

  it('a section that is not a map, empty strings', () => {
    expect(problems('listen: 6432\nupstream: { host: "" }\n')).toEqual([
      'config.yaml:1: listen: expected a map, got 6432',
      'config.yaml:2: upstream.host: must not be empty',
    ]);
  });

  it('tls needs both cert and key', () => {
    expect(problems('\ntls: { cert: /c.pem }\n')).toEqual(['config.yaml:2: tls.key: required when tls is set']);
    expect(problems('tls:\n  cert: /c.pem\n  key:\n')).toEqual(['config.yaml:1: tls.key: required when tls is set']);
  });

  it('YAML syntax errors and duplicate keys name the line', () => {
    expect(problems('listen:\n  host: [a\nport: 1\n')[0]).toMatch(/^config\.yaml:\d+: YAML syntax: /);
    expect(problems('listen: {}\nlisten: {}\n')).toEqual(['config.yaml:2: listen: duplicate key (first on line 1)']);
    expect(problems('kek:\n  local:\n    path: /a\n    path: /b\n')).toEqual(['config.yaml:4: kek.local.path: duplicate key (first on line 3)']);
  });

  it('a top-level list is rejected', () => {
    expect(problems('- a\n- b\n')).toEqual(['config.yaml:1: expected a map, got a list']);
  });

  it('lists every problem in one error, in file order', () => {
    try {
      parseConfig('workers: x\nlisten: { port: x }\n', 'config.yaml', KEK);
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toBe(
        '2 configuration problems:\n' +
          '  config.yaml:1: workers: expected an integer from 1 to 1024, got "x"\n' +
          '  config.yaml:2: listen.port: expected an integer from 0 to 65535, got "x"',
      );
    }
  });

  it('a single problem is a single line', () => {
    expect(() => parseConfig('workers: x\n', 'config.yaml', KEK)).toThrow(/^config\.yaml:1: workers: expected an integer from 1 to 1024, got "x"$/);
  });
});

describe('unknown keys', () => {
  it('are rejected with a suggestion when one is close', () => {
    const text = ['lisen: {}', 'upstream: { hots: db }', 'kek:', '  backed: local', '  local: { paht: /k }', 'shutdown-grace-seconds: 3', 'frobnicate: 1'].join('\n');
    expect(problems(text)).toEqual([
      'config.yaml:1: lisen: unknown key (did you mean "listen"?)',
      'config.yaml:2: upstream.hots: unknown key (did you mean "host"?)',
      'config.yaml:4: kek.backed: unknown key (did you mean "backend"?)',
      'config.yaml:5: kek.local.paht: unknown key (did you mean "path"?)',
      'config.yaml:6: shutdown-grace-seconds: unknown key (did you mean "shutdown_grace_seconds"?)',
      expect.stringMatching(/^config\.yaml:7: frobnicate: unknown key \(expected one of: listen, upstream, tls, workers, .*metrics\)$/),
    ]);
  });

  it('in column options too', () => {
    expect(problems('encrypted:\n  webhook:\n    secret: { serchable: true }\n')).toEqual([
      'config.yaml:3: encrypted.webhook.secret.serchable: unknown key (did you mean "searchable"?)',
    ]);
  });
});

describe('KEK requirements', () => {
  it('local backend needs a path: the message names the key and the variable', () => {
    expect(problems('listen: {}\n', {})).toEqual([
      'config.yaml: kek.local.path: required when kek.backend is local: set kek.local.path in the config file or VIGILO_CMEK_LOCAL_KEK_PATH',
    ]);
    expect(problems('kek:\n  backend: local\n', {})).toEqual([
      'config.yaml:1: kek.local.path: required when kek.backend is local: set kek.local.path in the config file or VIGILO_CMEK_LOCAL_KEK_PATH',
    ]);
  });

  it('an invalid path is reported once, not also as missing', () => {
    expect(problems('kek: { local: { path: 3 } }\n', {})).toHaveLength(1);
  });

  it('vault backend needs addr, token and key name', () => {
    expect(problems('kek:\n  backend: vault\n', {})).toEqual([
      'config.yaml:1: kek.vault.addr: required when kek.backend is vault: set kek.vault.addr in the config file or VIGILO_CMEK_VAULT_ADDR (or VAULT_ADDR)',
      'config.yaml:1: kek.vault.token: required when kek.backend is vault: set kek.vault.token in the config file or VIGILO_CMEK_VAULT_TOKEN (or VAULT_TOKEN)',
      'config.yaml:1: kek.vault.key_name: required when kek.backend is vault: set kek.vault.key_name in the config file or VIGILO_CMEK_VAULT_KEY_NAME',
    ]);
  });

  it('a configured but unused backend section must be complete (it stays readable)', () => {
    expect(problems('kek:\n  local: { path: /k }\n  aws_kms: { region: eu-west-1 }\n', {})).toEqual([
      'config.yaml:3: kek.aws_kms.key_id: required when kek.aws_kms is configured: set kek.aws_kms.key_id in the config file or VIGILO_CMEK_AWS_KMS_KEY_ID',
    ]);
  });

  it('a backend chosen in the environment says so', () => {
    expect(problems('', { VIGILO_CMEK_BACKEND: 'aws_kms' })).toEqual([
      'config.yaml: kek.aws_kms.key_id: required when kek.backend is aws_kms (from VIGILO_CMEK_BACKEND): set kek.aws_kms.key_id in the config file or VIGILO_CMEK_AWS_KMS_KEY_ID',
    ]);
  });
});

describe('environment overrides', () => {
  it('VIGILO_CMEK_* override the file', () => {
    const text = 'kek:\n  backend: local\n  local: { path: /file.key }\n  vault: { addr: https://file, token: ft, key_name: fk }\n  aws_kms: { key_id: file-key }\nlog: { level: warn }\n';
    const c = parseConfig(text, 'c', {
      VIGILO_CMEK_BACKEND: 'vault',
      VIGILO_CMEK_LOCAL_KEK_PATH: '/env.key',
      VIGILO_CMEK_VAULT_ADDR: 'https://env',
      VIGILO_CMEK_VAULT_TOKEN: 'et',
      VIGILO_CMEK_VAULT_KEY_NAME: 'ek',
      VIGILO_CMEK_AWS_KMS_KEY_ID: 'env-key',
      PGCMEK_LOG_LEVEL: 'trace',
    });
    expect(c.kek.backend).toBe('vault');
    expect(c.kek.local.path).toBe('/env.key');
    expect(c.kek.vault).toMatchObject({ addr: 'https://env', token: 'et', keyName: 'ek' });
    expect(c.kek.awsKms?.keyId).toBe('env-key');
    expect(c.log.level).toBe('trace');
  });

  it('VIGILO_ names win over the conventional ones', () => {
    const c = parseConfig('', 'environment', {
      VIGILO_CMEK_BACKEND: 'vault',
      VIGILO_CMEK_VAULT_ADDR: 'https://vigilo',
      VAULT_ADDR: 'https://plain',
      VIGILO_CMEK_VAULT_TOKEN: 'vt',
      VAULT_TOKEN: 'pt',
      VIGILO_CMEK_VAULT_KEY_NAME: 'k',
      VAULT_NAMESPACE: 'ns',
      VAULT_CACERT: '/ca.pem',
    });
    expect(c.kek.vault).toEqual({ addr: 'https://vigilo', token: 'vt', keyName: 'k', namespace: 'ns', caFile: '/ca.pem', mount: 'transit' });
    // Vault chosen and no local path: local is simply not configured.
    expect(c.kek.local).toEqual({ previous: [] });
  });

  it('conventional variables fill what the file leaves unset, never override it', () => {
    const text = 'kek:\n  backend: vault\n  vault: { addr: https://file, key_name: k }\n';
    const c = parseConfig(text, 'c', { VAULT_ADDR: 'https://ambient', VAULT_TOKEN: 'from-env' });
    expect(c.kek.vault).toMatchObject({ addr: 'https://file', token: 'from-env' });
  });

  it('an ambient VAULT_ADDR does not turn a local setup into a Vault one', () => {
    const c = parseConfig('', 'c', { ...KEK, VAULT_ADDR: 'https://ambient', VAULT_TOKEN: 't', AWS_REGION: 'eu-west-1' });
    expect(c.kek.vault).toBeUndefined();
    expect(c.kek.awsKms).toBeUndefined();
  });

  it('AWS_REGION fills the KMS region', () => {
    const c = parseConfig('', 'c', { VIGILO_CMEK_BACKEND: 'aws_kms', VIGILO_CMEK_AWS_KMS_KEY_ID: 'alias/x', AWS_REGION: 'eu-central-1' });
    expect(c.kek.awsKms).toEqual({ keyId: 'alias/x', region: 'eu-central-1', endpoint: undefined });
  });

  it('empty variables count as unset', () => {
    const c = parseConfig('kek: { local: { path: /file.key } }\n', 'c', { VIGILO_CMEK_LOCAL_KEK_PATH: '', VIGILO_CMEK_BACKEND: '' });
    expect(c.kek.local.path).toBe('/file.key');
    expect(c.kek.backend).toBe('local');
  });

  it('a bad value names the variable and the key', () => {
    expect(problems('', { ...KEK, VIGILO_CMEK_BACKEND: 'hsm', PGCMEK_LOG_LEVEL: 'loud' })).toEqual([
      'env VIGILO_CMEK_BACKEND: kek.backend: expected one of local, vault, aws_kms, got "hsm"',
      'env PGCMEK_LOG_LEVEL: log.level: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"',
    ]);
  });

  it('the environment alone is a complete configuration', () => {
    const c = parseConfig('', 'environment', { VIGILO_CMEK_LOCAL_KEK_PATH: 'rel/kek.key' });
    expect(c.kek.local.path).toBe('rel/kek.key'); // env paths are used as given (relative to the cwd)
  });
});

describe('loadConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgcmek-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('resolves relative paths in the file against the file\'s directory', () => {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'kek:\n  local: { path: ./kek.key, previous: [old/kek.key, /abs.key] }\ntls: { cert: c.pem, key: k.pem }\n');
    const c = loadConfig(file, {});
    expect(c.source).toBe(file);
    expect(c.kek.local).toEqual({ path: join(dir, 'kek.key'), previous: [join(dir, 'old/kek.key'), '/abs.key'] });
    expect(c.tls).toEqual({ cert: join(dir, 'c.pem'), key: join(dir, 'k.pem') });
    expect(loadConfig(file, { VIGILO_CMEK_LOCAL_KEK_PATH: 'rel.key' }).kek.local.path).toBe('rel.key');
  });

  it('a missing file is a ConfigError naming it', () => {
    const file = join(dir, 'nope.yaml');
    expect(() => loadConfig(file, KEK)).toThrow(ConfigError);
    expect(() => loadConfig(file, KEK)).toThrow(`${file}: cannot read the config file: no such file`);
  });

  it('messages use the path as given', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'workers: many\n');
    expect(() => loadConfig(file, KEK)).toThrow(`${file}:1: workers:`);
  });
});
