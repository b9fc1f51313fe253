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
    // `held`: the fake socket has unsent bytes; `partial`: the next send is not taken whole.
    let held = false;
    let partial = false;
    const sent: Buffer[] = [];
    const ob = new OutBatch(
      (b) => {
        sent.push(b);
        if (partial) held = true;
      },
      () => !held,
      () => {},
    );
    const claimText = (text: string) => ob.claim(text.length).write(text, ob.claimAt, 'latin1');
    claimText('first');
    ob.flush();
    claimText('again');
    ob.flush();
    // Taken whole: the second send reused the first one's bytes.
    expect(sent[1]!.buffer).toBe(sent[0]!.buffer);
    partial = true;
    claimText('held!');
    ob.flush();
    expect(sent[2]!.buffer).toBe(sent[0]!.buffer); // the socket was empty: the arena itself went out…
    claimText('fresh');
    ob.flush();
    // …and it still holds it, unsent: this batch must be elsewhere, and "held!" intact.
    expect(sent[3]!.buffer).not.toBe(sent[2]!.buffer);
    expect(sent[2]!.toString()).toBe('held!');
    expect(sent[3]!.toString()).toBe('fresh');
  });

  it('to a socket already behind, arena bytes go as a copy and the arena stays in use', () => {
    let held = false;
    const sent: Buffer[] = [];
    const texts: string[] = []; // as each send was made (a send taken whole leaves its bytes free for reuse)
    const ob = new OutBatch(
      (b) => {
        sent.push(b);
        texts.push(b.toString());
      },
      () => !held,
      () => {},
    );
    const claimText = (text: string) => ob.claim(text.length).write(text, ob.claimAt, 'latin1');
    claimText('one');
    ob.flush();
    held = true; // a slow reader: every later send waits in the socket's queue
    for (const w of ['two', 'three', 'four']) {
      claimText(w);
      ob.flush();
    }
    expect(texts).toEqual(['one', 'two', 'three', 'four']);
    expect(sent.slice(1).map(String)).toEqual(['two', 'three', 'four']); // the queued ones still hold their bytes
    // Each queued send is a copy; none pins the arena (the first send's buffer).
    for (const b of sent.slice(1)) expect(b.buffer).not.toBe(sent[0]!.buffer);
    held = false;
    claimText('five');
    ob.flush();
    expect(sent[4]!.buffer).toBe(sent[0]!.buffer); // the same arena, reused
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

  it('sizes its arena for the rest of the chunk (`ahead`), so a large chunk still leaves as one Buffer it did not copy again', () => {
    const t = batch();
    const rows: string[] = [];
    let ahead = 50_000;
    for (let i = 0; i < 45; i++) {
      const s = String(i % 10).repeat(1000);
      rows.push(s);
      t.ob.claim(s.length, ahead).write(s, t.ob.claimAt, 'latin1');
      ahead -= 1100; // each row replaced a longer one
    }
    t.ob.flush();
    expect(t.sent).toHaveLength(1);
    expect(t.text()[0]).toBe(rows.join(''));
    // It was the arena itself (the next batch reuses its memory), not a concat of several arenas.
    t.claimText('next');
    t.ob.flush();
    expect(t.sent[1]!.buffer).toBe(t.sent[0]!.buffer);
  });

  it('unclaim() takes a claim back, or, once later output sealed it, zeroes it and says so', () => {
    const t = batch();
    t.ob.add(Buffer.from('run'));
    t.claimText('xxxx');
    expect(t.ob.unclaim()).toBe(true);
    t.claimText('row');
    t.ob.flush();
    expect(t.text()).toEqual(['runrow']);
    // A claim, then output too large for the arena: the claim is sealed into a part.
    t.claimText('secret');
    t.ob.add(Buffer.alloc(70_000, 'b'));
    expect(t.ob.unclaim()).toBe(false);
    t.ob.flush();
    const all = Buffer.concat(t.sent.slice(1));
    expect(all.includes('secret')).toBe(false);
    expect(all.subarray(0, 6)).toEqual(Buffer.alloc(6)); // zeroed, not stale bytes
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
