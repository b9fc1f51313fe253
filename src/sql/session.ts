// Per-connection state on top of the shared analyzer:
//  - SQL-level prepared statements: `PREPARE p AS INSERT …` records what each $n
//    of p writes to; `EXECUTE p('lit', $1)` then encrypts those arguments. A name
//    prepared twice with different plans (without DEALLOCATE between) is
//    ambiguous — the proxy cannot know which one the server kept — so EXECUTE of
//    it with arguments is refused until DEALLOCATE. DEALLOCATE/DISCARD ALL are
//    assumed to succeed (they fail only inside an aborted transaction).
//  - Lexer settings: the parser assumes standard_conforming_strings=on and UTF-8
//    bytes. Statements on encrypted tables are refused while the session runs
//    with other settings (tracked from SET statements and ParameterStatus).
import { parseSync } from 'libpg-query';
import type { Ast } from './ast.js';
import { qualified } from './errors.js';
import type { SqlAnalyzer } from './analyzer.js';
import type { LiteralSite, ParamSite, RewritePlan, SqlPlan, SqlRejection } from './types.js';

type Prepared = Map<number, ParamSite> | 'conflict';

const OK_ENCODINGS = new Set(['UTF8', 'UNICODE', 'SQLASCII']);
const SETTING_WORDS = /standard_conforming_strings|client_encoding|\bset\s+(session\s+|local\s+)?names\b/i;
const PREPARED_WORDS = /\b(execute|deallocate|discard)\b/i;

function normEncoding(v: string): string {
  return v.toUpperCase().replace(/[-_\s]/g, '');
}

function refusal(reason: SqlRejection['reason'], message: string, hint?: string): SqlPlan {
  const error: SqlRejection = { code: '0A000', reason, message: `pgcmek: ${message}` };
  if (hint) error.hint = hint;
  return { kind: 'reject', error };
}

function samePlan(a: Map<number, ParamSite>, b: Map<number, ParamSite>): boolean {
  if (a.size !== b.size) return false;
  for (const [n, s] of a) {
    const o = b.get(n);
    if (!o || qualified(o.target) !== qualified(s.target) || o.elements !== s.elements) return false;
  }
  return true;
}

export class SqlSession {
  private readonly prepared = new Map<string, Prepared>();
  private standardConformingStrings = true;
  private clientEncoding = 'UTF8';

  constructor(readonly analyzer: SqlAnalyzer) {}

  /** Feed ParameterStatus messages from the server (and startup parameters). */
  setServerParameter(name: string, value: string): void {
    const n = name.toLowerCase();
    if (n === 'standard_conforming_strings') this.standardConformingStrings = value.toLowerCase() === 'on';
    else if (n === 'client_encoding') this.clientEncoding = normEncoding(value);
  }

  /**
   * Plan a Query string or Parse statement for this session. `text`, with a
   * Buffer: its UTF-8 decoding, when the caller has it (one decode per message).
   */
  analyze(sql: string | Buffer, text?: string): SqlPlan {
    // The keyword tests see ASCII alike in either decoding.
    const ascii = typeof sql === 'string' ? sql : (text ?? sql.toString('latin1'));
    if (SETTING_WORDS.test(ascii)) this.trackSettings(ascii);
    const force = this.prepared.size > 0 && PREPARED_WORDS.test(ascii);
    const plan = this.analyzer.analyze(sql, text === undefined ? { force } : { force, text });
    if (plan.kind === 'passthrough' || plan.kind === 'admin') return plan;
    // Under other lexer settings the parse (and any refusal it led to) may be wrong: say why instead.
    if (!this.standardConformingStrings || !OK_ENCODINGS.has(this.clientEncoding)) {
      return refusal(
        'session_settings',
        `statements on encrypted tables need standard_conforming_strings=on and client_encoding UTF8 (this session has ${this.standardConformingStrings ? 'on' : 'off'} and ${this.clientEncoding})`,
        'Reset these settings to their defaults.',
      );
    }
    return plan.kind === 'plan' ? this.applyPrepared(plan) : plan;
  }

