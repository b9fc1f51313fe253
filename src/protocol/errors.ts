// Errors raised while reading or writing protocol bytes. A ProtocolError means the
// peer sent something malformed; the session answers it with SQLSTATE 08P01.

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  /** Stable code for logs and tests. */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}
