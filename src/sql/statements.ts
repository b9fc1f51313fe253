// One top-level statement: dispatch by type, plus the utility statements that
// matter for encryption — EXPLAIN, SQL-level PREPARE/EXECUTE/DEALLOCATE, COPY,
// DO blocks, function bodies and rules (server-side code the proxy cannot see
// into: refused when it names an encrypted table) — and DDL detection.
import { as, describe, items, locationOf, strings, typeOf, unwrap, type Ast } from './ast.js';
import { newParamState, type AnalysisContext } from './context.js';
import { analyzeCopy } from './copy.js';
import { checkCreateAs, checkTableDdl } from './ddl.js';
import { qualified, refuse } from './errors.js';
import { paramRange } from './lexical.js';
import { analyzeQueryNode, walkExpr } from './query.js';
import { Scope } from './scope.js';
import type { ExecuteArg, ParamSite, StatementInfo } from './types.js';

const RELATION_OBJECTS = new Set(['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_FOREIGN_TABLE']);
const DDL_EXTRA = new Set(['ViewStmt', 'IndexStmt', 'RuleStmt', 'CompositeTypeStmt', 'ImportForeignSchemaStmt', 'CommentStmt', 'SecLabelStmt']);

export function isDdlType(type: string): boolean {
  return /^(Create|Alter|Drop|Rename|Define)/.test(type) || DDL_EXTRA.has(type);
}

/** EXECUTE arguments whose literal ranges still need the scanner. */
export interface ExecuteDraft {
  info: StatementInfo;
  literalLocations: Map<number, number>; // arg index → literal location
}

export function analyzeStatement(ctx: AnalysisContext, stmt: Ast, info: StatementInfo, drafts: ExecuteDraft[]): void {
  const type = typeOf(stmt) ?? '?';
  const b = stmt[type] as Ast;
  const root = new Scope();
  if (isDdlType(type)) info.isDdl = true;
  switch (type) {
    case 'SelectStmt':
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      analyzeQueryNode(ctx, stmt, root);
      return;
    case 'ExplainStmt':
      analyzeStatement(ctx, b.query, info, drafts);
      return;
    case 'CreateTableAsStmt': {
      walkExpr(ctx, b.into, { scope: root, strict: null });
      if (typeOf(b.query) !== 'SelectStmt') {
        const p = ctx.lookupTable(b.into.rel);
        if (p && !b.into.skipData) {
          refuse('prepared_statement', `CREATE TABLE ${qualified(p)} AS EXECUTE: the proxy cannot follow the values into the encrypted table`, {
            table: p,
            location: b.into.rel.location,
          });
        }
        analyzeStatement(ctx, b.query, info, drafts);
        return;
      }
      checkCreateAs(ctx, b.into, analyzeQueryNode(ctx, b.query, root));
      return;
    }
    case 'CreateStmt':
    case 'AlterTableStmt':
      checkTableDdl(ctx, type, b);
      walkExpr(ctx, stmt, { scope: root, strict: null });
      return;
    case 'CopyStmt':
      ctx.copies.push(analyzeCopy(ctx, b, info.index));
      return;
    case 'PrepareStmt':
      info.prepare = { name: b.name, params: analyzePrepare(ctx, b, root) };
      return;
    case 'ExecuteStmt':
      drafts.push(analyzeExecute(ctx, b, info));
      return;
    case 'DeallocateStmt':
      info.deallocate = { name: b.isall ? null : (b.name as string) };
      return;
    case 'DiscardStmt':
      if (b.target === 'DISCARD_ALL') info.deallocate = { name: null };
      return;
    case 'DoStmt':
      refuseServerCode(ctx, items(b.args).map((a) => as(a, 'DefElem')).filter((d) => d?.defname === 'as').map((d) => as(d!.arg, 'String')?.sval ?? ''), 'a DO block');
      return;
    case 'CreateFunctionStmt':
      analyzeFunction(ctx, b);
      return;
    case 'RuleStmt':
      analyzeRule(ctx, b);
      return;
    case 'DropStmt':
      // DROP TABLE/VIEW names are String lists, not RangeVars.
      if (RELATION_OBJECTS.has(b.removeType)) {
        for (const o of items(b.objects)) {
          const n = strings(items(o));
          if (n.length > 0) ctx.lookupTable({ relname: n[n.length - 1], schemaname: n.length > 1 ? n[n.length - 2] : undefined, location: -1 });
        }
      }
      return;
    default:
      walkExpr(ctx, stmt, { scope: root, strict: null });
  }
}

