// One direction of a session: reads frames from `src`, writes them to `dst`.
//
// The PgBouncer sbuf model: only the 5-byte header of a frame is read; a frame
// nobody needs to see is forwarded as part of a "run" — a subarray of the chunk
// that arrived, written once per chunk, even when the frame continues in the
// next chunk. A frame is buffered whole only when its type is marked WHOLE (an
// interceptor or the session state must read it); a frame that lies inside one
// chunk is handed over as a view, without a copy.
//
// Per type byte, a table says what to do:
//   PASS   forward; nobody is told
//   NOTE   forward; `note(code, len)` is called when its header has been read
//   WHOLE  buffer it; `frame(code, bytes)` decides: forward (undefined), drop
//          (null) or replace (a Buffer of frames, or WRITTEN when the hook wrote
//          them in place with claim()), possibly through a Promise
// While a Promise is pending, later bytes wait in a backlog (order is kept); the
// source is paused if the backlog grows. A false `dst.write()` pauses the
// source until 'drain' (backpressure: a slow reader never makes the proxy
// buffer a large result). What a chunk sends is gathered in out-batch.ts.
// One file (a little over 400 lines) on purpose: framing, runs, the backlog and
// backpressure are one state machine over one cursor and one set of flags.
import type { Socket } from 'node:net';
import { ProtocolError } from '../protocol/errors.js';
import { reuseReaderOf, type ReuseReader } from './reuse-reader.js';
import { OutBatch, WRITTEN, type OutputSink } from './out-batch.js';

export { WRITTEN, type OutputSink } from './out-batch.js';

export const PASS = 0;
export const NOTE = 1;
export const WHOLE = 2;

/** undefined = forward the frame, null = drop it, Buffer = write these bytes instead. */
export type Verdict = Buffer | null | undefined;

export interface PumpHooks {
  note(code: number, len: number): void;
  frame(code: number, frame: Buffer): Verdict | Promise<Verdict>;
  /** The peer sent a malformed frame, or a hook threw: the session must end. */
  fail(err: Error): void;
}

export interface PumpOptions {
  /** Largest frame length accepted (the int32 after the type byte). */
  maxFrame: number;
  /** Backlog bytes (behind a pending Promise) above which the source is paused. */
  backlogHighWater?: number;
}

type Out = { buf: Buffer; before?: () => void };

export class Pump implements OutputSink {
  /** Per type byte: PASS, NOTE or WHOLE. Replace entries at any time; the next frame sees them. */
  table: Uint8Array = new Uint8Array(256);
  /** Overrides `table` when set (the session uses it while internal replies are pending). */
  classify: ((code: number) => number) | null = null;
  /**
   * Hooks keep frames of this direction (a session with state): a chunk read
   * into a reused buffer is copied to a buffer of its own size first, instead
   * of costing a new 64 KiB read buffer that a kept view would pin. The
   * session sets it when it installs its tables; the pump also turns it on
   * itself the first time a hook is handed a view of a borrowed chunk.
   */
  copyReads = false;

  // Header being read (it may arrive split across chunks).
  private hdrN = 0;
  private hdrCode = 0;
  private hdrLen = 0;
  private hdrKind = PASS;
  /** Writes gathered while handling the current chunk (see write()). */
  private readonly out: OutBatch;
  /** Body bytes of a forwarded frame still to come. */
  private bodyLeft = 0;
  /** A WHOLE frame being assembled across chunks. */
  private collect: Buffer | null = null;
  private collectPos = 0;

  // The chunk being processed and the start of the run not yet written.
  private chunk: Buffer | null = null;
  private runStart = 0;
  private pos = 0;

  private blocked = false;
  private backlog: Buffer[] = [];
  private backlogBytes = 0;
  private pausedForBacklog = false;
  private pausedForDst = false;
  private outQueue: Out[] | null = null;
  private stopped = false;
  /** Set while handling a chunk of a reused read buffer when a reference to its bytes outlives the call. */
  private keeps = false;
  /** Set when a WHOLE frame was handed to a hook as a view of a borrowed chunk. */
  private viewKept = false;
  private reader: ReuseReader | undefined;
  private readonly maxFrame: number;
  private readonly highWater: number;

