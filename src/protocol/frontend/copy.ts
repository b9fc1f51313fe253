// COPY sub-protocol messages a client sends: CopyData ('d'), CopyDone ('c'), CopyFail ('f').
import { FrontendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { emptyFrame, frameBody } from '../frame.js';

/** The payload of a CopyData frame, as a view. */
export function decodeCopyData(frame: Buffer): Buffer {
  return frameBody(frame, FrontendCode.CopyData, 'CopyData');
}

export function encodeCopyData(data: Uint8Array): Buffer {
  return new BufferWriter(5 + data.length).begin(FrontendCode.CopyData).bytes(data).end().finish();
}

export const COPY_DONE: Buffer = emptyFrame(FrontendCode.CopyDone);

export function decodeCopyFail(frame: Buffer): string {
  const r = new BufferReader(frameBody(frame, FrontendCode.CopyFail, 'CopyFail'));
  const msg = r.cstring();
  r.done('CopyFail');
  return msg;
}

export function encodeCopyFail(message: string): Buffer {
  return new BufferWriter(6 + message.length).begin(FrontendCode.CopyFail).cstring(message).end().finish();
}
