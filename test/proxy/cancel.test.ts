import { describe, expect, it } from 'vitest';
import { CancelRegistry, workerOfPid } from '../../src/proxy/cancel.js';
import type { UpstreamTarget } from '../../src/proxy/upstream.js';

const upstream: UpstreamTarget = { host: '127.0.0.1', port: 5432, tls: 'disable', connectTimeoutMs: 1000 };

describe('CancelRegistry', () => {
  it('hands out a random pid and a key as long as the server\'s, and finds the real one back', () => {
    const r = new CancelRegistry();
    const real = { upstream, pid: 4242, key: Buffer.from([1, 2, 3, 4]) };
    const mine = r.register(real);
    expect(mine.pid).not.toBe(4242);
    expect(mine.pid).toBeGreaterThan(0);
    expect(mine.key.length).toBe(4);
    expect(mine.key.equals(real.key)).toBe(false);
    expect(r.lookup(mine.pid, mine.key)).toBe(real);
    const long = r.register({ upstream, pid: 7, key: Buffer.alloc(32, 5) });
    expect(long.key.length).toBe(32);
  });

  it('refuses a wrong key, a key of another length, and an unknown pid', () => {
    const r = new CancelRegistry();
    const mine = r.register({ upstream, pid: 1, key: Buffer.from([9, 9, 9, 9]) });
    const wrong = Buffer.from(mine.key);
    wrong[0] ^= 1;
    expect(r.lookup(mine.pid, wrong)).toBeUndefined();
    expect(r.lookup(mine.pid, Buffer.concat([mine.key, Buffer.from([0])]))).toBeUndefined();
    expect(r.lookup(mine.pid + 1, mine.key)).toBeUndefined();
  });

  it('forgets a session on unregister', () => {
    const r = new CancelRegistry();
    const mine = r.register({ upstream, pid: 1, key: Buffer.alloc(4) });
    r.unregister(mine.pid);
    expect(r.lookup(mine.pid, mine.key)).toBeUndefined();
    expect(r.size).toBe(0);
  });

  it('encodes the worker number in the pid, which stays a positive int32', () => {
    for (const w of [0, 1, 2, 64, 127]) {
      const r = new CancelRegistry(w);
      for (let i = 0; i < 50; i++) {
        const { pid } = r.register({ upstream, pid: i, key: Buffer.alloc(4) });
        expect(workerOfPid(pid)).toBe(w);
        expect(pid).toBeGreaterThan(0);
        expect(pid).toBeLessThanOrEqual(0x7fffffff);
      }
    }
    expect(() => new CancelRegistry(128)).toThrow();
  });

  it('gives every session its own pid', () => {
    const r = new CancelRegistry();
    const pids = new Set(Array.from({ length: 2000 }, (_, i) => r.register({ upstream, pid: i, key: Buffer.alloc(4) }).pid));
    expect(pids.size).toBe(2000);
  });
});
