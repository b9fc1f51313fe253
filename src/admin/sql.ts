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
  return `(CASE WHEN pg_catalog.length(${b}) >= 2 THEN pg_catalog.encode(pg_catalog.substring(${b}, 1, 2 + pg_catalog.get_byte(${b}, 1)), 'hex') END)`;
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * The text every envelope whose wrapped DEK starts with `header` (tag | id_len |
 * id) starts with, as an exact prefix plus, when the header does not end on a
 * base64 group boundary, the set of characters the next position can hold (its
 * high bits come from the header, its low bits from the wrapped key).
 */
export function envelopePrefix(header: Buffer): { prefix: string; next: string[] } {
  const full = Math.floor(header.length / 3) * 3;
  let prefix = PREFIX + header.subarray(0, full).toString('base64url');
  const rest = header.subarray(full);
  if (rest.length === 0) return { prefix, next: [] };
  // Encode the leftover bytes followed by zero bits; the last character is only partly theirs.
  const chars = Buffer.concat([rest, Buffer.alloc(3 - rest.length)]).toString('base64url');
  const exact = rest.length; // 1 byte -> 1 whole char + 2 bits; 2 bytes -> 2 whole chars + 4 bits
  prefix += chars.slice(0, exact);
  const known = B64URL.indexOf(chars[exact]);
  const freeBits = rest.length === 1 ? 4 : 2;
  const next: string[] = [];
  for (let i = 0; i < 1 << freeBits; i++) next.push(B64URL[known + i]);
  return { prefix, next };
}

const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;

/**
 * Rows whose envelope's DEK is not wrapped by the primary KEK (`primaryHeader` =
 * tag | id_len | id of the primary): a prefix comparison on the text, no
 * decoding. For json-paths the server only narrows to rows with envelopes; the
 * keyring decides per value.
 */
export function rotationPredicate(p: LeafPlan, primaryHeader: Buffer): string {
  if (p.valueKind === 'json-paths') return encryptedPredicate(p);
  const v = envelopeText(p);
  const { prefix, next } = envelopePrefix(primaryHeader);
  const nextCheck = next.length ? ` AND pg_catalog.substr(${v}, ${prefix.length + 1}, 1) IN (${next.map(lit).join(', ')})` : '';
  return `(${v} LIKE '${PREFIX}%' AND NOT (pg_catalog.starts_with(${v}, ${lit(prefix)})${nextCheck}))`;
}

/** The column as text, as the admin code reads and compares it. */
export function valueText(p: LeafPlan): string {
  return `${col(p)}::pg_catalog.text`;
}

/** The SQL expression that turns the new text `u.n` into the column's type. */
export function newValue(p: LeafPlan): string {
  return p.valueKind === 'text' ? 'u.n' : `u.n::pg_catalog.${p.jsonType}`;
}
