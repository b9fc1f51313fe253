// `pgcmek backfill | rotate-kek | status | verify | decrypt-existing`: the admin
// commands run from a shell against a database URL. They build the same
// AdminCommand the proxy parses from `CMEK ...` and run the same executor, over
// two pg connections (one reads the next batch while the other writes). Results
// print as a table on stdout (or JSON with --json); progress goes to stderr as
// a bar on a terminal and as plain lines otherwise; the audit log line too.
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig, parseConfig } from '../config/load.js';
import type { Env } from '../config/env.js';
import type { Config } from '../config/types.js';
import { createLogger, setLogger } from '../log.js';
import { DEFAULT_BATCH, MAX_BATCH, type AdminCommand, type TargetName } from './command.js';
import { AdminError } from './errors.js';
import { executeAdminCommand, type AdminResult } from './executor.js';
import { parseTargetName } from './parse.js';
import { openKeys, type CliKeys } from './cli-keys.js';
import { formatTable, progressPrinter } from './cli-output.js';

export interface AdminCliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: Env;
  signals: { on(s: 'SIGINT' | 'SIGTERM', f: () => void): unknown; off(s: 'SIGINT' | 'SIGTERM', f: () => void): unknown };
}

class UsageError extends Error {}

interface Spec {
  usage: string;
  about: string;
  options: Record<string, { type: 'string' | 'boolean'; short?: string; help: string; multiple?: boolean }>;
}

const COMMON: Spec['options'] = {
  config: { type: 'string', short: 'c', help: 'config file: the encrypted columns and the KEK (default: the VIGILO_CMEK_* environment)' },
  'database-url': { type: 'string', short: 'd', help: 'postgres://... (default: DATABASE_URL, else the PG* variables)' },
  json: { type: 'boolean', help: 'print the result as JSON instead of a table' },
  quiet: { type: 'boolean', short: 'q', help: 'no progress output' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
};
const BATCH = { type: 'string', help: `rows per batch (default ${DEFAULT_BATCH})` } as const;
const DRY = { type: 'boolean', help: 'report what would change; change nothing' } as const;

const SPECS: Record<string, Spec> = {
  backfill: {
    usage: 'pgcmek backfill [TARGET...] [--batch N] [--dry-run]',
    about: 'Encrypts the plaintext already stored in the configured columns (CMEK ENCRYPT EXISTING). No TARGET: every configured column. Safe to interrupt and re-run.',
    options: { batch: BATCH, 'dry-run': DRY },
  },
  'rotate-kek': {
    usage: 'pgcmek rotate-kek [TARGET...] [--old-path OLD --new-path NEW] [--batch N] [--dry-run]',
    about:
      'Re-wraps every stored DEK not wrapped by the primary KEK under it (CMEK ROTATE KEK); the ciphertexts are not touched. ' +
      'With --old-path/--new-path (local backend): NEW becomes the primary KEK and OLD stays readable.',
    options: {
      'old-path': { type: 'string', help: 'the KEK file values are wrapped under now' },
      'new-path': { type: 'string', help: 'the KEK file to wrap them under (create one with pgcmek keygen)' },
      batch: BATCH,
      'dry-run': DRY,
    },
  },
  status: {
    usage: 'pgcmek status [TARGET...]',
    about: 'Counts encrypted, plaintext, empty and NULL values per configured column, and the KEKs in use (CMEK STATUS).',
    options: {},
  },
  verify: {
    usage: 'pgcmek verify [TARGET...]',
    about: 'Decrypts every stored envelope and reports the keys of rows that fail (CMEK VERIFY). Exit code 1 if any does.',
    options: {},
  },
  'decrypt-existing': {
    usage: 'pgcmek decrypt-existing {TARGET... | --all} --confirm [--batch N] [--dry-run]',
    about: 'Writes the plaintext back (CMEK DECRYPT EXISTING): the way out of pgcmek. Refuses without --confirm.',
    options: {
      all: { type: 'boolean', help: 'every configured column' },
      confirm: { type: 'boolean', help: 'yes, write plaintext back into the database' },
      batch: BATCH,
      'dry-run': DRY,
    },
  },
};

function help(name: string, s: Spec): string {
  const opts = Object.entries({ ...s.options, ...COMMON }).map(([k, o]) => `  ${(o.short ? `-${o.short}, ` : '    ') + `--${k}`}`.padEnd(24) + ` ${o.help}`);
  return `Usage: ${s.usage}\n\n${s.about}\n\nTARGET is [schema.]table[.column] (SQL case rules: quote to keep capitals).\n\nOptions:\n${opts.join('\n')}\n`;
}

function targetsOf(positionals: string[]): TargetName[] {
  return positionals.map((p) => {
    const t = parseTargetName(p);
    if (t instanceof AdminError) throw new UsageError(`bad TARGET "${p}": ${t.message}`);
    return t;
  });
}

function batchOf(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_BATCH) throw new UsageError(`--batch must be a whole number between 1 and ${MAX_BATCH}`);
  return n;
}

function buildCommand(name: string, values: Record<string, unknown>, positionals: string[]): AdminCommand {
  const targets = targetsOf(positionals);
  const dryRun = values['dry-run'] === true;
  const batch = batchOf(values.batch);
  const opt = batch ? { batch } : {};
  switch (name) {
    case 'backfill':
      return { kind: 'encrypt', targets: targets.length ? targets : 'all', dryRun, ...opt };
    case 'rotate-kek':
      return { kind: 'rotate', targets: targets.length ? targets : 'all', dryRun, ...opt };
    case 'status':
      return { kind: 'status', targets };
    case 'verify':
      return { kind: 'verify', targets };
    default: {
      if (!targets.length && values.all !== true) throw new UsageError('name the columns to decrypt (TARGET...) or pass --all');
      if (targets.length && values.all === true) throw new UsageError('give TARGETs or --all, not both');
      if (values.confirm !== true && !dryRun) throw new UsageError('decrypt-existing writes plaintext back into the database: add --confirm (or try --dry-run first)');
      return { kind: 'decrypt', targets: values.all === true ? 'all' : targets, dryRun, confirm: values.confirm === true, ...opt };
    }
  }
}

