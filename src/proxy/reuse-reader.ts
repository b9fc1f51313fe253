// Reads a plain TCP connection (the server side from the start, the client side
// once start-up is over) into one reused buffer (net's `onread`) instead of the
// fresh 64 KiB allocation and stream push Node makes per read. With both sides,
// pgcmek's CPU per `pgbench -S -M prepared -c 16` transaction went from 33.4 to
// 26.6 µs (interleaved A/B on one machine).
//
// The catch is ownership: the bytes of a chunk are overwritten by the next read.
// The consumer (the pump) returns true when it still refers to a chunk after
// handling it (a frame handed to a hook, a backlog behind a pending Promise, a
// write the kernel did not take at once); the next read then goes into a new
// buffer and the old one is left to whoever holds it.
import { connect, Socket } from 'node:net';

const SIZE = 64 * 1024;
/** Bytes read before the pump listens, beyond which reading pauses. */
const EARLY_MAX = 1 << 20;

/** Handles one chunk; true = it keeps a reference to the chunk's bytes. */
export type ChunkSink = (chunk: Buffer) => boolean;

const drop: ChunkSink = () => false;
const readers = new WeakMap<Socket, ReuseReader>();

export class ReuseReader {
  private buf: Buffer = Buffer.allocUnsafe(SIZE);
  private kept = false;
  private sink: ChunkSink | null = null;
  /** Bytes that arrived before anyone listened (copied). */
  private early: Buffer[] = [];
  private earlyBytes = 0;

  readonly onread = {
    buffer: (): Buffer => {
      if (this.kept) {
        this.buf = Buffer.allocUnsafe(SIZE);
        this.kept = false;
      }
      return this.buf;
    },
    callback: (n: number, buf: Uint8Array): boolean => {
      const chunk = (buf as Buffer).subarray(0, n);
      if (this.sink === null) {
        this.early.push(Buffer.from(chunk));
        this.earlyBytes += n;
        // Nobody listens yet: stop reading past a bound (the listener's resume() starts it again).
        return this.earlyBytes < EARLY_MAX;
      }
      if (this.sink(chunk)) this.kept = true;
      return true;
    },
  };

  /** Sends every later chunk to `sink` (null: drop them). */
  listen(sink: ChunkSink | null): void {
    this.sink = sink ?? drop;
    const early = this.early;
    this.early = [];
    this.earlyBytes = 0;
    if (sink === null) return;
    // Copies: the sink may keep them, and they are not the reused buffer.
    for (const c of early) sink(c);
  }
}

/** The reuse reader of a socket made by connectReusing(), if any. */
export function reuseReaderOf(s: Socket): ReuseReader | undefined {
  return readers.get(s);
}

/** Records `r` as the reader of `s` (which must have been created with `onread: r.onread`). */
export function attachReuseReader(s: Socket, r: ReuseReader): Socket {
  readers.set(s, r);
  return s;
}

/** net.connect() with the reader attached (plain TCP only: TLS reads through its own buffers). */
export function connectReusing(opts: { host: string; port: number; noDelay?: boolean }): Socket {
  const r = new ReuseReader();
  return attachReuseReader(connect({ ...opts, onread: r.onread }), r);
}

/** What Node keeps on a net.Socket and its TCP handle that adoption must touch. */
interface HandleOwner {
  _handle: { reading?: boolean; readStop?: () => number } | null;
}

/**
 * Moves an accepted plain TCP connection onto a new Socket that reads into a
 * reused buffer: net.Server has no `onread` option, but a Socket built on the
 * accepted handle takes one. `raw` keeps no handle afterwards and is destroyed
 * when the new socket closes, so the server's connection count stays right.
 * Returns undefined (keep using `raw`) when `raw` is not a plain, open,
 * idle-writing net.Socket. Bytes `raw` had read but not yet delivered are
 * returned in `buffered`, in order.
 */
export function adoptReusing(raw: Socket): { socket: Socket; buffered: Buffer[] } | undefined {
  const owner = raw as unknown as HandleOwner;
  const handle = owner._handle;
  if (raw.constructor !== Socket || !handle || typeof handle.readStop !== 'function') return undefined;
  if (raw.destroyed || raw.readableEnded || raw.writableLength > 0 || raw.connecting) return undefined;
  // The handle must not be reading when the new socket starts it.
  if (handle.reading) {
    handle.reading = false;
    if (handle.readStop() !== 0) return undefined;
  }
  const buffered: Buffer[] = [];
  for (let b = raw.read() as Buffer | null; b !== null; b = raw.read() as Buffer | null) buffered.push(b);
  owner._handle = null;
  const r = new ReuseReader();
  // `handle` is an undocumented constructor option (net.Server passes accepted handles this way).
  const opts = { handle, onread: r.onread, readable: true, writable: true };
  const socket = new Socket(opts as ConstructorParameters<typeof Socket>[0]);
  attachReuseReader(socket, r);
  socket.once('close', () => raw.destroy());
  // An end of stream `raw` had already read (half-close right after start-up) ends the session.
  raw.once('end', () => socket.destroy());
  return { socket, buffered };
}
