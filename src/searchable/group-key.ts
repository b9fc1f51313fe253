// One searchable key in memory: the column DEK (as a DeterministicKey) and its
// wrappings from the key table, each turned into the fixed envelope header
// `cmek:v1:<wrapped_dek>|<nonce>|` once. Every value of the key is one of
// those headers followed by the deterministic token, so:
//   encrypt     = write header + token
//   candidates  = every header + token (one per KEK with a wrapping)
// Both are synchronous: one HMAC, one AES-CBC pass and one HMAC per plaintext.
// A value is built in one buffer: the header copied, the token text encoded
// straight after it (no token string unless the token cache keeps one).
import { decryptRange, FernetError } from '../crypto/fernet.js';
import { backendName, formatHeader, isEnvelope, kekIdLabel, locate, PREFIX } from '../crypto/envelope.js';
import { CMEKDecryptionError } from '../crypto/errors.js';
import type { WrappedDek } from '../crypto/kek/types.js';
import { tokenTextLength, type DeterministicKey } from './deterministic.js';
import { TokenCache } from './token-cache.js';
import { SearchableKeyError } from './types.js';

export interface Wrapping {
  wrapped: WrappedDek;
  /** `cmek:v1:<wrapped_dek>|<nonce>|` as bytes. */
  header: Buffer;
  /** The header without prefix and final `|` (the keyring's DEK-cache id; compared with values). */
  id: string;
  /** `local:<hex id>` etc., safe to log. */
  label: string;
  /** Unwrapped here to this key's DEK. Only verified wrappings are written under. */
  verified: boolean;
  /** Clock time from which writes may use it (other replicas have had time to learn it). */
  activeAt: number;
}

export function makeWrapping(w: WrappedDek, verified: boolean, activeAt: number): Wrapping {
  const text = formatHeader(w);
  return {
    wrapped: w,
    header: Buffer.from(text, 'latin1'),
    id: text.slice(PREFIX.length, -1),
    label: `${backendName(w.tag)}:${kekIdLabel(w.tag, w.kekId)}`,
    verified,
    activeAt,
  };
}

export function sameKek(a: WrappedDek, b: { tag: number; kekId: Buffer }): boolean {
  return a.tag === b.tag && a.kekId.equals(b.kekId);
}

/** `'`: candidates for SQL text are quoted literals. */
const QUOTE = 0x27;

export class GroupKey {
  /** Oldest first. */
  private wraps: Wrapping[] = [];
  /** Their headers, in the same order (what candidates are built from). */
  private headers: Buffer[] = [];
  private primary?: Wrapping;

  private readonly tokens: TokenCache;

  /** How many stored forms a value has now (one per KEK wrapping the DEK): the candidates a comparison needs. */
  get wrappingCount(): number {
    return this.wraps.length;
  }

  constructor(
    readonly name: string,
    readonly key: DeterministicKey,
    private readonly clock: () => number,
    /** Plaintexts whose tokens are kept (0 = none); see TokenCache. */
    tokenCacheSize = 0,
  ) {
    this.tokens = new TokenCache(tokenCacheSize);
  }

  /** The deterministic token of a plaintext (cached). */
  token(pt: Buffer): string {
    return this.tokens.get(pt, (p) => this.key.token(p));
  }

  /**
   * Values of `pt` under each of `headers`, in one allocation: header, then
   * the token text, which is computed (or found in the cache) once and copied
   * behind the other headers. `quote`: each value between single quotes, as a
   * SQL literal (a value is ASCII without quotes or backslashes: `cmek:v1:`,
   * base64url, `|`, `=`; it needs no escaping).
   */
  private seal(pt: Buffer, headers: readonly Buffer[], quote = false): Buffer[] {
    const cache = this.tokens;
    const h = cache.enabled ? cache.fingerprint(pt) : 0;
    const cached = h === 0 ? -1 : cache.find(pt, h);
    const tlen = tokenTextLength(pt.length);
    const q = quote ? 1 : 0;
    let total = 0;
    for (const hd of headers) total += hd.length + tlen + 2 * q;
    const buf = Buffer.allocUnsafe(total);
    const out: Buffer[] = new Array(headers.length);
    const first = q + headers[0]!.length;
    // TypedArray set(): Buffer.copy's argument handling costs more than these short copies.
    if (quote) buf[0] = QUOTE;
    buf.set(headers[0]!, q);
    if (cached >= 0) {
      const t = cache.tokens();
      for (let i = 0; i < tlen; i++) buf[first + i] = t[cached + i]!;
    } else {
      this.key.writeToken(pt, buf, first);
      if (h !== 0) cache.offer(pt, h, buf, first, first + tlen);
    }
    if (quote) buf[first + tlen] = QUOTE;
    out[0] = buf.subarray(0, first + tlen + q);
    for (let i = 1, at = first + tlen + q; i < headers.length; i++) {
      const hd = headers[i]!;
      if (quote) buf[at] = QUOTE;
      buf.set(hd, at + q);
      buf.copyWithin(at + q + hd.length, first, first + tlen);
      const end = at + q + hd.length + tlen;
      if (quote) buf[end] = QUOTE;
      out[i] = buf.subarray(at, end + q);
      at = end + q;
    }
    return out;
  }

