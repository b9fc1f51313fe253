// The client side of connection start-up, before any server is involved:
// answers SSLRequest ('S' + TLS termination, or 'N') and GSSENCRequest ('N'),
// and returns the StartupMessage to forward or the CancelRequest to route.
// Postgres allows GSSENC → SSL → startup, at most one of each negotiation.
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { decodeStartupPacket, startupPacketLength, type StartupPacket } from '../protocol/frontend/startup.js';
import { ProtocolError } from '../protocol/errors.js';
import { featureNotSupported, protocolViolation } from '../protocol/backend/error-response.js';

export type ClientHello =
  | {
      kind: 'startup';
      /** The socket to talk to the client on from now on (a TLSSocket after SSL). */
      socket: Socket;
      tls: boolean;
      /** The StartupMessage bytes, forwarded upstream as they are. */
      packet: Buffer;
      startup: Extract<StartupPacket, { kind: 'startup' }>;
      /** Bytes the client sent after the StartupMessage (normally none). */
      rest: Buffer;
    }
  | { kind: 'cancel'; pid: number; key: Buffer };

/** A start-up failure: `reply` (an ErrorResponse, or none) is written before closing. */
export class ClientHelloError extends Error {
  constructor(
    message: string,
    readonly reply?: Buffer,
  ) {
    super(message);
  }
}

export interface ClientHelloOptions {
  /** Client-facing TLS; undefined answers SSLRequest with 'N'. */
  secureContext?: SecureContext;
  /** Give up on a client that does not finish start-up in time (Postgres: authentication_timeout). */
  timeoutMs: number;
}

const N = Buffer.from('N');
const S = Buffer.from('S');

/** Reads start-up packets from `raw` until a StartupMessage or CancelRequest arrives. */
export function readClientHello(raw: Socket, opts: ClientHelloOptions): Promise<ClientHello> {
  return new Promise<ClientHello>((resolve, reject) => {
    let sock: Socket = raw;
    let buf: Buffer = Buffer.alloc(0);
    let sslDone = false;
    let gssDone = false;
    let settled = false;
    const timer = setTimeout(() => fail(new ClientHelloError('start-up timeout')), opts.timeoutMs);

    const detach = (): void => {
      sock.pause();
      sock.removeListener('data', onData);
      sock.removeListener('end', onEnd);
      sock.removeListener('error', onError);
      sock.removeListener('close', onEnd);
    };
    const finish = (v: ClientHello): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      detach();
      resolve(v);
    };
    function fail(err: Error): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      detach();
      reject(err);
    }
    function onEnd(): void {
      fail(new ClientHelloError('client closed during start-up'));
    }
    function onError(err: Error): void {
      fail(new ClientHelloError(`client socket error during start-up: ${err.message}`));
    }
    const attach = (s: Socket): void => {
      sock = s;
      s.on('data', onData);
      s.on('end', onEnd);
      s.on('close', onEnd);
      s.on('error', onError);
      s.resume();
    };

    function onData(chunk: Buffer): void {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      try {
        step();
      } catch (err) {
        if (err instanceof ClientHelloError) fail(err);
        else if (err instanceof ProtocolError) fail(new ClientHelloError(err.message, protocolViolation(err.message)));
        else fail(err as Error);
      }
    }

    function step(): void {
      while (!settled) {
        const len = startupPacketLength(buf);
        if (len === undefined || buf.length < len) return;
        const packet = buf.subarray(0, len);
        const rest = buf.subarray(len);
        const p = decodeStartupPacket(packet);
        switch (p.kind) {
          case 'cancel':
            finish({ kind: 'cancel', pid: p.pid, key: p.key });
            return;
          case 'startup':
            if (p.major !== 3) {
              const msg = `unsupported frontend protocol ${p.major}.${p.minor}: server supports 3.0 to 3.2`;
              throw new ClientHelloError(msg, featureNotSupported(msg, 'FATAL'));
            }
            finish({ kind: 'startup', socket: sock, tls: sock !== raw, packet: Buffer.from(packet), startup: p, rest: Buffer.from(rest) });
            return;
          case 'gssenc':
            if (gssDone || sslDone) throw new ProtocolError('PROTO_NEGOTIATION', 'unexpected GSSENCRequest');
            gssDone = true;
            buf = rest;
            sock.write(N);
            continue;
          case 'ssl':
            if (sslDone) throw new ProtocolError('PROTO_NEGOTIATION', 'unexpected SSLRequest');
            sslDone = true;
            buf = rest;
            if (!opts.secureContext) {
              sock.write(N);
              continue;
            }
            // CVE-2021-3935 class: plaintext sent behind the SSLRequest, before the
            // handshake, could be injected by a man in the middle. Refuse it.
            if (rest.length > 0) {
              const msg = 'received unencrypted data after SSL request';
              throw new ClientHelloError(msg, protocolViolation(msg));
            }
            startTls();
            return;
        }
      }
    }

    function startTls(): void {
      const plain = sock;
      plain.removeListener('data', onData);
      plain.removeListener('end', onEnd);
      plain.removeListener('close', onEnd);
      plain.pause();
      plain.write(S);
      const tlsSock = new TLSSocket(plain, { isServer: true, secureContext: opts.secureContext! });
      tlsSock.setNoDelay?.(true);
      // The plain socket's 'error' listener stays: the TLS socket reports through its own.
      plain.removeListener('error', onError);
      plain.on('error', () => {});
      attach(tlsSock);
    }

    attach(raw);
  });
}
