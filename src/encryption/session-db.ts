// A `Db` (src/catalog/db.ts) over the client's own upstream session: each query
// is injected as Parse/Bind/Describe/Execute/Sync of the proxy's own, and its
// replies are consumed internally (they never reach the client). Admin commands
// sent through the proxy run here, with the client's own role and privileges —
// no second credential is needed.
//
// By default on the unnamed statement and portal. The searchable key
// maintenance passes a name of the proxy's own instead: it also runs before a
// client's Bind, and the client may still mean to bind the unnamed statement it
// parsed in an earlier batch. A named statement is closed first (a leftover
// from a failed query would make the Parse fail; closing a missing statement is
// not an error) and after.
import type { Db } from '../catalog/db.js';
import { BackendCode as B } from '../protocol/codes.js';
import { decodeDataRow } from '../protocol/backend/data-row.js';
import { decodeErrorFields } from '../protocol/backend/error-response.js';
import { decodeRowDescription } from '../protocol/backend/row-description.js';
import { decodeCommandComplete } from '../protocol/backend/command-complete.js';
import { encodeBind } from '../protocol/frontend/bind.js';
import { encodeClose, encodeDescribe } from '../protocol/frontend/describe-close.js';
import { encodeExecute } from '../protocol/frontend/execute.js';
import { encodeParse } from '../protocol/frontend/parse.js';
import { SYNC } from '../protocol/frontend/simple.js';
import type { InterceptContext } from '../proxy/interceptor.js';

/** A server error answered to an internal query, shaped like pg's DatabaseError (code + message). */
export class SessionDbError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Text parameter encoding, as node-postgres does it (arrays become array literals). */
export function paramText(v: unknown): Buffer | null {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) return Buffer.from('\\x' + v.toString('hex'), 'utf8');
  if (Array.isArray(v)) return Buffer.from(arrayLiteral(v), 'utf8');
  if (v instanceof Date) return Buffer.from(v.toISOString(), 'utf8');
  if (typeof v === 'object') return Buffer.from(JSON.stringify(v), 'utf8');
  return Buffer.from(String(v), 'utf8');
}

function arrayLiteral(a: unknown[]): string {
  const parts = a.map((x) => {
    if (x === null || x === undefined) return 'NULL';
    if (Array.isArray(x)) return arrayLiteral(x);
    const s = Buffer.isBuffer(x) ? '\\x' + x.toString('hex') : String(x);
    return '"' + s.replace(/[\\"]/g, (c) => '\\' + c) + '"';
  });
  return '{' + parts.join(',') + '}';
}

export class SessionDb implements Db {
  /** `name`: the statement and portal to use ('' = unnamed; else reserved for the proxy). */
  constructor(
    private readonly ctx: InterceptContext,
    private readonly name = '',
  ) {}

  query(sql: string, params: unknown[] = []): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }> {
    return new Promise((resolve, reject) => {
      let cols: string[] = [];
      const rows: Record<string, unknown>[] = [];
      let error: SessionDbError | undefined;
      let rowCount: number | null = null;
      const name = this.name;
      const close = name ? [encodeClose({ kind: 'S', name })] : [];
      const frames = Buffer.concat([
        ...close,
        encodeParse({ name, text: sql, paramTypes: [] }),
        encodeBind({ portal: name, statement: name, paramFormats: [], values: params.map(paramText), resultFormats: [] }),
        encodeDescribe({ kind: 'P', name }),
        encodeExecute({ portal: name, maxRows: 0 }),
        ...close,
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
