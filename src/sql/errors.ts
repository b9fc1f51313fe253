// Refusals raised while analysing a statement. Analysis stops at the first one:
// the whole message is refused (a simple Query cannot be forwarded in part).
// Messages name schema.table.column and the reason, never a value.
import type { ColumnTarget, RejectReason, SqlRejection } from './types.js';

export const SQLSTATE = {
  featureNotSupported: '0A000',
  syntaxError: '42601',
  characterNotInRepertoire: '22021',
  internalError: 'XX000',
} as const;

/** Thrown inside the analysis; converted to a RejectPlan at the top. */
export class Refusal extends Error {
  constructor(
    readonly rejection: SqlRejection,
    /** Byte offset the refusal points at (converted to a character position later). */
    readonly location?: number,
  ) {
    super(rejection.message);
    this.name = 'Refusal';
  }
}

export function qualified(t: { schema: string; table: string; column?: string }): string {
  return t.column === undefined ? `${t.schema}.${t.table}` : `${t.schema}.${t.table}.${t.column}`;
}

export function refuse(
  reason: RejectReason,
  message: string,
  opts: { target?: ColumnTarget; table?: { schema: string; table: string }; hint?: string; location?: number; code?: string } = {},
): never {
  const t = opts.target ?? opts.table;
  const rejection: SqlRejection = {
    code: opts.code ?? SQLSTATE.featureNotSupported,
    reason,
    message: `pgcmek: ${message}`,
  };
  if (opts.hint) rejection.hint = opts.hint;
  if (t) rejection.table = `${t.schema}.${t.table}`;
  if (opts.target) rejection.column = opts.target.column;
  throw new Refusal(rejection, opts.location !== undefined && opts.location >= 0 ? opts.location : undefined);
}

/** The usual hint for values the proxy cannot encrypt. */
export const HINT_SEND_VALUE =
  'Send the value itself as a bind parameter or a string literal so the proxy can encrypt it, or copy it from an encrypted column with the same policy.';
