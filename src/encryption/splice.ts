// Rebuilding a frame whose values were replaced: DataRow (server) and Bind
// (client) carry their values the same way, an int32 length (-1 = NULL) then
// the bytes. The new frame is one allocation, or none when it is written
// straight into the output (the write* forms); the unchanged runs between
// replaced values are copied whole, never field by field.
import { copyRange } from '../protocol/copy-range.js';

/** A value to replace: the frame's bytes [from, to) (its length word and bytes) give way to `value`. */
export interface ValueEdit {
  from: number;
  to: number;
  value: Buffer;
}

/** The frame with each edit applied (edits in frame order, not overlapping); its length word fixed. */
export function spliceValues(frame: Buffer, edits: readonly ValueEdit[]): Buffer {
  const out = Buffer.allocUnsafe(splicedSizeAll(frame, edits));
  writeSplicedAll(frame, edits, out, 0);
  return out;
}

/** The length of `frame` with the edits applied. */
export function splicedSizeAll(frame: Buffer, edits: readonly ValueEdit[]): number {
  let size = frame.length;
  for (const e of edits) size += 4 + e.value.length - (e.to - e.from);
  return size;
}

/** spliceValues written into dst at `at` (splicedSizeAll bytes). */
export function writeSplicedAll(frame: Buffer, edits: readonly ValueEdit[], dst: Buffer, at: number): void {
  let o = at;
  let prev = 0;
  for (const e of edits) {
    o = copyRange(frame, prev, e.from, dst, o);
    const n = e.value.length;
    dst[o] = n >>> 24;
    dst[o + 1] = n >>> 16;
    dst[o + 2] = n >>> 8;
    dst[o + 3] = n;
    o = copyRange(e.value, 0, n, dst, o + 4);
    prev = e.to;
  }
  o = copyRange(frame, prev, frame.length, dst, o);
  dst.writeInt32BE(o - at - 1, at + 1);
}

/** spliceValues with one edit, without building the list. */
export function spliceValue(frame: Buffer, from: number, to: number, value: Buffer): Buffer {
  return spliceValueFrom(frame, from, to, value, 0, value.length);
}

/** spliceValue with the new value src[vs, ve) (a run of a larger buffer, as the value cache holds it). */
export function spliceValueFrom(frame: Buffer, from: number, to: number, src: Uint8Array, vs: number, ve: number): Buffer {
  const out = Buffer.allocUnsafe(splicedSize(frame, from, to, ve - vs));
  writeSpliced(frame, from, to, src, vs, ve, out, 0);
  return out;
}

/** The length of `frame` once [from, to) holds a value of n bytes. */
export function splicedSize(frame: Buffer, from: number, to: number, n: number): number {
  return frame.length + 4 + n - (to - from);
}

/** spliceValueFrom written into dst at `at` (splicedSize bytes), as into an OutputSink's claim. */
export function writeSpliced(frame: Buffer, from: number, to: number, src: Uint8Array, vs: number, ve: number, dst: Buffer, at: number): void {
  const n = ve - vs;
  const size = splicedSize(frame, from, to, n);
  let o = copyRange(frame, 0, from, dst, at);
  dst[o] = n >>> 24;
  dst[o + 1] = n >>> 16;
  dst[o + 2] = n >>> 8;
  dst[o + 3] = n;
  o = copyRange(src, vs, ve, dst, o + 4);
  copyRange(frame, to, frame.length, dst, o);
  dst.writeInt32BE(size - 1, at + 1);
}
