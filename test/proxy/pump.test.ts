// The framer/forwarder: frames must come out byte-identical whatever the chunk
// boundaries are, hooks must see exactly the frames their table asks for, in
// order, and backpressure must pause the source.
import { describe, expect, it } from 'vitest';
import { NOTE, PASS, Pump, WHOLE, WRITTEN, type PumpHooks, type Verdict } from '../../src/proxy/pump.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { FakeSink, FakeSource, frame, rng } from './fakes.js';

interface Seen {
  notes: [string, number][];
  wholes: Buffer[];
  errors: Error[];
}

function setup(opts: { table?: Record<string, number>; verdict?: (code: number, f: Buffer, pump: Pump) => Verdict | Promise<Verdict>; maxFrame?: number; highWater?: number } = {}) {
  const src = new FakeSource();
  const dst = new FakeSink();
  const seen: Seen = { notes: [], wholes: [], errors: [] };
  const hooks: PumpHooks = {
    note: (code, len) => seen.notes.push([String.fromCharCode(code), len]),
    frame: (code, f) => {
      seen.wholes.push(Buffer.from(f));
      return opts.verdict ? opts.verdict(code, f, pump) : undefined;
    },
    fail: (e) => seen.errors.push(e),
  };
  const pump = new Pump(src.asSocket(), dst.asSocket(), hooks, { maxFrame: opts.maxFrame ?? 1 << 30, backlogHighWater: opts.highWater });
  for (const [k, v] of Object.entries(opts.table ?? {})) pump.table[k.charCodeAt(0)] = v;
  pump.start();
  return { src, dst, seen, pump };
}

/** Splits `buf` at the given offsets. */
function cut(buf: Buffer, at: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const a of [...at, buf.length]) {
    out.push(buf.subarray(prev, a));
    prev = a;
  }
  return out.filter((b) => b.length > 0);
}

const STREAM = Buffer.concat([frame('D', 10), frame('C', 'SELECT 1\0'), frame('Z', 'I'), frame('S', 0), frame('T', 300), frame('D', 0)]);

describe('Pump framing', () => {
  it('forwards a stream unchanged for every single cut point', () => {
    for (let i = 0; i <= STREAM.length; i++) {
      const { src, dst, seen } = setup();
      for (const c of cut(STREAM, [i])) src.send(c);
      expect(dst.bytes).toEqual(STREAM);
      expect(seen.errors).toEqual([]);
    }
  });

  it('sees every header and every whole frame for every pair of cut points', () => {
    const codes = ['D', 'C', 'Z', 'S', 'T', 'D'];
    for (let i = 0; i <= STREAM.length; i += 7) {
      for (let j = i; j <= STREAM.length; j += 5) {
        const { src, dst, seen } = setup({ table: { D: NOTE, C: WHOLE, Z: WHOLE, S: NOTE, T: WHOLE } });
        for (const c of cut(STREAM, [i, j])) src.send(c);
        expect(dst.bytes).toEqual(STREAM);
        expect(seen.notes.map((n) => n[0])).toEqual(['D', 'S', 'D']);
        expect(seen.notes.map((n) => n[1])).toEqual([14, 4, 4]);
        expect(seen.wholes.map((w) => String.fromCharCode(w[0]!))).toEqual(codes.filter((c) => c === 'C' || c === 'Z' || c === 'T'));
        expect(seen.wholes[0]).toEqual(frame('C', 'SELECT 1\0'));
        expect(seen.wholes[2]).toEqual(frame('T', 300));
      }
    }
  });

  it('handles cuts at the start, middle and end of a header and of a body, one byte at a time', () => {
    const { src, dst, seen } = setup({ table: { T: WHOLE, D: NOTE } });
    for (let i = 0; i < STREAM.length; i++) src.send(STREAM.subarray(i, i + 1));
    expect(dst.bytes).toEqual(STREAM);
    expect(seen.wholes).toEqual([frame('T', 300)]);
    expect(seen.notes).toEqual([['D', 14], ['D', 4]]);
  });

  it('random chunkings of a long random stream (fuzz)', () => {
    const r = rng(42);
    const frames: Buffer[] = [];
    for (let i = 0; i < 300; i++) frames.push(frame('DCZTSd'[Math.floor(r() * 6)]!, Math.floor(r() * (r() < 0.1 ? 70_000 : 40))));
    const stream = Buffer.concat(frames);
    for (let round = 0; round < 20; round++) {
      const cuts: number[] = [];
      for (let p = 0; p < stream.length; p += 1 + Math.floor(r() * (r() < 0.5 ? 8 : 20_000))) cuts.push(p);
      const { src, dst, seen } = setup({ table: { T: WHOLE, Z: WHOLE, D: NOTE } });
      for (const c of cut(stream, cuts)) src.send(c);
      expect(dst.bytes.equals(stream)).toBe(true);
      expect(seen.wholes.length).toBe(frames.filter((f) => f[0] === 0x54 || f[0] === 0x5a).length);
      expect(seen.notes.length).toBe(frames.filter((f) => f[0] === 0x44).length);
    }
  });

  it('writes a chunk of forwarded frames as one subarray of the chunk (no copy)', () => {
    const { src, dst } = setup({ table: { Z: NOTE } });
    const chunk = Buffer.concat([frame('D', 10), frame('D', 20), frame('Z', 'I')]);
    src.send(chunk);
    expect(dst.raw.length).toBe(1);
    expect(dst.raw[0]!.buffer).toBe(chunk.buffer);
    expect(dst.raw[0]!.byteOffset).toBe(chunk.byteOffset);
  });

  it('a WHOLE frame inside a chunk that is forwarded stays in the run (no copy)', () => {
    const { src, dst, seen } = setup({ table: { T: WHOLE } });
    const chunk = Buffer.concat([frame('D', 3), frame('T', 7), frame('D', 4)]);
    src.send(chunk);
    expect(seen.wholes).toEqual([frame('T', 7)]);
    expect(dst.raw.length).toBe(1);
    expect(dst.raw[0]!.buffer).toBe(chunk.buffer);
  });
});

