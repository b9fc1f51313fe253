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
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export interface CommonValues {
  seconds: string;
  'warm-up': string;
  rounds: string;
  clients: string;
  json: boolean;
  node?: string | undefined;
  help: boolean;
}

export interface CommonArgs {
  seconds: number;
  warmUp: number;
  rounds: number;
  clients: number;
  json: boolean;
  node: string | undefined;
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
  };
}
