// The npm `fernet` package (crypto-js based) as an independent test oracle.
// It ships no types and is CommonJS, so it is loaded through createRequire and
// typed here with just what the tests use.
import { createRequire } from 'node:module';

interface FernetSecret {
  readonly signingKeyHex: string;
}
interface FernetToken {
  encode(message: string): string;
  decode(): string;
}
interface FernetLib {
  Secret: new (base64Key: string) => FernetSecret;
  Token: new (opts: { secret: FernetSecret; token?: string; ttl?: number; iv?: number[]; time?: string }) => FernetToken;
}

export const fernetLib = createRequire(import.meta.url)('fernet') as FernetLib;

/** A token from the oracle; `time` is an RFC 3339 / ISO time, `iv` 16 byte values. */
export function oracleEncrypt(keyB64: string, message: string, opts: { iv?: number[]; time?: string } = {}): string {
  const secret = new fernetLib.Secret(keyB64);
  return new fernetLib.Token({ secret, ttl: 0, ...opts }).encode(message);
}

export function oracleDecrypt(keyB64: string, token: string): string {
  const secret = new fernetLib.Secret(keyB64);
  return new fernetLib.Token({ secret, token, ttl: 0 }).decode();
}