  cacheStats(): { hits: number; misses: number } {
    return { hits: this.tokens.hits, misses: this.tokens.misses };
  }

  /** Replaces the wrappings (a refresh); `primaryKek` names the KEK new values should move to. */
  setWrappings(wraps: Wrapping[], primaryKek: { tag: number; kekId: Buffer }): void {
    this.wraps = wraps;
    this.headers = wraps.map((w) => w.header);
    this.primary = wraps.find((w) => w.verified && sameKek(w.wrapped, primaryKek));
  }

  wrappings(): readonly Wrapping[] {
    return this.wraps;
  }

  primaryWrapping(): Wrapping | undefined {
    return this.primary;
  }

  /**
   * The header new values get: the primary KEK's once it is active; until then
   * the newest active verified one (other replicas may not know the new one yet,
   * and their lookups would miss values written under it).
   */
  writeWrapping(): Wrapping {
    const p = this.primary;
    const now = this.clock();
    if (p && p.activeAt <= now) return p;
    let best: Wrapping | undefined;
    for (const w of this.wraps) if (w.verified && w.activeAt <= now) best = w;
    const chosen = best ?? p;
    if (!chosen) throw new SearchableKeyError(`searchable key ${this.name} has no usable wrapping`);
    return chosen;
  }

  encrypt(pt: Buffer): Buffer {
    return this.seal(pt, [this.writeWrapping().header])[0]!;
  }

  /**
   * The value under every known wrapping: what the rewritten comparison must
   * list. `slots` > 0: exactly that many, the rest repeating the first (a
   * prepared statement's fixed arity); more wrappings than slots throws.
   */
  candidates(pt: Buffer, slots = 0): Buffer[] {
    const n = this.wraps.length;
    if (n === 0) throw new SearchableKeyError(`searchable key ${this.name} has no wrapping`);
    if (slots > 0 && n > slots) {
      throw new SearchableKeyError(
        `searchable key ${this.name} has ${n} KEK wrappings but this statement's comparisons hold ${slots} candidates: ` +
          'retire the wrapping of a KEK no value uses any more (docs/SEARCHABLE.md, "Retiring an old KEK") or raise the candidate slots',
      );
    }
    const out = this.seal(pt, this.headers);
    for (let i = n; i < slots; i++) out.push(out[0]!);
    return out;
  }

  /**
   * The candidates as SQL string literals, for statements sent as text (simple
   * protocol): `'<header><token>'` per wrapping, as bytes spliced straight into
   * the statement.
   */
  quotedCandidates(pt: Buffer): Buffer[] {
    if (this.wraps.length === 0) throw new SearchableKeyError(`searchable key ${this.name} has no wrapping`);
    return this.seal(pt, this.headers, true);
  }

  /** The wrapping a stored value's header is, or undefined (legacy plaintext, another key, random encryption). */
  wrappingOf(v: Buffer): Wrapping | undefined {
    if (!isEnvelope(v)) return undefined;
    const bar2 = v.lastIndexOf(0x7c);
    for (const w of this.wraps) if (bar2 + 1 === w.header.length && v.compare(w.header, 0, w.header.length, 0, bar2 + 1) === 0) return w;
    return undefined;
  }

  /** Decrypts a value under one of this key's headers with the column DEK (authenticates the token). */
  open(v: Buffer, w: Wrapping): Buffer {
    const at = locate(v);
    try {
      return decryptRange(this.key.fernet, v, at.bar2 + 1, v.length);
    } catch (e) {
      if (!(e instanceof FernetError)) throw e;
      throw new CMEKDecryptionError(e.reason === 'bad_mac' ? 'bad_mac' : e.reason === 'bad_base64' ? 'bad_base64' : 'bad_token', {
        detail: `searchable value of ${this.name}: ${e.reason}`,
        backend: backendName(w.wrapped.tag),
        kekId: kekIdLabel(w.wrapped.tag, w.wrapped.kekId),
      });
    }
  }

  destroy(): void {
    this.tokens.clear();
    this.key.destroy();
  }
}

export function seal(header: Buffer, token: string): Buffer {
  const out = Buffer.allocUnsafe(header.length + token.length);
  header.copy(out, 0);
  out.write(token, header.length, 'latin1');
  return out;
}
