// Errors of the admin commands, each with the SQLSTATE the proxy sends in its
// ErrorResponse (the CLI prints the message and exits 1, or 2 for usage).

export const SqlState = {
  syntaxError: '42601',
  insufficientPrivilege: '42501',
  undefinedTable: '42P01',
  undefinedColumn: '42703',
  ambiguous: '42702',
  featureNotSupported: '0A000',
  invalidParameter: '22023',
  objectNotInPrerequisiteState: '55000',
  queryCanceled: '57014',
  internalError: 'XX000',
} as const;

export class AdminError extends Error {
  override readonly name = 'AdminError';
  constructor(
    readonly sqlstate: string,
    message: string,
    /** Extra sentence for the ErrorResponse's hint field. */
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** A command text that does not parse; `position` is 1-based (the ErrorResponse P field). */
export class AdminParseError extends AdminError {
  constructor(
    message: string,
    readonly position: number,
    hint?: string,
  ) {
    super(SqlState.syntaxError, message, hint);
  }
}
