// Per command and storage kind: which rows the server returns (SQL predicate)
// and what each value becomes (keyring call). The predicate does the bulk of the
// selection; the transform re-checks, so a row that changed between the scan
// and here is never processed twice.
import type { Keyring } from '../crypto/keyring.js';
import { decryptPaths, encryptPaths, ENVELOPE_PREFIX, findPathStrings, mapPaths, unwrapJsonString, wrapJsonString } from './json-paths.js';
import type { LeafPlan } from './plan.js';
import type { Transform } from './rewrite.js';
import type { SearchableAccess } from './searchable.js';
import { encryptedPredicate, plaintextPredicate, rotationPredicate } from './sql.js';

export interface RowWork {
  filter: string;
  transform: Transform;
}

const isEnvelope = (s: string) => s.startsWith(ENVELOPE_PREFIX);

const refOf = (p: LeafPlan) => ({ schema: p.source.schema, table: p.source.table, column: p.column });

/** `searchable`: the column's deterministic key, for a searchable column (the executor checks it is loaded). */
export function encryptWork(p: LeafPlan, keyring: Keyring, searchable?: SearchableAccess): RowWork {
  const ref = refOf(p);
  const enc = searchable
    ? async (s: string) => searchable.encryptDeterministic(ref, Buffer.from(s, 'utf8')).toString('latin1')
    : (s: string) => keyring.encrypt(s);
  const empty = !p.policy.encryptEmpty;
  switch (p.valueKind) {
    case 'text':
      return { filter: plaintextPredicate(p), transform: async (v) => (isEnvelope(v) || (empty && v === '') ? undefined : enc(v)) };
    case 'json-whole':
      return { filter: plaintextPredicate(p), transform: async (v) => (unwrapJsonString(v) !== undefined ? undefined : wrapJsonString(await enc(v))) };
    case 'json-paths': {
      const paths = p.policy.jsonPaths ?? [];
      return { filter: plaintextPredicate(p), transform: (v) => encryptPaths(v, paths, enc, { encryptEmpty: p.policy.encryptEmpty }) };
    }
  }
}

export function rotateWork(p: LeafPlan, keyring: Keyring, primaryHeader: Buffer, searchable?: SearchableAccess): RowWork {
  const ref = refOf(p);
  const rewrap = searchable
    ? async (s: string) => (isEnvelope(s) && searchable.needsRewrap(ref, s) ? searchable.rewrapSearchable(ref, s) : undefined)
    : async (s: string) => (isEnvelope(s) && keyring.needsRotation(s) ? keyring.rewrap(s) : undefined);
  // A searchable column's values carry its own key's header, not the keyring's: its keys decide per value.
  const filter = searchable ? encryptedPredicate(p) : rotationPredicate(p, primaryHeader);
  switch (p.valueKind) {
    case 'text':
      return { filter, transform: rewrap };
    case 'json-whole':
      return {
        filter,
        transform: async (v) => {
          const env = unwrapJsonString(v);
          const next = env === undefined ? undefined : await rewrap(env);
          return next === undefined ? undefined : wrapJsonString(next);
        },
      };
    case 'json-paths': {
      const paths = p.policy.jsonPaths ?? [];
      return { filter, transform: (v) => mapPaths(v, paths, rewrap) };
    }
  }
}

export function decryptWork(p: LeafPlan, keyring: Keyring): RowWork {
  const dec = (s: string) => keyring.decrypt(s);
  const filter = encryptedPredicate(p);
  switch (p.valueKind) {
    case 'text':
      return { filter, transform: async (v) => (isEnvelope(v) ? dec(v) : undefined) };
    case 'json-whole':
      return {
        filter,
        transform: async (v) => {
          const env = unwrapJsonString(v);
          return env === undefined ? undefined : dec(env);
        },
      };
    case 'json-paths': {
      const paths = p.policy.jsonPaths ?? [];
      return { filter, transform: (v) => decryptPaths(v, paths, dec) };
    }
  }
}

/** The envelopes stored in one value (for VERIFY). */
export function envelopesIn(p: LeafPlan, v: string): string[] {
  switch (p.valueKind) {
    case 'text':
      return isEnvelope(v) ? [v] : [];
    case 'json-whole': {
      const env = unwrapJsonString(v);
      return env === undefined ? [] : [env];
    }
    case 'json-paths':
      return findPathStrings(v, p.policy.jsonPaths ?? [])
        .map((s) => s.value)
        .filter(isEnvelope);
  }
}