  constructor(
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly hooks: PumpHooks,
    opts: PumpOptions,
  ) {
    this.maxFrame = opts.maxFrame;
    this.highWater = opts.backlogHighWater ?? 1 << 20;
    this.out = new OutBatch(
      (buf) => this.send(buf),
      () => dst.writableLength === 0,
      (on) => (on ? dst.cork() : dst.uncork()),
    );
  }

  get claimAt(): number {
    return this.out.claimAt;
  }

  /**
   * For a WHOLE hook: room for the frame's replacement, written in place
   * (OutputSink). The run before the frame goes first.
   */
  claim(n: number): Buffer {
    const c = this.chunk;
    if (c === null) throw new Error('Pump.claim outside a frame hook');
    this.flushRun();
    return this.out.claim(n, c.length - this.pos);
  }

  /** Starts reading `src`; `initial` is data already read from it. */
  start(initial?: Buffer): void {
    this.dst.on('drain', this.onDrain);
    // `initial` came first; a reuse reader then hands over what it read meanwhile.
    if (initial && initial.length > 0) this.onData(initial);
    this.reader = reuseReaderOf(this.src);
    if (this.reader) this.reader.listen(this.onBorrowed);
    else this.src.on('data', this.onData);
    if (!this.pausedForBacklog && !this.pausedForDst) this.src.resume();
  }

  stop(): void {
    this.stopped = true;
    if (this.reader) this.reader.listen(null);
    else this.src.removeListener('data', this.onData);
    this.dst.removeListener('drain', this.onDrain);
    this.backlog = [];
    this.outQueue = null;
  }

  /** True when everything read so far ends on a frame boundary in `dst` (safe to emit a frame). */
  get atBoundary(): boolean {
    return this.bodyLeft === 0 && (this.hdrN === 0 || this.hdrKind === WHOLE);
  }

  /** Nothing in flight: between two frames, no hook pending, no backlog, not paused, nothing queued. */
  get idle(): boolean {
    return this.atBoundary && !this.blocked && this.backlog.length === 0 && !this.pausedForBacklog && !this.pausedForDst && this.outQueue === null && this.collect === null && !this.stopped;
  }

  /**
   * Writes frames of the proxy's own to `dst` as soon as `dst` is between two
   * frames: immediately when possible (inside a WHOLE hook: before the frame
   * being decided), else at the next frame boundary. `before` runs just before
   * the bytes are written (the session feeds its state there). `after` queues
   * them behind the frame being decided (written at the next boundary).
   */
  emit(buf: Buffer, before?: () => void, after = false): void {
    if (this.stopped) return;
    // `after` only matters while a frame is being handled; an idle pump writes at once.
    if (this.atBoundary && this.outQueue === null && (!after || (this.chunk === null && !this.blocked))) {
      this.flushRun();
      before?.();
      this.write(buf);
      return;
    }
    (this.outQueue ??= []).push({ buf, before });
  }

  /** A chunk of a reused read buffer: returns whether anything still refers to its bytes. */
  private readonly onBorrowed = (chunk: Buffer): boolean => {
    if (this.copyReads) {
      this.onData(Buffer.from(chunk));
      return false;
    }
    this.keeps = false;
    this.viewKept = false;
    this.onData(chunk);
    // Frames are being kept (the table changed under us): copy from now on, as the session would ask.
    if (this.viewKept) this.copyReads = true;
    // A write the kernel did not take whole is queued by reference.
    return this.keeps || this.blocked || this.dst.writableLength > 0;
  };

  private readonly onData = (chunk: Buffer): void => {
    if (this.blocked) {
      this.keeps = true;
      this.backlog.push(chunk);
      this.backlogBytes += chunk.length;
      if (this.backlogBytes > this.highWater && !this.pausedForBacklog) {
        this.pausedForBacklog = true;
        this.src.pause();
      }
      return;
    }
    this.process(chunk, 0);
  };

  private readonly onDrain = (): void => {
    if (!this.pausedForDst) return;
    this.pausedForDst = false;
    if (!this.pausedForBacklog && !this.stopped) this.src.resume();
  };

