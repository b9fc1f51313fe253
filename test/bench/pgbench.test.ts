import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePgbenchLog, parsePgbenchLogWindow, parsePgbenchOutput, readPgbenchLogWindow, readPgbenchLogs } from '../../bench/lib/pgbench.js';

// Verbatim pgbench 15 output (against a Postgres 18 server).
const REPORT = `pgbench (15.18 (Debian 15.18-0+deb12u1), server 18.4)
transaction type: <builtin: select only>
scaling factor: 1
query mode: prepared
number of clients: 2
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 95665
number of failed transactions: 0 (0.000%)
latency average = 0.042 ms
initial connection time = 11.606 ms
tps = 48032.652061 (without initial connection time)
`;

describe('pgbench output parsing', () => {
  it('reads tps, transactions, failures and average latency', () => {
    expect(parsePgbenchOutput(REPORT)).toEqual({ tps: 48032.652061, transactions: 95665, failed: 0, latencyAvgMs: 0.042 });
  });

  it('reads failures, and an empty report as nothing processed', () => {
    expect(parsePgbenchOutput(REPORT.replace('failed transactions: 0 (0.000%)', 'failed transactions: 12 (0.013%)')).failed).toBe(12);
    const empty = parsePgbenchOutput('');
    expect(empty.transactions).toBe(0);
    expect(empty.tps).toBeNaN();
  });

  it('takes the third column (elapsed µs) of per-transaction log lines', () => {
    const log = '0 1 1293 0 1795877449 782634\n0 2 148 0 1795877449 782789\n1 1 103 0 1795877449 782896 12\n\n';
    expect([...parsePgbenchLog(log)]).toEqual([1293, 148, 103]);
    expect([...parsePgbenchLog('0 1 77 0 1 2')]).toEqual([77]); // no trailing newline
    expect(parsePgbenchLog('').length).toBe(0);
  });

  it('merges every thread log of a run', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgbench-parse-'));
    try {
      writeFileSync(join(dir, 'tx.123'), '0 1 10 0 1 1\n0 2 20 0 1 2\n');
      writeFileSync(join(dir, 'tx.123.1'), '1 1 30 0 1 1\n');
      expect([...readPgbenchLogs(dir)].sort((a, b) => a - b)).toEqual([10, 20, 30]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps only the transactions that completed inside a window (fields five and six: epoch s, µs)', () => {
    const log = [
      '0 1 500 0 1795877449 999999', // before the window
      '0 2 148 0 1795877450 0', // on its start: in
      '1 1 103 0 1795877450 500000 12',
      '1 2 failed 0 1795877450 600000', // a failed transaction is no latency
      '0 3 77 0 1795877451 0', // on its end: out
      '',
    ].join('\n');
    const from = 1795877450 * 1e6;
    expect([...parsePgbenchLogWindow(log, from, from + 1e6)]).toEqual([148, 103]);
    expect(parsePgbenchLogWindow(log, from + 2e6, from + 3e6).length).toBe(0);
    expect(parsePgbenchLogWindow('', from, from + 1e6).length).toBe(0);
  });

  it('counts a window over every thread log of a run', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgbench-window-'));
    try {
      writeFileSync(join(dir, 'tx.9'), '0 1 10 0 5 0\n0 2 20 0 6 0\n');
      writeFileSync(join(dir, 'tx.9.1'), '1 1 30 0 6 500000\n1 2 40 0 7 0\n');
      expect([...readPgbenchLogWindow(dir, 6e6, 7e6)].sort((a, b) => a - b)).toEqual([20, 30]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
