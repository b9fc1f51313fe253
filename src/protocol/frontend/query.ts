// Query ('Q'): one string holding one or more SQL statements (simple protocol).
import { FrontendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';

export function decodeQuery(frame: Buffer): string {
  const r = new BufferReader(frameBody(frame, FrontendCode.Query, 'Query'));
  const text = r.cstring();
  r.done('Query');
  return text;
}

export function encodeQuery(text: string): Buffer {
  return new BufferWriter(6 + text.length).begin(FrontendCode.Query).cstring(text).end().finish();
}
