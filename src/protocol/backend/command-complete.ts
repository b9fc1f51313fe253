// CommandComplete ('C'): the command tag ("SELECT 3", "INSERT 0 1", "COPY 5", ...).
import { BackendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';

export function decodeCommandComplete(frame: Buffer): string {
  const r = new BufferReader(frameBody(frame, BackendCode.CommandComplete, 'CommandComplete'));
  const tag = r.cstring();
  r.done('CommandComplete');
  return tag;
}

export function encodeCommandComplete(tag: string): Buffer {
  return new BufferWriter(6 + tag.length).begin(BackendCode.CommandComplete).cstring(tag).end().finish();
}