function configOf(values: Record<string, unknown>, env: Env): Config {
  const config = typeof values.config === 'string' ? loadConfig(values.config, env) : parseConfig('', 'environment', env);
  const oldPath = values['old-path'];
  const newPath = values['new-path'];
  if ((oldPath === undefined) !== (newPath === undefined)) throw new UsageError('--old-path and --new-path go together');
  if (typeof oldPath === 'string' && typeof newPath === 'string') {
    // The original tool's shape: NEW wraps from now on, OLD (and any configured previous KEK) stays readable.
    const previous = [oldPath, ...config.kek.local.previous, ...(config.kek.local.path ? [config.kek.local.path] : [])].filter((p) => p !== newPath);
    config.kek = { ...config.kek, backend: 'local', local: { path: newPath, previous: [...new Set(previous)] } };
  }
  return config;
}

function clientConfig(values: Record<string, unknown>, env: Env): pg.ClientConfig {
  const url = (values['database-url'] as string | undefined) ?? env.DATABASE_URL;
  // Without a URL, pg reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE.
  return { ...(url ? { connectionString: url } : {}), application_name: 'pgcmek-admin' };
}

const defaultIo = (): AdminCliIo => ({ stdout: process.stdout, stderr: process.stderr, env: process.env, signals: process });

/** Runs `pgcmek <command> ...` for backfill|rotate-kek|status|verify|decrypt-existing; returns the exit code. */
export async function runAdminCli(command: string, argv: string[], io: AdminCliIo = defaultIo()): Promise<number> {
  const spec = SPECS[command];
  const say = (s: string) => new Promise<void>((r) => io.stderr.write(s, () => r()));
  if (!spec) {
    await say(`pgcmek: unknown admin command '${command}'\n`);
    return 2;
  }
  let values: Record<string, unknown>;
  let positionals: string[];
  let cmd: AdminCommand;
  let config: Config;
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: { ...spec.options, ...COMMON }, strict: true, allowPositionals: true }));
    if (values.help) {
      io.stdout.write(help(command, spec));
      return 0;
    }
    cmd = buildCommand(command, values, positionals);
    config = configOf(values, io.env);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      await say(`pgcmek ${command}: ${(err as Error).message.split('. ')[0]} (see pgcmek ${command} --help)\n`);
      return 2;
    }
    await say(`pgcmek ${command}: ${(err as Error).message}\n`);
    return 1;
  }

  // Logs (the audit line among them) go to stderr: stdout carries the result.
  setLogger(createLogger(io.env.PGCMEK_LOG_LEVEL ?? config.log.level, pino.destination({ fd: 2, sync: true })));
  const ac = new AbortController();
  let signalled = 0;
  const onSignal = () => {
    if (++signalled > 1) process.exit(130);
    ac.abort();
    void say(`\npgcmek ${command}: stopping after the current batch (press Ctrl-C again to quit now)\n`);
  };
  io.signals.on('SIGINT', onSignal);
  io.signals.on('SIGTERM', onSignal);
  const clients: pg.Client[] = [];
  let keys: CliKeys | undefined;
  const progress = values.quiet ? undefined : progressPrinter(io.stderr);
  try {
    const writesData = (cmd.kind === 'encrypt' || cmd.kind === 'rotate' || cmd.kind === 'decrypt') && !cmd.dryRun;
    for (let i = 0; i < (writesData ? 2 : 1); i++) {
      const c = new pg.Client(clientConfig(values, io.env));
      clients.push(c);
      await c.connect();
    }
    keys = await openKeys(config, cmd, clients[0]);
    const who = await clients[0].query('SELECT current_user AS u');
    const result: AdminResult = await executeAdminCommand(cmd, {
      db: clients[0],
      ...(clients[1] && { writer: clients[1] }),
      config,
      keyring: keys.keyring,
      ...(keys.searchable && { searchable: keys.searchable }),
      principal: { kind: 'operator', name: `${safeUser()} as ${String(who.rows[0].u)}` },
      signal: ac.signal,
      onNotice: (m) => {
        progress?.clear();
        io.stderr.write(`NOTICE: ${m}\n`);
      },
      ...(progress && { onProgress: progress.update }),
    });
    progress?.done();
    io.stdout.write(values.json ? JSON.stringify(result.rows.map((r) => Object.fromEntries(result.columns.map((c, i) => [c, r[i]])))) + '\n' : formatTable(result.columns, result.rows));
    if (result.interrupted) {
      await say(`pgcmek ${command}: interrupted; what was written is kept: run the same command again to continue\n`);
      return 1;
    }
    if (result.failed > 0) {
      await say(`pgcmek ${command}: ${result.failed} value(s) failed (see the NOTICE lines)\n`);
      return 1;
    }
    return 0;
  } catch (err) {
    progress?.clear();
    const e = err as Error & { code?: string; hint?: string };
    const code = err instanceof AdminError ? ` [${err.sqlstate}]` : e.code && /^[0-9A-Z]{5}$/.test(e.code) ? ` [${e.code}]` : '';
    await say(`pgcmek ${command}: ${e.message}${code}${e.hint ? `\nHINT: ${e.hint}` : ''}\n`);
    return 1;
  } finally {
    io.signals.off('SIGINT', onSignal);
    io.signals.off('SIGTERM', onSignal);
    await keys?.close();
    await Promise.allSettled(clients.map((c) => c.end()));
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}
