// Refusing a statement without lying about the session. The proxy never forwards
// a statement it cannot encrypt; instead it asks the *server* to raise the error,
// with a DO block, so the server's transaction state matches what the client is
// told (an explicit transaction becomes aborted, an implicit one rolls back).
import type { SqlRejection } from '../sql/types.js';
import { KekConfigError } from '../crypto/errors.js';
import { RemoteKekError } from '../crypto/kek/retry.js';
import { SearchableKeyError } from '../searchable/types.js';
import { BindCountError, ParamError } from './params.js';
import { ValueFormatError } from './values.js';
import { RewriteError } from './searchable-sql.js';
import { encodeErrorResponse, type ErrorFields } from '../protocol/backend/error-response.js';
import { encodeParse } from '../protocol/frontend/parse.js';
import { encodeBind } from '../protocol/frontend/bind.js';
import { encodeExecute } from '../protocol/frontend/execute.js';

/** Our custom SQLSTATE for a value that cannot be decrypted (class XX: internal error). */
export const SQLSTATE_DECRYPT_FAILED = 'XX001';

function dollarQuote(s: string): string {
  let tag = 'pgcmek';
  while (s.includes(`$${tag}$`)) tag += '_';
  return `$${tag}$${s}$${tag}$`;
}

/** `DO $$ BEGIN RAISE EXCEPTION USING ... END $$` raising exactly this rejection. */
export function raiseStatement(e: SqlRejection): string {
  const lit = (s: string) => "'" + s.replace(/'/g, "''") + "'";
  const opts = [`ERRCODE = ${lit(e.code)}`, `MESSAGE = ${lit(e.message)}`];
  if (e.hint) opts.push(`HINT = ${lit(e.hint)}`);
  if (e.table) opts.push(`TABLE = ${lit(e.table)}`);
  if (e.column) opts.push(`COLUMN = ${lit(e.column)}`);
  return `DO ${dollarQuote(`BEGIN RAISE EXCEPTION USING ${opts.join(', ')}; END`)}`;
}

/** Parse/Bind/Execute of the raise statement on the unnamed statement and portal. */
export function raiseFrames(e: SqlRejection): Buffer {
  return Buffer.concat([
    encodeParse({ name: '', text: raiseStatement(e), paramTypes: [] }),
    encodeBind({ portal: '', statement: '', paramFormats: [], values: [], resultFormats: [] }),
    encodeExecute({ portal: '', maxRows: 0 }),
  ]);
}

/** An ErrorResponse the proxy itself sends (when the server cannot be asked to raise it). */
export function errorFrame(e: { code: string; message: string; hint?: string; table?: string; column?: string }): Buffer {
  const f: ErrorFields = { severity: 'ERROR', code: e.code, message: e.message };
  if (e.hint) f.hint = e.hint;
  const other = new Map<number, string>();
  if (e.table) other.set(0x74 /* t */, e.table);
  if (e.column) other.set(0x63 /* c */, e.column);
  if (other.size) f.other = other;
  return encodeErrorResponse(f);
}

/** A write that could not be encrypted: refused with a SQLSTATE, never forwarded as plaintext. */
export function writeFailure(e: unknown): SqlRejection {
  if (e instanceof SearchableKeyError) return { code: e.sqlstate, reason: 'internal', message: e.message.startsWith('pgcmek:') ? e.message : `pgcmek: ${e.message}` };
  if (e instanceof RewriteError) return { code: '0A000', reason: 'unsupported_operator', message: `pgcmek: a comparison on a searchable column cannot be rewritten (${e.message})` };
  if (e instanceof BindCountError) return { code: '08P01', reason: 'internal', message: e.message };
  if (e instanceof ParamError) {
    return { code: '22P02', reason: 'unencryptable_value', message: e.message, table: `${e.target.schema}.${e.target.table}`, column: e.target.column };
  }
  // Named by its column where it was raised (formatError); this is the last resort.
  if (e instanceof ValueFormatError) return { code: '22P02', reason: 'unencryptable_value', message: `pgcmek: ${e.message}` };
  if (e instanceof RemoteKekError || e instanceof KekConfigError) {
    return { code: '58030', reason: 'internal', message: `pgcmek: cannot encrypt: ${e.message}` };
  }
  const msg = e instanceof Error ? e.message : String(e);
  return { code: 'XX000', reason: 'internal', message: `pgcmek: cannot encrypt: ${msg}` };
}
