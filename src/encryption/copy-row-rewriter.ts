// CopyRowRewriter, the COPY text/CSV row engine of CopyInEncryptor and CopyOutDecryptor. CopyData
// payloads are arbitrary slices (a row, even an escape, can straddle two messages), so it keeps the
// line scanner's state and the unfinished row between chunks; bytes not rewritten pass as received.
import { decodeCsvField, decodeTextField, encodeCsvField, encodeTextField } from './copy-fields.js';
import { BS, CR, DOT, LF, CopyDataError, type ResolvedCopyFormat } from './copy-format.js';
import { Pieces, type CopyOutput } from './copy-output.js';
import { ByteFinder, FieldFinders, FieldSpans, splitFields } from './copy-split.js';

/** A row longer than this (bytes, a CSV row may span lines) fails the COPY instead of growing memory. */
export const DEFAULT_MAX_ROW_BYTES = 64 * 1024 * 1024;

/** New value for a field, or undefined to leave its bytes as they are. */
export type FieldRewrite = (value: Buffer, field: number) => Buffer | undefined | Promise<Buffer | undefined>;

export interface RowRewriterOptions {
  fields: Iterable<number>;
  /** Called with the decoded value of each target field that is not NULL or DEFAULT. */
  rewrite: FieldRewrite;
  /**
   * 'in': client data for COPY FROM (the `\.` end marker is honoured, new values are
   * written so they cannot read back as NULL/DEFAULT). 'out': server data from COPY
   * TO (new values are written exactly as COPY TO would write them).
   */
  direction: 'in' | 'out';
  maxRowBytes?: number;
}

const NOT_FOUND = -1;
const END_MARKER = -2;
const EMPTY = Buffer.alloc(0);

/** Finders for locating line ends in one chunk. */
class LineFinders {
  readonly nl: ByteFinder;
  readonly cr: ByteFinder;
  /** Backslash (text) or quote (csv). */
  readonly special: ByteFinder;
  readonly escape: ByteFinder;
  constructor(fmt: ResolvedCopyFormat, buf: Buffer) {
    this.nl = new ByteFinder(buf, LF);
    this.cr = new ByteFinder(buf, CR);
    this.special = new ByteFinder(buf, fmt.csv ? fmt.quote : BS);
    this.escape = new ByteFinder(buf, fmt.escape);
  }
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as Promise<T> | undefined)?.then === 'function';
}

/**
 * Streams COPY text/CSV, rewriting the given fields of each row. Output buffers may
 * be views of the pushed chunk: forward them before reusing the chunk's memory. A
 * partial row is copied and held until the chunk that completes it.
 */
export class CopyRowRewriter {
  private readonly isTarget: boolean[] = [];
  private readonly last: number;
  private readonly inbound: boolean;
  private readonly maxRow: number;
  private readonly spans = new FieldSpans();

  private lineNo = 0;
  /** After the text end marker the server ignores the rest: pass it through. */
  private passAll = false;
  private failed = false;
  private carry: Buffer[] = [];
  private carryLen = 0;
  // Line-scanner state that survives a chunk boundary.
  private inQuote = false;
  private escPending = false;
  private crPending = false;
  // Results of scanLine besides its return value.
  private next = 0;
  private markerAt = 0;

  constructor(
    private readonly fmt: ResolvedCopyFormat,
    private readonly opts: RowRewriterOptions,
  ) {
    let last = -1;
    for (const f of opts.fields) {
      if (!Number.isInteger(f) || f < 0) throw new RangeError(`field index ${f} is not a non-negative integer`);
      this.isTarget[f] = true;
      last = Math.max(last, f);
    }
    this.last = last;
    this.inbound = opts.direction === 'in';
    this.maxRow = opts.maxRowBytes ?? DEFAULT_MAX_ROW_BYTES;
  }

  /** Rewrites the complete rows in chunk (and any row it completes); holds a trailing partial row. */
  push(chunk: Buffer): CopyOutput {
    this.checkUsable();
    if (chunk.length === 0) return [];
    if (this.passAll || this.last < 0) return [chunk];
    const out = new Pieces();
    try {
      this.consume(chunk, out);
    } catch (e) {
      this.failed = true;
      out.abandon();
      throw e;
    }
    return this.settle(out);
  }

