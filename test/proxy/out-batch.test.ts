import { describe, expect, it } from 'vitest';
import { OutBatch } from '../../src/proxy/out-batch.js';

/** An OutBatch over a fake socket: `sent` keeps the Buffers as handed over (not copies). */
function batch(opts: { drained?: () => boolean } = {}) {
  const sent: Buffer[] = [];
  const corks: boolean[] = [];
  const ob = new OutBatch(
    (b) => sent.push(b),
    opts.drained ?? (() => true),
    (on) => corks.push(on),
  );
  const claimText = (s: string) => {
    const buf = ob.claim(s.length);
    buf.write(s, ob.claimAt, 'latin1');
  };
  return { ob, sent, corks, claimText, text: () => sent.map((b) => b.toString('latin1')) };
}

describe('OutBatch', () => {
  it('keeps the order of runs added before, between and after claimed frames', () => {
    const t = batch();
    t.ob.add(Buffer.from('T1'));
    t.ob.add(Buffer.from('T2'));
    t.claimText('D1');
    t.ob.add(Buffer.from('x'));
    t.claimText('D2');
    t.ob.add(Buffer.from('CZ'));
    t.ob.flush();
    expect(t.text()).toEqual(['T1T2D1xD2CZ']);
  });

  it('sends a lone run as the very Buffer it was given (forwarding copies nothing)', () => {
    const t = batch();
    const run = Buffer.from('only a run');
    t.ob.add(run);
    t.ob.flush();
    expect(t.sent[0]).toBe(run);
  });

  it('reuses its arena only when the socket took the last send whole', () => {
    let drained = true;
    const t = batch({ drained: () => drained });
    t.claimText('first');
    t.ob.flush();
    t.claimText('again');
    t.ob.flush();
    // Reused: the second send overwrote the bytes of the first.
    expect(t.sent[0]!.buffer).toBe(t.sent[1]!.buffer);
    drained = false;
    t.claimText('held!');
    t.ob.flush();
    t.claimText('fresh');
    t.ob.flush();
    // The socket still held "held!": the next claim had to go elsewhere.
    expect(t.sent[2]!.toString()).toBe('held!');
    expect(t.sent[3]!.buffer).not.toBe(t.sent[2]!.buffer);
  });

  it('starts a new arena when a claim does not fit, and still sends everything in order', () => {
    const t = batch();
    const parts: string[] = [];
    for (let i = 0; i < 40; i++) {
      const s = String(i).padStart(4, '0').repeat(250); // 1,000 bytes each: 40 KB, past one 16 KiB arena
      parts.push(s);
      if (i % 3 === 0) t.ob.add(Buffer.from(s));
      else t.claimText(s);
    }
    t.ob.flush();
    expect(t.text().join('')).toBe(parts.join(''));
    expect(t.sent).toHaveLength(1); // under 64 KiB: one Buffer
  });

  it('sends a batch over 64 KiB as a corked series of writes', () => {
    const t = batch();
    const big = Buffer.alloc(70_000, 'b');
    t.claimText('head');
    t.ob.add(big);
    t.claimText('tail');
    t.ob.flush();
    expect(t.corks).toEqual([true, false]);
    expect(t.text().join('')).toBe('head' + big.toString() + 'tail');
    expect(t.sent).toContain(big); // the big run went by reference
  });

  it('a claim larger than the arena gets room of its own', () => {
    const t = batch();
    const s = 'z'.repeat(40_000);
    t.ob.add(Buffer.from('a'));
    t.claimText(s);
    t.ob.flush();
    expect(t.text().join('')).toBe('a' + s);
  });
});
