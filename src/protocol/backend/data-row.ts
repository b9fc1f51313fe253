// DataRow ('D'): int16 column count, then per column an int32 length (-1 = NULL)
// and the bytes. Decoded values are views into the frame (no copies).
import { BackendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';

export type DataRow = (Buffer | null)[];

export function decodeDataRow(frame: Buffer): DataRow {
  const r = new BufferReader(frameBody(frame, BackendCode.DataRow, 'DataRow'));
  const n = r.count16();
  const cols = new Array<Buffer | null>(n);
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    cols[i] = len === -1 ? null : r.bytes(len);
  }
  r.done('DataRow');
  return cols;
}

export function encodeDataRow(cols: DataRow): Buffer {
  let size = 7;
  for (const c of cols) size += 4 + (c ? c.length : 0);
  const w = new BufferWriter(size).begin(BackendCode.DataRow).int16(cols.length);
  for (const c of cols) {
    if (c === null) w.int32(-1);
    else w.int32(c.length).bytes(c);
  }
  return w.end().finish();
}
