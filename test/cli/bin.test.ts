// The built executable, as a process: real exit codes, real pipes, real signals.
// `npm test` builds first; alone, run `npx tsc -p tsconfig.json` before this file.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(root, 'dist/src/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'pgcmek-bin-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pgcmek(args: string[], opts: { input?: string; env?: Record<string, string> } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    input: opts.input ?? '',
    env: { PATH: process.env.PATH ?? '', ...opts.env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npx tsc -p tsconfig.json\` (npm test does)`);
});

describe('the pgcmek executable', () => {
  it('starts with a node shebang (package.json bin)', () => {
    expect(readFileSync(BIN, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(pkg.bin.pgcmek).toBe('dist/src/cli.js');
  });

  it('exit codes: 0 help/version, 2 usage, 1 failure', () => {
    expect(pgcmek(['--help']).code).toBe(0);
    expect(pgcmek(['--version']).stdout).toMatch(/^\d+\.\d+\.\d+/);
    expect(pgcmek([]).code).toBe(2);
    expect(pgcmek(['nope']).code).toBe(2);
    expect(pgcmek(['keygen']).code).toBe(2);
    const r = pgcmek(['encrypt'], { input: 'x' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^pgcmek encrypt: .*VIGILO_CMEK_LOCAL_KEK_PATH\n$/);
  });

  it('keygen, then encrypt | decrypt through real pipes', () => {
    const kek = join(dir, 'kek.key');
    expect(pgcmek(['keygen', '--out', kek]).code).toBe(0);
    expect(pgcmek(['keygen', '--out', kek]).code).toBe(1);
    const env = { VIGILO_CMEK_LOCAL_KEK_PATH: kek };
    const enc = pgcmek(['encrypt'], { input: 'hunter2\n', env });
    expect(enc.code).toBe(0);
    expect(enc.stdout.startsWith('cmek:v1:')).toBe(true);
    expect(pgcmek(['decrypt'], { input: enc.stdout, env })).toEqual({ code: 0, stdout: 'hunter2\n', stderr: '' });

    const other = join(dir, 'other.key');
    pgcmek(['keygen', '--out', other]);
    const wrong = pgcmek(['decrypt'], { input: enc.stdout, env: { VIGILO_CMEK_LOCAL_KEK_PATH: other } });
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toBe('');
    expect(wrong.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(wrong.stderr).toMatch(/^pgcmek decrypt: CMEKDecryptionError: /);
  });

  it.each(['SIGTERM', 'SIGINT'] as const)('serve exits 0 on %s', async (signal) => {
    const kek = join(dir, `serve-${signal}.key`);
    pgcmek(['keygen', '--out', kek]);
    const cfg = join(dir, `serve-${signal}.yaml`);
    writeFileSync(cfg, `listen: { port: 0 }\nshutdown_grace_seconds: 5\nkek: { local: { path: ${kek} } }\n`);
    const child = spawn(process.execPath, [BIN, 'serve', '--config', cfg], { env: { PATH: process.env.PATH ?? '' } });
    let out = '';
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('"pgcmek ready"')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`exited early (${code}): ${out}`)));
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    await ready;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill(signal);
    expect(await exited).toBe(0);
    expect(err).toBe('');
    expect(out).toContain('"pgcmek stopped"');
  });
});
