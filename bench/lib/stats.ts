// Percentile maths for benchmark samples. Percentiles interpolate linearly
// between the two closest ranks (numpy's default, "R-7"), so p50 of [1, 2] is 1.5
// and any p of a single sample is that sample.

export interface Summary {
  count: number;
  min: number;
  max: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
}

/** The p-th percentile (0..100) of values already sorted ascending. NaN when empty. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = (p / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (rank - lo);
}

/** Sorts numerically (a copy in a Float64Array: fast for the ~10^6 samples of a pgbench log). */
export function sortNumbers(values: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(values);
  out.sort();
  return out;
}

/** The p-th percentile (0..100) of unsorted values. */
export function percentile(values: ArrayLike<number>, p: number): number {
  return percentileSorted(sortNumbers(values), p);
}

/** count/min/max/mean/p50/p90/p99 in one sort. All NaN (count 0) when empty. */
export function summarize(values: ArrayLike<number>): Summary {
  const s = sortNumbers(values);
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i] as number;
  return {
    count: s.length,
    min: s.length ? (s[0] as number) : Number.NaN,
    max: s.length ? (s[s.length - 1] as number) : Number.NaN,
    mean: s.length ? sum / s.length : Number.NaN,
    p50: percentileSorted(s, 50),
    p90: percentileSorted(s, 90),
    p99: percentileSorted(s, 99),
  };
}

/** a / b, or NaN when b is 0 or either side is not a finite number. */
export function ratio(a: number, b: number): number {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : Number.NaN;
}

/**
 * The median over rounds of a[i] / b[i]: two targets measured back to back in
 * each round. A burst of load from outside (another VM on the host) slows both
 * runs of a round alike and cancels out of its ratio, where it skews a ratio of
 * means. NaN when no round has both.
 */
export function medianPairedRatio(a: readonly number[], b: readonly number[]): number {
  const rs: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const r = ratio(a[i]!, b[i]!);
    if (Number.isFinite(r)) rs.push(r);
  }
  return percentile(rs, 50);
}
