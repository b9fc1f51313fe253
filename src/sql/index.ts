// SQL statement analysis for transparent encryption (see docs/SQL_ANALYSIS.md).
//
// For each Query/Parse message the proxy asks a SqlSession for a plan:
//   admin       – `CMEK …` admin command, not SQL (parsed elsewhere);
//   passthrough – no configured table involved (most traffic: decided by a
//                 case-insensitive substring prefilter, without parsing);
//   plan        – Bind parameters and string literals to encrypt (with byte
//                 ranges into the message), comparisons on searchable columns,
//                 COPY plans, touched tables, DDL flag;
//   reject      – an ErrorResponse to send instead of forwarding: the proxy
//                 cannot encrypt a value bound for an encrypted column, or a
//                 comparison on ciphertext would silently return wrong rows.
// Analyses are pure, synchronous, and cached by statement text; plans are
// shared between sessions and must not be mutated.
import { loadModule } from 'libpg-query';

export { SqlAnalyzer, type SqlAnalyzerOptions } from './analyzer.js';
export { SqlSession } from './session.js';
export { buildPolicyIndex, type PolicyIndex } from './policy.js';
export { spliceLiterals, quoteLiteral, adminCommand } from './lexical.js';
export type * from './types.js';

let ready: Promise<void> | undefined;

/** Load the WASM parser once; call (and await) at startup before analysing. */
export function initSql(): Promise<void> {
  ready ??= loadModule();
  return ready;
}
