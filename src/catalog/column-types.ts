// Which column types can hold an envelope (`cmek:v1:...`, a few hundred ASCII
// characters). Checked on the base type, so domains over these are fine.
//
// text, varchar: yes (varchar(n) only if n leaves room: see below).
// json, jsonb: yes. A whole encrypted value is stored as a JSON string
//   ("cmek:v1:..."); with json_paths only the values at those paths are.
// bpchar (char(n)): no. The envelope of anything is far longer than any usual n,
//   so writes would fail with 22001; and char(n) pads its plaintext with spaces,
//   which a reader of the decrypted value would no longer get back (the padding is
//   not part of what was encrypted), so the column's semantics would change.
// Anything else (bytea, arrays, numbers, citext...): no.

export const TEXT_OID = 25;
export const VARCHAR_OID = 1043;
export const BPCHAR_OID = 1042;
export const JSON_OID = 114;
export const JSONB_OID = 3802;

const ALLOWED = new Set([TEXT_OID, VARCHAR_OID, JSON_OID, JSONB_OID]);

/**
 * Characters of an envelope besides the Fernet token: prefix (8), wrapped DEK
 * (local: tag, id length, 8-byte id, 48 wrapped bytes = 78 base64 characters),
 * nonce (16) and two separators: 104 for the local backend; a KMS key ARN makes
 * it longer. Callers that have a keyring pass the real figure.
 */
export const DEFAULT_ENVELOPE_OVERHEAD = 104;

/** Length in characters of a Fernet token (base64url with padding) for a plaintext of `bytes` bytes. */
export function fernetTokenChars(bytes: number): number {
  const raw = 1 + 8 + 16 + (Math.floor(bytes / 16) + 1) * 16 + 32;
  return 4 * Math.ceil(raw / 3);
}

export function isJsonType(baseTypeOid: number): boolean {
  return baseTypeOid === JSON_OID || baseTypeOid === JSONB_OID;
}

export interface TypeVerdict {
  ok: boolean;
  /** Why not (for an error), or a caveat (for a warning). */
  message?: string;
}

/**
 * Whether a column of this (base) type can hold envelopes. `baseTypmod` is the
 * varchar length modifier (n + 4), -1 when unlimited.
 */
export function checkColumnType(baseTypeOid: number, baseTypmod: number, typeName: string, overhead = DEFAULT_ENVELOPE_OVERHEAD): TypeVerdict {
  if (baseTypeOid === BPCHAR_OID) {
    return { ok: false, message: `type ${typeName} cannot hold encrypted values: char(n) pads values with spaces and is too short for an envelope (use text or varchar)` };
  }
  if (!ALLOWED.has(baseTypeOid)) {
    return { ok: false, message: `type ${typeName} cannot hold encrypted values (supported: text, varchar, json, jsonb, or a domain over one of them)` };
  }
  if (baseTypeOid === VARCHAR_OID && baseTypmod >= 4) {
    const n = baseTypmod - 4;
    if (overhead + fernetTokenChars(0) > n) {
      return { ok: false, message: `type ${typeName} is too short for an envelope (even an empty value needs ${overhead + fernetTokenChars(0)} characters; use text or widen it)` };
    }
    // Largest plaintext whose token fits: 4*ceil(raw/3) <= n - overhead, raw = 73 + 16*floor(bytes/16).
    const k = Math.floor((n - overhead) / 4);
    const max = 16 * Math.floor((3 * k - 73) / 16) + 15;
    return { ok: true, message: `type ${typeName}: once encrypted, values longer than ${max} bytes no longer fit (Postgres refuses them with 22001); consider text` };
  }
  return { ok: true };
}
