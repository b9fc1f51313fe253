// Encrypting only some values of a JSON document (`json_paths` in the config),
// shared by the admin commands and the proxy. The document is edited as text:
// only the string values at the configured paths are replaced, everything else
// (number spelling, key order, whitespace, duplicate keys of a json column) stays
// byte for byte, where a JSON.parse/stringify round trip would round big numbers.
//
// Path semantics, the same as Postgres's lax-mode jsonpath `$."a"."b"` (so
// server-side filters agree with this code):
//   - each segment selects an object member by exact key;
//   - an array met on the way is looked through, one level: `a.b` reaches the
//     `b` of every object in the array `a`;
//   - at the end of a path a string is a target, and so is every string directly
//     inside an array; numbers, booleans, null and objects are left alone.
// A whole json/jsonb value (no json_paths) is stored as a JSON string holding
// the envelope: see wrapJsonString/unwrapJsonString.

export const ENVELOPE_PREFIX = 'cmek:v1:';

export class JsonPathError extends Error {
  override readonly name = 'JsonPathError';
}

/** A string value at a configured path: its [start, end) span in the text (quotes included) and decoded value. */
export interface PathString {
  start: number;
  end: number;
  value: string;
}

interface State {
  path: number;
  depth: number;
}

const WS = /[ \t\n\r]*/y;
const SCALAR = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;

