// Minimal socket stand-ins for unit tests of the pump and session plumbing.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';

export class FakeSource extends EventEmitter {
  paused = false;
  pauses = 0;
  pause(): this {
    this.paused = true;
    this.pauses++;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  send(chunk: Buffer): void {
    this.emit('data', chunk);
  }
  asSocket(): Socket {
    return this as unknown as Socket;
  }
}

export class FakeSink extends EventEmitter {
  writes: Buffer[] = [];
  /** Raw (uncopied) buffers passed to write(), to check that forwarding does not copy. */
  raw: Buffer[] = [];
  /** write() returns false while this is true (a slow reader). */
  full = false;
  /** Corks seen (a real socket then sends the writes until uncork() as one writev). */
  corks = 0;
  cork(): void {
    this.corks++;
  }
  uncork(): void {}
  /** What a real socket still holds unwritten: something while the reader is slow. */
  get writableLength(): number {
    return this.full ? 1 : 0;
  }
  write(b: Buffer): boolean {
    this.raw.push(b);
    this.writes.push(Buffer.from(b));
    return !this.full;
  }
  drain(): void {
    this.full = false;
    this.emit('drain');
  }
  get bytes(): Buffer {
    return Buffer.concat(this.writes);
  }
  asSocket(): Socket {
    return this as unknown as Socket;
  }
}

/** A typed frame with `n` body bytes. */
export function frame(code: string, body: Buffer | string | number): Buffer {
  const b = typeof body === 'number' ? Buffer.alloc(body, 0x61 + (body % 26)) : Buffer.from(body);
  const out = Buffer.alloc(5 + b.length);
  out[0] = code.charCodeAt(0);
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
