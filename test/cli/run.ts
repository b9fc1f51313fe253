// Runs the CLI's main() in-process with in-memory streams.
import { EventEmitter } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { main } from '../../src/cli/main.js';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  stdin?: string;
  env?: Record<string, string | undefined>;
  signals?: EventEmitter;
  /** Receives stdout as it is written (serve's log lines). */
  onStdout?: (text: string) => void;
}

export async function run(argv: string[], opts: RunOptions = {}): Promise<Run> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => {
    out += d.toString();
    opts.onStdout?.(d.toString());
  });
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await main(argv, {
    stdin: Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]),
    stdout,
    stderr,
    env: opts.env ?? {},
    signals: opts.signals ?? new EventEmitter(),
  });
  await new Promise((r) => setImmediate(r));
  return { code, stdout: out, stderr: err };
}
