// CMEK STATUS: per configured column, how many rows are encrypted, plaintext,
// empty or NULL, and under which KEKs. Counting is done by the server in one
// sequential scan per column (GROUP BY state, KEK header): nothing but the
// counts and one sample envelope per KEK leave the database. The KEK of a
// value is read from its wrapped-DEK header (tag | id_len | id), decoded in
// SQL from the envelope's first part; the sample tells the keyring's describe()
// its printable id and whether it is the primary.
import type { Db } from '../catalog/db.js';
import type { Keyring } from '../crypto/keyring.js';
import { jsonPathLiteral } from './json-paths.js';
import { displayName, qualified, quoteIdent, type ColumnTarget, type LeafPlan } from './plan.js';
import { encryptedPredicate, envelopeText, kekHeaderHex, plaintextPredicate, PREFIX } from './sql.js';

export interface ColumnStatus {
  /** schema.table as displayed. */
  table: string;
  column: string;
  rows: number;
  encrypted: number;
  plaintext: number;
  /** Empty strings, left as they are (encrypt_empty: false). */
  empty: number;
  null: number;
  /** Envelopes per KEK: `local:1a2b...` -> count. */
  keks: { label: string; primary: boolean; count: number }[];
}

export const STATUS_COLUMNS = ['table', 'column', 'rows', 'encrypted', 'plaintext', 'empty', 'null', 'keks'];

/** A stand-in plan for the configured table as a whole (children and partitions included). */
function whole(t: ColumnTarget): LeafPlan | undefined {
  const leaf = t.leaves[0];
  if (!leaf) return undefined;
  return { ...leaf, schema: t.schema, table: t.table };
}

function describeKek(keyring: Keyring, sample: string | null): { label: string; primary: boolean } {
  if (!sample) return { label: 'malformed', primary: false };
  try {
    const d = keyring.describe(sample);
    return { label: `${d.backend}:${d.kekId}`, primary: d.primary };
  } catch {
    return { label: 'malformed', primary: false };
  }
}

export async function columnStatus(db: Db, t: ColumnTarget, keyring: Keyring): Promise<ColumnStatus> {
  const s: ColumnStatus = { table: displayName(t.schema, t.table), column: t.column, rows: 0, encrypted: 0, plaintext: 0, empty: 0, null: 0, keks: [] };
  const p = whole(t);
  if (!p) return s;
  const c = `t.${quoteIdent(p.column)}`;
  const from = `FROM ${qualified(t.schema, t.table)} AS t`;
  const addKeks = (rows: Record<string, unknown>[]) => {
    for (const r of rows) {
      if (r.state !== undefined && r.state !== 'encrypted') continue;
      const d = describeKek(keyring, (r.sample as string | null) ?? null);
      const n = Number(r.n);
      const same = s.keks.find((k) => k.label === d.label);
      if (same) same.count += n;
      else s.keks.push({ ...d, count: n });
    }
  };
  if (p.valueKind === 'json-paths') {
    const { rows } = await db.query(
      `SELECT CASE WHEN ${c} IS NULL THEN 'null' WHEN ${plaintextPredicate(p)} THEN 'plaintext' WHEN ${encryptedPredicate(p)} THEN 'encrypted' ELSE 'null' END AS state,
              pg_catalog.count(*)::int8::text AS n ${from} GROUP BY 1`,
    );
    for (const r of rows) tally(s, String(r.state), Number(r.n));
    const vals = (p.policy.jsonPaths ?? [])
      .map((path) => `SELECT (j #>> '{}') COLLATE "C" AS v FROM pg_catalog.jsonb_path_query(${c}::pg_catalog.jsonb, '${`${jsonPathLiteral(path)} ? (@ starts with "${PREFIX}")`.replace(/'/g, "''")}'::pg_catalog.jsonpath) AS j`)
      .join(' UNION ALL ');
    const keks = await db.query(
      `SELECT ${kekHeaderHex('g.w')} AS kek, pg_catalog.sum(g.n)::int8::text AS n, pg_catalog.min(g.sample) AS sample
         FROM (SELECT pg_catalog.split_part(x.v, '|', 1) AS w, pg_catalog.count(*) AS n, pg_catalog.min(x.v) AS sample
                 ${from} CROSS JOIN LATERAL (${vals}) AS x GROUP BY 1) AS g
        GROUP BY 1`,
    );
    addKeks(keks.rows);
  } else {
    // Per row only cheap work (a LIKE and a split_part to hash on): rows are grouped by their
    // wrapped DEK (one group per DEK, few with DEK reuse); the KEK header is decoded once per group.
    const v = envelopeText(p);
    const empty = p.valueKind === 'text' && !p.policy.encryptEmpty ? `WHEN ${v} = '' THEN 'empty' ` : '';
    const { rows } = await db.query(
      `SELECT g.state, ${kekHeaderHex('g.w')} AS kek, pg_catalog.sum(g.n)::int8::text AS n, pg_catalog.min(g.sample) AS sample
         FROM (SELECT CASE WHEN ${c} IS NULL THEN 'null' WHEN ${v} LIKE '${PREFIX}%' THEN 'encrypted' ${empty}ELSE 'plaintext' END AS state,
                      CASE WHEN ${v} LIKE '${PREFIX}%' THEN pg_catalog.split_part(${v}, '|', 1) END AS w,
                      pg_catalog.count(*) AS n,
                      pg_catalog.min(${v}) FILTER (WHERE ${v} LIKE '${PREFIX}%') AS sample
                 ${from} GROUP BY 1, 2) AS g
        GROUP BY 1, 2`,
    );
    for (const r of rows) tally(s, String(r.state), Number(r.n));
    addKeks(rows);
  }
  s.keks.sort((a, b) => Number(b.primary) - Number(a.primary) || b.count - a.count);
  return s;
}

function tally(s: ColumnStatus, state: string, n: number): void {
  s.rows += n;
  if (state === 'encrypted') s.encrypted += n;
  else if (state === 'plaintext') s.plaintext += n;
  else if (state === 'empty') s.empty += n;
  else s.null += n;
}

export function statusRow(s: ColumnStatus): string[] {
  const keks = s.keks.map((k) => `${k.label}${k.primary ? ' (primary)' : ''}: ${k.count}`).join(', ');
  return [s.table, s.column, ...[s.rows, s.encrypted, s.plaintext, s.empty, s.null].map(String), keks];
}
