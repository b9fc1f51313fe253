// One searchable column's handle: what the proxy resolves once per statement
// and then calls per value. Empty strings stay as they are unless the column
// encrypts them, exactly as for ordinary columns.
import type { GroupKey } from './group-key.js';
import type { SearchableColumn } from './types.js';

/** One searchable column's handle: resolve it once per statement, then call it per value. */
export class SearchableColumnKey {
  constructor(
    readonly column: SearchableColumn,
    readonly group: GroupKey,
    /** How many candidates `slots()` returns. */
    readonly slotCount: number,
  ) {}

  get keyName(): string {
    return this.group.name;
  }

  /** Empty strings stay empty unless the column encrypts them (as for ordinary columns). */
  private keepsPlain(pt: Buffer): boolean {
    return pt.length === 0 && !this.column.encryptEmpty;
  }

  /** The stored value for this plaintext (an envelope under the current write KEK). */
  encrypt(pt: Buffer): Buffer {
    return this.keepsPlain(pt) ? pt : this.group.encrypt(pt);
  }

  /**
   * Every stored form this plaintext can have: one per KEK with a wrapping of
   * the column DEK. For literals and other one-off SQL text.
   */
  candidates(pt: Buffer): Buffer[] {
    return this.keepsPlain(pt) ? [pt] : this.group.candidates(pt);
  }

  /**
   * `candidates()` as SQL string literals (bytes), for statements sent as
   * text. An empty string kept plain is `''`.
   */
  quotedCandidates(pt: Buffer): Buffer[] {
    return this.keepsPlain(pt) ? [Buffer.from("''")] : this.group.quotedCandidates(pt);
  }

  /**
   * Exactly `slotCount` candidates (the real ones, then repeats of the first),
   * for bind parameters of a rewritten prepared statement:
   * `col IN ($a, $b, $c)`. A fixed arity keeps Postgres' generic plan (an
   * array parameter `= ANY($k::text[])` is re-planned at every execution and
   * costs about 40% of the lookup rate; docs/SEARCHABLE.md "Performance").
   * `n`: the arity of the statement at hand (an unnamed statement gets as many
   * slots as the key has wrappings when it is parsed: it is planned per
   * execution anyway, and fewer candidates cost Postgres less).
   * Throws SearchableKeyError (55000) when the key has more wrappings than slots.
   */
  slots(pt: Buffer, n = this.slotCount): Buffer[] {
    if (this.keepsPlain(pt)) return new Array<Buffer>(n).fill(pt);
    return this.group.candidates(pt, n);
  }
}
