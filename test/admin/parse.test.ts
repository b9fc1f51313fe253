import { describe, expect, it } from 'vitest';
import { commandText } from '../../src/admin/command.js';
import { AdminParseError } from '../../src/admin/errors.js';
import { isAdminCommandText, parseAdminCommand, parseTargetName } from '../../src/admin/parse.js';

const ok = (text: string) => {
  const r = parseAdminCommand(text);
  if (r instanceof AdminParseError) throw new Error(`${text}: ${r.message}`);
  return r;
};
const err = (text: string) => {
  const r = parseAdminCommand(text);
  if (!(r instanceof AdminParseError)) throw new Error(`${text} parsed`);
  return r;
};
const names = (t: unknown) => (t === 'all' ? 'all' : (t as { parts: string[] }[]).map((n) => n.parts.join('|')));

describe('parseAdminCommand', () => {
  it('parses every command, case-insensitively, with or without a semicolon', () => {
    expect(ok('CMEK STATUS')).toEqual({ kind: 'status', targets: [] });
    expect(ok('cmek status webhook;')).toMatchObject({ kind: 'status' });
    expect(names(ok('Cmek Verify public.webhook.secret').targets)).toEqual(['public|webhook|secret']);
    expect(ok('CMEK ENCRYPT EXISTING ALL')).toEqual({ kind: 'encrypt', targets: 'all', dryRun: false });
    expect(ok('cmek encrypt existing webhook.secret batch 1000 dry run ;')).toMatchObject({ kind: 'encrypt', batch: 1000, dryRun: true });
    expect(ok('CMEK ENCRYPT EXISTING t DRY RUN BATCH 5')).toMatchObject({ batch: 5, dryRun: true });
    expect(ok('CMEK ROTATE KEK')).toEqual({ kind: 'rotate', targets: [], dryRun: false });
    expect(ok('CMEK ROTATE KEK ALL BATCH 2000')).toMatchObject({ targets: 'all', batch: 2000 });
    expect(ok('CMEK DECRYPT EXISTING a.b, c.d CONFIRM')).toMatchObject({ kind: 'decrypt', confirm: true });
    expect(names(ok('CMEK DECRYPT EXISTING a.b, c.d CONFIRM').targets)).toEqual(['a|b', 'c|d']);
    expect(ok('CMEK DECRYPT EXISTING a.b DRY RUN')).toMatchObject({ dryRun: true, confirm: false });
  });

  it('folds unquoted names to lower case and keeps quoted ones, with "" escapes', () => {
    expect(names(ok('CMEK STATUS Public.WebHook').targets)).toEqual(['public|webhook']);
    expect(names(ok('CMEK STATUS "App Data"."Users"."Email Addr"').targets)).toEqual(['App Data|Users|Email Addr']);
    expect(names(ok('CMEK STATUS "a""b".c').targets)).toEqual(['a"b|c']);
    expect((ok('CMEK STATUS "X".y') as { targets: { text: string }[] }).targets[0].text).toBe('"X".y');
  });

  it('allows comments and newlines; table names that look like option words', () => {
    expect(ok('/* ops */ CMEK -- backfill\n ENCRYPT EXISTING\n\tt.c')).toMatchObject({ kind: 'encrypt' });
    expect(names(ok('CMEK ENCRYPT EXISTING dry.secret').targets)).toEqual(['dry|secret']);
    expect(names(ok('CMEK STATUS "batch"').targets)).toEqual(['batch']);
  });

  it('reports syntax errors with SQLSTATE 42601 and a 1-based position', () => {
    const e = err('CMEK FROB');
    expect(e.sqlstate).toBe('42601');
    expect(e.position).toBe(6);
    expect(e.message).toContain('"FROB"');
    expect(err('CMEK ENCRYPT EXISTING').message).toMatch(/expected ALL/);
    expect(err('CMEK ENCRYPT t.c BATCH 5').message).toMatch(/near "t"/);
    expect(err('CMEK ENCRYPT EXISTING t.c BATCH').message).toMatch(/BATCH needs/);
    expect(err('CMEK ENCRYPT EXISTING t.c BATCH 0').message).toMatch(/between 1 and/);
    expect(err('CMEK ENCRYPT EXISTING t.c BATCH 5 BATCH 6').message).toMatch(/twice/);
    expect(err('CMEK ENCRYPT EXISTING t.c DRY').message).toMatch(/end of input/);
    expect(err('CMEK ENCRYPT EXISTING t.c CONFIRM').message).toMatch(/near "CONFIRM"/);
    expect(err('CMEK STATUS a.b.c.d').message).toMatch(/too many/);
    expect(err('CMEK STATUS "unterminated').message).toMatch(/unterminated/);
    expect(err('CMEK STATUS t extra').message).toMatch(/near "extra"/);
    expect(err('CMEK STATUS t; CMEK STATUS').message).toMatch(/near "CMEK"/);
  });

  it('refuses DECRYPT EXISTING without CONFIRM', () => {
    const e = err('CMEK DECRYPT EXISTING webhook.secret');
    expect(e.message).toMatch(/CONFIRM/);
    expect(e.hint).toMatch(/DRY RUN/);
  });

  it('prints commands back (audit lines)', () => {
    expect(commandText(ok('cmek encrypt existing "X".y batch 10 dry run'))).toBe('CMEK ENCRYPT EXISTING "X".y BATCH 10 DRY RUN');
    expect(commandText(ok('cmek decrypt existing all confirm'))).toBe('CMEK DECRYPT EXISTING ALL CONFIRM');
    expect(commandText(ok('cmek status'))).toBe('CMEK STATUS');
  });
});

describe('isAdminCommandText / parseTargetName', () => {
  it('recognises CMEK commands and nothing else', () => {
    expect(isAdminCommandText('cmek status')).toBe(true);
    expect(isAdminCommandText('  -- c\n/* x */ CMEK ROTATE KEK')).toBe(true);
    expect(isAdminCommandText('CMEK STATUS "x')).toBe(true);
    expect(isAdminCommandText('SELECT 1')).toBe(false);
    expect(isAdminCommandText('cmekx status')).toBe(false);
    expect(isAdminCommandText('SELECT \'cmek status\'')).toBe(false);
    expect(isAdminCommandText('')).toBe(false);
  });

  it('parses one CLI target', () => {
    expect(parseTargetName('Public."Users".email')).toMatchObject({ parts: ['public', 'Users', 'email'] });
    expect(parseTargetName('a,b')).toBeInstanceOf(AdminParseError);
    expect(parseTargetName('ALL')).toBeInstanceOf(AdminParseError);
  });
});