  /** End of data (CopyDone): a final row without a line terminator is still a row. */
  end(): CopyOutput {
    this.checkUsable();
    if (this.passAll || this.carryLen === 0) return [];
    const out = new Pieces();
    try {
      if (this.fmt.csv && this.inQuote) throw new CopyDataError('COPY_BAD_DATA', 'unterminated CSV quoted field');
      const line = this.takeCarry(EMPTY);
      const from = this.processLine(line, 0, line.length, new FieldFinders(this.fmt, line), out, 0, true);
      out.add(line.subarray(from));
    } catch (e) {
      this.failed = true;
      out.abandon();
      throw e;
    }
    return this.settle(out);
  }

  private checkUsable(): void {
    if (this.failed) throw new CopyDataError('COPY_BAD_DATA', 'the COPY stream already failed');
  }

  private settle(out: Pieces): CopyOutput {
    const r = out.finish();
    if (!isPromise(r)) return r;
    return r.catch((e: unknown) => {
      this.failed = true;
      throw e;
    });
  }

  private consume(chunk: Buffer, out: Pieces): void {
    const n = chunk.length;
    const lf = new LineFinders(this.fmt, chunk);
    const ff = new FieldFinders(this.fmt, chunk);
    let p = 0;
    if (this.crPending) {
      this.crPending = false;
      if (chunk[0] === LF) p = 1; // second half of a CRLF split across chunks
    }
    // `from`: chunk bytes before it are already in `out`.
    let from = 0;
    if (this.carryLen > 0) {
      const t = this.scanLine(chunk, p, lf);
      if (t === NOT_FOUND) {
        this.hold(chunk, p);
        return;
      }
      const headEnd = t === END_MARKER ? Math.max(this.markerAt, 0) : t;
      const line = this.takeCarry(chunk.subarray(0, headEnd));
      // A marker at -1: its backslash was the last byte held over.
      const rowEnd = t === END_MARKER ? line.length - (this.markerAt < 0 ? 1 : 0) : line.length;
      let lineFrom = 0;
      if (rowEnd > 0) lineFrom = this.processLine(line, 0, rowEnd, new FieldFinders(this.fmt, line), out, 0, false);
      out.add(line.subarray(lineFrom));
      from = headEnd;
      if (t === END_MARKER) {
        this.passAll = true;
        out.add(chunk.subarray(from));
        return;
      }
      p = this.next;
    }
    while (p < n) {
      const t = this.scanLine(chunk, p, lf);
      if (t === NOT_FOUND) {
        out.add(chunk.subarray(from, p));
        this.hold(chunk, p);
        return;
      }
      if (t === END_MARKER) {
        // Postgres before 18 still loads the data before a `\.` on the same line.
        if (this.markerAt > p) from = this.processLine(chunk, p, this.markerAt, ff, out, from, false);
        this.passAll = true;
        break;
      }
      from = this.processLine(chunk, p, t, ff, out, from, false);
      p = this.next;
    }
    out.add(chunk.subarray(from));
  }

  /**
   * Finds where the line starting at p ends, continuing the scanner state. Returns
   * the index of its terminator (this.next = index after it), NOT_FOUND (state
   * kept for the next chunk), or END_MARKER (text `\.`, its backslash at this.markerAt).
   */
  private scanLine(buf: Buffer, p: number, f: LineFinders): number {
    const n = buf.length;
    const fmt = this.fmt;
    if (this.escPending) {
      this.escPending = false;
      if (!fmt.csv) {
        if (this.inbound && buf[p] === DOT) {
          this.markerAt = p - 1;
          return END_MARKER;
        }
        p++; // the escaped byte is data, even a newline
      } else if (buf[p] === fmt.quote || buf[p] === fmt.escape) {
        p++;
      }
    }
    for (;;) {
      if (fmt.csv && this.inQuote) {
        const q = f.special.next(p);
        const e = f.escape.next(p);
        if (e < q) {
          if (e + 1 >= n) {
            this.escPending = true;
            return NOT_FOUND;
          }
          const c = buf[e + 1];
          p = c === fmt.quote || c === fmt.escape ? e + 2 : e + 1;
          continue;
        }
        if (q >= n) return NOT_FOUND;
        this.inQuote = false;
        p = q + 1;
        continue;
      }
      const s = f.special.next(p);
      const nl = f.nl.next(p);
      const cr = f.cr.next(p);
      const t = nl < cr ? nl : cr;
      if (s < t) {
        if (fmt.csv) {
          this.inQuote = true;
          p = s + 1;
          continue;
        }
        if (s + 1 >= n) {
          this.escPending = true;
          return NOT_FOUND;
        }
        if (this.inbound && buf[s + 1] === DOT) {
          this.markerAt = s;
          return END_MARKER;
        }
        p = s + 2;
        continue;
      }
      if (t >= n) return NOT_FOUND;
      if (t === cr) {
        if (t + 1 < n) this.next = buf[t + 1] === LF ? t + 2 : t + 1;
        else {
          this.next = t + 1;
          this.crPending = true;
        }
      } else {
        this.next = t + 1;
      }
      return t;
    }
  }

