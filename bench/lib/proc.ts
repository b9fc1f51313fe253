// Process management for benchmarks: every child a benchmark spawns, and every
// cleanup step it registers (stop a cluster, remove a temp dir), is undone on
// normal exit, on an error and on SIGINT/SIGTERM, so a bench never leaves a
// Postgres or a PgBouncer running behind it.
//
//   await runMain(async () => {
//     const pg = await startCluster();  onCleanup(() => pg.stop());
//     const p = start('pgbouncer', '/usr/sbin/pgbouncer', [ini], { uid, gid });
//     const r = await exec('pgbench', ['-S', ...]);        // killed too if interrupted
//   });
import { spawn, type SpawnOptions, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Settles when the process has exited (never rejects). */
  exited: Promise<ExitInfo>;
  /** The last 64 KiB of stdout+stderr, for error messages. */
  output(): string;
  /** Sends `signal`, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<ExitInfo>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  uid?: number;
  gid?: number;
  /** Called per chunk of output (stdout and stderr). */
  onOutput?: (chunk: string) => void;
}

const live = new Set<Proc>();
/** exec()'d commands (pgbench runs): stopped first, before the servers they talk to. */
const transient = new Set<Proc>();
const cleanups: Array<() => unknown> = [];

/** Spawns a long-running child and tracks it until it exits. */
export function start(name: string, cmd: string, args: string[], opts: StartOptions = {}): Proc {
  const spawnOpts: SpawnOptions = { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] };
  if (opts.uid !== undefined) spawnOpts.uid = opts.uid;
  if (opts.gid !== undefined) spawnOpts.gid = opts.gid;
  const child = spawn(cmd, args, spawnOpts);
  let out = '';
  const keep = (d: Buffer): void => {
    const s = d.toString();
    out = (out + s).slice(-65_536);
    opts.onOutput?.(s);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => {
      out += `\n${name}: ${err.message}`;
      resolve({ code: -1, signal: null });
    });
  });
  const proc: Proc = {
    name,
    child,
    pid: child.pid ?? -1,
    exited,
    output: () => out,
    stop: async (signal = 'SIGTERM', graceMs = 10_000) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const r = await exited;
        clearTimeout(t);
        return r;
      }
      return exited;
    },
  };
  live.add(proc);
  void exited.then(() => live.delete(proc));
  return proc;
}

export interface ExecResult extends ExitInfo {
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion and collects its output; tracked like `start` while it runs. */
export async function exec(cmd: string, args: string[], opts: StartOptions & { input?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
  const spawnOpts: SpawnOptions = { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] };
  if (opts.uid !== undefined) spawnOpts.uid = opts.uid;
  if (opts.gid !== undefined) spawnOpts.gid = opts.gid;
  const started = Date.now();
  const child = spawn(cmd, args, spawnOpts);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on('data', (d: Buffer) => out.push(d));
  child.stderr?.on('data', (d: Buffer) => err.push(d));
  // The child may exit before reading all of its input: EPIPE is expected then, not a crash.
  child.stdin?.on('error', () => {});
  child.stdin?.end(opts.input ?? '');
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
    child.once('error', (e) => {
      err.push(Buffer.from(`${cmd}: ${e.message}`));
      resolve({ code: -1, signal: null });
    });
  });
  const proc: Proc = {
    name: cmd,
    child,
    pid: child.pid ?? -1,
    exited,
    output: () => Buffer.concat([...out, ...err]).toString(),
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  transient.add(proc);
  const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
  const r = await exited;
  if (timer) clearTimeout(timer);
  transient.delete(proc);
  return { ...r, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ms: Date.now() - started };
}

/** Registers an undo step; steps run last-registered first. */
export function onCleanup(fn: () => unknown): void {
  cleanups.push(fn);
}

/** A fresh directory under the system temp dir (named prefix + random), removed at cleanup. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Undoes everything, in dependency order: running commands (SIGKILL), then the
 * cleanup steps last-registered first (each server's own graceful stop), then any
 * started child still alive (SIGTERM, SIGKILL after 5 s). Safe to call twice.
 */
export async function cleanup(): Promise<void> {
  await Promise.all([...transient].map((p) => p.stop('SIGKILL')));
  while (cleanups.length) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`cleanup step failed: ${(err as Error).message}\n`);
    }
  }
  await Promise.all([...live].map((p) => p.stop('SIGTERM', 5_000)));
}

/**
 * Runs a benchmark's main function with cleanup guaranteed: on return, on a
 * thrown error (exit 1) and on SIGINT/SIGTERM (exit 130/143).
 */
export async function runMain(main: () => Promise<void>): Promise<void> {
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\n${sig}: stopping every process this run started...\n`);
    void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await main();
  } catch (err) {
    // After a signal, main fails because its children were killed: not worth a stack trace.
    if (!stopping) process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  } finally {
    if (!stopping) await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
