// A cursor over one message body with bounds checks: reading past the end throws
// ProtocolError instead of returning garbage, because every byte here came from a
// peer the proxy does not trust.
import { ProtocolError } from './errors.js';

export class BufferReader {
  private pos: number;
  private readonly end: number;

  /** Reads buf[start, end). */
  constructor(
    private readonly buf: Buffer,
    start = 0,
    end = buf.length,
  ) {
    if (start < 0 || end > buf.length || start > end) throw new ProtocolError('PROTO_RANGE', 'reader range out of bounds');
    this.pos = start;
    this.end = end;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.end) {
      throw new ProtocolError('PROTO_SHORT', `message too short reading ${what} (${n} bytes at ${this.pos}, end ${this.end})`);
    }
  }

  byte(): number {
    this.need(1, 'byte');
    return this.buf[this.pos++]!;
  }

  int16(): number {
    this.need(2, 'int16');
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  uint16(): number {
    this.need(2, 'uint16');
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  /** An int16 element count; negative counts are malformed. */
  count16(): number {
    const n = this.int16();
    if (n < 0) throw new ProtocolError('PROTO_COUNT', `negative count ${n}`);
    return n;
  }

  int32(): number {
    this.need(4, 'int32');
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint32(): number {
    this.need(4, 'uint32');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A NUL-terminated string (UTF-8). */
  cstring(): string {
    const nul = this.buf.indexOf(0, this.pos);
    if (nul < 0 || nul >= this.end) throw new ProtocolError('PROTO_CSTRING', 'unterminated string');
    const s = this.buf.toString('utf8', this.pos, nul);
    this.pos = nul + 1;
    return s;
  }

  /** n raw bytes as a view (no copy). */
  bytes(n: number): Buffer {
    this.need(n, 'bytes');
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** Everything left, as a view. */
  rest(): Buffer {
    const v = this.buf.subarray(this.pos, this.end);
    this.pos = this.end;
    return v;
  }

  /** Throws unless the body was consumed exactly: trailing bytes mean a malformed message. */
  done(what: string): void {
    if (this.pos !== this.end) throw new ProtocolError('PROTO_TRAILING', `${this.end - this.pos} trailing bytes in ${what}`);
  }
}
