// Shared policy, catalog and helpers for the SQL analysis tests.
import { expect } from 'vitest';
import type { ColumnPolicy, TablePolicy } from '../../src/config/types.js';
import { SqlAnalyzer, type RejectPlan, type RewritePlan, type SqlPlan } from '../../src/sql/index.js';

export function col(column: string, extra: Partial<ColumnPolicy> = {}): ColumnPolicy {
  return { column, searchable: false, onDecryptError: 'error', encryptEmpty: false, ...extra };
}

export const TABLES: TablePolicy[] = [
  { schema: 'public', table: 'users', columns: [col('ssn'), col('email', { searchable: true, keyGroup: 'email' }), col('notes', { encryptEmpty: true })] },
  { schema: 'app', table: 'secrets', columns: [col('secret'), col('doc', { jsonPaths: [['card', 'number'], ['pin']] })] },
  { schema: 'public', table: 'app_model', columns: [col('secret'), col('token', { searchable: true })] },
  { schema: 'public', table: 'Mixed Case', columns: [col('Secret Col')] },
  { schema: 'public', table: 'archive', columns: [col('ssn'), col('email', { searchable: true, keyGroup: 'email' })] },
];

export const CATALOG: Record<string, string[]> = {
  'public.users': ['id', 'name', 'ssn', 'email', 'notes'],
  'app.secrets': ['id', 'secret', 'doc', 'label'],
  'public.app_model': ['id', 'secret', 'token', 'title'],
  'public.Mixed Case': ['id', 'Secret Col'],
  'public.archive': ['id', 'ssn', 'email'],
};

export function makeAnalyzer(catalog: Record<string, string[] | undefined> = CATALOG, opts: { cacheSize?: number; shapeCacheSize?: number } = {}): SqlAnalyzer {
  return new SqlAnalyzer({ tables: TABLES, columnsOf: (s, t) => catalog[`${s}.${t}`], ...opts });
}

export function expectPlan(p: SqlPlan): RewritePlan {
  if (p.kind !== 'plan') throw new Error(`expected a plan, got ${JSON.stringify(p)}`);
  return p;
}

export function expectReject(p: SqlPlan, reason?: string): RejectPlan['error'] {
  if (p.kind !== 'reject') throw new Error(`expected a rejection, got ${p.kind}: ${JSON.stringify(p, (_k, v) => (v instanceof Map ? [...v] : v))}`);
  if (reason) expect(p.error.reason).toBe(reason);
  return p.error;
}

/** The bytes a literal site covers, as text. */
export function slice(sql: string, r: { start: number; end: number }): string {
  return Buffer.from(sql, 'utf8').subarray(r.start, r.end).toString('utf8');
}

/** Compact view of a plan's value sites: `[param|literal, table.column, text]`. */
export function sites(sql: string, p: RewritePlan): string[] {
  const out: string[] = [];
  for (const [n, s] of p.params) out.push(`$${n}${s.elements ? '[]' : ''} -> ${s.target.table}.${s.target.column}`);
  for (const l of p.literals) out.push(`${slice(sql, l)} (${l.value}) -> ${l.target.table}.${l.target.column}`);
  return out;
}
