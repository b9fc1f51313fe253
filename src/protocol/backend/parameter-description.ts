// ParameterDescription ('t'): the type OID the server resolved for each parameter
// of a prepared statement (answer to Describe of a statement, before T or n).
import { BackendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';

export function decodeParameterDescription(frame: Buffer): number[] {
  const r = new BufferReader(frameBody(frame, BackendCode.ParameterDescription, 'ParameterDescription'));
  // The count is unsigned on the wire since Postgres 14 allows up to 65535 parameters.
  const n = r.uint16();
  const oids = new Array<number>(n);
  for (let i = 0; i < n; i++) oids[i] = r.uint32();
  r.done('ParameterDescription');
  return oids;
}

export function encodeParameterDescription(oids: readonly number[]): Buffer {
  const w = new BufferWriter(7 + oids.length * 4).begin(BackendCode.ParameterDescription).uint16(oids.length);
  for (const o of oids) w.uint32(o);
  return w.end().finish();
}
