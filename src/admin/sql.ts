// SQL fragments over one encrypted column `t.<col>`, per storage kind (plan.ts).
// Everything that can be decided in the server is: which rows hold plaintext,
// which hold envelopes, and which envelopes' DEKs are wrapped by a KEK other
// than the primary. So a scan transfers only the rows that need work, and a
// re-run after an interruption skips finished rows at index-scan speed.
// Comparisons use COLLATE "C": byte semantics whatever the column's collation
// (a nondeterministic collation would make LIKE fail and `=` fuzzy).
import { jsonPathLiteral } from './json-paths.js';
import { quoteIdent, type LeafPlan } from './plan.js';

export const PREFIX = 'cmek:v1:';
/** A wrapped DEK's header is tag(1) | kek_id_len(1) | kek_id(<=255). */
export const MAX_HEADER_BYTES = 257;

const col = (p: LeafPlan) => `t.${quoteIdent(p.column)}`;

/** The text that holds an envelope: the value itself, or the string inside a whole JSON value. */
export function envelopeText(p: LeafPlan): string {
  if (p.valueKind === 'json-whole') return `((${col(p)}::pg_catalog.jsonb #>> '{}') COLLATE "C")`;
  return `(${col(p)}::pg_catalog.text COLLATE "C")`;
}

function jsonPathsExist(p: LeafPlan, filter: string): string {
  const paths = p.policy.jsonPaths ?? [];
  const doc = `${col(p)}::pg_catalog.jsonb`;
  const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;
  return '(' + paths.map((path) => `pg_catalog.jsonb_path_exists(${doc}, ${lit(`${jsonPathLiteral(path)} ? (${filter})`)}::pg_catalog.jsonpath)`).join(' OR ') + ')';
}

/** Rows holding plaintext the backfill would encrypt. */
export function plaintextPredicate(p: LeafPlan): string {
  if (p.valueKind === 'json-paths') {
    const empty = p.policy.encryptEmpty ? '' : ' && @ != ""';
    return `(${col(p)} IS NOT NULL AND ${jsonPathsExist(p, `@.type() == "string" && !(@ starts with "${PREFIX}")${empty}`)})`;
  }
  const v = envelopeText(p);
  const empty = p.valueKind === 'text' && !p.policy.encryptEmpty ? ` AND ${v} <> ''` : '';
  return `(${col(p)} IS NOT NULL AND ${v} NOT LIKE '${PREFIX}%'${empty})`;
}

/** Rows holding at least one envelope. */
export function encryptedPredicate(p: LeafPlan): string {
  if (p.valueKind === 'json-paths') return `(${col(p)} IS NOT NULL AND ${jsonPathsExist(p, `@ starts with "${PREFIX}"`)})`;
  return `(${envelopeText(p)} LIKE '${PREFIX}%')`;
}

/**
 * The first `maxBytes` bytes of the wrapped DEK of envelope text `v` (NULL when
 * that part is not base64url): base64url -> base64, padded, decoded.
 */
export function headerBytes(v: string, maxBytes: number): string {
  const n = 4 * Math.ceil(maxBytes / 3);
  const w = `pg_catalog.substr(pg_catalog.split_part(${v}, '|', 1), 9, ${n})`;
  return (
    `(CASE WHEN ${w} ~ '^[A-Za-z0-9_-]{2,}$' AND pg_catalog.length(${w}) % 4 <> 1 ` +
    `THEN pg_catalog.decode(pg_catalog.translate(pg_catalog.rpad(${w}, (pg_catalog.length(${w}) + 3) / 4 * 4, '='), '-_', '+/'), 'base64') END)`
  );
}

/** tag | kek_id_len | kek_id of an envelope, as hex (NULL when malformed). */
export function kekHeaderHex(v: string): string {
  const b = headerBytes(v, MAX_HEADER_BYTES);
  return `(CASE WHEN pg_catalog.length(${b}) >= 2 THEN pg_catalog.encode(pg_catalog.substring(${b} FROM 1 FOR 2 + pg_catalog.get_byte(${b}, 1)), 'hex') END)`;
}

/**
 * Rows whose envelope's DEK is not wrapped by the primary KEK (`primaryHeader` =
 * tag | id_len | id of the primary). For json-paths the server only narrows to
 * rows with envelopes; the keyring decides per value.
 */
export function rotationPredicate(p: LeafPlan, primaryHeader: Buffer): string {
  if (p.valueKind === 'json-paths') return encryptedPredicate(p);
  const v = envelopeText(p);
  const head = `pg_catalog.substring(${headerBytes(v, primaryHeader.length)} FROM 1 FOR ${primaryHeader.length})`;
  return `(${v} LIKE '${PREFIX}%' AND ${head} IS DISTINCT FROM pg_catalog.decode('${primaryHeader.toString('hex')}', 'hex'))`;
}

/** The column as text, as the admin code reads and compares it. */
export function valueText(p: LeafPlan): string {
  return `${col(p)}::pg_catalog.text`;
}

/** The SQL expression that turns the new text `u.n` into the column's type. */
export function newValue(p: LeafPlan): string {
  return p.valueKind === 'text' ? 'u.n' : `u.n::pg_catalog.${p.jsonType}`;
}
