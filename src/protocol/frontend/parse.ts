// Parse ('P'): statement name, query text, parameter type OIDs (0 = unspecified).
import { FrontendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';

export interface Parse {
  /** '' = the unnamed statement. */
  name: string;
  text: string;
  paramTypes: number[];
}

export function decodeParse(frame: Buffer): Parse {
  const r = new BufferReader(frameBody(frame, FrontendCode.Parse, 'Parse'));
  const name = r.cstring();
  const text = r.cstring();
  const n = r.count16();
  const paramTypes = new Array<number>(n);
  for (let i = 0; i < n; i++) paramTypes[i] = r.uint32();
  r.done('Parse');
  return { name, text, paramTypes };
}

export function encodeParse(p: Parse): Buffer {
  const w = new BufferWriter(16 + p.text.length).begin(FrontendCode.Parse).cstring(p.name).cstring(p.text).int16(p.paramTypes.length);
  for (const t of p.paramTypes) w.uint32(t);
  return w.end().finish();
}
