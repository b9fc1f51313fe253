// One error type for every configuration problem. The loader collects all the
// problems it finds (not just the first) so an operator fixes the file in one go.

export interface ConfigProblem {
  /** Where: `config.yaml:12`, `config.yaml`, or `env VIGILO_CMEK_BACKEND`. */
  where: string;
  /** The file line, when the problem is in the file. */
  line?: number;
  /** The YAML key path, e.g. `kek.local.path`; empty when the problem is the file itself. */
  path: string;
  message: string;
}

export function formatProblem(p: ConfigProblem): string {
  return p.path ? `${p.where}: ${p.path}: ${p.message}` : `${p.where}: ${p.message}`;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: readonly ConfigProblem[];

  constructor(problems: ConfigProblem[]) {
    // In file order, so the list reads top to bottom; the rest (environment, missing keys) after.
    const sorted = [...problems].sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
    const lines = sorted.map(formatProblem);
    super(lines.length === 1 ? lines[0] : `${lines.length} configuration problems:\n  ${lines.join('\n  ')}`);
    this.problems = sorted;
  }
}
