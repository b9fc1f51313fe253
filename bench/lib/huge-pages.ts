// Huge pages for a benchmark's Postgres (`huge_pages = on`), reserved for the
// run when the machine has none free and this process is root, and given back
// at cleanup. Why: pgbench opens fresh connections for every run, and a fresh
// backend takes a minor fault the first time it touches each 4 KiB page of
// shared memory. On the project's VM (a PVM guest) each such page costs 6–18 µs
// (bench/fault-cost.c), against well under 1 µs on ordinary hardware, and an
// INSERT of a 245-byte envelope fills new buffers 3.7× as often as one of a
// 38-byte plaintext: with 4 KiB pages that alone cost Postgres about +14 µs per
// encrypted insert, with huge pages +2 (docs/ARCHITECTURE.md, "What one fault costs here").
// Every target of a run shares the one cluster, so all get the same pages.
import { readFileSync, writeFileSync } from 'node:fs';
import { onCleanup } from './proc.js';

const NR = '/proc/sys/vm/nr_hugepages';

export interface HugePages {
  /** Postgres' `huge_pages` setting for the run: 'on' only when enough pages are free. */
  setting: 'on' | 'off';
  /** Said in the report: `huge pages` or `4 KiB pages (why)`. */
  describe: string;
}

function meminfo(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/**
 * Makes `mb` MiB of huge pages free for one Postgres cluster, if it can.
 * `want: false` (--huge-pages off) keeps 4 KiB pages.
 */
export function reserveHugePages(mb: number, want: boolean, log: (s: string) => void = () => {}): HugePages {
  const off = (why: string): HugePages => ({ setting: 'off', describe: `4 KiB pages (${why})` });
  if (!want) return off('--huge-pages off');
  let sizeKb: number;
  try {
    sizeKb = meminfo('Hugepagesize');
  } catch {
    return off('no /proc/meminfo');
  }
  if (sizeKb <= 0) return off('no huge page support');
  const needed = Math.ceil((mb * 1024) / sizeKb);
  if (meminfo('HugePages_Free') >= needed) return { setting: 'on', describe: 'huge pages' };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return off(`${needed} free huge pages needed; not root`);
  const before = Number(readFileSync(NR, 'utf8').trim());
  try {
    writeFileSync(NR, String(before + needed));
  } catch (e) {
    return off(`could not reserve huge pages: ${(e as Error).message}`);
  }
  onCleanup(() => writeFileSync(NR, String(before)));
  if (meminfo('HugePages_Free') < needed) return off('the kernel could not reserve enough huge pages');
  log(`reserved ${needed} huge pages (${NR} ${before} -> ${before + needed}; restored at the end)`);
  return { setting: 'on', describe: 'huge pages' };
}