describe('Pump verdicts', () => {
  it('replace and drop keep the surrounding bytes in order', () => {
    const { src, dst } = setup({
      table: { T: WHOLE, C: WHOLE },
      verdict: (code) => (code === 0x54 ? frame('T', 'new') : null),
    });
    for (let i = 0; i < 3; i++) src.send(Buffer.concat([frame('D', 1), frame('T', 50), frame('C', 'x\0'), frame('Z', 'I')]).subarray(0));
    const one = Buffer.concat([frame('D', 1), frame('T', 'new'), frame('Z', 'I')]);
    expect(dst.bytes).toEqual(Buffer.concat([one, one, one]));
  });

  it('replace works for a frame assembled across chunks', () => {
    const { src, dst } = setup({ table: { T: WHOLE }, verdict: () => frame('T', 'r') });
    const s = Buffer.concat([frame('D', 2), frame('T', 100), frame('D', 3)]);
    for (const c of cut(s, [9, 50, 100])) src.send(c);
    expect(dst.bytes).toEqual(Buffer.concat([frame('D', 2), frame('T', 'r'), frame('D', 3)]));
  });

  it('a replacement written in place with claim() keeps the order, whatever the chunking', () => {
    // Every T becomes "T" + its body reversed, written straight into the pump's output.
    const verdict = (_code: number, f: Buffer, pump: Pump): Verdict => {
      const out = pump.claim(f.length);
      const at = pump.claimAt;
      f.copy(out, at, 0, 5);
      for (let k = 5; k < f.length; k++) out[at + k] = f[f.length - 1 - (k - 5)]!;
      return WRITTEN;
    };
    const body = Buffer.from('abcdefghij'.repeat(30));
    const rev = Buffer.from([...body].reverse());
    const s = Buffer.concat([frame('D', 2), frame('T', body), frame('C', 'x\0'), frame('T', body), frame('T', 'xy'), frame('Z', 'I')]);
    const want = Buffer.concat([frame('D', 2), frame('T', rev), frame('C', 'x\0'), frame('T', rev), frame('T', 'yx'), frame('Z', 'I')]);
    const random = rng(7);
    for (let round = 0; round < 200; round++) {
      const { src, dst, seen } = setup({ table: { T: WHOLE }, verdict });
      const cuts = round === 0 ? [] : [...new Set(Array.from({ length: 1 + (round % 4) }, () => Math.floor(random() * s.length)))].sort((a, b) => a - b);
      for (const c of cut(s, cuts)) src.send(c);
      expect(dst.bytes).toEqual(want);
      expect(seen.errors).toEqual([]);
    }
  });

  it('a claim the hook does not use (another verdict, or a throw) is taken back: none of its bytes leave', () => {
    const stream = Buffer.concat([frame('D', 2), frame('T', 40), frame('Z', 'I')]);
    // Claims room and fills it with 0xAA, then decides otherwise.
    const claimThen = (then: () => Verdict) => (_code: number, f: Buffer, pump: Pump): Verdict => {
      pump.claim(f.length).fill(0xaa, pump.claimAt, pump.claimAt + f.length);
      return then();
    };
    const replaced = setup({ table: { T: WHOLE }, verdict: claimThen(() => frame('T', 'instead')) });
    replaced.src.send(stream);
    expect(replaced.dst.bytes).toEqual(Buffer.concat([frame('D', 2), frame('T', 'instead'), frame('Z', 'I')]));
    const dropped = setup({ table: { T: WHOLE }, verdict: claimThen(() => null) });
    dropped.src.send(stream);
    expect(dropped.dst.bytes).toEqual(Buffer.concat([frame('D', 2), frame('Z', 'I')]));
    const threw = setup({
      table: { T: WHOLE },
      verdict: claimThen(() => {
        throw new Error('boom');
      }),
    });
    threw.src.send(stream);
    expect(threw.seen.errors.map((e) => e.message)).toEqual(['boom']);
    expect(threw.dst.bytes.includes(0xaa)).toBe(false);
  });

  it('a claim already sealed by later output, then a throw: its bytes leave zeroed and the session fails (no stray rejection)', async () => {
    const { src, dst, seen } = setup({
      table: { T: WHOLE },
      verdict: (_code, f, pump) => {
        pump.claim(f.length).fill(0xaa, pump.claimAt, pump.claimAt + f.length);
        pump.emit(frame('N', 70_000)); // more than the arena holds: the claim is sealed into the output
        throw new Error('boom');
      },
    });
    src.send(Buffer.concat([frame('D', 2), frame('T', 40), frame('Z', 'I')]));
    await new Promise((r) => setTimeout(r, 10)); // an unhandled rejection would surface here
    expect(seen.errors.map((e) => e.message)).toEqual(['boom']);
    expect(dst.bytes.includes(0xaa)).toBe(false);
  });

  it('claim() outside a frame hook is refused', () => {
    const { pump } = setup();
    expect(() => pump.claim(5)).toThrow(/outside a frame hook/);
  });

  it('a pending Promise holds every later frame, and order is kept', async () => {
    let release!: (v: Verdict) => void;
    const { src, dst } = setup({
      table: { T: WHOLE },
      verdict: (code, f) => (f.length === 5 + 10 ? new Promise<Verdict>((r) => (release = r)) : undefined),
    });
    src.send(Buffer.concat([frame('D', 1), frame('T', 10), frame('D', 2)]));
    src.send(Buffer.concat([frame('T', 11), frame('D', 3)]));
    expect(dst.bytes).toEqual(frame('D', 1));
    release(frame('T', 'late'));
    await new Promise((r) => setImmediate(r));
    expect(dst.bytes).toEqual(Buffer.concat([frame('D', 1), frame('T', 'late'), frame('D', 2), frame('T', 11), frame('D', 3)]));
  });

  it('a growing backlog behind a Promise pauses the source, and resumes it after', async () => {
    let release!: (v: Verdict) => void;
    const { src, dst } = setup({
      table: { T: WHOLE },
      highWater: 1000,
      verdict: () => new Promise<Verdict>((r) => (release = r)),
    });
    src.send(frame('T', 1));
    for (let i = 0; i < 5; i++) src.send(frame('D', 400));
    expect(src.paused).toBe(true);
    release(undefined);
    await new Promise((r) => setImmediate(r));
    expect(src.paused).toBe(false);
    expect(dst.bytes.length).toBe(6 + 5 * 405);
  });

  it('a rejected Promise fails the pump', async () => {
    const { src, seen } = setup({ table: { T: WHOLE }, verdict: () => Promise.reject(new Error('kek down')) });
    src.send(frame('T', 1));
    await new Promise((r) => setImmediate(r));
    expect(seen.errors.map((e) => e.message)).toEqual(['kek down']);
  });
});

