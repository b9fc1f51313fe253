// The SQL-like admin commands the proxy intercepts (docs/ADMIN.md):
//   CMEK STATUS [target, ...]
//   CMEK VERIFY [target, ...]
//   CMEK ENCRYPT EXISTING {ALL | target, ...} [BATCH n] [DRY RUN]
//   CMEK ROTATE KEK [ALL | target, ...] [BATCH n] [DRY RUN]
//   CMEK DECRYPT EXISTING {ALL | target, ...} [BATCH n] [DRY RUN] CONFIRM
//   target = [schema.]table[.column]
// Keywords are case-insensitive; identifiers fold to lower case unless
// double-quoted (as in SQL); comments and one trailing `;` are allowed.
import { AdminParseError } from './errors.js';
import { DEFAULT_BATCH, MAX_BATCH, type AdminCommand, type TargetName, type Targets } from './command.js';

interface Token {
  kind: 'word' | 'ident' | 'number' | 'punct';
  /** Keyword/identifier as folded (words lower-cased, quoted identifiers as written). */
  value: string;
  /** Source text of the token. */
  raw: string;
  /** 0-based offset. */
  at: number;
}

const WORD = /[\p{L}_][\p{L}\p{N}_$]*/uy;
const NUMBER = /\d+/y;

function lex(text: string): Token[] | AdminParseError {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (/\s/u.test(ch)) {
      i++;
    } else if (text.startsWith('--', i)) {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl + 1;
    } else if (text.startsWith('/*', i)) {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) return new AdminParseError('unterminated /* comment', i + 1);
      i = end + 2;
    } else if (ch === '"') {
      let j = i + 1;
      let value = '';
      for (;;) {
        if (j >= text.length) return new AdminParseError('unterminated quoted identifier', i + 1);
        if (text[j] === '"') {
          if (text[j + 1] === '"') {
            value += '"';
            j += 2;
            continue;
          }
          break;
        }
        value += text[j++];
      }
      if (value === '') return new AdminParseError('zero-length delimited identifier', i + 1);
      out.push({ kind: 'ident', value, raw: text.slice(i, j + 1), at: i });
      i = j + 1;
    } else if (ch === '.' || ch === ',' || ch === ';') {
      out.push({ kind: 'punct', value: ch, raw: ch, at: i });
      i++;
    } else {
      NUMBER.lastIndex = i;
      const num = NUMBER.exec(text);
      if (num) {
        out.push({ kind: 'number', value: num[0], raw: num[0], at: i });
        i += num[0].length;
        continue;
      }
      WORD.lastIndex = i;
      const word = WORD.exec(text);
      if (!word) return new AdminParseError(`syntax error at or near "${ch}"`, i + 1);
      // SQL folds unquoted identifiers to lower case (ASCII letters only, like Postgres).
      out.push({ kind: 'word', value: word[0].replace(/[A-Z]/g, (c) => c.toLowerCase()), raw: word[0], at: i });
      i += word[0].length;
    }
  }
  return out;
}

/** Whether a query text is an admin command (so the proxy handles it instead of forwarding). */
export function isAdminCommandText(text: string): boolean {
  const toks = lex(text);
  if (toks instanceof AdminParseError) {
    // An unterminated comment/quote after a leading CMEK is still ours (and an error).
    return /^\s*cmek\b/i.test(text);
  }
  return toks.length > 0 && toks[0].kind === 'word' && toks[0].value === 'cmek';
}

const OPTION_WORDS = new Set(['batch', 'dry', 'confirm']);

class Parser {
  private i = 0;
  constructor(
    private readonly toks: Token[],
    private readonly text: string,
  ) {}

  private peek(): Token | undefined {
    return this.toks[this.i];
  }

  private fail(message: string, tok = this.peek(), hint?: string): never {
    throw new AdminParseError(message, (tok ? tok.at : this.text.length) + 1, hint);
  }

  private near(tok = this.peek()): string {
    return tok ? `syntax error at or near "${tok.raw}"` : 'syntax error at end of input';
  }

  isWord(w: string, tok = this.peek()): boolean {
    return tok?.kind === 'word' && tok.value === w;
  }

  expectWord(w: string, hint?: string): void {
    if (!this.isWord(w)) this.fail(this.near(), this.peek(), hint);
    this.i++;
  }

  done(): boolean {
    if (this.peek()?.raw === ';') this.i++;
    return this.i >= this.toks.length;
  }

  private name(): string {
    const t = this.peek();
    if (!t || (t.kind !== 'word' && t.kind !== 'ident')) this.fail(`${this.near()}: expected a table or column name`);
    this.i++;
    return t.value;
  }

  private target(): TargetName {
    const start = this.peek()!;
    const parts = [this.name()];
    while (this.peek()?.raw === '.') {
      this.i++;
      parts.push(this.name());
    }
    if (parts.length > 3) this.fail('too many dotted names: expected [schema.]table[.column]', start);
    const end = this.toks[this.i - 1];
    return { parts, text: this.text.slice(start.at, end.at + end.raw.length) };
  }

