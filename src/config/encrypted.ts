// The `encrypted` section: which columns of which tables hold secrets.
//
//   public.webhook: [secret]                         # a list of column names
//   public.workspace:                                # or a map column -> options
//     settings: { json_paths: ["smtp.password"] }
//
// Names are matched exactly as Postgres stores them (case-sensitive, no folding).
// SQL double quotes are optional; they are only needed for a dot inside a name.
import { isMap, isScalar, isSeq, type Node, type Pair } from 'yaml';
import { isNull, lineAt, problem, readNode, readString, type ReadContext } from './reader.js';
import { COLUMN_OPTIONS, type RawColumnOptions } from './schema.js';
import type { ColumnPolicy, TablePolicy } from './types.js';

/** Postgres truncates identifiers to NAMEDATALEN-1 bytes: a longer name would never match. */
const MAX_IDENTIFIER_BYTES = 63;

export function readEncrypted(node: Node, path: string, ctx: ReadContext): TablePolicy[] | undefined {
  if (!isMap(node)) return void problem(ctx, path, 'expected a map of table name -> columns', lineAt(ctx, node));
  const tables: TablePolicy[] = [];
  const seen = new Map<string, { key: string; line?: number }>();
  for (const pair of node.items as Pair<Node | null, Node | null>[]) {
    const line = lineAt(ctx, pair.key);
    const key = pair.key && isScalar(pair.key) && typeof pair.key.value === 'string' ? pair.key.value : undefined;
    if (key === undefined) {
      problem(ctx, path, 'table names must be strings', line);
      continue;
    }
    const tablePath = `${path}.${key}`;
    const name = parseTableName(key);
    if (typeof name === 'string') {
      problem(ctx, tablePath, name, line);
      continue;
    }
    const id = `${name.schema}\u0000${name.table}`;
    const prior = seen.get(id);
    if (prior) {
      problem(ctx, tablePath, `table listed twice (also as "${prior.key}"${prior.line ? ` on line ${prior.line}` : ''})`, line);
      continue;
    }
    seen.set(id, { key, line });
    const columns = readColumns(ctx, pair.value, tablePath, line);
    if (columns) tables.push({ schema: name.schema, table: name.table, columns });
  }
  return tables;
}

function readColumns(ctx: ReadContext, node: Node | null, path: string, line?: number): ColumnPolicy[] | undefined {
  const shape = 'a list of column names or a map of column name -> options';
  if (node === null || isNull(node)) return void problem(ctx, path, `lists no columns (expected ${shape})`, line);
  const columns: ColumnPolicy[] = [];
  const seen = new Set<string>();
  const add = (raw: string, options: RawColumnOptions, colPath: string, colLine?: number) => {
    const column = unquote(raw);
    const bad = checkIdentifier(column, 'column');
    if (bad) return problem(ctx, colPath, bad, colLine);
    if (seen.has(column)) return problem(ctx, colPath, `duplicate column "${column}"`, colLine);
    seen.add(column);
    const policy = toPolicy(ctx, column, options, colPath, colLine);
    if (policy) columns.push(policy);
  };
  if (isSeq(node)) {
    node.items.forEach((item, i) => {
      const itemLine = lineAt(ctx, item) ?? line;
      const name = item && typeof item === 'object' ? readString(ctx, item as Node, `${path}[${i}]`, itemLine) : undefined;
      if (name !== undefined) add(name, {}, `${path}.${name}`, itemLine);
    });
  } else if (isMap(node)) {
    for (const pair of node.items as Pair<Node | null, Node | null>[]) {
      const colLine = lineAt(ctx, pair.key) ?? line;
      const name = pair.key ? readString(ctx, pair.key, `${path} (column name)`, colLine) : undefined;
      if (name === undefined) continue;
      const colPath = `${path}.${name}`;
      const before = ctx.problems.length;
      const options = (readNode(ctx, pair.value, COLUMN_OPTIONS, colPath, colLine) ?? {}) as RawColumnOptions;
      if (ctx.problems.length === before) add(name, options, colPath, colLine);
    }
  } else {
    return void problem(ctx, path, `expected ${shape}`, line);
  }
  if (node.items.length === 0) problem(ctx, path, `lists no columns (expected ${shape})`, line);
  return columns;
}

