// The operational commands belong to src/admin: the CLI hands them argv untouched
// and passes their exit code through. A recording stand-in replaces runAdminCli.
import { describe, expect, it, vi } from 'vitest';
import { ADMIN_COMMANDS } from '../../src/cli/main.js';
import { run } from './run.js';

const seen = vi.hoisted(() => [] as { command: string; argv: string[] }[]);
vi.mock('../../src/admin/cli.js', () => ({
  runAdminCli: async (command: string, argv: string[]) => {
    seen.push({ command, argv });
    if (argv.includes('--explode')) throw new Error('the database refused: permission denied for table webhook');
    return argv.includes('--usage-error') ? 2 : 0;
  },
}));

describe('admin commands', () => {
  it.each(Object.keys(ADMIN_COMMANDS))('%s: argv (including --help) goes through untouched', async (command) => {
    seen.length = 0;
    const argv = ['--config', 'c.yaml', '--help', '--dry-run', 'public.webhook'];
    expect((await run([command, ...argv])).code).toBe(0);
    expect(seen).toEqual([{ command, argv }]);
  });

  it('their exit code is the process exit code', async () => {
    expect((await run(['backfill', '--usage-error'])).code).toBe(2);
  });

  it('a thrown error: exit 1, one line', async () => {
    const r = await run(['verify', '--explode']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('pgcmek verify: the database refused: permission denied for table webhook\n');
  });
});
