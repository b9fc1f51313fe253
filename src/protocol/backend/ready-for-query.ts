// ReadyForQuery ('Z'): the server's transaction status, I (idle), T (in a
// transaction block) or E (failed transaction block). The proxy never invents it.
import { BackendCode, TxStatus } from '../codes.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';
import { ProtocolError } from '../errors.js';

export type TxStatusValue = (typeof TxStatus)[keyof typeof TxStatus];

export function decodeReadyForQuery(frame: Buffer): TxStatusValue {
  const body = frameBody(frame, BackendCode.ReadyForQuery, 'ReadyForQuery');
  const s = body[0];
  if (body.length !== 1 || (s !== TxStatus.Idle && s !== TxStatus.InTransaction && s !== TxStatus.Failed)) {
    throw new ProtocolError('PROTO_RFQ', 'malformed ReadyForQuery');
  }
  return s;
}

export function encodeReadyForQuery(status: TxStatusValue): Buffer {
  return new BufferWriter(6).begin(BackendCode.ReadyForQuery).byte(status).end().finish();
}
