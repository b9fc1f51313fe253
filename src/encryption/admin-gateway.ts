// How a proxy session hands a `CMEK …` admin command to the admin layer
// (src/admin): parse, authorise against admin.roles, run over the session's own
// upstream connection, and relay progress as NOTICEs.
import type { Config } from '../config/types.js';
import type { Keyring } from '../crypto/keyring.js';
import type { Db } from '../catalog/db.js';
import { parseAdminCommand } from '../admin/parse.js';
import { executeAdminCommand } from '../admin/executor.js';
import { AdminError } from '../admin/errors.js';
import type { ProgressFn } from '../admin/progress.js';
import type { SessionInfo } from '../proxy/interceptor.js';

export interface AdminReply {
  /** Column names of the result (empty: a command with no rows, just a tag). */
  columns: string[];
  rows: (string | null)[][];
  /** CommandComplete tag, e.g. `CMEK STATUS`. */
  tag: string;
}

export interface AdminGateway {
  /** Runs one command; rejects with an error carrying `sqlstate` (AdminError). */
  run(info: SessionInfo, text: string, db: Db, notice: (message: string) => void): Promise<AdminReply>;
}

function fmtEta(s: number): string {
  if (!Number.isFinite(s)) return '?';
  return s >= 60 ? `${Math.floor(s / 60)}m${Math.round(s % 60)}s` : `${Math.round(s)}s`;
}

/** `onProgress` also receives every progress report (metrics). */
export function createAdminGateway(config: Config, keyring: Keyring, onProgress?: ProgressFn): AdminGateway {
  return {
    async run(info, text, db, notice) {
      const cmd = parseAdminCommand(text);
      if (cmd instanceof AdminError) throw cmd;
      const result = await executeAdminCommand(cmd, {
        db,
        config,
        keyring,
        principal: { kind: 'role', name: info.user },
        onNotice: notice,
        onProgress: (done, total, rate, eta, label) => {
          onProgress?.(done, total, rate, eta, label);
          notice(`${label}: ${done}/${total} rows (${Math.round(rate)} rows/s, ETA ${fmtEta(eta)})`);
        },
      });
      return { columns: result.columns, rows: result.rows, tag: result.commandTag };
    },
  };
}