  /** SET standard_conforming_strings / client_encoding / NAMES take effect for the next message already. */
  private trackSettings(text: string): void {
    let stmts: { stmt: Ast }[];
    try {
      stmts = (parseSync(text) as unknown as { stmts?: { stmt: Ast }[] }).stmts ?? [];
    } catch {
      return;
    }
    for (const { stmt } of stmts) {
      const v = stmt.VariableSetStmt as Ast | undefined;
      if (!v) continue;
      const name = (v.name as string | undefined)?.toLowerCase();
      const arg = v.args?.[0]?.A_Const as Ast | undefined;
      const value = (arg?.sval?.sval as string | undefined) ?? (arg?.boolval ? String(arg.boolval.boolval ?? false) : undefined);
      const reset = v.kind === 'VAR_RESET' || v.kind === 'VAR_SET_DEFAULT';
      if (name === 'standard_conforming_strings') {
        this.standardConformingStrings = reset ? true : ['on', 'true', '1', 'yes'].includes((value ?? 'on').toLowerCase());
      } else if (name === 'client_encoding' && value !== undefined && !reset) {
        this.clientEncoding = normEncoding(value);
      }
    }
  }

  private applyPrepared(plan: RewritePlan): SqlPlan {
    let literals: LiteralSite[] | undefined;
    let params: Map<number, ParamSite> | undefined;
    for (const s of plan.statements) {
      if (s.prepare) {
        const next = new Map(s.prepare.params.map((p) => [p.param, p]));
        const prev = this.prepared.get(s.prepare.name);
        this.prepared.set(s.prepare.name, prev === undefined || (prev !== 'conflict' && samePlan(prev, next)) ? next : 'conflict');
      }
      if (s.deallocate) {
        if (s.deallocate.name === null) this.prepared.clear();
        else this.prepared.delete(s.deallocate.name);
      }
      if (!s.execute) continue;
      const entry = this.prepared.get(s.execute.name);
      if (entry === undefined || s.execute.args.length === 0) continue;
      if (entry === 'conflict') {
        return refusal(
          'prepared_statement',
          `prepared statement "${s.execute.name}" was prepared twice with different encryption needs; the proxy cannot tell which one the server kept`,
          'DEALLOCATE it and PREPARE it again.',
        );
      }
      const argTargets = new Map<number, string>();
      for (const a of s.execute.args) {
        const site = entry.get(a.index);
        if (a.kind === 'param') {
          const key = site ? qualified(site.target) + (site.elements ? '[]' : '') : '';
          const seen = argTargets.get(a.param);
          if (seen !== undefined && seen !== key) {
            return refusal('param_conflict', `parameter $${a.param} is passed to EXECUTE ${s.execute.name} for columns that need different encryption`);
          }
          argTargets.set(a.param, key);
        }
        if (!site || a.kind === 'null') continue;
        const where = `argument ${a.index} of EXECUTE ${s.execute.name}, written to ${qualified(site.target)}`;
        if (a.kind === 'other') return refusal('unencryptable_value', `cannot encrypt ${where}: it is ${a.description}`);
        if (a.kind === 'literal') {
          if (site.elements) return refusal('unencryptable_value', `cannot encrypt ${where}: an array given as a string literal`);
          if (a.value === '' && !site.target.policy.encryptEmpty) continue;
          (literals ??= [...plan.literals]).push({ ...a.range, value: a.value, target: site.target });
        } else {
          params ??= new Map(plan.params);
          const prev = params.get(a.param);
          if (prev && qualified(prev.target) !== qualified(site.target)) {
            return refusal('param_conflict', `parameter $${a.param} is written to ${qualified(prev.target)} and to ${qualified(site.target)}`);
          }
          params.set(a.param, { param: a.param, target: site.target, elements: site.elements, ranges: [a.range] });
        }
      }
    }
    if (!literals && !params) return plan;
    return { ...plan, literals: (literals ?? plan.literals).sort((x, y) => x.start - y.start), params: params ?? plan.params };
  }
}
