// The admin commands' public surface. The proxy: isAdminCommandText() on a
// simple Query, parseAdminCommand() (an AdminParseError -> ErrorResponse 42601 with
// its position), executeAdminCommand() with the session's role as principal,
// then RowDescription/DataRow from AdminResult.columns/rows (all text),
// CommandComplete with commandTag, NOTICEs from onNotice/onProgress, and an
// AdminError's sqlstate/message/hint as the ErrorResponse. json-paths.ts is
// shared with the proxy's rewriting of json/jsonb values.
export { commandText, DEFAULT_BATCH, MAX_BATCH, type AdminCommand, type AdminCommandKind, type TargetName, type Targets } from './command.js';
export { AdminError, AdminParseError, SqlState } from './errors.js';
export { executeAdminCommand, type AdminContext, type AdminResult } from './executor.js';
export { isAdminCommandText, parseAdminCommand, parseTargetName } from './parse.js';
export type { ProgressFn } from './progress.js';
export {
  decryptPaths,
  decryptPathsSync,
  encryptPaths,
  encryptPathsSync,
  ENVELOPE_PREFIX,
  findPathStrings,
  JsonPathError,
  mapPaths,
  mapPathsSync,
  unwrapJsonString,
  wrapJsonString,
  type EncryptPathOptions,
  type PathString,
} from './json-paths.js';
export { runAdminCli } from './cli.js';
