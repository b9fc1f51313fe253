// How a proxy session hands a `CMEK …` admin command to the admin layer
// (src/admin): parse, authorise against admin.roles, run over the session's own
// upstream connection, and relay progress as NOTICEs. A backfill or rotation of
// a searchable column needs the column keys the proxy loaded for the session's
// database (the same ones its lookups use); they are asked for per command, so
// a key loaded or refreshed since the gateway was built is the one used.
import type { Config } from '../config/types.js';
import type { Keyring } from '../crypto/keyring.js';
import type { Db } from '../catalog/db.js';
import { parseAdminCommand } from '../admin/parse.js';
import { executeAdminCommand } from '../admin/executor.js';
import { AdminError, SqlState } from '../admin/errors.js';
import type { ProgressFn } from '../admin/progress.js';
import type { SearchableAccess } from '../admin/searchable.js';
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

/** Where the gateway gets the searchable column keys of a session's database (the layer's SearchableRegistry). */
export interface SearchableKeySource {
  /** The loaded keys of the session's database, or undefined when they are not loaded. */
  keys(info: SessionInfo, db: Db): SearchableAccess | undefined | Promise<SearchableAccess | undefined>;
  /** Why they are not loaded, for the refusal of a command that needs them. */
  problem?(info: SessionInfo): string;
}

function fmtEta(s: number): string {
  if (!Number.isFinite(s)) return '?';
  return s >= 60 ? `${Math.floor(s / 60)}m${Math.round(s % 60)}s` : `${Math.round(s)}s`;
}

/** A refusal for want of searchable keys, with the proxy's own reason instead of "run it elsewhere". */
function keysMissing(err: unknown, info: SessionInfo, source: SearchableKeySource | undefined): unknown {
  if (!(err instanceof AdminError) || err.sqlstate !== SqlState.objectNotInPrerequisiteState || !/ is searchable: /.test(err.message)) return err;
  const why = source?.problem?.(info) ?? 'this proxy was started without searchable key access for admin commands';
  return new AdminError(
    err.sqlstate,
    `${err.message} (database "${info.database}": ${why})`,
    'through pgcmek the keys load at a session\'s first statement outside a transaction, over that session\'s role; see docs/SEARCHABLE.md §2',
  );
}

/**
 * `onProgress` also receives every progress report (metrics). `searchable`
 * gives the column keys of the session's database, for backfills and rotations
 * of searchable columns (without it those are refused with 55000).
 */
export function createAdminGateway(config: Config, keyring: Keyring, onProgress?: ProgressFn, searchable?: SearchableKeySource): AdminGateway {
  return {
    async run(info, text, db, notice) {
      const cmd = parseAdminCommand(text);
      if (cmd instanceof AdminError) throw cmd;
      const access = await searchable?.keys(info, db);
      try {
        const result = await executeAdminCommand(cmd, {
          db,
          config,
          keyring,
          principal: { kind: 'role', name: info.user },
          ...(access && { searchable: access }),
          onNotice: notice,
          onProgress: (done, total, rate, eta, label) => {
            onProgress?.(done, total, rate, eta, label);
            notice(`${label}: ${done}/${total} rows (${Math.round(rate)} rows/s, ETA ${fmtEta(eta)})`);
          },
        });
        return { columns: result.columns, rows: result.rows, tag: result.commandTag };
      } catch (err) {
        throw access ? err : keysMissing(err, info, searchable);
      }
    },
  };
}
