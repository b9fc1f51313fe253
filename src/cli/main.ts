// `pgcmek <command> [options]`: finds the command, parses its options with
// node:util parseArgs, runs it, and maps the outcome to an exit code
// (0 ok, 1 runtime failure, 2 usage error). Importable: tests call main() with
// in-memory streams; src/cli.ts only wires the process to it.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { suggest } from '../config/suggest.js';
import { HELP_OPTION, commandHelp, type Command, type OptionValues } from './command.js';
import { decrypt, encrypt } from './crypt.js';
import { demo } from './demo.js';
import { UsageError, write, type CliIo } from './io.js';
import { keygen } from './keygen.js';
import { formatFailure } from './report.js';
import { serve } from './serve.js';

export type { CliIo } from './io.js';

export const COMMANDS: readonly Command[] = [serve, keygen, encrypt, decrypt, demo];

/** Operational commands implemented in src/admin; their options are theirs, so argv goes through untouched. */
export const ADMIN_COMMANDS: Readonly<Record<string, string>> = {
  backfill: 'encrypt the existing plaintext in the configured columns',
  'rotate-kek': 're-wrap stored DEKs under the current primary KEK',
  status: 'show how much of each configured column is encrypted, and under which KEKs',
  verify: 'check that every stored envelope decrypts',
  'decrypt-existing': 'turn encrypted values back into plaintext (to leave pgcmek)',
};

export function version(): string {
  // Walk up from this file: it sits at src/cli/ when run from source and dist/src/cli/ when built.
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'pgcmek' && pkg.version) return pkg.version;
    } catch {
      // not here: keep walking up
    }
  }
  return 'unknown';
}

export function globalHelp(): string {
  const width = Math.max(...[...COMMANDS.map((c) => c.name), ...Object.keys(ADMIN_COMMANDS)].map((n) => n.length)) + 2;
  const line = (name: string, summary: string) => `  ${name.padEnd(width)}${summary}`;
  return `pgcmek ${version()}: a PostgreSQL proxy that encrypts secret columns under your own key (CMEK)

Usage: pgcmek <command> [options]

Commands:
${COMMANDS.map((c) => line(c.name, c.summary)).join('\n')}

Operations (on a database, through its config file):
${Object.entries(ADMIN_COMMANDS).map(([n, s]) => line(n, s)).join('\n')}

Options:
  -h, --help     show this help; \`pgcmek <command> --help\` shows a command's
      --version  print the version

Exit codes: 0 success, 1 failure, 2 usage error. PGCMEK_DEBUG=1 adds stack traces.
`;
}

function parseOptions(cmd: Command, argv: string[]): OptionValues {
  const options = Object.fromEntries(
    Object.entries({ ...cmd.options, help: HELP_OPTION }).map(([name, o]) => [name, { type: o.type, ...(o.short && { short: o.short }) }]),
  );
  let values: OptionValues;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (err) {
    // parseArgs's messages are fine but long; keep the first sentence.
    throw new UsageError((err as Error).message.split('. ')[0].replace(/\.$/, ''));
  }
  if (values.help) return values;
  for (const [name, o] of Object.entries(cmd.options)) {
    if (o.required && values[name] === undefined) throw new UsageError(`--${name}${o.arg ? ` ${o.arg}` : ''} is required`);
    if (o.type === 'string' && values[name] === '') throw new UsageError(`--${name} must not be empty`);
  }
  return values;
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  const env = io.env ?? process.env;
  const debug = env.PGCMEK_DEBUG === '1';
  const [name, ...rest] = argv;
  let command: string | undefined;
  try {
    if (name === undefined) {
      await write(io.stderr, globalHelp());
      return 2;
    }
    if (name === '--help' || name === '-h' || name === 'help') {
      await write(io.stdout, globalHelp());
      return 0;
    }
    if (name === '--version') {
      await write(io.stdout, version() + '\n');
      return 0;
    }
    if (Object.hasOwn(ADMIN_COMMANDS, name)) {
      command = name;
      const { runAdminCli } = await import('../admin/cli.js'); // loaded on demand, like the proxy
      return await runAdminCli(name, rest);
    }
    const cmd = COMMANDS.find((c) => c.name === name);
    if (!cmd) {
      const close = suggest(name, [...COMMANDS.map((c) => c.name), ...Object.keys(ADMIN_COMMANDS)]);
      const what = name.startsWith('-') ? `unknown option ${name}` : `unknown command '${name}'`;
      throw new UsageError(`${what}${close ? ` (did you mean '${close}'?)` : ''}`);
    }
    command = cmd.name;
    const values = parseOptions(cmd, rest);
    if (values.help) {
      await write(io.stdout, commandHelp(cmd));
      return 0;
    }
    return await cmd.run(values, io);
  } catch (err) {
    if (err instanceof UsageError) {
      const help = command ? `pgcmek ${command} --help` : 'pgcmek --help';
      await write(io.stderr, `${command ? `pgcmek ${command}` : 'pgcmek'}: ${err.message} (see ${help})\n`).catch(() => {});
      return 2;
    }
    await write(io.stderr, formatFailure(command, err, debug)).catch(() => {});
    return 1;
  }
}
