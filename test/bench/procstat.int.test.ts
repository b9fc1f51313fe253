import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { postgresClusterCpu } from '../../bench/lib/procstat.js';

const dataDir = inject('pgDataDir');

describe.skipIf(!dataDir)('postgresClusterCpu', () => {
  it('reads the CPU time and minor page faults of the postmaster and its children, which only grow', async () => {
    const read = postgresClusterCpu(dataDir);
    const before = read()!;
    expect(before.cpuMs).toBeGreaterThanOrEqual(0);
    expect(before.minorFaults).toBeGreaterThan(0);
    const c = new pg.Client(inject('pgUrl'));
    await c.connect();
    try {
      // A new backend, and a sort that needs fresh memory: both fault pages in.
      await c.query('SELECT count(*) FROM (SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC) s');
      const during = read()!;
      expect(during.minorFaults).toBeGreaterThan(before.minorFaults);
      expect(during.cpuMs).toBeGreaterThanOrEqual(before.cpuMs);
    } finally {
      await c.end();
    }
  });
});
