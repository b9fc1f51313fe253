// COPY plans. `COPY t (cols) FROM STDIN` in text/CSV: which data-row fields the
// CopyData rewriter encrypts, with the options it needs to split and re-quote
// rows. `COPY … TO STDOUT`: which output fields carry which encrypted column so
// the reader decrypts them. Binary COPY FROM and COPY FROM a server file/program
// into encrypted columns are refused: the proxy cannot rewrite those values.
import type { ColumnTarget, CopyFormatOptions, CopyOutField, CopyPlan } from './types.js';
import { as, items, strings, typeOf, unwrap, type Ast } from './ast.js';
import { samePolicy, type AnalysisContext } from './context.js';
import { qualified, refuse } from './errors.js';
import { analyzeQueryNode, walkExpr } from './query.js';
import { resolveColumn, Scope, type Origin } from './scope.js';
import { bareEncrypted } from './values.js';
import { encryptedColumn } from './writes.js';

interface RawOptions {
  opts: Omit<CopyFormatOptions, 'forceNotNull' | 'forceNull' | 'forceQuote'>;
  force: Record<'forceNotNull' | 'forceNull' | 'forceQuote', string[] | 'all'>;
}

function truthy(arg: Ast | undefined): boolean | 'match' {
  if (!arg) return true;
  const b = as(arg, 'Boolean');
  if (b) return !!b.boolval;
  const i = as(arg, 'Integer');
  if (i) return (i.ival ?? 0) !== 0;
  const s = (as(arg, 'String')?.sval as string | undefined)?.toLowerCase();
  if (s === 'match') return 'match';
  return s === 'true' || s === 'on' || s === '1' || s === 'yes';
}

function parseOptions(options: unknown): RawOptions {
  let format: CopyFormatOptions['format'] = 'text';
  const given: Record<string, string> = {};
  let header: boolean | 'match' = false;
  const force: RawOptions['force'] = { forceNotNull: [], forceNull: [], forceQuote: [] };
  for (const o of items(options)) {
    const d = as(o, 'DefElem');
    if (!d) continue;
    const name = d.defname as string;
    const sval = as(d.arg, 'String')?.sval as string | undefined;
    switch (name) {
      case 'format':
        format = (sval?.toLowerCase() as CopyFormatOptions['format']) ?? 'text';
        break;
      case 'binary':
        if (truthy(d.arg) === true) format = 'binary';
        break;
      case 'csv':
        if (truthy(d.arg) === true) format = 'csv';
        break;
      case 'header':
        header = truthy(d.arg);
        break;
      case 'force_not_null':
      case 'force_null':
      case 'force_quote': {
        const key = name === 'force_not_null' ? 'forceNotNull' : name === 'force_null' ? 'forceNull' : 'forceQuote';
        force[key] = typeOf(d.arg) === 'A_Star' ? 'all' : strings(items(d.arg));
        break;
      }
      default:
        if (sval !== undefined) given[name] = sval;
    }
  }
  const csv = format === 'csv';
  const quote = given.quote ?? '"';
  const opts: RawOptions['opts'] = {
    format,
    delimiter: given.delimiter ?? (csv ? ',' : '\t'),
    null: given.null ?? (csv ? '' : '\\N'),
    quote,
    escape: given.escape ?? quote,
    header,
  };
  if (given.encoding !== undefined) opts.encoding = given.encoding;
  if (given.default !== undefined) opts.defaultMarker = given.default;
  return { opts, force };
}

function forceIndexes(list: string[] | 'all', cols: readonly string[] | undefined): number[] | 'all' {
  if (list === 'all') return 'all';
  if (!cols) return [];
  return list.map((n) => cols.indexOf(n)).filter((i) => i >= 0);
}

