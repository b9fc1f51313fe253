// Describe ('D') and Close ('C') share one shape: 'S' (statement) or 'P'
// (portal), then a name.
import { FrontendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';
import { ProtocolError } from '../errors.js';

export type TargetKind = 'S' | 'P';

export interface Target {
  kind: TargetKind;
  name: string;
}

function decodeTarget(frame: Buffer, code: number, what: string): Target {
  const r = new BufferReader(frameBody(frame, code, what));
  const k = r.byte();
  if (k !== 0x53 && k !== 0x50) throw new ProtocolError('PROTO_TARGET', `${what}: invalid target type 0x${k.toString(16)}`);
  const name = r.cstring();
  r.done(what);
  return { kind: k === 0x53 ? 'S' : 'P', name };
}

function encodeTarget(code: number, t: Target): Buffer {
  return new BufferWriter(8 + t.name.length).begin(code).byte(t.kind.charCodeAt(0)).cstring(t.name).end().finish();
}

export const decodeDescribe = (frame: Buffer): Target => decodeTarget(frame, FrontendCode.Describe, 'Describe');
export const encodeDescribe = (t: Target): Buffer => encodeTarget(FrontendCode.Describe, t);
export const decodeClose = (frame: Buffer): Target => decodeTarget(frame, FrontendCode.Close, 'Close');
export const encodeClose = (t: Target): Buffer => encodeTarget(FrontendCode.Close, t);
