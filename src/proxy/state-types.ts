// The records the session state keeps (pending requests, statements, portals,
// row shapes), apart from the state machine that fills them: the encryption and
// metrics layers read them without depending on it.
import type { RowDescription } from '../protocol/backend/row-description.js';

/** Who sent the request: the client, the proxy (`internal`: replies are never forwarded), or a reply the proxy makes up (`synthetic`). */
export type Origin = 'client' | 'internal' | 'synthetic';

export type RequestKind = 'parse' | 'bind' | 'describe' | 'execute' | 'close' | 'sync' | 'query' | 'function-call' | 'synthetic';

/** Receives the server's replies to a message the proxy injected. */
export interface InternalReplyHandler {
  /** Each reply frame (whole). */
  message?(code: number, frame: Buffer, entry: Pending): void;
  /** The entry left the queue: answered, failed, or skipped because an earlier request failed. */
  done?(entry: Pending, outcome: 'ok' | 'error' | 'skipped'): void;
}

export interface StatementInfo {
  text: string;
  /** Types given in Parse (0 = let the server infer). */
  paramTypes: number[];
  /** Types the server resolved (from a Describe of the statement). */
  paramOids?: number[];
  /** From a Describe of the statement: its columns (all format 0), null = returns no rows, undefined = not described. */
  rowDescription?: RowDescription | null;
}

export interface PortalInfo {
  statementName: string;
  /** The statement as it was when the portal was bound. */
  statement?: StatementInfo;
  resultFormats: number[];
  /** From a Describe of the portal (formats included). */
  rowDescription?: RowDescription | null;
}

/** The shape of the rows a DataRow belongs to: columns and the format code of each. */
export interface ResultShape {
  fields: RowDescription;
  formats: number[];
}

export interface Pending {
  kind: RequestKind;
  origin: Origin;
  /** Statement (parse, describe S, close S) or portal (bind, describe P, execute, close P) name. */
  name: string;
  /** describe/close: statement or portal. */
  target?: 'S' | 'P';
  parse?: StatementInfo;
  bind?: { statement: string; resultFormats: number[] };
  maxRows?: number;
  /** COPY in progress for this request (execute/query). */
  copy?: 'in' | 'out' | 'both';
  /** Rows being returned (execute/query), resolved on first use; null = unknown (no Describe seen). */
  shape?: ResultShape | null;
  /** For internal requests. */
  handler?: InternalReplyHandler;
  /** For synthetic entries: frames to give the client when every earlier reply has been forwarded. */
  frames?: Buffer;
  /** How many CopyDone/CopyFail the client had sent before this request (tells which Syncs a COPY swallowed). */
  copyEnds?: number;
}
