// Runs an AdminCommand, whichever door it came through (the proxy's `CMEK ...`
// or the `pgcmek` CLI): checks the caller may, resolves the targets, runs the
// operation column by column, and returns result rows (text) for the proxy to
// send as RowDescription/DataRow (or the CLI to print). Progress and notices go
// to callbacks. Every command leaves one audit log line: who, what, counts and
// duration, never a value.
import { resolveCatalog } from '../catalog/resolve.js';
import type { Db } from '../catalog/db.js';
import type { ResolvedCatalog } from '../catalog/types.js';
import type { Config } from '../config/types.js';
import type { Keyring } from '../crypto/keyring.js';
import { log } from '../log.js';
import { commandText, DEFAULT_BATCH, type AdminCommand } from './command.js';
import { AdminError, SqlState } from './errors.js';
import { displayName, type ColumnTarget, type LeafPlan } from './plan.js';
import type { ProgressFn } from './progress.js';
import { rewriteColumn, type RewriteStats, type RowFailure } from './rewrite.js';
import { searchableKeyFor, type SearchableAccess } from './searchable.js';
import { withScanSettings } from './session.js';
import { columnStatus, STATUS_COLUMNS, statusRow } from './status.js';
import { planTargets } from './targets.js';
import { decryptWork, encryptWork, rotateWork, type RowWork } from './transforms.js';
import { verifyLeaf, type VerifyStats } from './verify.js';

export interface AdminContext {
  db: Db;
  /** Optional second connection for the UPDATEs (reads and writes then overlap). */
  writer?: Db;
  config: Config;
  keyring: Keyring;
  /**
   * Who asks. `role`: a database role through the proxy, checked against
   * config.admin.roles. `operator`: the CLI, whose authority is holding the KEK
   * and the database credentials; recorded in the audit line, not checked.
   */
  principal: { kind: 'role'; name: string } | { kind: 'operator'; name: string };
  /** Reused when the caller has one; otherwise resolved fresh (cheap, and never stale). */
  catalog?: ResolvedCatalog;
  /**
   * The searchable columns' keys (src/searchable SearchableKeys). Needed to backfill
   * or rotate a searchable column; without them those commands are refused.
   */
  searchable?: SearchableAccess;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  onNotice?: (message: string) => void;
}

export interface AdminResult {
  columns: string[];
  rows: string[][];
  /** CommandComplete tag for the proxy. */
  commandTag: string;
  /** Rows that failed (verify: values that did not decrypt); the CLI exits 1 when > 0. */
  failed: number;
  interrupted: boolean;
}

const MAX_REPORTED_FAILURES = 20;

function authorize(cmd: AdminCommand, ctx: AdminContext): void {
  if (ctx.principal.kind !== 'role') return;
  if (!ctx.config.admin.roles.includes(ctx.principal.name)) {
    throw new AdminError(
      SqlState.insufficientPrivilege,
      `permission denied for ${commandText(cmd).split(' ').slice(0, 2).join(' ')}: role "${ctx.principal.name}" is not an admin role`,
      'admin roles are listed in the config file under admin.roles',
    );
  }
}

/**
 * tag | id_len | id of the primary KEK as the backend says now (re-read first: right after a
 * Vault rotation the new version is the primary even if the proxy's timer has not seen it).
 */
async function primaryHeader(keyring: Keyring): Promise<Buffer> {
  await keyring.refreshPrimary();
  const p = keyring.backends().primary;
  const id = p.primaryKekId();
  return Buffer.concat([Buffer.from([p.tag, id.length]), id]);
}

