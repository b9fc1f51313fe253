import { describe, expect, it } from 'vitest';
import { medianPairedRatio, percentile, percentileSorted, ratio, summarize } from '../../bench/lib/stats.js';

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

  it('medianPairedRatio: the median of round-by-round ratios, robust to one disturbed round', () => {
    // Round 3 of the second target was hit by outside load: the ratio of means moves, the median does not.
    const enc = [80, 82, 81, 79];
    const plain = [100, 100, 50, 100];
    expect(ratio(enc.reduce((a, b) => a + b) / 4, plain.reduce((a, b) => a + b) / 4)).toBeCloseTo(0.92, 3);
    expect(medianPairedRatio(enc, plain)).toBeCloseTo(0.81, 3);
    expect(medianPairedRatio([1, 2], [2, 0])).toBe(0.5); // a round without a rate is left out
    expect(medianPairedRatio([], [])).toBeNaN();
  });
});