  private write(buf: Buffer): void {
    if (buf.length === 0) return;
    // Inside process(), writes are gathered and leave together when the chunk is done:
    // a chunk with rewritten frames then costs one write, not one syscall per piece.
    if (this.chunk !== null) {
      this.out.add(buf);
      return;
    }
    this.send(buf);
  }

  private send(buf: Buffer): void {
    if (!this.dst.write(buf) && !this.pausedForDst) {
      this.pausedForDst = true;
      this.src.pause();
    }
  }

  private flushRun(): void {
    const c = this.chunk;
    if (c !== null && this.pos > this.runStart) this.write(c.subarray(this.runStart, this.pos));
    this.runStart = this.pos;
  }

  private flushOut(): void {
    const q = this.outQueue!;
    this.outQueue = null;
    this.flushRun();
    for (const o of q) {
      o.before?.();
      this.write(o.buf);
    }
  }

  private bad(len: number): never {
    throw new ProtocolError('PROTO_FRAME_LEN', `invalid message length ${len} (type 0x${this.hdrCode.toString(16)})`);
  }

  private process(chunk: Buffer, start: number): void {
    this.chunk = chunk;
    this.runStart = start;
    this.pos = start;
    const end = chunk.length;
    try {
      while (this.pos < end && !this.stopped) {
        if (this.bodyLeft > 0) {
          const take = Math.min(this.bodyLeft, end - this.pos);
          this.pos += take;
          this.bodyLeft -= take;
          continue;
        }
        if (this.collect !== null) {
          const c = this.collect;
          const take = Math.min(c.length - this.collectPos, end - this.pos);
          chunk.copy(c, this.collectPos, this.pos, this.pos + take);
          this.collectPos += take;
          this.pos += take;
          this.runStart = this.pos;
          if (this.collectPos < c.length) break;
          this.collect = null;
          if (!this.decide(c)) return;
          continue;
        }
        if (this.hdrN === 0) {
          if (this.outQueue !== null) this.flushOut();
          if (end - this.pos >= 5) {
            // Fast path: the whole header is in this chunk.
            const p = this.pos;
            const code = chunk[p]!;
            const len = chunk.readInt32BE(p + 1);
            this.hdrCode = code;
            if (len < 4 || len > this.maxFrame) this.bad(len);
            const kind = this.classify === null ? this.table[code]! : this.classify(code);
            const frameEnd = p + 1 + len;
            if (kind !== WHOLE) {
              if (frameEnd <= end) this.pos = frameEnd;
              else {
                this.bodyLeft = frameEnd - end;
                this.pos = end;
              }
              if (kind === NOTE) this.hooks.note(code, len);
              continue;
            }
            if (frameEnd <= end) {
              if (!this.decideInChunk(chunk.subarray(p, frameEnd), p, frameEnd)) return;
              continue;
            }
            // A WHOLE frame continuing in later chunks: copy what is here.
            this.flushRun();
            this.collect = Buffer.allocUnsafe(1 + len);
            chunk.copy(this.collect, 0, p, end);
            this.collectPos = end - p;
            this.pos = end;
            this.runStart = end;
            break;
          }
        }
        // Slow path: a header split across chunks, read byte by byte.
        const b = chunk[this.pos]!;
        if (this.hdrN === 0) {
          this.hdrCode = b;
          this.hdrLen = 0;
          this.hdrKind = this.classify === null ? this.table[b]! : this.classify(b);
          if (this.hdrKind === WHOLE) this.flushRun();
        } else {
          this.hdrLen = this.hdrLen * 256 + b;
        }
        this.hdrN++;
        this.pos++;
        if (this.hdrKind === WHOLE) this.runStart = this.pos; // header bytes are rebuilt in `collect`
        if (this.hdrN < 5) continue;
        this.hdrN = 0;
        const len = this.hdrLen > 0x7fffffff ? this.hdrLen - 0x100000000 : this.hdrLen;
        if (len < 4 || len > this.maxFrame) this.bad(len);
        if (this.hdrKind !== WHOLE) {
          this.bodyLeft = len - 4;
          if (this.hdrKind === NOTE) this.hooks.note(this.hdrCode, len);
          continue;
        }
        const c = Buffer.allocUnsafe(1 + len);
        c[0] = this.hdrCode;
        c.writeInt32BE(len, 1);
        if (len === 4) {
          if (!this.decide(c)) return;
          continue;
        }
        this.collect = c;
        this.collectPos = 5;
      }
      this.flushRun();
      if (this.outQueue !== null && !this.blocked && this.atBoundary) this.flushOut();
    } catch (err) {
      // Frames before the bad one were whole and valid: they still go out, before the hook ends the session.
      if (err instanceof ProtocolError) {
        this.flushRun();
        this.out.flush();
      }
      this.stopped = true;
      this.hooks.fail(err as Error);
    } finally {
      this.chunk = null;
      this.out.flush();
    }
  }