function refuseServerCode(ctx: AnalysisContext, bodies: string[], what: string): void {
  for (const body of bodies) {
    if (!ctx.policy.mayMention(body)) continue;
    const t = ctx.policy.firstMention(body);
    refuse(
      'server_side_code',
      `${what} that mentions encrypted table ${t ? qualified(t) : '(one of the configured tables)'} is refused: code running inside the server writes and compares plaintext the proxy never sees`,
      { table: t, hint: 'Run it on a direct connection if it only handles ciphertext, or move the logic into the application.' },
    );
  }
}

function analyzeFunction(ctx: AnalysisContext, b: Ast): void {
  const what = b.is_procedure ? 'a procedure' : 'a function';
  const bodies: string[] = [];
  for (const o of items(b.options)) {
    const d = as(o, 'DefElem');
    if (d?.defname === 'as') bodies.push(...strings(items(d.arg)), ...(as(d.arg, 'String') ? [as(d.arg, 'String')!.sval as string] : []));
  }
  refuseServerCode(ctx, bodies, what);
  if (b.sql_body) {
    // BEGIN ATOMIC … END: parsed statements; any configured relation in them is refused.
    const visit = (n: unknown): void => {
      if (n === null || typeof n !== 'object') return;
      if (Array.isArray(n)) return n.forEach(visit);
      const node = n as Ast;
      const rv = typeof node.relname === 'string' ? node : as(node, 'RangeVar');
      if (rv) {
        const p = ctx.lookupTable(rv);
        if (p) refuseServerCode(ctx, [p.table], what);
      }
      for (const k in node) visit(node[k]);
    };
    visit(b.sql_body);
  }
}

function analyzeRule(ctx: AnalysisContext, b: Ast): void {
  ctx.lookupTable(b.relation);
  for (const a of items(b.actions)) {
    const t = typeOf(a);
    if (t !== 'InsertStmt' && t !== 'UpdateStmt' && t !== 'MergeStmt') continue;
    const p = ctx.lookupTable(a[t].relation);
    if (p) {
      refuse('server_side_code', `a rule that writes to encrypted table ${qualified(p)} is refused: its values bypass the proxy`, {
        table: p,
        location: a[t].relation.location,
      });
    }
  }
}

/** `PREPARE name AS stmt`: the prepared statement's own `$n` are not Bind parameters of this message. */
function analyzePrepare(ctx: AnalysisContext, b: Ast, root: Scope): ParamSite[] {
  const outer = ctx.params;
  ctx.params = newParamState();
  try {
    analyzeQueryNode(ctx, b.query, root);
    ctx.checkParamConflicts(ctx.params);
    const pred = [...ctx.params.predicateLocations][0];
    if (pred !== undefined) {
      refuse('prepared_statement', `PREPARE ${b.name}: a comparison of a searchable encrypted column with a parameter is not supported in SQL-level prepared statements`, {
        location: pred,
        hint: 'Use a protocol-level prepared statement (your driver does this for parameterised queries) or a literal.',
      });
    }
    return [...ctx.params.values].map(([param, v]) => ({
      param,
      target: v.target,
      elements: v.elements,
      ranges: [...v.locations].map((l) => paramRange(ctx.bytes, l)),
    }));
  } finally {
    ctx.params = outer;
  }
}

function analyzeExecute(ctx: AnalysisContext, b: Ast, info: StatementInfo): ExecuteDraft {
  const literalLocations = new Map<number, number>();
  const args: ExecuteArg[] = items(b.params).map((a, i): ExecuteArg => {
    const index = i + 1;
    walkExpr(ctx, a, { scope: new Scope(), strict: null });
    const { expr, casts } = unwrap(a);
    const loc = locationOf(a) ?? -1;
    if (casts.some((c) => !c.textLike || c.isArray)) return { index, kind: 'other', description: `a value cast to ${casts[0]!.name}`, location: loc };
    const k = as(expr, 'A_Const');
    if (k?.isnull) return { index, kind: 'null' };
    if (k?.sval !== undefined) {
      literalLocations.set(index, k.location);
      return { index, kind: 'literal', value: (k.sval.sval as string | undefined) ?? '', range: { start: k.location, end: k.location } };
    }
    const p = as(expr, 'ParamRef');
    if (p) return { index, kind: 'param', param: p.number, range: paramRange(ctx.bytes, p.location) };
    return { index, kind: 'other', description: describe(expr), location: loc };
  });
  info.execute = { name: b.name, args };
  return { info, literalLocations };
}
