// Searchable (deterministic) columns in the admin commands (issue 6,
// docs/SEARCHABLE.md). Their values must be written with the column's own key,
// or equality lookups stop finding them: the backfill encrypts them with
// encryptDeterministic, the rotation re-wraps them with rewrapSearchable (never
// keyring.rewrap, whose fresh random wrapping no lookup candidate names).
// Without the searchable keys loaded, both are refused rather than done wrong.
import type { ColumnRef } from '../searchable/types.js';

/** What the admin commands need of src/searchable's SearchableKeys (which has this shape). */
export interface SearchableAccess {
  /** Defined when the column's key is loaded. */
  column(ref: ColumnRef): unknown;
  encryptDeterministic(ref: ColumnRef, plaintext: Buffer): Buffer;
  needsRewrap(ref: ColumnRef, value: string): boolean;
  rewrapSearchable(ref: ColumnRef, value: string): Promise<string>;
}

/** The searchable key of a configured column, or undefined when it is not loaded. */
export function searchableKeyFor(access: SearchableAccess | undefined, ref: ColumnRef): SearchableAccess | undefined {
  return access && access.column(ref) !== undefined ? access : undefined;
}