  /**
   * A WHOLE frame that is a view of the current chunk at [start, frameEnd).
   * Returns false when processing must stop (a pending Promise).
   */
  private decideInChunk(frame: Buffer, start: number, frameEnd: number): boolean {
    // Hooks that emit write before this frame: the run ends where it starts.
    this.pos = start;
    this.keeps = true; // the hook may keep the view (the session state keeps RowDescriptions)
    this.viewKept = true;
    const v = this.ask(frame);
    if (v === undefined) {
      this.pos = frameEnd; // forwarded as part of the run, no copy
      return true;
    }
    this.flushRun();
    this.pos = frameEnd;
    this.runStart = frameEnd;
    if (v === null) return true;
    if (Buffer.isBuffer(v)) {
      this.write(v);
      return true;
    }
    this.block(v, frame);
    return false;
  }

  /** A WHOLE frame assembled in its own buffer (nothing of it is in the run). */
  private decide(frame: Buffer): boolean {
    this.flushRun();
    const v = this.ask(frame);
    if (v === undefined) {
      this.write(frame);
      return true;
    }
    if (v === null) return true;
    if (Buffer.isBuffer(v)) {
      this.write(v);
      return true;
    }
    this.block(v, frame);
    return false;
  }

  /** The hook's verdict on a WHOLE frame; a claim it made and did not use is taken back. */
  private ask(frame: Buffer): Verdict | Promise<Verdict> {
    const out = this.out;
    out.claimed = false;
    let v: Verdict | Promise<Verdict>;
    try {
      v = this.hooks.frame(this.hdrCode, frame);
    } catch (e) {
      if (out.claimed) out.unclaim(); // zeroed if it cannot be taken back; the throw ends the session
      throw e;
    }
    // A rejection, not a throw: block() handles it at once (ends the session, like a failed hook).
    if (out.claimed && v !== WRITTEN && !out.unclaim()) return Promise.reject(new Error('a hook claimed output it did not fill'));
    return v;
  }

  /** Holds every later byte until `v` settles, then applies it and carries on. */
  private block(v: Promise<Verdict>, frame: Buffer): void {
    this.flushRun();
    const rest = this.chunk!.subarray(this.pos);
    if (rest.length > 0) {
      this.backlog.unshift(rest);
      this.backlogBytes += rest.length;
    }
    this.blocked = true;
    v.then(
      (verdict) => {
        if (this.stopped) return;
        if (verdict === undefined) this.write(frame);
        else if (verdict !== null) this.write(verdict);
        this.blocked = false;
        this.drainBacklog();
      },
      (err: unknown) => {
        if (this.stopped) return;
        this.stopped = true;
        this.hooks.fail(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  private drainBacklog(): void {
    while (!this.blocked && !this.stopped && this.backlog.length > 0) {
      const c = this.backlog.shift()!;
      this.backlogBytes -= c.length;
      this.process(c, 0);
    }
    if (this.pausedForBacklog && this.backlogBytes <= this.highWater / 2) {
      this.pausedForBacklog = false;
      if (!this.pausedForDst && !this.stopped) this.src.resume();
    }
    if (!this.blocked && this.outQueue !== null && this.atBoundary) this.flushOut();
  }
}
