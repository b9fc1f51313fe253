// Turns any failure into what a person reads on stderr: `pgcmek <command>: ...`
// on one line (a config file with several problems gets one line each), never a
// stack trace unless PGCMEK_DEBUG=1. Crypto and config errors already say what
// to do; a few system errors get a hint here.
import { ConfigError } from '../config/errors.js';
import { CMEKDecryptionError } from '../crypto/errors.js';

const HINTS: Record<string, string> = {
  EADDRINUSE: 'another process already listens there: stop it or change listen.port',
  EADDRNOTAVAIL: 'listen.host is not an address of this machine',
  EACCES: 'permission denied: check the file mode/owner, or use a port above 1023',
  ENOENT: 'no such file or directory',
};

export function describeError(err: unknown): string {
  if (err instanceof ConfigError) return err.message;
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  const name = err.name && err.name !== 'Error' ? `${err.name}: ` : '';
  const firstLine = err.message.split('\n')[0];
  const hint = code && HINTS[code] && !firstLine.includes(HINTS[code]) ? ` (${HINTS[code]})` : '';
  return `${name}${firstLine}${hint}${decryptHint(err)}`;
}

export function formatFailure(command: string | undefined, err: unknown, debug: boolean): string {
  const prefix = command ? `pgcmek ${command}: ` : 'pgcmek: ';
  let text = prefix + describeError(err);
  if (debug && err instanceof Error && err.stack) text += `\n${err.stack}`;
  return text + '\n';
}

/** The usual cause of an unknown KEK: the wrong key file (or backend) is configured. */
function decryptHint(err: Error): string {
  if (!(err instanceof CMEKDecryptionError) || err.reason !== 'unknown_kek') return '';
  if (err.backend === 'local') return ' — is the right kek.local.path loaded? (older KEKs go in kek.local.previous)';
  return ' — is the right KEK backend configured (kek.backend, VIGILO_CMEK_BACKEND)?';
}