/** Finds every string value the paths select (document order). Throws JsonPathError on malformed JSON. */
export function findPathStrings(doc: string, paths: readonly (readonly string[])[]): PathString[] {
  const out: PathString[] = [];
  let i = 0;

  const ws = () => {
    WS.lastIndex = i;
    WS.exec(doc);
    i = WS.lastIndex;
  };
  const fail = (what: string): never => {
    throw new JsonPathError(`malformed JSON at offset ${i}: ${what}`);
  };
  const stringEnd = (from: number): number => {
    // from is at the opening quote; returns the offset after the closing one.
    let j = from + 1;
    for (;;) {
      const q = doc.indexOf('"', j);
      if (q < 0) fail('unterminated string');
      let bs = 0;
      for (let k = q - 1; k > from && doc[k] === '\\'; k--) bs++;
      if (bs % 2 === 0) return q + 1;
      j = q + 1;
    }
  };
  const readString = (): { start: number; end: number; text: () => string } => {
    const start = i;
    const end = stringEnd(i);
    i = end;
    return {
      start,
      end,
      text: () => {
        try {
          return JSON.parse(doc.slice(start, end)) as string;
        } catch {
          return fail('bad string');
        }
      },
    };
  };

  // leaf: strings here are targets; arrayLeaf: strings directly inside this array are targets.
  const value = (states: State[], leaf: boolean, viaArray: boolean): void => {
    ws();
    const ch = doc[i];
    if (ch === '"') {
      const s = readString();
      if (leaf) out.push({ start: s.start, end: s.end, value: s.text() });
    } else if (ch === '{') {
      i++;
      ws();
      if (doc[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (doc[i] !== '"') fail('expected a member name');
        const key = readString().text();
        ws();
        if (doc[i] !== ':') fail('expected ":"');
        i++;
        const next: State[] = [];
        let isLeaf = false;
        for (const s of states) {
          if (paths[s.path][s.depth] !== key) continue;
          if (s.depth + 1 === paths[s.path].length) isLeaf = true;
          else next.push({ path: s.path, depth: s.depth + 1 });
        }
        value(next, isLeaf, false);
        ws();
        if (doc[i] === ',') {
          i++;
          continue;
        }
        if (doc[i] === '}') {
          i++;
          return;
        }
        fail('expected "," or "}"');
      }
    } else if (ch === '[') {
      i++;
      ws();
      if (doc[i] === ']') {
        i++;
        return;
      }
      // Looked through once: an array directly inside it is not looked through again.
      const inner = viaArray ? [] : states;
      for (;;) {
        value(inner, leaf && !viaArray, true);
        ws();
        if (doc[i] === ',') {
          i++;
          continue;
        }
        if (doc[i] === ']') {
          i++;
          return;
        }
        fail('expected "," or "]"');
      }
    } else {
      SCALAR.lastIndex = i;
      const m = SCALAR.exec(doc);
      if (!m) fail('unexpected character');
      i = SCALAR.lastIndex;
    }
  };

  const start: State[] = paths.map((_, p) => ({ path: p, depth: 0 }));
  value(start, false, false);
  ws();
  if (i !== doc.length) fail('trailing characters');
  return out;
}

/** The document with each span replaced by the JSON encoding of its new string. */
export function replaceStrings(doc: string, edits: readonly { start: number; end: number; value: string }[]): string {
  if (edits.length === 0) return doc;
  const sorted = [...edits].sort((a, b) => a.start - b.start);
  let out = '';
  let at = 0;
  for (const e of sorted) {
    out += doc.slice(at, e.start) + JSON.stringify(e.value);
    at = e.end;
  }
  return out + doc.slice(at);
}

/** Applies fn to the selected strings; fn returns the replacement, or undefined to keep one. */
export function mapPathsSync(doc: string, paths: readonly (readonly string[])[], fn: (s: string) => string | undefined): string {
  const edits: { start: number; end: number; value: string }[] = [];
  for (const s of findPathStrings(doc, paths)) {
    const v = fn(s.value);
    if (v !== undefined) edits.push({ start: s.start, end: s.end, value: v });
  }
  return replaceStrings(doc, edits);
}

export async function mapPaths(
  doc: string,
  paths: readonly (readonly string[])[],
  fn: (s: string) => string | undefined | Promise<string | undefined>,
): Promise<string> {
  const edits: { start: number; end: number; value: string }[] = [];
  for (const s of findPathStrings(doc, paths)) {
    const v = await fn(s.value);
    if (v !== undefined) edits.push({ start: s.start, end: s.end, value: v });
  }
  return replaceStrings(doc, edits);
}

export interface EncryptPathOptions {
  /** Encrypt empty strings too (the column's encrypt_empty); default false. */
  encryptEmpty?: boolean;
}

/** Encrypts the plaintext strings at the paths; envelopes already there are kept. Unchanged doc = same string. */
export function encryptPaths(
  doc: string,
  paths: readonly (readonly string[])[],
  fn: (plaintext: string) => string | Promise<string>,
  opts: EncryptPathOptions = {},
): Promise<string> {
  return mapPaths(doc, paths, (s) => (s.startsWith(ENVELOPE_PREFIX) || (s === '' && !opts.encryptEmpty) ? undefined : fn(s)));
}

/** Decrypts the envelopes at the paths; other strings are kept (legacy plaintext). */
export function decryptPaths(doc: string, paths: readonly (readonly string[])[], fn: (envelope: string) => string | Promise<string>): Promise<string> {
  return mapPaths(doc, paths, (s) => (s.startsWith(ENVELOPE_PREFIX) ? fn(s) : undefined));
}

export function encryptPathsSync(doc: string, paths: readonly (readonly string[])[], fn: (plaintext: string) => string, opts: EncryptPathOptions = {}): string {
  return mapPathsSync(doc, paths, (s) => (s.startsWith(ENVELOPE_PREFIX) || (s === '' && !opts.encryptEmpty) ? undefined : fn(s)));
}

export function decryptPathsSync(doc: string, paths: readonly (readonly string[])[], fn: (envelope: string) => string): string {
  return mapPathsSync(doc, paths, (s) => (s.startsWith(ENVELOPE_PREFIX) ? fn(s) : undefined));
}

/** How a whole encrypted json/jsonb value is stored: the envelope as a JSON string. */
export function wrapJsonString(envelope: string): string {
  return JSON.stringify(envelope);
}

/** The envelope inside a whole-value JSON document, or undefined when it holds plaintext JSON. */
export function unwrapJsonString(doc: string): string | undefined {
  const t = doc.trim();
  if (!t.startsWith('"' + ENVELOPE_PREFIX)) return undefined;
  try {
    const v = JSON.parse(t) as unknown;
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** A jsonpath expression (Postgres syntax) for one configured path: `$."a"."b"`. */
export function jsonPathLiteral(path: readonly string[]): string {
  return '$' + path.map((k) => '.' + JSON.stringify(k)).join('');
}
