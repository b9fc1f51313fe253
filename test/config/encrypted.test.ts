import { describe, expect, it } from 'vitest';
import { parseJsonPaths, parseTableName } from '../../src/config/encrypted.js';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import type { TablePolicy } from '../../src/config/types.js';

const ENV = { VIGILO_CMEK_LOCAL_KEK_PATH: '/k' };
const parse = (text: string): TablePolicy[] => parseConfig(text, 'config.yaml', ENV).encrypted;
const col = (column: string, extra: object = {}) => ({ column, searchable: false, onDecryptError: 'error', encryptEmpty: false, ...extra });

function problems(text: string): string[] {
  try {
    parseConfig(text, 'config.yaml', ENV);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message.split('\n').filter((l) => !l.endsWith('problems:')).map((l) => l.trim());
  }
  throw new Error('expected a ConfigError');
}

describe('encrypted: both shapes', () => {
  it('a list of column names', () => {
    expect(parse('encrypted:\n  public.webhook: [secret, signing_key]\n')).toEqual([
      { schema: 'public', table: 'webhook', columns: [col('secret'), col('signing_key')] },
    ]);
  });

  it('a map of column -> options, with null and empty options', () => {
    const text = `
encrypted:
  public.workspace:
    settings: { json_paths: ["smtp.password", "oauth.client_secret"] }
  public.api_token:
    token_hash: { searchable: true }
  user_profile:
    totp_secret:
    backup_codes: {}
    note: { on_decrypt_error: ciphertext, encrypt_empty: true }
`;
    expect(parse(text)).toEqual([
      { schema: 'public', table: 'workspace', columns: [col('settings', { jsonPaths: [['smtp', 'password'], ['oauth', 'client_secret']] })] },
      { schema: 'public', table: 'api_token', columns: [col('token_hash', { searchable: true })] },
      {
        schema: 'public',
        table: 'user_profile',
        columns: [col('totp_secret'), col('backup_codes'), col('note', { onDecryptError: 'ciphertext', encryptEmpty: true })],
      },
    ]);
  });

  it('a bare table name means schema public; names keep their case', () => {
    expect(parse('encrypted:\n  Webhook: [Secret]\n  billing.Card: [number]\n')).toEqual([
      { schema: 'public', table: 'Webhook', columns: [col('Secret')] },
      { schema: 'billing', table: 'Card', columns: [col('number')] },
    ]);
  });

  it('SQL double quotes are optional and allow dots in names', () => {
    expect(parse(`encrypted:\n  '"my.schema"."a ""b"""': ['"Col.1"']\n`)).toEqual([
      { schema: 'my.schema', table: 'a "b"', columns: [col('Col.1')] },
    ]);
    expect(parse(`encrypted:\n  '"Webhook"': [secret]\n`)[0]).toMatchObject({ schema: 'public', table: 'Webhook' });
  });

  it('no encrypted section, or an empty one, encrypts nothing', () => {
    expect(parse('')).toEqual([]);
    expect(parse('encrypted:\n')).toEqual([]);
    expect(parse('encrypted: {}\n')).toEqual([]);
  });
});

