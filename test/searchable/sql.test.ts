import { describe, expect, it } from 'vitest';
import { indexAdvice, quoteIdent, textArrayLiteral, tokenPartSql } from '../../src/searchable/sql.js';
import { keyNameOf, searchableColumnsOf } from '../../src/searchable/types.js';

describe('textArrayLiteral', () => {
  it('quotes every element and escapes quotes and backslashes', () => {
    const vals = ['cmek:v1:AQ|x|gA==', '', 'a,b', 'q"uote', 'back\\slash', '{}', 'NULL'].map((s) => Buffer.from(s));
    expect(textArrayLiteral(vals).toString()).toBe('{"cmek:v1:AQ|x|gA==","","a,b","q\\"uote","back\\\\slash","{}","NULL"}');
  });

  it('an empty list is {}', () => {
    expect(textArrayLiteral([]).toString()).toBe('{}');
  });
});

describe('SQL helpers', () => {
  it('tokenPartSql picks the third part of envelopes and keeps plaintext', () => {
    expect(tokenPartSql('"c"')).toBe(`(CASE WHEN starts_with("c", 'cmek:v1:') THEN split_part("c", '|', 3) ELSE "c" END)`);
  });

  it('indexAdvice names and quotes', () => {
    const a = indexAdvice({ schema: 'public', table: 'api_token', column: 'token_hash' });
    expect(a.lookup).toBe('CREATE INDEX CONCURRENTLY IF NOT EXISTS "api_token_token_hash_cmek_idx" ON "public"."api_token" ("token_hash")');
    expect(a.unique).toContain('CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "api_token_token_hash_cmek_token_key" ON "public"."api_token" ((CASE');
    const long = indexAdvice({ schema: 's', table: 't'.repeat(60), column: 'c'.repeat(60) });
    expect(Buffer.byteLength(long.unique.split(' ')[6]!) - 2).toBeLessThanOrEqual(63);
  });

  it('quoteIdent doubles quotes', () => {
    expect(quoteIdent('a"b')).toBe('"a""b"');
  });
});

describe('key names and configured columns', () => {
  it('one spelling per column; groups are separate', () => {
    expect(keyNameOf({ schema: 'public', table: 'api_token', column: 'token_hash' })).toBe('column:"public"."api_token"."token_hash"');
    expect(keyNameOf({ schema: 'a.b', table: 'c', column: 'd' })).not.toBe(keyNameOf({ schema: 'a', table: 'b.c', column: 'd' }));
    expect(keyNameOf({ schema: 's', table: 't', column: 'c', keyGroup: 'tokens' })).toBe('group:tokens');
  });

  it('searchableColumnsOf keeps only searchable columns, with encrypt_empty and key groups', () => {
    const col = (column: string, searchable: boolean, encryptEmpty = false) => ({ column, searchable, encryptEmpty, onDecryptError: 'error' as const });
    const cols = searchableColumnsOf(
      [{ schema: 'public', table: 't', columns: [col('a', true), col('b', false), col('c', true, true)] }],
      { 'public.t.c': 'g' },
    );
    expect(cols).toEqual([
      { schema: 'public', table: 't', column: 'a', encryptEmpty: false },
      { schema: 'public', table: 't', column: 'c', encryptEmpty: true, keyGroup: 'g' },
    ]);
  });
});
