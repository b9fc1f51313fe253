// Message type bytes, one table per direction: the same letter means different
// things from a client and from a server ('D' is Describe from a client and
// DataRow from a server), so code never compares a byte without knowing its side.

/** Type bytes of messages a client (frontend) sends. */
export const FrontendCode = {
  Bind: 0x42, // B
  Close: 0x43, // C
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  Describe: 0x44, // D
  Execute: 0x45, // E
  Flush: 0x48, // H
  FunctionCall: 0x46, // F
  Parse: 0x50, // P
  /** PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse share 'p'. */
  Password: 0x70, // p
  Query: 0x51, // Q
  Sync: 0x53, // S
  Terminate: 0x58, // X
} as const;
export type FrontendCodeValue = (typeof FrontendCode)[keyof typeof FrontendCode];

/** Type bytes of messages a server (backend) sends. */
export const BackendCode = {
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  CommandComplete: 0x43, // C
  CopyBothResponse: 0x57, // W
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  DataRow: 0x44, // D
  EmptyQueryResponse: 0x49, // I
  ErrorResponse: 0x45, // E
  FunctionCallResponse: 0x56, // V
  NegotiateProtocolVersion: 0x76, // v
  NoData: 0x6e, // n
  NoticeResponse: 0x4e, // N
  NotificationResponse: 0x41, // A
  ParameterDescription: 0x74, // t
  ParameterStatus: 0x53, // S
  ParseComplete: 0x31, // 1
  PortalSuspended: 0x73, // s
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
} as const;
export type BackendCodeValue = (typeof BackendCode)[keyof typeof BackendCode];

/** The int32 that follows the length in the untyped first packet of a connection. */
export const StartupCode = {
  /** Protocol 3.0 StartupMessage (major 3 << 16 | minor 0). */
  Protocol30: 196608,
  /** Protocol 3.2 (Postgres 18 clients): variable-length cancel keys. */
  Protocol32: 196610,
  CancelRequest: 80877102,
  SSLRequest: 80877103,
  GSSENCRequest: 80877104,
} as const;

/** Sub-codes of the Authentication ('R') message. */
export const AuthCode = {
  Ok: 0,
  KerberosV5: 2,
  CleartextPassword: 3,
  MD5Password: 5,
  GSS: 7,
  GSSContinue: 8,
  SSPI: 9,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

/** Transaction status byte of ReadyForQuery. */
export const TxStatus = {
  Idle: 0x49, // I
  InTransaction: 0x54, // T
  Failed: 0x45, // E
} as const;

/** A printable name for a type byte, for logs and errors. */
export function codeName(code: number, side: 'frontend' | 'backend'): string {
  const table: Record<string, number> = side === 'frontend' ? FrontendCode : BackendCode;
  for (const k in table) if (table[k] === code) return k;
  return `0x${code.toString(16).padStart(2, '0')}`;
}
