// Seeded generators of SQL literal spellings for the shape tests.

export interface Rng {
  /** 0 ≤ n < max */
  int(max: number): number;
  pick<T>(xs: readonly T[]): T;
}

/** mulberry32: small, seeded, good enough for test data. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    int: (max) => Math.floor(next() * max),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
  };
}

const CHARS = ['a', 'b', 'Z', '0', '9', ' ', "'", "''", '"', '\\', '$', '$$', '-', '--', '/*', '*/', '/', '*', ';', '\n', '\t', 'é', '✓', '😀', '%', '_', 'users', 'x'];

/** A random value; empty about one time in eight. */
export function randomValue(r: Rng, maxParts = 6): string {
  if (r.int(8) === 0) return '';
  let v = '';
  const n = 1 + r.int(maxParts);
  for (let i = 0; i < n; i++) v += r.pick(CHARS);
  return v;
}

export type LiteralForm = 'plain' | 'escape' | 'dollar';

/** `value` spelled as a SQL string literal of the given form (any escape spelling the parser decodes back to it). */
export function quote(r: Rng, value: string, form: LiteralForm): string {
  if (form === 'plain') return `'${value.replaceAll("'", "''")}'`;
  if (form === 'dollar') {
    const tags = value.includes('$') ? ['tag', 'q1', 'é'] : ['', 'tag'];
    for (const tag of tags) {
      const d = `$${tag}$`;
      if (!`${value}${d}`.slice(0, -1).includes(d) && !(tag === '' && value.endsWith('$'))) return `${d}${value}${d}`;
    }
    return `'${value.replaceAll("'", "''")}'`;
  }
  let out = "E'";
  for (const ch of value) {
    switch (ch) {
      case "'":
        out += r.pick(["\\'", "''"]);
        break;
      case '\\':
        out += '\\\\';
        break;
      case '\n':
        out += r.pick(['\\n', '\n', '\\012', '\\x0a']);
        break;
      case '\t':
        out += r.pick(['\\t', '\t']);
        break;
      case 'a':
        out += r.pick(['a', '\\141', '\\x61', '\\a']);
        break;
      case 'é':
        out += r.pick(['é', '\\xC3\\xA9', '\\303\\251']);
        break;
      default:
        out += ch;
    }
  }
  return `${out}'`;
}

export function stringLiteral(r: Rng, form: LiteralForm = r.pick(['plain', 'escape', 'dollar'] as const)): string {
  return quote(r, randomValue(r), form);
}
