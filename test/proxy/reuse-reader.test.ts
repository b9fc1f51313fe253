// The pump over a reused read buffer: whatever still refers to a chunk's bytes
// after it was handled (a queued write, a frame a hook kept, a backlog behind a
// pending Promise) must make the next read go into a fresh buffer, or the next
// read would overwrite those bytes.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { PASS, Pump, WHOLE, type Verdict } from '../../src/proxy/pump.js';
import { attachReuseReader, ReuseReader } from '../../src/proxy/reuse-reader.js';
import { FakeSource, frame, rng } from './fakes.js';

/** A sink whose kernel either takes each write at once (copied) or queues it by reference. */
class RefSink extends EventEmitter {
  taken: Buffer[] = [];
  queued: Buffer[] = [];
  queueing = false;
  get writableLength(): number {
    return this.queued.reduce((n, b) => n + b.length, 0);
  }
  cork(): void {}
  uncork(): void {}
  write(b: Buffer): boolean {
    if (this.queueing) this.queued.push(b);
    else this.taken.push(Buffer.from(b));
    return true;
  }
  /** The kernel takes the queued writes: what they refer to now. */
  flush(): void {
    for (const b of this.queued) this.taken.push(Buffer.from(b));
    this.queued = [];
  }
  get bytes(): Buffer {
    return Buffer.concat(this.taken);
  }
  asSocket(): Socket {
    return this as unknown as Socket;
  }
}

function setup(table: Record<string, number> = {}, verdict?: (f: Buffer) => Verdict | Promise<Verdict>) {
  const src = new FakeSource();
  const reader = new ReuseReader();
  attachReuseReader(src.asSocket(), reader);
  const dst = new RefSink();
  const kept: Buffer[] = [];
  const copies: Buffer[] = [];
  const pump = new Pump(src.asSocket(), dst.asSocket(), {
    note: () => {},
    frame: (_c, f) => {
      kept.push(f); // by reference, as the session state may
      copies.push(Buffer.from(f));
      return verdict?.(f);
    },
    fail: (e) => {
      throw e;
    },
  }, { maxFrame: 1 << 20 });
  for (const [k, v] of Object.entries(table)) pump.table[k.charCodeAt(0)] = v;
  const buffers = new Set<Buffer>();
  /** One socket read of `bytes` into whatever buffer the reader offers. */
  const read = (bytes: Buffer): Buffer => {
    const b = reader.onread.buffer();
    buffers.add(b);
    bytes.copy(b, 0);
    reader.onread.callback(bytes.length, b);
    return b;
  };
  return { src, reader, dst, pump, kept, copies, read, buffers };
}

const STREAM = Buffer.concat([frame('D', 40), frame('C', 'SELECT 1\0'), frame('T', 120), frame('D', 7), frame('Z', 'I')]);

