import { describe, expect, it } from 'vitest';
import { percentile, percentileSorted, ratio, summarize } from '../../bench/lib/stats.js';

describe('bench percentile maths', () => {
  it('interpolates linearly between closest ranks (numpy default)', () => {
    expect(percentile([1, 2], 50)).toBe(1.5);
    expect(percentile([3, 1, 2, 4], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4, 5], 0)).toBe(1);
    expect(percentile([1, 2, 3, 4, 5], 100)).toBe(5);
    expect(percentile([1, 2, 3, 4, 5], 25)).toBe(2);
    // numpy.percentile(range(1, 101), 99) == 99.01
    expect(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 99)).toBeCloseTo(99.01, 10);
  });

  it('handles one sample, empty input and bad p', () => {
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentileSorted([1], 101)).toThrow(RangeError);
    expect(() => percentileSorted([1], Number.NaN)).toThrow(RangeError);
  });

  it('sorts numerically, not as strings', () => {
    expect(percentile([10, 9, 100, 1], 0)).toBe(1);
    expect(percentile([10, 9, 100, 1], 100)).toBe(100);
  });

  it('summarizes in one pass', () => {
    const s = summarize([5, 1, 4, 2, 3]);
    expect(s).toEqual({ count: 5, min: 1, max: 5, mean: 3, p50: 3, p90: 4.6, p99: expect.closeTo(4.96, 10) });
    expect(summarize([]).count).toBe(0);
    expect(summarize([]).p50).toBeNaN();
  });

  it('ratio is NaN when undefined', () => {
    expect(ratio(1, 4)).toBe(0.25);
    expect(ratio(1, 0)).toBeNaN();
    expect(ratio(Number.NaN, 2)).toBeNaN();
  });
});
