// The command-line options every pgbench-driven comparison benchmark takes
// (bench:encryption, bench:searchable): spread COMMON_OPTIONS into parseArgs next
// to the script's own, then read them with commonArgs.
export const COMMON_OPTIONS = {
  seconds: { type: 'string', default: '5' },
  /** Unmeasured seconds at the start of each run, on the same connections (fresh backends warm up). */
  'warm-up': { type: 'string', default: '5' },
  rounds: { type: 'string', default: '3' },
  clients: { type: 'string', default: '8' },
  json: { type: 'boolean', default: false },
  /** The Node binary that runs pgcmek (default: this one). */
  node: { type: 'string' },
  /** Postgres' shared memory in huge pages (`on`, reserved for the run when root) or 4 KiB pages (`off`): bench/lib/huge-pages.ts. */
  'huge-pages': { type: 'string', default: 'on' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export interface CommonValues {
  seconds: string;
  'warm-up': string;
  rounds: string;
  clients: string;
  json: boolean;
  node?: string | undefined;
  'huge-pages': string;
  help: boolean;
}

export interface CommonArgs {
  seconds: number;
  warmUp: number;
  rounds: number;
  clients: number;
  json: boolean;
  node: string | undefined;
  hugePages: boolean;
}

/** An integer option in 1..max. */
export function positiveInt(v: string, name: string, max?: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || (max !== undefined && n > max)) {
    throw new Error(max === undefined ? `--${name} must be a positive integer` : `--${name} must be an integer in 1..${max}`);
  }
  return n;
}

/** An integer option ≥ 0. */
export function nonNegativeInt(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be an integer ≥ 0`);
  return n;
}

/** An on|off option. */
export function onOff(v: string, name: string): boolean {
  if (v !== 'on' && v !== 'off') throw new Error(`--${name} must be on or off`);
  return v === 'on';
}

/** Prints usage and exits on --help; otherwise the common options, checked. Call it before checking the script's own. */
export function commonArgs(values: CommonValues, usage: string): CommonArgs {
  if (values.help) {
    process.stdout.write(`usage: ${usage}\n`);
    process.exit(0);
  }
  return {
    seconds: positiveInt(values.seconds, 'seconds'),
    warmUp: nonNegativeInt(values['warm-up'], 'warm-up'),
    rounds: positiveInt(values.rounds, 'rounds'),
    clients: positiveInt(values.clients, 'clients'),
    json: values.json,
    node: values.node,
    hugePages: onOff(values['huge-pages'], 'huge-pages'),
  };
}
