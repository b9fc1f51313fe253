// The key table every proxy replica shares: one DEK per searchable key
// (column or key group), stored only wrapped, once per KEK.
//   pgcmek.searchable_keys       one row per key: its name and the DEK's public fingerprint
//   pgcmek.searchable_key_wraps  one row per (key, KEK): the envelope's first two parts
// A key row and its first wrapping are inserted by ONE statement, so whoever
// knows a key knows its first wrapping; racing replicas converge through the
// primary keys (INSERT … ON CONFLICT DO NOTHING, then re-read).
// Every value crosses the wire as text (hex for bytes), so any Db works,
// whatever type parsers it has.
import type { Db } from '../catalog/db.js';
import { backendName, encodeWrappedDek, parseWrappedDek } from '../crypto/envelope.js';
import type { WrappedDek } from '../crypto/kek/types.js';
import { textArrayLiteral } from './sql.js';
import { SearchableKeyError } from './types.js';

export const KEY_SCHEMA = 'pgcmek';
export const KEYS_TABLE = `${KEY_SCHEMA}.searchable_keys`;
export const WRAPS_TABLE = `${KEY_SCHEMA}.searchable_key_wraps`;

/** The DDL, also printed in docs/SEARCHABLE.md for operators who pre-create it. */
export const KEY_TABLE_DDL: readonly string[] = [
  `CREATE SCHEMA IF NOT EXISTS ${KEY_SCHEMA}`,
  `CREATE TABLE IF NOT EXISTS ${KEYS_TABLE} (
  key_name   text PRIMARY KEY,
  dek_check  bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
)`,
  `CREATE TABLE IF NOT EXISTS ${WRAPS_TABLE} (
  key_name    text NOT NULL REFERENCES ${KEYS_TABLE} (key_name) ON UPDATE CASCADE,
  kek_backend text NOT NULL CHECK (kek_backend IN ('local', 'vault', 'aws_kms')),
  kek_id      bytea NOT NULL,
  wrapped_dek bytea NOT NULL,
  nonce       bytea NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (key_name, kek_backend, kek_id)
)`,
];

// Concurrent CREATE … IF NOT EXISTS can still collide in the catalogs (both pass the
// check, one fails on a catalog unique index): the retry then sees the winner's object.
const DDL_RACE_CODES = new Set(['23505', '42P06', '42P07', '42710', '40P01', 'XX000']);
const DDL_ATTEMPTS = 5;

export interface WrapRow {
  keyName: string;
  wrapped: WrappedDek;
  /** How long ago the row was inserted, by the database clock. */
  ageMs: number;
  /** Inserted by the statement that created the key: every replica that knows the key knows it. */
  withKey: boolean;
}

