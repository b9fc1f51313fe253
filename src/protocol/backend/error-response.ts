// ErrorResponse ('E') and NoticeResponse ('N') from a server: a list of
// (field-type byte, string) pairs ended by a zero byte. The proxy builds its own
// errors with the named constructors below so every error a client sees carries
// a real SQLSTATE, the way Postgres itself would report it.
import { BackendCode } from '../codes.js';
import { BufferReader } from '../buffer-reader.js';
import { BufferWriter } from '../buffer-writer.js';
import { ProtocolError } from '../errors.js';

/** Field-type bytes of ErrorResponse/NoticeResponse. */
export const ErrorField = {
  Severity: 0x53, // S (localised)
  SeverityV: 0x56, // V (never localised)
  Code: 0x43, // C
  Message: 0x4d, // M
  Detail: 0x44, // D
  Hint: 0x48, // H
  Position: 0x50, // P
  InternalPosition: 0x70, // p
  InternalQuery: 0x71, // q
  Where: 0x57, // W
  Schema: 0x73, // s
  Table: 0x74, // t
  Column: 0x63, // c
  DataType: 0x64, // d
  Constraint: 0x6e, // n
  File: 0x46, // F
  Line: 0x4c, // L
  Routine: 0x52, // R
} as const;

export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';

export interface ErrorFields {
  severity: Severity;
  /** Five-character SQLSTATE. */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  /** Any other fields, keyed by their type byte. */
  other?: Map<number, string>;
}

/** Decodes the body of an ErrorResponse or NoticeResponse (the bytes after the length). */
export function decodeErrorFields(body: Buffer): ErrorFields {
  const r = new BufferReader(body);
  const f: ErrorFields = { severity: 'ERROR', code: '', message: '' };
  let severityV: string | undefined;
  for (;;) {
    const t = r.byte();
    if (t === 0) break;
    const v = r.cstring();
    switch (t) {
      case ErrorField.Severity:
        f.severity = v as Severity;
        break;
      case ErrorField.SeverityV:
        severityV = v;
        break;
      case ErrorField.Code:
        f.code = v;
        break;
      case ErrorField.Message:
        f.message = v;
        break;
      case ErrorField.Detail:
        f.detail = v;
        break;
      case ErrorField.Hint:
        f.hint = v;
        break;
      default:
        (f.other ??= new Map()).set(t, v);
    }
  }
  r.done('ErrorResponse');
  if (severityV) f.severity = severityV as Severity;
  return f;
}

function encodeFields(code: number, f: ErrorFields): Buffer {
  if (!/^[0-9A-Z]{5}$/.test(f.code)) throw new ProtocolError('PROTO_SQLSTATE', `invalid SQLSTATE ${f.code}`);
  const w = new BufferWriter(64 + f.message.length).begin(code);
  w.byte(ErrorField.Severity).cstring(f.severity);
  w.byte(ErrorField.SeverityV).cstring(f.severity);
  w.byte(ErrorField.Code).cstring(f.code);
  w.byte(ErrorField.Message).cstring(f.message);
  if (f.detail !== undefined) w.byte(ErrorField.Detail).cstring(f.detail);
  if (f.hint !== undefined) w.byte(ErrorField.Hint).cstring(f.hint);
  if (f.other) for (const [t, v] of f.other) w.byte(t).cstring(v);
  return w.byte(0).end().finish();
}

/** A whole ErrorResponse frame. */
export function encodeErrorResponse(f: ErrorFields): Buffer {
  return encodeFields(BackendCode.ErrorResponse, f);
}

/** A whole NoticeResponse frame. */
export function encodeNoticeResponse(f: ErrorFields): Buffer {
  return encodeFields(BackendCode.NoticeResponse, f);
}

/** SQLSTATEs the proxy itself reports (Postgres errcodes.txt names). */
export const SqlState = {
  ProtocolViolation: '08P01',
  ConnectionFailure: '08006',
  SqlclientUnableToEstablishSqlconnection: '08001',
  AdminShutdown: '57P01',
  TooManyConnections: '53300',
  FeatureNotSupported: '0A000',
  InternalError: 'XX000',
  InvalidAuthorizationSpecification: '28000',
} as const;

/** FATAL 08P01: the client broke the protocol; the session ends. */
export function protocolViolation(message: string): Buffer {
  return encodeErrorResponse({ severity: 'FATAL', code: SqlState.ProtocolViolation, message });
}

/** FATAL 08006: the connection to the server failed or was lost. */
export function connectionFailure(message: string): Buffer {
  return encodeErrorResponse({ severity: 'FATAL', code: SqlState.ConnectionFailure, message });
}

/** FATAL 08001: the proxy could not establish the server connection at all. */
export function unableToConnect(message: string): Buffer {
  return encodeErrorResponse({ severity: 'FATAL', code: SqlState.SqlclientUnableToEstablishSqlconnection, message });
}

/** FATAL 57P01: the proxy is shutting down. */
export function adminShutdown(message = 'terminating connection due to administrator command'): Buffer {
  return encodeErrorResponse({ severity: 'FATAL', code: SqlState.AdminShutdown, message });
}

/** FATAL 53300: no more sessions accepted. */
export function tooManyConnections(message = 'sorry, too many clients already'): Buffer {
  return encodeErrorResponse({ severity: 'FATAL', code: SqlState.TooManyConnections, message });
}

/** FATAL XX000: the proxy itself failed (a bug or an interceptor error); the session ends. */
export function internalError(message: string): Buffer {
  return encodeErrorResponse({ severity: 'FATAL', code: SqlState.InternalError, message });
}

/** ERROR 0A000: something the proxy does not support. */
export function featureNotSupported(message: string, severity: Severity = 'ERROR'): Buffer {
  return encodeErrorResponse({ severity, code: SqlState.FeatureNotSupported, message });
}
