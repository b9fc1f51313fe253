// A bare protocol client for integration tests: writes frames built with
// pg-protocol's `serialize` and reads back raw server frames, so tests can assert
// the exact message sequence a client would see through the proxy.
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { createHash } from 'node:crypto';
import { serialize } from 'pg-protocol';
import { encodeStartup } from '../../src/protocol/frontend/startup.js';
import { decodeErrorFields, type ErrorFields } from '../../src/protocol/backend/error-response.js';

export interface Msg {
  /** The type byte as a letter ('Z', 'D', ...). */
  code: string;
  body: Buffer;
  frame: Buffer;
}

export interface RawOptions {
  user?: string;
  database: string;
  password?: string;
  /** Minor protocol version to ask for (default 0). */
  minor?: number;
  ssl?: boolean;
  params?: Record<string, string>;
}

export class RawClient {
  private buf = Buffer.alloc(0);
  private queue: Msg[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  /** BackendKeyData seen during start-up. */
  key?: { pid: number; key: Buffer };
  params = new Map<string, string>();
  /** Type bytes of every start-up message, in order. */
  startup: string[] = [];

  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        if (this.buf.length < 5) break;
        const len = this.buf.readInt32BE(1);
        if (this.buf.length < 1 + len) break;
        const frame = this.buf.subarray(0, 1 + len);
        this.queue.push({ code: String.fromCharCode(frame[0]!), body: frame.subarray(5), frame });
        this.buf = this.buf.subarray(1 + len);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static async connect(port: number, opts: RawOptions, host = '127.0.0.1'): Promise<RawClient> {
    let socket: Socket = connect({ host, port });
    await new Promise<void>((res, rej) => {
      socket.once('connect', () => res());
      socket.once('error', rej);
    });
    if (opts.ssl) {
      socket.write(serialize.requestSsl());
      const answer = await new Promise<Buffer>((res) => socket.once('data', res));
      if (answer.toString() !== 'S') throw new Error(`SSL refused: ${answer.toString()}`);
      socket = tlsConnect({ socket, rejectUnauthorized: false });
      await new Promise<void>((res, rej) => {
        socket.once('secureConnect', () => res());
        socket.once('error', rej);
      });
    }
    const c = new RawClient(socket);
    const params: [string, string][] = [['user', opts.user ?? 'pgcmek_trust'], ['database', opts.database], ...Object.entries(opts.params ?? {})];
    socket.write(encodeStartup(params, 3, opts.minor ?? 0));
    await c.authenticate(opts);
    return c;
  }

  private async authenticate(opts: RawOptions): Promise<void> {
    for (;;) {
      const m = await this.next();
      this.startup.push(m.code);
      if (m.code === 'E') throw new Error(`start-up failed: ${JSON.stringify(decodeErrorFields(m.body))}`);
      if (m.code === 'R') {
        const sub = m.body.readInt32BE(0);
        if (sub === 3) this.send(serialize.password(opts.password ?? ''));
        else if (sub === 5) {
          const salt = m.body.subarray(4, 8);
          const inner = createHash('md5').update((opts.password ?? '') + (opts.user ?? '')).digest('hex');
          this.send(serialize.password('md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex')));
        } else if (sub !== 0) throw new Error(`RawClient: unsupported auth ${sub}`);
      } else if (m.code === 'K') this.key = { pid: m.body.readInt32BE(0), key: Buffer.from(m.body.subarray(4)) };
      else if (m.code === 'S') {
        const [k, v] = m.body.toString().split('\0');
        this.params.set(k!, v!);
      } else if (m.code === 'Z') return;
    }
  }

  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  /** The next server message (rejects after `ms`). */
  async next(ms = 10_000): Promise<Msg> {
    const deadline = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timeout waiting for a server message');
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
    return this.queue.shift()!;
  }

  /** Messages up to and including the next ReadyForQuery. */
  async untilReady(ms = 10_000): Promise<Msg[]> {
    const out: Msg[] = [];
    for (;;) {
      const m = await this.next(ms);
      out.push(m);
      if (m.code === 'Z') return out;
    }
  }

  /** Exactly n messages. */
  async take(n: number, ms = 10_000): Promise<Msg[]> {
    const out: Msg[] = [];
    while (out.length < n) out.push(await this.next(ms));
    return out;
  }

  /** Resolves when the server closes the connection. */
  async waitClosed(ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      if (this.queue.length > 0) this.queue.shift();
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Nothing arrives within ms. */
  async quiet(ms = 200): Promise<boolean> {
    await new Promise((r) => setTimeout(r, ms));
    return this.queue.length === 0;
  }

  end(): void {
    if (!this.closed) this.socket.end(serialize.end());
  }
}

export const codes = (ms: Msg[]): string => ms.map((m) => m.code).join('');
export const errorOf = (m: Msg): ErrorFields => decodeErrorFields(m.body);
/** DataRow column values as text. */
export function rowValues(m: Msg): (string | null)[] {
  const n = m.body.readInt16BE(0);
  const out: (string | null)[] = [];
  let p = 2;
  for (let i = 0; i < n; i++) {
    const len = m.body.readInt32BE(p);
    p += 4;
    if (len === -1) out.push(null);
    else {
      out.push(m.body.toString('utf8', p, p + len));
      p += len;
    }
  }
  return out;
}

/** The values of every DataRow among `ms`, a row per array. */
export function dataRows(ms: Msg[]): (string | null)[][] {
  return ms.filter((m) => m.code === 'D').map(rowValues);
}