describe('Pump limits and backpressure', () => {
  it('a length below 4 is a ProtocolError', () => {
    const { src, seen } = setup();
    const b = frame('Q', 0);
    b.writeInt32BE(3, 1);
    src.send(b);
    expect(seen.errors[0]).toBeInstanceOf(ProtocolError);
  });

  it('a length below 4 split across chunks is a ProtocolError too', () => {
    const { src, seen } = setup();
    const b = frame('Q', 0);
    b.writeInt32BE(-1, 1);
    src.send(b.subarray(0, 2));
    src.send(b.subarray(2));
    expect(seen.errors[0]).toBeInstanceOf(ProtocolError);
  });

  it('a frame over maxFrame is refused before any of it is forwarded', () => {
    const { src, dst, seen } = setup({ maxFrame: 100 });
    src.send(Buffer.concat([frame('Q', 10), frame('Q', 200)]));
    expect(seen.errors[0]).toBeInstanceOf(ProtocolError);
    expect(seen.errors[0]!.message).toMatch(/invalid message length 204/);
    expect(dst.bytes).toEqual(frame('Q', 10));
  });

  it('the frames before a bad one are written before the fail hook runs (it may destroy the destination)', () => {
    const src = new FakeSource();
    const dst = new FakeSink();
    let atFail: Buffer | undefined;
    const pump = new Pump(src.asSocket(), dst.asSocket(), { note: () => {}, frame: () => undefined, fail: () => (atFail = dst.bytes) }, { maxFrame: 100 });
    pump.start();
    src.send(Buffer.concat([frame('Q', 10), frame('P', 3), frame('Q', 200)]));
    expect(atFail).toEqual(Buffer.concat([frame('Q', 10), frame('P', 3)]));
  });

  it('pauses the source when the destination is full and resumes on drain', () => {
    const { src, dst } = setup();
    dst.full = true;
    src.send(frame('D', 10));
    expect(src.paused).toBe(true);
    dst.drain();
    expect(src.paused).toBe(false);
  });

  it('stop() detaches: later data is ignored', () => {
    const { src, dst, pump } = setup();
    pump.stop();
    src.send(frame('D', 1));
    expect(dst.writes).toEqual([]);
  });
});

