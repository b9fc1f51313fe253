// What one pump sends while it handles a chunk, gathered so that the chunk
// costs one write: forwarded runs (views of the chunk) and the frames hooks
// made instead of the ones they replaced.
//  - A hook that rewrites a frame can write its replacement straight into the
//    batch (`claim`), into an arena the batch reuses, instead of allocating a
//    Buffer per frame that the send then copies again. Decrypted DataRows go
//    this way: ten rows of a result cost no allocation.
//  - Once something is in the arena, later runs are copied after it, so the
//    chunk still leaves as one Buffer.
//  - The arena is reused only when the socket took the whole send at once
//    (`writableLength` back to 0: nothing refers to its bytes any more);
//    otherwise the socket keeps it and the next claim starts a new one. To a
//    socket already behind (a slow reader), arena bytes go as a copy, so at
//    most one arena per session waits in a socket's queue.
import { copyRange } from '../protocol/copy-range.js';

/** Where a hook writes a replacement frame: `claim(n)`, then n bytes at `claimAt`. */
export interface OutputSink {
  /**
   * Reserves n bytes at the current end of the output and returns the buffer
   * holding them, from `claimAt`. The caller must fill all n bytes and return
   * WRITTEN as its verdict; only while a frame is being decided, never later.
   * A hook that claims and then throws or returns another verdict has its
   * claim taken back (with anything written after it): no stray bytes leave.
   */
  claim(n: number): Buffer;
  readonly claimAt: number;
}

/**
 * A verdict: the replacement frame went into the output through `claim`.
 * A zero-length Buffer, so every path that writes a Buffer verdict writes nothing more.
 */
export const WRITTEN: Buffer = Buffer.alloc(0);

/** The smallest arena; it grows (up to 64 KiB) for a session whose chunks are larger. */
const ARENA_BYTES = 16 * 1024;
/** Larger batches leave as one corked writev of their parts: a copy of them would cost more. */
const CONCAT_MAX = 65536;

export class OutBatch implements OutputSink {
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Free for reuse when not gathering; null when the socket may still hold its bytes. */
  private arena: Buffer | null = null;
  /** Bytes [segStart, pos) of the arena are output not yet in `parts`. */
  private segStart = 0;
  private pos = 0;
  private gathering = false;
  claimAt = 0;
  /** Set by claim(); the pump clears it before each hook, to take back a claim the hook did not use. */
  claimed = false;
  private claimBuf: Buffer | null = null;
  private claimLen = 0;

  constructor(
    private readonly send: (buf: Buffer) => void,
    /** True when the destination holds nothing unwritten (a send just made is complete). */
    private readonly drained: () => boolean,
    private readonly cork: (on: boolean) => void,
  ) {}

  add(buf: Buffer): void {
    const n = buf.length;
    if (n === 0) return;
    if (this.gathering) {
      const a = this.arena!;
      if (this.pos + n <= a.length) {
        this.pos = copyRange(buf, 0, n, a, this.pos);
        return;
      }
      this.seal();
    }
    this.parts.push(buf);
    this.partBytes += n;
  }

  /**
   * `ahead`: bytes of input still to come in this batch (the rest of the
   * chunk), which the arena is sized for: a rewritten frame is no longer
   * than the one it replaces on the read path, so a chunk's output then fits.
   */
  claim(n: number, ahead = 0): Buffer {
    if (!this.gathering) this.begin(n, ahead);
    else if (this.pos + n > this.arena!.length) {
      this.seal();
      this.arena = Buffer.allocUnsafeSlow(arenaSize(n + ahead, n));
      this.segStart = this.pos = 0;
    }
    this.claimAt = this.pos;
    this.pos += n;
    this.claimed = true;
    this.claimBuf = this.arena;
    this.claimLen = n;
    return this.arena!;
  }

  /**
   * Takes back the last claim and whatever was added after it (see
   * OutputSink.claim). False when it was already sealed into a part by later
   * output: then its bytes are zeroed (no stale memory may leave) and the
   * caller must end the session, as the stream is no longer whole.
   */
  unclaim(): boolean {
    this.claimed = false;
    if (this.gathering && this.claimBuf === this.arena && this.claimAt >= this.segStart) {
      this.pos = this.claimAt;
      return true;
    }
    this.claimBuf?.fill(0, this.claimAt, this.claimAt + this.claimLen);
    return false;
  }

  /** Sends everything gathered. */
  flush(): void {
    const arenaUsed = this.gathering;
    if (arenaUsed) {
      this.seal();
      this.gathering = false;
    }
    const out = this.parts;
    if (out.length === 0) return this.reset(false);
    const total = this.partBytes;
    this.parts = [];
    this.partBytes = 0;
    // Small batches: one copy beats a writev of many tiny iovecs (Node's writev path costs more than a memcpy).
    if (out.length > 1 && total <= CONCAT_MAX) {
      this.send(Buffer.concat(out, total));
      return this.reset(false);
    }
    // A socket that already holds unsent bytes queues this send: arena bytes then
    // leave as a copy of their own size, so a slow reader pins no arena.
    const queued = arenaUsed && !this.drained();
    const arena = this.arena;
    if (out.length === 1) this.send(queued && out[0]!.buffer === arena?.buffer ? Buffer.from(out[0]!) : out[0]!);
    else {
      this.cork(true);
      for (const b of out) this.send(queued && b.buffer === arena?.buffer ? Buffer.from(b) : b);
      this.cork(false);
    }
    this.reset(arenaUsed && !queued);
  }

  /** Starts gathering in the arena, moving what is already gathered into it when it fits. */
  private begin(n: number, ahead: number): void {
    let a = this.arena;
    const need = this.partBytes + n;
    if (a === null || a.length < Math.min(need + ahead, CONCAT_MAX)) {
      a = Buffer.allocUnsafeSlow(arenaSize(need + ahead, need <= CONCAT_MAX ? need : n));
      this.arena = a;
    }
    let p = 0;
    if (this.parts.length > 0 && need <= a.length) {
      for (const b of this.parts) p = copyRange(b, 0, b.length, a, p);
      this.parts = [];
      this.partBytes = 0;
    }
    this.segStart = 0;
    this.pos = p;
    this.gathering = true;
  }

  private seal(): void {
    if (this.pos > this.segStart) {
      this.parts.push(this.arena!.subarray(this.segStart, this.pos));
      this.partBytes += this.pos - this.segStart;
    }
    this.segStart = this.pos;
  }

  /** After a send: the arena starts again from 0, or is let go when the socket kept a reference to it. */
  private reset(arenaSent: boolean): void {
    if (arenaSent && !this.drained()) this.arena = null;
    this.claimBuf = null; // a claim never outlives its batch; nor must it pin an arena the socket holds
    this.segStart = this.pos = 0;
  }
}

/** Room for `want` bytes, at least `need`: 16 KiB to 64 KiB (a larger batch leaves as a writev anyway). */
function arenaSize(want: number, need: number): number {
  return Math.max(ARENA_BYTES, Math.min(want, CONCAT_MAX), need);
}
