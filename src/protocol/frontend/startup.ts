// The untyped packets a client may open a connection with: StartupMessage,
// SSLRequest, GSSENCRequest, CancelRequest. Each is int32 length (counting
// itself) + int32 code + body; there is no type byte.
import { StartupCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { ProtocolError } from '../errors.js';

/** Postgres refuses startup packets longer than this (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET = 10_000;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; key: Buffer }
  | { kind: 'startup'; major: number; minor: number; params: Map<string, string> };

/** Length of the first packet in buf, or undefined while fewer than 4 bytes are buffered. */
export function startupPacketLength(buf: Buffer, offset = 0): number | undefined {
  if (buf.length - offset < 4) return undefined;
  const len = buf.readInt32BE(offset);
  if (len < 8 || len > MAX_STARTUP_PACKET) throw new ProtocolError('PROTO_STARTUP_LEN', `invalid startup packet length ${len}`);
  return len;
}

/** Decodes one whole packet (length included). */
export function decodeStartupPacket(packet: Buffer): StartupPacket {
  const r = new BufferReader(packet);
  const len = r.int32();
  if (len !== packet.length) throw new ProtocolError('PROTO_STARTUP_LEN', 'startup packet length mismatch');
  const code = r.int32();
  switch (code) {
    case StartupCode.SSLRequest:
      r.done('SSLRequest');
      return { kind: 'ssl' };
    case StartupCode.GSSENCRequest:
      r.done('GSSENCRequest');
      return { kind: 'gssenc' };
    case StartupCode.CancelRequest: {
      const pid = r.int32();
      // 3.0 keys are 4 bytes; 3.2 allows up to 256.
      if (r.remaining < 4 || r.remaining > 256) throw new ProtocolError('PROTO_CANCEL', 'invalid cancel key length');
      return { kind: 'cancel', pid, key: Buffer.from(r.rest()) };
    }
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  const params = new Map<string, string>();
  for (;;) {
    const name = r.cstring();
    if (name === '') break;
    params.set(name, r.cstring());
  }
  r.done('StartupMessage');
  return { kind: 'startup', major, minor, params };
}

/** Encodes a StartupMessage (used by tests and by the proxy's own connections). */
export function encodeStartup(params: Iterable<[string, string]>, major = 3, minor = 0): Buffer {
  const w = new BufferWriter().begin();
  w.int32((major << 16) | minor);
  for (const [k, v] of params) w.cstring(k).cstring(v);
  return w.byte(0).end().finish();
}

/** An 8-byte request packet (SSLRequest / GSSENCRequest). */
export function encodeRequest(code: number): Buffer {
  return new BufferWriter(8).begin().int32(code).end().finish();
}

/** A CancelRequest for (pid, key); key is 4 bytes in 3.0 and up to 256 in 3.2. */
export function encodeCancelRequest(pid: number, key: Buffer): Buffer {
  return new BufferWriter(16).begin().int32(StartupCode.CancelRequest).int32(pid).bytes(key).end().finish();
}

export const SSL_REQUEST: Buffer = encodeRequest(StartupCode.SSLRequest);
