// What the admin CLI prints: result tables (psql-like) and progress, as a bar
// redrawn in place on a terminal, as plain lines (at most one per 5 s) otherwise.
import type { ProgressFn } from './progress.js';

export function formatTable(columns: string[], rows: string[][]): string {
  const width = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = columns.map((_, i) => rows.length > 0 && rows.every((r) => /^\d+(\.\d+)?$/.test(r[i] ?? '')));
  const cell = (s: string, i: number) => (numeric[i] ? s.padStart(width[i]) : s.padEnd(width[i]));
  const line = (cells: string[]) => ' ' + cells.map(cell).join(' | ').trimEnd();
  const out = [line(columns), '-' + width.map((w) => '-'.repeat(w)).join('-+-') + '-', ...rows.map((r) => line(r.map((c) => c ?? '')))];
  return `${out.join('\n')}\n(${rows.length} row${rows.length === 1 ? '' : 's'})\n`;
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export interface ProgressPrinter {
  update: ProgressFn;
  /** Removes the bar before other output. */
  clear(): void;
  done(): void;
}

export function progressPrinter(out: NodeJS.WritableStream & { isTTY?: boolean }, lineEveryMs = 5000): ProgressPrinter {
  const tty = out.isTTY === true;
  let shown = false;
  let lastLine = 0;
  let lastLabel = '';
  const text = (done: number, total: number, rate: number, eta: number, label: string) => {
    const pct = total > 0 ? Math.min(100, (100 * done) / total) : 100;
    return `${label}: ${done}/${total} (${pct.toFixed(0)}%) ${Math.round(rate)} rows/s, ${done >= total ? 'done' : `ETA ${duration(eta)}`}`;
  };
  return {
    update(done, total, rate, eta, label) {
      if (tty) {
        if (shown && label !== lastLabel) out.write('\n'); // keep the finished column's last line
        lastLabel = label;
        const pct = total > 0 ? Math.min(1, done / total) : 1;
        const bar = '#'.repeat(Math.round(pct * 24)).padEnd(24, '.');
        out.write(`\r\x1b[2K[${bar}] ${text(done, total, rate, eta, label)}`);
        shown = true;
        return;
      }
      const now = Date.now();
      // Plain lines: the first and last report of each column, and one per interval between.
      if (label !== lastLabel || done >= total || now - lastLine >= lineEveryMs) {
        out.write(`${text(done, total, rate, eta, label)}\n`);
        lastLine = now;
        lastLabel = label;
      }
    },
    clear() {
      if (tty && shown) out.write('\r\x1b[2K');
      shown = false;
    },
    done() {
      if (tty && shown) out.write('\n');
      shown = false;
    },
  };
}