function checkWritable(cmd: AdminCommand, t: ColumnTarget, searchable: SearchableAccess | undefined): void {
  for (const leaf of t.leaves) {
    if (leaf.key.kind === 'pk' && leaf.key.columns.some((c) => c.name === leaf.column)) {
      throw new AdminError(SqlState.featureNotSupported, `${displayName(leaf.schema, leaf.table, leaf.column)} is part of the primary key; an encrypted column cannot be a key`);
    }
  }
  const needsKey = cmd.kind === 'encrypt' || cmd.kind === 'rotate';
  if (needsKey && t.policy.searchable && !searchableKeyFor(searchable, { schema: t.schema, table: t.table, column: t.column })) {
    throw new AdminError(
      SqlState.objectNotInPrerequisiteState,
      `${displayName(t.schema, t.table, t.column)} is searchable: its values must be written with the column's deterministic key, which is not loaded here`,
      'run the command where the searchable keys are loaded (the proxy, or pgcmek with the same config)',
    );
  }
}

function failureNotices(name: string, failures: RowFailure[], total: number, notice: (m: string) => void): void {
  if (total === 0) return;
  const shown = failures.slice(0, MAX_REPORTED_FAILURES).map((f) => `${f.key} (${f.reason})`);
  notice(`${name}: ${total} row(s) failed: ${shown.join('; ')}${total > shown.length ? `; and ${total - shown.length} more` : ''}`);
}

export async function executeAdminCommand(cmd: AdminCommand, ctx: AdminContext): Promise<AdminResult> {
  const started = performance.now();
  const audit = { audit: 'admin', command: commandText(cmd), principal: `${ctx.principal.kind}:${ctx.principal.name}` };
  try {
    authorize(cmd, ctx);
    if (cmd.kind === 'decrypt' && !cmd.confirm && !cmd.dryRun) {
      throw new AdminError(SqlState.syntaxError, 'CMEK DECRYPT EXISTING writes the plaintext back into the database: add CONFIRM to proceed');
    }
    const result = await withScanSettings([ctx.db, ...(ctx.writer ? [ctx.writer] : [])], () => run(cmd, ctx));
    log().info(
      { ...audit, outcome: result.interrupted ? 'interrupted' : 'ok', durationMs: Math.round(performance.now() - started), counts: countsOf(result) },
      'cmek admin command',
    );
    return result;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const sqlstate = err instanceof AdminError ? err.sqlstate : typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : SqlState.internalError;
    log().warn({ ...audit, outcome: 'error', sqlstate, durationMs: Math.round(performance.now() - started) }, 'cmek admin command failed');
    throw err;
  }
}

/** Totals of the numeric result columns, for the audit line (the logger redacts any key named `plaintext`). */
function countsOf(r: AdminResult): Record<string, number> {
  const out: Record<string, number> = {};
  r.columns.forEach((c, i) => {
    if (!r.rows.length || !r.rows.every((row) => /^\d+$/.test(row[i] ?? ''))) return;
    out[c === 'plaintext' ? 'plaintext_count' : c] = r.rows.reduce((n, row) => n + Number(row[i]), 0);
  });
  return out;
}

async function run(cmd: AdminCommand, ctx: AdminContext): Promise<AdminResult> {
  const notice = ctx.onNotice ?? (() => {});
  const catalog = ctx.catalog ?? (await resolveCatalog(ctx.db, ctx.config.encrypted));
  const planned = await planTargets(ctx.db, ctx.config.encrypted, catalog, cmd.targets);
  for (const n of planned.notices) notice(n);
  if (cmd.kind === 'status') return runStatus(planned.targets, ctx);
  if (cmd.kind === 'verify') return runVerify(planned.targets, ctx, notice);
  return runRewrite(cmd, planned.targets, ctx, notice);
}

async function runStatus(targets: ColumnTarget[], ctx: AdminContext): Promise<AdminResult> {
  const rows: string[][] = [];
  for (const t of targets) rows.push(statusRow(await columnStatus(ctx.db, t, ctx.keyring)));
  return { columns: STATUS_COLUMNS, rows, commandTag: `SELECT ${rows.length}`, failed: 0, interrupted: false };
}

/** Each leaf table of each target, in order, until one reports an interruption. */
async function eachLeaf(targets: ColumnTarget[], fn: (leaf: LeafPlan, name: string) => Promise<boolean>): Promise<boolean> {
  for (const t of targets) {
    for (const leaf of t.leaves) {
      if (await fn(leaf, displayName(leaf.schema, leaf.table, leaf.column))) return true;
    }
  }
  return false;
}