  /**
   * Rewrites the target fields of the row buf[ls, le) into `out`, continuing from
   * `from` (bytes of buf before it are already out). Returns the new `from`.
   */
  private processLine(
    buf: Buffer,
    ls: number,
    le: number,
    ff: FieldFinders,
    out: Pieces,
    from: number,
    atEof: boolean,
  ): number {
    const fmt = this.fmt;
    if (le - ls > this.maxRow) throw this.tooLong();
    if (this.lineNo++ === 0 && fmt.header) return from;
    if (
      fmt.csv &&
      this.inbound &&
      fmt.csvEndMarker &&
      !atEof &&
      le - ls === 2 &&
      buf[ls] === BS &&
      buf[ls + 1] === DOT
    ) {
      return from; // the end marker line itself stays as it is; later rows are still rewritten
    }
    const spans = this.spans;
    splitFields(fmt, buf, ls, le, this.last, ff, spans);
    for (let i = 0; i < spans.count; i++) {
      if (!this.isTarget[i]) continue;
      const fs = spans.start[i];
      const fe = spans.end[i];
      const value = this.fieldValue(buf.subarray(fs, fe), spans.quoted[i], i);
      if (value === undefined) continue;
      const r = this.opts.rewrite(value, i);
      if (r === undefined) continue;
      const single = spans.count === 1 && !spans.more; // the row's only field
      out.add(buf.subarray(from, fs));
      if (isPromise(r)) {
        const raw = buf.subarray(fs, fe);
        out.defer(r.then((v) => (v === undefined ? raw : this.encode(v, i, single))));
      } else {
        out.add(this.encode(r, i, single));
      }
      from = fe;
    }
    return from;
  }

  /** The value Postgres would store for the field, or undefined for NULL and DEFAULT. */
  private fieldValue(raw: Buffer, quoted: boolean, i: number): Buffer | undefined {
    const fmt = this.fmt;
    if (fmt.csv) {
      if (!quoted && raw.equals(fmt.nullMarker)) {
        return fmt.forceNotNull(i) ? Buffer.from(fmt.nullMarker) : undefined;
      }
      if (fmt.defaultMarker && raw.equals(fmt.defaultMarker)) return undefined;
      const v = quoted ? decodeCsvField(fmt, raw) : raw;
      return fmt.forceNull(i) && v.equals(fmt.nullMarker) ? undefined : v;
    }
    if (raw.equals(fmt.nullMarker)) return undefined;
    if (fmt.defaultMarker && raw.equals(fmt.defaultMarker)) return undefined;
    return decodeTextField(raw);
  }

  private encode(v: Buffer, i: number, single: boolean): Buffer {
    const fmt = this.fmt;
    if (fmt.csv) {
      return encodeCsvField(fmt, v, { forceQuote: !this.inbound && fmt.forceQuote(i), single, avoidDefault: this.inbound });
    }
    return encodeTextField(v, fmt.delim, this.inbound ? [fmt.nullMarker, fmt.defaultMarker] : undefined);
  }

  private hold(chunk: Buffer, p: number): void {
    const len = chunk.length - p;
    if (this.carryLen + len > this.maxRow) throw this.tooLong();
    // A copy: the caller may reuse the chunk's memory once push returns.
    this.carry.push(Buffer.from(chunk.subarray(p)));
    this.carryLen += len;
  }

  private takeCarry(head: Buffer): Buffer {
    const line = Buffer.concat([...this.carry, head], this.carryLen + head.length);
    this.carry = [];
    this.carryLen = 0;
    return line;
  }

  private tooLong(): CopyDataError {
    return new CopyDataError('COPY_ROW_TOO_LONG', `COPY row is longer than ${this.maxRow} bytes`);
  }
}
