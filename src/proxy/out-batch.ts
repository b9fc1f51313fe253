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
//    otherwise the socket keeps it and the next claim starts a new one.

/** Where a hook writes a replacement frame: `claim(n)`, then n bytes at `claimAt`. */
export interface OutputSink {
  /**
   * Reserves n bytes at the current end of the output and returns the buffer
   * holding them, from `claimAt`. The caller must fill all n bytes and return
   * WRITTEN as its verdict; only while a frame is being decided, never later.
   */
  claim(n: number): Buffer;
  readonly claimAt: number;
}

/**
 * A verdict: the replacement frame went into the output through `claim`.
 * A zero-length Buffer, so every path that writes a Buffer verdict writes nothing more.
 */
export const WRITTEN: Buffer = Buffer.alloc(0);

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
        this.pos += copy(buf, a, this.pos);
        return;
      }
      this.seal();
    }
    this.parts.push(buf);
    this.partBytes += n;
  }

  claim(n: number): Buffer {
    if (!this.gathering) this.begin(n);
    else if (this.pos + n > this.arena!.length) {
      this.seal();
      this.arena = Buffer.allocUnsafeSlow(Math.max(ARENA_BYTES, n));
      this.segStart = this.pos = 0;
    }
    this.claimAt = this.pos;
    this.pos += n;
    return this.arena!;
  }

  /** Sends everything gathered. */
  flush(): void {
    let arenaSent = false;
    if (this.gathering) {
      arenaSent = this.pos > this.segStart || this.parts.length > 0;
      this.seal();
      this.gathering = false;
    }
    const out = this.parts;
    if (out.length === 0) return this.reuse(false);
    const total = this.partBytes;
    this.parts = [];
    this.partBytes = 0;
    if (out.length === 1) {
      this.send(out[0]!);
      return this.reuse(arenaSent);
    }
    // Small batches: one copy beats a writev of many tiny iovecs (Node's writev path costs more than a memcpy).
    if (total <= CONCAT_MAX) {
      this.send(Buffer.concat(out, total));
      return this.reuse(false);
    }
    this.cork(true);
    for (const b of out) this.send(b);
    this.cork(false);
    this.reuse(arenaSent);
  }

  /** Starts gathering in the arena, moving what is already gathered into it when it fits. */
  private begin(n: number): void {
    let a = this.arena;
    const need = this.partBytes + n;
    if (a === null || a.length < need) {
      a = Buffer.allocUnsafeSlow(Math.max(ARENA_BYTES, need <= CONCAT_MAX ? need : n));
      this.arena = a;
    }
    let p = 0;
    if (this.parts.length > 0 && need <= a.length) {
      for (const b of this.parts) p += copy(b, a, p);
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

  /** After a send: the arena starts again from 0, or is let go when the socket still refers to it. */
  private reuse(arenaSent: boolean): void {
    if (arenaSent && !this.drained()) this.arena = null;
    this.segStart = this.pos = 0;
  }
}

/** Short runs copied in JS: a native copy's call costs more than a few dozen bytes of loop. */
function copy(src: Buffer, dst: Buffer, at: number): number {
  const n = src.length;
  if (n <= 64) for (let k = 0; k < n; k++) dst[at + k] = src[k]!;
  else src.copy(dst, at);
  return n;
}
