// Execute ('E'): portal name and a row limit (0 = no limit; a limit may suspend the portal).
import { FrontendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';

export interface Execute {
  portal: string;
  maxRows: number;
}

export function decodeExecute(frame: Buffer): Execute {
  const r = new BufferReader(frameBody(frame, FrontendCode.Execute, 'Execute'));
  const portal = r.cstring();
  const maxRows = r.int32();
  r.done('Execute');
  return { portal, maxRows };
}

export function encodeExecute(e: Execute): Buffer {
  return new BufferWriter(10 + e.portal.length).begin(FrontendCode.Execute).cstring(e.portal).int32(e.maxRows).end().finish();
}
