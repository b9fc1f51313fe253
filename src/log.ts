// One pino logger for the process. JSON to stdout; pretty when stdout is a TTY.
// Never pass values (bind parameters, literals, plaintexts, keys) to it: the
// redact paths below are the backstop, not the rule.
import { pino, type Logger } from 'pino';

export type { Logger };

const REDACT = [
  'password',
  '*.password',
  'token',
  '*.token',
  'key',
  '*.key',
  'value',
  '*.value',
  'params',
  '*.params',
  'sql',
  '*.sql',
  'plaintext',
  '*.plaintext',
];

export function createLogger(level: string = 'info', destination?: pino.DestinationStream): Logger {
  const opts: pino.LoggerOptions = {
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT, censor: '[redacted]' },
  };
  if (destination) return pino(opts, destination);
  if (process.stdout.isTTY && !process.env.CI) {
    return pino({ ...opts, transport: { target: 'pino-pretty', options: { destination: 1 } } });
  }
  // A pipe or file: synchronous writes, so the last lines are not lost when the process exits.
  return pino(opts, pino.destination({ dest: 1, sync: true }));
}

let root: Logger | undefined;

/** The process-wide logger; `setLogger` replaces it (config load, SIGHUP, tests). */
export function log(): Logger {
  root ??= createLogger(process.env.PGCMEK_LOG_LEVEL ?? 'info');
  return root;
}

export function setLogger(l: Logger): void {
  root = l;
}
