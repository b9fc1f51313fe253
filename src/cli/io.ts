// What a command may touch: three streams, the environment and a signal source.
// The bin passes the process's own; tests pass in-memory streams, so `main` runs
// in-process without spawning.
import type { Env } from '../config/env.js';

export type Signal = 'SIGTERM' | 'SIGINT';

export interface SignalSource {
  on(signal: Signal, listener: () => void): unknown;
  off(signal: Signal, listener: () => void): unknown;
}

export interface CliIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Defaults to process.env. */
  env?: Env;
  /** Where SIGTERM/SIGINT arrive; defaults to process. */
  signals?: SignalSource;
}

/** A mistake in how the command was called: exit code 2 and a pointer to --help. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Reads all of stdin as UTF-8 and removes exactly one trailing newline (what `echo` adds). */
export async function readValue(io: CliIo): Promise<string> {
  if (io.stdin.isTTY) io.stderr.write('reading the value from stdin (end with Ctrl-D)\n');
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

export function write(stream: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (err) => (err ? reject(err) : resolve()));
  });
}