  /** `ALL`, a comma-separated list, or nothing when `optional`. */
  targets(optional: boolean): Targets {
    if (this.isWord('all')) {
      this.i++;
      return 'all';
    }
    const t = this.peek();
    // An option keyword ends the list, unless it is a table name (`dry.secret`).
    const isOption = t?.kind === 'word' && OPTION_WORDS.has(t.value) && this.toks[this.i + 1]?.raw !== '.';
    const atEnd = !t || t.raw === ';' || isOption;
    if (atEnd) {
      if (optional) return [];
      this.fail(`${this.near()}: expected ALL or [schema.]table[.column]`);
    }
    const list = [this.target()];
    while (this.peek()?.raw === ',') {
      this.i++;
      list.push(this.target());
    }
    return list;
  }

  /** BATCH n, DRY RUN and (when allowed) CONFIRM, in any order, each once. */
  options(allowConfirm: boolean): { batch?: number; dryRun: boolean; confirm: boolean } {
    const out: { batch?: number; dryRun: boolean; confirm: boolean } = { dryRun: false, confirm: false };
    const seen = new Set<string>();
    while (!this.done()) {
      const t = this.peek()!;
      const w = t.kind === 'word' ? t.value : '';
      if (!OPTION_WORDS.has(w) || (w === 'confirm' && !allowConfirm)) {
        this.fail(this.near(), t, allowConfirm ? 'options are BATCH n, DRY RUN and CONFIRM' : 'options are BATCH n and DRY RUN');
      }
      if (seen.has(w)) this.fail(`${t.raw.toUpperCase()} given twice`, t);
      seen.add(w);
      this.i++;
      if (w === 'batch') {
        const n = this.peek();
        if (n?.kind !== 'number') this.fail(`${this.near()}: BATCH needs a row count`, n);
        const v = Number(n.value);
        if (!(v >= 1 && v <= MAX_BATCH)) this.fail(`BATCH must be between 1 and ${MAX_BATCH} (default ${DEFAULT_BATCH})`, n);
        out.batch = v;
        this.i++;
      } else if (w === 'dry') {
        this.expectWord('run', 'DRY RUN');
        out.dryRun = true;
      } else {
        out.confirm = true;
      }
    }
    return out;
  }

  end(): void {
    if (!this.done()) this.fail(this.near());
  }
}

/** Parses a `CMEK ...` command; a syntax problem comes back as an AdminParseError (SQLSTATE 42601). */
export function parseAdminCommand(text: string): AdminCommand | AdminParseError {
  const toks = lex(text);
  if (toks instanceof AdminParseError) return toks;
  const p = new Parser(toks, text);
  try {
    p.expectWord('cmek');
    const verbs = 'STATUS, VERIFY, ENCRYPT EXISTING, ROTATE KEK or DECRYPT EXISTING';
    if (p.isWord('status') || p.isWord('verify')) {
      const kind = p.isWord('status') ? 'status' : 'verify';
      p.expectWord(kind);
      const targets = p.targets(true);
      p.end();
      return { kind, targets };
    }
    if (p.isWord('encrypt')) {
      p.expectWord('encrypt');
      p.expectWord('existing', 'CMEK ENCRYPT EXISTING {ALL | table[.column]} [BATCH n] [DRY RUN]');
      const targets = p.targets(false);
      const o = p.options(false);
      return { kind: 'encrypt', targets, dryRun: o.dryRun, ...(o.batch && { batch: o.batch }) };
    }
    if (p.isWord('rotate')) {
      p.expectWord('rotate');
      p.expectWord('kek', 'CMEK ROTATE KEK [ALL | table[.column]] [BATCH n] [DRY RUN]');
      const targets = p.targets(true);
      const o = p.options(false);
      return { kind: 'rotate', targets, dryRun: o.dryRun, ...(o.batch && { batch: o.batch }) };
    }
    if (p.isWord('decrypt')) {
      p.expectWord('decrypt');
      p.expectWord('existing', 'CMEK DECRYPT EXISTING {ALL | table.column} [BATCH n] [DRY RUN] CONFIRM');
      const targets = p.targets(false);
      const o = p.options(true);
      if (!o.confirm && !o.dryRun) {
        return new AdminParseError(
          'CMEK DECRYPT EXISTING writes the plaintext back into the database: add CONFIRM to proceed',
          text.trimEnd().length + 1,
          'run it with DRY RUN first to see how many values it would decrypt',
        );
      }
      return { kind: 'decrypt', targets, dryRun: o.dryRun, confirm: o.confirm, ...(o.batch && { batch: o.batch }) };
    }
    p.expectWord('status', `expected ${verbs} after CMEK`);
    throw new Error('unreachable');
  } catch (err) {
    if (err instanceof AdminParseError) return err;
    throw err;
  }
}

/** One `[schema.]table[.column]` name (the CLI's positional arguments), folded like SQL. */
export function parseTargetName(text: string): TargetName | AdminParseError {
  const toks = lex(text);
  if (toks instanceof AdminParseError) return toks;
  const p = new Parser(toks, text);
  try {
    const t = p.targets(false);
    p.end();
    if (t === 'all' || t.length !== 1) return new AdminParseError(`expected one [schema.]table[.column], got "${text}"`, 1);
    return t[0];
  } catch (err) {
    if (err instanceof AdminParseError) return err;
    throw err;
  }
}
