// Rebuilding a frame whose values were replaced: DataRow (server) and Bind
// (client) carry their values the same way, an int32 length (-1 = NULL) then
// the bytes. The new frame is one allocation; the unchanged runs between
// replaced values are copied whole, never field by field.

/** A value to replace: the frame's bytes [from, to) (its length word and bytes) give way to `value`. */
export interface ValueEdit {
  from: number;
  to: number;
  value: Buffer;
}

/** The frame with each edit applied (edits in frame order, not overlapping); its length word fixed. */
export function spliceValues(frame: Buffer, edits: readonly ValueEdit[]): Buffer {
  let size = frame.length;
  for (const e of edits) size += 4 + e.value.length - (e.to - e.from);
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  let prev = 0;
  for (const e of edits) {
    o = copyRange(frame, prev, e.from, out, o);
    const n = e.value.length;
    out[o] = n >>> 24;
    out[o + 1] = n >>> 16;
    out[o + 2] = n >>> 8;
    out[o + 3] = n;
    o = copyRange(e.value, 0, n, out, o + 4);
    prev = e.to;
  }
  copyRange(frame, prev, frame.length, out, o);
  out.writeInt32BE(size - 1, 1);
  return out;
}

/** spliceValues with one edit, without building the list. */
export function spliceValue(frame: Buffer, from: number, to: number, value: Buffer): Buffer {
  return spliceValueFrom(frame, from, to, value, 0, value.length);
}

/** spliceValue with the new value src[vs, ve) (a run of a larger buffer, as the value cache holds it). */
export function spliceValueFrom(frame: Buffer, from: number, to: number, src: Uint8Array, vs: number, ve: number): Buffer {
  const n = ve - vs;
  const size = frame.length + 4 + n - (to - from);
  const out = Buffer.allocUnsafe(size);
  let o = copyRange(frame, 0, from, out, 0);
  out[o] = n >>> 24;
  out[o + 1] = n >>> 16;
  out[o + 2] = n >>> 8;
  out[o + 3] = n;
  o = copyRange(src, vs, ve, out, o + 4);
  copyRange(frame, to, frame.length, out, o);
  out.writeInt32BE(size - 1, 1);
  return out;
}

/**
 * src[s, e) into dst at `at`; returns the offset after it. Short runs (most
 * fields of a row) are copied in JS: a native copy's call costs more than a few
 * dozen bytes of loop.
 */
function copyRange(src: Uint8Array, s: number, e: number, dst: Uint8Array, at: number): number {
  const n = e - s;
  if (n <= 64) {
    for (let k = 0; k < n; k++) dst[at + k] = src[s + k]!;
  } else {
    dst.set(src.subarray(s, e), at);
  }
  return at + n;
}
