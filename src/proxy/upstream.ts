// Opens the server connection for one client session (no pooling) and
// negotiates TLS per `upstream.tls`, the way libpq's sslmode does:
//   disable      plain TCP, no SSLRequest
//   prefer       SSLRequest; TLS on 'S' (unverified), plain on 'N'
//   require      SSLRequest; 'N' is an error; certificate not verified
//   verify-full  SSLRequest; 'N' is an error; CA (upstream.caFile) and hostname verified
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { UpstreamTlsMode } from '../config/types.js';
import { SSL_REQUEST } from '../protocol/frontend/startup.js';
import { connectReusing } from './reuse-reader.js';

export interface UpstreamTarget {
  host: string;
  port: number;
  tls: UpstreamTlsMode;
  /** PEM CA bundle, read once (verify-full). */
  ca?: Buffer;
  connectTimeoutMs: number;
}

export function upstreamTarget(cfg: { host: string; port: number; tls: UpstreamTlsMode; caFile?: string }, connectTimeoutMs = 10_000): UpstreamTarget {
  return {
    host: cfg.host,
    port: cfg.port,
    tls: cfg.tls,
    ca: cfg.caFile ? readFileSync(cfg.caFile) : undefined,
    connectTimeoutMs,
  };
}

/** Why a server connection failed, in words fit for the client's ErrorResponse. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    /** 08001 = could not establish; 08006 = established then failed. */
    readonly sqlstate: '08001' | '08006',
  ) {
    super(message);
  }
}

function tcpConnect(t: UpstreamTarget): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Without TLS the pump reads straight from a reused buffer; TLS has buffers of its own.
    const s = t.tls === 'disable' ? connectReusing({ host: t.host, port: t.port, noDelay: true }) : netConnect({ host: t.host, port: t.port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new UpstreamError(`could not connect to server ${t.host}:${t.port}: timeout`, '08001'));
    }, t.connectTimeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new UpstreamError(`could not connect to server ${t.host}:${t.port}: ${err.code ?? err.message}`, '08001'));
    });
  });
}

/** Sends SSLRequest and reads the one-byte answer. */
function askSsl(s: Socket, t: UpstreamTarget): Promise<'S' | 'N'> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new UpstreamError('server did not answer SSLRequest', '08001')), t.connectTimeoutMs);
    const onData = (chunk: Buffer): void => {
      // The answer is one byte; anything behind it before the handshake is an attack (CVE-2021-23214 class).
      if (chunk.length !== 1) return done(new UpstreamError('unexpected data after the server SSL response', '08001'));
      const c = String.fromCharCode(chunk[0]!);
      if (c === 'S' || c === 'N') return done(undefined, c);
      done(new UpstreamError(`server answered SSLRequest with 0x${chunk[0]!.toString(16)}`, '08001'));
    };
    const onError = (err: Error): void => done(new UpstreamError(`server connection failed during SSL negotiation: ${err.message}`, '08001'));
    const onClose = (): void => done(new UpstreamError('server closed the connection during SSL negotiation', '08001'));
    function done(err?: Error, v?: 'S' | 'N'): void {
      clearTimeout(timer);
      s.pause();
      s.removeListener('data', onData);
      s.removeListener('error', onError);
      s.removeListener('close', onClose);
      if (err) {
        s.destroy();
        reject(err);
      } else resolve(v!);
    }
    s.on('data', onData);
    s.once('error', onError);
    s.once('close', onClose);
    s.write(SSL_REQUEST);
  });
}

function tlsHandshake(s: Socket, t: UpstreamTarget): Promise<Socket> {
  const verify = t.tls === 'verify-full';
  const opts: ConnectionOptions = {
    socket: s,
    // verify-full: node's default CA + hostname checks; prefer/require: encryption only, as libpq.
    rejectUnauthorized: verify,
    ca: verify ? t.ca : undefined,
    // SNI only for names, as libpq does.
    servername: /^[\d.]+$|:/.test(t.host) ? undefined : t.host,
  };
  // Errors of the wrapped socket surface on the TLS socket; keep the plain one from throwing.
  s.on('error', () => {});
  return new Promise((resolve, reject) => {
    const ts = tlsConnect(opts);
    const timer = setTimeout(() => {
      ts.destroy();
      reject(new UpstreamError('server TLS handshake timeout', '08001'));
    }, t.connectTimeoutMs);
    ts.once('secureConnect', () => {
      clearTimeout(timer);
      ts.removeAllListeners('error');
      ts.setNoDelay(true);
      resolve(ts);
    });
    ts.once('error', (err) => {
      clearTimeout(timer);
      ts.destroy();
      reject(new UpstreamError(`server TLS handshake failed: ${err.message}`, '08001'));
    });
  });
}

/** Connects and negotiates TLS; the returned socket is paused with no listeners. */
export async function connectUpstream(t: UpstreamTarget): Promise<Socket> {
  const s = await tcpConnect(t);
  if (t.tls === 'disable') return s;
  const answer = await askSsl(s, t);
  if (answer === 'S') return tlsHandshake(s, t);
  if (t.tls === 'prefer') return s;
  s.destroy();
  throw new UpstreamError(`server does not support SSL, but upstream.tls is ${t.tls}`, '08001');
}