describe('Pump.emit', () => {
  it('writes at once between frames', () => {
    const { src, dst, pump } = setup();
    src.send(frame('D', 3));
    pump.emit(frame('E', 'x'));
    expect(dst.bytes).toEqual(Buffer.concat([frame('D', 3), frame('E', 'x')]));
  });

  it('waits for the end of a frame being forwarded', () => {
    const { src, dst, pump } = setup();
    const d = frame('D', 100);
    src.send(d.subarray(0, 50));
    let ran = false;
    pump.emit(frame('E', 'x'), () => (ran = true));
    expect(ran).toBe(false);
    src.send(Buffer.concat([d.subarray(50), frame('Z', 'I')]));
    expect(ran).toBe(true);
    expect(dst.bytes).toEqual(Buffer.concat([d, frame('E', 'x'), frame('Z', 'I')]));
  });

  it('waits while a header is split and the frame is being forwarded', () => {
    const { src, dst, pump } = setup();
    const d = frame('D', 4);
    src.send(d.subarray(0, 2));
    pump.emit(frame('E', 'x'));
    src.send(d.subarray(2));
    expect(dst.bytes).toEqual(Buffer.concat([d, frame('E', 'x')]));
  });

  it('from inside a WHOLE hook goes before the frame being decided; `after` goes behind it', () => {
    const src = new FakeSource();
    const dst = new FakeSink();
    let pump!: Pump;
    pump = new Pump(src.asSocket(), dst.asSocket(), {
      note: () => {},
      frame: () => {
        pump.emit(frame('B', 'before'));
        pump.emit(frame('A', 'after'), undefined, true);
        return undefined;
      },
      fail: (e) => {
        throw e;
      },
    }, { maxFrame: 1 << 20 });
    pump.table[0x54] = WHOLE;
    pump.start();
    src.send(Buffer.concat([frame('D', 1), frame('T', 2)]));
    expect(dst.bytes).toEqual(Buffer.concat([frame('D', 1), frame('B', 'before'), frame('T', 2), frame('A', 'after')]));
  });

  it('`after` on an idle pump writes at once', () => {
    const { src, dst, pump } = setup();
    src.send(frame('D', 1));
    pump.emit(frame('A', 'x'), undefined, true);
    expect(dst.bytes).toEqual(Buffer.concat([frame('D', 1), frame('A', 'x')]));
  });

  it('table changes take effect from the next frame', () => {
    const src = new FakeSource();
    const dst = new FakeSink();
    const seen: number[] = [];
    let pump!: Pump;
    pump = new Pump(src.asSocket(), dst.asSocket(), {
      note: () => {},
      frame: (code) => {
        seen.push(code);
        pump.table.fill(PASS);
        return undefined;
      },
      fail: () => {},
    }, { maxFrame: 1 << 20 });
    pump.table.fill(WHOLE);
    pump.start();
    src.send(Buffer.concat([frame('Z', 'I'), frame('Z', 'I')]));
    expect(seen).toEqual([0x5a]);
    expect(dst.bytes.length).toBe(12);
  });
});
