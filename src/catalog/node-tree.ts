// A reader for pg_node_tree text (the format of pg_rewrite.ev_action, produced by
// Postgres's outfuncs.c and read back by read.c). Only what the catalog needs:
// the top-level target list of a view's query, and where each output column comes
// from (TargetEntry :resorigtbl/:resorigcol, filled in by the parser for plain
// column references, through subqueries, joins and CTEs; 0 for expressions).
//
// Lexing follows read.c's pg_strtok: whitespace separates tokens, ( ) { } are
// tokens of their own, a backslash makes the next character ordinary. A node is
// `{NAME :field value :field value ...}`; a value is a token, a node or a list
// `( ... )`. A few fields print more than one token (a Const's datum prints as
// `4 [ 1 0 0 0 ]`), so a field's value is every item up to the next `:field` at the
// same level. Nested subqueries carry target lists of their own: only the
// outermost Query's list is read, never a regex over the whole text.

export type TreeValue = string | TreeNode | TreeValue[] | null;
export interface TreeNode {
  type: string;
  fields: Map<string, TreeValue>;
}

export class NodeTreeError extends Error {
  override readonly name = 'NodeTreeError';
}

interface Token {
  text: string;
  /** Whether the token had a backslash escape (then `:x` or `<>` is data, not syntax). */
  escaped: boolean;
}

function* tokens(s: string): Generator<Token> {
  let i = 0;
  const n = s.length;
  while (i < n) {
    const ch = s[i];
    if (ch === ' ' || ch === '\n' || ch === '\t' || ch === '\r') {
      i++;
      continue;
    }
    if (ch === '(' || ch === ')' || ch === '{' || ch === '}') {
      i++;
      yield { text: ch, escaped: false };
      continue;
    }
    let text = '';
    let escaped = false;
    while (i < n) {
      const c = s[i];
      if (c === ' ' || c === '\n' || c === '\t' || c === '\r' || c === '(' || c === ')' || c === '{' || c === '}') break;
      if (c === '\\' && i + 1 < n) {
        text += s[i + 1];
        escaped = true;
        i += 2;
        continue;
      }
      text += c;
      i++;
    }
    yield { text, escaped };
  }
}

/** Parses a whole pg_node_tree text into its value (for ev_action: a list of Query nodes). */
export function parseNodeTree(text: string): TreeValue {
  const it = tokens(text);
  let peeked: Token | undefined;
  const next = (): Token | undefined => {
    if (peeked) {
      const t = peeked;
      peeked = undefined;
      return t;
    }
    const r = it.next();
    return r.done ? undefined : r.value;
  };
  const peek = (): Token | undefined => (peeked ??= next());

  const isField = (t: Token) => !t.escaped && t.text.length > 1 && t.text[0] === ':';

  const value = (t: Token): TreeValue => {
    if (!t.escaped && t.text === '{') return node();
    if (!t.escaped && t.text === '(') return list();
    if (!t.escaped && t.text === '<>') return null;
    if (!t.escaped && (t.text === ')' || t.text === '}')) throw new NodeTreeError(`unexpected "${t.text}"`);
    return t.text;
  };

  const list = (): TreeValue[] => {
    const items: TreeValue[] = [];
    for (;;) {
      const t = next();
      if (!t) throw new NodeTreeError('unterminated list');
      if (!t.escaped && t.text === ')') return items;
      items.push(value(t));
    }
  };

  const node = (): TreeNode => {
    const head = next();
    if (!head || (!head.escaped && (head.text === '}' || head.text === '{' || head.text === '('))) {
      throw new NodeTreeError('node without a type name');
    }
    const out: TreeNode = { type: head.text, fields: new Map() };
    for (;;) {
      const t = next();
      if (!t) throw new NodeTreeError(`unterminated ${out.type} node`);
      if (!t.escaped && t.text === '}') return out;
      if (!isField(t)) throw new NodeTreeError(`expected a field name in ${out.type}, got "${t.text}"`);
      const items: TreeValue[] = [];
      for (;;) {
        const p = peek();
        if (!p) throw new NodeTreeError(`unterminated ${out.type} node`);
        if ((!p.escaped && p.text === '}') || isField(p)) break;
        items.push(value(next() as Token));
      }
      out.fields.set(t.text.slice(1), items.length === 1 ? items[0] : items.length === 0 ? null : items);
    }
  };

  const first = next();
  if (!first) throw new NodeTreeError('empty node tree');
  const result = value(first);
  if (next()) throw new NodeTreeError('trailing text after the node tree');
  return result;
}

export interface ColumnOrigin {
  /** The view's output column number (= its attnum). */
  resno: number;
  /** pg_class OID of the relation the column is a plain reference to. */
  tableOid: number;
  attnum: number;
}

function isNode(v: TreeValue, type: string): v is TreeNode {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && v.type === type;
}

function intField(n: TreeNode, name: string): number | undefined {
  const v = n.fields.get(name);
  if (typeof v !== 'string' || !/^-?\d+$/.test(v)) return undefined;
  return Number(v);
}

/**
 * The origins of a view's output columns, from its `_RETURN` rule's ev_action.
 * Columns that are expressions (or otherwise have no single origin) are left out.
 */
export function viewColumnOrigins(evAction: string): ColumnOrigin[] {
  const tree = parseNodeTree(evAction);
  const queries = Array.isArray(tree) ? tree : [tree];
  // A view's rule holds exactly one Query; anything else is not a view we can map.
  if (queries.length !== 1 || !isNode(queries[0], 'QUERY')) return [];
  const targetList = queries[0].fields.get('targetList');
  if (!Array.isArray(targetList)) return [];
  const out: ColumnOrigin[] = [];
  for (const te of targetList) {
    if (!isNode(te, 'TARGETENTRY')) continue;
    if (te.fields.get('resjunk') === 'true') continue;
    const resno = intField(te, 'resno');
    const tableOid = intField(te, 'resorigtbl');
    const attnum = intField(te, 'resorigcol');
    if (resno === undefined || !tableOid || !attnum || attnum < 1) continue;
    out.push({ resno, tableOid, attnum });
  }
  return out;
}