function toPolicy(ctx: ReadContext, column: string, o: RawColumnOptions, path: string, line?: number): ColumnPolicy | undefined {
  const policy: ColumnPolicy = {
    column,
    searchable: o.searchable ?? false,
    onDecryptError: o.on_decrypt_error ?? 'error',
    encryptEmpty: o.encrypt_empty ?? false,
  };
  if (o.key_group !== undefined) {
    if (!policy.searchable) return void problem(ctx, `${path}.key_group`, 'needs searchable: true (a key group shares a searchable column key)', line);
    if (!/^[A-Za-z0-9_.:-]{1,63}$/.test(o.key_group)) {
      return void problem(ctx, `${path}.key_group`, 'must be 1 to 63 letters, digits or _ . : -', line);
    }
    policy.keyGroup = o.key_group;
  }
  if (o.json_paths === undefined) return policy;
  const paths = parseJsonPaths(o.json_paths);
  if (typeof paths === 'string') return void problem(ctx, `${path}.json_paths`, paths, line);
  if (policy.searchable) {
    return void problem(ctx, path, 'searchable cannot be combined with json_paths (deterministic encryption covers whole values only)', line);
  }
  policy.jsonPaths = paths;
  return policy;
}

/** `["smtp.password"]` -> `[["smtp","password"]]`; a string result is the problem. */
export function parseJsonPaths(raw: string[]): string[][] | string {
  if (raw.length === 0) return 'is empty (omit json_paths to encrypt the whole value)';
  const paths: string[][] = [];
  for (const p of raw) {
    const parts = p.split('.');
    if (parts.some((s) => s === '')) return `"${p}" has an empty segment (write dotted keys like "smtp.password")`;
    const clash = paths.find((q) => isPrefix(q, parts) || isPrefix(parts, q));
    if (clash) {
      return clash.length === parts.length ? `"${p}" is listed twice` : `"${p}" overlaps "${clash.join('.')}" (one contains the other)`;
    }
    paths.push(parts);
  }
  return paths;
}

function isPrefix(a: string[], b: string[]): boolean {
  return a.length <= b.length && a.every((s, i) => s === b[i]);
}

/** `webhook` -> public.webhook; `"My.Schema".t` -> {My.Schema, t}; a string result is the problem. */
export function parseTableName(key: string): { schema: string; table: string } | string {
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  let wasQuoted = false;
  for (let i = 0; i < key.length; i++) {
    const ch = key[i];
    if (quoted) {
      if (ch === '"' && key[i + 1] === '"') (cur += '"'), i++;
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"' && cur === '' && !wasQuoted) {
      quoted = wasQuoted = true;
    } else if (ch === '.') {
      parts.push(cur);
      cur = '';
      wasQuoted = false;
    } else if (wasQuoted) {
      return `unexpected ${JSON.stringify(ch)} after a quoted name`;
    } else {
      cur += ch;
    }
  }
  if (quoted) return 'unterminated double quote';
  parts.push(cur);
  if (parts.length > 2) return 'expected "table" or "schema.table" (quote a name that contains a dot)';
  const [schema, table] = parts.length === 2 ? parts : ['public', parts[0]];
  const bad = checkIdentifier(schema, 'schema') ?? checkIdentifier(table, 'table');
  return bad ?? { schema, table };
}

function unquote(name: string): string {
  return name.length >= 2 && name.startsWith('"') && name.endsWith('"') ? name.slice(1, -1).replace(/""/g, '"') : name;
}

function checkIdentifier(name: string, what: string): string | undefined {
  if (name === '') return `empty ${what} name`;
  if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
    return `${what} name "${name}" is longer than ${MAX_IDENTIFIER_BYTES} bytes (Postgres truncates it, so it would never match)`;
  }
  return undefined;
}
