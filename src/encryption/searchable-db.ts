// A `Db` over a client's upstream session for the searchable key table, like
// SessionDb but on a statement and portal of the proxy's own name: the key
// maintenance also runs before a client's Bind, and the client may still mean
// to bind the unnamed statement it parsed in an earlier batch. The statement is
// closed first (a leftover from a failed query would make the Parse fail;
// closing a missing statement is not an error) and after. Replies are consumed
// internally; they never reach the client.
import type { Db } from '../catalog/db.js';
import { BackendCode as B } from '../protocol/codes.js';
import { decodeCommandComplete } from '../protocol/backend/command-complete.js';
import { decodeDataRow } from '../protocol/backend/data-row.js';
import { decodeErrorFields } from '../protocol/backend/error-response.js';
import { decodeRowDescription } from '../protocol/backend/row-description.js';
import { encodeBind } from '../protocol/frontend/bind.js';
import { encodeClose, encodeDescribe } from '../protocol/frontend/describe-close.js';
import { encodeExecute } from '../protocol/frontend/execute.js';
import { encodeParse } from '../protocol/frontend/parse.js';
import { SYNC } from '../protocol/frontend/simple.js';
import type { InterceptContext } from '../proxy/interceptor.js';
import { paramText, SessionDbError } from './session-db.js';

/** Reserved for the proxy; a client statement of this name would be closed. */
const NAME = '__pgcmek_searchable_keys';

export class SearchableSessionDb implements Db {
  constructor(private readonly ctx: InterceptContext) {}

  query(sql: string, params: unknown[] = []): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }> {
    return new Promise((resolve, reject) => {
      let cols: string[] = [];
      const rows: Record<string, unknown>[] = [];
      let error: SessionDbError | undefined;
      let rowCount: number | null = null;
      const frames = Buffer.concat([
        encodeClose({ kind: 'S', name: NAME }),
        encodeParse({ name: NAME, text: sql, paramTypes: [] }),
        encodeBind({ portal: NAME, statement: NAME, paramFormats: [], values: params.map(paramText), resultFormats: [] }),
        encodeDescribe({ kind: 'P', name: NAME }),
        encodeExecute({ portal: NAME, maxRows: 0 }),
        encodeClose({ kind: 'S', name: NAME }),
        SYNC,
      ]);
      this.ctx.injectToServer(frames, {
        message: (code, f) => {
          if (code === B.RowDescription) cols = decodeRowDescription(f).map((x) => x.name);
          else if (code === B.DataRow) {
            const row: Record<string, unknown> = {};
            decodeDataRow(f).forEach((v, i) => (row[cols[i]!] = v === null ? null : v.toString('utf8')));
            rows.push(row);
          } else if (code === B.CommandComplete) {
            const n = Number(decodeCommandComplete(f).split(' ').pop());
            rowCount = Number.isFinite(n) ? n : null;
          } else if (code === B.ErrorResponse) {
            const e = decodeErrorFields(f.subarray(5));
            error = new SessionDbError(e.code, e.message);
          }
        },
        done: (entry) => {
          if (entry.kind !== 'sync') return;
          if (error) reject(error);
          else resolve({ rows, rowCount });
        },
      });
    });
  }
}
