// Builds messages: begin() reserves the type byte and length, fields are appended,
// end() fills the length in. Several messages may be written back to back;
// finish() returns them as one copied Buffer and resets the writer.
import { ProtocolError } from './errors.js';

/** Largest message the writer will build (the int32 length must fit). */
const MAX = 0x7fffffff;

export class BufferWriter {
  private buf: Buffer;
  private pos = 0;
  /** Where the current message's length field sits. */
  private lenAt = -1;

  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    if (need > MAX) throw new ProtocolError('PROTO_TOO_LARGE', 'message too large to encode');
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafe(Math.min(size, MAX));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Starts a message with a type byte (or none, for startup-style packets). */
  begin(code?: number): this {
    if (code !== undefined) {
      this.ensure(1);
      this.buf[this.pos++] = code;
    }
    this.ensure(4);
    this.lenAt = this.pos;
    this.pos += 4;
    return this;
  }

  byte(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  int16(v: number): this {
    this.ensure(2);
    this.buf.writeInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  uint16(v: number): this {
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  int32(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  uint32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  /** A string followed by NUL. A NUL inside would split the field on the wire, so it is refused. */
  cstring(s: string): this {
    const n = Buffer.byteLength(s);
    if (s.includes('\0')) throw new ProtocolError('PROTO_NUL', 'string contains a NUL byte');
    this.ensure(n + 1);
    this.buf.write(s, this.pos, 'utf8');
    this.pos += n;
    this.buf[this.pos++] = 0;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** Ends the current message: writes its length (which counts itself, not the type byte). */
  end(): this {
    if (this.lenAt < 0) throw new ProtocolError('PROTO_WRITER', 'end() without begin()');
    this.buf.writeInt32BE(this.pos - this.lenAt, this.lenAt);
    this.lenAt = -1;
    return this;
  }

  /** All messages written so far, as one Buffer (a copy, safe to keep); the writer is reset. */
  finish(): Buffer {
    if (this.lenAt >= 0) throw new ProtocolError('PROTO_WRITER', 'finish() inside an unfinished message');
    const out = Buffer.from(this.buf.subarray(0, this.pos));
    this.pos = 0;
    return out;
  }
}