function scanOptions(ctx: AdminContext, batch: number, label: string) {
  return { batch, label, ...(ctx.signal && { signal: ctx.signal }), ...(ctx.onProgress && { onProgress: ctx.onProgress }) };
}

async function runVerify(targets: ColumnTarget[], ctx: AdminContext, notice: (m: string) => void): Promise<AdminResult> {
  const rows: string[][] = [];
  let failed = 0;
  // Reads only, and decrypting is cheap with warm DEKs: bigger batches.
  const batch = DEFAULT_BATCH * 4;
  const interrupted = await eachLeaf(targets, async (leaf, name) => {
    const st: VerifyStats = await verifyLeaf(ctx.db, leaf, ctx.keyring, scanOptions(ctx, batch, name));
    failed += st.failed;
    failureNotices(name, st.failures, st.failed, notice);
    const keys = st.failures.slice(0, MAX_REPORTED_FAILURES).map((f) => f.key).join('; ');
    rows.push([displayName(leaf.schema, leaf.table), leaf.column, ...[st.rows, st.values, st.ok, st.failed].map(String), keys]);
    return st.interrupted;
  });
  return { columns: ['table', 'column', 'rows', 'values', 'ok', 'failed', 'failed_keys'], rows, commandTag: `SELECT ${rows.length}`, failed, interrupted };
}

type RewriteCommand = Extract<AdminCommand, { kind: 'encrypt' | 'rotate' | 'decrypt' }>;

async function runRewrite(cmd: RewriteCommand, targets: ColumnTarget[], ctx: AdminContext, notice: (m: string) => void): Promise<AdminResult> {
  for (const t of targets) checkWritable(cmd, t, ctx.searchable);
  const header = cmd.kind === 'rotate' ? await primaryHeader(ctx.keyring) : undefined;
  const workFor = (leaf: LeafPlan): RowWork => {
    const key = leaf.policy.searchable ? searchableKeyFor(ctx.searchable, { ...leaf.source, column: leaf.column }) : undefined;
    if (cmd.kind === 'encrypt') return encryptWork(leaf, ctx.keyring, key);
    if (cmd.kind === 'rotate') return rotateWork(leaf, ctx.keyring, header!, key);
    return decryptWork(leaf, ctx.keyring);
  };
  const verb = { encrypt: 'encrypted', rotate: 'rewrapped', decrypt: 'decrypted' }[cmd.kind];
  const found = { encrypt: 'plaintext_rows', rotate: 'rows_to_rewrap', decrypt: 'encrypted_rows' }[cmd.kind];
  const columns = ['table', 'column', 'key', found, cmd.dryRun ? `would_be_${verb}` : verb, 'skipped_concurrent', 'failed', 'seconds'];
  const rows: string[][] = [];
  let failed = 0;
  const interrupted = await eachLeaf(targets, async (leaf, name) => {
    const work = workFor(leaf);
    const st: RewriteStats = await rewriteColumn(ctx.db, leaf, work.filter, work.transform, {
      ...scanOptions(ctx, cmd.batch ?? DEFAULT_BATCH, name),
      dryRun: cmd.dryRun,
      ...(ctx.writer && { writer: ctx.writer }),
    });
    failed += st.failed;
    failureNotices(name, st.failures, st.failed, notice);
    const key = leaf.key.kind === 'ctid' ? 'ctid' : leaf.key.columns.map((c) => c.name).join(', ');
    rows.push([displayName(leaf.schema, leaf.table), leaf.column, key, ...[st.found, st.changed, st.skippedConcurrent, st.failed].map(String), st.seconds.toFixed(1)]);
    return st.interrupted;
  });
  if (interrupted) notice('interrupted: the rows written so far are kept; run the same command again to continue');
  return { columns, rows, commandTag: `SELECT ${rows.length}`, failed, interrupted };
}