describe('Pump over a reused read buffer', () => {
  it('reuses one buffer while the kernel takes every write and nothing is kept', () => {
    const { pump, dst, read, buffers } = setup();
    pump.start();
    const long = Buffer.concat(Array.from({ length: 20 }, () => STREAM));
    // Reads that cut frames anywhere: forwarding still follows the byte stream exactly.
    for (let at = 0; at < long.length; ) {
      const n = Math.min(1 + ((at * 7) % 61), long.length - at);
      read(long.subarray(at, at + n));
      at += n;
    }
    expect(dst.bytes).toEqual(long);
    expect(buffers.size).toBe(1);
  });

  it('a write queued by reference keeps its bytes: the next read gets a new buffer', () => {
    const { pump, dst, read, buffers } = setup();
    pump.start();
    dst.queueing = true;
    read(STREAM);
    dst.queueing = false;
    read(frame('D', STREAM.length - 5)); // as long as STREAM: would overwrite the queued bytes if reused
    expect(buffers.size).toBe(2);
    dst.flush();
    expect(dst.bytes.subarray(STREAM.length)).toEqual(STREAM);
    // The second read came while a write was still queued: conservatively kept too.
    read(STREAM);
    read(STREAM);
    expect(buffers.size).toBe(3); // nothing queued any more: reused from then on
  });

  it('frames handed to a hook stay intact after later reads', () => {
    const { pump, read, kept, copies, buffers, dst } = setup({ T: WHOLE, C: WHOLE });
    pump.start();
    const r = rng(7);
    let expected = Buffer.alloc(0);
    for (let i = 0; i < 30; i++) {
      const cutAt = Math.floor(r() * STREAM.length);
      read(STREAM.subarray(0, cutAt));
      read(STREAM.subarray(cutAt));
      expected = Buffer.concat([expected, STREAM]);
    }
    expect(dst.bytes).toEqual(expected);
    expect(kept.length).toBe(60);
    kept.forEach((k, i) => expect(k).toEqual(copies[i]));
    // The first kept view costs one buffer; from then on the pump copies reads out instead.
    expect(pump.copyReads).toBe(true);
    expect(buffers.size).toBe(2);
  });

  it('a backlog behind a pending Promise survives later reads', async () => {
    let release!: (v: Verdict) => void;
    const { pump, read, dst } = setup({ C: WHOLE }, () => new Promise<Verdict>((res) => (release = res)));
    pump.start();
    read(STREAM); // blocks at C; the rest waits in the backlog
    read(Buffer.concat([frame('D', 3), frame('Z', 'T')]));
    read(Buffer.alloc(200, 0x41).fill(frame('D', 195))); // more reads while still blocked
    release(undefined);
    await new Promise((r) => setImmediate(r));
    expect(dst.bytes).toEqual(Buffer.concat([STREAM.subarray(0, 45), STREAM.subarray(45), frame('D', 3), frame('Z', 'T'), Buffer.alloc(200, 0x41).fill(frame('D', 195))]));
  });

  it('start(initial): the initial bytes go first, then what the reader took in meanwhile, then later reads', () => {
    const { pump, read, dst } = setup();
    read(frame('S', 10));
    read(frame('S', 11));
    pump.start(frame('R', 8));
    read(frame('Z', 'I'));
    expect(dst.bytes).toEqual(Buffer.concat([frame('R', 8), frame('S', 10), frame('S', 11), frame('Z', 'I')]));
  });

  it('past 1 MiB read before anyone listens, the reader asks the socket to stop reading', () => {
    const { reader } = setup();
    const big = Buffer.alloc(64 * 1024);
    let answers: boolean[] = [];
    for (let i = 0; i < 20; i++) {
      const b = reader.onread.buffer();
      big.copy(b);
      answers.push(reader.onread.callback(big.length, b));
    }
    expect(answers.slice(0, 15).every((a) => a)).toBe(true);
    expect(answers[15]).toBe(false);
    answers = [];
  });

  it('bytes that arrive before the pump starts are kept (copied), and dropped after it stops', () => {
    const { pump, read, dst } = setup({}, undefined);
    read(frame('S', 10));
    pump.start();
    read(frame('Z', 'I'));
    expect(dst.bytes).toEqual(Buffer.concat([frame('S', 10), frame('Z', 'I')]));
    pump.stop();
    read(frame('D', 4));
    expect(dst.bytes).toEqual(Buffer.concat([frame('S', 10), frame('Z', 'I')]));
  });
});

void PASS;

describe('Pump.copyReads', () => {
  it('copies each chunk out of the reused buffer, so kept frames never pin it', () => {
    const { pump, read, kept, copies, buffers, dst } = setup({ T: WHOLE, C: WHOLE });
    pump.copyReads = true;
    pump.start();
    for (let i = 0; i < 10; i++) read(STREAM);
    expect(buffers.size).toBe(1);
    expect(dst.bytes).toEqual(Buffer.concat(Array.from({ length: 10 }, () => STREAM)));
    kept.forEach((k, i) => expect(k).toEqual(copies[i]));
    expect(kept.length).toBe(20);
  });
});

describe('adoptReusing', () => {
  it('moves an accepted connection onto a reusing socket: buffered bytes first, then reads, writes, and close', async () => {
    const { createServer, connect } = await import('node:net');
    const { adoptReusing, reuseReaderOf } = await import('../../src/proxy/reuse-reader.js');
    let accepted!: (s: import('node:net').Socket) => void;
    const got = new Promise<import('node:net').Socket>((r) => (accepted = r));
    const server = createServer((s) => accepted(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    const client = connect({ port, host: '127.0.0.1' });
    const raw = await got;
    raw.pause();
    client.write('early bytes|');
    await new Promise((r) => setTimeout(r, 50)); // read by `raw`, not yet delivered
    const a = adoptReusing(raw)!;
    expect(a).toBeDefined();
    expect(reuseReaderOf(a.socket)).toBeDefined();
    expect(Buffer.concat(a.buffered).toString()).toBe('early bytes|');
    const seen: string[] = [];
    reuseReaderOf(a.socket)!.listen((c) => {
      seen.push(c.toString());
      return false;
    });
    client.write('later bytes');
    const echoed = new Promise<string>((r) => client.once('data', (d) => r(d.toString())));
    a.socket.write('reply');
    expect(await echoed).toBe('reply');
    await new Promise((r) => setTimeout(r, 50));
    expect(seen.join('')).toBe('later bytes');
    const closed = new Promise((r) => server.close(r)); // waits for the connection count to drop
    client.end();
    await new Promise((r) => a.socket.once('close', r));
    await closed;
    expect(raw.destroyed).toBe(true);
  });
});
