// Tools a benchmark needs from Debian's packages (pgbouncer, perf): found on
// the PATH or in the usual sbin/bin directories, installed with apt-get when
// asked to and this process is root; otherwise the caller says what is missing.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export function locate(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/usr/local/bin', '/sbin']) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Path of `binary`, installing Debian package `pkg` first when missing and `install` is set (root only). */
export function findOrInstall(binary: string, pkg: string, opts: { install?: boolean; log?: (s: string) => void } = {}): string | undefined {
  const found = locate(binary);
  if (found || !opts.install) return found;
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root || !locate('apt-get')) return undefined;
  opts.log?.(`${binary} missing: apt-get install -y ${pkg}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    execFileSync('apt-get', ['install', '-y', pkg], { stdio: 'ignore', env });
  } catch {
    try {
      execFileSync('apt-get', ['update'], { stdio: 'ignore', env });
      execFileSync('apt-get', ['install', '-y', pkg], { stdio: 'ignore', env });
    } catch {
      return undefined;
    }
  }
  return locate(binary);
}
