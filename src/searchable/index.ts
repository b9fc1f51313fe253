// Searchable (deterministic) columns, issue 6: equality on encrypted columns.
// Design and operator guide: docs/SEARCHABLE.md.
//
// WIRING (what the proxy and the admin commands do with this module):
//  1. Per database, over the session's own connection (src/encryption/searchable-keys.ts does this):
//       const keys = await SearchableKeys.load({
//         db,                                   // a Db over one session of that database
//         kek: keyring.backends(),              // the keyring's backend instances
//         columns: searchableColumnsOf(config.encrypted),
//         keyring,                              // for rewrapping values randomly encrypted before
//       });
//       await keys.refresh();                   // every 10 s; keep activationDelayMs > 2 x refreshMs
//     The proxy loads at a session's first safe point (between batches, outside a transaction) and
//     refreshes at later ones. A SearchableKeyError there refuses statements on searchable columns
//     of that database (SQLSTATE 55000) until a retry succeeds; the admin CLI must not start.
//  2. Writes (bind values, literals, COPY) to a searchable column:
//       keys.column(target)!.encrypt(plaintextBytes)       -> stored bytes ('' stays '' unless encrypt_empty)
//     instead of keyring.encrypt. Synchronous; no KEK call.
//  3. Predicate sites from src/sql (PredicateSite, kind eq/neq/in/any). Each compared value
//     becomes several candidates (its stored form under every KEK wrapping the column DEK):
//     Bind parameters (Parse-time rewrite, S = the wrappings at Parse: 1 outside a rotation;
//     the proxy widens a statement whose key gained a wrapping, src/encryption/session-bind.ts):
//       eq   col = $n            -> col = $n, or col IN ($n, $n2) with S = 2   bind keys.column(t)!.slots(pt, S)
//       neq  col <> $n           -> col <> $n, or col NOT IN ($n, $n2)
//       in   col IN ($1, $2)     -> col IN ($1, $2), or col IN ($1, $1b, $2, $2b)
//       any  col = ANY($n)       -> col = ANY($n) with the array's elements replaced by all their
//                                   candidates (bind textArrayLiteral(...)); arity varies, so it is re-planned
//                                   per execution: slower, still correct
//     Literals (no plan reuse anyway): col = 'v' -> col IN ('c1', 'c2') with .candidates(pt).
//     Never `= ANY($k::text[])` for a scalar: Postgres re-plans it at every execution (~0.57x the rate).
//     slots() throws SearchableKeyError (sqlstate 55000) when a key has more wrappings than S
//     (a fixed arity: keys.candidateSlots, default 3, for callers that want one, e.g. equalitySlots).
//     IS NOT DISTINCT FROM a NULL parameter must stay `IS NULL`: candidates exist for non-NULL values only.
//  4. Reads need nothing new: a searchable value is an ordinary envelope (Keyring.decrypt).
//  5. CMEK ROTATE on a searchable column: transform each value with
//       keys.needsRewrap(target, v) ? await keys.rewrapSearchable(target, v) : unchanged
//     NOT keyring.rewrap (that gives a fresh random wrapping, which no lookup candidate names).
//  6. CMEK ENCRYPT EXISTING (backfill) on a searchable column: keys.encryptDeterministic(target, pt).
//  7. Joins `a.x = b.y` match only between columns sharing a key (same keyGroup); see docs.
export { SearchableColumnKey, SearchableKeys, DEFAULT_ACTIVATION_MS, DEFAULT_CANDIDATE_SLOTS, DEFAULT_REFRESH_MS, DEFAULT_TOKEN_CACHE } from './keys.js';
export type { KeyDescription, SearchableKeysOptions, SearchableKeysStats } from './keys.js';
export { DeterministicKey, dekCheck, SEARCHABLE_TIMESTAMP } from './deterministic.js';
export { KEY_TABLE_DDL, KEYS_TABLE, WRAPS_TABLE, ensureKeyTables } from './key-table.js';
export { indexAdvice, textArrayLiteral, tokenPartSql } from './sql.js';
export {
  keyNameOf,
  searchableColumnsOf,
  SearchableKeyError,
  type ColumnRef,
  type KekSource,
  type SearchableColumn,
} from './types.js';
