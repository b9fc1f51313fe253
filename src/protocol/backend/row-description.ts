// RowDescription ('T'): one field per result column. The table OID and column
// number say where a column came from (0 when it is computed), which is how a
// later layer tells an encrypted column from any other.
import { BackendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';

export interface FieldDescription {
  name: string;
  /** Source table OID, 0 if none. */
  tableOid: number;
  /** Source column number (attnum), 0 if none. */
  columnAttr: number;
  typeOid: number;
  typeSize: number;
  typeModifier: number;
  /** 0 text, 1 binary (always 0 in a statement Describe: formats come with Bind). */
  format: number;
}

export type RowDescription = FieldDescription[];

export function decodeRowDescription(frame: Buffer): RowDescription {
  const r = new BufferReader(frameBody(frame, BackendCode.RowDescription, 'RowDescription'));
  const n = r.count16();
  const fields = new Array<FieldDescription>(n);
  for (let i = 0; i < n; i++) {
    fields[i] = {
      name: r.cstring(),
      tableOid: r.uint32(),
      columnAttr: r.int16(),
      typeOid: r.uint32(),
      typeSize: r.int16(),
      typeModifier: r.int32(),
      format: r.int16(),
    };
  }
  r.done('RowDescription');
  return fields;
}

export function encodeRowDescription(fields: RowDescription): Buffer {
  const w = new BufferWriter(8 + fields.length * 32).begin(BackendCode.RowDescription).int16(fields.length);
  for (const f of fields) {
    w.cstring(f.name).uint32(f.tableOid).int16(f.columnAttr).uint32(f.typeOid).int16(f.typeSize).int32(f.typeModifier).int16(f.format);
  }
  return w.end().finish();
}
