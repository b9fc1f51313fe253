// What the proxy counts for its metrics: plain integers bumped where the work
// happens (a property increment, no label hashing) and turned into Prometheus
// series only when /metrics is scraped (registry.ts). One ProxyStats lives for
// the whole process, across SIGHUP reloads, so every counter stays monotonic.
import type { TablePolicy, ColumnPolicy } from '../config/types.js';
import type { SqlRejection } from '../sql/types.js';
import type { ProgressFn } from '../admin/progress.js';

export interface ColumnCounts {
  /** Values written to this column that were encrypted. */
  encrypted: number;
  /** Values read from this column that were decrypted (legacy plaintext is not counted). */
  decrypted: number;
}

export interface AdminRun {
  /** Rows done / rows to do of the column being worked on (the last progress report). */
  done: number;
  total: number;
}

/** Adds n to a counter in a label → count map. */
export function bump(m: Map<string, number>, key: string, n = 1): void {
  m.set(key, (m.get(key) ?? 0) + n);
}

export class ProxyStats {
  /** schema.table.column → counts. */
  readonly columns = new Map<string, ColumnCounts>();
  /** CMEKDecryptionError reason (or `backend_unavailable`) → values that failed to decrypt. */
  readonly decryptFailures = new Map<string, number>();
  /** Why a value could not be encrypted → count. */
  readonly encryptFailures = new Map<string, number>();
  /** `reason|sqlstate` → statements refused. */
  readonly refusals = new Map<string, number>();
  /** Query messages (simple protocol) and Execute messages (extended protocol) from clients. */
  queries = { simple: 0, extended: 0 };
  /** `command|outcome` → finished admin commands; command → running now. */
  readonly adminFinished = new Map<string, number>();
  readonly adminRunning = new Map<string, number>();
  /** schema.table.column → latest progress of an admin command on it. */
  readonly adminProgress = new Map<string, AdminRun>();
  /** `ok` / `error` → SIGHUP reloads. */
  readonly reloads = new Map<string, number>();
  // Policy objects are shared by every plan of a config generation, so identity finds the column.
  private byPolicy = new WeakMap<ColumnPolicy, ColumnCounts>();

  /** Names the columns of a (new) config; counts of a column kept across reloads keep adding up. */
  registerColumns(tables: readonly TablePolicy[]): void {
    for (const t of tables) {
      for (const c of t.columns) {
        const label = `${t.schema}.${t.table}.${c.column}`;
        let counts = this.columns.get(label);
        if (!counts) this.columns.set(label, (counts = { encrypted: 0, decrypted: 0 }));
        this.byPolicy.set(c, counts);
      }
    }
  }

  /** The counts of a configured column's policy; an unregistered one is counted under `?.<column>`. */
  column(policy: ColumnPolicy): ColumnCounts {
    let c = this.byPolicy.get(policy);
    if (!c) {
      const label = `?.${policy.column}`;
      c = this.columns.get(label) ?? { encrypted: 0, decrypted: 0 };
      this.columns.set(label, c);
      this.byPolicy.set(policy, c);
    }
    return c;
  }

  refused(e: SqlRejection): void {
    bump(this.refusals, `${e.reason}|${e.code}`);
  }

  adminStarted(command: string): void {
    bump(this.adminRunning, command);
  }

  adminEnded(command: string, outcome: 'ok' | 'error'): void {
    bump(this.adminRunning, command, -1);
    bump(this.adminFinished, `${command}|${outcome}`);
  }

  readonly adminProgressFn: ProgressFn = (done, total, _rate, _eta, label) => {
    this.adminProgress.set(label, { done, total });
  };
}
