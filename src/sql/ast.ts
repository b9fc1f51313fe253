// Small accessors over libpg_query's JSON parse tree. Nodes are wrappers with one
// key naming their type (`{ "A_Const": { … } }`); some fields hold bare structs
// (RangeVar `relation`, SelectStmt `larg`/`rarg`, TypeName, Alias).

/** Any parse-tree object: a wrapped node or a bare struct. */
export type Ast = Record<string, any>;

/** The type name of a wrapped node, or undefined for a bare struct / non-object. */
export function typeOf(node: unknown): string | undefined {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) return undefined;
  let key: string | undefined;
  for (const k in node) {
    if (key !== undefined) return undefined;
    key = k;
  }
  if (key === undefined) return undefined;
  const c = key.charCodeAt(0);
  return c >= 65 && c <= 90 ? key : undefined;
}

/** The body of a wrapped node of the given type, else undefined. */
export function as(node: unknown, type: string): Ast | undefined {
  if (node === null || typeof node !== 'object') return undefined;
  const b = (node as Ast)[type];
  return b !== undefined && typeOf(node) === type ? (b as Ast) : undefined;
}

/** sval of a String node. */
export function str(node: unknown): string | undefined {
  return as(node, 'String')?.sval as string | undefined;
}

export function strings(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  return list.map((n) => str(n) ?? '');
}

/** Items of a List node (or a plain array). */
export function items(node: unknown): Ast[] {
  if (Array.isArray(node)) return node as Ast[];
  const l = as(node, 'List');
  return (l?.items as Ast[] | undefined) ?? [];
}

/** Type names a value may be cast to on its way into an encrypted column. */
const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'json', 'jsonb', 'citext', 'unknown']);

export interface CastInfo {
  name: string;
  isArray: boolean;
  textLike: boolean;
}

export function castInfo(typeName: Ast | undefined): CastInfo {
  const names = strings(typeName?.names);
  const name = names[names.length - 1] ?? '?';
  // "char" (quoted, one byte) is not bpchar: it would truncate ciphertext.
  const isArray = Array.isArray(typeName?.arrayBounds) && typeName!.arrayBounds.length > 0;
  // A length limit (varchar(20), char(30), and plain `char`, which is char(1)) would cut
  // the envelope, which is longer than the plaintext: the secret would be lost.
  const limited = Array.isArray(typeName?.typmods) && typeName!.typmods.length > 0;
  return { name: limited ? `${name}(n)` : name, isArray, textLike: TEXT_TYPES.has(name) && !typeName?.setof && !limited };
}

/**
 * Strip value-preserving wrappers (casts, COLLATE) from an expression; returns the
 * inner expression and the casts met (outermost first).
 */
export function unwrap(expr: Ast): { expr: Ast; casts: CastInfo[] } {
  const casts: CastInfo[] = [];
  let e = expr;
  for (;;) {
    const tc = as(e, 'TypeCast');
    if (tc) {
      casts.push(castInfo(tc.typeName));
      e = tc.arg;
      continue;
    }
    const cc = as(e, 'CollateClause');
    if (cc) {
      e = cc.arg;
      continue;
    }
    return { expr: e, casts };
  }
}

/** Byte location of a node, if it has one. */
export function locationOf(node: unknown): number | undefined {
  if (node === null || typeof node !== 'object') return undefined;
  const t = typeOf(node);
  const b = t ? (node as Ast)[t] : node;
  const loc = (b as Ast | undefined)?.location;
  return typeof loc === 'number' && loc >= 0 ? loc : undefined;
}

/** Human words for a node type, for refusal messages (never includes values). */
export function describe(node: Ast): string {
  const t = typeOf(node);
  switch (t) {
    case 'FuncCall': {
      const n = strings((node.FuncCall as Ast).funcname);
      return `a call of function ${n[n.length - 1] ?? '?'}()`;
    }
    case 'A_Expr': {
      const n = strings((node.A_Expr as Ast).name);
      return `an expression with operator ${n[n.length - 1] ?? '?'}`;
    }
    case 'ColumnRef':
      return 'a column that is not an encrypted column';
    case 'SubLink':
      return 'a subquery';
    case 'RowExpr':
      return 'a row constructor';
    case 'A_ArrayExpr':
      return 'an array constructor';
    case 'A_Const':
      return 'a constant';
    case 'CaseExpr':
      return 'a CASE expression';
    case 'CoalesceExpr':
      return 'a COALESCE expression';
    case 'MinMaxExpr':
      return 'a GREATEST/LEAST expression';
    case 'BoolExpr':
      return 'a boolean expression';
    case 'SQLValueFunction':
      return 'a SQL value function';
    case 'A_Indirection':
      return 'a subscript or field selection';
    default:
      return `an expression (${t ?? 'unknown'})`;
  }
}