describe('encrypted: problems', () => {
  it('duplicate columns, in either shape', () => {
    expect(problems('encrypted:\n  webhook: [secret, secret]\n')).toEqual(['config.yaml:2: encrypted.webhook.secret: duplicate column "secret"']);
    expect(problems('encrypted:\n  webhook:\n    secret:\n    secret:\n')).toEqual(['config.yaml:4: encrypted.webhook.secret: duplicate column "secret"']);
    expect(problems(`encrypted:\n  webhook: [secret, '"secret"']\n`)).toEqual(['config.yaml:2: encrypted.webhook."secret": duplicate column "secret"']);
  });

  it('the same table twice under two spellings', () => {
    expect(problems('encrypted:\n  webhook: [a]\n  webhook: [b]\n')).toEqual([
      'config.yaml:3: encrypted.webhook: table listed twice (also as "webhook" on line 2)',
    ]);
    expect(problems('encrypted:\n  webhook: [a]\n  public.webhook: [b]\n')).toEqual([
      'config.yaml:3: encrypted.public.webhook: table listed twice (also as "webhook" on line 2)',
    ]);
  });

  it('searchable cannot be combined with json_paths', () => {
    expect(problems('encrypted:\n  workspace:\n    settings: { json_paths: [a.b], searchable: true }\n')).toEqual([
      'config.yaml:3: encrypted.workspace.settings: searchable cannot be combined with json_paths (deterministic encryption covers whole values only)',
    ]);
  });

  it('bad json_paths', () => {
    expect(problems('encrypted:\n  w:\n    s: { json_paths: [] }\n')).toEqual([
      'config.yaml:3: encrypted.w.s.json_paths: is empty (omit json_paths to encrypt the whole value)',
    ]);
    expect(problems('encrypted:\n  w:\n    s: { json_paths: ["smtp..password"] }\n')[0]).toContain('has an empty segment');
    expect(problems('encrypted:\n  w:\n    s: { json_paths: [smtp, smtp.password] }\n')[0]).toContain('"smtp.password" overlaps "smtp"');
    expect(problems('encrypted:\n  w:\n    s: { json_paths: smtp.password }\n')).toEqual([
      'config.yaml:3: encrypted.w.s.json_paths: expected a list of strings, got "smtp.password"',
    ]);
  });

  it('bad option values', () => {
    expect(problems('encrypted:\n  w:\n    s: { on_decrypt_error: skip, encrypt_empty: 1 }\n')).toEqual([
      'config.yaml:3: encrypted.w.s.on_decrypt_error: expected one of error, ciphertext, got "skip"',
      'config.yaml:3: encrypted.w.s.encrypt_empty: expected true or false, got 1',
    ]);
  });

  it('shapes that are neither a list nor a map', () => {
    expect(problems('encrypted:\n  webhook: secret\n')).toEqual([
      'config.yaml:2: encrypted.webhook: expected a list of column names or a map of column name -> options',
    ]);
    expect(problems('encrypted:\n  webhook:\n')).toEqual([
      'config.yaml:2: encrypted.webhook: lists no columns (expected a list of column names or a map of column name -> options)',
    ]);
    expect(problems('encrypted:\n  webhook: []\n')[0]).toContain('encrypted.webhook: lists no columns');
    expect(problems('encrypted: [webhook]\n')).toEqual(['config.yaml:1: encrypted: expected a map of table name -> columns']);
    expect(problems('encrypted:\n  webhook: [1]\n')).toEqual(['config.yaml:2: encrypted.webhook[0]: expected a string, got 1 (quote it: "1")']);
  });

  it('table names', () => {
    expect(problems('encrypted:\n  a.b.c: [x]\n')).toEqual([
      'config.yaml:2: encrypted.a.b.c: expected "table" or "schema.table" (quote a name that contains a dot)',
    ]);
    expect(problems(`encrypted:\n  ${'t'.repeat(64)}: [x]\n`)[0]).toContain('is longer than 63 bytes');
  });
});

describe('parsers', () => {
  it('parseTableName', () => {
    expect(parseTableName('webhook')).toEqual({ schema: 'public', table: 'webhook' });
    expect(parseTableName('s.t')).toEqual({ schema: 's', table: 't' });
    expect(parseTableName('"a.b".t')).toEqual({ schema: 'a.b', table: 't' });
    expect(parseTableName('"unterminated')).toBe('unterminated double quote');
    expect(parseTableName('.t')).toBe('empty schema name');
    expect(parseTableName('"a"x.t')).toBe('unexpected "x" after a quoted name');
  });

  it('parseJsonPaths', () => {
    expect(parseJsonPaths(['smtp.password'])).toEqual([['smtp', 'password']]);
    expect(parseJsonPaths(['a', 'b.c'])).toEqual([['a'], ['b', 'c']]);
    expect(parseJsonPaths(['a.b', 'a.b'])).toBe('"a.b" is listed twice');
  });
});
