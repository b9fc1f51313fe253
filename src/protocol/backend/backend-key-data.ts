// BackendKeyData ('K'): the process id and secret key a client quotes in a
// CancelRequest. The key is 4 bytes in protocol 3.0 and variable (up to 256
// bytes; Postgres 18 sends 32) in 3.2.
import { BackendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';
import { ProtocolError } from '../errors.js';

export interface BackendKeyData {
  pid: number;
  key: Buffer;
}

export function decodeBackendKeyData(frame: Buffer): BackendKeyData {
  const r = new BufferReader(frameBody(frame, BackendCode.BackendKeyData, 'BackendKeyData'));
  const pid = r.int32();
  const key = Buffer.from(r.rest());
  if (key.length < 4 || key.length > 256) throw new ProtocolError('PROTO_KEY', `invalid cancel key length ${key.length}`);
  return { pid, key };
}

export function encodeBackendKeyData(k: BackendKeyData): Buffer {
  return new BufferWriter(9 + k.key.length).begin(BackendCode.BackendKeyData).int32(k.pid).bytes(k.key).end().finish();
}