export function analyzeCopy(ctx: AnalysisContext, b: Ast, statement: number): CopyPlan {
  const { opts, force } = parseOptions(b.options);
  const viaClient = !b.filename && !b.is_program;
  const root = new Scope();
  if (b.relation) {
    const rv = b.relation as Ast;
    const policy = ctx.lookupTable(rv);
    const attnames = strings(b.attlist);
    const cols = attnames.length > 0 ? attnames : policy ? ctx.columnsOf(policy.schema, policy.table) : undefined;
    const format: CopyFormatOptions = {
      ...opts,
      forceNotNull: forceIndexes(force.forceNotNull, cols),
      forceNull: forceIndexes(force.forceNull, cols),
      forceQuote: forceIndexes(force.forceQuote, cols),
    };
    const table = { schema: (rv.schemaname as string | undefined) ?? policy?.schema ?? null, table: rv.relname as string };
    if (b.is_from) {
      if (b.whereClause) {
        const scope = new Scope();
        scope.entries.push({ kind: 'table', refname: rv.relname, schema: rv.schemaname, relname: rv.relname, hasAlias: false, policy, columns: cols });
        walkExpr(ctx, b.whereClause, { scope, strict: 'COPY … WHERE' });
      }
      if (policy && !cols) {
        refuse('unknown_columns', `cannot tell which COPY fields go to the encrypted columns of ${qualified(policy)}: its column list is not known to the proxy`, {
          table: policy,
          location: rv.location,
          hint: 'Name the columns explicitly: COPY t (a, b) FROM STDIN.',
        });
      }
      const fields: (ColumnTarget | null)[] = (cols ?? []).map((c) => encryptedColumn(policy, c) ?? null);
      const first = fields.find((f) => f !== null);
      if (first && !viaClient) {
        refuse('copy_server_file', `COPY into encrypted column ${qualified(first)} from a server-side file or program is refused: the proxy cannot encrypt those values`, {
          target: first,
          location: rv.location,
          hint: 'Use COPY … FROM STDIN (psql \\copy) so the data passes through the proxy.',
        });
      }
      if (first && format.format === 'binary') {
        refuse('copy_binary', `binary COPY into encrypted column ${qualified(first)} is refused: the proxy rewrites text and CSV COPY data only`, {
          target: first,
          location: rv.location,
          hint: 'Use FORMAT text or FORMAT csv.',
        });
      }
      return { direction: 'in', statement, viaClient, ...table, fields, ...format };
    }
    const fields: CopyOutField[] | undefined = cols?.map((c) => {
      const target = encryptedColumn(policy, c);
      return target ? { kind: 'encrypted', target } : { kind: 'plain' };
    });
    return { direction: 'out', statement, viaClient, fields, ...format };
  }
  const out = analyzeQueryNode(ctx, b.query, root);
  const names = out.columns?.map((c) => c.name);
  const format: CopyFormatOptions = {
    ...opts,
    forceNotNull: forceIndexes(force.forceNotNull, names),
    forceNull: forceIndexes(force.forceNull, names),
    forceQuote: forceIndexes(force.forceQuote, names),
  };
  return { direction: 'out', statement, viaClient, fields: out.columns?.map((c) => describeOutput(c.origin, 0)), ...format };
}

/** What an output column of a query carries: an encrypted column's ciphertext, an expression over one, or plain data. */
export function describeOutput(origin: Origin, depth: number): CopyOutField {
  if (depth > 64) return { kind: 'unknown' };
  switch (origin.kind) {
    case 'encrypted':
      return { kind: 'encrypted', target: origin.target };
    case 'plain':
      return { kind: 'plain' };
    case 'unknown':
      return { kind: 'unknown' };
    case 'union':
      return combine(origin.origins.map((o) => describeOutput(o, depth + 1)));
    case 'derived':
      return combine(
        origin.sources.map((s) => {
          const e = unwrap(s.expr).expr;
          const cr = as(e, 'ColumnRef');
          if (cr && !s.elements && typeOf((cr.fields as Ast[]).at(-1)) !== 'A_Star') {
            return describeOutput(resolveColumn(strings(cr.fields), s.scope), depth + 1);
          }
          const found = mentioned(e, s.scope);
          if (found === 'unknown') return { kind: 'unknown' };
          return found.length > 0 ? { kind: 'opaque', columns: found } : { kind: 'plain' };
        }),
      );
  }
}

function combine(fields: CopyOutField[]): CopyOutField {
  const first = fields[0];
  if (!first) return { kind: 'plain' };
  if (fields.every((f) => f.kind === 'plain')) return first;
  // Ciphertext from several encrypted columns with one policy (UNION of two tables) decrypts alike.
  if (first.kind === 'encrypted' && fields.every((f) => f.kind === 'encrypted' && samePolicy(f.target.policy, first.target.policy))) {
    return first;
  }
  const cols = fields.flatMap((f) => (f.kind === 'encrypted' ? [f.target] : f.kind === 'opaque' ? f.columns : []));
  if (fields.some((f) => f.kind === 'unknown')) return { kind: 'unknown' };
  return { kind: 'opaque', columns: cols };
}

/** Encrypted columns an expression reads ('unknown' when it holds a subquery). */
function mentioned(node: unknown, scope: Scope): ColumnTarget[] | 'unknown' {
  const found: ColumnTarget[] = [];
  let unknown = false;
  const visit = (n: unknown): void => {
    if (unknown || n === null || typeof n !== 'object') return;
    if (Array.isArray(n)) return n.forEach(visit);
    const t = typeOf(n);
    if (t === 'SubLink') {
      unknown = true;
      return;
    }
    if (t === 'ColumnRef') {
      const target = bareEncrypted(n as Ast, scope);
      if (target) found.push(target);
      return;
    }
    for (const k in n as Ast) visit((n as Ast)[k]);
  };
  visit(node);
  return unknown ? 'unknown' : found;
}
