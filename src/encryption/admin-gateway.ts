// How a proxy session hands a `CMEK …` admin command to the admin layer. The
// command runs on its own connection (admin work must not share the client's
// transaction); the session relays NOTICE progress and the result rows.
import type { SessionInfo } from '../proxy/interceptor.js';

export interface AdminReply {
  /** Column names of the result (empty: a command with no rows, just a tag). */
  columns: string[];
  rows: (string | null)[][];
  /** CommandComplete tag, e.g. `CMEK STATUS`. */
  tag: string;
}

export interface AdminError {
  sqlstate: string;
  message: string;
  hint?: string;
}

export interface AdminGateway {
  /** Runs one command; `notice` relays progress lines. Rejects with an AdminError-shaped error. */
  run(info: SessionInfo, text: string, notice: (message: string) => void): Promise<AdminReply>;
}