export interface KeyRow {
  keyName: string;
  check: Buffer;
  /** Oldest first: the first is the one inserted with the key. */
  wraps: WrapRow[];
  /** Rows whose columns do not agree with their bytes (never used). */
  bad: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Creates the schema and tables unless both tables exist already (the proxy's role may lack CREATE). */
export async function ensureKeyTables(db: Db): Promise<'exists' | 'created'> {
  for (let attempt = 1; ; attempt++) {
    const { rows } = await db.query(`SELECT to_regclass($1)::text AS k, to_regclass($2)::text AS w`, [KEYS_TABLE, WRAPS_TABLE]);
    if (rows[0]?.k && rows[0]?.w) return attempt === 1 ? 'exists' : 'created';
    try {
      for (const sql of KEY_TABLE_DDL) await db.query(sql);
      return 'created';
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (attempt >= DDL_ATTEMPTS || !code || !DDL_RACE_CODES.has(code)) {
        throw new SearchableKeyError(
          `cannot create the searchable key tables ${KEYS_TABLE} and ${WRAPS_TABLE} (${code ?? 'error'}: ${(e as Error).message}): ` +
            'grant the proxy role CREATE on the database, or create them with the DDL in docs/SEARCHABLE.md',
          { cause: e },
        );
      }
      await sleep(10 * attempt);
    }
  }
}

const hex = (b: Buffer) => b.toString('hex');
const unhex = (v: unknown) => Buffer.from(String(v ?? ''), 'hex');

/** The keys with these names, with their wrappings oldest first. Missing keys are absent from the map. */
export async function readKeys(db: Db, names: readonly string[]): Promise<Map<string, KeyRow>> {
  const { rows } = await db.query(
    `SELECT k.key_name, encode(k.dek_check, 'hex') AS dek_check,
            w.kek_backend, encode(w.kek_id, 'hex') AS kek_id, encode(w.wrapped_dek, 'hex') AS wrapped_dek,
            encode(w.nonce, 'hex') AS nonce,
            (extract(epoch FROM (clock_timestamp() - w.created_at)) * 1000)::text AS age_ms,
            (w.created_at = k.created_at)::text AS with_key
       FROM ${KEYS_TABLE} k LEFT JOIN ${WRAPS_TABLE} w ON w.key_name = k.key_name
      WHERE k.key_name = ANY($1::text[])
      ORDER BY k.key_name, w.created_at, w.kek_backend, w.kek_id`,
    [textArrayLiteral(names.map((n) => Buffer.from(n, 'utf8'))).toString('utf8')],
  );
  const out = new Map<string, KeyRow>();
  for (const r of rows) {
    const keyName = String(r.key_name);
    let k = out.get(keyName);
    if (!k) out.set(keyName, (k = { keyName, check: unhex(r.dek_check), wraps: [], bad: 0 }));
    if (r.wrapped_dek === null || r.wrapped_dek === undefined) continue; // a key without wrappings (LEFT JOIN)
    const w = parseRow(r);
    if (w) k.wraps.push({ keyName, wrapped: w, ageMs: Math.max(0, Number(r.age_ms)), withKey: r.with_key === 'true' });
    else k.bad++;
  }
  return out;
}

/** The stored bytes must parse and agree with the backend and KEK id columns. */
function parseRow(r: Record<string, unknown>): WrappedDek | undefined {
  try {
    const w = parseWrappedDek(unhex(r.wrapped_dek), unhex(r.nonce));
    if (backendName(w.tag) !== r.kek_backend || !w.kekId.equals(unhex(r.kek_id))) return undefined;
    return w;
  } catch {
    return undefined;
  }
}

function wrapParams(w: WrappedDek): string[] {
  return [backendName(w.tag), hex(w.kekId), hex(encodeWrappedDek(w)), hex(w.nonce)];
}

/** Inserts a new key with its first wrapping in one statement; false when the key existed (another replica won). */
export async function insertKey(db: Db, keyName: string, check: Buffer, w: WrappedDek): Promise<boolean> {
  const { rows } = await db.query(
    `WITH k AS (
       INSERT INTO ${KEYS_TABLE} (key_name, dek_check) VALUES ($1, decode($2, 'hex'))
       ON CONFLICT (key_name) DO NOTHING RETURNING key_name)
     INSERT INTO ${WRAPS_TABLE} (key_name, kek_backend, kek_id, wrapped_dek, nonce)
     SELECT key_name, $3, decode($4, 'hex'), decode($5, 'hex'), decode($6, 'hex') FROM k
     RETURNING key_name`,
    [keyName, hex(check), ...wrapParams(w)],
  );
  return rows.length === 1;
}

/** Adds a wrapping of an existing key under another KEK; false when one existed for that KEK. */
export async function insertWrap(db: Db, keyName: string, w: WrappedDek): Promise<boolean> {
  const { rows } = await db.query(
    `INSERT INTO ${WRAPS_TABLE} (key_name, kek_backend, kek_id, wrapped_dek, nonce)
     VALUES ($1, $2, decode($3, 'hex'), decode($4, 'hex'), decode($5, 'hex'))
     ON CONFLICT (key_name, kek_backend, kek_id) DO NOTHING RETURNING key_name`,
    [keyName, ...wrapParams(w)],
  );
  return rows.length === 1;
}
