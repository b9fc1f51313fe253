// The shape every built-in command has, and the help text generated from it.
import type { CliIo } from './io.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder shown in help: `--out PATH`. */
  arg?: string;
  help: string;
  required?: boolean;
}

export type OptionValues = Record<string, string | boolean | undefined>;

export interface Command {
  name: string;
  /** One line for `pgcmek --help`. */
  summary: string;
  usage: string;
  /** Paragraphs for `pgcmek <command> --help`. */
  description: string;
  options: Record<string, OptionSpec>;
  run(values: OptionValues, io: CliIo): Promise<number>;
}

export const HELP_OPTION: OptionSpec = { type: 'boolean', short: 'h', help: 'show this help' };

export function commandHelp(c: Command): string {
  const opts = Object.entries({ ...c.options, help: HELP_OPTION }).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.arg ? ` ${o.arg}` : ''}`;
    return `  ${flag.padEnd(24)} ${o.help}${o.required ? ' (required)' : ''}`;
  });
  return `Usage: ${c.usage}\n\n${c.description.trim()}\n\nOptions:\n${opts.join('\n')}\n`;
}
