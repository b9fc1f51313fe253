// Authentication ('R'): an int32 sub-code, then sub-code-specific data. The proxy
// rewrites only AuthenticationSASL, to drop SCRAM-SHA-256-PLUS: channel binding
// ties SCRAM to the TLS certificate of the hop it runs over, and the proxy
// re-terminates TLS, so a client binding to the proxy's certificate could never
// satisfy a server that binds to its own.
import { AuthCode, BackendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { frameBody } from '../frame.js';
import { ProtocolError } from '../errors.js';

export const SCRAM_PLUS = 'SCRAM-SHA-256-PLUS';

/** The sub-code of an Authentication frame. */
export function authenticationCode(frame: Buffer): number {
  const body = frameBody(frame, BackendCode.Authentication, 'Authentication');
  if (body.length < 4) throw new ProtocolError('PROTO_SHORT', 'Authentication: missing sub-code');
  return body.readInt32BE(0);
}

/** The mechanism list of an AuthenticationSASL frame. */
export function decodeAuthenticationSASL(frame: Buffer): string[] {
  const r = new BufferReader(frameBody(frame, BackendCode.Authentication, 'AuthenticationSASL'));
  if (r.int32() !== AuthCode.SASL) throw new ProtocolError('PROTO_AUTH', 'not an AuthenticationSASL message');
  const mechanisms: string[] = [];
  for (;;) {
    const m = r.cstring();
    if (m === '') break;
    mechanisms.push(m);
  }
  r.done('AuthenticationSASL');
  return mechanisms;
}

export function encodeAuthenticationSASL(mechanisms: readonly string[]): Buffer {
  const w = new BufferWriter(32).begin(BackendCode.Authentication).int32(AuthCode.SASL);
  for (const m of mechanisms) w.cstring(m);
  return w.byte(0).end().finish();
}

/**
 * The frame to forward for an AuthenticationSASL: the same frame when it has no
 * -PLUS mechanism, else a copy without it.
 */
export function stripChannelBinding(frame: Buffer): Buffer {
  const mechs = decodeAuthenticationSASL(frame);
  if (!mechs.includes(SCRAM_PLUS)) return frame;
  return encodeAuthenticationSASL(mechs.filter((m) => m !== SCRAM_PLUS));
}
