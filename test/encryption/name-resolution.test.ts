// When the proxy must read where configured table names resolve in a session,
// and what it refuses meanwhile (the integration test, search-path.int.test.ts,
// runs it against real servers).
import { describe, expect, it } from 'vitest';
import { NameResolution, STALE_MS } from '../../src/encryption/name-resolution.js';
import { table } from '../helpers/encrypted-proxy.js';

const I = 0x49;
const T = 0x54;

function fresh(tables = [table('public.webhook', ['secret']), table('public.note', ['body']), table('tenant.note', ['token']), table('app.only', ['x'])], now = () => 0) {
  return new NameResolution(tables, now);
}

describe('NameResolution', () => {
  it('must be read before the first check; then a name resolving as the analysis assumed passes', () => {
    const r = fresh();
    expect(r.needsRefresh).toBe(true);
    expect(r.check(['webhook'], false)?.message).toMatch(/not known here/);
    r.update([['webhook', 'public', false], ['note', 'public', false], ['only', 'app', false]]);
    expect(r.needsRefresh).toBe(false);
    expect(r.check(['webhook'], false)).toBeUndefined();
    expect(r.check(['only'], false)).toBeUndefined();
    expect(r.check([], true)).toBeUndefined(); // nothing written through a name: nothing to check
  });

  it('refuses a name that resolves to another schema, naming the configured table and suggesting to qualify', () => {
    const r = fresh();
    r.update([['webhook', 'tenant', false], ['note', 'tenant', false], ['only', null, false]]);
    const e = r.check(['webhook'], false)!;
    expect(e).toMatchObject({ code: '0A000', reason: 'ambiguous_table' });
    expect(e.message).toContain('"webhook"');
    expect(e.message).toContain('public.webhook');
    expect(e.hint).toMatch(/qualify/i);
    expect(r.check(['only'], false)).toBeUndefined(); // no such relation: the server reports that itself
    // Tables unknown (EXECUTE of an SQL prepared statement): any divergence refuses.
    expect(r.check(undefined, false)).toBeDefined();
    r.update([['webhook', 'public', false], ['note', 'public', false], ['only', 'app', false]]);
    expect(r.check(undefined, false)).toBeUndefined();
  });

  it('a message that changes the search_path is refused together with its write, and dirties the resolution until idle again', () => {
    const r = fresh();
    r.update([['webhook', 'public', true], ['note', 'public', true], ['only', 'app', true]]);
    expect(r.check(['webhook'], true)?.message).toMatch(/may change the search_path/);
    r.invalidate();
    expect(r.wantsRead(['webhook'])).toBe(true);
    r.update([['webhook', 'public', true], ['note', 'public', true], ['only', 'app', true]]);
    // Still in the transaction that changed it: read again after each reply (a rollback can undo it).
    r.readyForQuery(T);
    expect(r.wantsRead(['webhook'])).toBe(true);
    r.update([['webhook', 'public', true], ['note', 'public', true], ['only', 'app', true]]);
    r.readyForQuery(I);
    expect(r.wantsRead(['webhook'])).toBe(true);
    r.update([['webhook', 'public', true], ['note', 'public', true], ['only', 'app', true]]);
    r.readyForQuery(I);
    expect(r.wantsRead(['webhook'])).toBe(false);
  });

  it('a search_path / role ParameterStatus dirties it; other parameters do not', () => {
    const r = fresh();
    r.update([['webhook', 'public', true]]);
    r.serverParameter('application_name');
    expect(r.needsRefresh).toBe(false);
    for (const p of ['search_path', 'session_authorization', 'role']) {
      r.serverParameter(p);
      expect(r.needsRefresh).toBe(true);
      r.update([['webhook', 'public', true]]);
    }
  });

  it('is read again after STALE_MS (other sessions\' DDL), without refusing meanwhile', () => {
    let now = 0;
    const r = fresh(undefined, () => now);
    r.update([['webhook', 'public', true]]);
    now += STALE_MS;
    expect(r.needsRefresh).toBe(true);
    expect(r.check(['webhook'], false)).toBeUndefined();
  });

  it('without search_path reports (before Postgres 18), a name configured in several schemas is read again after every statement run', () => {
    const r = fresh();
    r.update([['webhook', 'public', false], ['note', 'public', false]]);
    expect(r.wantsRead(['note'])).toBe(false);
    r.statementSent();
    expect(r.wantsRead(['note'])).toBe(true);
    expect(r.check(['note'], false)?.message).toMatch(/not known here/);
    expect(r.wantsRead(['webhook'])).toBe(false); // configured once: a wrong guess cannot leave plaintext
    r.update([['webhook', 'public', false], ['note', 'public', false]]);
    expect(r.check(['note'], false)).toBeUndefined();
    // With reports (Postgres 18) changes are seen as they happen.
    r.update([['webhook', 'public', true], ['note', 'public', true]]);
    r.statementSent();
    expect(r.wantsRead(['note'])).toBe(false);
  });

  it('recognises the statements that can move names', () => {
    for (const s of [
      'SET search_path TO tenant',
      "select pg_catalog.set_config('search_path', 'x', false)",
      'SET ROLE app',
      'set local role app',
      'SET SESSION AUTHORIZATION bob',
      'RESET ALL',
      'reset role',
      'DISCARD ALL',
      'DISCARD TEMP',
    ]) {
      expect(NameResolution.changesPath(s), s).toBe(true);
    }
    for (const s of ['INSERT INTO users (role) VALUES ($1)', 'SELECT 1', 'SET statement_timeout = 5']) expect(NameResolution.changesPath(s), s).toBe(false);
  });

  it('asks the server with every configured name as a literal, quoted for to_regclass', () => {
    const r = fresh([table('public.we\'ird', ['x']), table('public.Users', ['y'])]);
    const q = r.query();
    expect(q).toContain("(E'we''ird')");
    expect(q).toContain("(E'Users')");
    expect(q).toContain('pg_catalog.to_regclass(pg_catalog.quote_ident(t.name))');
    expect(fresh([]).enabled).toBe(false);
  });
});
