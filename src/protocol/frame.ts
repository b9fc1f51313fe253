// Typed frames: type byte + int32 length (counting itself, not the type byte) + body.
// Helpers shared by the codecs: tag checks and a view of a frame's body.
import { ProtocolError } from './errors.js';

/** Bytes before a typed frame's body. */
export const HEADER_SIZE = 5;

/** Postgres rejects messages above PG_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1 = 1 GiB - 2). */
export const DEFAULT_MAX_FRAME = 0x3fffffff;

/** The body of a whole frame, checked against its type byte and length. */
export function frameBody(frame: Buffer, code: number, what: string): Buffer {
  if (frame.length < HEADER_SIZE) throw new ProtocolError('PROTO_SHORT', `${what}: frame too short`);
  if (frame[0] !== code) throw new ProtocolError('PROTO_TAG', `${what}: unexpected type byte 0x${frame[0]!.toString(16)}`);
  const len = frame.readInt32BE(1);
  if (len + 1 !== frame.length) throw new ProtocolError('PROTO_LEN', `${what}: length ${len} does not match frame of ${frame.length} bytes`);
  return frame.subarray(HEADER_SIZE);
}

/** A payload-less frame (Sync, Flush, CopyDone, ...), built once and shared. */
export function emptyFrame(code: number): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  b[0] = code;
  b.writeInt32BE(4, 1);
  return b;
}

/** Splits a buffer of whole frames into views (for injected/replacement batches). */
export function splitFrames(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < buf.length) {
    if (buf.length - pos < HEADER_SIZE) throw new ProtocolError('PROTO_SHORT', 'truncated frame in batch');
    const len = buf.readInt32BE(pos + 1);
    if (len < 4 || pos + 1 + len > buf.length) throw new ProtocolError('PROTO_LEN', 'bad frame length in batch');
    out.push(buf.subarray(pos, pos + 1 + len));
    pos += 1 + len;
  }
  return out;
}
